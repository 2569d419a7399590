"""im2col + GEMM kernels for the CPU.

All kernels work on the canonical 3-D form (see :mod:`numbaconv.spec`).
The column matrix of one group has a row per weight tap ``k = (ci, kd, kh,
kw)`` (the C order of the weight's trailing axes, so the group's weight is a
plain ``(C_out/groups, K)`` matrix with ``K = C_in/groups * KD * KH * KW``)
and a column per output pixel; ``out = weight @ columns`` is one GEMM.

Note [column tiles]
~~~~~~~~~~~~~~~~~~~
The column matrix is never built whole (for a large input it would be
``K`` times the input).  A job is a *tile*: a range of ``tile`` consecutive
output pixels (flattened over ``OD, OH, OW``) of one image and one group.
Each thread owns one column buffer of ``rows x tile`` values, sized by the
caller so that it stays near the core's cache and never exceeds the
workspace limit.  The thread fills the tile's output block with the bias
(without a bias, BLAS's first product simply overwrites it), fills the
columns straight from the unpadded input (padding resolved
through the index maps of :mod:`numbaconv.padding`) and adds their product
with the weight into the output block in place (BLAS ``gemm`` with
``beta = 1`` and the output's row stride as leading dimension): no result
buffer, no copy-out.  ``rows`` is normally ``K``; when even a one-pixel tile
of ``K`` rows would not fit the limit, ``K`` is reduced in chunks of
``rows``, each added into the block in turn.

Note [one thread pool]
~~~~~~~~~~~~~~~~~~~~~~
The GEMM of a tile runs inside the numba task that built its columns, on
the same core, with BLAS limited to one thread for the duration of the
call: numba's pool is the only one working, so no pool spins while the
other computes, and each tile's columns are still in that core's cache when
BLAS reads them.  The pointwise path works the same way.  Measured
(scripts/threadpool_study.py, docs/results-im2col.md): letting BLAS's own
threads do the GEMMs between numba kernels made each phase wait on the
other pool's spinning threads, up to 3x slower, and a numba kernel run
after a multi-threaded NumPy GEMM ran at half speed for as long as the BLAS
threads kept spinning.
"""

from __future__ import annotations

import numpy as np

from .blas import gemm, gemm_nt
from .epilogue_block import finish_args, finish_block
from .layout import transpose_matrices
from .jit import cpu_kernel, inline_helper
from ..workspaces import scratch
from .parallel import chunk_of, chunk_scratch, run_in_chunks

#: Output channels per group up to which the tile product is computed by
#: :func:`_small_product` rather than BLAS (Note [small products]).
SMALL_GEMM_ROWS = 2


