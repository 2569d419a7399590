"""Transposed convolutions as GEMMs with the weight as given (CPU kernels).

A transposed convolution with stride ``s``, padding ``p`` and dilation ``d``
adds ``x[n, ci, i] * w[ci, co, k]`` (``w``: the weight as the caller gave
it, ``(C_in, C_out/groups, KD, KH, KW)``) into output ``j = i * s - p + k *
d`` along each axis.  For one group, the products of an input tile are
one GEMM of the weight read as a ``(C_in/groups, C_out/groups * K)``
matrix (``K = KD * KH * KW`` taps, columns ``(co, k)``), and each product
is then added into its output position.

Note [transposed GEMM]
~~~~~~~~~~~~~~~~~~~~~~
The weight is multiplied as it is stored (Note [transposed weight] in
:mod:`numbaconv.rewrites`): no copy of it is made per call.  Two forms,
both tasks of :func:`numbaconv.kernels.parallel.run_in_chunks`:

* **planes** (:func:`transposed_planes`): per image, ``columns = w_g^T @
  x[n, g, tile]`` (BLAS with A transposed, :func:`~numbaconv.kernels.blas.gemm_tn`),
  a row per (output channel, tap) and a column per input pixel, added into
  the output planes along whole input rows (PyTorch's col2im, with the
  weight read in place).  Channels-first arrays.
* **rows** (:func:`transposed_rows`): the input as a matrix of rows, one
  per input pixel of every image, ``(N * D * H * W, C_in)`` -- a channels-last
  input as it is, a one-pixel input in either layout as it is, any other
  channels-first input through a transposed copy -- so ``columns = rows @
  w_g`` is a plain GEMM whose rows run over all images: the weight is read
  once per call, not once per image, which is what layers with small maps
  and large weights (a GAN generator's projection from a 1x1 input, a
  decoder's first up-convolutions) are made of.  It writes channels-first
  or channels-last output.

A job owns a block of output channels and a *band* of the output, so no two
jobs ever add into the same value and each job adds in a fixed order:
results do not depend on the thread count.  The band is a range of slices
along the first input axis longer than one (the *band axis*: depth, else
height, else width): input slice ``a`` owns the output slices of its stride
window, ``[a * s - p, (a + 1) * s - p)``, and a band also computes the
``halo = (k - 1) * d // s`` input slices before it whose taps reach into
its windows, keeping only the products that land there
(:func:`band_geometry`; one slice for 4x4 stride 2, none when the kernel
is no longer than the stride: a U-Net's 2x2 stride-2 up-convolution splits
into many small jobs of whole rows).  When every axis is a bijection --
kernel equal to the stride, undilated, every output reached --
(``overwrite``) each output value receives exactly one product: it is
stored with its bias instead of added into a bias-filled output, one pass
over the output less.  Each job applies the fused epilogue to its band
once every product is in (Note [epilogue] in :mod:`numbaconv.epilogue`).

Why this formulation: the products are formed without the inserted zeros
(as col2im's were), the weight is never copied, and for the small maps of
a generator's first layers the rows form reads it once per call.
pix2pix's ``up8`` (512 -> 512, 4x4 stride 2 from a 1x1 map) at batch 1
took 15.6 ms before (two copies of its 16 MiB weight, then col2im) and 1.35
ms after, PyTorch 8.3-8.9 ms in the same (loaded) minute
(docs/results-transposed.md, which also says why a phase decomposition was
not taken).

Note [paired taps]
~~~~~~~~~~~~~~~~~~
In the planes form a GEMM result row (one output channel, one tap) is added
along an input row into every ``s``-th output column.  With stride 2 those
stores are scalar (AVX2 has no scatter): 2.2 ms for 3.2 million products
in rows of 28, against 0.7 ms at stride 1.  Taps ``kw`` and ``kw + 1``
fill the even and the odd columns of the same output row, so they are
added together, two interleaved runs in one loop that LLVM vectorises
with shuffles: 0.74 ms (numba, one thread, the 2-core AVX2 EPYC).  Each
output value still receives its products in the same order.

Note [row counters]
~~~~~~~~~~~~~~~~~~~
The scatters know each product's input pixel and tap by counters carried
from one to the next, not by dividing a flat index: a 64-bit integer
division costs tens of cycles, and the rows form divided eight times per
input pixel and tap.  On pix2pix's last layer (128 -> 3 channels,
128x128) with channels-last input, where each product is a run of three
channels, the divisions were most of the call: 8.2 ms against 3.9 for the
planes (2 threads, docs/results-transposed.md).

Note [taps by channel block]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~
In the rows form with channels-last output, one input pixel's products
for one tap go to one output pixel's channels, contiguous in the output
but ``K`` apart in a result whose columns are (channel, tap), the
weight's order: a strided gather per product.  When the rows outnumber
half the input channels, the weight is copied once per call with each
channel block's columns reordered to (tap, channel)
(:func:`weight_by_tap`): the GEMM is the same and each tap's products are a
contiguous run.  For the small maps the rows form is for, the weight is
most of the data and is used as given.
"""

