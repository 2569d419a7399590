"""The fused tap passes shared by the forms of the phase-planes loop
order (kernels/direct_phase_planes.py and kernels/direct_row_phases.py),
and the small row helpers of their tasks.

Every helper is inlined into its task (:func:`~numbaconv.kernels.jit.inline_helper`).
The ``*_taps`` helpers read a group of weights down a kernel column and the
``*_sum`` helpers fix the one order in which each group is summed: every
form sums an output's taps with them, in the groups of :func:`tap_group`,
so that the forms give the same bits (Note [row pairs]).
"""

from __future__ import annotations

import numpy as np

from .jit import inline_helper
from .runs import SHORT_RUN, copy_run


@inline_helper
def seven_taps(w, co, ci, kh, kw):
    """Weights ``kh .. kh+6`` of kernel column ``kw``."""
    return (w[co, ci, 0, kh, kw], w[co, ci, 0, kh + 1, kw], w[co, ci, 0, kh + 2, kw],
            w[co, ci, 0, kh + 3, kw], w[co, ci, 0, kh + 4, kw], w[co, ci, 0, kh + 5, kw],
            w[co, ci, 0, kh + 6, kw])


@inline_helper
def seven_sum(t, x0, x1, x2, x3, x4, x5, x6):
    """One output's part from seven taps ``t`` (:func:`seven_taps`) down a
    kernel column: the one order of every seven-tap pass, so that the
    single-row and row-pairs forms sum alike (Note [row pairs])."""
    return (t[0] * x0 + t[1] * x1 + t[2] * x2 + t[3] * x3 + t[4] * x4 + t[5] * x5
            + t[6] * x6)


@inline_helper
def five_taps(w, co, ci, kh, kw):
    """Weights ``kh .. kh+4`` of kernel column ``kw``."""
    return (w[co, ci, 0, kh, kw], w[co, ci, 0, kh + 1, kw], w[co, ci, 0, kh + 2, kw],
            w[co, ci, 0, kh + 3, kw], w[co, ci, 0, kh + 4, kw])


@inline_helper
def five_sum(t, x0, x1, x2, x3, x4):
    """One output's part from five taps ``t`` down a kernel column (the
    order of every five-tap sum; :func:`seven_sum`)."""
    return t[0] * x0 + t[1] * x1 + t[2] * x2 + t[3] * x3 + t[4] * x4


@inline_helper
def three_taps(w, co, ci, kh, kw):
    """Weights ``kh .. kh+2`` of kernel column ``kw``."""
    return w[co, ci, 0, kh, kw], w[co, ci, 0, kh + 1, kw], w[co, ci, 0, kh + 2, kw]


@inline_helper
def three_sum(t, x0, x1, x2):
    """One output's part from three taps ``t`` down a kernel column (the
    order of every three-tap sum; :func:`seven_sum`)."""
    return t[0] * x0 + t[1] * x1 + t[2] * x2


@inline_helper
def nine_taps(w, co, ci):
    """The nine weights of a 3x3 kernel, row by row."""
    return (w[co, ci, 0, 0, 0], w[co, ci, 0, 0, 1], w[co, ci, 0, 0, 2],
            w[co, ci, 0, 1, 0], w[co, ci, 0, 1, 1], w[co, ci, 0, 1, 2],
            w[co, ci, 0, 2, 0], w[co, ci, 0, 2, 1], w[co, ci, 0, 2, 2])


@inline_helper
def nine_sum(t, x00, x01, x02, x10, x11, x12, x20, x21, x22):
    """One output of a 3x3 kernel ``t`` (:func:`nine_taps`) from its nine
    inputs ``x<row><column>``: kernel columns left to right, each summed
    down its rows; the one order of every fused 3x3 pass."""
    return (three_sum((t[0], t[3], t[6]), x00, x10, x20)
            + three_sum((t[1], t[4], t[7]), x01, x11, x21)
            + three_sum((t[2], t[5], t[8]), x02, x12, x22))


@inline_helper
def tap_group(left):
    """How many of a kernel column's ``left`` remaining taps one fused pass
    takes: all seven or all five of a 7- or 5-row remainder, else three (or
    what is left).  Both the single-row and the row-pairs forms group taps
    so, which gives them one summation order (Note [row pairs]).

    Note [five-tap columns]
    ~~~~~~~~~~~~~~~~~~~~~~~
    A 5-row column was a three-tap pass and two one-tap passes, each
    reading and writing the accumulators: on EfficientNet's 5x5 depthwise
    layers the single-row form ran at about a third of the FMA rate.  One
    five-tap pass per column (six loads for ten multiply-adds in the
    row-pairs form) fixed that (4x240x28x28: 0.52 -> 0.35 ms in row pairs).
    In the row-pairs and stride-two forms a 5x5 kernel is then one pass for
    all 25 taps (``_pair_five_by_five`` in kernels/direct_row_phases.py:
    thirty loads and two stores for fifty multiply-adds, no accumulator
    traffic between columns), which adds each column's five-tap sum onto
    the accumulator in the per-column order, so the bits stay the
    single-row form's (tested).  The same fusion of a 7x7 kernel (49
    weights, more than the 32 vector registers) was slower except on 7x7
    planes, so 7x7 keeps a pass per column (docs/results-direct.md,
    "Phase-plane forms" and "Fused passes").
    """
    if left == 7 or left == 5:
        return left
    return min(3, left)


