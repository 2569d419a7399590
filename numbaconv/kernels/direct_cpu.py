"""Direct convolution kernels for the CPU (numba; serial tasks run on numba's
thread pool by :func:`numbaconv.kernels.parallel.run_in_chunks`).

All kernels work on the canonical 3-D form (see :mod:`numbaconv.spec`):
input ``(N, C, D, H, W)``, weight ``(C_out, C_in/groups, KD, KH, KW)``, output
``(N, C_out, OD, OH, OW)``, all C-contiguous in the compute dtype.  Padding
is resolved before the multiply-adds: either by gathering through the
padding index maps of :mod:`numbaconv.padding`, or (same-width planes) by
restricting each tap's range.

Three loop orders, because no single one is fast for every shape; the
``direct`` algorithm picks one (``numbaconv.algorithms.direct``), and each
serves every spec it accepts:

``conv_channels_last``
    Layers with many input channels per group.  See Note [patch rows] and
    Note [register blocking].
``conv_planes_same_width``
    Zero-padded, unit-stride 1-D/2-D layers with few channels per group
    whose output is as wide as the input: depthwise ``k x k`` with padding
    ``k // 2``.  See Note [same-width planes].
``conv_planes``
    Everything else with few channels per group (strided, non-zero padding
    modes, 3-D).  Each plane is gathered into a padded scratch plane and
    computed row by row; kept simple because it is rare and its compile time
    counts.

The compute kernels are Python functions that split their jobs into
``chunks`` runs (the thread count, so that per-thread scratch buffers are
allocated once per call) and run a serial numba task on each through
:func:`numbaconv.kernels.parallel.run_in_chunks`, which compiles the task
once instead of once per layer of numba's parallel machinery (Note
[parallel shell] there).

Note [patch rows]
~~~~~~~~~~~~~~~~~
``conv_channels_last`` packs the padded input once to ``(N, Dp, Hp, Wp, C)``.
A task is a run of up to PATCH_PIXELS output pixels of one output row and
one group: it copies each pixel's receptive field, in the weight's
``(kd, kh, kw, c)`` order, into one row of a per-thread patch buffer (for one
group and W-dilation 1 that is KD*KH contiguous runs of ``KW * C`` values),
then every output is a single dot product of a patch row with a weight row.
The patch rows of a 4-pixel block stay in L1 while all weight rows of the
group stream past them from L2 (pixel blocks outside, channel blocks
inside; the other order streamed the larger patch and was 2x slower).  On
resnet3x3 this kernel took 6.8-7.6 ms against 12-13 ms for the earlier one
that read the packed rows in place (three dot products per output, each
ending in a horizontal sum), the copy included.

Note [register blocking]
~~~~~~~~~~~~~~~~~~~~~~~~
The dot products are computed for a block of 4 pixels times 3 output
channels at once: per reduction step 4 input and 3 weight loads feed 12
multiply-adds, so loads no longer limit the FMA units.  The twelve
accumulators are plain local scalars so that LLVM keeps them in vector
registers (with ``reassoc`` fast-math it vectorises the reduction loop and
sums the lanes once at the end).  4x3 is what fits the 16 AVX2 vector
registers: 4x4 spilled accumulators to the stack and ran 1.5-2x slower on
resnet3x3; 2x4, 4x2 and 3x4 were measured slower too.  The operands are
*sliced views* (``row[start:start + length]``) indexed from 0: with the
offset inside the subscript (``row[start + i]``) LLVM did not vectorise and
the kernel was 5x slower.  Ragged edges (fewer than 4 pixels or 3 channels
left) reuse the full block with clamped indices and skip those stores; a
separate scalar edge loop doubled the compile time.

Note [reference counts]
~~~~~~~~~~~~~~~~~~~~~~~
Every array view numba creates (``a[i]``, ``a[i:j]``, ``a.ravel()``) and
every array passed to a function that is not inlined updates the array's
reference count with an atomic instruction; when all threads do that on the
same input or output array, the cache line holding the count bounces
between cores.  Per-block helper calls with array arguments cost about a
third of the channels-last kernel's time, and per-run views in the patch
copy another 10%; so the hot loops take flat views once per task and index
them, with unsigned integers where LLVM must vectorise the loop (a signed
computed index carries Python's negative-index fix-up, which stops the
vectoriser).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import cpu_kernel
from .parallel import run_in_chunks

#: Output pixels (along W) and output channels computed together by
#: conv_channels_last; see Note [register blocking].  The kernel body is
#: written out for exactly these sizes.
PIXEL_BLOCK = 4
CHANNEL_BLOCK = 3
#: Output pixels per patch buffer (Note [patch rows]); bounds the buffer to
#: PATCH_PIXELS * KD*KH*KW*C_in/groups values per thread.
PATCH_PIXELS = 64


# ---------------------------------------------------------------------------
# packing: gather the (padded) input into the layout a compute kernel wants
# ---------------------------------------------------------------------------

@cpu_kernel
def pack_channels_last(x, map_d, map_h, map_w, xp):
    """xp[n, d, h, w, c] = x[n, c, map_d[d], map_h[h], map_w[w]] (0 where a map is -1).

    Channels inner: each packed pixel is written as one contiguous run while
    the reads stride over the C input planes of one row (all in L1).  The
    other order (contiguous reads, writes strided by C) took 1.4x as long on
    resnet3x3's input.  Flat views and unsigned indices: Note [reference
    counts].
    """
    N, C, D, H, W = x.shape
    Dp, Hp, Wp = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    zero = xp.dtype.type(0)
    plane = D * H * W
    src = x.ravel()
    dst = xp.ravel()
    for job in prange(N * Dp * Hp):
        n = job // (Dp * Hp)
        sd = map_d[(job // Hp) % Dp]
        sh = map_h[job % Hp]
        row = job * Wp * C
        if sd < 0 or sh < 0:
            for i in range(Wp * C):
                dst[np.uint64(row + i)] = zero
            continue
        first = (n * C * D + sd) * H * W + sh * W
        for wp in range(Wp):
            sw = map_w[wp]
            at = row + wp * C
            if sw < 0:
                for c in range(C):
                    dst[np.uint64(at + c)] = zero
            else:
                for c in range(C):
                    dst[np.uint64(at + c)] = src[np.uint64(first + sw + c * plane)]


@cpu_kernel(parallel=False)
def _gather_plane(src, map_d, map_h, map_w, dst):
    """dst[d, h, w] = src[map_d[d], map_h[h], map_w[w]] for one channel plane."""
    zero = dst.dtype.type(0)
    for dp in range(map_d.shape[0]):
        sd = map_d[dp]
        for hp in range(map_h.shape[0]):
            sh = map_h[hp]
            row = dst[dp, hp]
            for wp in range(map_w.shape[0]):
                sw = map_w[wp]
                row[wp] = src[sd, sh, sw] if sd >= 0 and sh >= 0 and sw >= 0 else zero


# ---------------------------------------------------------------------------
# compute
# ---------------------------------------------------------------------------

def conv_channels_last(xp, wp, bias, out, kernel_size, groups, stride, dilation, chunks):
    """Direct convolution over a channels-last padded input.

    Parameters
    ----------
    xp : (N, Dp, Hp, Wp, C) array
        Padded input from :func:`pack_channels_last`.
    wp : (C_out, KD * KH * KW * C_in_g) array
        Weight with the input-channel axis moved last, then flattened.
    bias : (C_out,) array
        Added to every output (zeros when the user gave none).
    out : (N, C_out, OD, OH, OW) array
        Written in full.
    kernel_size, stride, dilation : (3,) tuples of int
    groups : int
    chunks : int
        Number of parallel chunks (the thread count); each allocates its
        patch buffer once.

    A job is a run of at most PATCH_PIXELS output pixels of one output row
    and one group; see Note [patch rows].
    """
    N, _, OD, OH, OW = out.shape
    runs = (OW + PATCH_PIXELS - 1) // PATCH_PIXELS
    run_in_chunks(_channels_last_chunk,
                  (xp, wp, bias, out, groups, *kernel_size, *stride, *dilation),
                  N * OD * OH * runs * groups, chunks)


@cpu_kernel(parallel=False)
def _channels_last_chunk(xp, wp, bias, out, groups, KD, KH, KW, sd, sh, sw, dd, dh, dw,
                         first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of conv_channels_last."""
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    cin_g = xp.shape[4] // groups
    runs = (OW + PATCH_PIXELS - 1) // PATCH_PIXELS
    stride = (sd, sh, sw)
    dilation = (dd, dh, dw)
    patch = np.empty((PATCH_PIXELS, KD * KH * KW * cin_g), dtype=out.dtype)
    for job in range(first_job, stop_job):
        g = job % groups
        run = (job // groups) % runs
        oh = (job // (groups * runs)) % OH
        od = (job // (groups * runs * OH)) % OD
        n = job // (groups * runs * OH * OD)
        ow0 = run * PATCH_PIXELS
        pixels = min(PATCH_PIXELS, OW - ow0)
        _fill_patch(xp, n, od, oh, ow0, pixels, g * cin_g, cin_g, KD, KH, KW, stride,
                    dilation, patch)
        _patch_times_weights(patch, pixels, wp, bias, out, n, od, oh, ow0, g, groups)


@cpu_kernel(parallel=False)
def _fill_patch(xp, n, od, oh, ow0, pixels, cstart, cin_g, KD, KH, KW, stride, dilation,
                patch):
    """patch[p] = the input values output pixel ow0 + p multiplies, in weight order.

    Flat views taken once, unsigned indices: Note [reference counts].
    """
    sd, sh, sw = stride
    dd, dh, dw = dilation
    Dp, Hp, Wp, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    length = patch.shape[1]
    src = xp.ravel()
    dst = patch.ravel()
    # one group and W-dilation 1: a pixel's KW * C values of one kernel row
    # are contiguous in xp, so they are copied as one run
    merged = dw == 1 and cin_g == C
    run = KW * C if merged else cin_g
    runs_per_row = 1 if merged else KW
    for p in range(pixels):
        i = p * length
        for kd in range(KD):
            for kh in range(KH):
                row = ((n * Dp + od * sd + kd * dd) * Hp + oh * sh + kh * dh) * Wp
                for kw in range(runs_per_row):
                    start = (row + (ow0 + p) * sw + kw * dw) * C + cstart
                    for c in range(run):
                        dst[np.uint64(i + c)] = src[np.uint64(start + c)]
                    i += run


@cpu_kernel(parallel=False)
def _patch_times_weights(patch, pixels, wp, bias, out, n, od, oh, ow0, g, groups):
    """out[n, co, od, oh, ow0 + p] = patch[p] . wp[co] + bias[co] for the group's co.

    Ragged edges (a pixel run or a group's channel count that is not a
    multiple of the block) reuse the full block with the out-of-range pixel
    or channel indices clamped to the last valid one, and skip those stores:
    a separate scalar edge loop doubled compile time.  Operands are indexed
    in place (``patch[p, i]``) and results stored through one flat view of
    ``out``, without per-block helper calls: Note [reference counts].
    """
    Co, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    cout_g = Co // groups
    length = patch.shape[1]
    zero = out.dtype.type(0)
    flat = out.ravel()
    plane = OD * OH * OW                       # distance between output channels
    row0 = ((n * Co) * OD + od) * OH * OW + oh * OW + ow0
    # pixel blocks outside, channel blocks inside: the block's 4 patch rows
    # stay in L1 while the weights stream from L2 (the reverse order streamed
    # the larger patch and was slower)
    for p in range(0, pixels, PIXEL_BLOCK):
        p1 = min(p + 1, pixels - 1)
        p2 = min(p + 2, pixels - 1)
        p3 = min(p + 3, pixels - 1)
        for c0 in range(g * cout_g, (g + 1) * cout_g, CHANNEL_BLOCK):
            channels = min(CHANNEL_BLOCK, (g + 1) * cout_g - c0)
            c1 = c0 + min(1, channels - 1)
            c2 = c0 + min(2, channels - 1)
            s00 = s01 = s02 = zero
            s10 = s11 = s12 = zero
            s20 = s21 = s22 = zero
            s30 = s31 = s32 = zero
            for i in range(length):
                a0 = patch[p, i]
                a1 = patch[p1, i]
                a2 = patch[p2, i]
                a3 = patch[p3, i]
                w0 = wp[c0, i]
                w1 = wp[c1, i]
                w2 = wp[c2, i]
                s00 += a0 * w0
                s01 += a0 * w1
                s02 += a0 * w2
                s10 += a1 * w0
                s11 += a1 * w1
                s12 += a1 * w2
                s20 += a2 * w0
                s21 += a2 * w1
                s22 += a2 * w2
                s30 += a3 * w0
                s31 += a3 * w1
                s32 += a3 * w2
            b0 = bias[c0]
            b1 = bias[c1]
            b2 = bias[c2]
            at = row0 + c0 * plane + p
            flat[at] = s00 + b0
            if channels > 1:
                flat[at + plane] = s01 + b1
            if channels > 2:
                flat[at + 2 * plane] = s02 + b2
            if p + 1 < pixels:
                flat[at + 1] = s10 + b0
                if channels > 1:
                    flat[at + 1 + plane] = s11 + b1
                if channels > 2:
                    flat[at + 1 + 2 * plane] = s12 + b2
            if p + 2 < pixels:
                flat[at + 2] = s20 + b0
                if channels > 1:
                    flat[at + 2 + plane] = s21 + b1
                if channels > 2:
                    flat[at + 2 + 2 * plane] = s22 + b2
            if p + 3 < pixels:
                flat[at + 3] = s30 + b0
                if channels > 1:
                    flat[at + 3 + plane] = s31 + b1
                if channels > 2:
                    flat[at + 3 + 2 * plane] = s32 + b2


def conv_planes(x, map_d, map_h, map_w, w, bias, out, groups, stride, dilation, chunks):
    """Direct convolution one (image, output channel) plane at a time.

    ``x`` is the unpadded canonical input; each job gathers the padded
    planes of its group's input channels into a private scratch buffer (small
    enough to stay in cache for the layers this kernel is chosen for), then
    accumulates ``out_row += w[tap] * in_row[shifted]`` along output rows.
    ``chunks`` runs of consecutive planes (the thread count), so each thread
    allocates its scratch once.
    """
    run_in_chunks(_planes_chunk, (x, map_d, map_h, map_w, w, bias, out, groups, *stride,
                                  *dilation),
                  out.shape[0] * out.shape[1], chunks)


@cpu_kernel(parallel=False)
def _planes_chunk(x, map_d, map_h, map_w, w, bias, out, groups, sd, sh, sw, dd, dh, dw,
                  first_job, stop_job):
    """Planes ``first_job <= n * C_out + co < stop_job`` of conv_planes."""
    stride = (sd, sh, sw)
    dilation = (dd, dh, dw)
    Co = out.shape[1]
    cin_g = x.shape[1] // groups
    planes = np.empty((cin_g, map_d.shape[0], map_h.shape[0], map_w.shape[0]), dtype=out.dtype)
    for job in range(first_job, stop_job):
        n = job // Co
        co = job % Co
        g = co // (Co // groups)
        for ci in range(cin_g):
            _gather_plane(x[n, g * cin_g + ci], map_d, map_h, map_w, planes[ci])
        _plane_task(planes, w[co], bias[co], out[n, co], stride, dilation)


@cpu_kernel(parallel=False)
def _plane_task(planes, w, bias, out, stride, dilation):
    """out[od, oh, ow] = bias + sum over (ci, taps) of w[ci, tap] * planes[ci, shifted].

    One output row at a time: ``out_row += tap * in_row[kw*dw :: sw]``.  Only
    the layers that Note [same-width planes] does not cover come here
    (strided, non-zero padding modes, 3-D), so this favours short compile
    times over speed: a flat-plane variant of it doubled the compile time.
    """
    OD, OH, OW = out.shape
    cin_g, KD, KH, KW = w.shape
    Dp, Hp, Wp = planes.shape[1], planes.shape[2], planes.shape[3]
    sd, sh, sw = stride
    dd, dh, dw = dilation
    # flat views and unsigned indices: Note [reference counts]
    src = planes.ravel()
    dst = out.ravel()
    for od in range(OD):
        for oh in range(OH):
            orow = (od * OH + oh) * OW
            for ow in range(OW):
                dst[orow + ow] = bias
            for ci in range(cin_g):
                for kd in range(KD):
                    for kh in range(KH):
                        xrow = ((ci * Dp + od * sd + kd * dd) * Hp + oh * sh + kh * dh) * Wp
                        for kw in range(KW):
                            tap = w[ci, kd, kh, kw]
                            start = xrow + kw * dw
                            for i in range(OW):
                                dst[np.uint64(orow + i)] += tap * src[np.uint64(start + i * sw)]


def conv_planes_same_width(x, w, bias, out, groups, pad_h, pad_w, dilation, chunks):
    """Unit-stride, zero-padded 1-D/2-D planes whose output width equals W.

    The common depthwise case (``padding = k // 2``, stride 1).  No padded
    copy of the input and no copy-out: see Note [same-width planes].
    ``x`` is ``(N, C, 1, H, W)``, ``out`` ``(N, C_out, 1, OH, W)``; a job
    is one output plane.
    """
    run_in_chunks(_same_width_chunk, (x, w, bias, out, groups, pad_h, pad_w, dilation[1],
                                      dilation[2]),
                  out.shape[0] * out.shape[1], chunks)


@cpu_kernel(parallel=False)
def _same_width_chunk(x, w, bias, out, groups, pad_h, pad_w, dh, dw, first_job, stop_job):
    """Planes ``first_job <= n * C_out + co < stop_job`` of conv_planes_same_width.

    Note [same-width planes]
    ~~~~~~~~~~~~~~~~~~~~~~~~
    When the output is as wide as the input (``pad_left + pad_right ==
    dilation_w * (KW - 1)``) and the stride is 1, keep the input's row pitch
    W: copy the plane into a buffer with the top and bottom padding rows
    added (plus a few guard zeros at both ends).  Then output ``(oh, ow)``
    reads, under tap ``(kh, kw)``, the buffer element at
    ``q + kh*dh*W + delta + const`` where ``q = oh*W + ow`` is the output's
    own flat index and ``delta = kw*dw - pad_left``: a constant distance, so
    every tap is one long multiply-add over the flattened output plane,
    written straight into ``out``: no padded copy of each row and no
    copy-out of short rows, which dominated an earlier padded-plane kernel.
    A column shift ``delta != 0`` makes the ``|delta|`` edge outputs of each
    row read the neighbouring row's last (``delta < 0``) or first
    (``delta > 0``) ``|delta|`` values where the padded definition has zeros;
    no other output reads those values, so we zero them in the buffer.
    Kernel columns are visited centre first, then leftwards, then
    rightwards, so each step only zeroes more columns (plus one copy-back of
    the left edge before the right taps): one copy of the plane per input
    channel.  Every output then receives exactly the products of the padded
    definition, zeros included.  The taps of one kernel column are fused
    three at a time.  Measured on the depthwise benchmark layer (2 threads):
    0.42-0.44 ms against 0.59-0.66 ms with a fresh copy per kernel column,
    and about 1.1 ms for the padded-plane kernel of ``conv_planes``.
    """
    Co, OH, W = out.shape[1], out.shape[3], out.shape[4]
    C, H = x.shape[1], x.shape[3]
    cin_g = C // groups
    KH, KW = w.shape[3], w.shape[4]
    guard = max(pad_w, dw * (KW - 1) - pad_w)         # largest |delta|
    rows = OH + dh * (KH - 1)                          # padded rows
    size = OH * W
    top = guard + pad_h * W                            # where input row 0 starts
    buf = np.zeros(guard + rows * W + guard, dtype=out.dtype)
    # flat views taken once and unsigned indices: Note [reference counts]
    xf = x.ravel()
    of = out.ravel()
    for job in range(first_job, stop_job):
        n = job // Co
        co = job % Co
        g = co // (Co // groups)
        o = np.uint64(job * size)
        b = bias[co]
        for q in range(size):
            of[o + np.uint64(q)] = b
        for ci in range(cin_g):
            plane = np.uint64((n * C + g * cin_g + ci) * H * W)
            for i in range(H * W):
                buf[np.uint64(top + i)] = xf[plane + np.uint64(i)]
            # Kernel columns in the order centre, left (growing |delta|),
            # right (growing delta): each step only zeroes more columns, and
            # the columns zeroed for the left taps are copied back once
            # before the right ones.
            for step in range(KW):
                kw = _column_order(step, KW, dw, pad_w)
                delta = kw * dw - pad_w
                if delta < 0:
                    for r in range(H):                        # wrapped-around columns
                        for c in range(max(W + delta, 0), W):
                            buf[top + r * W + c] = 0
                elif delta > 0:
                    if step > 0 and _column_order(step - 1, KW, dw, pad_w) * dw - pad_w <= 0:
                        for r in range(H):                    # undo the left zeroing
                            for c in range(max(W - pad_w, 0), W):
                                buf[top + r * W + c] = xf[plane + np.uint64(r * W + c)]
                    for r in range(H):
                        for c in range(min(delta, W)):
                            buf[top + r * W + c] = 0
                base = guard + delta
                kh = 0
                while kh < KH:
                    taps = 7 if KH - kh == 7 else min(3, KH - kh)
                    i0 = base + kh * dh * W
                    if taps == 7:
                        # a 7-row kernel column in one pass over the output
                        # (ConvNeXt's 7x7 depthwise): Note [same-width planes]
                        s_ = dh * W
                        t0 = w[co, ci, 0, kh, kw]
                        t1 = w[co, ci, 0, kh + 1, kw]
                        t2 = w[co, ci, 0, kh + 2, kw]
                        t3 = w[co, ci, 0, kh + 3, kw]
                        t4 = w[co, ci, 0, kh + 4, kw]
                        t5 = w[co, ci, 0, kh + 5, kw]
                        t6 = w[co, ci, 0, kh + 6, kw]
                        for q in range(size):
                            j = i0 + q
                            of[o + np.uint64(q)] += (
                                t0 * buf[np.uint64(j)] + t1 * buf[np.uint64(j + s_)]
                                + t2 * buf[np.uint64(j + 2 * s_)]
                                + t3 * buf[np.uint64(j + 3 * s_)]
                                + t4 * buf[np.uint64(j + 4 * s_)]
                                + t5 * buf[np.uint64(j + 5 * s_)]
                                + t6 * buf[np.uint64(j + 6 * s_)])
                    elif taps == 3:
                        t0 = w[co, ci, 0, kh, kw]
                        t1 = w[co, ci, 0, kh + 1, kw]
                        t2 = w[co, ci, 0, kh + 2, kw]
                        i1 = i0 + dh * W
                        i2 = i1 + dh * W
                        for q in range(size):
                            of[o + np.uint64(q)] += (t0 * buf[np.uint64(i0 + q)]
                                                     + t1 * buf[np.uint64(i1 + q)]
                                                     + t2 * buf[np.uint64(i2 + q)])
                    else:
                        for t in range(taps):
                            tap = w[co, ci, 0, kh + t, kw]
                            it = i0 + t * dh * W
                            for q in range(size):
                                of[o + np.uint64(q)] += tap * buf[np.uint64(it + q)]
                    kh += taps


@cpu_kernel(parallel=False)
def _column_order(step, KW, dw, pad_w):
    """Kernel column processed at ``step``: centre/left taps (delta <= 0) from
    the right-most one leftwards, then right taps (delta > 0) left to right."""
    non_positive = min(pad_w // dw + 1, KW)          # columns with delta <= 0
    if step < non_positive:
        return non_positive - 1 - step
    return step


def conv_thin_channels_last(xp, wt, bias, out, multiplier, kernel_size, stride, dilation,
                            chunks):
    """Direct convolution of a layer with one input channel per group
    (depthwise, with ``multiplier`` output channels per input channel) over a
    channels-last padded input.

    Parameters
    ----------
    xp : (N, Dp, Hp, Wp, C) array
        Padded input from :func:`pack_channels_last`.
    wt : (multiplier, KD, KH, KW, C) array
        ``wt[j, kd, kh, kw, c]`` = weight of output channel ``c * multiplier + j``.
    bias : (C_out,) array
    out : (N, C_out, OD, OH, OW) array, written in full.

    Note [thin channels-last]
    ~~~~~~~~~~~~~~~~~~~~~~~~~
    With one input channel per group there is no reduction over channels to
    vectorise, and the planes kernels vectorise along output rows, which a
    stride breaks (every other input element).  Channels last, every tap of
    every output pixel is one multiply-add of two contiguous runs of ``C``
    values -- the packed input pixel and the tap's weights -- into the
    pixel's accumulators, whatever the stride, dilation or kernel size.  A
    job is one output row of one image: its ``OW x C`` accumulators stay in
    L1, and are written to the NCDHW output channel by channel at the end
    (one contiguous output row per channel).
    """
    N, _, OD, OH, _ = out.shape
    run_in_chunks(_thin_chunk, (xp, wt, bias, out, multiplier, *kernel_size, *stride,
                                *dilation), N * OD * OH, chunks)


@cpu_kernel(parallel=False)
def _thin_chunk(xp, wt, bias, out, multiplier, KD, KH, KW, sd, sh, sw, dd, dh, dw,
                first_job, stop_job):
    """Rows ``first_job <= job < stop_job`` of conv_thin_channels_last."""
    Co, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    Dp, Hp, Wp, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    acc = np.empty(OW * C, dtype=out.dtype)
    src = xp.ravel()
    w = wt.ravel()
    dst = out.ravel()
    zero = out.dtype.type(0)
    for job in range(first_job, stop_job):
        oh = job % OH
        od = (job // OH) % OD
        n = job // (OH * OD)
        for j in range(multiplier):
            for ow in range(OW):
                a = ow * C
                for c in range(C):
                    acc[np.uint64(a + c)] = zero
                for kd in range(KD):
                    for kh in range(KH):
                        row = ((n * Dp + od * sd + kd * dd) * Hp + oh * sh + kh * dh) * Wp
                        for kw in range(KW):
                            s = (row + ow * sw + kw * dw) * C
                            t = (((j * KD + kd) * KH + kh) * KW + kw) * C
                            for c in range(C):
                                acc[np.uint64(a + c)] += (src[np.uint64(s + c)]
                                                          * w[np.uint64(t + c)])
            for c in range(C):
                co = c * multiplier + j
                b = bias[co]
                o = ((n * Co + co) * OD + od) * OH * OW + oh * OW
                for ow in range(OW):
                    dst[np.uint64(o + ow)] = acc[np.uint64(ow * C + c)] + b
