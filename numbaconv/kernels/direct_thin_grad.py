"""The direct algorithm's gradients of thin-group layers (depthwise, a few
channels per group): the weight gradient as one long dot product per tap
over flattened phase planes (Note [thin weight gradient]), and the input
gradient, a transposed convolution, written phase by phase without the
dilated zeros (Note [thin transposed phases]).  Zero-padded 1-D/2-D layers
(canonical ``D = 1``), contiguous ``(N, C, 1, H, W)`` arrays; the layout
arithmetic is plain Python in :mod:`numbaconv.kernels.direct_layouts`.
"""

from __future__ import annotations

import math

import numpy as np

from .direct_layouts import COLUMN_FORMS, column_form, thin_transposed_geometry
from .direct_taps import copy_row, zero_run
from .epilogue_block import finish_args, finish_block
from .jit import cpu_kernel, inline_helper
from .parallel import run_in_chunks
from .runs import copy_run, deinterleave_run, interleave_run


# ---------------------------------------------------------------------------
# the weight gradient
# ---------------------------------------------------------------------------

def grad_weight_thin(x, grad_output, out, groups, pad_h, pad_w, stride, dilation, layout,
                     chunks):
    """The weight gradient ``out`` ``(C_out, C_in/groups, 1, KH, KW)`` of a
    zero-padded 1-D/2-D layer from its input ``x`` ``(N, C_in, 1, H, W)``
    and output gradient ``(N, C_out, 1, OH, OW)`` (Note [thin weight
    gradient]).  ``layout`` is
    :func:`~numbaconv.kernels.direct_layouts.thin_grad_weight_layout`'s
    ``(band_rows, segments, pitch, rows, size, region)``; a job is one
    group and one of ``segments`` runs of (image, band) units, and with
    more than one segment the runs' sums are added in order here, so the
    bits depend on the layout only, never on ``chunks`` (the thread count).
    """
    band_rows, segments, pitch, rows, size, region = layout
    Co, cin_g = out.shape[0], out.shape[1]
    T = out.shape[3] * out.shape[4]
    if x.shape[0] == 0:
        out[...] = 0
        return out
    partial = np.empty((segments if segments > 1 else 0, Co, cin_g, T), dtype=out.dtype)
    run_in_chunks(GRAD_WEIGHT_TASKS[column_form(stride[2])],
                  (x, grad_output, out, partial, groups, pad_h, pad_w, stride[1], stride[2],
                   dilation[1], dilation[2], band_rows, segments, pitch, rows, size, region),
                  groups * segments, chunks)
    if segments > 1:
        total = partial[0].copy()
        for s in range(1, segments):
            total += partial[s]
        out.reshape(Co, cin_g, T)[...] = total
    return out


