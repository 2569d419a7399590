"""The direct algorithm's loop orders on channels-last (NDHWC) arrays, in place.

The twins of ``conv_channels_last`` and ``conv_thin_channels_last``
(:mod:`numbaconv.kernels.direct_channels_last`) for a channels-last call
(SPEC 1b): they read the unpadded ``(N, D, H, W, C)`` input itself, no
padded copy, and write the ``(N, OD, OH, OW, C_out)`` output.

Note [native channels-last]
~~~~~~~~~~~~~~~~~~~~~~~~~~~
The canonical loop orders pack the padded input channels last first, so
a channels-last input already is their working layout, less the padding.
The patch rows of Note [patch rows] are copied from the unpadded input by
:func:`numbaconv.kernels.im2col_channels_last.fill_rows` (the same rows are
im2col's channels-last columns), every padding mode resolved through the
index maps of :mod:`numbaconv.padding` one run at a time, and the products
are the canonical kernel's own 4x3 blocks
(``direct_channels_last._patch_times_weights``) with the output's channel
and pixel steps swapped: one kernel for both layouts.  The thin kernel
(Note [thin channels-last]) skips taps whose map entry is -1 instead of
reading a zero, and writes each output row, ``OW * C_out`` contiguous
values, in one pass.  Each job applies the fused epilogue (Note [epilogue]
in :mod:`numbaconv.epilogue`) to the block it has just written.  Every
output is computed by one job in a fixed order, so results do not depend on
the thread count.
"""

from __future__ import annotations

import numpy as np

from .direct_channels_last import _patch_times_weights
from .direct_layouts import PATCH_PIXELS
from .epilogue_block import finish_block
from .im2col_channels_last import fill_rows
from .jit import cpu_kernel, inline_helper
from .parallel import chunk_of, chunk_scratch, run_in_chunks


