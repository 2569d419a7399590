"""The channels-last loop orders of the direct algorithm (numba; serial
tasks run on numba's thread pool by
:func:`numbaconv.kernels.parallel.run_in_chunks`).

All direct kernels (``kernels/direct_*.py``) work on the canonical 3-D form
(see :mod:`numbaconv.spec`): input ``(N, C, D, H, W)``, weight ``(C_out,
C_in/groups, KD, KH, KW)``, output ``(N, C_out, OD, OH, OW)``, all
C-contiguous in the compute dtype.  The ``direct`` algorithm
(``numbaconv.algorithms.direct``) picks one of four loop orders, because no
single one is fast for every shape, and each serves every spec it accepts:

``conv_channels_last`` (here)
    Layers with many input channels per group.  See Note [patch rows] and
    Note [register blocking].
``conv_thin_channels_last`` (here)
    2-D layers with one input channel per group and at least 8 groups that
    phase planes do not serve: see Note [thin channels-last].
``conv_phase_planes`` (kernels/direct_phase_planes.py)
    Zero-padded 1-D/2-D layers with few channels per group, any stride and
    dilation, whose input width is a multiple of the stride.
``conv_planes`` (kernels/direct_planes.py)
    Everything else with few channels per group.

Both kernels here read an input packed by
:func:`~numbaconv.kernels.direct_pack.pack_channels_last`; their block
sizes are in :mod:`numbaconv.kernels.direct_layouts`.  A compute kernel is
a Python function that splits its jobs into ``chunks`` runs (the thread
count, so that per-thread scratch is allocated once per call) and runs a
serial numba task on each through
:func:`~numbaconv.kernels.parallel.run_in_chunks`, which compiles the task
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
inside; the other order streamed the larger patch and was 2x slower).
Against reading the packed rows in place (three dot products per output,
each ending in a horizontal sum) this halved resnet3x3's time, the copy
included (docs/results-direct.md, "Channels-last kernel").

Note [register blocking]
~~~~~~~~~~~~~~~~~~~~~~~~
The dot products are computed for a block of 4 pixels times 3 output
channels at once: per reduction step 4 input and 3 weight loads feed 12
multiply-adds, so loads no longer limit the FMA units.  The twelve
accumulators are plain local scalars so that LLVM keeps them in vector
registers (with ``reassoc`` fast-math it vectorises the reduction loop and
sums the lanes once at the end).  4x3 is what fits the 16 AVX2 vector
registers (4x4 spilled accumulators to the stack and ran 1.5-2x slower;
the other shapes tried are in docs/results-direct.md, "Channels-last
kernel").  The operands are *sliced views* (``row[start:start + length]``)
indexed from 0: with the offset inside the subscript (``row[start + i]``)
LLVM did not vectorise and the kernel was 5x slower.  Ragged edges (fewer
than 4 pixels or 3 channels left) reuse the full block with clamped indices
and skip those stores; a separate scalar edge loop doubled the compile
time.

Note [reference counts]
~~~~~~~~~~~~~~~~~~~~~~~
Every array view numba creates (``a[i]``, ``a[i:j]``, ``a.ravel()``) and
every array passed to a function that is not inlined updates the array's
reference count with an atomic instruction; when all threads do that on the
same input or output array, the cache line holding the count bounces
between cores.  Per-block helper calls with array arguments cost about a
third of the channels-last kernel's time; so the hot loops of every direct
kernel take flat views once per task and index them, with unsigned
integers where LLVM must vectorise the loop (a signed computed index
carries Python's negative-index fix-up, which stops the vectoriser).
"""

from __future__ import annotations

import numpy as np

from .direct_layouts import CHANNEL_BLOCK, PATCH_PIXELS, PIXEL_BLOCK
from .epilogue_block import finish_args, finish_block
from .jit import cpu_kernel
from .parallel import chunk_of, chunk_scratch, run_in_chunks


