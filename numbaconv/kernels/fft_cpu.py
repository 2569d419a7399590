"""numba kernels around the FFTs of the ``fft`` algorithm.

The transforms themselves are ``scipy.fft`` calls made by
:mod:`numbaconv.algorithms.fft`; these serial kernels do what happens
between them (each called from one of the algorithm's worker threads, on
its own blocks, with the GIL released -- Note [fft threads] there):

* :func:`gather_blocks` -- copy the padded-input block each tile's FFT
  needs (padding resolved through the index maps of
  :mod:`numbaconv.padding`, zeros past the padded input);
* :func:`contract_channels` -- the channel sum in the frequency domain,
  ``Y[s, co, f] = sum_ci X[s, g*cin_g + ci, f] * W[co, ci, f]`` per group
  (``W`` already conjugated: a product of transforms is a convolution, the
  conjugate makes it the cross-correlation PyTorch computes);
* :func:`scatter_tiles` -- crop each tile's inverse transform to its valid
  outputs, keep every ``stride``-th one, add the bias, write ``out``, and
  apply the fused epilogue to what it wrote (Note [epilogue]).

Blocks are ``(tiles, images, channels, LD, LH, LW)``: axis 0 is the tile of
the output, axis 1 the image, and the trailing axes the FFT lengths.
"""

from __future__ import annotations

import numpy as np

from .epilogue_block import finish_block
from .jit import cpu_kernel