def conv_channels_last_native(x, map_d, map_h, map_w, wp, bias, out, kernel_size, groups,
                              stride, dilation, pad_w, code, slope, residual, chunks):
    """Direct convolution of a channels-last input into a channels-last output.

    Parameters
    ----------
    x : (N, D, H, W, C) array
        The unpadded input.
    map_d, map_h, map_w : int64 arrays
        Padding index maps (:func:`numbaconv.padding.padding_maps`).
    wp : (C_out, KD * KH * KW * C_in_g) array
        Weight with the input-channel axis moved last, then flattened.
    bias : (C_out,) or (0,) array
    out : (N, OD, OH, OW, C_out) array
        Written in full.
    kernel_size, stride, dilation : (3,) tuples of int
    groups, pad_w : int
    code, slope, residual
        The fused epilogue (:meth:`numbaconv.epilogue.Epilogue.kernel_args`).
    chunks : int
        Number of parallel chunks (the thread count).

    A job is a run of at most PATCH_PIXELS output pixels of one output row
    and one group (Note [native channels-last]).
    """
    N, OD, OH, OW, _ = out.shape
    runs = (OW + PATCH_PIXELS - 1) // PATCH_PIXELS
    jobs = N * OD * OH * runs * groups
    run_in_chunks(_channels_last_chunk, (x, map_d, map_h, map_w, wp, bias, out, groups,
                                         *kernel_size, *stride, *dilation, pad_w, code, slope,
                                         residual, chunk_scratch(jobs, chunks,
                                                                 PATCH_PIXELS * wp.shape[1],
                                                                 out.dtype)),
                  jobs, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _channels_last_chunk(x, map_d, map_h, map_w, wp, bias, out, groups, KD, KH, KW, sd, sh, sw,
                         dd, dh, dw, pad_w, code, slope, residual, work, first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of conv_channels_last_native."""
    OD, OH, OW, Co = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    cin_g = x.shape[4] // groups
    cout_g = Co // groups
    K = KD * KH * KW * cin_g
    runs = (OW + PATCH_PIXELS - 1) // PATCH_PIXELS
    # this chunk's patch rows (Note [chunk scratch] in kernels/parallel.py)
    patch = work[chunk_of(first_job, out.shape[0] * OD * OH * runs * groups, work.shape[0])][
        :PATCH_PIXELS * K].reshape((PATCH_PIXELS, K))
    rows = patch.ravel()
    flat = out.ravel()
    finish = code != 0 or residual.shape[0] > 0
    for job in range(first_job, stop_job):
        g = job % groups
        run = (job // groups) % runs
        oh = (job // (groups * runs)) % OH
        od = (job // (groups * runs * OH)) % OD
        n = job // (groups * runs * OH * OD)
        ow0 = run * PATCH_PIXELS
        pixels = min(PATCH_PIXELS, OW - ow0)
        fill_rows(x, map_d, map_h, map_w, n, (od * OH + oh) * OW + ow0, pixels, g * cin_g, cin_g,
                  0, K, KD, KH, KW, sd, sh, sw, dd, dh, dw, pad_w, OH, OW, rows)
        # out[n, od, oh, ow0, :]: channels adjacent, pixels C_out apart
        first = (((n * OD + od) * OH + oh) * OW + ow0) * Co
        _patch_times_weights(patch, pixels, wp, bias, out, first, 1, Co, g, groups)
        if finish:
            finish_block(flat, first + g * cout_g, Co, pixels, cout_g, residual, code, slope)


@inline_helper
def _nine_taps(src, w, bias, dst, at, C, s0, s1, s2, s3, s4, s5, s6, s7, s8):
    """``dst[at + c] = sum_k src[s_k + c] * w[k * C + c] + bias[c]``: one pixel
    of a 3x3 depthwise layer, every tap in the input.

    Note [nine taps]
    ~~~~~~~~~~~~~~~~
    The general thin kernel adds each tap's products into an accumulator row
    in L1, a load and a store per multiply-add; here the nine products of a
    channel are one expression, which LLVM vectorises over the channels with
    the sum in registers.  3x3 depthwise layers of MobileNet and EfficientNet,
    channels-last, one thread: 2.3-4x faster than the general kernel
    (public depthwise 0.94 -> 0.41 ms, PyTorch's 0.47;
    docs/results-channels-last.md, "Nine taps").  Border pixels, whose taps
    leave the input, take the general path."""
    zero = dst.dtype.type(0)
    has_bias = bias.shape[0] > 0
    for c in range(C):
        u = np.uint64(c)
        total = (src[np.uint64(s0) + u] * w[u]
                 + src[np.uint64(s1) + u] * w[np.uint64(C) + u]
                 + src[np.uint64(s2) + u] * w[np.uint64(2 * C) + u]
                 + src[np.uint64(s3) + u] * w[np.uint64(3 * C) + u]
                 + src[np.uint64(s4) + u] * w[np.uint64(4 * C) + u]
                 + src[np.uint64(s5) + u] * w[np.uint64(5 * C) + u]
                 + src[np.uint64(s6) + u] * w[np.uint64(6 * C) + u]
                 + src[np.uint64(s7) + u] * w[np.uint64(7 * C) + u]
                 + src[np.uint64(s8) + u] * w[np.uint64(8 * C) + u])
        dst[np.uint64(at) + u] = total + (bias[c] if has_bias else zero)


@cpu_kernel(parallel=False, python_callable=False)
def _nine_taps_row(src, w, bias, dst, o, C, r0, r1, r2, map_w, sw, dw, OW):
    """:func:`_nine_taps` on every pixel of an output row (starting at flat
    ``o``, input rows at ``r0, r1, r2``) whose three columns lie in the
    input.  The invalid case skips with ``continue``: written as ``if all
    valid: _nine_taps(...)`` the same loop ran 1.2x slower (Note [nine
    taps])."""
    for ow in range(OW):
        q0, q1, q2 = map_w[ow * sw], map_w[ow * sw + dw], map_w[ow * sw + 2 * dw]
        if q0 < 0 or q1 < 0 or q2 < 0:
            continue
        _nine_taps(src, w, bias, dst, o + ow * C, C, (r0 + q0) * C, (r0 + q1) * C,
                   (r0 + q2) * C, (r1 + q0) * C, (r1 + q1) * C, (r1 + q2) * C,
                   (r2 + q0) * C, (r2 + q1) * C, (r2 + q2) * C)


def conv_thin_channels_last_native(x, map_d, map_h, map_w, wt, bias, out, multiplier,
                                   kernel_size, stride, dilation, code, slope, residual, chunks):
    """Direct convolution of a layer with one input channel per group
    (depthwise, ``multiplier`` output channels per input channel), channels
    last in and out (Note [thin channels-last], Note [native channels-last]).

    ``x`` is the unpadded ``(N, D, H, W, C)`` input, ``wt`` ``(multiplier,
    KD, KH, KW, C)`` with ``wt[j, kd, kh, kw, c]`` the weight of output
    channel ``c * multiplier + j``, ``out`` ``(N, OD, OH, OW, C * multiplier)``;
    the other arguments as :func:`conv_channels_last_native`.  A job is one
    output row of one image.
    """
    N, OD, OH, _, _ = out.shape
    run_in_chunks(_thin_chunk, (x, map_d, map_h, map_w, wt, bias, out, multiplier, *kernel_size,
                                *stride, *dilation, code, slope, residual), N * OD * OH, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _thin_chunk(x, map_d, map_h, map_w, wt, bias, out, multiplier, KD, KH, KW, sd, sh, sw,
                dd, dh, dw, code, slope, residual, first_job, stop_job):
    """Rows ``first_job <= job < stop_job`` of conv_thin_channels_last_native."""
    OD, OH, OW, Co = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    D, H, W, C = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    acc = np.empty(C, dtype=out.dtype)
    src = x.ravel()
    w = wt.ravel()
    dst = out.ravel()
    zero = out.dtype.type(0)
    has_bias = bias.shape[0] > 0
    finish = code != 0 or residual.shape[0] > 0
    # Note [nine taps]: a 3x3 depthwise layer's pixels whose taps all lie in
    # the input sum their nine products per channel in registers
    nine = KD == 1 and KH == 3 and KW == 3 and multiplier == 1
    patch = np.empty(9 * C if nine else 0, dtype=out.dtype)
    for job in range(first_job, stop_job):
        oh = job % OH
        od = (job // OH) % OD
        n = job // (OH * OD)
        o = job * OW * Co                         # out[n, od, oh, 0, 0]
        if nine:
            plane = n * D + map_d[od * sd]
            r0, r1, r2 = map_h[oh * sh], map_h[oh * sh + dh], map_h[oh * sh + 2 * dh]
            nine_rows = map_d[od * sd] >= 0 and r0 >= 0 and r1 >= 0 and r2 >= 0
            r0, r1, r2 = (plane * H + r0) * W, (plane * H + r1) * W, (plane * H + r2) * W
            if nine_rows:
                _nine_taps_row(src, w, bias, dst, o, C, r0, r1, r2, map_w, sw, dw, OW)
            rows = (r0 if map_h[oh * sh] >= 0 else -1, r1 if map_h[oh * sh + dh] >= 0 else -1,
                    r2 if map_h[oh * sh + 2 * dh] >= 0 else -1)
            if map_d[od * sd] < 0:
                rows = (-1, -1, -1)
            for ow in range(OW):
                columns = (map_w[ow * sw], map_w[ow * sw + dw], map_w[ow * sw + 2 * dw])
                if nine_rows and columns[0] >= 0 and columns[1] >= 0 and columns[2] >= 0:
                    continue                      # done by _nine_taps_row
                # a border pixel: its taps, zeros outside the input, into patch
                for kh in range(3):
                    for kw in range(3):
                        at = (kh * 3 + kw) * C
                        if rows[kh] < 0 or columns[kw] < 0:
                            for c in range(C):
                                patch[np.uint64(at + c)] = zero
                        else:
                            s = (rows[kh] + columns[kw]) * C
                            for c in range(C):
                                patch[np.uint64(at + c)] = src[np.uint64(s + c)]
                _nine_taps(patch, w, bias, dst, o + ow * C, C, 0, C, 2 * C, 3 * C, 4 * C,
                           5 * C, 6 * C, 7 * C, 8 * C)
            if finish:
                finish_block(dst, o, 0, 1, OW * Co, residual, code, slope)
            continue
        for ow in range(OW):
            for j in range(multiplier):
                # the pixel's C accumulators stay in L1 over every tap
                for c in range(C):
                    acc[np.uint64(c)] = zero
                for kd in range(KD):
                    sd_ = map_d[od * sd + kd * dd]
                    if sd_ < 0:
                        continue
                    for kh in range(KH):
                        sh_ = map_h[oh * sh + kh * dh]
                        if sh_ < 0:
                            continue
                        row = ((n * D + sd_) * H + sh_) * W
                        for kw in range(KW):
                            sw_ = map_w[ow * sw + kw * dw]
                            if sw_ < 0:
                                continue
                            s = (row + sw_) * C
                            t = (((j * KD + kd) * KH + kh) * KW + kw) * C
                            for c in range(C):
                                acc[np.uint64(c)] += src[np.uint64(s + c)] * w[np.uint64(t + c)]
                at = o + ow * Co + j
                for c in range(C):
                    co = c * multiplier + j
                    dst[np.uint64(at + c * multiplier)] = (acc[np.uint64(c)]
                                                           + (bias[co] if has_bias else zero))
        if finish:
            finish_block(dst, o, 0, 1, OW * Co, residual, code, slope)