def conv_channels_last(xp, wp, bias, out, kernel_size, groups, stride, dilation, chunks,
                       finish=None):
    """Direct convolution over a channels-last padded input.

    Parameters
    ----------
    xp : (N, Dp, Hp, Wp, C) array
        Padded input from :func:`pack_channels_last`.
    wp : (C_out, KD * KH * KW * C_in_g) array
        Weight with the input-channel axis moved last, then flattened.
    bias : (C_out,) or (0,) array
        Added to every output; empty for no bias.
    out : (N, C_out, OD, OH, OW) array
        Written in full.
    kernel_size, stride, dilation : (3,) tuples of int
    groups : int
    chunks : int
        Number of parallel chunks (the thread count); each allocates its
        patch buffer once.
    finish : (code, slope, residual) or None
        The epilogue (:meth:`numbaconv.epilogue.Epilogue.kernel_args`),
        applied to each job's outputs once they are written; None: bias only.

    A job is a run of at most PATCH_PIXELS output pixels of one output row
    and one group; see Note [patch rows].
    """
    N, _, OD, OH, OW = out.shape
    runs = (OW + PATCH_PIXELS - 1) // PATCH_PIXELS
    jobs = N * OD * OH * runs * groups
    run_in_chunks(_channels_last_chunk,
                  (xp, wp, bias, out, groups, *kernel_size, *stride, *dilation,
                   *finish_args(finish, out.dtype),
                   chunk_scratch(jobs, chunks, PATCH_PIXELS * wp.shape[1], out.dtype)),
                  jobs, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _channels_last_chunk(xp, wp, bias, out, groups, KD, KH, KW, sd, sh, sw, dd, dh, dw,
                         code, slope, residual, work, first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of conv_channels_last."""
    Co, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    cin_g = xp.shape[4] // groups
    runs = (OW + PATCH_PIXELS - 1) // PATCH_PIXELS
    stride = (sd, sh, sw)
    dilation = (dd, dh, dw)
    K = KD * KH * KW * cin_g
    # this chunk's patch rows (Note [chunk scratch] in kernels/parallel.py)
    patch = work[chunk_of(first_job, out.shape[0] * OD * OH * runs * groups, work.shape[0])][
        :PATCH_PIXELS * K].reshape((PATCH_PIXELS, K))
    cout_g = Co // groups
    plane = OD * OH * OW
    fuse = code != 0 or residual.shape[0] > 0     # the fused epilogue: Note [epilogue]
    flat = out.ravel()
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
        # out[n, :, od, oh, ow0]: channels a plane apart, pixels adjacent
        first = ((n * Co) * OD + od) * OH * OW + oh * OW + ow0
        _patch_times_weights(patch, pixels, wp, bias, out, first, plane, 1, g, groups)
        if fuse:
            # the job's block: its pixels in each of the group's output channels
            finish_block(flat, first + g * cout_g * plane, plane, cout_g, pixels, residual, code,
                         slope)


@cpu_kernel(parallel=False, python_callable=False)
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


@cpu_kernel(parallel=False, python_callable=False)
def _patch_times_weights(patch, pixels, wp, bias, out, first, channel_step, pixel_step, g,
                         groups):
    """out.flat[first + co * channel_step + p * pixel_step] = patch[p] . wp[co] + bias[co]
    for the group's output channels co and the run's pixels p (+0.0 when
    ``bias`` is empty): a canonical output has ``channel_step`` one plane and
    ``pixel_step`` 1, a channels-last one ``channel_step`` 1 and
    ``pixel_step`` C_out (kernels/direct_channels_last_native.py).

    Ragged edges (a pixel run or a group's channel count that is not a
    multiple of the block) reuse the full block with the out-of-range pixel
    or channel indices clamped to the last valid one, and skip those stores:
    a separate scalar edge loop doubled compile time.  Operands are indexed
    in place (``patch[p, i]``) and results stored through one flat view of
    ``out``, without per-block helper calls: Note [reference counts].
    """
    cout_g = wp.shape[0] // groups
    length = patch.shape[1]
    zero = out.dtype.type(0)
    has_bias = bias.shape[0] > 0                 # Note [no bias] in kernels/__init__.py
    flat = out.ravel()
    plane = channel_step
    step = pixel_step
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
            b0 = bias[c0] if has_bias else zero
            b1 = bias[c1] if has_bias else zero
            b2 = bias[c2] if has_bias else zero
            at = first + c0 * plane + p * step
            flat[at] = s00 + b0
            if channels > 1:
                flat[at + plane] = s01 + b1
            if channels > 2:
                flat[at + 2 * plane] = s02 + b2
            if p + 1 < pixels:
                flat[at + step] = s10 + b0
                if channels > 1:
                    flat[at + step + plane] = s11 + b1
                if channels > 2:
                    flat[at + step + 2 * plane] = s12 + b2
            if p + 2 < pixels:
                flat[at + 2 * step] = s20 + b0
                if channels > 1:
                    flat[at + 2 * step + plane] = s21 + b1
                if channels > 2:
                    flat[at + 2 * step + 2 * plane] = s22 + b2
            if p + 3 < pixels:
                flat[at + 3 * step] = s30 + b0
                if channels > 1:
                    flat[at + 3 * step + plane] = s31 + b1
                if channels > 2:
                    flat[at + 3 * step + 2 * plane] = s32 + b2


def conv_thin_channels_last(xp, wt, bias, out, multiplier, kernel_size, stride, dilation,
                            chunks, finish=None):
    """Direct convolution of a layer with one input channel per group
    (depthwise, with ``multiplier`` output channels per input channel) over a
    channels-last padded input.

    Parameters
    ----------
    xp : (N, Dp, Hp, Wp, C) array
        Padded input from :func:`pack_channels_last`.
    wt : (multiplier, KD, KH, KW, C) array
        ``wt[j, kd, kh, kw, c]`` = weight of output channel ``c * multiplier + j``.
    bias : (C_out,) or (0,) array
        Empty for no bias.
    out : (N, C_out, OD, OH, OW) array, written in full.
    finish : (code, slope, residual) or None
        The epilogue (:meth:`numbaconv.epilogue.Epilogue.kernel_args`),
        applied to each job's output rows once written; None: bias only.

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
                                *dilation, *finish_args(finish, out.dtype)), N * OD * OH, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _thin_chunk(xp, wt, bias, out, multiplier, KD, KH, KW, sd, sh, sw, dd, dh, dw,
                code, slope, residual, first_job, stop_job):
    """Rows ``first_job <= job < stop_job`` of conv_thin_channels_last."""
    Co, OD, OH, OW = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    Dp, Hp, Wp, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    acc = np.empty(OW * C, dtype=out.dtype)     # its own: Note [chunk scratch]
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
                b = bias[co] if bias.shape[0] else zero
                o = ((n * Co + co) * OD + od) * OH * OW + oh * OW
                for ow in range(OW):
                    dst[np.uint64(o + ow)] = acc[np.uint64(ow * C + c)] + b
        if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
            # the job's output row in every channel
            finish_block(dst, ((n * Co) * OD + od) * OH * OW + oh * OW, OD * OH * OW, Co, OW,
                         residual, code, slope)