from __future__ import annotations

import math

import numpy as np

from .blas import gemm, gemm_tn
from .epilogue_block import finish_args, finish_block
from .im2col_cpu import _next_tap
from .jit import cpu_kernel, inline_helper
from ..workspaces import scratch
from .parallel import run_in_chunks


def _bijective(n, o, k, s, d, p):
    """Whether outputs ``[0, o)`` of one axis each receive exactly one
    (input, tap) pair: kernel equal to the stride, undilated, and every
    output reached by an input."""
    return k == s and (d == 1 or k == 1) and p >= 0 and o + p <= n * s


def band_geometry(input_size, output_size, kernel_size, stride, dilation, padding):
    """How a transposed problem's jobs split its output (Note [transposed GEMM]).

    All arguments are 3-tuples (depth, height, width); ``padding`` is the
    transposed convolution's padding before each axis.  Returns ``(axis,
    units, slab, oslab, s, p, o, halo, overwrite)``: an image is ``units``
    slices of the band axis ``axis`` (``units == 1``: the whole image is
    one unit) of ``slab`` input pixels each; unit ``a`` owns the output
    slices ``[a * s - p, (a + 1) * s - p)`` clipped to ``[0, o)`` (the
    first from 0, the last to ``o``), each ``oslab`` output values of a
    channel, and its products come from the input slices ``a - halo`` to
    ``a``; ``overwrite``: every axis is a bijection, each output value
    receives exactly one product."""
    axes = list(zip(input_size, output_size, kernel_size, stride, dilation, padding))
    overwrite = all(_bijective(*axis) for axis in axes)
    whole = (0, 1, math.prod(input_size), math.prod(output_size), 1, 0, 1, 0, overwrite)
    for i, (n, o, k, s, d, p) in enumerate(axes):
        if n == 1 and o == 1:
            continue
        if n == 1:
            return whole
        return (i, n, math.prod(input_size[i + 1:]), math.prod(output_size[i + 1:]), s, p, o,
                (k - 1) * d // s, overwrite)
    return whole


def transposed_planes(gemm_address, int_witness, x, w, bias, out, kernel_size, stride,
                      dilation, padding, geometry, cblocks, bands, tile, chunks, finish=None):
    """A transposed convolution by per-image GEMMs into output planes (Note
    [transposed GEMM], the planes form).

    ``x`` is the canonical input ``(N, C_in, D, H, W)``, ``w`` the weight as
    given, ``(C_in, C_out/groups, KD, KH, KW)``, ``out`` the canonical output
    ``(N, C_out, OD, OH, OW)`` (written in full); ``kernel_size``,
    ``stride``, ``dilation`` and ``padding`` (before) are the transposed
    convolution's, per axis; ``geometry`` is :func:`band_geometry`'s.  A job
    is (image, group, one of ``cblocks`` output-channel blocks, one of
    ``bands`` bands of its units); ``tile`` input pixels make one GEMM.
    ``finish`` is the epilogue's ``(code, slope, residual)``; None: bias
    only.
    """
    N, C, D, H, W = x.shape
    groups = out.shape[1] // w.shape[1]
    K = kernel_size[0] * kernel_size[1] * kernel_size[2]
    run_in_chunks(_planes_chunk,
                  (gemm_address, int_witness, x.reshape(N, C, D * H * W),
                   w.reshape(w.shape[0], w.shape[1] * K), bias, out, D, H, W, *kernel_size,
                   *stride, *dilation, *padding, *geometry, cblocks, bands, tile,
                   *finish_args(finish, out.dtype)),
                  N * groups * cblocks * bands, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _planes_chunk(gemm_address, int_witness, x, w, bias, out, D, H, W, KD, KH, KW, sd, sh, sw,
                  dd, dh, dw, pd, ph, pw, axis, units, slab, oslab, sa, pa, oa, halo, overwrite,
                  cblocks, bands, tile, code, slope, residual, first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of transposed_planes; job = (n,
    group, channel block, band)."""
    N, C, P = x.shape
    Co, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    K = KD * KH * KW
    cout_g = w.shape[1] // K
    groups = Co // cout_g
    cin_g = C // groups
    plane = OD * OH * OW
    block = (cout_g + cblocks - 1) // cblocks
    columns = np.empty(block * K * tile, dtype=out.dtype)
    row_d = np.empty(tile // W + 2, dtype=np.int64)
    row_h = np.empty(tile // W + 2, dtype=np.int64)
    flat_out = out.ravel()
    zero = out.dtype.type(0)
    has_bias = bias.shape[0] > 0
    pairs = sw == 2 and dw == 1
    for job in range(first_job, stop_job):
        band = job % bands
        cb = (job // bands) % cblocks
        gi = (job // (bands * cblocks)) % groups
        n = job // (bands * cblocks * groups)
        c0 = cb * block
        c1 = min(cout_g, c0 + block)
        u0 = band * units // bands
        u1 = (band + 1) * units // bands
        if c0 >= c1 or u0 >= u1:
            continue
        ch0 = gi * cout_g + c0                        # the block's first output channel
        q0 = 0 if u0 == 0 else min(oa, max(0, u0 * sa - pa))     # its output slices
        q1 = oa if u1 == units else max(q0, min(oa, u1 * sa - pa))
        region = (q1 - q0) * oslab
        # the products it keeps: inside the output, and its slices of the band axis
        lo_d, hi_d, lo_h, hi_h, lo_w, hi_w = _bounds(axis, units, q0, q1, OD, OH, OW)
        if not overwrite:
            for c in range(c1 - c0):
                v = bias[ch0 + c] if has_bias else zero
                base = (n * Co + ch0 + c) * plane + q0 * oslab
                for i in range(region):
                    flat_out[np.uint64(base + i)] = v
        nrows = (c1 - c0) * K
        first_pixel = max(0, u0 - halo) * slab     # with the slices whose taps reach in
        stop_pixel = u1 * slab
        for t0 in range(first_pixel, stop_pixel, tile):
            pixels = min(tile, stop_pixel - t0)
            cols = columns[:nrows * pixels].reshape(nrows, pixels)
            gemm_tn(gemm_address, int_witness, w[gi * cin_g:(gi + 1) * cin_g, c0 * K:c1 * K],
                    x[n, gi * cin_g:(gi + 1) * cin_g, t0:t0 + pixels], cols, 0.0)
            first_row = t0 // W
            last_row = (t0 + pixels - 1) // W
            # each input row's first output slice along depth and height,
            # counted up (Note [row counters])
            id_ = first_row // H
            ih = first_row % H
            for row in range(first_row, last_row + 1):
                row_d[row - first_row] = id_ * sd - pd
                row_h[row - first_row] = ih * sh - ph
                ih += 1
                if ih == H:
                    ih = 0
                    id_ += 1
            for co in range(c1 - c0):
                obase = (n * Co + ch0 + co) * plane
                bv = bias[ch0 + co] if has_bias else zero
                for kd in range(KD):
                    for kh in range(KH):
                        kw = 0
                        while kw < KW:
                            # Note [paired taps]: stride 2, taps kw and kw + 1
                            paired = pairs and kw + 1 < KW
                            r = ((co * KD + kd) * KH + kh) * KW + kw
                            shift_w = kw * dw - pw
                            iw0, iw1 = _columns(shift_w, sw, W, lo_w, hi_w)
                            jw0, jw1 = _columns(shift_w + 1, sw, W, lo_w, hi_w)
                            for row in range(first_row, last_row + 1):
                                jd = row_d[row - first_row] + kd * dd
                                jh = row_h[row - first_row] + kh * dh
                                if jd < lo_d or jd >= hi_d or jh < lo_h or jh >= hi_h:
                                    continue
                                lo = t0 - row * W
                                hi = t0 + pixels - row * W
                                src = r * pixels + row * W - t0
                                dst = obase + (jd * OH + jh) * OW + shift_w
                                a0 = max(iw0, lo)
                                b0 = min(iw1, hi)
                                if not paired:
                                    _add_run(flat_out, dst, sw, columns, src, a0, b0, bv,
                                             overwrite)
                                    continue
                                a1 = max(jw0, lo)
                                b1 = min(jw1, hi)
                                m0 = max(a0, a1)
                                m1 = max(m0, min(b0, b1))
                                # the ends one tap has alone, then both together
                                _add_run(flat_out, dst, 2, columns, src, a0, min(b0, m0), bv,
                                         overwrite)
                                _add_run(flat_out, dst, 2, columns, src, max(a0, m1), b0, bv,
                                         overwrite)
                                _add_run(flat_out, dst + 1, 2, columns, src + pixels, a1,
                                         min(b1, m0), bv, overwrite)
                                _add_run(flat_out, dst + 1, 2, columns, src + pixels,
                                         max(a1, m1), b1, bv, overwrite)
                                if overwrite:
                                    for iw in range(m0, m1):
                                        flat_out[np.uint64(dst + 2 * iw)] = \
                                            columns[np.uint64(src + iw)] + bv
                                        flat_out[np.uint64(dst + 2 * iw + 1)] = \
                                            columns[np.uint64(src + pixels + iw)] + bv
                                else:
                                    for iw in range(m0, m1):
                                        flat_out[np.uint64(dst + 2 * iw)] += \
                                            columns[np.uint64(src + iw)]
                                        flat_out[np.uint64(dst + 2 * iw + 1)] += \
                                            columns[np.uint64(src + pixels + iw)]
                            kw += 2 if paired else 1
        if code != 0 or residual.shape[0] > 0:         # the fused epilogue: Note [epilogue]
            finish_block(flat_out, (n * Co + ch0) * plane + q0 * oslab, plane, c1 - c0, region,
                         residual, code, slope)


@inline_helper
def _columns(shift, stride, W, lo, hi):
    """The input columns ``[iw0, iw1)`` whose output column ``iw * stride +
    shift`` lies in ``[lo, hi)``."""
    iw0 = max(0, (lo - shift + stride - 1) // stride)
    iw1 = min(W, (hi - 1 - shift) // stride + 1) if hi - 1 - shift >= 0 else 0
    return iw0, max(iw0, iw1)


@inline_helper
def _bounds(axis, units, q0, q1, OD, OH, OW):
    """The output ranges a job keeps products in, per axis: all of each
    axis but the band axis's slices ``[q0, q1)`` (with more than one unit)."""
    lo_d, hi_d, lo_h, hi_h, lo_w, hi_w = 0, OD, 0, OH, 0, OW
    if units > 1:
        if axis == 0:
            lo_d, hi_d = q0, q1
        elif axis == 1:
            lo_h, hi_h = q0, q1
        else:
            lo_w, hi_w = q0, q1
    return lo_d, hi_d, lo_h, hi_h, lo_w, hi_w


@inline_helper
def _add_run(flat_out, dst, step, columns, src, a, b, bv, overwrite):
    """``flat_out[dst + iw * step] += columns[src + iw]`` for ``a <= iw < b``
    (``overwrite``: ``= columns[...] + bv``)."""
    if overwrite:
        for iw in range(a, b):
            flat_out[np.uint64(dst + iw * step)] = columns[np.uint64(src + iw)] + bv
    else:
        for iw in range(a, b):
            flat_out[np.uint64(dst + iw * step)] += columns[np.uint64(src + iw)]


def weight_by_tap(w, cblocks):
    """The weight as given, ``(C_in, C_out/groups, KD, KH, KW)``, as the
    ``(C_in, C_out/groups * K)`` matrix whose columns run over (channel
    block, tap, channel) instead of (channel, tap): a block's columns are
    the same range, and its products for one tap are contiguous channels
    (Note [taps by channel block]; a scratch copy of the call: Note
    [workspace arena] in numbaconv/workspaces.py)."""
    cin, cout_g = w.shape[:2]
    w3 = w.reshape(cin, cout_g, -1)
    K = w3.shape[2]
    block = -(-cout_g // cblocks)
    result = scratch((cin, cout_g * K), w.dtype)
    for c0 in range(0, cout_g, block):
        c1 = min(cout_g, c0 + block)
        result[:, c0 * K:c1 * K].reshape(cin, K, c1 - c0)[...] = \
            w3[:, c0:c1, :].transpose(0, 2, 1)
    return result


@inline_helper
def _owned(j, n, units, pa, sa, u0, u1):
    """Whether output slice ``j`` of the band axis in image ``n`` belongs to
    the units ``[u0, u1)`` (always, with one unit per image)."""
    if units == 1:
        return True
    u = n * units + min(units - 1, (j + pa) // sa)
    return u0 <= u < u1


def transposed_rows(gemm_address, int_witness, rows, w, bias, out, channels_last, input_size,
                    kernel_size, stride, dilation, padding, geometry, cblocks, bands, tile,
                    chunks, finish=None, by_tap=False):
    """A transposed convolution by GEMMs over the input's rows of every image
    (Note [transposed GEMM], the rows form).

    ``rows`` is the input as ``(N * D * H * W, C_in)`` (pixel-major, any row
    stride of at least ``C_in``), ``w`` the weight as given, ``out`` the
    output, ``(N, C_out, OD, OH, OW)`` or (``channels_last``) ``(N, OD, OH,
    OW, C_out)``, written in full; ``input_size`` is ``(D, H, W)``; the other
    sizes as :func:`transposed_planes`.  A job is (group, one of ``cblocks``
    output-channel blocks, one of ``bands`` bands of the ``N * units``
    units); ``tile`` rows make one GEMM.  ``by_tap``: ``w`` is
    :func:`weight_by_tap` of the weight (a ``(C_in, C_out/groups * K)``
    matrix) and ``out`` channels-last.
    """
    K = kernel_size[0] * kernel_size[1] * kernel_size[2]
    if channels_last:
        N, OD, OH, OW, Co = out.shape
    else:
        N, Co, OD, OH, OW = out.shape
    groups = Co * K // w.reshape(w.shape[0], -1).shape[1]
    run_in_chunks(_rows_chunk,
                  (gemm_address, int_witness, rows, w.reshape(w.shape[0], -1), bias,
                   out.reshape(-1), channels_last, by_tap, N, Co, *input_size, OD, OH, OW,
                   *kernel_size, *stride, *dilation, *padding, *geometry, cblocks, bands, tile,
                   *finish_args(finish, out.dtype)),
                  groups * cblocks * bands, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _rows_chunk(gemm_address, int_witness, rows, w, bias, flat_out, channels_last, by_tap, N,
                Co, D, H, W, OD, OH, OW, KD, KH, KW, sd, sh, sw, dd, dh, dw, pd, ph, pw, axis,
                units, slab, oslab, sa, pa, oa, halo, overwrite, cblocks, bands, tile, code,
                slope, residual, first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of transposed_rows; job = (group,
    channel block, band)."""
    C = rows.shape[1]
    K = KD * KH * KW
    cout_g = w.shape[1] // K
    groups = Co // cout_g
    cin_g = C // groups
    P = D * H * W
    plane = OD * OH * OW
    total = N * units
    block = (cout_g + cblocks - 1) // cblocks
    columns = np.empty(tile * block * K, dtype=flat_out.dtype)
    zero = flat_out.dtype.type(0)
    has_bias = bias.shape[0] > 0
    # an output value's step between neighbouring channels
    cstep = 1 if channels_last else plane
    for job in range(first_job, stop_job):
        band = job % bands
        cb = (job // bands) % cblocks
        gi = job // (bands * cblocks)
        c0 = cb * block
        c1 = min(cout_g, c0 + block)
        u0 = band * total // bands
        u1 = (band + 1) * total // bands
        if c0 >= c1 or u0 >= u1:
            continue
        ch0 = gi * cout_g + c0
        nc = c1 - c0
        if not overwrite:
            for u in range(u0, u1):
                n = u // units
                a = u % units
                q0 = 0 if a == 0 else min(oa, max(0, a * sa - pa))
                q1 = oa if a == units - 1 else max(q0, min(oa, (a + 1) * sa - pa))
                if channels_last:            # pixel by pixel: runs of the block's channels
                    for i in range(q0 * oslab, q1 * oslab):
                        base = (n * plane + i) * Co + ch0
                        for c in range(nc):
                            flat_out[np.uint64(base + c)] = bias[ch0 + c] if has_bias else zero
                    continue
                for c in range(nc):
                    v = bias[ch0 + c] if has_bias else zero
                    base = (n * Co + ch0 + c) * plane
                    for i in range(q0 * oslab, q1 * oslab):
                        flat_out[np.uint64(base + i)] = v
        width = nc * K
        # with the slices before it whose taps reach in, in its own image
        first_row = max((u0 // units) * units, u0 - halo) * slab
        stop_row = u1 * slab
        for t0 in range(first_row, stop_row, tile):
            count = min(tile, stop_row - t0)
            cols = columns[:count * width].reshape(count, width)
            gemm(gemm_address, int_witness, rows[t0:t0 + count, gi * cin_g:(gi + 1) * cin_g],
                 w[gi * cin_g:(gi + 1) * cin_g, c0 * K:c1 * K], cols, 0.0)
            # the first row's image and input position, then counted up
            # (Note [row counters])
            n = t0 // P
            i = t0 % P
            id_ = i // (H * W)
            ih = (i // W) % H
            iw = i % W
            for q in range(count):
                for kd in range(KD):
                    jd = id_ * sd - pd + kd * dd
                    if jd < 0 or jd >= OD or (axis == 0 and not _owned(
                            jd, n, units, pa, sa, u0, u1)):
                        continue
                    for kh in range(KH):
                        jh = ih * sh - ph + kh * dh
                        if jh < 0 or jh >= OH or (axis == 1 and not _owned(
                                jh, n, units, pa, sa, u0, u1)):
                            continue
                        for kw in range(KW):
                            jw = iw * sw - pw + kw * dw
                            if jw < 0 or jw >= OW or (axis == 2 and not _owned(
                                    jw, n, units, pa, sa, u0, u1)):
                                continue
                            k = (kd * KH + kh) * KW + kw
                            o = (jd * OH + jh) * OW + jw
                            dst = (n * plane + o) * Co + ch0 if channels_last else \
                                (n * Co + ch0) * plane + o
                            if by_tap:        # Note [taps by channel block]: contiguous runs
                                src = q * width + k * nc
                                if overwrite:
                                    for c in range(nc):
                                        flat_out[np.uint64(dst + c)] = \
                                            columns[np.uint64(src + c)] + (
                                                bias[ch0 + c] if has_bias else zero)
                                else:
                                    for c in range(nc):
                                        flat_out[np.uint64(dst + c)] += \
                                            columns[np.uint64(src + c)]
                                continue
                            src = q * width + k
                            if overwrite:
                                for c in range(nc):
                                    flat_out[np.uint64(dst + c * cstep)] = \
                                        columns[np.uint64(src + c * K)] + (
                                            bias[ch0 + c] if has_bias else zero)
                            else:
                                for c in range(nc):
                                    flat_out[np.uint64(dst + c * cstep)] += \
                                        columns[np.uint64(src + c * K)]
                n, id_, ih, iw = _next_tap(n, id_, ih, iw, D, H, W)
        if code != 0 or residual.shape[0] > 0:         # the fused epilogue: Note [epilogue]
            for u in range(u0, u1):
                n = u // units
                a = u % units
                q0 = 0 if a == 0 else min(oa, max(0, a * sa - pa))
                q1 = oa if a == units - 1 else max(q0, min(oa, (a + 1) * sa - pa))
                if channels_last:
                    finish_block(flat_out, (n * plane + q0 * oslab) * Co + ch0, Co,
                                 (q1 - q0) * oslab, nc, residual, code, slope)
                else:
                    finish_block(flat_out, (n * Co + ch0) * plane + q0 * oslab, plane, nc,
                                 (q1 - q0) * oslab, residual, code, slope)


def one_pixel_pointwise(rows, w, bias, out, column_blocks, chunks, finish=None):
    """A pointwise (1x1 kernel, stride 1, unpadded) transposed convolution of
    one-pixel images: ``out[n, gr, j] = sum_i rows[n, gr, i] * w[gr, i, j]
    + bias``, the input channels ``i`` in order, for ``rows`` ``(N, groups,
    C_in/groups)``, the weight as given ``(groups, C_in/groups,
    C_out/groups)`` and ``out`` ``(N, groups, C_out/groups)`` (one pixel:
    the same memory channels-first and channels-last).  A
    squeeze-excitation layer's input gradient: the rows form's GEMM of one
    row packed the whole weight every call (docs/results-im2col.md,
    "Squeeze-excitation layers in training").  A job is one of ``column_blocks``
    blocks of one image's and group's output channels; ``finish`` as for
    :func:`numbaconv.kernels.im2col_cpu.pointwise_conv`."""
    N, groups = rows.shape[0], rows.shape[1]
    run_in_chunks(_one_pixel_chunk, (rows, w, bias, out, column_blocks,
                                     *finish_args(finish, out.dtype)),
                  N * groups * column_blocks, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _one_pixel_chunk(rows, w, bias, out, column_blocks, code, slope, residual, first_job,
                     stop_job):
    """Jobs ``first_job <= job < stop_job`` of one_pixel_pointwise; job =
    (image, group, block of output channels)."""
    groups, cin_g, cout_g = w.shape
    flat = out.ravel()
    zero = out.dtype.type(0)
    for job in range(first_job, stop_job):
        block = job % column_blocks
        gr = (job // column_blocks) % groups
        n = job // (column_blocks * groups)
        j0 = block * cout_g // column_blocks
        j1 = (block + 1) * cout_g // column_blocks
        if j1 <= j0:
            continue
        target = out[n, gr, j0:j1]
        for j in range(j1 - j0):
            target[j] = zero
        for i in range(cin_g):
            value = rows[n, gr, i]
            source = w[gr, i, j0:j1]
            for j in range(j1 - j0):
                target[j] += value * source[j]
        if bias.shape[0]:
            for j in range(j1 - j0):
                target[j] += bias[gr * cout_g + j0 + j]
        if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
            finish_block(flat, (n * groups + gr) * cout_g + j0, 0, 1, j1 - j0, residual, code,
                         slope)

