"""Direct convolution kernels for the CPU (numba ``@njit(parallel=True)``).

All kernels work on the canonical 3-D form (see :mod:`numbaconv.spec`):
input ``(N, C, D, H, W)``, weight ``(C_out, C_in/groups, KD, KH, KW)``, output
``(N, C_out, OD, OH, OW)``, all C-contiguous in the compute dtype.  Padding is
never seen by the compute loops: the input is gathered through the padding
index maps of :mod:`numbaconv.padding` into a padded buffer first.

Two loop orders, because no single one is fast for every shape:

``conv_channels_last``
    For layers with many input channels per group.  The input is packed to
    ``(N, Dp, Hp, Wp, C)`` so that, for one kernel row, the values one output
    pixel reads are contiguous; each output is then a dot product over that
    contiguous run.  See Note [register blocking]
~~~~~~~~~~~~~~~~~~~~~~~~
``conv_channels_last`` computes a block of 4 output pixels (along W) times 3
output channels at once: per reduction step it loads 4 input and 3 weight
values and performs 12 multiply-adds, so loads no longer limit the FMA
units.  The twelve accumulators are plain local scalars so that LLVM keeps
them in vector registers (with ``reassoc`` fast-math it vectorises the
reduction loop and sums the lanes once at the end).  4x3 is what fits the 16
AVX2 vector registers: 4x4 spilled accumulators to the stack and ran 1.5-2x
slower on resnet3x3; 2x4, 4x2 and 3x4 were measured slower too.  The operands
are *sliced views* (``row[start:start + length]``) indexed from 0: with the
offset inside the subscript (``row[start + i]``) LLVM did not vectorise and
the kernel was 5x slower.  When the kernel has dilation 1 along W and one
group, the input values of all kernel columns of one pixel are contiguous
too (``KW * C`` of them), so the reduction runs over ``KW * C`` at once
("merged kw"), which gives the long loops LLVM likes.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import cpu_kernel

#: Output pixels (along W) and output channels computed together by
#: conv_channels_last; see Note [register blocking].  The kernel body is
#: written out for exactly these sizes.
PIXEL_BLOCK = 4
CHANNEL_BLOCK = 3


# ---------------------------------------------------------------------------
# packing: gather the (padded) input into the layout a compute kernel wants
# ---------------------------------------------------------------------------

@cpu_kernel
def pack_channels_last(x, map_d, map_h, map_w, xp):
    """xp[n, d, h, w, c] = x[n, c, map_d[d], map_h[h], map_w[w]] (0 where a map is -1)."""
    N, C = x.shape[0], x.shape[1]
    Dp, Hp, Wp = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    zero = xp.dtype.type(0)
    for job in prange(N * Dp * Hp):
        n = job // (Dp * Hp)
        dp = (job // Hp) % Dp
        hp = job % Hp
        sd = map_d[dp]
        sh = map_h[hp]
        row = xp[n, dp, hp]
        if sd < 0 or sh < 0:
            for wp in range(Wp):
                for c in range(C):
                    row[wp, c] = zero
            continue
        for c in range(C):
            src = x[n, c, sd, sh]
            for wp in range(Wp):
                sw = map_w[wp]
                row[wp, c] = src[sw] if sw >= 0 else zero


@cpu_kernel(parallel=False)
def _gather_plane(src, map_d, map_h, map_w, pad_w, dst):
    """dst[d, h, w] = src[map_d[d], map_h[h], map_w[w]] for one channel plane.

    ``pad_w`` is the padding before W: the interior of every row is a plain
    contiguous copy, only the padding columns go through ``map_w``.
    """
    zero = dst.dtype.type(0)
    H, W = src.shape[1], src.shape[2]
    Hp, Wp = map_h.shape[0], map_w.shape[0]
    src_flat = src.ravel()
    dst_flat = dst.ravel()
    for dp in range(map_d.shape[0]):
        sd = map_d[dp]
        for hp in range(Hp):
            sh = map_h[hp]
            row = dst_flat[(dp * Hp + hp) * Wp:(dp * Hp + hp + 1) * Wp]
            if sd < 0 or sh < 0:
                for wp in range(Wp):
                    row[wp] = zero
                continue
            s = src_flat[(sd * H + sh) * W:(sd * H + sh + 1) * W]
            interior = row[pad_w:pad_w + W]
            for j in range(W):
                interior[j] = s[j]
            for wp in range(pad_w):
                sw = map_w[wp]
                row[wp] = s[sw] if sw >= 0 else zero
            for wp in range(pad_w + W, Wp):
                sw = map_w[wp]
                row[wp] = s[sw] if sw >= 0 else zero


# ---------------------------------------------------------------------------
# compute
# ---------------------------------------------------------------------------

@cpu_kernel
def conv_channels_last(xp, wp, bias, out, in_channels, groups, stride, dilation,
                       merge_kw):
    """Direct convolution over a channels-last padded input.

    Parameters
    ----------
    xp : (N, Dp, Hp, Wp * C) array
        Padded input from :func:`pack_channels_last`, last two axes merged.
    wp : (C_out, KD, KH, KW * C_in_g) array
        Weight with the input-channel axis moved last, last two axes merged.
    bias : (C_out,) array
        Added to every output (zeros when the user gave none).
    out : (N, C_out, OD, OH, OW) array
        Written in full.
    in_channels, groups : int
    stride, dilation : (3,) tuples of int
    merge_kw : bool
        Reduce over all kernel columns at once (needs W-dilation 1 and one
        group); see Note [register blocking] in the module docstring.

    One task is one output row of ``CHANNEL_BLOCK`` output channels; consecutive
    tasks share input rows, which therefore stay in cache.
    """
    N, Co, OD, OH = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
    blocks = (Co // groups + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    for job in prange(N * OD * OH * groups * blocks):
        cb = job % blocks
        g = (job // blocks) % groups
        oh = (job // (blocks * groups)) % OH
        od = (job // (blocks * groups * OH)) % OD
        n = job // (blocks * groups * OH * OD)
        _channels_last_task(xp, wp, bias, out, n, od, oh, g, cb, in_channels, groups,
                            stride, dilation, merge_kw)


@cpu_kernel(parallel=False)
def _channels_last_task(xp, wp, bias, out, n, od, oh, g, cb, in_channels, groups, stride,
                        dilation, merge_kw):
    """Output row ``(n, od, oh)`` of output-channel block ``cb`` of group ``g``.

    Ragged edges (a row length not a multiple of PIXEL_BLOCK, a group's
    channel count not a multiple of CHANNEL_BLOCK) reuse the full block with
    the out-of-range pixel or channel indices clamped to the last valid one,
    and skip those stores: a separate scalar edge loop doubled compile time.
    """
    Co, OW = out.shape[1], out.shape[4]
    KD, KH, KWC = wp.shape[1], wp.shape[2], wp.shape[3]
    C = in_channels
    cin_g = C // groups
    cout_g = Co // groups
    sd, sh, sw = stride
    dd, dh, dw = dilation
    if merge_kw:
        kw_count = 1
        length = KWC
    else:
        kw_count = KWC // cin_g if cin_g > 0 else 0
        length = cin_g
    cstart = g * cin_g
    co_first = g * cout_g + cb * CHANNEL_BLOCK
    co_stop = min(co_first + CHANNEL_BLOCK, (g + 1) * cout_g)
    co1 = min(co_first + 1, co_stop - 1)
    co2 = min(co_first + 2, co_stop - 1)
    zero = out.dtype.type(0)

    for ow in range(0, OW, PIXEL_BLOCK):
        # offsets (within a padded row) of the block's output pixels, clamped
        p0 = ow * sw * C + cstart
        p1 = min(ow + 1, OW - 1) * sw * C + cstart
        p2 = min(ow + 2, OW - 1) * sw * C + cstart
        p3 = min(ow + 3, OW - 1) * sw * C + cstart
        s00 = s01 = s02 = zero
        s10 = s11 = s12 = zero
        s20 = s21 = s22 = zero
        s30 = s31 = s32 = zero
        for kd in range(KD):
            for kh in range(KH):
                row = xp[n, od * sd + kd * dd, oh * sh + kh * dh]
                wr0 = wp[co_first, kd, kh]
                wr1 = wp[co1, kd, kh]
                wr2 = wp[co2, kd, kh]
                for kw in range(kw_count):
                    xo = kw * dw * C
                    wo = kw * cin_g
                    x0 = row[p0 + xo:p0 + xo + length]
                    x1 = row[p1 + xo:p1 + xo + length]
                    x2 = row[p2 + xo:p2 + xo + length]
                    x3 = row[p3 + xo:p3 + xo + length]
                    w0 = wr0[wo:wo + length]
                    w1 = wr1[wo:wo + length]
                    w2 = wr2[wo:wo + length]
                    for i in range(length):
                        a0 = x0[i]
                        a1 = x1[i]
                        a2 = x2[i]
                        a3 = x3[i]
                        c0 = w0[i]
                        c1 = w1[i]
                        c2 = w2[i]
                        s00 += a0 * c0
                        s01 += a0 * c1
                        s02 += a0 * c2
                        s10 += a1 * c0
                        s11 += a1 * c1
                        s12 += a1 * c2
                        s20 += a2 * c0
                        s21 += a2 * c1
                        s22 += a2 * c2
                        s30 += a3 * c0
                        s31 += a3 * c1
                        s32 += a3 * c2
        _store_pixel(out, n, od, oh, ow, co_first, co_stop, bias, s00, s01, s02)
        if ow + 1 < OW:
            _store_pixel(out, n, od, oh, ow + 1, co_first, co_stop, bias, s10, s11, s12)
        if ow + 2 < OW:
            _store_pixel(out, n, od, oh, ow + 2, co_first, co_stop, bias, s20, s21, s22)
        if ow + 3 < OW:
            _store_pixel(out, n, od, oh, ow + 3, co_first, co_stop, bias, s30, s31, s32)


@cpu_kernel(parallel=False)
def _store_pixel(out, n, od, oh, ow, co_first, co_stop, bias, v0, v1, v2):
    """Store one pixel's channel sums (plus bias), skipping clamped channels."""
    out[n, co_first, od, oh, ow] = v0 + bias[co_first]
    if co_first + 1 < co_stop:
        out[n, co_first + 1, od, oh, ow] = v1 + bias[co_first + 1]
    if co_first + 2 < co_stop:
        out[n, co_first + 2, od, oh, ow] = v2 + bias[co_first + 2]


