"""The row-pairs and stride-two forms of the phase-planes loop order
(kernels/direct_phase_planes.py): the padded input split into its row
phases, with a zero gap between rows instead of zeroed columns.

Each form's task is compiled once per fused pass (Note [tasks per kernel]
in kernels/direct_layouts.py).  The two tasks share their skeleton but stay
two functions: one skeleton whose form was a further constant of the
closure compiled 0.06-0.12 s (4-7%) slower on a cold first call, so the
shared pieces are the inlined helpers of kernels/direct_taps.py.

Note [row pairs]
~~~~~~~~~~~~~~~~
A phase-planes pass (Note [phase planes]) loads seven input vectors and the
accumulators, and stores them, for seven multiply-adds: on AVX-512 the
loads, not the FMA units, bound it.  Two output rows ``2m`` and ``2m + 1``
read six input rows in common, so one pass computes both from the input's
*row phases*: ``E`` holds the padded input's even rows and ``O`` its odd
rows, and the accumulators ``de`` (even output rows) and ``do`` (odd ones)
are flat at pitch ``pitch``.  Tap ``kh`` of output row ``2m`` reads padded
row ``2m + kh``: ``E[m + kh/2]`` for even ``kh``, ``O[m + (kh-1)/2]`` for
odd; row ``2m + 1`` reads the next padded row.  So a seven-tap kernel
column is eight loads for fourteen multiply-adds (:func:`_pair_seven`), and
the pass runs at about one vector FMA per cycle.

The rows are stored at ``pitch = W + guard`` with a zero gap of ``guard``
(the largest column shift) between them, so a shifted tap reads zeros past
a row's ends and no column is ever zeroed or restored (on ConvNeXt's 7x7
layer that bookkeeping took 0.2 of the 1.5 us per plane).  With no zeroing
between kernel columns, a 3x3 kernel is one pass for all nine taps
(:func:`_pair_nine`: twelve loads and two stores for eighteen
multiply-adds, against five loads and stores per three with a pass per
column), and so is a 5x5 kernel's 25 (Note [five-tap columns] in
kernels/direct_taps.py); the other kernels keep a pass per column, in the
order of the single-row form (and, compiled as shipped, its bits; with
bounds checking on, LLVM contracts the scalar code into FMAs differently).
The tasks are compiled without ``reassoc``: with it LLVM summed the 3x3
pass's even and odd rows in different orders, so a row's bits depended on
its parity, which a Dask block may change.  The pass covers ``size``
accumulators, a multiple of 16 (one AVX-512 vector), so that it has no
scalar remainder (with 7 left over on 14x14 planes the remainder took 1.5x
the vector part's time per value).  The row copies in and out are
``memcpy`` (Note [short runs] in kernels/runs.py).  The pass is sensitive to
how LLVM sees its offsets: with the column shift computed through ``// sw``
(the column phases of Note [phase planes]) it ran 1.25x slower, which is
why this form takes unit strides only.

Which layers take it (``default_phase_plane_form``) depends on the kernel
size, stride and dilation only, so that a Dask block takes the same form as
its whole problem: unit-stride 3x3, 5- and 7-row kernels (ConvNeXt's 7x7
depthwise on 8x512x14x14: 1.23 ms in single rows, 0.90 here; the tables
and what did not help are in docs/results-direct.md, "Row pairs").

Note [stride-two phases]
~~~~~~~~~~~~~~~~~~~~~~~~
The single-row form of a stride-2 layer (Note [phase planes]) keeps the
input's rows at pitch ``2 * W/2``, so half of every pass is junk rows, and
zeroes columns between its three kernel-column passes.  Here the padded
input is split into its four (row, column) phases: every input row is
de-interleaved by vector shuffles straight into the rows of its row phase's
two column phases (Note [de-interleaved runs] in kernels/runs.py), at pitch
``W/2 + guard`` with a zero gap as in Note [row pairs].  Output row ``oh``
reads padded rows ``2*oh + kh``: row ``oh + kh // 2`` of row phase ``kh %
2``, so the accumulators are flat at that pitch with no junk rows.  A 3x3
kernel's nine taps are one pass (nine loads and one store for nine
multiply-adds), and a 5x5 kernel's 25 (:func:`_stride_two_five_by_five`,
each column's sum added in the per-column order, so the bits are the pass
per column's); other kernels make a pass per kernel column, its taps in
the groups of ``tap_group``, reading the two row phases in turn.  On
MobileNet's dw_s2 (4x144x56x56, 3x3) the single-row form took 0.38 ms on
two threads and this one 0.34, now less with the shuffled split
(docs/results-direct.md, "Stride-two phases").
"""

