"""Direct convolution kernels for the CPU (numba; serial tasks run on numba's
thread pool by :func:`numbaconv.kernels.parallel.run_in_chunks`).

All kernels work on the canonical 3-D form (see :mod:`numbaconv.spec`):
input ``(N, C, D, H, W)``, weight ``(C_out, C_in/groups, KD, KH, KW)``, output
``(N, C_out, OD, OH, OW)``, all C-contiguous in the compute dtype.  Padding
is resolved before the multiply-adds: either by gathering through the
padding index maps of :mod:`numbaconv.padding`, or (same-width planes) by
restricting each tap's range.

Four loop orders, because no single one is fast for every shape; the
``direct`` algorithm picks one (``numbaconv.algorithms.direct``), and each
serves every spec it accepts:

``conv_channels_last``
    Layers with many input channels per group.  See Note [patch rows] and
    Note [register blocking].
``conv_phase_planes``
    Zero-padded 1-D/2-D layers with few channels per group (depthwise,
    grouped, few channels), any stride and dilation, whose input width is a
    multiple of the stride: every tap one long multiply-add over a flat
    plane.  See Note [phase planes]; unit-stride layers with 7-row kernels
    compute two output rows per pass, Note [row pairs].
``conv_thin_channels_last``
    2-D layers with one input channel per group and at least 8 groups that
    phase planes do not serve (another padding mode, a width that is not a
    multiple of the stride): see Note [thin channels-last].
``conv_planes``
    Everything else with few channels per group (3-D, input dilation, the
    rest of the above).
    Each plane is gathered into a padded scratch plane and computed row by
    row; kept simple because it is rare and its compile time counts.

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

import functools

import numba
import numpy as np

from .jit import FASTMATH, cpu_kernel
from .parallel import run_in_chunks
from .runs import SHORT_RUN, copy_run, deinterleave_run

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

def pack_channels_last(x, map_d, map_h, map_w, xp, chunks=None):
    """xp[n, d, h, w, c] = x[n, c, map_d[d], map_h[h], map_w[w]] (0 where a map is -1).

    Channels inner: each packed pixel is written as one contiguous run while
    the reads stride over the C input planes of one row (all in L1).  The
    other order (contiguous reads, writes strided by C) took 1.4x as long on
    resnet3x3's input.  Flat views and unsigned indices: Note [reference
    counts].  A job is one packed row, split over ``chunks`` runs (default:
    numba's thread count) by :func:`~numbaconv.kernels.parallel.run_in_chunks`.
    """
    N, Dp, Hp = x.shape[0], map_d.shape[0], map_h.shape[0]
    run_in_chunks(_pack_chunk, (x, map_d, map_h, map_w, xp), N * Dp * Hp,
                  numba.get_num_threads() if chunks is None else chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _pack_chunk(x, map_d, map_h, map_w, xp, first_job, stop_job):
    """Packed rows ``first_job <= job < stop_job`` of :func:`pack_channels_last`."""
    N, C, D, H, W = x.shape
    Dp, Hp, Wp = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    zero = xp.dtype.type(0)
    plane = D * H * W
    src = x.ravel()
    dst = xp.ravel()
    for job in range(first_job, stop_job):
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


@cpu_kernel(parallel=False, python_callable=False)
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


@cpu_kernel(parallel=False, python_callable=False)
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


@cpu_kernel(parallel=False, python_callable=False)
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


@cpu_kernel(parallel=False, python_callable=False)
def _plane_task(planes, w, bias, out, stride, dilation):
    """out[od, oh, ow] = bias + sum over (ci, taps) of w[ci, tap] * planes[ci, shifted].

    One output row at a time: ``out_row += tap * in_row[kw*dw :: sw]``.  Only
    the thin layers that Note [phase planes] and thin channels-last leave come
    here (3-D, other padding modes, input dilation), so this favours short compile
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


def conv_phase_planes(x, w, bias, out, groups, pad_h, pad_w, stride, dilation, chunks,
                      form=None, band_rows=None):
    """Zero-padded 1-D/2-D layers with few channels per group, any stride and
    dilation, whose input width is a multiple of the stride and whose output
    is at most ``W / stride`` wide (:func:`~numbaconv.algorithms.direct.serves_phase_planes`):
    see Note [phase planes].

    ``x`` is ``(N, C, 1, H, W)``, ``w`` ``(C_out, C_in/g, 1, KH, KW)``,
    ``out`` ``(N, C_out, 1, OH, OW)``; ``stride`` and ``dilation`` are the
    canonical (D, H, W) triples.  A job is one output plane.  ``form`` is
    one of :data:`PHASE_PLANE_FORMS` that serves the layer
    (:func:`phase_plane_forms`); by default :func:`default_phase_plane_form`
    picks one from the kernel size, stride and dilation only, so that a
    block of a larger problem (numbaconv.dask) takes the same form.  The
    single-row and row-pairs forms sum in the same order except for 3x3
    kernels, whose other forms sum all nine taps in one pass.  ``band_rows``
    (row pairs and stride two; default: the whole plane) computes each
    plane in bands of that many output rows, an even number, so that a
    thread's scratch is a band's, not a plane's (Note [plane bands]); the
    bits do not depend on it.
    """
    kernel = (w.shape[3], w.shape[4])
    serving, default = _serving_forms(kernel, tuple(stride), tuple(dilation))
    if form is None:
        form = default
    elif form not in serving:
        raise ValueError(f"form={form!r} does not serve kernel {kernel}, stride "
                         f"{tuple(stride[1:])} and dilation {tuple(dilation[1:])}; "
                         f"these do: {', '.join(serving)}")
    (H, W), (OH, OW) = x.shape[3:], out.shape[3:]
    if band_rows is None or band_rows >= OH:
        band_rows = max(OH, 1)
    elif band_rows < 2 or band_rows % 2:
        raise ValueError(f"band_rows must be an even number of at least 2 rows, got "
                         f"band_rows={band_rows}")
    jobs = out.shape[0] * out.shape[1] * -(-OH // band_rows)
    task = (_phase_planes_chunk if form == "single_rows"
            else _PHASE_PLANE_TASKS[form, fused_passes(*kernel)])
    run_in_chunks(task, (x, w, bias, out, groups, pad_h, pad_w)
                  + _form_arguments(form, H, W, OH, OW, *kernel, pad_h, pad_w, *stride[1:],
                                    *dilation[1:], band_rows), jobs, chunks)


@functools.lru_cache(maxsize=256)
def _serving_forms(kernel, stride, dilation):
    """``(phase_plane_forms(...), default_phase_plane_form(...))``, remembered."""
    return (phase_plane_forms(kernel, stride, dilation),
            default_phase_plane_form(kernel, stride, dilation))


@functools.lru_cache(maxsize=1024)
def _form_arguments(form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, band_rows):
    """The arguments of ``form``'s task after ``pad_w``: its band rows and
    layout (remembered: a call asks every time, and a small call's Python
    is about 20 us)."""
    if form == "row_pairs":
        return (band_rows,) + row_pairs_layout(band_rows, W, KH, KW, pad_w)
    if form == "stride_two":
        return (band_rows,) + stride_two_layout(band_rows, W, KH, KW, pad_w)
    return (sh, sw, dh, dw, band_rows) + single_rows_band_layout(
        H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, band_rows)


#: The forms of the phase-planes kernel: one output row per pass (Note
#: [phase planes]), two (Note [row pairs]), and stride 2 from row and
#: column phases (Note [stride-two phases]).
PHASE_PLANE_FORMS = ("single_rows", "row_pairs", "stride_two")


def phase_plane_forms(kernel_size, stride, dilation):
    """The forms of :data:`PHASE_PLANE_FORMS` that serve a phase-planes layer
    of 2-D ``kernel_size`` and canonical ``stride`` and ``dilation``."""
    forms = ["single_rows"]
    undilated = dilation[1] == dilation[2] == 1
    if undilated and stride[1] == stride[2] == 1:
        forms.append("row_pairs")
    if undilated and stride[1] == stride[2] == 2:
        forms.append("stride_two")
    return tuple(forms)


def default_phase_plane_form(kernel_size, stride, dilation):
    """The form :func:`conv_phase_planes` takes by default: row pairs for
    7- and 5-row kernels (a fused seven- or five-tap pass per kernel column)
    and 3x3 (one fused nine-tap pass) of unit stride, the stride-two form
    for stride 2 and kernels of at least 3x3, else single rows; measured in
    Note [row pairs], Note [stride-two phases] and the tables below.

    5x5 depthwise, padding 2, ms on 2 threads (AMD EPYC with AVX-512,
    2026-11-30, best of five medians of 30 calls), the single-row form as
    it was (a three-tap and two one-tap passes per column), then single
    rows and row pairs with five-tap passes, and row pairs with all 25
    taps in one pass (Note [five-tap columns]):

    ============  =========  ===========  =========  ===========
    input         before     single rows  row pairs  one pass
    ============  =========  ===========  =========  ===========
    4x240x28x28   0.52       0.43-0.45    0.35       0.28-0.29
    8x512x14x14   0.88       0.67-0.75    0.53-0.54  0.39
    4x960x7x7     0.43       0.35-0.36    0.32-0.37  0.20-0.28
    4x96x56x56    0.87       0.62-0.67    0.50       0.40
    1x32x112x112  0.31       0.22-0.23    0.17-0.22  0.14-0.15
    ============  =========  ===========  =========  ===========

    Stride 2, depthwise, ms on 2 threads (same machine and method),
    single rows against the stride-two form:

    ===================  ===========  ==========
    input, kernel, pad   single rows  stride two
    ===================  ===========  ==========
    4x240x28x28, 5x5, 2  0.50         0.18
    4x96x56x56, 5x5, 2   0.36         0.27
    2x192x56x56, 7x7, 3  0.60         0.52
    4x144x56x56, 3x3, 1  0.29         0.25
    8x128x28x28, 3x3, 1  0.15         0.11
    4x64x56x56, 4x4, 1   0.20         0.16
    1x3x224x224, 7x7, 3  0.10         0.061
    4x64x56x56, 2x2, 0   0.092        0.120
    4x64x56x56, 1x1, 0   0.088        0.081
    ===================  ===========  ==========

    So kernels smaller than 3 along an axis keep single rows.
    """
    forms = phase_plane_forms(kernel_size, stride, dilation)
    KH, KW = kernel_size
    if "row_pairs" in forms and (KH in (5, 7) or (KH, KW) == (3, 3)):
        return "row_pairs"
    if "stride_two" in forms and min(KH, KW) >= 3:
        return "stride_two"
    return "single_rows"


def single_rows_layout(H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw):
    """``(Wq, pitch, size, guard, base, length)`` of the single-row form
    (Note [phase planes]): phase width, accumulator pitch and size, the
    widest column shift, where input row 0 starts in a column phase, and a
    column phase's length.  The one place these are computed: the kernel
    takes them as arguments, and the cost model reads them here."""
    Wq = W // sw
    pitch = sh * Wq                                   # accumulator row pitch
    size = (OH - 1) * pitch + OW                      # the last row's junk left out
    first_a = (-pad_w) // sw                          # column shifts of the taps
    last_a = ((KW - 1) * dw - pad_w) // sw
    guard = max(-first_a, last_a, 0)
    base = guard + pad_h * Wq                         # where input row 0 starts
    length = max(base + size + ((KH - 1) * dh - pad_h) * Wq + last_a,
                 base + H * Wq) + guard
    return Wq, pitch, size, guard, base, length


def single_rows_band_layout(H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, band_rows):
    """:func:`single_rows_layout` of whole planes (``band_rows >= OH``), or
    of one band of ``band_rows`` output rows (Note [plane bands]): a
    problem of its own whose input is the band's padded rows, padding
    included (``pad_h`` 0)."""
    if band_rows >= OH:
        return single_rows_layout(H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw)
    rows_in = (band_rows - 1) * sh + (KH - 1) * dh + 1
    return single_rows_layout(rows_in, W, band_rows, OW, KH, KW, 0, pad_w, sh, sw, dh, dw)


def row_pairs_layout(OH, W, KH, KW, pad_w):
    """``(guard, pitch, size, rows, length)`` of the row-pairs form (Note
    [row pairs]): the gap between rows (the widest column shift), the row
    pitch, the accumulators' size (a multiple of 16), the rows of each row
    phase read and a row phase's length."""
    guard = max(pad_w, KW - 1 - pad_w, 0)             # the largest column shift
    pitch = W + guard                                 # a row and its zero gap
    pairs = (OH + 1) // 2                             # an odd OH's last odd row is junk
    size = (pairs * pitch + 15) // 16 * 16            # no scalar remainder
    rows = pairs + KH // 2 + 1                        # rows of each row phase read
    length = guard + rows * pitch + guard + 16
    return guard, pitch, size, rows, length


def stride_two_layout(OH, W, KH, KW, pad_w):
    """``(guard, pitch, size, rows, length)`` of the stride-two form (Note
    [stride-two phases]), as :func:`row_pairs_layout` for one (row, column)
    phase."""
    # column shift a and phase b of kernel column kw: kw - pad_w = 2a + b
    guard = max(-((0 - pad_w) // 2), (KW - 1 - pad_w) // 2, 0)
    pitch = W // 2 + guard                            # a phase row and its zero gap
    rows = OH + KH // 2 + 1                           # rows of each row phase read
    length = guard + rows * pitch + guard + 16        # one (row, column) phase
    size = (OH * pitch + 15) // 16 * 16               # no scalar remainder (Note [row pairs])
    return guard, pitch, size, rows, length


def phase_planes_scratch(form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw,
                         band_rows=None):
    """Values of scratch one thread of :func:`conv_phase_planes` allocates
    in ``form`` with bands of ``band_rows`` output rows (default: whole
    planes): about a band of input and one of output."""
    rows = OH if band_rows is None else min(band_rows, OH)
    if form == "row_pairs":
        _, _, size, _, length = row_pairs_layout(rows, W, KH, KW, pad_w)
        return 2 * length + 2 * size
    if form == "stride_two":
        _, _, size, _, length = stride_two_layout(rows, W, KH, KW, pad_w)
        return 4 * length + size
    _, pitch, size, _, _, length = single_rows_band_layout(H, W, OH, OW, KH, KW, pad_h, pad_w,
                                                           sh, sw, dh, dw, rows)
    return sw * length + (1 if pitch == OW else size)


#: A thread's scratch above which the phase-planes kernel works in bands
#: of at most this many bytes (Note [plane bands]).
BAND_BYTES = 2 * 2**20


def phase_plane_band_rows(form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw, values):
    """The ``band_rows`` of :func:`conv_phase_planes` for a thread's scratch
    of at most ``values``: whole planes when they fit, else the largest even
    band that fits, at least 2 rows (whose scratch may still be over).

    Note [plane bands]
    ~~~~~~~~~~~~~~~~~~
    Every form keeps about one input plane and one output plane of scratch
    per thread: nothing on a network's layers, but 1 GiB for a 7x7 filter
    over one 8192x8192 image, and 8.5 GiB peak on a 2**31-value image
    (docs/hardening.md), none of it under the workspace limit, which the
    plans did not report.  So a job is one band of ``band_rows`` output
    rows of a plane, and the scratch is a band's: the band's padded input
    rows (rows outside the input zeroed, since the band before may have
    left data there), its accumulators, the same layout functions with the
    band's rows.  Each output is computed by the same expression in any
    band, so the bits do not depend on the bands (tested for every form,
    stride and dilation); bands are even so that row pairs stay pairs.
    ``algorithms.direct`` reports the scratch as the plan's workspace and
    takes whole planes when their scratch is at most :data:`BAND_BYTES` a
    thread (every layer of the benchmarks: one band, the code as before),
    else the largest bands under both that and the limit's share.

    Bands in the cache also made large planes much faster.  One image, 2
    threads (AMD EPYC with AVX-512, 2026-11-30), ms by band rows (a
    thread's scratch):

    ==================  =====================  =====================  ============
    layer               whole plane            bands                  best bands
    ==================  =====================  =====================  ============
    4096^2, 7x7         141.6 (128 MiB)        58.6 (1024 rows, 32M)  16.2 (641K)
    4096^2, 3x3         102.8 (128 MiB)        51.9 (1024 rows, 32M)  5.6 (2.1M)
    4096^2, 5x5 s2      52.0 (80 MiB)          31.6 (1024 rows, 40M)  4.6 (1.4M)
    4096^2, 9x9         273.9 (64 MiB)         117.0 (1024 rows, 16M) 39.0 (384K)
    2048^2, 3x3 dil. 2  7.0 (16 MiB)           3.6 (1024 rows, 8M)    1.7 (160K)
    1024^2, 7x7         2.1 (8 MiB)            0.9 (256 rows, 2M)     0.8 (546K)
    16x512^2, 7x7       4.18 (2.0 MiB)         3.32 (128 rows, 531K)
    16x512^2, 3x3       1.22 (2.0 MiB)         1.38 (128 rows, 521K)
    ==================  =====================  =====================  ============

    From about 2 MiB a thread (the last two rows) whole planes and bands
    are alike; beyond it bands of 0.5-2 MiB are 2-18x faster.
    """
    args = (form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw)
    if phase_planes_scratch(*args) <= values:
        return OH
    low, high = 2, max(2, OH - OH % 2)                # even rows; the scratch grows with them
    while low < high:
        middle = (low + high + 2) // 4 * 2
        if phase_planes_scratch(*args, band_rows=middle) <= values:
            low = middle
        else:
            high = middle - 2
    return low


@cpu_kernel(parallel=False, reassociate=False, python_callable=False)
def _phase_planes_chunk(x, w, bias, out, groups, pad_h, pad_w, sh, sw, dh, dw, band_rows, Wq,
                        pitch, size, guard, base, length, first_job, stop_job):
    """Planes ``first_job <= n * C_out + co < stop_job`` of conv_phase_planes.

    Note [phase planes]
    ~~~~~~~~~~~~~~~~~~~
    Every tap becomes one long multiply-add over a flat buffer.  Split each
    input plane into its ``sw`` column phases, ``F_b[r, x] = in[r, sw*x +
    b]`` (``W = sw * Wq``, so one flat loop over the plane does it: for
    stride 2 a de-interleave that LLVM vectorises), each with the input's
    rows at pitch ``Wq`` and zero rows above and below for the padding.
    Accumulate output ``(oh, ow)`` at ``q = oh * pitch + ow`` with ``pitch =
    sh * Wq``.  Tap ``(kh, kw)``, with ``kw*dw - pad_w = sw*a + b``, reads
    input row ``sh*oh + kh*dh - pad_h`` and phase column ``ow + a``: the
    buffer element at ``q + (kh*dh - pad_h) * Wq + a + const``, a constant
    distance from ``q``.  So each kernel column is one pass over the
    flattened accumulators with its taps fused (seven at a time for a 7-row
    column, else three), and the input is read once, by the split.

    Three details make the flat reads exact:

    * A column shift ``a != 0`` makes the ``|a|`` edge outputs of each row
      read the neighbouring row's last (``a < 0``) or first (``a > 0``)
      ``|a|`` phase values where the padded definition has zeros; no other
      output reads them, so they are zeroed in the buffer.  Kernel columns
      are visited left to right: the right-edge zeroing of the left taps
      shrinks column by column (each column copied back from the input once)
      and the left-edge zeroing of the right taps grows: one split of the
      plane per input channel.  The order, unlike the centre-first order of
      the first version, does not depend on the padding, so an explicitly
      padded block (numbaconv.dask) sums every output's taps in the same
      order and gets the same bits; the work is the same.
    * ``OW <= Wq``: a meaningful output never reads past its own row's
      phase values except through those zeroed edges.
    * Outputs ``ow >= OW`` of each accumulator row (there are ``pitch - OW``
      of them: ``(sh - 1) * Wq`` and more with a stride) are junk and are
      dropped when the rows are copied into ``out``.  Computing them is
      cheaper than short rows: a loop over 28 values runs as slowly as
      one over a few hundred (LLVM's vector loop needs more iterations than
      that), which is also why the planes kernel is slow.  When ``pitch ==
      OW`` (unit stride, output as wide as the input: the common depthwise
      ``k x k`` with padding ``k // 2``) the accumulators are the output
      plane itself and there is no copy.

    Measured on 2 threads (AVX-512 EPYC, 2026-11-30, in-process medians):
    MobileNet's stride-2 depthwise layer (dw_s2) 0.98-1.3 ms through the thin
    channels-last kernel, whose channels-last pack was 0.6 of it,
    against 0.3-0.45 ms here (it now takes Note [stride-two phases]'s form,
    and unit-stride 3x3 and 7-row kernels Note [row pairs]'s, from
    :func:`default_phase_plane_form`).  The unit-stride same-width case is
    the earlier same-width planes kernel unchanged in substance (depthwise benchmark
    layer 0.42-0.44 ms against 0.59-0.66 ms with a fresh copy per kernel
    column, and about 1.1 ms for the padded-plane kernel of ``conv_planes``).
    """
    Co, OH, OW = out.shape[1], out.shape[3], out.shape[4]
    C, H, W = x.shape[1], x.shape[3], x.shape[4]
    cin_g = C // groups
    KH, KW = w.shape[3], w.shape[4]
    # the layout (Wq, pitch, size, guard, base, length): single_rows_layout
    direct = pitch == OW                              # accumulate straight into out
    buf = np.zeros(sw * length, dtype=out.dtype)      # one region per column phase
    acc = np.empty(1 if direct else size, dtype=out.dtype)
    zeroed = np.zeros(sw, dtype=np.int64)
    cleared = np.zeros(sw, dtype=np.int64)
    # flat views taken once and unsigned indices: Note [reference counts]
    xf = x.ravel()
    of = out.ravel()
    dst = of if direct else acc
    bands = (OH + band_rows - 1) // band_rows         # Note [plane bands]
    # a band is its own problem of rows_in padded input rows, padding included
    rows_in = H if bands == 1 else (band_rows - 1) * sh + (KH - 1) * dh + 1
    top = pad_h if bands == 1 else 0                  # padding rows above buffer row 0
    for job in range(first_job, stop_job):
        plane_job, first_row, n, co, g = _band_job(job, bands, band_rows, Co, groups)
        first_in = sh * first_row - pad_h             # input row of the band's row 0
        band_size = size if bands == 1 else (min(OH - first_row, band_rows) - 1) * pitch + OW
        o = np.uint64((plane_job * OH + first_row) * OW) if direct else np.uint64(0)
        bias_value = bias[co]
        for q in range(band_size):
            dst[o + np.uint64(q)] = bias_value
        for ci in range(cin_g):
            plane = (n * C + g * cin_g + ci) * H * W
            if bands == 1:
                _split_column_phases(xf, plane, H * Wq, sw, buf, length, base)
            else:
                # row by row; rows outside the input are zeroed (another band
                # left data there)
                for j in range(rows_in):
                    r = first_in + j
                    if 0 <= r < H:
                        _split_column_phases(xf, plane + r * W, Wq, sw, buf, length,
                                             base + j * Wq)
                    else:
                        for b in range(sw):
                            _zero_run(buf, b * length + base + j * Wq, Wq)
            # kernel columns left to right, whatever the padding, so that
            # every output sums its taps in one order (a block of
            # numbaconv.dask, padded explicitly, computes the same bits); each
            # column phase keeps its own edge zeroing
            for b in range(sw):
                zeroed[b] = 0                         # right edge columns zeroed
                cleared[b] = 0                        # left edge columns zeroed
            for kw in range(KW):
                shift = kw * dw - pad_w
                a = shift // sw
                b = shift - a * sw
                region = b * length
                need = max(-a, 0)                     # right columns to zero now
                for c in range(max(Wq - need, 0), Wq - zeroed[b]):
                    _zero_column(buf, region + base + c, Wq, rows_in)
                if zeroed[b] > need:                  # give back what is needed again
                    for c in range(Wq - zeroed[b], Wq - need):
                        at = region + base + c
                        source = plane + sw * c + b
                        if bands == 1:
                            for r in range(H):
                                buf[np.uint64(at + r * Wq)] = xf[np.uint64(source + r * W)]
                        else:
                            for j in range(max(-first_in, 0), min(rows_in, H - first_in)):
                                buf[np.uint64(at + j * Wq)] = xf[
                                    np.uint64(source + (first_in + j) * W)]
                zeroed[b] = need
                for c in range(cleared[b], min(max(a, 0), Wq)):
                    _zero_column(buf, region + base + c, Wq, rows_in)
                cleared[b] = max(cleared[b], a)
                first = region + base - top * Wq + a
                _column_taps(w, co, ci, kw, KH, first, first + dh * Wq, 2 * dh * Wq, buf, dst,
                             o, band_size)
        if not direct:
            # the rows' meaningful outputs into out
            start = plane_job * OH * OW
            for oh in range(first_row, min(OH, first_row + band_rows)):
                _copy_row(of, start + oh * OW, acc, (oh - first_row) * pitch, OW)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _zero_column(buf, first, pitch, rows):
    """buf[first + r * pitch] = 0 for r < rows: one column of a phase plane
    (Note [phase planes]), column by column with the rows inside -- row by
    row with a one-value loop inside, the zeroing took a third of the
    depthwise 3x3 layer's time."""
    zero = buf.dtype.type(0)
    for r in range(rows):
        buf[np.uint64(first + r * pitch)] = zero


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _split_column_phases(xf, plane, count, sw, buf, length, base):
    """buf[b * length + base + i] = xf[plane + sw * i + b] for i < count and
    every column phase b (Note [phase planes]).

    Inlined (``inline="always"``), so the shared input's reference count is
    not touched per plane (Note [reference counts]).  For stride 2 both
    phases in one loop: LLVM vectorises that as a de-interleave (a whole
    dw_s2 input in 0.10 ms, as fast as a copy), where the same loop over
    28-value rows took 0.5 ms.
    """
    if sw == 1:
        for i in range(count):
            buf[np.uint64(base + i)] = xf[np.uint64(plane + i)]
    elif sw == 2:
        second = base + length
        for i in range(count):
            buf[np.uint64(base + i)] = xf[np.uint64(plane + 2 * i)]
            buf[np.uint64(second + i)] = xf[np.uint64(plane + 2 * i + 1)]
    else:
        for b in range(sw):
            at = b * length + base
            for i in range(count):
                buf[np.uint64(at + i)] = xf[np.uint64(plane + sw * i + b)]


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _seven_taps(w, co, ci, kh, kw):
    """Weights ``kh .. kh+6`` of kernel column ``kw``."""
    return (w[co, ci, 0, kh, kw], w[co, ci, 0, kh + 1, kw], w[co, ci, 0, kh + 2, kw],
            w[co, ci, 0, kh + 3, kw], w[co, ci, 0, kh + 4, kw], w[co, ci, 0, kh + 5, kw],
            w[co, ci, 0, kh + 6, kw])


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _seven_sum(t, x0, x1, x2, x3, x4, x5, x6):
    """One output's part from seven taps ``t`` (:func:`_seven_taps`) down a
    kernel column: the one order of every seven-tap pass, so that the
    single-row and row-pairs forms sum alike (Note [row pairs])."""
    return (t[0] * x0 + t[1] * x1 + t[2] * x2 + t[3] * x3 + t[4] * x4 + t[5] * x5
            + t[6] * x6)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _five_taps(w, co, ci, kh, kw):
    """Weights ``kh .. kh+4`` of kernel column ``kw``."""
    return (w[co, ci, 0, kh, kw], w[co, ci, 0, kh + 1, kw], w[co, ci, 0, kh + 2, kw],
            w[co, ci, 0, kh + 3, kw], w[co, ci, 0, kh + 4, kw])


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _five_sum(t, x0, x1, x2, x3, x4):
    """One output's part from five taps ``t`` down a kernel column (the
    order of every five-tap sum; :func:`_seven_sum`)."""
    return t[0] * x0 + t[1] * x1 + t[2] * x2 + t[3] * x3 + t[4] * x4


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _three_taps(w, co, ci, kh, kw):
    """Weights ``kh .. kh+2`` of kernel column ``kw``."""
    return w[co, ci, 0, kh, kw], w[co, ci, 0, kh + 1, kw], w[co, ci, 0, kh + 2, kw]


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _three_sum(t, x0, x1, x2):
    """One output's part from three taps ``t`` down a kernel column (the
    order of every three-tap sum; :func:`_seven_sum`)."""
    return t[0] * x0 + t[1] * x1 + t[2] * x2


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _tap_group(left):
    """How many of a kernel column's ``left`` remaining taps one fused pass
    takes: all seven or all five of a 7- or 5-row remainder, else three (or
    what is left).  Both the single-row and the row-pairs forms group taps
    so, which gives them one summation order (Note [row pairs]).

    Note [five-tap columns]
    ~~~~~~~~~~~~~~~~~~~~~~~
    A 5-row column was a three-tap pass and two one-tap passes, each
    reading and writing the accumulators: on EfficientNet's 5x5 depthwise
    layers the single-row form ran at about a third of the FMA rate and
    0.5-0.65x PyTorch's speed, and the row-pairs form was slower still.
    One five-tap pass per column (six loads for ten multiply-adds in the
    row-pairs form) measured, ms on 2 threads, AMD EPYC with AVX-512
    (2026-11-30): see the table in :func:`default_phase_plane_form`.  In
    the row-pairs form a 5x5 kernel then became one pass for all 25 taps
    (:func:`_pair_five_by_five`: thirty loads and two stores for fifty
    multiply-adds, no accumulator traffic between columns), which adds each
    column's five-tap sum onto the accumulator in the per-column order, so
    the bits stay the single-row form's (tested).  The same fusion of a 7x7
    kernel (49 weights, more than the 32 vector registers) was slower
    except on 7x7 planes: 4x240x28x28 0.585 against 0.653 ms, 4x96x56x56
    0.83 against 1.20, 4x960x7x7 0.47 against 0.375; 7x7 keeps a pass per
    column.
    """
    if left == 7 or left == 5:
        return left
    return min(3, left)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _column_taps(w, co, ci, kw, KH, even, odd, pitch, buf, dst, o, size):
    """dst[o + q] += sum over kh of w[co, ci, 0, kh, kw] * buf[_phase_row(kh, even,
    odd, pitch) + q] for q < size: one kernel column, its taps fused seven
    at a time for a 7-row column (ConvNeXt's 7x7 depthwise: one pass instead
    of three, dw7x7 0.54-0.56 -> 0.39-0.49 ms), five for a 5-row one (Note
    [five-tap columns]), else three (:func:`_tap_group`).  Kernel row ``kh``
    is row ``kh // 2`` (at ``pitch``) of the rows starting at ``even`` or
    ``odd`` by its parity: the two row phases of Note [stride-two phases],
    or for the single-row form (Note [phase planes]) one plane seen that
    way (``odd = even + step``, ``pitch = 2 * step``)."""
    kh = 0
    while kh < KH:
        taps = _tap_group(KH - kh)
        i0 = _phase_row(kh, even, odd, pitch)
        i1 = _phase_row(kh + 1, even, odd, pitch)
        i2 = _phase_row(kh + 2, even, odd, pitch)
        if taps == 7:
            i3 = _phase_row(kh + 3, even, odd, pitch)
            i4 = _phase_row(kh + 4, even, odd, pitch)
            i5 = _phase_row(kh + 5, even, odd, pitch)
            i6 = _phase_row(kh + 6, even, odd, pitch)
            t = _seven_taps(w, co, ci, kh, kw)
            for q in range(size):
                dst[o + np.uint64(q)] += _seven_sum(
                    t, buf[np.uint64(i0 + q)], buf[np.uint64(i1 + q)], buf[np.uint64(i2 + q)],
                    buf[np.uint64(i3 + q)], buf[np.uint64(i4 + q)], buf[np.uint64(i5 + q)],
                    buf[np.uint64(i6 + q)])
        elif taps == 5:
            i3 = _phase_row(kh + 3, even, odd, pitch)
            i4 = _phase_row(kh + 4, even, odd, pitch)
            t = _five_taps(w, co, ci, kh, kw)
            for q in range(size):
                dst[o + np.uint64(q)] += _five_sum(
                    t, buf[np.uint64(i0 + q)], buf[np.uint64(i1 + q)], buf[np.uint64(i2 + q)],
                    buf[np.uint64(i3 + q)], buf[np.uint64(i4 + q)])
        elif taps == 3:
            t = _three_taps(w, co, ci, kh, kw)
            for q in range(size):
                dst[o + np.uint64(q)] += _three_sum(t, buf[np.uint64(i0 + q)],
                                                    buf[np.uint64(i1 + q)],
                                                    buf[np.uint64(i2 + q)])
        else:
            for j in range(taps):
                tap = w[co, ci, 0, kh + j, kw]
                it = _phase_row(kh + j, even, odd, pitch)
                for q in range(size):
                    dst[o + np.uint64(q)] += tap * buf[np.uint64(it + q)]
        kh += taps


def _row_pairs_task(fused):
    """The row-pairs task compiled for one of :data:`FUSED_PASSES`
    (Note [tasks per kernel])."""
    nine, five = fused == "nine", fused == "five"   # constants of the compiled task

    @cpu_kernel(parallel=False, reassociate=False, python_callable=False)
    def _row_pairs_chunk(x, w, bias, out, groups, pad_h, pad_w, band_rows, guard, pitch, size,
                         rows, length, first_job, stop_job):
        """Planes ``first_job <= n * C_out + co < stop_job`` of conv_phase_planes
        in the row-pairs form (unit stride and dilation).

        Note [row pairs]
        ~~~~~~~~~~~~~~~~
        A phase-planes pass (Note [phase planes]) loads seven input vectors and
        the accumulators, and stores them, for seven multiply-adds: on AVX-512
        the loads, not the FMA units, bound it.  Two output rows ``2m`` and
        ``2m + 1`` read six input rows in common, so one pass computes both from
        the input's *row phases*: ``E`` holds the padded input's even rows and
        ``O`` its odd rows, and the accumulators ``de`` (even output rows) and
        ``do`` (odd ones) are flat at pitch ``pitch``.  Tap ``kh`` of output row
        ``2m`` reads padded row ``2m + kh``: ``E[m + kh/2]`` for even ``kh``,
        ``O[m + (kh-1)/2]`` for odd; row ``2m + 1`` reads the next padded row.
        So a seven-tap kernel column is eight loads for fourteen multiply-adds
        (``_pair_seven``), and the pass runs at about one vector FMA per cycle.

        The rows are stored at ``pitch = W + guard`` with a zero gap of ``guard``
        (the largest column shift) between them, so a shifted tap reads zeros
        past a row's ends and no column is ever zeroed or restored: on ConvNeXt's
        7x7 layer that bookkeeping took 0.2 of the 1.5 us per plane, against 0.07
        for the gap's junk outputs.  With no zeroing between kernel columns, a
        3x3 kernel is one pass for all nine taps (``_pair_nine``: twelve loads
        and two stores for eighteen multiply-adds, against five loads and stores
        per three with a pass per column); the other kernels keep a pass per
        column, in the order of the single-row form (and, compiled as shipped,
        its bits; with bounds checking on, LLVM contracts the scalar code into
        FMAs differently).  Both kernels are compiled without ``reassoc``: with
        it LLVM summed the 3x3 pass's even and odd rows in different orders, so
        a row's bits depended on its parity, which a Dask block may change.  The pass
        covers ``size`` accumulators, a multiple of 16 (one AVX-512 vector), so
        that it has no scalar remainder (with 7 left over on 14x14 planes the
        remainder took 1.5x the vector part's time per value).  The row copies
        in and out are ``memcpy`` (Note [short runs] in kernels/runs.py).

        Which layers take it (:func:`default_phase_plane_form`) depends on the kernel
        size, stride and dilation only, so that a Dask block takes the same form
        as its whole problem.  Measured (AMD EPYC with AVX-512, 2 threads,
        interleaved medians, 2026-11-30), depthwise with ``k // 2`` padding, ms,
        single-row form against row pairs:

        ============  =============  =============
        input         3x3            7x7
        ============  =============  =============
        4x960x7x7     0.21 / 0.12    0.61 / 0.53
        8x512x14x14   0.35 / 0.30    1.23 / 0.90
        4x256x28x28   0.24 / 0.19    0.81 / 0.60
        1x96x56x56    0.080 / 0.076  0.30 / 0.22
        1x32x112x112  0.118 / 0.113  0.45 / 0.34
        ============  =============  =============

        5x5 was slower in this form while its columns were a three-tap and two
        one-tap passes (0.55 against 0.74 ms on 4x256x28x28); with one five-tap
        pass per column (Note [five-tap columns]) it is faster, and 5-row
        kernels take it too.
        What did not help: a pitch rounded up to 16 floats so that rows start
        aligned (2-5%, within noise), 16-value block copies for the row copies
        (2.5x slower than the plain loops), and the pass as a separate,
        non-inlined function.  The pass is sensitive to how LLVM sees its
        offsets: with the column shift computed through ``// sw`` (the column
        phases of Note [phase planes]) it ran 1.25x slower, which is why this
        form takes unit strides only.
        """
        Co, OH, OW = out.shape[1], out.shape[3], out.shape[4]
        C, H, W = x.shape[1], x.shape[3], x.shape[4]
        cin_g = C // groups
        KH, KW = w.shape[3], w.shape[4]
        # the layout (guard, pitch, size, rows, length): row_pairs_layout
        even = np.zeros(length, dtype=out.dtype)          # the padded input's even rows
        odd = np.zeros(length, dtype=out.dtype)           # and its odd rows
        de = np.empty(size, dtype=out.dtype)              # accumulators of even output rows
        do = np.empty(size, dtype=out.dtype)              # and of odd ones
        # flat views taken once and unsigned indices: Note [reference counts]
        xf = x.ravel()
        of = out.ravel()
        bands = (OH + band_rows - 1) // band_rows         # Note [plane bands]
        for job in range(first_job, stop_job):
            plane_job, first_row, n, co, g = _band_job(job, bands, band_rows, Co, groups)
            bias_value = bias[co]
            if not (nine or five):                        # the fused passes start from the bias
                for q in range(size):
                    de[np.uint64(q)] = bias_value
                for q in range(size):
                    do[np.uint64(q)] = bias_value
            for ci in range(cin_g):
                plane = (n * C + g * cin_g + ci) * H * W
                if bands == 1:
                    # input row r is padded row r + pad_h; rows past the last read
                    # are skipped, padding rows stay the zeros they started as
                    for r in range(min(H, 2 * rows - pad_h)):
                        padded = r + pad_h
                        _copy_row(odd if padded % 2 else even, guard + (padded // 2) * pitch, xf,
                                  plane + r * W, W)
                else:
                    # the band's padded row j is input row first_row + j - pad_h;
                    # rows outside the input are zeroed (another band left data)
                    for j in range(2 * rows):
                        r = first_row + j - pad_h
                        if 0 <= r < H:
                            _copy_row(odd if j % 2 else even, guard + (j // 2) * pitch, xf,
                                      plane + r * W, W)
                        else:
                            _zero_run(odd if j % 2 else even, guard + (j // 2) * pitch, W)
                if nine:
                    _pair_nine(w, co, ci, guard - pad_w, pitch, even, odd, de, do, size, ci == 0,
                               bias_value)
                    continue
                if five:
                    _pair_five_by_five(w, co, ci, guard - pad_w, pitch, even, odd, de, do, size,
                                       ci == 0, bias_value)
                    continue
                for kw in range(KW):
                    # the column shift written as one sum of the loop index: see the Note
                    _row_pair_taps(w, co, ci, kw, KH, pitch, guard + kw - pad_w, even, odd, de, do,
                                   size)
            start = plane_job * OH * OW
            for oh in range(first_row, min(OH, first_row + band_rows)):
                local = oh - first_row
                _copy_row(of, start + oh * OW, do if local % 2 else de, (local // 2) * pitch, OW)

    return _row_pairs_chunk


def _stride_two_task(fused):
    """The stride-two task compiled for one of :data:`FUSED_PASSES`
    (Note [tasks per kernel])."""
    nine, five = fused == "nine", fused == "five"   # constants of the compiled task

    @cpu_kernel(parallel=False, reassociate=False, python_callable=False)
    def _stride_two_chunk(x, w, bias, out, groups, pad_h, pad_w, band_rows, guard, pitch, size,
                          rows, length, first_job, stop_job):
        """Planes ``first_job <= n * C_out + co < stop_job`` of conv_phase_planes
        for stride 2 (dilation 1).

        Note [stride-two phases]
        ~~~~~~~~~~~~~~~~~~~~~~~~
        The single-row form of a stride-2 layer (Note [phase planes]) keeps the
        input's rows at pitch ``2 * W/2``, so half of every pass is junk rows,
        and zeroes columns between its three kernel-column passes.  Here the
        padded input is split into its four (row, column) phases: every input
        row is de-interleaved by vector shuffles straight into the rows of its
        row phase's two column phases (Note [de-interleaved runs] in
        kernels/runs.py), at pitch ``W/2 + guard`` with a zero gap as in Note
        [row pairs].
        Output row ``oh`` reads padded rows ``2*oh + kh``: row ``oh + kh // 2``
        of row phase ``kh % 2``, so the accumulators are flat at that pitch with
        no junk rows.  A 3x3 kernel's nine taps are one pass (nine loads and one
        store for nine multiply-adds); other kernels make a pass per kernel
        column, its taps in the groups of :func:`_tap_group`, reading the two
        row phases in turn.  (This form was first written for 3x3 only; the
        measurements of other kernels are at the end.)

        Measured (AMD EPYC with AVX-512, 2026-11-30, interleaved minima, ms),
        depthwise 3x3 with padding 1, single-row form against this one, one and
        two threads: MobileNet's dw_s2 (4, 144, 56, 56) 0.62 / 0.54 and 0.38 /
        0.34; (4, 96, 112, 112) 2.83 / 2.77 and 1.27 / 1.06; (4, 256, 28, 28)
        0.31 / 0.25 and 0.16 / 0.13; (8, 512, 14, 14) 0.59 / 0.41 and 0.30 /
        0.24.  That split was then a flat de-interleave of 16 rows at a time
        into a scratch band (LLVM vectorised the flat loop, not a per-row one:
        0.44 against 0.25 ms on 28x28) and a ``memcpy`` per row into place; per
        56x56 plane, one thread: pass 0.32 us, split 0.61 (0.27 de-interleave,
        0.34 row copies), copy-out 0.10.  The shuffles made the split 0.25 us
        and need no scratch.  Same layers, band split against shuffles, medians
        of 200 calls, two processes each (ms): dw_s2 one thread 0.57, 0.53 /
        0.44, 0.42, two threads 0.29, 0.27 / 0.22, 0.27; (4, 96, 112, 112) one
        thread 2.55, 2.56 / 2.28, 2.12; (4, 256, 28, 28) one thread 0.30, 0.29
        / 0.22, 0.20; (8, 512, 14, 14) one thread 0.48, 0.50 / 0.32, 0.33, two
        threads 0.27, 0.28 / 0.20, 0.18.

        Other kernels, single-row form against this one, ms on 2 threads, best
        of five medians of 30 calls: see :func:`default_phase_plane_form`.  A
        5x5 kernel is then one pass for all 25 taps, each column's sum added in
        the per-column order (:func:`_stride_two_five_by_five`; outputs
        bit-identical to the pass per column on three layers, one of them
        grouped), ms on 2 threads, interleaved runs: 4x240x28x28 0.24 -> 0.15,
        4x96x56x56 0.31 -> 0.25, 8x480x14x14 0.33 -> 0.23, 1x32x112x112 0.093
        -> 0.076.  The same fusion of a 7x7 kernel was slower on MobileNet-size
        planes (2x192x56x56 0.38 against 0.44-0.51) and is not kept.
        """
        Co, OH, OW = out.shape[1], out.shape[3], out.shape[4]
        C, H, W = x.shape[1], x.shape[3], x.shape[4]
        cin_g = C // groups
        KH, KW = w.shape[3], w.shape[4]
        Wq = W // 2
        # the layout (guard, pitch, size, rows, length): stride_two_layout
        phases = np.zeros(4 * length, dtype=out.dtype)    # (row phase r, column phase b): 2r + b
        acc = np.empty(size, dtype=out.dtype)
        # tap (kh, kw) reads phases[_phase_row(kh, o_kw, o_kw + 2 * length, pitch) + q]
        # for output q = oh * pitch + ow, with o_kw the row-phase-0 offset below
        o0 = _column_phase_offset(0, pad_w, length, guard)
        o1 = _column_phase_offset(1, pad_w, length, guard)
        o2 = _column_phase_offset(2, pad_w, length, guard)
        # flat views taken once and unsigned indices: Note [reference counts]
        xf = x.ravel()
        of = out.ravel()
        bands = (OH + band_rows - 1) // band_rows         # Note [plane bands]
        for job in range(first_job, stop_job):
            plane_job, first_row, n, co, g = _band_job(job, bands, band_rows, Co, groups)
            bias_value = bias[co]
            if not (nine or five):                        # the fused passes start from the bias
                for q in range(size):
                    acc[np.uint64(q)] = bias_value
            for ci in range(cin_g):
                plane = (n * C + g * cin_g + ci) * H * W
                if bands == 1:
                    # input row r is padded row r + pad_h, de-interleaved into its
                    # row phase's two column phases; rows past the last read are
                    # skipped, padding rows stay the zeros they started as
                    for r in range(min(H, 2 * rows - pad_h)):
                        padded = r + pad_h
                        at = (padded % 2) * 2 * length + guard + (padded // 2) * pitch
                        deinterleave_run(phases, at, at + length, xf, plane + r * W, Wq)
                else:
                    # the band's padded row j is input row 2 * first_row + j - pad_h;
                    # rows outside the input are zeroed (another band left data)
                    for j in range(2 * rows):
                        r = 2 * first_row + j - pad_h
                        at = (j % 2) * 2 * length + guard + (j // 2) * pitch
                        if 0 <= r < H:
                            deinterleave_run(phases, at, at + length, xf, plane + r * W, Wq)
                        else:
                            _zero_run(phases, at, Wq)
                            _zero_run(phases, at + length, Wq)
                if nine:
                    _stride_two_nine(w, co, ci, o0, o1, o2, 2 * length, pitch, phases, acc, size,
                                     ci == 0, bias_value)
                    continue
                if five:
                    _stride_two_five_by_five(w, co, ci, o0, o1, o2,
                                             _column_phase_offset(3, pad_w, length, guard),
                                             _column_phase_offset(4, pad_w, length, guard),
                                             2 * length, pitch, phases, acc, size, ci == 0,
                                             bias_value)
                    continue
                for kw in range(KW):
                    o = _column_phase_offset(kw, pad_w, length, guard)
                    _column_taps(w, co, ci, kw, KH, o, o + 2 * length, pitch, phases, acc,
                                 np.uint64(0), size)
            start = plane_job * OH * OW
            for oh in range(first_row, min(OH, first_row + band_rows)):
                _copy_row(of, start + oh * OW, acc, (oh - first_row) * pitch, OW)

    return _stride_two_chunk


#: The passes a row-pairs or stride-two task is compiled for (Note [tasks
#: per kernel]): one fused pass of a 3x3 kernel's nine taps, one of a 5x5
#: kernel's 25, or a pass per kernel column (its taps in the groups of
#: :func:`_tap_group`).
FUSED_PASSES = ("nine", "five", "columns")


def fused_passes(KH, KW):
    """The :data:`FUSED_PASSES` of a ``KH x KW`` kernel in the row-pairs and
    stride-two forms.

    Note [tasks per kernel]
    ~~~~~~~~~~~~~~~~~~~~~~~
    The row-pairs and stride-two tasks chose among their three passes at
    run time, from the weight's shape, so numba compiled all three, each
    with its helpers inlined, for every layer: the first 3x3 depthwise call
    of a process with an empty cache spent 8.2 s (CPU, 2-core AVX2 EPYC)
    compiling the row-pairs task, most of it on the 5x5 and per-column
    passes it never runs.  Each task is now built by a factory
    (:func:`_row_pairs_task`, :func:`_stride_two_task`) whose ``nine`` and
    ``five`` are constants of the closure: numba prunes the branches they
    decide before it inlines anything, and compiles (and caches) one task
    per pass, when a layer first needs it: 1.5 s for the 3x3 row-pairs
    task.  Each pass's code is what it was, and so are the bits and the
    speed (A/B in docs/results-startup.md).
    """
    return "nine" if (KH, KW) == (3, 3) else "five" if (KH, KW) == (5, 5) else "columns"


#: (form, passes) -> its task, compiled when first called
_PHASE_PLANE_TASKS = {**{("row_pairs", p): _row_pairs_task(p) for p in FUSED_PASSES},
                      **{("stride_two", p): _stride_two_task(p) for p in FUSED_PASSES}}


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _column_phase_offset(kw, pad_w, length, guard):
    """Where kernel column ``kw`` of Note [stride-two phases] reads row 0 of
    row phase 0: ``kw - pad_w = 2a + b`` reads column phase ``b`` shifted by
    ``a``."""
    a = (kw - pad_w) // 2
    return (kw - pad_w - 2 * a) * length + guard + a


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _phase_row(kh, even, odd, pitch):
    """Offset of kernel row ``kh``'s tap in Note [stride-two phases]: row
    ``kh // 2`` of row phase ``kh % 2``, whose row 0 is at ``even`` or
    ``odd``."""
    return (even if kh % 2 == 0 else odd) + (kh // 2) * pitch


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _stride_two_nine(w, co, ci, o0, o1, o2, odd, pitch, phases, acc, size, first, bias_value):
    """All nine taps of a 3x3 kernel in one pass (Note [stride-two phases]):
    kernel column ``kw`` reads row phase 0 at ``o<kw>`` and row phase 1
    ``odd`` further; ``first`` (the group's first input channel) starts from
    ``bias_value``."""
    o10 = o0 + odd
    o11 = o1 + odd
    o12 = o2 + odd
    o20 = o0 + pitch
    o21 = o1 + pitch
    o22 = o2 + pitch
    t = _nine_taps(w, co, ci)
    for q in range(size):
        total = _nine_sum(t, phases[np.uint64(o0 + q)], phases[np.uint64(o1 + q)],
                          phases[np.uint64(o2 + q)], phases[np.uint64(o10 + q)],
                          phases[np.uint64(o11 + q)], phases[np.uint64(o12 + q)],
                          phases[np.uint64(o20 + q)], phases[np.uint64(o21 + q)],
                          phases[np.uint64(o22 + q)])
        if first:
            acc[np.uint64(q)] = bias_value + total
        else:
            acc[np.uint64(q)] += total


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _stride_two_five_by_five(w, co, ci, o0, o1, o2, o3, o4, odd, pitch, phases, acc, size,
                             first, bias_value):
    """All 25 taps of a 5x5 kernel in one pass (Note [stride-two phases]),
    each column's five-tap sum added onto the accumulator in the order of
    the pass per column (:func:`_column_taps`), so the bits are
    that pass's: kernel column ``kw`` reads row phase 0 at ``o<kw>`` and row
    phase 1 ``odd`` further; ``first`` starts from ``bias_value``."""
    t0 = _five_taps(w, co, ci, 0, 0)
    t1 = _five_taps(w, co, ci, 0, 1)
    t2 = _five_taps(w, co, ci, 0, 2)
    t3 = _five_taps(w, co, ci, 0, 3)
    t4 = _five_taps(w, co, ci, 0, 4)
    for q in range(size):
        total = bias_value if first else acc[np.uint64(q)]
        total += _stride_two_five(t0, phases, o0 + q, odd, pitch)
        total += _stride_two_five(t1, phases, o1 + q, odd, pitch)
        total += _stride_two_five(t2, phases, o2 + q, odd, pitch)
        total += _stride_two_five(t3, phases, o3 + q, odd, pitch)
        acc[np.uint64(q)] = total + _stride_two_five(t4, phases, o4 + q, odd, pitch)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _stride_two_five(t, phases, at, odd, pitch):
    """One 5-row kernel column's sum for one output of Note [stride-two
    phases]: kernel rows 0, 2, 4 from row phase 0 (row 0 at ``at``), rows 1
    and 3 from row phase 1 (``odd`` further)."""
    return _five_sum(t, phases[np.uint64(at)], phases[np.uint64(at + odd)],
                     phases[np.uint64(at + pitch)], phases[np.uint64(at + odd + pitch)],
                     phases[np.uint64(at + 2 * pitch)])


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _band_job(job, bands, band_rows, Co, groups):
    """``(plane_job, first_row, n, co, g)`` of a phase-planes job: its plane
    ``n * C_out + co`` (group ``g``) and its band's first output row (Note
    [plane bands])."""
    plane_job = job // bands
    first_row = (job - plane_job * bands) * band_rows
    n = plane_job // Co
    co = plane_job % Co
    return plane_job, first_row, n, co, co // (Co // groups)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _zero_run(buf, at, count):
    """buf[at + i] = 0 for i < count."""
    zero = buf.dtype.type(0)
    for i in range(count):
        buf[np.uint64(at + i)] = zero


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _copy_row(dst, at, src, start, count):
    """dst[at + i] = src[start + i] for i < count: ``memcpy`` for short rows
    (Note [short runs] in kernels/runs.py), a loop for long ones."""
    if count <= SHORT_RUN:
        copy_run(dst, at, src, start, count)
    else:
        for i in range(count):
            dst[np.uint64(at + i)] = src[np.uint64(start + i)]


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _row_pair_taps(w, co, ci, kw, KH, pitch, first, even, odd, de, do, size):
    """One kernel column of Note [row pairs]: its taps in the groups of
    :func:`_tap_group`, as :func:`_column_taps` takes them, so that every
    output sums in the same order.  The 7-, 5- and 3-row columns get their
    own call with the group's start known: inside the general loop LLVM
    compiled the seven-tap pass 1.4x slower."""
    if KH == 7:
        _pair_seven(even, odd, w, co, ci, 0, kw, first, pitch, de, do, size)
        return
    if KH == 5:
        _pair_five(even, odd, w, co, ci, 0, kw, first, pitch, de, do, size)
        return
    if KH == 3:
        _pair_three(even, odd, w, co, ci, 0, kw, first, pitch, de, do, size)
        return
    kh = 0
    while kh < KH:
        taps = _tap_group(KH - kh)
        at = first + (kh // 2) * pitch
        if taps == 5:
            if kh % 2 == 0:
                _pair_five(even, odd, w, co, ci, kh, kw, at, pitch, de, do, size)
            else:
                _pair_five(odd, even, w, co, ci, kh, kw, at, pitch, de, do, size)
        elif taps == 7:
            if kh % 2 == 0:
                _pair_seven(even, odd, w, co, ci, kh, kw, at, pitch, de, do, size)
            else:
                _pair_seven(odd, even, w, co, ci, kh, kw, at, pitch, de, do, size)
        elif taps == 3:
            if kh % 2 == 0:
                _pair_three(even, odd, w, co, ci, kh, kw, at, pitch, de, do, size)
            else:
                _pair_three(odd, even, w, co, ci, kh, kw, at, pitch, de, do, size)
        else:
            for t in range(taps):
                k = kh + t
                tap = w[co, ci, 0, k, kw]
                at_even = first + (k // 2) * pitch            # row k for output row 2m
                at_odd = first + ((k + 1) // 2) * pitch       # row k + 1 for 2m + 1
                if k % 2 == 0:
                    _pair_one(even, odd, tap, at_even, at_odd, de, do, size)
                else:
                    _pair_one(odd, even, tap, at_even, at_odd, de, do, size)
        kh += taps


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _pair_seven(X, Y, w, co, ci, kh, kw, at, pitch, de, do, size):
    """Taps ``kh .. kh+6`` of kernel column ``kw`` for both output rows of
    every pair (Note [row pairs]).  Padded rows ``kh + j`` (j = 0..7) from an
    even output row alternate between ``X`` (the row phase of ``kh``'s
    parity, row ``kh // 2`` at ``at``) and ``Y``; the even row sums rows
    0..6, the odd row rows 1..7, in _column_taps' order."""
    a1 = at + pitch * ((kh + 1) // 2 - kh // 2)
    a2 = at + pitch
    a3 = a1 + pitch
    a4 = a2 + pitch
    a5 = a3 + pitch
    a6 = a4 + pitch
    a7 = a5 + pitch
    t = _seven_taps(w, co, ci, kh, kw)
    for q in range(size):
        x0 = X[np.uint64(at + q)]
        x1 = Y[np.uint64(a1 + q)]
        x2 = X[np.uint64(a2 + q)]
        x3 = Y[np.uint64(a3 + q)]
        x4 = X[np.uint64(a4 + q)]
        x5 = Y[np.uint64(a5 + q)]
        x6 = X[np.uint64(a6 + q)]
        x7 = Y[np.uint64(a7 + q)]
        de[np.uint64(q)] += _seven_sum(t, x0, x1, x2, x3, x4, x5, x6)
        do[np.uint64(q)] += _seven_sum(t, x1, x2, x3, x4, x5, x6, x7)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _pair_five(X, Y, w, co, ci, kh, kw, at, pitch, de, do, size):
    """Taps ``kh .. kh+4`` of column ``kw`` for both rows of every pair
    (:func:`_pair_seven`, five taps: six loads for ten multiply-adds)."""
    a1 = at + pitch * ((kh + 1) // 2 - kh // 2)
    a2 = at + pitch
    a3 = a1 + pitch
    a4 = a2 + pitch
    a5 = a3 + pitch
    t = _five_taps(w, co, ci, kh, kw)
    for q in range(size):
        x0 = X[np.uint64(at + q)]
        x1 = Y[np.uint64(a1 + q)]
        x2 = X[np.uint64(a2 + q)]
        x3 = Y[np.uint64(a3 + q)]
        x4 = X[np.uint64(a4 + q)]
        x5 = Y[np.uint64(a5 + q)]
        de[np.uint64(q)] += _five_sum(t, x0, x1, x2, x3, x4)
        do[np.uint64(q)] += _five_sum(t, x1, x2, x3, x4, x5)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _five_column(X, Y, t, r0, r1, r2):
    """One 5-row kernel column's parts of an even and an odd output row
    (:func:`_pair_five`): padded rows 0..5 alternate between ``X`` and ``Y``,
    rows 0-1 at ``r0``, 2-3 at ``r1``, 4-5 at ``r2`` (already shifted by
    the column)."""
    x0 = X[r0]
    x1 = Y[r0]
    x2 = X[r1]
    x3 = Y[r1]
    x4 = X[r2]
    x5 = Y[r2]
    return _five_sum(t, x0, x1, x2, x3, x4), _five_sum(t, x1, x2, x3, x4, x5)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _pair_five_by_five(w, co, ci, at, pitch, X, Y, de, do, size, first, bias_value):
    """All 25 taps of a 5x5 kernel for both rows of every pair in one pass
    (Note [row pairs]), summed as the pass per column sums them (kernel
    columns left to right onto the accumulator, each down its rows), so
    the bits are the single-row form's.  Padded rows 0..5 alternate
    between ``X`` and ``Y``, row 0 at ``at``; ``first`` (the group's first
    input channel) starts from ``bias_value``."""
    t0 = _five_taps(w, co, ci, 0, 0)
    t1 = _five_taps(w, co, ci, 0, 1)
    t2 = _five_taps(w, co, ci, 0, 2)
    t3 = _five_taps(w, co, ci, 0, 3)
    t4 = _five_taps(w, co, ci, 0, 4)
    c1 = np.uint64(1)
    c2 = np.uint64(2)
    c3 = np.uint64(3)
    c4 = np.uint64(4)
    for q in range(size):
        r0 = np.uint64(at + q)
        r1 = np.uint64(at + pitch + q)
        r2 = np.uint64(at + 2 * pitch + q)
        if first:
            even = bias_value
            odd = bias_value
        else:
            even = de[np.uint64(q)]
            odd = do[np.uint64(q)]
        e, o = _five_column(X, Y, t0, r0, r1, r2)
        even += e
        odd += o
        e, o = _five_column(X, Y, t1, r0 + c1, r1 + c1, r2 + c1)
        even += e
        odd += o
        e, o = _five_column(X, Y, t2, r0 + c2, r1 + c2, r2 + c2)
        even += e
        odd += o
        e, o = _five_column(X, Y, t3, r0 + c3, r1 + c3, r2 + c3)
        even += e
        odd += o
        e, o = _five_column(X, Y, t4, r0 + c4, r1 + c4, r2 + c4)
        de[np.uint64(q)] = even + e
        do[np.uint64(q)] = odd + o


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _nine_taps(w, co, ci):
    """The nine weights of a 3x3 kernel, row by row."""
    return (w[co, ci, 0, 0, 0], w[co, ci, 0, 0, 1], w[co, ci, 0, 0, 2],
            w[co, ci, 0, 1, 0], w[co, ci, 0, 1, 1], w[co, ci, 0, 1, 2],
            w[co, ci, 0, 2, 0], w[co, ci, 0, 2, 1], w[co, ci, 0, 2, 2])


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _nine_sum(t, x00, x01, x02, x10, x11, x12, x20, x21, x22):
    """One output of a 3x3 kernel ``t`` (:func:`_nine_taps`) from its nine
    inputs ``x<row><column>``: kernel columns left to right, each summed
    down its rows; the one order of every fused 3x3 pass."""
    return (_three_sum((t[0], t[3], t[6]), x00, x10, x20)
            + _three_sum((t[1], t[4], t[7]), x01, x11, x21)
            + _three_sum((t[2], t[5], t[8]), x02, x12, x22))


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _pair_nine(w, co, ci, at, pitch, X, Y, de, do, size, first, bias_value):
    """All nine taps of a 3x3 kernel for both rows of every pair (Note [row
    pairs]): padded rows 0..3 from an even output row alternate between the
    even (``X``) and odd (``Y``) row phases, row 0 at ``at``, each read at
    column shifts 0, 1 and 2.  Twelve loads for eighteen multiply-adds and
    one store per output, against five loads and stores per three
    multiply-adds with a pass per kernel column.  ``first`` (the group's
    first input channel) starts from ``bias_value``; kernel columns are
    summed left to right."""
    a2 = at + pitch
    t = _nine_taps(w, co, ci)
    for q in range(size):
        i0 = np.uint64(at + q)
        i2 = np.uint64(a2 + q)
        x00 = X[i0]
        x01 = X[i0 + np.uint64(1)]
        x02 = X[i0 + np.uint64(2)]
        x10 = Y[i0]
        x11 = Y[i0 + np.uint64(1)]
        x12 = Y[i0 + np.uint64(2)]
        x20 = X[i2]
        x21 = X[i2 + np.uint64(1)]
        x22 = X[i2 + np.uint64(2)]
        x30 = Y[i2]
        x31 = Y[i2 + np.uint64(1)]
        x32 = Y[i2 + np.uint64(2)]
        even_sum = _nine_sum(t, x00, x01, x02, x10, x11, x12, x20, x21, x22)
        odd_sum = _nine_sum(t, x10, x11, x12, x20, x21, x22, x30, x31, x32)
        if first:
            de[np.uint64(q)] = bias_value + even_sum
            do[np.uint64(q)] = bias_value + odd_sum
        else:
            de[np.uint64(q)] += even_sum
            do[np.uint64(q)] += odd_sum


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _pair_three(X, Y, w, co, ci, kh, kw, at, pitch, de, do, size):
    """Taps ``kh .. kh+2`` of column ``kw`` for both rows of every pair
    (:func:`_pair_seven`, three taps)."""
    a1 = at + pitch * ((kh + 1) // 2 - kh // 2)
    a2 = at + pitch
    a3 = a1 + pitch
    t = _three_taps(w, co, ci, kh, kw)
    for q in range(size):
        x0 = X[np.uint64(at + q)]
        x1 = Y[np.uint64(a1 + q)]
        x2 = X[np.uint64(a2 + q)]
        x3 = Y[np.uint64(a3 + q)]
        de[np.uint64(q)] += _three_sum(t, x0, x1, x2)
        do[np.uint64(q)] += _three_sum(t, x1, x2, x3)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _pair_one(X, Y, tap, at_even, at_odd, de, do, size):
    """One tap for both rows of every pair: ``X`` holds the even output
    row's input row, ``Y`` the odd one's (Note [row pairs])."""
    for q in range(size):
        de[np.uint64(q)] += tap * X[np.uint64(at_even + q)]
        do[np.uint64(q)] += tap * Y[np.uint64(at_odd + q)]


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


@cpu_kernel(parallel=False, python_callable=False)
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