@cpu_kernel
def conv_planes(x, map_d, map_h, map_w, pad_w, w, bias, out, groups, stride, dilation,
                chunks):
    """Direct convolution one (image, output channel) plane at a time.

    ``x`` is the unpadded canonical input; each task gathers the padded
    planes of its group's input channels into a private scratch buffer (small
    enough to stay in cache for the layers this kernel is chosen for), then
    accumulates ``out_row += w[tap] * in_row[shifted]`` along output rows.
    """
    N, Co = out.shape[0], out.shape[1]
    cin_g = x.shape[1] // groups
    jobs = N * Co
    # ``chunks`` (the thread count) runs of consecutive planes, so each thread
    # allocates its scratch once.  (The count is an argument because a call
    # to numba.get_num_threads() here would make the kernel uncacheable.)
    chunks = max(1, min(chunks, jobs))
    for chunk in prange(chunks):
        planes = np.empty((cin_g, map_d.shape[0], map_h.shape[0], map_w.shape[0]),
                          dtype=out.dtype)
        scratch = np.empty(_flat_span(out.shape[2:], planes.shape[1:]), dtype=out.dtype)
        for job in range(chunk * jobs // chunks, (chunk + 1) * jobs // chunks):
            n = job // Co
            co = job % Co
            g = co // (Co // groups)
            for ci in range(cin_g):
                _gather_plane(x[n, g * cin_g + ci], map_d, map_h, map_w, pad_w, planes[ci])
            _plane_task(planes, w[co], bias[co], out[n, co], stride, dilation, scratch)


@cpu_kernel(parallel=False)
def _flat_span(out_size, padded_size):
    """Length of the flat accumulator of Note [flat planes]."""
    OD, OH, OW = out_size
    Hp, Wp = padded_size[1], padded_size[2]
    return ((OD - 1) * Hp + (OH - 1)) * Wp + OW


@cpu_kernel(parallel=False)
def _plane_task(planes, w, bias, out, stride, dilation, acc):
    """out[od, oh, ow] = bias + sum over (ci, taps) of w[ci, tap] * planes[ci, shifted].

    See Note [flat planes] for the unit-stride case.
    """
    OD, OH, OW = out.shape
    cin_g, KD, KH, KW = w.shape
    sd, sh, sw = stride
    dd, dh, dw = dilation
    if sd == 1 and sh == 1 and sw == 1:
        # Note [flat planes]: with unit stride, output (od, oh, ow) reads
        # input flat index q + tap_offset, where q = (od*Hp + oh)*Wp + ow is
        # the output's own index in the *padded* geometry.  One long axpy per
        # tap over q then replaces OD*OH short row loops (the rows of a 28-wide
        # depthwise layer are too short to vectorise well); the Wp - OW
        # columns between rows are computed and discarded.
        Hp, Wp = planes.shape[2], planes.shape[3]
        span = ((OD - 1) * Hp + (OH - 1)) * Wp + OW   # == acc.shape[0]
        for q in range(span):
            acc[q] = bias
        for ci in range(cin_g):
            flat = planes[ci].ravel()
            for kd in range(KD):
                for kh in range(KH):
                    row = (kd * dd * Hp + kh * dh) * Wp
                    kw = 0
                    # three taps per pass: a third of the accumulator traffic
                    while kw + 3 <= KW:
                        t0 = w[ci, kd, kh, kw]
                        t1 = w[ci, kd, kh, kw + 1]
                        t2 = w[ci, kd, kh, kw + 2]
                        start = row + kw * dw
                        x0 = flat[start:start + span]
                        x1 = flat[start + dw:start + dw + span]
                        x2 = flat[start + 2 * dw:start + 2 * dw + span]
                        for q in range(span):
                            acc[q] += t0 * x0[q] + t1 * x1[q] + t2 * x2[q]
                        kw += 3
                    while kw < KW:
                        tap = w[ci, kd, kh, kw]
                        start = row + kw * dw
                        xs = flat[start:start + span]
                        for q in range(span):
                            acc[q] += tap * xs[q]
                        kw += 1
        # copy the valid columns out through flat 1-D row views (indexing a
        # 2-D row view per row measured 2.5x slower on 28-wide rows)
        flat_out = out.ravel()
        for od in range(OD):
            for oh in range(OH):
                src = acc[(od * Hp + oh) * Wp:(od * Hp + oh) * Wp + OW]
                dst = flat_out[(od * OH + oh) * OW:(od * OH + oh) * OW + OW]
                for ow in range(OW):
                    dst[ow] = src[ow]
        return
    for od in range(OD):
        for oh in range(OH):
            orow = out[od, oh]
            for ow in range(OW):
                orow[ow] = bias
            for ci in range(cin_g):
                for kd in range(KD):
                    for kh in range(KH):
                        xrow = planes[ci, od * sd + kd * dd, oh * sh + kh * dh]
                        for kw in range(KW):
                            tap = w[ci, kd, kh, kw]
                            for i in range(OW):
                                orow[i] += tap * xrow[kw * dw + i * sw]