from __future__ import annotations

import numpy as np

from .direct_layouts import FUSED_PASSES
from .direct_taps import (band_job, column_taps, copy_row, five_sum, five_taps, nine_sum,
                          nine_taps, seven_sum, seven_taps, tap_group, three_sum, three_taps,
                          zero_run)
from .epilogue_block import finish_block
from .jit import cpu_kernel, inline_helper
from .runs import deinterleave_run


def _row_pairs_task(fused):
    """The row-pairs task (Note [row pairs]) compiled for one of ``FUSED_PASSES``
    (Note [tasks per kernel] in kernels/direct_layouts.py)."""
    nine, five = fused == "nine", fused == "five"   # constants of the compiled task

    @cpu_kernel(parallel=False, reassociate=False, python_callable=False)
    def _row_pairs_chunk(x, w, bias, out, groups, pad_h, pad_w, band_rows, guard, pitch, size,
                         rows, length, code, slope, residual, first_job, stop_job):
        """Planes ``first_job <= n * C_out + co < stop_job`` of conv_phase_planes
        in the row-pairs form (unit stride and dilation)."""
        Co, OH, OW = out.shape[1], out.shape[3], out.shape[4]
        C, H, W = x.shape[1], x.shape[3], x.shape[4]
        cin_g = C // groups
        KH, KW = w.shape[3], w.shape[4]
        zero = out.dtype.type(0)
        # the layout (guard, pitch, size, rows, length): row_pairs_layout
        even = np.zeros(length, dtype=out.dtype)          # the padded input's even rows
        odd = np.zeros(length, dtype=out.dtype)           # and its odd rows
        de = np.empty(size, dtype=out.dtype)              # accumulators of even output rows
        do = np.empty(size, dtype=out.dtype)              # and of odd ones
        # flat views taken once and unsigned indices: Note [reference counts]
        # (kernels/direct_channels_last.py)
        xf = x.ravel()
        of = out.ravel()
        bands = (OH + band_rows - 1) // band_rows         # Note [plane bands]
        for job in range(first_job, stop_job):
            plane_job, first_row, n, co, g = band_job(job, bands, band_rows, Co, groups)
            # Note [no bias] in kernels/__init__.py
            bias_value = bias[co] if bias.shape[0] else zero
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
                        copy_row(odd if padded % 2 else even, guard + (padded // 2) * pitch, xf,
                                  plane + r * W, W)
                else:
                    # the band's padded row j is input row first_row + j - pad_h;
                    # rows outside the input are zeroed (another band left data)
                    for j in range(2 * rows):
                        r = first_row + j - pad_h
                        if 0 <= r < H:
                            copy_row(odd if j % 2 else even, guard + (j // 2) * pitch, xf,
                                      plane + r * W, W)
                        else:
                            zero_run(odd if j % 2 else even, guard + (j // 2) * pitch, W)
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
                copy_row(of, start + oh * OW, do if local % 2 else de, (local // 2) * pitch, OW)
            if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
                finish_block(of, (plane_job * OH + first_row) * OW, 0, 1,
                             (min(OH, first_row + band_rows) - first_row) * OW, residual, code,
                             slope)

    return _row_pairs_chunk


def _stride_two_task(fused):
    """The stride-two task (Note [stride-two phases]) compiled for one of
    ``FUSED_PASSES``
    (Note [tasks per kernel] in kernels/direct_layouts.py)."""
    nine, five = fused == "nine", fused == "five"   # constants of the compiled task

    @cpu_kernel(parallel=False, reassociate=False, python_callable=False)
    def _stride_two_chunk(x, w, bias, out, groups, pad_h, pad_w, band_rows, guard, pitch, size,
                          rows, length, code, slope, residual, first_job, stop_job):
        """Planes ``first_job <= n * C_out + co < stop_job`` of conv_phase_planes
        for stride 2 (dilation 1)."""
        Co, OH, OW = out.shape[1], out.shape[3], out.shape[4]
        C, H, W = x.shape[1], x.shape[3], x.shape[4]
        cin_g = C // groups
        KH, KW = w.shape[3], w.shape[4]
        zero = out.dtype.type(0)
        Wq = W // 2
        # the layout (guard, pitch, size, rows, length): stride_two_layout
        phases = np.zeros(4 * length, dtype=out.dtype)    # (row phase r, column phase b): 2r + b
        acc = np.empty(size, dtype=out.dtype)
        # tap (kh, kw) reads phases[phase_row(kh, o_kw, o_kw + 2 * length, pitch) + q]
        # for output q = oh * pitch + ow, with o_kw the row-phase-0 offset below
        o0 = _column_phase_offset(0, pad_w, length, guard)
        o1 = _column_phase_offset(1, pad_w, length, guard)
        o2 = _column_phase_offset(2, pad_w, length, guard)
        # flat views taken once and unsigned indices: Note [reference counts]
        # (kernels/direct_channels_last.py)
        xf = x.ravel()
        of = out.ravel()
        bands = (OH + band_rows - 1) // band_rows         # Note [plane bands]
        for job in range(first_job, stop_job):
            plane_job, first_row, n, co, g = band_job(job, bands, band_rows, Co, groups)
            # Note [no bias] in kernels/__init__.py
            bias_value = bias[co] if bias.shape[0] else zero
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
                            zero_run(phases, at, Wq)
                            zero_run(phases, at + length, Wq)
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
                    column_taps(w, co, ci, kw, KH, o, o + 2 * length, pitch, phases, acc,
                                 np.uint64(0), size)
            start = plane_job * OH * OW
            for oh in range(first_row, min(OH, first_row + band_rows)):
                copy_row(of, start + oh * OW, acc, (oh - first_row) * pitch, OW)
            if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
                finish_block(of, (plane_job * OH + first_row) * OW, 0, 1,
                             (min(OH, first_row + band_rows) - first_row) * OW, residual, code,
                             slope)

    return _stride_two_chunk


@inline_helper
def _column_phase_offset(kw, pad_w, length, guard):
    """Where kernel column ``kw`` of Note [stride-two phases] reads row 0 of
    row phase 0: ``kw - pad_w = 2a + b`` reads column phase ``b`` shifted by
    ``a``."""
    a = (kw - pad_w) // 2
    return (kw - pad_w - 2 * a) * length + guard + a


@inline_helper
def _stride_two_nine(w, co, ci, o0, o1, o2, odd, pitch, phases, acc, size, first, bias_value):
    """All nine taps of a 3x3 kernel in one pass (Note [stride-two phases]):
    kernel column ``kw`` reads row phase 0 at ``o<kw>`` and row phase 1
    ``odd`` further; ``first`` (the group's first input channel) starts from
    ``bias_value``.

    Note [no masked stores]
    ~~~~~~~~~~~~~~~~~~~~~~~
    With ``if first: acc[q] = ... else: acc[q] += ...`` inside the loop (or
    the same as a conditional expression), LLVM if-converts the branch into
    two complementary masked vector stores per eight outputs.  AVX-512 masks
    them for free; AMD's Zen 2 runs ``vmaskmovps`` stores in microcode.  A
    loop per case, with the same expression in each (so the same bits), made
    NCHW 3x3 depthwise layers 1.2-1.75x faster on the AVX2 EPYC
    (docs/results-direct.md, "Masked stores on AVX2")."""
    t = nine_taps(w, co, ci)
    if first:                       # Note [no masked stores]: a loop per case
        for q in range(size):
            acc[np.uint64(q)] = bias_value + _stride_two_nine_sum(t, phases, o0 + q, o1 + q,
                                                                  o2 + q, odd, pitch)
    else:
        for q in range(size):
            acc[np.uint64(q)] += _stride_two_nine_sum(t, phases, o0 + q, o1 + q, o2 + q, odd,
                                                      pitch)


@inline_helper
def _stride_two_nine_sum(t, phases, a0, a1, a2, odd, pitch):
    """The nine products of one output of :func:`_stride_two_nine`."""
    return nine_sum(t, phases[np.uint64(a0)], phases[np.uint64(a1)], phases[np.uint64(a2)],
                    phases[np.uint64(a0 + odd)], phases[np.uint64(a1 + odd)],
                    phases[np.uint64(a2 + odd)], phases[np.uint64(a0 + pitch)],
                    phases[np.uint64(a1 + pitch)], phases[np.uint64(a2 + pitch)])


@inline_helper
def _stride_two_five_by_five(w, co, ci, o0, o1, o2, o3, o4, odd, pitch, phases, acc, size,
                             first, bias_value):
    """All 25 taps of a 5x5 kernel in one pass (Note [stride-two phases]),
    each column's five-tap sum added onto the accumulator in the order of
    the pass per column (:func:`column_taps`), so the bits are
    that pass's: kernel column ``kw`` reads row phase 0 at ``o<kw>`` and row
    phase 1 ``odd`` further; ``first`` starts from ``bias_value``."""
    t0 = five_taps(w, co, ci, 0, 0)
    t1 = five_taps(w, co, ci, 0, 1)
    t2 = five_taps(w, co, ci, 0, 2)
    t3 = five_taps(w, co, ci, 0, 3)
    t4 = five_taps(w, co, ci, 0, 4)
    for q in range(size):
        total = bias_value if first else acc[np.uint64(q)]
        total += _stride_two_five(t0, phases, o0 + q, odd, pitch)
        total += _stride_two_five(t1, phases, o1 + q, odd, pitch)
        total += _stride_two_five(t2, phases, o2 + q, odd, pitch)
        total += _stride_two_five(t3, phases, o3 + q, odd, pitch)
        acc[np.uint64(q)] = total + _stride_two_five(t4, phases, o4 + q, odd, pitch)


@inline_helper
def _stride_two_five(t, phases, at, odd, pitch):
    """One 5-row kernel column's sum for one output of Note [stride-two
    phases]: kernel rows 0, 2, 4 from row phase 0 (row 0 at ``at``), rows 1
    and 3 from row phase 1 (``odd`` further)."""
    return five_sum(t, phases[np.uint64(at)], phases[np.uint64(at + odd)],
                     phases[np.uint64(at + pitch)], phases[np.uint64(at + odd + pitch)],
                     phases[np.uint64(at + 2 * pitch)])


@inline_helper
def _row_pair_taps(w, co, ci, kw, KH, pitch, first, even, odd, de, do, size):
    """One kernel column of Note [row pairs]: its taps in the groups of
    :func:`tap_group`, as :func:`column_taps` takes them, so that every
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
        taps = tap_group(KH - kh)
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


@inline_helper
def _pair_seven(X, Y, w, co, ci, kh, kw, at, pitch, de, do, size):
    """Taps ``kh .. kh+6`` of kernel column ``kw`` for both output rows of
    every pair (Note [row pairs]).  Padded rows ``kh + j`` (j = 0..7) from an
    even output row alternate between ``X`` (the row phase of ``kh``'s
    parity, row ``kh // 2`` at ``at``) and ``Y``; the even row sums rows
    0..6, the odd row rows 1..7, in column_taps' order."""
    a1 = at + pitch * ((kh + 1) // 2 - kh // 2)
    a2 = at + pitch
    a3 = a1 + pitch
    a4 = a2 + pitch
    a5 = a3 + pitch
    a6 = a4 + pitch
    a7 = a5 + pitch
    t = seven_taps(w, co, ci, kh, kw)
    for q in range(size):
        x0 = X[np.uint64(at + q)]
        x1 = Y[np.uint64(a1 + q)]
        x2 = X[np.uint64(a2 + q)]
        x3 = Y[np.uint64(a3 + q)]
        x4 = X[np.uint64(a4 + q)]
        x5 = Y[np.uint64(a5 + q)]
        x6 = X[np.uint64(a6 + q)]
        x7 = Y[np.uint64(a7 + q)]
        de[np.uint64(q)] += seven_sum(t, x0, x1, x2, x3, x4, x5, x6)
        do[np.uint64(q)] += seven_sum(t, x1, x2, x3, x4, x5, x6, x7)


@inline_helper
def _pair_five(X, Y, w, co, ci, kh, kw, at, pitch, de, do, size):
    """Taps ``kh .. kh+4`` of column ``kw`` for both rows of every pair
    (:func:`_pair_seven`, five taps: six loads for ten multiply-adds)."""
    a1 = at + pitch * ((kh + 1) // 2 - kh // 2)
    a2 = at + pitch
    a3 = a1 + pitch
    a4 = a2 + pitch
    a5 = a3 + pitch
    t = five_taps(w, co, ci, kh, kw)
    for q in range(size):
        x0 = X[np.uint64(at + q)]
        x1 = Y[np.uint64(a1 + q)]
        x2 = X[np.uint64(a2 + q)]
        x3 = Y[np.uint64(a3 + q)]
        x4 = X[np.uint64(a4 + q)]
        x5 = Y[np.uint64(a5 + q)]
        de[np.uint64(q)] += five_sum(t, x0, x1, x2, x3, x4)
        do[np.uint64(q)] += five_sum(t, x1, x2, x3, x4, x5)


@inline_helper
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
    return five_sum(t, x0, x1, x2, x3, x4), five_sum(t, x1, x2, x3, x4, x5)


@inline_helper
def _pair_five_by_five(w, co, ci, at, pitch, X, Y, de, do, size, first, bias_value):
    """All 25 taps of a 5x5 kernel for both rows of every pair in one pass
    (Note [row pairs]), summed as the pass per column sums them (kernel
    columns left to right onto the accumulator, each down its rows), so
    the bits are the single-row form's.  Padded rows 0..5 alternate
    between ``X`` and ``Y``, row 0 at ``at``; ``first`` (the group's first
    input channel) starts from ``bias_value``."""
    t0 = five_taps(w, co, ci, 0, 0)
    t1 = five_taps(w, co, ci, 0, 1)
    t2 = five_taps(w, co, ci, 0, 2)
    t3 = five_taps(w, co, ci, 0, 3)
    t4 = five_taps(w, co, ci, 0, 4)
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


@inline_helper
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
    t = nine_taps(w, co, ci)
    if first:                       # Note [no masked stores]: a loop per case
        for q in range(size):
            even_sum, odd_sum = _pair_nine_sums(t, X, Y, np.uint64(at + q), np.uint64(a2 + q))
            de[np.uint64(q)] = bias_value + even_sum
            do[np.uint64(q)] = bias_value + odd_sum
    else:
        for q in range(size):
            even_sum, odd_sum = _pair_nine_sums(t, X, Y, np.uint64(at + q), np.uint64(a2 + q))
            de[np.uint64(q)] += even_sum
            do[np.uint64(q)] += odd_sum


@inline_helper
def _pair_nine_sums(t, X, Y, i0, i2):
    """The even and the odd row's nine products of one column of
    :func:`_pair_nine` (padded rows 0 and 2 start at ``i0`` and ``i2``)."""
    one, two = np.uint64(1), np.uint64(2)
    x00, x01, x02 = X[i0], X[i0 + one], X[i0 + two]
    x10, x11, x12 = Y[i0], Y[i0 + one], Y[i0 + two]
    x20, x21, x22 = X[i2], X[i2 + one], X[i2 + two]
    x30, x31, x32 = Y[i2], Y[i2 + one], Y[i2 + two]
    return (nine_sum(t, x00, x01, x02, x10, x11, x12, x20, x21, x22),
            nine_sum(t, x10, x11, x12, x20, x21, x22, x30, x31, x32))


@inline_helper
def _pair_three(X, Y, w, co, ci, kh, kw, at, pitch, de, do, size):
    """Taps ``kh .. kh+2`` of column ``kw`` for both rows of every pair
    (:func:`_pair_seven`, three taps)."""
    a1 = at + pitch * ((kh + 1) // 2 - kh // 2)
    a2 = at + pitch
    a3 = a1 + pitch
    t = three_taps(w, co, ci, kh, kw)
    for q in range(size):
        x0 = X[np.uint64(at + q)]
        x1 = Y[np.uint64(a1 + q)]
        x2 = X[np.uint64(a2 + q)]
        x3 = Y[np.uint64(a3 + q)]
        de[np.uint64(q)] += three_sum(t, x0, x1, x2)
        do[np.uint64(q)] += three_sum(t, x1, x2, x3)


@inline_helper
def _pair_one(X, Y, tap, at_even, at_odd, de, do, size):
    """One tap for both rows of every pair: ``X`` holds the even output
    row's input row, ``Y`` the odd one's (Note [row pairs])."""
    for q in range(size):
        de[np.uint64(q)] += tap * X[np.uint64(at_even + q)]
        do[np.uint64(q)] += tap * Y[np.uint64(at_odd + q)]


#: (form, passes) -> its task, compiled when first called
ROW_PHASES_TASKS = {**{("row_pairs", p): _row_pairs_task(p) for p in FUSED_PASSES},
                    **{("stride_two", p): _stride_two_task(p) for p in FUSED_PASSES}}