@inline_helper
def column_taps(w, co, ci, kw, KH, even, odd, pitch, buf, dst, o, size):
    """dst[o + q] += sum over kh of w[co, ci, 0, kh, kw] * buf[phase_row(kh, even,
    odd, pitch) + q] for q < size: one kernel column, its taps fused seven
    at a time for a 7-row column (ConvNeXt's 7x7 depthwise: one pass instead
    of three, 0.54-0.56 -> 0.39-0.49 ms), five for a 5-row one (Note
    [five-tap columns]), else three (:func:`tap_group`).  Kernel row ``kh``
    is row ``kh // 2`` (at ``pitch``) of the rows starting at ``even`` or
    ``odd`` by its parity: the two row phases of Note [stride-two phases],
    or for the single-row form (Note [phase planes]) one plane seen that
    way (``odd = even + step``, ``pitch = 2 * step``)."""
    kh = 0
    while kh < KH:
        taps = tap_group(KH - kh)
        i0 = phase_row(kh, even, odd, pitch)
        i1 = phase_row(kh + 1, even, odd, pitch)
        i2 = phase_row(kh + 2, even, odd, pitch)
        if taps == 7:
            i3 = phase_row(kh + 3, even, odd, pitch)
            i4 = phase_row(kh + 4, even, odd, pitch)
            i5 = phase_row(kh + 5, even, odd, pitch)
            i6 = phase_row(kh + 6, even, odd, pitch)
            t = seven_taps(w, co, ci, kh, kw)
            for q in range(size):
                dst[o + np.uint64(q)] += seven_sum(
                    t, buf[np.uint64(i0 + q)], buf[np.uint64(i1 + q)], buf[np.uint64(i2 + q)],
                    buf[np.uint64(i3 + q)], buf[np.uint64(i4 + q)], buf[np.uint64(i5 + q)],
                    buf[np.uint64(i6 + q)])
        elif taps == 5:
            i3 = phase_row(kh + 3, even, odd, pitch)
            i4 = phase_row(kh + 4, even, odd, pitch)
            t = five_taps(w, co, ci, kh, kw)
            for q in range(size):
                dst[o + np.uint64(q)] += five_sum(
                    t, buf[np.uint64(i0 + q)], buf[np.uint64(i1 + q)], buf[np.uint64(i2 + q)],
                    buf[np.uint64(i3 + q)], buf[np.uint64(i4 + q)])
        elif taps == 3:
            t = three_taps(w, co, ci, kh, kw)
            for q in range(size):
                dst[o + np.uint64(q)] += three_sum(t, buf[np.uint64(i0 + q)],
                                                    buf[np.uint64(i1 + q)],
                                                    buf[np.uint64(i2 + q)])
        else:
            for j in range(taps):
                tap = w[co, ci, 0, kh + j, kw]
                it = phase_row(kh + j, even, odd, pitch)
                for q in range(size):
                    dst[o + np.uint64(q)] += tap * buf[np.uint64(it + q)]
        kh += taps


@inline_helper
def phase_row(kh, even, odd, pitch):
    """Offset of kernel row ``kh``'s tap in Note [stride-two phases]: row
    ``kh // 2`` of row phase ``kh % 2``, whose row 0 is at ``even`` or
    ``odd``."""
    return (even if kh % 2 == 0 else odd) + (kh // 2) * pitch


@inline_helper
def band_job(job, bands, band_rows, Co, groups):
    """``(plane_job, first_row, n, co, g)`` of a phase-planes job: its plane
    ``n * C_out + co`` (group ``g``) and its band's first output row (Note
    [plane bands])."""
    plane_job = job // bands
    first_row = (job - plane_job * bands) * band_rows
    n = plane_job // Co
    co = plane_job % Co
    return plane_job, first_row, n, co, co // (Co // groups)


@inline_helper
def zero_run(buf, at, count):
    """buf[at + i] = 0 for i < count."""
    zero = buf.dtype.type(0)
    for i in range(count):
        buf[np.uint64(at + i)] = zero


@inline_helper
def copy_row(dst, at, src, start, count):
    """dst[at + i] = src[start + i] for i < count: ``memcpy`` for short rows
    (Note [short runs] in kernels/runs.py), a loop for long ones."""
    if count <= SHORT_RUN:
        copy_run(dst, at, src, start, count)
    else:
        for i in range(count):
            dst[np.uint64(at + i)] = src[np.uint64(start + i)]