def pointwise_conv(gemm_address, int_witness, w, x, bias, out, row_blocks, chunks,
                   finish=None):
    """The pointwise (1x1, stride 1, unpadded) convolution as GEMMs on views.

    ``w`` is ``(groups, C_out/groups, C_in/groups)``, ``x`` ``(N, groups,
    C_in/groups, S)``, ``out`` ``(N, groups, C_out/groups, S)``: a job is
    ``out[n, g, rows] = w[g, rows] @ x[n, g] + bias`` (``bias`` empty: none)
    for one of
    ``row_blocks`` blocks of output channels (more than one when there are
    fewer (image, group) pairs than threads).  Every operand is a view;
    nothing is copied (Note [one thread pool]).  ``gemm_address`` and
    ``int_witness`` come from :func:`numbaconv.kernels.blas.find_gemm`.
    ``finish`` is the epilogue's ``(code, slope, residual)``
    (:meth:`numbaconv.epilogue.Epilogue.kernel_args`), applied to each
    job's block after its GEMM; None: bias only.
    """
    N, groups = x.shape[0], x.shape[1]
    run_in_chunks(_pointwise_chunk, (gemm_address, int_witness, w, x, bias, out, row_blocks,
                                     *finish_args(finish, out.dtype)),
                  N * groups * row_blocks, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _pointwise_chunk(gemm_address, int_witness, w, x, bias, out, row_blocks, code, slope,
                     residual, first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of pointwise_conv; job = (n, g, block)."""
    groups, cout_g = w.shape[0], w.shape[1]
    size = x.shape[3]
    flat = out.ravel()
    for job in range(first_job, stop_job):
        block = job % row_blocks
        g = (job // row_blocks) % groups
        n = job // (row_blocks * groups)
        r0 = block * cout_g // row_blocks
        r1 = (block + 1) * cout_g // row_blocks
        if r1 <= r0:
            continue
        if size == 1:
            _matrix_vector(flat, (n * groups + g) * cout_g, w[g], x[n, g], bias, g * cout_g,
                           r0, r1)
        else:
            if bias.shape[0]:
                _fill_bias(flat, ((n * groups + g) * cout_g + r0) * size, size,
                           r1 - r0, size, bias, g * cout_g + r0)
            gemm(gemm_address, int_witness, w[g, r0:r1], x[n, g], out[n, g, r0:r1],
                 1.0 if bias.shape[0] else 0.0)
        if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
            finish_block(flat, ((n * groups + g) * cout_g + r0) * size, 0, 1,
                         (r1 - r0) * size, residual, code, slope)


@inline_helper
def _matrix_vector(flat, first, w, x, bias, first_channel, r0, r1):
    """``flat[first + r] = w[r] . x[:, 0] + bias[first_channel + r]`` for
    ``r0 <= r < r1``: a pointwise layer on a 1x1 map (a squeeze-excitation's
    layers).  OpenBLAS's sgemm with one column packs the whole weight on
    every call: 120 us for 960 -> 240 channels against 19 for NumPy's GEMV
    (docs/results-networks.md, "One-pixel layers").  Each output is one dot
    product whatever the row blocks, so the bits do not depend on the threads."""
    zero = flat.dtype.type(0)
    for r in range(r0, r1):
        acc = zero
        for k in range(w.shape[1]):
            acc += w[r, k] * x[k, 0]
        flat[first + r] = acc + (bias[first_channel + r] if bias.shape[0] else zero)


def im2col_conv(gemm_address, int_witness, x, map_d, map_h, map_w, w, bias, out, kernel_size,
                stride, dilation, pad_h, pad_w, tile, rows, chunks, small_m=SMALL_GEMM_ROWS,
                row_blocks=1, finish=None):
    """Convolution by tiles of column matrix times weight (Note [column tiles]).

    Parameters
    ----------
    gemm_address, int_witness
        The CBLAS gemm (:func:`numbaconv.kernels.blas.find_gemm`).
    x : (N, C, D, H, W) array
        Unpadded canonical input.
    map_d, map_h, map_w : int64 arrays
        Padding index maps of the three axes.
    w : (groups, C_out/groups, K) array
        The weight, ``K = C_in/groups * KD * KH * KW`` (a reshaped view).
    bias : (C_out,) or (0,) array
        Empty for no bias.
    out : (N, C_out, OD, OH, OW) array
        Written in full.
    kernel_size, stride, dilation : (3,) tuples of int
    pad_h, pad_w : int
        Padding before the H and W axes (where the maps are plain shifts).
    tile : int
        Output pixels per job.
    rows : int
        Column-buffer rows, a divisor of ``K``: ``K`` is reduced in
        ``K / rows`` chunks whose products are summed into ``out``.
    chunks : int
        Number of parallel chunks of jobs (the thread count).
    small_m : int
        Groups with at most this many output channels multiply in numba
        (Note [small products]) instead of calling BLAS.
    row_blocks : int
        Each tile's output channels are computed by this many jobs, each
        filling the tile's columns itself (``plan_tiles`` in
        :mod:`numbaconv.algorithms.im2col`: layers with few output pixels).
    finish : (code, slope, residual) or None
        The epilogue (:meth:`numbaconv.epilogue.Epilogue.kernel_args`),
        applied to each tile's output block after its last K chunk's
        product; None: bias only.
    """
    N, Co, OD, OH, OW = out.shape
    groups = w.shape[0]
    tiles = (OD * OH * OW + tile - 1) // tile
    # the task compiled for this layer's product and fills (Note [tasks per product])
    same_width = (stride[1] == stride[2] == 1 and x.shape[2] == 1 and kernel_size[0] == 1
                  and OD == 1 and OW == x.shape[4])
    fills = ("general" if not same_width else
             "same_width" if OW > 0 and tile % OW == 0 else "both")
    jobs = N * groups * tiles * row_blocks
    run_in_chunks(_IM2COL_TASKS[w.shape[1] <= small_m, fills],
                  (gemm_address, int_witness, x, map_d, map_h, map_w, w, bias,
                   out.reshape(N, Co, OD * OH * OW), *kernel_size, *stride, *dilation, pad_h,
                   pad_w, OH, OW, tile, rows, small_m, row_blocks,
                   *finish_args(finish, out.dtype),
                   chunk_scratch(jobs, chunks, rows * tile, out.dtype)),   # the column tiles
                  jobs, chunks)


def _im2col_task(small, fills):
    """The column-tile task compiled for one product (``small``: Note [small
    products], else BLAS) and one of :data:`FILLS`.

    Note [tasks per product]
    ~~~~~~~~~~~~~~~~~~~~~~~~
    The tile task chose at run time between the product of Note [small
    products] and BLAS, and per tile between the same-width fill and the
    general one, so numba compiled both products and both fills into every
    layer's task (and compiled each on its own first).  ``small`` and the
    fills are now constants of the closure, decided in :func:`im2col_conv`
    from the weight and the tile: numba prunes the branches they decide and
    compiles a task with only its own product and fills, when a layer first
    needs it.  :func:`_next_tap` and :func:`_fill_bias`, a few lines each,
    are inlined rather than compiled on their own.  A first 3x3 call with
    'same' padding compiled its im2col kernels in 3.4 s before, 1.7 s after
    (CPU, 2-core AVX2 EPYC).  Each path's code is unchanged, and so are the
    bits; inlining the same-width fill too saved nothing (the task grew by
    what the fill's own compile had cost).
    """
    same_only, both = fills == "same_width", fills == "both"   # constants of the task

    @cpu_kernel(parallel=False, python_callable=False)
    def _im2col_chunk(gemm_address, int_witness, x, map_d, map_h, map_w, w, bias, out, KD, KH, KW,
                      sd, sh, sw, dd, dh, dw, pad_h, pad_w, OH, OW, tile, rows, small_m,
                      row_blocks, code, slope, residual, work, first_job, stop_job):
        """Tiles ``first_job <= job < stop_job`` of im2col_conv; job = (n, g, tile,
        row block).

        ``out`` is ``(N, C_out, OD*OH*OW)``.  Each tile's output block is
        filled with the bias, then every K chunk's product is added into it
        (BLAS with ``beta = 1``, or Note [small products]).
        """
        Co, size = out.shape[1], out.shape[2]
        groups, cout_g, K = w.shape
        cin_g = x.shape[1] // groups
        tiles = (size + tile - 1) // tile
        # this chunk's column tile (Note [chunk scratch])
        columns = work[chunk_of(first_job, x.shape[0] * groups * tiles * row_blocks,
                                work.shape[0])][:rows * tile]
        flat_out = out.ravel()
        block = (cout_g + row_blocks - 1) // row_blocks
        for job in range(first_job, stop_job):
            b = job % row_blocks
            t = (job // row_blocks) % tiles
            g = (job // (row_blocks * tiles)) % groups
            n = job // (row_blocks * tiles * groups)
            r0 = b * block                                # the block's output channels
            r1 = min(cout_g, r0 + block)
            if r0 >= r1:
                continue
            first_pixel = t * tile
            pixels = min(tile, size - first_pixel)
            whole_rows = first_pixel % OW == 0 and pixels % OW == 0
            first_out = (n * Co + g * cout_g + r0) * size + first_pixel   # out[n, c0, p0]
            # the block starts as the bias (or zeros), unless BLAS overwrites it
            overwrite = cout_g > small_m and bias.shape[0] == 0
            if not overwrite:
                _fill_bias(flat_out, first_out, size, r1 - r0, pixels, bias, g * cout_g + r0)
            for k0 in range(0, K, rows):
                # im2col_conv found the layer same-width (Note [same-width
                # columns]); with "both" some tiles are not whole rows
                if same_only or (both and whole_rows):
                    fill_columns_same_width(x, map_h, map_w, n, g * cin_g, k0, rows, KH, KW,
                                             dh, dw, pad_h, pad_w, first_pixel // OW,
                                             pixels // OW, columns)
                else:
                    fill_columns(x, map_d, map_h, map_w, n, g * cin_g, k0, rows, KD, KH, KW,
                                  sd, sh, sw, dd, dh, dw, pad_w, OH, OW, first_pixel, pixels,
                                  columns)
                if small:                                 # cout_g <= small_m
                    _small_product(w[g, r0:r1, k0:k0 + rows], columns, pixels, flat_out, first_out,
                                   size)
                else:
                    gemm(gemm_address, int_witness, w[g, r0:r1, k0:k0 + rows],
                         columns[:rows * pixels].reshape(rows, pixels),
                         out[n, g * cout_g + r0:g * cout_g + r1, first_pixel:first_pixel + pixels],
                         0.0 if overwrite and k0 == 0 else 1.0)
            if code != 0 or residual.shape[0] > 0:     # the fused epilogue: Note [epilogue]
                # the tile's block, complete after its last K chunk
                finish_block(flat_out, first_out, size, r1 - r0, pixels, residual, code, slope)

    return _im2col_chunk


#: The fills an im2col task is compiled for: the same-width fill for every
#: tile (unit stride, one depth slice, output rows as wide as the input's,
#: tiles of whole rows), both (the same-width fill for tiles of whole rows,
#: the general fill for the others), or the general fill.
FILLS = ("same_width", "both", "general")

#: (small, fills) -> its task, compiled when first called
_IM2COL_TASKS = {(small, fills): _im2col_task(small, fills)
                 for small in (True, False) for fills in FILLS}


@inline_helper
def _fill_bias(flat, first, stride, rows, pixels, bias, first_channel):
    """flat[first + m*stride + p] = bias[first_channel + m] for m < rows, p < pixels
    (zeros when ``bias`` is empty).

    Flat array and unsigned indices: Note [reference counts] of
    :mod:`numbaconv.kernels.direct_channels_last` (a strided 2-D view here was not
    vectorised).
    """
    zero = flat.dtype.type(0)
    for m in range(rows):
        b = bias[first_channel + m] if bias.shape[0] else zero
        r0 = first + m * stride
        for p in range(pixels):
            flat[np.uint64(r0 + p)] = b


@cpu_kernel(parallel=False)
def fill_columns(x, map_d, map_h, map_w, n, first_channel, first_row, rows, KD, KH, KW,
                  sd, sh, sw, dd, dh, dw, pad_w, OH, OW, first_pixel, pixels, columns):
    """columns[r * pixels + p] = the padded-input value that weight column
    ``first_row + r`` multiplies for output pixel ``first_pixel + p``.

    Along a row of output pixels, tap ``kw`` reads input column
    ``ow * sw + kw * dw - pad_w``; where that lies inside the input (every
    padding mode maps the interior to itself) it is read directly, a plain
    copy when ``sw == 1``, and only the few edge pixels go through
    ``map_w``.  Flat views, unsigned indices: Note [reference counts] of
    :mod:`numbaconv.kernels.direct_channels_last`.
    """
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    src = x.ravel()
    zero = columns.dtype.type(0)
    first_out_row = first_pixel // OW
    last_out_row = (first_pixel + pixels - 1) // OW
    od0 = first_out_row // OH
    oh0 = first_out_row % OH
    # (ci, kd, kh, kw) of the first row, then counted up: integer divisions
    # per row and per output row cost more than the copies of short rows
    kw = first_row % KW
    kh = (first_row // KW) % KH
    kd = (first_row // (KW * KH)) % KD
    ci = first_row // (KW * KH * KD)
    for r in range(rows):
        plane = (n * C + first_channel + ci) * D * H * W
        shift = kw * dw - pad_w
        # output columns whose input column ow * sw + shift lies in [0, W)
        if sw == 1:
            lo = max(0, -shift)
            hi = max(0, W - shift)
        else:
            lo = 0 if shift >= 0 else (sw - 1 - shift) // sw
            hi = (W - 1 - shift) // sw + 1 if shift <= W - 1 else 0
        od = od0
        oh = oh0
        for orow in range(first_out_row, last_out_row + 1):
            a = max(first_pixel - orow * OW, 0)
            b = min(first_pixel + pixels - orow * OW, OW)
            base = r * pixels + orow * OW - first_pixel       # index of ow = 0 (>= -a)
            sd_ = map_d[od * sd + kd * dd]
            sh_ = map_h[oh * sh + kh * dh]
            oh += 1
            if oh == OH:
                oh = 0
                od += 1
            if sd_ < 0 or sh_ < 0:
                for ow in range(a, b):
                    columns[np.uint64(base + ow)] = zero
                continue
            srow = plane + (sd_ * H + sh_) * W
            ia = min(max(lo, a), b)
            ib = max(min(hi, b), ia)
            if sw == 1:
                s0 = srow + shift
                for ow in range(ia, ib):
                    columns[np.uint64(base + ow)] = src[np.uint64(s0 + ow)]
            else:
                for ow in range(ia, ib):
                    columns[np.uint64(base + ow)] = src[np.uint64(srow + ow * sw + shift)]
            for edge in range(2):                      # [a, ia) and [ib, b): through map_w
                for ow in range(a if edge == 0 else ib, ia if edge == 0 else b):
                    iw = map_w[ow * sw + kw * dw]
                    columns[np.uint64(base + ow)] = (src[np.uint64(srow + iw)] if iw >= 0
                                                     else zero)
        ci, kd, kh, kw = _next_tap(ci, kd, kh, kw, KD, KH, KW)


@cpu_kernel(parallel=False)
def fill_columns_same_width(x, map_h, map_w, n, first_channel, first_row, rows, KH, KW,
                             dh, dw, pad_h, pad_w, first_out_row, out_rows, columns):
    """fill_columns for unit stride, ``D == 1`` and ``OW == W``, whole output rows.

    Note [same-width columns]
    ~~~~~~~~~~~~~~~~~~~~~~~~~
    When output rows are as wide as input rows and the stride is 1, the
    column row of tap ``(kh, kw)`` is the input plane shifted by one constant
    ``(kh*dh - pad_h) * W + kw*dw - pad_w``: one long copy over all output
    rows that have an input row, after which only the ``|shift|`` columns
    per row that wrapped into a neighbouring row, and the padding rows, are
    rewritten through the padding maps.  On the depthwise benchmark layer
    the row-by-row fill spent most of its time starting copies of 28 values.
    """
    C, H, W = x.shape[1], x.shape[3], x.shape[4]
    src = x.ravel()
    zero = columns.dtype.type(0)
    pixels = out_rows * W
    last_out_row = first_out_row + out_rows
    kw = first_row % KW
    kh = (first_row // KW) % KH
    ci = first_row // (KW * KH)
    for r in range(rows):
        plane = (n * C + first_channel + ci) * H * W
        shift = kw * dw - pad_w
        off = kh * dh - pad_h                        # input row = output row + off
        d0 = r * pixels - first_out_row * W          # column index of (oh, 0) is d0 + oh*W
        va = min(max(first_out_row, -off), last_out_row)
        vb = max(min(last_out_row, H - off), va)
        # output rows [first_out_row, va) and [vb, last_out_row) read padding
        # rows: through the maps
        for e in range(va - first_out_row + last_out_row - vb):
            oh = first_out_row + e if first_out_row + e < va else vb + e - (va - first_out_row)
            ih = map_h[oh + kh * dh]
            dst = d0 + oh * W
            if ih < 0:
                for ow in range(W):
                    columns[np.uint64(dst + ow)] = zero
                continue
            for ow in range(W):
                iw = map_w[ow + kw * dw]
                columns[np.uint64(dst + ow)] = (src[np.uint64(plane + ih * W + iw)] if iw >= 0
                                                else zero)
        if vb > va:
            # rows with an input row: one copy, clipped to the input plane
            s0 = plane + off * W + shift
            qa = max(va * W, -(off * W + shift))
            qb = min(vb * W, H * W - off * W - shift)
            for q in range(qa, qb):
                columns[np.uint64(d0 + q)] = src[np.uint64(s0 + q)]
            # the wrapped (or clipped) columns [0, lo) and [hi, W), through
            # map_w: one strided pass over the rows per column
            lo = min(max(0, -shift), W)
            hi = max(min(W, W - shift), lo)
            for e in range(lo + W - hi):
                ow = e if e < lo else hi + e - lo
                iw = map_w[ow + kw * dw]
                dst = d0 + va * W + ow
                if iw < 0:
                    for i in range(vb - va):
                        columns[np.uint64(dst + i * W)] = zero
                else:
                    first = plane + (va + off) * W + iw
                    for i in range(vb - va):
                        columns[np.uint64(dst + i * W)] = src[np.uint64(first + i * W)]
        ci, _, kh, kw = _next_tap(ci, 0, kh, kw, 1, KH, KW)


@inline_helper
def _next_tap(ci, kd, kh, kw, KD, KH, KW):
    """The weight column after ``(ci, kd, kh, kw)`` in C order (any
    four-digit counter whose top digit is unbounded: also the transposed
    GEMM's input pixel ``(n, d, h, w)``)."""
    kw += 1
    if kw == KW:
        kw = 0
        kh += 1
        if kh == KH:
            kh = 0
            kd += 1
            if kd == KD:
                kd = 0
                ci += 1
    return ci, kd, kh, kw


@cpu_kernel(parallel=False, python_callable=False)
def _small_product(w, columns, pixels, flat, first, stride):
    """flat[first + m*stride + p] += sum_k w[m, k] * columns[k*pixels + p].

    Note [small products]
    ~~~~~~~~~~~~~~~~~~~~~
    With one or two output channels per group (depthwise layers, one-channel
    images) the GEMM is one or two long rows, where BLAS's blocking does
    not pay.  Here each output row is updated with four column rows at a
    time (one load and one store of the output per four multiply-adds),
    vectorised along the pixels.  Measured (whole im2col call, 2 threads,
    2026-11-29): depthwise 256 channels 28x28 1.1 ms against 1.8 ms with
    BLAS; C_in = 64, 3x3, 56x56: one output channel 1.2 against 2.4 ms, two
    1.7 against 2.2 ms, but four 2.0 against 1.7 ms and eight 3.2 against
    2.3 ms; bigk2d's 31x31 single channel 137 against 249 ms.
    """
    M, K = w.shape
    for m in range(M):
        r0 = first + m * stride
        k = 0
        while k + 4 <= K:
            w0 = w[m, k]
            w1 = w[m, k + 1]
            w2 = w[m, k + 2]
            w3 = w[m, k + 3]
            c0 = k * pixels
            c1 = c0 + pixels
            c2 = c1 + pixels
            c3 = c2 + pixels
            for p in range(pixels):
                flat[np.uint64(r0 + p)] += (w0 * columns[np.uint64(c0 + p)]
                                            + w1 * columns[np.uint64(c1 + p)]
                                            + w2 * columns[np.uint64(c2 + p)]
                                            + w3 * columns[np.uint64(c3 + p)])
            k += 4
        while k < K:
            wk = w[m, k]
            ck = k * pixels
            for p in range(pixels):
                flat[np.uint64(r0 + p)] += wk * columns[np.uint64(ck + p)]
            k += 1


#: Output pixels up to which a pointwise weight gradient is a numba loop
#: rather than a GEMM (Note [pointwise weight gradient]).
SHORT_POINTWISE_PIXELS = 8


def pointwise_grad_weight(gemm_address, int_witness, x, g, out, row_blocks, chunks):
    """The weight gradient of a pointwise convolution.

    Note [pointwise weight gradient]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    With a 1x1 kernel, stride 1 and no padding, the column matrix of Note
    [weight-gradient tiles] is the input itself: ``out[gr] = sum_n g[n, gr]
    @ x[n, gr]^T`` for each group ``gr``, with ``x`` ``(N, groups,
    C_in/groups, S)``, ``g`` ``(N, groups, C_out/groups, S)`` and ``out``
    ``(groups, C_out/groups, C_in/groups)``.  One GEMM per image and block
    of output channels (``row_blocks`` per group, sized by the pool), the
    images added in order into the block (``beta = 1``), reading the arrays
    in place: no column fill, no segments, no transpose.  ResNet-50's
    layer4.0.conv3 (512 -> 2048 on 7x7) at batch 1 took 1.11 ms by the
    tiles and 0.62 ms as GEMMs (docs/results-im2col.md, "Pointwise weight
    gradients"; which
    problems of several images take this path: ``pointwise_grad_weight_serves``
    in numbaconv/algorithms/im2col.py).  Up to
    :data:`SHORT_POINTWISE_PIXELS` pixels the sum is a numba loop: sgemm
    with a reduction of one packs both operands (a squeeze-excitation's
    960 x 240 gradient: 0.35 ms, as slow as the tiles).  Each element is
    summed over the images and pixels in order in both forms, whatever the
    threads.
    """
    N, groups, cin_g, size = x.shape
    if size <= SHORT_POINTWISE_PIXELS:
        # the reduction's (image, pixel) pairs as rows: the loop then reads
        # contiguous input channels, which LLVM vectorises (strided it ran
        # 2 GMAC/s on one thread)
        rows = scratch((groups, N * size, cin_g), x.dtype)
        rows.reshape(groups, N, size, cin_g)[...] = x.transpose(1, 0, 3, 2)
        values = scratch((groups, g.shape[2], N * size), g.dtype)
        values.reshape(groups, g.shape[2], N, size)[...] = g.transpose(1, 2, 0, 3)
        run_in_chunks(_short_grad_weight_chunk, (rows, values, out, row_blocks),
                      groups * row_blocks, chunks)
        return
    run_in_chunks(_pointwise_grad_weight_chunk,
                  (gemm_address, int_witness, x, g, out, row_blocks),
                  groups * row_blocks, chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _pointwise_grad_weight_chunk(gemm_address, int_witness, x, g, out, row_blocks, first_job,
                                 stop_job):
    """Jobs ``first_job <= job < stop_job`` of pointwise_grad_weight's GEMMs;
    job = (group, block of output channels)."""
    cout_g = g.shape[2]
    for job in range(first_job, stop_job):
        block = job % row_blocks
        gi = job // row_blocks
        r0 = block * cout_g // row_blocks
        r1 = (block + 1) * cout_g // row_blocks
        for n in range(x.shape[0]):
            if r1 > r0:
                gemm_nt(gemm_address, int_witness, g[n, gi, r0:r1], x[n, gi], out[gi, r0:r1],
                        0.0 if n == 0 else 1.0)


@cpu_kernel(parallel=False, python_callable=False)
def _short_grad_weight_chunk(rows, values, out, row_blocks, first_job, stop_job):
    """Jobs of pointwise_grad_weight's short reductions: ``out[gr, r] =
    sum_k values[gr, r, k] * rows[gr, k]``, ``k`` (image, pixel) in order."""
    cout_g = out.shape[1]
    zero = out.dtype.type(0)
    for job in range(first_job, stop_job):
        block = job % row_blocks
        gi = job // row_blocks
        for r in range(block * cout_g // row_blocks, (block + 1) * cout_g // row_blocks):
            target = out[gi, r]
            for c in range(out.shape[2]):
                target[c] = zero
            for k in range(rows.shape[1]):
                value = values[gi, r, k]
                source = rows[gi, k]
                for c in range(out.shape[2]):
                    target[c] += value * source[c]


def im2col_grad_weight(gemm_address, int_witness, x, map_d, map_h, map_w, g, out, groups,
                       kernel_size, stride, dilation, pad_h, pad_w, output_size, tile, rows,
                       segments, chunks, small_m=SMALL_GEMM_ROWS):
    """Weight gradient by column tiles (Note [weight-gradient tiles]).

    ``x`` is the unpadded canonical input, ``g`` the output gradient
    ``(N, C_out, OD*OH*OW)`` and ``out`` the weight gradient ``(C_out, K)``
    (``K = C_in/groups * KD * KH * KW``, the column rows), written in full.
    ``rows`` column rows form one block, ``tile`` output pixels one column
    buffer, and the (image, tile) sequence is cut into ``segments`` whose
    partial sums are added in order at the end.
    """
    K = out.shape[1]
    blocks = (K + rows - 1) // rows
    cout_g = out.shape[0] // groups
    # per segment, the transposed gradient (Note [weight-gradient tiles])
    acc = scratch((segments, groups, K, cout_g), out.dtype)
    jobs = groups * blocks * segments
    run_in_chunks(_grad_weight_chunk,
                  (gemm_address, int_witness, x, map_d, map_h, map_w, g, acc, *kernel_size,
                   *stride, *dilation, pad_h, pad_w, output_size[1], output_size[2], tile, rows,
                   small_m, chunk_scratch(jobs, chunks, rows * tile, out.dtype)),
                  jobs, chunks)
    total = acc[0]
    for s in range(1, segments):           # in order: the same bits for any thread count
        total += acc[s]
    # a blocked transpose: NumPy's copy of (K, C_out) read its columns through
    # one cache set when C_out is a power of two (Note [blocked transposes])
    transpose_matrices(total, out.reshape(groups, cout_g, K), chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _grad_weight_chunk(gemm_address, int_witness, x, map_d, map_h, map_w, g, acc, KD, KH, KW,
                       sd, sh, sw, dd, dh, dw, pad_h, pad_w, OH, OW, tile, rows, small_m, work,
                       first_job, stop_job):
    """Jobs ``first_job <= job < stop_job`` of im2col_grad_weight; job =
    (segment, group, row block).

    Note [weight-gradient tiles]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    ``grad_w[g] = sum_n grad_out[n, g] @ columns[n, g]^T``: the forward
    column matrix (a row per weight tap, a column per output pixel) of every
    image, multiplied by the output gradient.  The (image, pixel tile) pairs
    are cut into a fixed number of *segments*; a job owns a block of
    ``rows`` columns of one group's weight gradient in one segment and walks
    that segment's tiles in order, filling only its rows of the columns and
    adding ``columns_tile @ grad_out_tile^T`` into its block of the
    segment's transposed gradient (BLAS with B transposed; a numba dot
    product for one or two output channels per group).  The segments' sums
    are added in order at the end.

    Measured on resnet3x3's shapes (OpenBLAS, AMD EPYC, one thread): this
    orientation (M = rows, N = C_out/groups) ran 80 GFLOP/s against 62 for
    ``grad_out @ columns^T``, and M = 576 rows 94 against 86 GFLOP/s for
    288; so the work is split over the reduction (segments) before the rows
    are.  Whole gradient, 2 threads: 7.6 ms (72-row blocks, first
    orientation), 5.7-6.8 ms (288-row blocks), see the plan for today's.
    Segments, blocks and tiles depend on the sizes and the pool's size, not
    on the current thread count, so every element is summed in the same order
    whatever ``numba.set_num_threads`` says: bit-identical results, and a
    workspace of one column buffer per thread plus one gradient per segment,
    however large the batch.
    """
    N, Co, size = g.shape
    segments, groups, K, cout_g = acc.shape
    cin_g = x.shape[1] // groups
    blocks = (K + rows - 1) // rows
    tiles = (size + tile - 1) // tile
    # this chunk's column buffer (Note [chunk scratch])
    columns = work[chunk_of(first_job, groups * blocks * segments, work.shape[0])][:rows * tile]
    flat_g = g.ravel()
    same_width = (sw == 1 and sh == 1 and x.shape[2] == 1 and KD == 1 and size == OH * OW
                  and OW == x.shape[4])
    zero = acc.dtype.type(0)
    for job in range(first_job, stop_job):
        block = job % blocks
        gi = (job // blocks) % groups
        segment = job // (blocks * groups)
        k0 = block * rows
        kb = min(rows, K - k0)
        c0 = gi * cout_g
        target = acc[segment, gi]
        first_pair = segment * N * tiles // segments
        stop_pair = (segment + 1) * N * tiles // segments
        if cout_g <= small_m or stop_pair == first_pair:
            for r in range(kb):
                for m in range(cout_g):
                    target[k0 + r, m] = zero
        for pair in range(first_pair, stop_pair):
            n = pair // tiles
            p0 = (pair % tiles) * tile
            pixels = min(tile, size - p0)
            if same_width and p0 % OW == 0 and pixels % OW == 0:
                fill_columns_same_width(x, map_h, map_w, n, gi * cin_g, k0, kb, KH, KW,
                                         dh, dw, pad_h, pad_w, p0 // OW, pixels // OW, columns)
            else:
                fill_columns(x, map_d, map_h, map_w, n, gi * cin_g, k0, kb, KD, KH, KW,
                              sd, sh, sw, dd, dh, dw, pad_w, OH, OW, p0, pixels, columns)
            if cout_g <= small_m:
                for m in range(cout_g):
                    g0 = (n * Co + c0 + m) * size + p0
                    for r in range(kb):
                        total = zero
                        for p in range(pixels):
                            total += flat_g[np.uint64(g0 + p)] * columns[np.uint64(r * pixels + p)]
                        target[k0 + r, m] += total
            else:
                gemm_nt(gemm_address, int_witness, columns[:kb * pixels].reshape(kb, pixels),
                        g[n, c0:c0 + cout_g, p0:p0 + pixels], target[k0:k0 + kb],
                        0.0 if pair == first_pair else 1.0)