def _grad_weight_task(columns_form):
    """The weight-gradient task (Note [thin weight gradient]) compiled for
    one of :data:`~numbaconv.kernels.direct_layouts.COLUMN_FORMS`, a
    constant of the closure (Note [tasks per kernel] in
    kernels/direct_layouts.py): with the three ways of splitting a row
    compiled into one task, the unit-stride split ran 3x slower."""
    copies, pairs = columns_form == "unit", columns_form == "two"

    @cpu_kernel(parallel=False, python_callable=False)
    def _grad_weight_chunk(x, g, out, partial, groups, pad_h, pad_w, sh, sw, dh, dw, band_rows,
                           segments, pitch, rows, size, region, first_job, stop_job):
        """Jobs ``first_job <= group * segments + segment < stop_job`` of
        grad_weight_thin.

        Note [thin weight gradient]
        ~~~~~~~~~~~~~~~~~~~~~~~~~~~
        ``gw[co, ci, kh, kw] = sum over n, oh, ow of g[n, co, oh, ow] *
        xpad[n, c, sh*oh + kh*dh, sw*ow + kw*dw]``: per tap, a dot product as
        long as the batch's output.  Each padded input plane (a band of it:
        Note [plane bands]) is split into its ``sh x sw`` (row, column) phases,
        ``F[rp, cp][u, v] = xpad[sh*u + rp, sw*v + cp]``, each stored at pitch
        ``P = OW + ((KW-1)*dw) // sw`` (zeros where the padding is), and the
        output gradient's rows are copied at the same pitch with zeros in the
        ``P - OW`` columns past each row.  Then tap ``(kh, kw)`` reads phase
        ``((kh*dh) % sh, (kw*dw) % sw)`` at a constant distance from output
        ``q = oh*P + ow``, ``((kh*dh) // sh) * P + (kw*dw) // sw``, and its
        gradient is one flat dot product over ``q``: vectorised along the
        whole flattened plane, with no short rows and no horizontal sum per
        row, a kernel row's taps fused (seven, five or three at a time, one
        load of the output gradient for them all: :func:`_tap_sums`), and no
        stores.  The im2col path it replaces built columns and multiplied
        them by one output channel at a time (Note [small products] in
        kernels/im2col_cpu.py).

        The zero columns of the output gradient meet input values of the next
        row: ``0 * x`` is a zero unless ``x`` is infinite or NaN.  So a unit
        whose sums come out non-finite is summed again over its true outputs
        only (:func:`_exact_sums`), which gives what every other path gives
        (the padding's zeros take part, docs/semantics.md "Non-finite
        values"); finite input never takes that path.

        A job is one group (its ``C_in/groups`` input planes split once per
        unit, each output channel's gradient copied once per unit) and one
        segment of the (image, band) units; the units' sums are added in order
        into the job's totals, and the segments' totals in order by
        grad_weight_thin, so the bits do not depend on the thread count.
        """
        N, C, H, W = x.shape[0], x.shape[1], x.shape[3], x.shape[4]
        Co, OH, OW = g.shape[1], g.shape[3], g.shape[4]
        KH, KW = out.shape[3], out.shape[4]
        cin_g = C // groups
        cout_g = Co // groups
        T = KH * KW
        phases = sh * sw
        zero = out.dtype.type(0)
        xb = np.zeros(cin_g * phases * region, dtype=out.dtype)
        gp = np.zeros(size, dtype=out.dtype)          # the columns past OW stay zero
        totals = np.empty(cout_g * cin_g * T, dtype=out.dtype)
        sums = np.empty(T, dtype=out.dtype)
        offsets = np.empty(T, dtype=np.int64)
        for kh in range(KH):
            for kw in range(KW):
                offsets[kh * KW + kw] = (((kh * dh) % sh * sw + (kw * dw) % sw) * region
                                         + (kh * dh) // sh * pitch + (kw * dw) // sw)
        columns = _data_columns(W, sw, pad_w, pitch)
        xf = x.ravel()
        gf = g.ravel()
        of = out.ravel()
        bands = (OH + band_rows - 1) // band_rows
        units = N * bands
        for job in range(first_job, stop_job):
            group = job // segments
            segment = job - group * segments
            for i in range(cout_g * cin_g * T):
                totals[i] = zero
            for unit in range(segment * units // segments, (segment + 1) * units // segments):
                n = unit // bands
                r0 = (unit - n * bands) * band_rows
                R = min(band_rows, OH - r0)
                S = (R * pitch + 15) // 16 * 16
                used = (R + rows - band_rows) * pitch     # the band's phase rows
                for ci in range(cin_g):
                    plane = (n * C + group * cin_g + ci) * H * W
                    for rp in range(sh):
                        for u in range(R + rows - band_rows):
                            r = (r0 + u) * sh + rp - pad_h
                            at = (ci * phases + rp * sw) * region + u * pitch
                            if 0 <= r < H:
                                _split_row(xf, plane + r * W, W, sw, pad_w, xb, at, region, pitch,
                                           columns, copies, pairs)
                            elif bands > 1:               # another band may have left data
                                for cp in range(sw):
                                    zero_run(xb, at + cp * region, pitch)
                        if bands > 1:                     # past the band's rows: zeros
                            for cp in range(sw):
                                at = (ci * phases + rp * sw + cp) * region
                                zero_run(xb, at + used, region - used)
                for co_l in range(cout_g):
                    co = group * cout_g + co_l
                    row0 = ((n * Co + co) * OH + r0) * OW
                    for i in range(R):
                        copy_row(gp, i * pitch, gf, row0 + i * OW, OW)
                    zero_run(gp, R * pitch, S - R * pitch)
                    for ci in range(cin_g):
                        base = ci * phases * region
                        _tap_sums(gp, xb, base, offsets, KH, KW, S, sums)
                        finite = True
                        for t in range(T):
                            finite = finite and math.isfinite(sums[t])
                        if not finite:
                            _exact_sums(gp, xb, base, offsets, T, R, pitch, OW, sums)
                        at = (co_l * cin_g + ci) * T
                        for t in range(T):
                            totals[at + t] += sums[t]
            if segments == 1:
                for i in range(cout_g * cin_g * T):
                    of[group * cout_g * cin_g * T + i] = totals[i]
            else:
                pf = partial[segment].ravel()
                for i in range(cout_g * cin_g * T):
                    pf[group * cout_g * cin_g * T + i] = totals[i]

    return _grad_weight_chunk


GRAD_WEIGHT_TASKS = {form: _grad_weight_task(form) for form in COLUMN_FORMS}


@inline_helper
def _split_row(xf, src, W, sw, pad_w, buf, at, region, pitch, columns, copies, pairs):
    """Input row ``src`` (``W`` values) into its ``sw`` column phases, phase
    ``cp`` at ``buf[at + cp * region]``, ``pitch`` values each:
    ``buf[at + cp*region + v] = xpad[sw*v + cp]`` where that is an input
    value (Note [thin weight gradient]).  The padding's columns are not
    written: they are the same in every row and stay the zeros the buffer
    started with.  ``columns`` holds each phase's first and end data
    column (:func:`_data_columns`: integer divisions, once per task)."""
    if copies:
        copy_run(buf, at + columns[0], xf, src + columns[0] - pad_w, columns[1] - columns[0])
    elif pairs:
        # input column j goes to phase (j + pad_w) % 2, column (j + pad_w) // 2:
        # even columns to one phase and odd ones to the other, de-interleaved
        even = pad_w % 2
        at_even = at + even * region + pad_w // 2
        at_odd = at + (1 - even) * region + (pad_w + 1) // 2
        stop_even = at + even * region + pitch
        stop_odd = at + (1 - even) * region + pitch
        count = max(min(W // 2, stop_odd - at_odd, stop_even - at_even), 0)
        deinterleave_run(buf, at_even, at_odd, xf, src, count)
        for j in range(2 * count, W):
            if j % 2 == 0 and at_even + j // 2 < stop_even:
                buf[np.uint64(at_even + j // 2)] = xf[np.uint64(src + j)]
            elif j % 2 == 1 and at_odd + j // 2 < stop_odd:
                buf[np.uint64(at_odd + j // 2)] = xf[np.uint64(src + j)]
    else:
        for cp in range(sw):
            lo = columns[cp]
            row = at + cp * region
            first = src + lo * sw + cp - pad_w
            for v in range(columns[sw + cp] - lo):
                buf[np.uint64(row + lo + v)] = xf[np.uint64(first + v * sw)]


@inline_helper
def _data_columns(W, sw, pad_w, pitch):
    """``[lo_0 .. lo_{sw-1}, hi_0 .. hi_{sw-1}]``: the phase columns ``lo_cp <=
    v < hi_cp`` (at most ``pitch``) of column phase ``cp`` that hold input
    values, ``sw * v + cp - pad_w`` in ``[0, W)``."""
    columns = np.empty(2 * sw, dtype=np.int64)
    for cp in range(sw):
        lo = min(max((pad_w - cp + sw - 1) // sw, 0), pitch)
        columns[cp] = lo
        columns[sw + cp] = min(max((W - 1 + pad_w - cp) // sw + 1, lo), pitch)
    return columns


@inline_helper
def _tap_sums(gp, xb, base, offsets, KH, KW, S, sums):
    """``sums[t] = sum over q < S of gp[q] * xb[base + offsets[t] + q]`` for
    every tap: a 3x3 kernel's nine in one pass, else a kernel row's taps
    fused seven, five or three at a time (Note [thin weight gradient])."""
    if KH == 3 and KW == 3:
        sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8] = \
            _dot9(gp, xb, base + offsets[0], base + offsets[1], base + offsets[2],
                  base + offsets[3], base + offsets[4], base + offsets[5], base + offsets[6],
                  base + offsets[7], base + offsets[8], S)
        return
    for kh in range(KH):
        kw = 0
        while kw < KW:
            left = KW - kw
            t = kh * KW + kw
            o = base + offsets[t]
            if left == 7:
                sums[t], sums[t + 1], sums[t + 2], sums[t + 3], sums[t + 4], sums[t + 5], \
                    sums[t + 6] = _dot7(gp, xb, o, base + offsets[t + 1], base + offsets[t + 2],
                                        base + offsets[t + 3], base + offsets[t + 4],
                                        base + offsets[t + 5], base + offsets[t + 6], S)
                kw += 7
            elif left == 5:
                sums[t], sums[t + 1], sums[t + 2], sums[t + 3], sums[t + 4] = _dot5(
                    gp, xb, o, base + offsets[t + 1], base + offsets[t + 2],
                    base + offsets[t + 3], base + offsets[t + 4], S)
                kw += 5
            elif left >= 3:
                sums[t], sums[t + 1], sums[t + 2] = _dot3(
                    gp, xb, o, base + offsets[t + 1], base + offsets[t + 2], S)
                kw += 3
            else:
                sums[t] = _dot1(gp, xb, o, S)
                kw += 1


@inline_helper
def _dot1(gp, xb, o0, S):
    zero = gp.dtype.type(0)
    s0 = zero
    for q in range(S):
        s0 += gp[np.uint64(q)] * xb[np.uint64(o0 + q)]
    return s0


@inline_helper
def _dot3(gp, xb, o0, o1, o2, S):
    zero = gp.dtype.type(0)
    s0 = s1 = s2 = zero
    for q in range(S):
        v = gp[np.uint64(q)]
        s0 += v * xb[np.uint64(o0 + q)]
        s1 += v * xb[np.uint64(o1 + q)]
        s2 += v * xb[np.uint64(o2 + q)]
    return s0, s1, s2


@inline_helper
def _dot5(gp, xb, o0, o1, o2, o3, o4, S):
    zero = gp.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = zero
    for q in range(S):
        v = gp[np.uint64(q)]
        s0 += v * xb[np.uint64(o0 + q)]
        s1 += v * xb[np.uint64(o1 + q)]
        s2 += v * xb[np.uint64(o2 + q)]
        s3 += v * xb[np.uint64(o3 + q)]
        s4 += v * xb[np.uint64(o4 + q)]
    return s0, s1, s2, s3, s4


@inline_helper
def _dot7(gp, xb, o0, o1, o2, o3, o4, o5, o6, S):
    zero = gp.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = zero
    for q in range(S):
        v = gp[np.uint64(q)]
        s0 += v * xb[np.uint64(o0 + q)]
        s1 += v * xb[np.uint64(o1 + q)]
        s2 += v * xb[np.uint64(o2 + q)]
        s3 += v * xb[np.uint64(o3 + q)]
        s4 += v * xb[np.uint64(o4 + q)]
        s5 += v * xb[np.uint64(o5 + q)]
        s6 += v * xb[np.uint64(o6 + q)]
    return s0, s1, s2, s3, s4, s5, s6


@inline_helper
def _dot9(gp, xb, o0, o1, o2, o3, o4, o5, o6, o7, o8, S):
    zero = gp.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = zero
    for q in range(S):
        v = gp[np.uint64(q)]
        s0 += v * xb[np.uint64(o0 + q)]
        s1 += v * xb[np.uint64(o1 + q)]
        s2 += v * xb[np.uint64(o2 + q)]
        s3 += v * xb[np.uint64(o3 + q)]
        s4 += v * xb[np.uint64(o4 + q)]
        s5 += v * xb[np.uint64(o5 + q)]
        s6 += v * xb[np.uint64(o6 + q)]
        s7 += v * xb[np.uint64(o7 + q)]
        s8 += v * xb[np.uint64(o8 + q)]
    return s0, s1, s2, s3, s4, s5, s6, s7, s8


@inline_helper
def _exact_sums(gp, xb, base, offsets, T, R, pitch, OW, sums):
    """The sums of :func:`_tap_sums` over the true outputs only (``ow <
    OW``): for a unit with infinite or NaN input (Note [thin weight
    gradient])."""
    zero = gp.dtype.type(0)
    for t in range(T):
        s = zero
        o = base + offsets[t]
        for i in range(R):
            for j in range(OW):
                s += gp[np.uint64(i * pitch + j)] * xb[np.uint64(o + i * pitch + j)]
        sums[t] = s


# ---------------------------------------------------------------------------
# the input gradient: a transposed convolution, phase by phase
# ---------------------------------------------------------------------------

def transposed_thin(x, w, bias, out, groups, axes, band_rows, chunks, finish=None):
    """An input-dilated (transposed) problem of a thin-group layer, zero
    padded, 1-D/2-D (Note [thin transposed phases]): ``x`` ``(N, C_in, 1,
    IH, IW)`` the undilated input (an output gradient), ``w`` the forward
    weight ``(C_out, C_in/groups, 1, KH, KW)`` of the equivalent forward
    problem (already flipped), ``out`` ``(N, C_out, 1, OH, OW)``; ``axes``
    are the H and W :func:`~numbaconv.kernels.direct_layouts.transposed_axis_phases`
    and ``band_rows`` the phase rows per band
    (:func:`~numbaconv.kernels.direct_layouts.thin_transposed_band_rows`).
    ``bias`` is ``(C_out,)`` or empty; ``finish`` the epilogue's ``(code,
    slope, residual)``, applied to each band's rows once they are in
    ``out``.  A job is one band of one output plane; no job's values
    depend on another's, so the bits do not depend on ``chunks``."""
    (Qh, nh, kh, ch), (Qw, nw, kw, cw) = _phase_tables(axes)
    pitch, rows, size, length = thin_transposed_geometry(axes, band_rows)
    N, Co = out.shape[0], out.shape[1]
    bands = -(-int(Qh.max()) // band_rows)
    jobs = N * Co * bands
    run_in_chunks(TRANSPOSED_TASKS[column_form(Qw.shape[0])],
                  (x, w, bias, out, groups, Qh, nh, kh, ch, Qw, nw, kw, cw, axes[0][1][0],
                   axes[1][1][0], axes[1][1][1], pitch, rows, size, length, band_rows)
                  + finish_args(finish, out.dtype), jobs, chunks)
    return out


def _phase_tables(axes):
    """Per axis, ``(Q, count, k, c)`` int64 arrays of its phases (``k`` and
    ``c`` ``(L, K)``, the first ``count`` of each row used)."""
    tables = []
    for phases, _ in axes:
        L = len(phases)
        K = max([len(t) for _, t in phases] + [1])
        Q = np.array([q for q, _ in phases], dtype=np.int64)
        count = np.array([len(t) for _, t in phases], dtype=np.int64)
        ks = np.zeros((L, K), dtype=np.int64)
        cs = np.zeros((L, K), dtype=np.int64)
        for rho, (_, taps) in enumerate(phases):
            for i, (k, c) in enumerate(taps):
                ks[rho, i], cs[rho, i] = k, c
        tables.append((Q, count, ks, cs))
    return tables


def _transposed_task(columns_form):
    """The transposed task (Note [thin transposed phases]) compiled for one
    of :data:`~numbaconv.kernels.direct_layouts.COLUMN_FORMS` of the input
    dilation along W (how the column phases are woven into an output row),
    a constant of the closure (Note [tasks per kernel] in
    kernels/direct_layouts.py)."""
    copies, pairs = columns_form == "unit", columns_form == "two"

    @cpu_kernel(parallel=False, reassociate=False, python_callable=False)
    def _transposed_chunk(x, w, bias, out, groups, Qh, nh, kh_of, ch_of, Qw, nw, kw_of, cw_of,
                          h_min, w_min, w_max, pitch, rows, size, length, band_rows, code,
                          slope, residual, first_job, stop_job):
        """Jobs ``first_job <= ((n * groups + group) * bands + band) * (C_out/groups)
        + co_l < stop_job`` of transposed_thin.

        Note [thin transposed phases]
        ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
        An input gradient of a strided layer is a forward problem over its
        output gradient dilated by the stride (Note [one general
        convolution] in numbaconv/spec.py).  Along an axis of input
        dilation ``L``, the outputs ``r = rho + q*L`` of one phase ``rho``
        read the undilated input at ``q + c_k`` through a fixed subset of
        the taps (Note [phases] in numbaconv/rewrites.py).  The rewrite
        behind direct's other input-dilated path runs each (row, column)
        phase as a forward problem of its own, each reading the whole input
        again, and copies its result into every L-th output.  Here one job
        copies its band of each input plane of the group once into a buffer
        of rows at pitch ``P`` (``Q_w + c_max - c_min``, zeros where no
        input is), and for each phase pair accumulates its taps, fused up
        to four at a time, into a flat ``P``-pitched plane: tap ``(kh,
        kw)`` reads the buffer at a constant distance from phase output
        ``q*P + j``, as in Note [phase planes] (the ``P - Q_w`` columns
        past each row are junk, dropped).  The column phases of one phase
        row are then woven into the output rows: a copy for ``L_w = 1``,
        vector shuffles for 2 (:func:`~numbaconv.kernels.runs.interleave_run`),
        a strided store otherwise.  A job is one band of one output plane,
        its group's buffer kept from the job before when that had the same
        image, group and band (the group's output channels are consecutive
        jobs); every output is computed by the same expression whatever
        the thread count.
        """
        Cin, IH, IW = x.shape[1], x.shape[3], x.shape[4]
        Co, OH, OW = out.shape[1], out.shape[3], out.shape[4]
        cin_g = Cin // groups
        cout_g = Co // groups
        Lh, Lw = Qh.shape[0], Qw.shape[0]
        zero = out.dtype.type(0)
        gb = np.zeros(cin_g * length, dtype=out.dtype)
        acc = np.empty(Lw * size, dtype=out.dtype)
        offsets = np.empty(cin_g * w.shape[3] * w.shape[4], dtype=np.int64)
        weights = np.empty(cin_g * w.shape[3] * w.shape[4], dtype=out.dtype)
        xf = x.ravel()
        of = out.ravel()
        bands = (Qh[0] + band_rows - 1) // band_rows
        # the input columns a buffer row holds (the others stay zero)
        j_lo = max(w_min, 0)
        j_hi = max(min(Qw[0] - 1 + w_max, IW - 1) + 1, j_lo)
        last = -1
        for job in range(first_job, stop_job):
            co_l = job % cout_g
            unit = job // cout_g                      # (n * groups + group) * bands + band
            band = unit % bands
            group = (unit // bands) % groups
            n = unit // bands // groups
            co = group * cout_g + co_l
            q0 = band * band_rows
            R = min(band_rows, Qh[0] - q0)
            if unit != last:
                last = unit
                for ci in range(cin_g):
                    plane = (n * Cin + group * cin_g + ci) * IH * IW
                    for u in range(R + rows - band_rows):
                        i = q0 + h_min + u
                        at = ci * length + u * pitch
                        if 0 <= i < IH:
                            copy_run(gb, at + j_lo - w_min, xf, plane + i * IW + j_lo,
                                     j_hi - j_lo)
                        elif bands > 1:               # another band may have left data
                            zero_run(gb, at, pitch)
                    if bands > 1:
                        used = (R + rows - band_rows) * pitch
                        zero_run(gb, ci * length + used, length - used)
            # Note [no bias] in kernels/__init__.py
            bias_value = bias[co] if bias.shape[0] else zero
            for rho_h in range(Lh):
                Rb = min(q0 + R, Qh[rho_h]) - q0
                if Rb <= 0:
                    continue
                S = (Rb * pitch + 15) // 16 * 16
                for rho_w in range(Lw):
                    if Qw[rho_w] == 0:
                        continue
                    # the phase's taps, in (ci, kh, kw) order: offsets and weights
                    taps = 0
                    for ci in range(cin_g):
                        for th in range(nh[rho_h]):
                            row = ci * length + (ch_of[rho_h, th] - h_min) * pitch - w_min
                            for tw in range(nw[rho_w]):
                                offsets[taps] = row + cw_of[rho_w, tw]
                                weights[taps] = w[co, ci, 0, kh_of[rho_h, th], kw_of[rho_w, tw]]
                                taps += 1
                    _phase_taps(offsets, weights, taps, gb, acc, rho_w * size, S, bias_value)
                plane_out = (n * Co + co) * OH * OW
                for q in range(Rb):
                    dst = plane_out + (rho_h + (q0 + q) * Lh) * OW
                    if copies:
                        copy_run(of, dst, acc, q * pitch, OW)
                    elif pairs:
                        count = Qw[1]
                        interleave_run(of, dst, acc, q * pitch, size + q * pitch, count)
                        if Qw[0] > count:
                            of[np.uint64(dst + 2 * count)] = acc[np.uint64(q * pitch + count)]
                    else:
                        for rho_w in range(Lw):
                            src = rho_w * size + q * pitch
                            for j in range(Qw[rho_w]):
                                of[np.uint64(dst + rho_w + j * Lw)] = acc[np.uint64(src + j)]
            if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
                first_row = q0 * Lh
                stop_row = min((q0 + R) * Lh, OH)
                finish_block(of, (n * Co + co) * OH * OW + first_row * OW, 0, 1,
                             (stop_row - first_row) * OW, residual, code, slope)

    return _transposed_chunk


TRANSPOSED_TASKS = {form: _transposed_task(form) for form in COLUMN_FORMS}


@inline_helper
def _phase_taps(offsets, weights, count, gb, acc, a, S, bias_value):
    """``acc[a + q] = bias_value + sum over t < count of weights[t] *
    gb[offsets[t] + q]`` for ``q < S``: four taps per pass at most, the
    first pass starting from the bias, in order (Note [thin transposed
    phases])."""
    if count == 0:
        for q in range(S):
            acc[np.uint64(a + q)] = bias_value
    t = 0
    while t < count:
        left = count - t
        o0, w0 = offsets[t], weights[t]
        if left >= 4:
            o1, o2, o3 = offsets[t + 1], offsets[t + 2], offsets[t + 3]
            w1, w2, w3 = weights[t + 1], weights[t + 2], weights[t + 3]
            if t == 0:
                for q in range(S):
                    acc[np.uint64(a + q)] = bias_value + (
                        w0 * gb[np.uint64(o0 + q)] + w1 * gb[np.uint64(o1 + q)]
                        + w2 * gb[np.uint64(o2 + q)] + w3 * gb[np.uint64(o3 + q)])
            else:
                for q in range(S):
                    acc[np.uint64(a + q)] += (
                        w0 * gb[np.uint64(o0 + q)] + w1 * gb[np.uint64(o1 + q)]
                        + w2 * gb[np.uint64(o2 + q)] + w3 * gb[np.uint64(o3 + q)])
            t += 4
        elif left == 3:
            o1, o2 = offsets[t + 1], offsets[t + 2]
            w1, w2 = weights[t + 1], weights[t + 2]
            if t == 0:
                for q in range(S):
                    acc[np.uint64(a + q)] = bias_value + (
                        w0 * gb[np.uint64(o0 + q)] + w1 * gb[np.uint64(o1 + q)]
                        + w2 * gb[np.uint64(o2 + q)])
            else:
                for q in range(S):
                    acc[np.uint64(a + q)] += (
                        w0 * gb[np.uint64(o0 + q)] + w1 * gb[np.uint64(o1 + q)]
                        + w2 * gb[np.uint64(o2 + q)])
            t += 3
        elif left == 2:
            o1, w1 = offsets[t + 1], weights[t + 1]
            if t == 0:
                for q in range(S):
                    acc[np.uint64(a + q)] = bias_value + (
                        w0 * gb[np.uint64(o0 + q)] + w1 * gb[np.uint64(o1 + q)])
            else:
                for q in range(S):
                    acc[np.uint64(a + q)] += (
                        w0 * gb[np.uint64(o0 + q)] + w1 * gb[np.uint64(o1 + q)])
            t += 2
        else:
            if t == 0:
                for q in range(S):
                    acc[np.uint64(a + q)] = bias_value + w0 * gb[np.uint64(o0 + q)]
            else:
                for q in range(S):
                    acc[np.uint64(a + q)] += w0 * gb[np.uint64(o0 + q)]
            t += 1


# ---------------------------------------------------------------------------
# channels-last depthwise layers, in place
# ---------------------------------------------------------------------------

def grad_weight_channels_last(x, grad_output, out, pad_h, pad_w, stride, dilation, block,
                              segments, chunks):
    """The weight gradient ``out`` ``(C, 1, 1, KH, KW)`` of a zero-padded
    1-D/2-D depthwise layer (multiplier 1) from channels-last arrays read in
    place: ``x`` ``(N, 1, H, W, C)``, ``grad_output`` ``(N, 1, OH, OW, C)``
    (Note [channels-last thin gradients]).  A job is one block of ``block``
    channels and one of ``segments`` runs of (image, output row) units, the
    runs' sums added in order here."""
    C = x.shape[4]
    T = out.shape[3] * out.shape[4]
    if x.shape[0] == 0:
        out[...] = 0
        return out
    blocks = -(-C // block)
    partial = np.empty((segments if segments > 1 else 0, C, T), dtype=out.dtype)
    run_in_chunks(_grad_weight_channels_last_chunk,
                  (x, grad_output, out, partial, pad_h, pad_w, stride[1], stride[2], dilation[1],
                   dilation[2], block, segments), blocks * segments, chunks)
    if segments > 1:
        total = partial[0].copy()
        for s in range(1, segments):
            total += partial[s]
        out.reshape(C, T)[...] = total
    return out


@cpu_kernel(parallel=False, python_callable=False)
def _grad_weight_channels_last_chunk(x, g, out, partial, pad_h, pad_w, sh, sw, dh, dw, block,
                                     segments, first_job, stop_job):
    """Jobs ``first_job <= block * segments + segment < stop_job`` of
    grad_weight_channels_last.

    Note [channels-last thin gradients]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    In a channels-last depthwise layer (one input channel per group, one
    output channel per input channel) every tap of every channel sums
    products of the same two pixels' channel vectors, so the kernels run
    along the channels, in place: the weight gradient adds ``g[n, oh, ow,
    c] * x[n, ih, iw, c]`` into a tap's row of accumulators, one loop along
    a block of up to ``direct_layouts.CHANNELS_LAST_BLOCK`` channels (blocks
    of 32 left the loops so short that their set-up cost 3x; the padding's
    products are taken with a row of zeros, as the canonical kernels take
    them), and the input gradient writes each output pixel's channel vector
    as the bias plus its phase's taps (Note [thin transposed phases]), up
    to four per pass, from the transposed weight's tap rows; the taps that
    fall outside the input are left out, as the phases leave out the
    dilated zeros.  The canonical kernels on copies paid for the two
    transposes: MobileNet's 64-channel 112x112 stride-2 layer's weight
    gradient took 3.9 ms so, on one thread, and the copies nearly all of it
    (docs/results-backward.md, "Depthwise gradients").  A weight-gradient
    job is one block of channels and one segment of (image, output row)
    units, the segments' sums added in order; an input-gradient job is one
    output row; neither depends on the thread count.
    """
    N, H, W, C = x.shape[0], x.shape[2], x.shape[3], x.shape[4]
    OH, OW = g.shape[2], g.shape[3]
    KH, KW = out.shape[3], out.shape[4]
    T = KH * KW
    zero = out.dtype.type(0)
    acc = np.empty(T * block, dtype=out.dtype)
    zeros = np.zeros(block, dtype=out.dtype)
    xf = x.ravel()
    gf = g.ravel()
    of = out.ravel()
    units = N * OH
    for job in range(first_job, stop_job):
        segment = job % segments
        c0 = (job // segments) * block
        cb = min(block, C - c0)
        for i in range(T * block):
            acc[i] = zero
        for unit in range(segment * units // segments, (segment + 1) * units // segments):
            n = unit // OH
            oh = unit - n * OH
            for ow in range(OW):
                at_g = ((n * OH + oh) * OW + ow) * C + c0
                for kh in range(KH):
                    ih = oh * sh + kh * dh - pad_h
                    for kw in range(KW):
                        iw = ow * sw + kw * dw - pad_w
                        a = (kh * KW + kw) * block
                        if 0 <= ih < H and 0 <= iw < W:
                            _multiply_add(acc, a, gf, at_g, xf, ((n * H + ih) * W + iw) * C + c0,
                                          cb)
                        else:                      # the padding's products
                            _multiply_add(acc, a, gf, at_g, zeros, 0, cb)
        target = of if segments == 1 else partial[segment].ravel()
        for c in range(cb):
            for t in range(T):
                target[np.uint64((c0 + c) * T + t)] = acc[np.uint64(t * block + c)]


@inline_helper
def _multiply_add(acc, a, gf, at_g, src, at_x, count):
    """acc[a + c] += gf[at_g + c] * src[at_x + c] for c < count."""
    for c in range(count):
        acc[np.uint64(a + c)] += gf[np.uint64(at_g + c)] * src[np.uint64(at_x + c)]


def transposed_channels_last(x, wt, bias, out, axes, kernel_width, chunks, finish=None):
    """An input-dilated (transposed) depthwise problem (one input and one
    output channel per group), zero-padded, 1-D/2-D, on channels-last arrays
    in place (Note [channels-last thin gradients]): ``x`` ``(N, 1, IH, IW,
    C)`` the undilated input, ``wt`` ``(KH * KW, C)`` the equivalent forward
    weight's taps (already flipped; ``kernel_width`` is KW), ``out`` ``(N,
    1, OH, OW, C)``;
    ``axes`` as for :func:`transposed_thin`.  A job is one output row, so
    the bits do not depend on ``chunks``; ``finish`` is applied to each
    row."""
    (Qh, nh, kh, ch), (Qw, nw, kw, cw) = _phase_tables(axes)
    N, OH = out.shape[0], out.shape[2]
    run_in_chunks(_transposed_channels_last_chunk,
                  (x, wt, bias, out, Qh, nh, kh, ch, Qw, nw, kw, cw, kernel_width)
                  + finish_args(finish, out.dtype), N * OH, chunks)
    return out


@cpu_kernel(parallel=False, reassociate=False, python_callable=False)
def _transposed_channels_last_chunk(x, wt, bias, out, Qh, nh, kh_of, ch_of, Qw, nw, kw_of, cw_of,
                                    KW, code, slope, residual, first_job, stop_job):
    """Output rows ``first_job <= n * OH + r < stop_job`` of
    transposed_channels_last (Note [channels-last thin gradients])."""
    IH, IW, C = x.shape[2], x.shape[3], x.shape[4]
    OH, OW = out.shape[2], out.shape[3]
    Lh, Lw = Qh.shape[0], Qw.shape[0]
    zero = out.dtype.type(0)
    sources = np.empty(wt.shape[0], dtype=np.int64)
    taps = np.empty(wt.shape[0], dtype=np.int64)
    xf = x.ravel()
    wf = wt.ravel()
    of = out.ravel()
    has_bias = bias.shape[0] > 0
    for job in range(first_job, stop_job):
        n = job // OH
        r = job - n * OH
        rho_h = r % Lh
        q = r // Lh
        for col in range(OW):
            rho_w = col % Lw
            j = col // Lw
            count = 0
            for th in range(nh[rho_h]):
                i = q + ch_of[rho_h, th]
                if i < 0 or i >= IH:
                    continue
                for tw in range(nw[rho_w]):
                    jj = j + cw_of[rho_w, tw]
                    if 0 <= jj < IW:
                        sources[count] = ((n * IH + i) * IW + jj) * C
                        taps[count] = (kh_of[rho_h, th] * KW + kw_of[rho_w, tw]) * C
                        count += 1
            _pixel_taps(xf, wf, sources, taps, count, of, ((n * OH + r) * OW + col) * C, C,
                        bias, has_bias, zero)
        if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
            finish_block(of, (n * OH + r) * OW * C, 0, 1, OW * C, residual, code, slope)


@inline_helper
def _pixel_taps(xf, wf, sources, taps, count, of, at, C, bias, has_bias, zero):
    """``of[at + c] = bias[c] + sum over t < count of wf[taps[t] + c] *
    xf[sources[t] + c]`` for ``c < C``: four taps per pass at most, the
    first pass starting from the bias, in order (Note [channels-last thin
    gradients])."""
    if count == 0:
        for c in range(C):
            of[np.uint64(at + c)] = bias[c] if has_bias else zero
    t = 0
    while t < count:
        left = count - t
        s0, w0 = sources[t], taps[t]
        if left >= 4:
            s1, s2, s3 = sources[t + 1], sources[t + 2], sources[t + 3]
            w1, w2, w3 = taps[t + 1], taps[t + 2], taps[t + 3]
            for c in range(C):
                v = (bias[c] if has_bias else zero) if t == 0 else of[np.uint64(at + c)]
                of[np.uint64(at + c)] = v + (
                    wf[np.uint64(w0 + c)] * xf[np.uint64(s0 + c)]
                    + wf[np.uint64(w1 + c)] * xf[np.uint64(s1 + c)]
                    + wf[np.uint64(w2 + c)] * xf[np.uint64(s2 + c)]
                    + wf[np.uint64(w3 + c)] * xf[np.uint64(s3 + c)])
            t += 4
        elif left == 3:
            s1, s2 = sources[t + 1], sources[t + 2]
            w1, w2 = taps[t + 1], taps[t + 2]
            for c in range(C):
                v = (bias[c] if has_bias else zero) if t == 0 else of[np.uint64(at + c)]
                of[np.uint64(at + c)] = v + (
                    wf[np.uint64(w0 + c)] * xf[np.uint64(s0 + c)]
                    + wf[np.uint64(w1 + c)] * xf[np.uint64(s1 + c)]
                    + wf[np.uint64(w2 + c)] * xf[np.uint64(s2 + c)])
            t += 3
        elif left == 2:
            s1, w1 = sources[t + 1], taps[t + 1]
            for c in range(C):
                v = (bias[c] if has_bias else zero) if t == 0 else of[np.uint64(at + c)]
                of[np.uint64(at + c)] = v + (
                    wf[np.uint64(w0 + c)] * xf[np.uint64(s0 + c)]
                    + wf[np.uint64(w1 + c)] * xf[np.uint64(s1 + c)])
            t += 2
        else:
            for c in range(C):
                v = (bias[c] if has_bias else zero) if t == 0 else of[np.uint64(at + c)]
                of[np.uint64(at + c)] = v + wf[np.uint64(w0 + c)] * xf[np.uint64(s0 + c)]
            t += 1