@cpu_kernel(parallel=False)
def gather_blocks(x, first_image, map_d, map_h, map_w, pad_w, origins, blocks):
    """blocks[t, n, c] = padded input of image ``first_image + n`` from ``origins[t]``.

    ``origins`` is a ``(tiles, 3)`` int64 array of padded-input coordinates;
    positions past the padded input are zeros.  Along W the positions whose
    map is the plain shift by ``pad_w`` (the interior, in every padding
    mode) are one contiguous copy; only the edges go through ``map_w``.
    """
    nb, C = blocks.shape[1], blocks.shape[2]
    LD, LH, LW = blocks.shape[3], blocks.shape[4], blocks.shape[5]
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    Dp, Hp, Wp = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    src = x.ravel()
    dst = blocks.ravel()
    zero = blocks.dtype.type(0)
    for job in range(blocks.shape[0] * nb * C):
        c = job % C
        n = (job // C) % nb
        t = job // (C * nb)
        plane = ((first_image + n) * C + c) * D * H * W
        out0 = job * LD * LH * LW
        d0, h0, w0 = origins[t, 0], origins[t, 1], origins[t, 2]
        # block columns [lo, hi) read input columns w0 + k - pad_w directly
        lo = min(max(0, pad_w - w0), LW)
        hi = max(min(LW, pad_w + W - w0), lo)
        for i in range(LD):
            sd = map_d[d0 + i] if d0 + i < Dp else -1
            for j in range(LH):
                sh = map_h[h0 + j] if h0 + j < Hp else -1
                row = out0 + (i * LH + j) * LW
                if sd < 0 or sh < 0:
                    for k in range(LW):
                        dst[np.uint64(row + k)] = zero
                    continue
                srow = plane + (sd * H + sh) * W
                for k in range(lo):
                    sw = map_w[w0 + k] if w0 + k < Wp else -1
                    dst[np.uint64(row + k)] = src[np.uint64(srow + sw)] if sw >= 0 else zero
                first = srow + w0 - pad_w
                for k in range(lo, hi):
                    dst[np.uint64(row + k)] = src[np.uint64(first + k)]
                for k in range(hi, LW):
                    sw = map_w[w0 + k] if w0 + k < Wp else -1
                    dst[np.uint64(row + k)] = src[np.uint64(srow + sw)] if sw >= 0 else zero


#: frequencies per contraction job: the job's two accumulator rows (real
#: and imaginary parts) stay in L1 while the input channels stream past
FREQUENCY_BLOCK = 512


def contract_channels(xf, wf, yf, groups):
    """yf[s, co] = sum over the group's ci of xf[s, ci] * wf[co, ci] (elementwise).

    ``xf`` is ``(S, C_in, F)``, ``wf`` ``(C_out, C_in/groups, F)``, ``yf``
    ``(S, C_out, F)``, complex.  The arithmetic is done on the interleaved
    real and imaginary parts (float views) with split accumulators for a
    block of frequencies, which LLVM vectorises; complex-typed loops were
    not (bigk1d's contraction 7.8 ms against 4.9 ms).
    """
    S, Co, F = yf.shape
    real = np.float32 if yf.dtype == np.complex64 else np.float64
    _contract(xf.reshape(-1).view(real), wf.reshape(-1).view(real), yf.reshape(-1).view(real),
              S, xf.shape[1], Co, F, wf.shape[1], groups, FREQUENCY_BLOCK)


@cpu_kernel(parallel=False)
def _contract(x, w, y, S, Ci, Co, F, cin_g, groups, block):
    """x, w, y: the complex arrays of contract_channels as flat float views."""
    blocks = (F + block - 1) // block
    cout_g = Co // groups
    acc_re = np.empty(block, dtype=y.dtype)
    acc_im = np.empty(block, dtype=y.dtype)
    for job in range(S * Co * blocks):
        b = job % blocks
        co = (job // blocks) % Co
        s = job // (blocks * Co)
        g = co // cout_g
        f0 = b * block
        n = min(F, f0 + block) - f0
        for f in range(n):
            acc_re[f] = 0
            acc_im[f] = 0
        for ci in range(cin_g):
            x0 = 2 * ((s * Ci + g * cin_g + ci) * F + f0)
            w0 = 2 * ((co * cin_g + ci) * F + f0)
            for f in range(n):
                xr = x[np.uint64(x0 + 2 * f)]
                xi = x[np.uint64(x0 + 2 * f + 1)]
                wr = w[np.uint64(w0 + 2 * f)]
                wi = w[np.uint64(w0 + 2 * f + 1)]
                acc_re[f] += xr * wr - xi * wi
                acc_im[f] += xr * wi + xi * wr
        y0 = 2 * ((s * Co + co) * F + f0)
        for f in range(n):
            y[np.uint64(y0 + 2 * f)] = acc_re[f]
            y[np.uint64(y0 + 2 * f + 1)] = acc_im[f]


@cpu_kernel(parallel=False)
def scatter_tiles(tiles_out, first_image, table, sd, sh, sw, bias, out, code, slope, residual):
    """Write the valid, strided outputs of each tile's inverse transform.

    ``tiles_out`` is ``(tiles, images, C_out, LD, LH, LW)``, each the
    stride-1 correlation from its tile's origin.  ``table`` has a row per
    tile: the first output index per axis (columns 0-2), one past the last
    (3-5) and the block origin in stride-1 positions (6-8); output ``o``
    is sample ``o * stride - origin`` of its tile.  ``bias`` empty means
    none.  ``code, slope, residual`` are the epilogue's
    (:meth:`numbaconv.epilogue.Epilogue.kernel_args`), applied to each
    job's box of outputs once written.
    """
    nb, Co = tiles_out.shape[1], tiles_out.shape[2]
    LD, LH, LW = tiles_out.shape[3], tiles_out.shape[4], tiles_out.shape[5]
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    src = tiles_out.ravel()
    dst = out.ravel()
    starts = table
    for job in range(tiles_out.shape[0] * nb * Co):
        co = job % Co
        n = (job // Co) % nb
        t = job // (Co * nb)
        b = bias[co] if bias.shape[0] else out.dtype.type(0)
        in0 = job * LD * LH * LW
        out0 = ((first_image + n) * Co + co) * OD * OH * OW
        for od in range(starts[t, 0], starts[t, 3]):
            i = od * sd - starts[t, 6]
            for oh in range(starts[t, 1], starts[t, 4]):
                j = oh * sh - starts[t, 7]
                row_in = in0 + (i * LH + j) * LW - starts[t, 8]
                row_out = out0 + (od * OH + oh) * OW
                for ow in range(starts[t, 2], starts[t, 5]):
                    dst[np.uint64(row_out + ow)] = src[np.uint64(row_in + ow * sw)] + b
            if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
                finish_block(dst, out0 + (od * OH + starts[t, 1]) * OW + starts[t, 2], OW,
                             starts[t, 4] - starts[t, 1], starts[t, 5] - starts[t, 2], residual,
                             code, slope)
