"""The phase-planes loop order of the direct algorithm: zero-padded
1-D/2-D layers with few channels per group (depthwise, grouped, few
channels), any stride and dilation, whose input width is a multiple of the
stride: every tap one long multiply-add over a flat plane (Note [phase
planes]).

:func:`conv_phase_planes` runs one of three forms: single rows (here),
row pairs for unit-stride 3x3, 5- and 7-row kernels and stride two for
stride 2 (kernels/direct_row_phases.py).  Their layouts, which form a
layer takes and the bands a plane is cut into are plain Python in
:mod:`numbaconv.kernels.direct_layouts`; the fused tap passes they share
are in :mod:`numbaconv.kernels.direct_taps`.  The canonical form and the
other loop orders: kernels/direct_channels_last.py.
"""

from __future__ import annotations

import numpy as np

from .direct_layouts import form_arguments, fused_passes, serving_forms
from .direct_row_phases import ROW_PHASES_TASKS
from .direct_taps import band_job, column_taps, copy_row, zero_run
from .epilogue_block import finish_args, finish_block
from .jit import cpu_kernel, inline_helper
from .parallel import run_in_chunks


def conv_phase_planes(x, w, bias, out, groups, pad_h, pad_w, stride, dilation, chunks,
                      form=None, band_rows=None, finish=None):
    """Zero-padded 1-D/2-D layers with few channels per group, any stride and
    dilation, whose input width is a multiple of the stride and whose output
    is at most ``W / stride`` wide (:func:`~numbaconv.algorithms.direct.serves_phase_planes`):
    see Note [phase planes].

    ``x`` is ``(N, C, 1, H, W)``, ``w`` ``(C_out, C_in/g, 1, KH, KW)``,
    ``out`` ``(N, C_out, 1, OH, OW)``; ``stride`` and ``dilation`` are the
    canonical (D, H, W) triples; ``bias`` is ``(C_out,)``, or empty for
    none.  A job is one band of an output plane.  ``form`` is one of
    ``PHASE_PLANE_FORMS`` that serves the layer (``phase_plane_forms`` in
    kernels/direct_layouts.py); by default ``default_phase_plane_form``
    picks one from the kernel size, stride and dilation only, so that a
    block of a larger problem (numbaconv.dask) takes the same form.  The
    single-row and row-pairs forms sum in the same order except for 3x3
    kernels, whose other forms sum all nine taps in one pass.  ``band_rows``
    (any form; default: the whole plane) computes each
    plane in bands of that many output rows, an even number, so that a
    thread's scratch is a band's, not a plane's (Note [plane bands]); the
    bits do not depend on it.  ``finish`` is the epilogue's ``(code, slope,
    residual)`` (:meth:`numbaconv.epilogue.Epilogue.kernel_args`), applied
    to each band's rows once they are in ``out``; None: bias only.
    """
    kernel = (w.shape[3], w.shape[4])
    serving, default = serving_forms(kernel, tuple(stride), tuple(dilation))
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
            else ROW_PHASES_TASKS[form, fused_passes(*kernel)])
    run_in_chunks(task, (x, w, bias, out, groups, pad_h, pad_w)
                  + form_arguments(form, H, W, OH, OW, *kernel, pad_h, pad_w, *stride[1:],
                                    *dilation[1:], band_rows)
                  + finish_args(finish, out.dtype), jobs, chunks)


@cpu_kernel(parallel=False, reassociate=False, python_callable=False)
def _phase_planes_chunk(x, w, bias, out, groups, pad_h, pad_w, sh, sw, dh, dw, band_rows, Wq,
                        pitch, size, guard, base, length, code, slope, residual, first_job,
                        stop_job):
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
    flattened accumulators with its taps fused (all of a 7- or 5-row column,
    else three at a time: ``tap_group`` in kernels/direct_taps.py), and the
    input is read once, by the split.

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

    MobileNet's stride-2 depthwise layer ran 2-4x faster so than through
    the thin channels-last kernel, whose channels-last pack alone took
    longer (docs/results-direct.md, "Phase planes"); stride 2 now takes
    Note [stride-two phases]'s form, and unit-stride 3x3, 5- and 7-row
    kernels Note [row pairs]'s.
    """
    Co, OH, OW = out.shape[1], out.shape[3], out.shape[4]
    C, H, W = x.shape[1], x.shape[3], x.shape[4]
    cin_g = C // groups
    KH, KW = w.shape[3], w.shape[4]
    # the layout (Wq, pitch, size, guard, base, length): single_rows_layout
    zero = out.dtype.type(0)
    direct = pitch == OW                              # accumulate straight into out
    buf = np.zeros(sw * length, dtype=out.dtype)      # one region per column phase
    acc = np.empty(1 if direct else size, dtype=out.dtype)
    zeroed = np.zeros(sw, dtype=np.int64)
    cleared = np.zeros(sw, dtype=np.int64)
    # flat views taken once and unsigned indices: Note [reference counts]
    # (kernels/direct_channels_last.py)
    xf = x.ravel()
    of = out.ravel()
    dst = of if direct else acc
    bands = (OH + band_rows - 1) // band_rows         # Note [plane bands]
    # a band is its own problem of rows_in padded input rows, padding included
    rows_in = H if bands == 1 else (band_rows - 1) * sh + (KH - 1) * dh + 1
    top = pad_h if bands == 1 else 0                  # padding rows above buffer row 0
    for job in range(first_job, stop_job):
        plane_job, first_row, n, co, g = band_job(job, bands, band_rows, Co, groups)
        first_in = sh * first_row - pad_h             # input row of the band's row 0
        band_size = size if bands == 1 else (min(OH - first_row, band_rows) - 1) * pitch + OW
        o = np.uint64((plane_job * OH + first_row) * OW) if direct else np.uint64(0)
        # Note [no bias] in kernels/__init__.py
        bias_value = bias[co] if bias.shape[0] else zero
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
                            zero_run(buf, b * length + base + j * Wq, Wq)
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
                column_taps(w, co, ci, kw, KH, first, first + dh * Wq, 2 * dh * Wq, buf, dst,
                             o, band_size)
        if not direct:
            # the rows' meaningful outputs into out
            start = plane_job * OH * OW
            for oh in range(first_row, min(OH, first_row + band_rows)):
                copy_row(of, start + oh * OW, acc, (oh - first_row) * pitch, OW)
        if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
            finish_block(of, (plane_job * OH + first_row) * OW, 0, 1,
                         (min(OH, first_row + band_rows) - first_row) * OW, residual, code, slope)


@inline_helper
def _zero_column(buf, first, pitch, rows):
    """buf[first + r * pitch] = 0 for r < rows: one column of a phase plane
    (Note [phase planes]), column by column with the rows inside -- row by
    row with a one-value loop inside, the zeroing took a third of the
    depthwise 3x3 layer's time."""
    zero = buf.dtype.type(0)
    for r in range(rows):
        buf[np.uint64(first + r * pitch)] = zero


@inline_helper
def _split_column_phases(xf, plane, count, sw, buf, length, base):
    """buf[b * length + base + i] = xf[plane + sw * i + b] for i < count and
    every column phase b (Note [phase planes]).

    Inlined, so the shared input's reference count is not touched per plane
    (Note [reference counts] in kernels/direct_channels_last.py).  For
    stride 2 both phases in one loop: LLVM vectorises that as a de-interleave (a whole
    dw_s2 input as fast as a copy), where the same loop over 28-value rows
    took 5x as long.
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
