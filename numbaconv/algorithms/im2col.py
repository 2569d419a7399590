"""The ``im2col`` algorithm: column matrices multiplied by BLAS.

Serves every valid spec.  Forward problems take one of two paths:

* **pointwise** -- a 1x1(x1) kernel with stride 1 and no padding: the input
  already *is* the column matrix, so each (image, group) is one GEMM
  ``out[n, g] = weight[g] @ x[n, g]`` over reshaped views, called by numba
  tasks through CBLAS with BLAS limited to one thread (no copy, no
  workspace; Note [one thread pool] in :mod:`numbaconv.kernels.im2col_cpu`).
* **tiles** -- everything else: numba tasks build the column matrix a tile of
  output pixels at a time and multiply each tile with BLAS on the same
  thread (Notes [column tiles] and [one thread pool] in
  :mod:`numbaconv.kernels.im2col_cpu`).  The tile buffers stay near the
  core's cache and under :func:`numbaconv.get_workspace_limit`.

Transposed problems (input dilation, and the stride-1 ones where that is
cheaper) run as one GEMM with the weight as given whose products are added
into the output (Note [transposed GEMM] in
:mod:`numbaconv.kernels.im2col_transposed`; docs/results-transposed.md),
weight gradients as column tiles multiplied by the output gradient (Note
[weight-gradient tiles]; docs/results-backward.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numba
import numpy as np

from .. import config
from ..context import current_context
from ..kernels import blas, im2col_channels_last, im2col_cpu, im2col_transposed, layout
from ..padding import padding_maps
from ..workspaces import contiguous, scratch
from .. import costs, rewrites
from .registry import (PACK_SECONDS_PER_BYTE, Plan, ConvAlgorithm, channels_first_copy,
                       costed_plan, packed_bytes, register, weight_bytes)

#: Target size of one thread's column buffer: layers with many channels
#: run equally fast from 0.6 to 8 MiB, and bigk1d (K = 4080) fastest at
#: 4 MiB (190 ms against 259 with 1 MiB; docs/results-im2col.md, "Tile
#: sizes").
TILE_BYTES = 4 * 2**20
#: The same for GEMMs of at most :data:`FEW_ROWS` output channels per group,
#: which use each column value that few times: their tiles are kept in the
#: core's cache (4 -> 4 channels 3x3 on 256x256: 0.27 ms against 0.52 with
#: 4 MiB tiles; docs/results-im2col.md, "Tile sizes").
FEW_ROWS_TILE_BYTES = 256 * 2**10
#: Fewest output pixels per tile worth a GEMM call (the GEMM's N).  Tiles of
#: same-width layers are also at least one output row, for the fast column
#: fill (mc_bigk2d: 144 ms with one-row tiles, 228 ms with 64 pixels).
MIN_TILE_PIXELS = 256
#: Fewest output channels per row block (the GEMM's M) when a tile's output
#: channels are split between threads (:func:`plan_tiles`).
MIN_BLOCK_ROWS = 32


@dataclass(frozen=True)
class TilePlan:
    """How the tiles path splits one call (see :func:`plan_tiles`)."""

    tile: int           # output pixels per tile
    chunks_k: int       # the K axis is cut into this many equal chunks
    rows: int           # K / chunks_k: column-buffer rows
    threads: int
    row_blocks: int = 1  # each tile's output channels in this many jobs

    def workspace_bytes(self, itemsize):
        """Scratch bytes the kernel allocates, all threads together: one column
        buffer of ``rows x tile`` values per thread."""
        return self.threads * self.rows * self.tile * itemsize


def same_width_fill(spec):
    """Whether whole-row tiles of ``spec`` take the fast column fill."""
    # one depth slice in and out, no depth taps: the fill ignores depth
    return (spec.input_size3[0] == 1 and spec.kernel_size3[0] == 1
            and spec.output_size3[0] == 1 and spec.stride3[1:] == (1, 1)
            and spec.output_size3[2] == spec.input_size3[2] and not spec.has_input_dilation)


def _largest_divisor_at_most(n, bound):
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for candidate in (d, n // d):
                if best < candidate <= bound:
                    best = candidate
    return best


def plan_tiles(spec, itemsize, threads, limit=None):
    """Choose tile size and K split so all threads' buffers fit ``limit`` bytes.

    ``threads`` is the size of numba's pool (``ctx.pool_threads``), not the
    threads of one call: the tile and the row blocks are the shapes of the
    GEMMs, whose bits depend on their shape (Note [GEMM shapes] of
    :mod:`numbaconv.kernels.blas`).

    The tile aims at :data:`TILE_BYTES` per thread, takes at least
    :data:`MIN_TILE_PIXELS` pixels (and one output row for same-width
    layers) when the limit allows,
    is shrunk so that there are at least ``threads`` jobs, and is rounded
    down to whole output rows when longer than one.  ``K`` is split only when a
    one-pixel tile would not fit the limit; the limit (at least 1 MiB) is
    then always met, down to one-pixel, one-row tiles.

    When that shrinking would leave tiles under :data:`MIN_TILE_PIXELS` (few
    output pixels: late network stages, batch 1), each tile's output
    channels are split into row blocks of at least :data:`MIN_BLOCK_ROWS`
    instead, one job each, every job filling the tile's columns itself
    (ResNet's 512-channel 7x7 layer at batch 1 had three 21-pixel tiles,
    two of them on one thread: docs/results-im2col.md, "Row blocks").
    """
    if limit is None:
        limit = config.get_workspace_limit()
    K = spec.in_channels_per_group * math.prod(spec.kernel_size3)
    pixels = math.prod(spec.output_size3)
    jobs_per_tile = spec.batch * spec.groups
    hard = limit // (threads * itemsize)           # elements per thread
    soft = (FEW_ROWS_TILE_BYTES if spec.out_channels_per_group <= FEW_ROWS
            else TILE_BYTES) // itemsize
    row = spec.output_size3[2]
    if K <= hard:
        # at least MIN_TILE_PIXELS, and one whole output row where that
        # enables the fast fill (Note [same-width columns]), when the limit
        # allows, even beyond TILE_BYTES
        smallest = max(MIN_TILE_PIXELS, row if same_width_fill(spec) else 0)
        tile = min(max(soft // K, smallest), hard // K)
        chunks_k, rows = 1, K
    else:
        # even one pixel of columns is over the limit: cut K
        tile = 1
        rows = _largest_divisor_at_most(K, hard)
        chunks_k = K // rows
    # enough jobs for every thread: shorter tiles, or row blocks
    tile = max(1, min(tile, pixels))
    jobs = jobs_per_tile * -(-pixels // tile)
    cout_g = spec.out_channels_per_group
    row_blocks = 1
    if jobs < threads and cout_g >= 2 * MIN_BLOCK_ROWS and chunks_k == 1:
        shorter = -(-pixels // -(-threads // max(1, jobs_per_tile)))
        if shorter < MIN_TILE_PIXELS:
            row_blocks = min(-(-threads // jobs), cout_g // MIN_BLOCK_ROWS)
    if row_blocks == 1:
        tiles_wanted = -(-threads // max(1, jobs_per_tile))
        tile = max(1, min(tile, -(-pixels // tiles_wanted), pixels))
    if tile > row:
        tile -= tile % row          # whole output rows
    return TilePlan(tile=tile, chunks_k=chunks_k, rows=rows, threads=threads,
                    row_blocks=row_blocks)


#: Most output channels per group of a GEMM whose column tiles are kept in
#: the core's cache (:data:`FEW_ROWS_TILE_BYTES`), and which pays no row
#: penalty in the cost model (Note [few-row GEMMs]).
FEW_ROWS = 16


def _tiles_work(spec):
    """Work of the column tiles' GEMMs (``"im2col:tiles"``).

    Note [few-row GEMMs]
    ~~~~~~~~~~~~~~~~~~~~
    Each short dimension ``d`` costs ``(d + GEMM_HALF) / d``.  The column
    tiles' GEMM (im2col's forward) does not pay it for its rows when there
    are at most :data:`FEW_ROWS` output channels per group: those tiles are
    kept in the core's cache (``FEW_ROWS_TILE_BYTES``), and GEMMs of 4 to 8
    rows measured 0.2-0.55 of the estimate with the row term.  Above
    ``FEW_ROWS`` the term stays (docs/results-im2col.md, "Few-row GEMMs").
    """
    macs = spec.flops / 2
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    K = cin_g * math.prod(spec.kernel_size)
    calls = spec.batch * spec.groups * -(-math.prod(spec.output_size) // 512)
    rows = () if cout_g <= FEW_ROWS else (cout_g,)
    return costs.gemm_work(macs, *rows, K) + costs.GEMM_CALL * calls


def _grad_tiles_work(spec):
    K = spec.in_channels_per_group * math.prod(spec.kernel_size)
    calls = spec.batch * spec.groups * -(-math.prod(spec.output_size) // 512)
    return (costs.gemm_work(spec.flops / 2, spec.out_channels_per_group, K)
            + costs.GEMM_CALL * calls)


def _pointwise_work(spec):
    return costs.gemm_work(spec.flops / 2, spec.out_channels_per_group,
                           spec.in_channels_per_group)


def _small_work(spec):
    return spec.flops / 2                               # the numba products


# Note [short dot products]
# ~~~~~~~~~~~~~~~~~~~~~~~~~
# A depthwise weight gradient on a small map is thousands of short dot
# products (1152 channels x 9 taps of 49 pixels on EfficientNet-B0's 7x7
# stage), and each costs far more than its multiply-adds: the estimate was
# 0.12 ms, the run 0.33, so "auto" took im2col over direct's 0.16
# (docs/results-im2col.md, "Short dot products").  DOT_UNITS was fitted on
# two layers: about 37 ns a dot product on the 2-core AMD EPYC.

#: Units of one dot product of the weight gradient's numba products (one
#: output channel, one column row, one tile), besides its multiply-adds.
DOT_UNITS = 1170.0


def fill_units(spec, tile, same_width):
    """Units of ``"im2col:fill"`` of filling the column tiles of ``tile``
    output pixels of ``spec`` (``same_width``: the one-copy fill of Note
    [same-width columns]).

    Note [column fill cost]
    ~~~~~~~~~~~~~~~~~~~~~~~
    The column fill copies ``N * groups * K * pixels`` elements, in runs of
    at most one output row per weight tap (one run per tap and tile with the
    same-width fill), at memory speed, not GEMM speed: so it is costed apart,
    a unit-stride element 1 unit, a strided one
    :data:`numbaconv.costs.STRIDED_FILL` and a run
    :data:`~numbaconv.costs.FILL_RUN` (a least-squares fit on 15 layers,
    each within 0.62-1.21x of it), and ``numbaconv calibrate`` times the
    fill kernel alone for its constant (docs/results-im2col.md, "Column
    fill cost").
    """
    n, g = spec.batch, spec.groups
    K = spec.in_channels_per_group * math.prod(spec.kernel_size)
    pixels = math.prod(spec.output_size)
    tiles = -(-pixels // max(1, tile))
    elements = n * g * K * pixels
    if same_width:
        runs = n * g * K * tiles
    else:
        runs = n * g * K * (-(-pixels // spec.output_size[-1]) + tiles)
    strided = any(v != 1 for v in spec.stride)
    return elements * (costs.STRIDED_FILL if strided else 1.0) + costs.FILL_RUN * runs


#: The cost-model paths, with the constants shipped (fitted by ``numbaconv
#: calibrate`` on the development machine: docs/choosing.md).
PATHS = (
    costs.PathModel("im2col:pointwise", 1.754e-11, work=_pointwise_work),
    costs.PathModel("im2col:tiles", 1.856e-11, work=_tiles_work),
    costs.PathModel("im2col:small", 4.376e-11, work=_small_work),
    costs.PathModel("im2col:transposed", 2.958e-11),
    costs.PathModel("im2col:grad_tiles", 1.966e-11, work=_grad_tiles_work),
    costs.PathModel("im2col:grad_small", 3.169e-11, work=_small_work),
    costs.PathModel("im2col:fill", 7.106e-11, "auxiliary"),
)


def _work(path, spec):
    """Units of work of one of this algorithm's paths on ``spec``."""
    return _WORK[path](spec)


_WORK = {m.path: m.work for m in PATHS if m.work is not None}


def im2col_forward(spec, x, weight, epilogue, out, plan=None, ctx=None):
    """Run the im2col algorithm on canonical 3-D arrays (see the registry).

    The column fills read the interior of the padded input as a shift of the
    input, so the spec must have no input dilation and no negative padding
    (the registry's ``run`` rewrites those first)."""
    if spec.has_input_dilation or any(lo < 0 or hi < 0 for lo, hi in spec.padding):
        raise ValueError("im2col_forward: the spec must have no input dilation and no "
                         "negative padding (use the algorithm's run)")
    if out.size == 0:
        return out
    ctx = current_context() if ctx is None else ctx
    n, groups = spec.batch, spec.groups
    cout_g = spec.out_channels_per_group
    threads = ctx.threads
    blas_gemm = blas.find_gemm()
    address, witness = blas_gemm.address(out.dtype), blas_gemm.int_witness
    bias = epilogue.bias                       # zero-length: no bias (Note [epilogue])
    finish = epilogue.kernel_args(out.dtype)   # the rest, applied per block (Note [epilogue])
    # (C_out, C_in/groups, k...) -> (groups, C_out/groups, K): a view
    w = weight.reshape(groups, cout_g, -1)
    if spec.is_pointwise:
        pixels = math.prod(spec.output_size3)
        # row blocks are GEMM shapes: sized by the pool (Note [GEMM shapes])
        row_blocks = min(cout_g, -(-ctx.pool_threads // (n * groups)))
        with blas.single_threaded_blas():
            im2col_cpu.pointwise_conv(address, witness, w,
                                      x.reshape(n, groups, spec.in_channels_per_group, pixels),
                                      bias, out.reshape(n, groups, cout_g, pixels), row_blocks,
                                      threads, finish)
        return out
    if plan is None:
        plan = plan_tiles(spec, out.dtype.itemsize, ctx.pool_threads, ctx.workspace_limit)
    map_d, map_h, map_w = padding_maps(spec)
    with blas.single_threaded_blas():
        im2col_cpu.im2col_conv(address, witness, x, map_d, map_h, map_w, w, bias, out,
                               spec.kernel_size3, spec.stride3, spec.dilation3,
                               spec.padding3[1][0], spec.padding3[2][0], plan.tile, plan.rows,
                               threads, row_blocks=plan.row_blocks, finish=finish)
    return out


#: Output pixels per GEMM of the channels-last pointwise path: a constant,
#: so that the GEMMs' shapes, and the bits, depend on the problem alone
#: (Note [GEMM shapes] in :mod:`numbaconv.kernels.blas`).
POINTWISE_ROWS = 256
#: Fewest jobs of the channels-last pointwise path before a block's output
#: channels are split too (layers with few output pixels).
POINTWISE_JOBS = 8


@dataclass(frozen=True)
class PointwisePlan:
    """How the channels-last pointwise path splits one call (a job: a block
    of ``block_rows`` pixels, one group, one of ``channel_blocks`` blocks of
    its output channels)."""

    block_rows: int
    channel_blocks: int = 1


def plan_pointwise_channels_last(spec):
    """Blocks of :data:`POINTWISE_ROWS` pixels (all images together), and
    output-channel blocks of at least :data:`MIN_BLOCK_ROWS` channels while
    there are fewer than :data:`POINTWISE_JOBS` jobs: a function of the
    problem only."""
    rows = spec.batch * math.prod(spec.output_size3)
    blocks = max(1, -(-rows // POINTWISE_ROWS))
    jobs = blocks * spec.groups
    channel_blocks = 1
    if jobs < POINTWISE_JOBS:
        channel_blocks = max(1, min(-(-POINTWISE_JOBS // jobs),
                                    spec.out_channels_per_group // MIN_BLOCK_ROWS))
    return PointwisePlan(block_rows=min(rows, POINTWISE_ROWS) or 1,
                         channel_blocks=channel_blocks)


def channels_last_weight(weight, groups):
    """``(C_out, C_in/groups, KD, KH, KW)`` -> ``(groups, C_out/groups, KD * KH
    * KW * C_in/groups)``: the column order of Note [channels-last columns]
    (a scratch copy of the weight, once per call)."""
    return contiguous(weight.transpose(0, 2, 3, 4, 1)).reshape(
        groups, weight.shape[0] // groups, -1)


def fill_units_channels_last(spec):
    """Units of ``"im2col:fill"`` of the channels-last column fill: every
    element of every tile once, in unit-stride runs of ``C_in/groups``
    values per tap, or ``KW * C_in`` per kernel row for one group without
    W-dilation (Note [channels-last columns]; Note [column fill cost])."""
    n, g = spec.batch, spec.groups
    taps = math.prod(spec.kernel_size)
    pixels = math.prod(spec.output_size)
    elements = n * g * spec.in_channels_per_group * taps * pixels
    merged = g == 1 and spec.dilation3[2] == 1
    runs = n * g * pixels * (taps // spec.kernel_size3[2] if merged else taps)
    return elements + costs.FILL_RUN * runs


def im2col_forward_channels_last(spec, x, weight, epilogue, out, plan=None, ctx=None):
    """Run the im2col algorithm on channels-last arrays: ``x`` ``(N, D, H, W,
    C)`` and ``out`` ``(N, OD, OH, OW, C_out)``, C-contiguous, read and
    written in place (Note [channels-last columns] in
    :mod:`numbaconv.kernels.im2col_channels_last`); ``weight`` canonical.

    ``plan``: a :class:`PointwisePlan` for a pointwise spec, else a
    :class:`TilePlan`.  The epilogue (bias, activation, residual laid out
    like ``out``) is applied by the kernels."""
    if spec.has_input_dilation or any(lo < 0 or hi < 0 for lo, hi in spec.padding):
        raise ValueError("im2col_forward_channels_last: the spec must have no input dilation "
                         "and no negative padding (use the algorithm's run)")
    if out.size == 0:
        return out
    ctx = current_context() if ctx is None else ctx
    blas_gemm = blas.find_gemm()
    address, witness = blas_gemm.address(out.dtype), blas_gemm.int_witness
    code, slope, residual = epilogue.kernel_args(out.dtype)
    groups = spec.groups
    if spec.is_pointwise:
        plan = plan_pointwise_channels_last(spec) if plan is None else plan
        w = weight.reshape(groups, spec.out_channels_per_group, spec.in_channels_per_group)
        with blas.single_threaded_blas():
            im2col_channels_last.pointwise_channels_last(
                address, witness, x.reshape(-1, spec.in_channels), w, epilogue.bias,
                out.reshape(-1, spec.out_channels), plan.block_rows, plan.channel_blocks, code,
                slope, residual, ctx.threads)
        return out
    if plan is None:
        plan = plan_tiles(spec, out.dtype.itemsize, ctx.pool_threads, ctx.workspace_limit)
    map_d, map_h, map_w = padding_maps(spec)
    with blas.single_threaded_blas():
        im2col_channels_last.im2col_channels_last(
            address, witness, x, map_d, map_h, map_w, channels_last_weight(weight, groups),
            epilogue.bias, out, spec.kernel_size3, spec.stride3, spec.dilation3,
            spec.padding3[2][0], plan.tile, plan.rows, plan.row_blocks, code, slope, residual,
            ctx.threads)
    return out


def fill_every_tile(spec, x, tile):
    """Fill the column tiles of ``tile`` pixels of every (image, group) of
    ``spec`` once, on this thread, into one buffer: the work ``numbaconv
    calibrate`` times for the ``"im2col:fill"`` constant (Note [column fill
    cost]).  ``x`` is the canonical input."""
    map_d, map_h, map_w = padding_maps(spec)
    cin_g = spec.in_channels_per_group
    K = cin_g * math.prod(spec.kernel_size3)
    (KD, KH, KW), (sd, sh, sw), (dd, dh, dw) = spec.kernel_size3, spec.stride3, spec.dilation3
    OD, OH, OW = spec.output_size3
    pixels = OD * OH * OW
    same_width = same_width_fill(spec) and tile % OW == 0
    pad_h, pad_w = spec.padding3[1][0], spec.padding3[2][0]
    columns = np.empty(K * tile, dtype=x.dtype)
    for n in range(spec.batch):
        for g in range(spec.groups):
            for first in range(0, pixels, tile):
                count = min(tile, pixels - first)
                if same_width and count % OW == 0:
                    im2col_cpu.fill_columns_same_width(
                        x, map_h, map_w, n, g * cin_g, 0, K, KH, KW, dh, dw, pad_h, pad_w,
                        first // OW, count // OW, columns)
                else:
                    im2col_cpu.fill_columns(
                        x, map_d, map_h, map_w, n, g * cin_g, 0, K, KD, KH, KW, sd, sh, sw,
                        dd, dh, dw, pad_w, OH, OW, first, count, columns)


# ---------------------------------------------------------------------------
# transposed problems: the transposed GEMM (Note [transposed GEMM] in
# kernels/im2col_transposed.py)
# ---------------------------------------------------------------------------

#: The public computations whose specs are transposed convolutions.
TRANSPOSED_ORIGINS = ("transposed", "grad_input")
#: Jobs a transposed GEMM aims for: (image,) group, channel-block and band
#: triples, blocks and bands added only while there are fewer than this.
TRANSPOSED_JOBS = 8
#: Target size of one job's GEMM result (the products before they are
#: added into the output).
TRANSPOSED_TILE_BYTES = 2**20
#: Largest output region of one job, where bands are possible (so that the
#: fused epilogue finds it in the core's cache).
BAND_BYTES = 2**19
#: A channels-first problem is planned in the rows form too when its weight
#: is this many times its input or more: the rows' products are added into
#: the output planes a channel apart, a cache line each, which cost more
#: than the model's scatter once the output outgrows the cache (pix2pix's
#: up3 at batch 8, weight 1/4 of the input: 640 ms of CPU against the
#: planes' 216; up5, 16 times: 118 against 162; docs/results-transposed.md).
ROWS_WEIGHT_RATIO = 4
#: Most (output channel, tap) rows of one planes GEMM.
MAX_PLANES_ROWS = 1024


@dataclass(frozen=True)
class TransposedPlan:
    """How the transposed GEMM splits one call (:func:`plan_transposed`)."""

    form: str           # "planes" or "rows" (Note [transposed GEMM])
    geometry: tuple     # im2col_transposed.band_geometry
    cblocks: int        # output-channel blocks per group
    bands: int          # bands of the units (per image for planes, of all images for rows)
    tile: int           # input pixels (planes) or rows (rows) per GEMM
    pack: bool = False  # rows: from a channels-last copy of a channels-first input
    by_tap: bool = False  # rows: the weight reordered, Note [taps by channel block]

    def result_bytes(self, spec, itemsize):
        """One job's GEMM result buffer."""
        width = -(-spec.out_channels_per_group // self.cblocks) * math.prod(spec.kernel_size)
        return width * self.tile * itemsize


def transposed_sizes(spec):
    """``(input, output, kernel, stride, dilation, padding)`` of ``spec`` as the
    transposed convolution it is (3-tuples): the stride is the input
    dilation, the padding before ``dilation * (kernel - 1)`` minus the
    spec's."""
    padding = tuple(d * (k - 1) - lo for k, d, (lo, _) in
                    zip(spec.kernel_size3, spec.dilation3, spec.padding3))
    return (spec.input_size3, spec.output_size3, spec.kernel_size3, spec.input_dilation3,
            spec.dilation3, padding)


def transposed_forms(spec):
    """The forms of the transposed GEMM worth planning for ``spec``, with
    whether each runs on the other layout's copies.

    A one-pixel input: the rows, its images the GEMM's rows in either
    layout (BLAS ran the planes' one-column GEMMs with A transposed 10x
    slower).  Channels-last: the rows, in place (the planes on
    channels-first copies measured 21-40 ms of CPU against the rows' 15-32
    on the up4x4 shape and pix2pix's up2: docs/results-transposed.md).
    Channels-first: the planes; the rows too when the weight is
    :data:`ROWS_WEIGHT_RATIO` times the input or more (small maps: one GEMM
    reads the weight for every image), from a channels-last copy of the
    input."""
    pixels = math.prod(spec.input_size)
    if pixels == 1 or spec.channels_last:
        return (("rows", False),)
    forms = [("planes", False)]
    weight = spec.in_channels * spec.out_channels_per_group * math.prod(spec.kernel_size)
    if weight >= ROWS_WEIGHT_RATIO * spec.batch * spec.in_channels * pixels:
        forms.append(("rows", True))
    return tuple(forms)


def plan_transposed(spec, form, itemsize, limit=None, pool=None, pack=False):
    """A :class:`TransposedPlan` of ``form`` for ``spec``.

    Jobs: (image,) group, channel block and band; at least
    :data:`TRANSPOSED_JOBS` when there is enough to split.  A band re-reads
    its channel block's weight, a channel block re-reads the input, so the
    split goes to bands (when the band axis allows them) if the weight of a
    group is no larger than what its jobs read of the input, else to
    channel blocks; bands are also made smaller than :data:`BAND_BYTES` of
    output.  A GEMM's result is about :data:`TRANSPOSED_TILE_BYTES` (whole
    input rows for the planes), every thread's under the workspace limit.
    Depends on the sizes and the pool only (Note [GEMM shapes]).
    """
    if limit is None:
        limit = config.get_workspace_limit()
    pool = numba.config.NUMBA_NUM_THREADS if pool is None else pool
    geometry = im2col_transposed.band_geometry(*transposed_sizes(spec))
    units, slab, halo = geometry[1], geometry[2], geometry[7]
    n, groups = spec.batch, spec.groups
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    taps = math.prod(spec.kernel_size)
    pixels = math.prod(spec.input_size)
    images = n if form == "rows" else 1        # the images one (group) job spans
    base = groups * (1 if form == "rows" else n)
    pieces = units * images
    # a band recomputes the halo slices before it: at most one slice in four
    most = pieces if halo == 0 else max(1, pieces // (4 * halo))
    want = -(-TRANSPOSED_JOBS // max(1, base))
    weight = cin_g * cout_g * taps
    if most > 1 and weight <= images * cin_g * pixels:
        region = images * cout_g * math.prod(spec.output_size) * itemsize
        bands = min(most, max(want, -(-region // BAND_BYTES)))
        cblocks = min(cout_g, -(-want // bands))
    else:
        bands, cblocks = 1, min(cout_g, want)
    per_thread = max(1, limit // (pool * itemsize))          # elements
    cblocks = max(cblocks, min(cout_g, -(-cout_g * taps // per_thread)))
    if form == "planes":      # the GEMM's rows: a result of whole-row tiles near the cache
        cblocks = max(cblocks, min(cout_g, -(-cout_g * taps // MAX_PLANES_ROWS)))
    width = -(-cout_g // cblocks) * taps
    band_pixels = -(-pieces // bands) * slab
    row = spec.input_size3[2]
    tile = TRANSPOSED_TILE_BYTES // (width * itemsize)
    if form == "planes":
        tile = max(tile, MIN_TILE_PIXELS, row)
    tile = max(1, min(tile, per_thread // width, band_pixels))
    if form == "planes" and tile > row:
        tile -= tile % row            # whole input rows
    # Note [taps by channel block]: worth a copy of the weight once the
    # rows outnumber half its input channels
    by_tap = form == "rows" and spec.channels_last and 2 * n * pixels >= cin_g
    return TransposedPlan(form, geometry, cblocks, bands, tile, pack, by_tap)


#: Work units of one product added into the output, of one element of a
#: layout copy or of the weight's copy by tap, and of one output value
#: filled with the bias (Note [transposed GEMM cost]).  A copy costs what
#: Note [packing] charges (``PACK_SECONDS_PER_BYTE``, 34 units a float32 at
#: the shipped constant): the channels-last planes on channels-first copies
#: measured 21 ms of CPU against the rows' 15 on the up4x4 shape, which
#: 4 units an element had called 1% apart.
SCATTER_UNITS = 2.0
COPY_UNITS = 32.0
FILL_UNITS = 1.0
#: Work units of one weight value read from memory by a GEMM of one row
#: (a matrix-vector product).
WEIGHT_READ_UNITS = 8.0


def transposed_work(spec, plan, threads):
    """Units of ``"im2col:transposed"`` of ``plan`` (a :class:`TransposedPlan`)
    on a pool of ``threads`` threads (the pool's, not the call's: the form
    chosen, and so the bits, must not depend on the call's threads).

    Note [transposed GEMM cost]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~~
    The GEMMs' multiply-adds (every tap of every input pixel, also those
    that fall outside the output) weighted by their shape
    (:func:`numbaconv.costs.gemm_work`), the weight read once per GEMM
    along the pixels (``WEIGHT_READ_UNITS`` an element: a matrix-vector
    product reads each weight value for one multiply-add), the products
    added into the output, the bias fill where values receive several
    products, the layout copies of a packed form, and the share of the
    busiest thread when the jobs do not divide evenly over the pool's
    threads.
    """
    n, groups = spec.batch, spec.groups
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    taps = math.prod(spec.kernel_size)
    pixels = math.prod(spec.input_size)
    outputs = n * spec.out_channels * math.prod(spec.output_size)
    macs = n * spec.out_channels * cin_g * taps * pixels    # every tap of every input pixel
    width = -(-cout_g // plan.cblocks) * taps
    _, units, slab, _, _, _, _, halo, overwrite = plan.geometry
    images = n if plan.form == "rows" else 1
    band_units = -(-units * images // plan.bands)
    # the halo slices again, unless the bands are whole images
    computed = band_units + (halo if band_units % units else 0)
    rows_per_job = computed * slab
    tile = min(plan.tile, rows_per_job)
    gemms_per_job = -(-rows_per_job // plan.tile)
    jobs = groups * plan.cblocks * plan.bands * (1 if plan.form == "rows" else n)
    work = costs.gemm_work(macs * computed / band_units, cin_g, width, tile)
    work += WEIGHT_READ_UNITS * cin_g * width * gemms_per_job * jobs
    work += SCATTER_UNITS * n * spec.out_channels * taps * pixels * computed / band_units
    if not overwrite:
        work += FILL_UNITS * outputs
    if plan.by_tap:
        work += COPY_UNITS * groups * cin_g * cout_g * taps
    if plan.pack:                               # the channels-last copy of the input
        work += COPY_UNITS * n * spec.in_channels * pixels
    # the busiest thread's share, when the jobs do not divide evenly
    return work * -(-jobs // threads) * threads / jobs if jobs else work


def im2col_transposed_gemm(spec, x, weight, epilogue, out, plan=None, ctx=None):
    """A transposed problem (``spec.origin`` "transposed" or "grad_input") by
    the transposed GEMM (Note [transposed GEMM] in
    :mod:`numbaconv.kernels.im2col_transposed`) on the arrays of ``spec``'s
    format; ``weight`` as given or rewritten
    (:func:`numbaconv.rewrites.given_weight`)."""
    if out.size == 0:
        return out
    ctx = current_context() if ctx is None else ctx
    itemsize = out.dtype.itemsize
    if plan is None:
        plan = min((plan_transposed(spec, form, itemsize, ctx.workspace_limit,
                                    ctx.pool_threads, pack)
                    for form, pack in transposed_forms(spec)),
                   key=lambda p: transposed_work(spec, p, ctx.pool_threads))
    w = rewrites.given_weight(weight, spec.groups)
    _, _, kernel, stride, dilation, padding = transposed_sizes(spec)
    blas_gemm = blas.find_gemm()
    address, witness = blas_gemm.address(out.dtype), blas_gemm.int_witness
    finish = epilogue.kernel_args(out.dtype)
    if plan.form == "planes":
        assert not spec.channels_last
        with blas.single_threaded_blas():
            im2col_transposed.transposed_planes(
                address, witness, x, w, epilogue.bias, out, kernel, stride, dilation, padding,
                plan.geometry, plan.cblocks, plan.bands, plan.tile, ctx.threads, finish)
        return out
    if spec.channels_last or math.prod(spec.input_size) == 1:
        rows = x.reshape(-1, spec.in_channels)
    else:                                       # a channels-last copy of the input
        N, C, D, H, W = x.shape
        rows = scratch((N, D, H, W, C), x.dtype)
        layout.to_channels_last(x, rows, ctx.threads)
        rows = rows.reshape(-1, C)
    if plan.by_tap:
        w = im2col_transposed.weight_by_tap(w, plan.cblocks)
    with blas.single_threaded_blas():
        im2col_transposed.transposed_rows(
            address, witness, rows, w, epilogue.bias, out, spec.channels_last,
            spec.input_size3, kernel, stride, dilation, padding, plan.geometry, plan.cblocks,
            plan.bands, plan.tile, ctx.threads, finish, plan.by_tap)
    return out


@dataclass(frozen=True)
class OnePixelPlan:
    """A transposed pointwise problem of one one-pixel image (a
    squeeze-excitation layer's input gradient) as a vector-matrix product
    (:func:`numbaconv.kernels.im2col_transposed.one_pixel_pointwise`):
    ``column_blocks`` blocks of each group's output channels, sized by the
    pool (the bits do not depend on the call's threads)."""

    column_blocks: int


def one_pixel_pointwise_serves(spec):
    """Whether a transposed ``spec`` takes :class:`OnePixelPlan`: pointwise,
    no input dilation, one image of one pixel (at larger batches the rows
    form's GEMM reads the weight once for every image)."""
    return (spec.is_pointwise and not spec.has_input_dilation and spec.batch == 1
            and math.prod(spec.input_size) == 1)


def im2col_one_pixel_transposed(spec, x, weight, epilogue, out, plan, ctx):
    """Run :class:`OnePixelPlan` (``weight`` as given or rewritten)."""
    groups = spec.groups
    w = rewrites.given_weight(weight, groups)        # (C_in, C_out/groups, 1, 1, 1)
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    im2col_transposed.one_pixel_pointwise(
        x.reshape(spec.batch, groups, cin_g), w.reshape(groups, cin_g, cout_g), epilogue.bias,
        out.reshape(spec.batch, groups, cout_g), plan.column_blocks, ctx.threads,
        epilogue.kernel_args(out.dtype))
    return out


@dataclass(frozen=True)
class ForwardOfTransposed:
    """A stride-1 transposed problem's plan that is its forward problem's
    (``detail``: that plan's)."""

    detail: object


#: Column buffer of one weight-gradient job: resnet3x3's gradient was
#: fastest with 576 x 224-896 buffers and 13% slower at 576 x 3136
#: (docs/results-im2col.md, "Weight-gradient tiles").
GRAD_WEIGHT_TILE_BYTES = 2**20
#: Most column rows per weight-gradient block (the GEMM's M): BLAS runs
#: about 10% slower per thread with 288 rows than with 576-1152
#: (docs/results-im2col.md, "Weight-gradient tiles").
MAX_GRAD_WEIGHT_ROWS = 1152

#: A weight gradient whose reduction (batch x output pixels) is shorter
#: than this many times its column rows K splits its rows over the pool,
#: not its reduction (Note [short reductions]).
SHORT_REDUCTION_ROWS = 4

# Note [short reductions]
# ~~~~~~~~~~~~~~~~~~~~~~~
# With fewer (group, row block) jobs than pool threads, plan_grad_weight cut
# the reduction into segments: each thread summed part of the images and
# pixels into a gradient of its own, and the segments were added at the
# end.  That costs two extra passes over a K x C_out gradient per segment,
# while row blocks cost re-reading the output gradient (C_out x reduction)
# once per extra block: for two threads, row blocks move less memory when
# the reduction is shorter than 4 K.  That is a late layer at batch 1:
# ResNet-50's 1x1 1024 -> 2048 at 7x7 reduces over 49 pixels into a
# 1024 x 2048 gradient, and its segments made the weight gradient several
# times its model's estimate (docs/results-networks.md).


@dataclass(frozen=True)
class GradWeightPlan:
    """How the weight gradient splits (see :func:`plan_grad_weight`)."""

    rows: int           # column rows (weight-gradient columns) per block
    tile: int           # output pixels per column buffer
    segments: int = 1   # parts of the reduction over (image, tile), summed in order


def plan_grad_weight(spec, itemsize, limit=None, pool=None):
    """Row blocks, pixel tiles and reduction segments of the weight gradient.

    Rows are blocked only past :data:`MAX_GRAD_WEIGHT_ROWS`; while there are
    fewer (group, block) jobs than threads in numba's pool
    (``numba.config.NUMBA_NUM_THREADS``, not the current
    ``numba.set_num_threads``), the reduction is cut into segments.  Tiles
    are about :data:`GRAD_WEIGHT_TILE_BYTES` (whole output rows); every
    thread's column buffer and every segment's gradient together stay under
    the workspace limit.  None of this depends on the current thread count,
    so results are bit-identical for any ``set_num_threads``.
    """
    if limit is None:
        limit = config.get_workspace_limit()
    pool = numba.config.NUMBA_NUM_THREADS if pool is None else pool
    K = spec.in_channels_per_group * math.prod(spec.kernel_size3)
    blocks = -(-K // MAX_GRAD_WEIGHT_ROWS)
    pixels = math.prod(spec.output_size3)
    if spec.groups * blocks < pool and spec.batch * pixels < SHORT_REDUCTION_ROWS * K:
        # Note [short reductions]: the pool's threads take row blocks
        blocks = min(K, -(-pool // spec.groups))
    rows = -(-K // blocks)
    row = spec.output_size3[2]
    gradient_bytes = K * spec.out_channels * itemsize
    segments = max(1, min(-(-pool // (spec.groups * blocks)), spec.batch * -(-pixels // row),
                          (limit // 2) // max(1, gradient_bytes)))
    per_thread = (limit - segments * gradient_bytes) // (pool * itemsize)
    rows = min(rows, max(1, per_thread // MIN_TILE_PIXELS))
    tile = max(MIN_TILE_PIXELS, row if same_width_fill(spec) else 0,
               GRAD_WEIGHT_TILE_BYTES // (rows * itemsize))
    tile = max(1, min(tile, per_thread // rows, pixels))
    if tile > row:
        tile -= tile % row          # whole output rows
    return GradWeightPlan(rows=rows, tile=tile, segments=segments)


def im2col_grad_weight(spec, x, grad_output, out, plan=None, ctx=None):
    """The weight gradient by column tiles (Note [weight-gradient tiles] in
    :mod:`numbaconv.kernels.im2col_cpu`) on canonical arrays."""
    if spec.batch == 0:
        out[...] = 0
        return out
    ctx = current_context() if ctx is None else ctx
    if plan is None:
        plan = plan_grad_weight(spec, out.dtype.itemsize, ctx.workspace_limit, ctx.pool_threads)
    blas_gemm = blas.find_gemm()
    map_d, map_h, map_w = padding_maps(spec)
    N, Co = grad_output.shape[:2]
    with blas.single_threaded_blas():
        im2col_cpu.im2col_grad_weight(
            blas_gemm.address(out.dtype), blas_gemm.int_witness, x, map_d, map_h, map_w,
            grad_output.reshape(N, Co, -1), out.reshape(Co, -1), spec.groups, spec.kernel_size3,
            spec.stride3, spec.dilation3, spec.padding3[1][0], spec.padding3[2][0],
            spec.output_size3, plan.tile, plan.rows, plan.segments, ctx.threads)
    return out


@dataclass(frozen=True)
class PointwiseGradPlan:
    """The weight gradient of a pointwise layer as GEMMs on the arrays
    (Note [pointwise weight gradient] in
    :mod:`numbaconv.kernels.im2col_cpu`): ``row_blocks`` blocks of each
    group's output channels."""

    row_blocks: int


#: Pixels per image up to which a pointwise weight gradient of several
#: images takes Note [pointwise weight gradient]'s GEMMs: each image's GEMM
#: re-reads the gradient block, which a short reduction does not hide.  At
#: batch 8 the GEMMs took 0.65-1.02 of the tiles' time up to 196 pixels
#: (14x14) and 0.97-1.35 from 784 (docs/results-im2col.md, "Pointwise weight
#: gradients").
POINTWISE_GRAD_MAX_PIXELS = 196
#: Weight elements per group up to which several images of at most
#: SHORT_POINTWISE_PIXELS pixels take the numba loop (squeeze-excitation
#: layers): at batch 8, 0.30-0.87 of the tiles' time up to 58 K elements,
#: 0.97-1.69 from 113 K.
POINTWISE_GRAD_SHORT_WEIGHT = 2**16


def pointwise_grad_weight_serves(spec):
    """Whether ``spec`` (a weight gradient) takes Note [pointwise weight
    gradient]'s path: a contiguous pointwise layer of one image, or of
    several with short reductions (:data:`POINTWISE_GRAD_MAX_PIXELS`,
    :data:`POINTWISE_GRAD_SHORT_WEIGHT`)."""
    if (not spec.is_pointwise or spec.has_input_dilation or spec.channels_last
            or spec.batch < 1):
        return False
    if spec.batch == 1:
        return True
    pixels = math.prod(spec.output_size)
    if pixels <= im2col_cpu.SHORT_POINTWISE_PIXELS:
        return (spec.in_channels_per_group * spec.out_channels_per_group
                <= POINTWISE_GRAD_SHORT_WEIGHT)
    return pixels <= POINTWISE_GRAD_MAX_PIXELS


def pool_channel_blocks(spec, pool):
    """Blocks of each group's output channels that give every one of
    ``pool`` threads a job: a function of the problem and the pool's size,
    so the products' shapes (and the bits) do not depend on the call's
    threads (Note [GEMM shapes])."""
    return max(1, min(spec.out_channels_per_group, -(-pool // spec.groups)))


def plan_pointwise_grad_weight(spec, pool):
    """The :class:`PointwiseGradPlan` of ``spec`` for ``pool`` threads."""
    return PointwiseGradPlan(row_blocks=pool_channel_blocks(spec, pool))


def im2col_pointwise_grad_weight(spec, x, grad_output, out, plan=None, ctx=None):
    """The weight gradient of a pointwise ``spec`` (Note [pointwise weight
    gradient]) on canonical arrays."""
    ctx = current_context() if ctx is None else ctx
    if plan is None:
        plan = plan_pointwise_grad_weight(spec, ctx.pool_threads)
    groups, cin_g, cout_g = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    blas_gemm = blas.find_gemm()
    with blas.single_threaded_blas():
        im2col_cpu.pointwise_grad_weight(
            blas_gemm.address(out.dtype), blas_gemm.int_witness,
            x.reshape(spec.batch, groups, cin_g, -1),
            grad_output.reshape(spec.batch, groups, cout_g, -1),
            out.reshape(groups, cout_g, cin_g), plan.row_blocks, ctx.threads)
    return out


class Im2colAlgorithm(ConvAlgorithm):
    """im2col + GEMM; serves every valid forward spec on the CPU."""

    name = "im2col"
    paths = PATHS
    #: docs/semantics.md, "Accuracy"
    measured_error_eps = 4.8
    transforms_values = False
    fuses_epilogue = True
    #: channels-last forward problems run in place (Note [channels-last
    #: columns]); transposed ones and weight gradients on canonical copies
    formats = ("contiguous", "channels_last")

    def serves_natively(self, spec):
        # the channels-last columns gather C_in/groups values per tap: for
        # grouped layers and few input channels that is a strided trickle
        # (depthwise 144x56x56: 356 ms native against 3.7 ms packed), so
        # those are packed (docs/results-channels-last.md).  The native path
        # also copies the weight into the columns' tap order: where the
        # weight outweighs the input and output, packing those is cheaper
        # (docs/results-direct.md, "Heavy weights")
        if not spec.channels_last:
            return True
        return (spec.groups == 1 and spec.in_channels >= 16
                and (spec.is_pointwise or weight_bytes(spec) <= packed_bytes(spec)))

    def auxiliary_samples(self, spec, arrays, ctx, time):
        """The column fill alone, on one thread, for ``"im2col:fill"``."""
        if spec.is_pointwise:
            return []
        plan = self.plan(spec, ctx)
        seconds = time(lambda: fill_every_tile(spec, arrays[0], plan.detail.tile))
        return [("im2col:fill", spec, seconds, 1, plan.fill, 0.0, None)]

    def unsupported_reason(self, spec):
        if blas.find_gemm() is None:
            return ("no loaded BLAS library exports cblas_sgemm/cblas_dgemm "
                    "(numbaconv looks in the libraries threadpoolctl lists)")
        return None

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        if spec.memory_format == "channels_last":
            return im2col_forward_channels_last(spec, x, weight, epilogue, out, plan=detail,
                                                ctx=ctx)
        return im2col_forward(spec, x, weight, epilogue, out, plan=detail, ctx=ctx)

    def _plan_channels_last(self, spec, ctx):
        """The plan of a channels-last forward problem: the canonical paths'
        GEMM work (the same GEMMs, transposed) and the channels-last fill."""
        itemsize = spec.compute_dtype.itemsize
        if spec.is_pointwise:
            plan = plan_pointwise_channels_last(spec)
            return costed_plan(self.name, "im2col:pointwise", _work("im2col:pointwise", spec),
                               ctx, 0, "channels-last pointwise", detail=plan)
        tiles = plan_tiles(spec, itemsize, ctx.pool_threads, ctx.workspace_limit)
        path = (f"channels-last tiles of {tiles.tile} pixels"
                + (f", {tiles.row_blocks} channel blocks" if tiles.row_blocks > 1 else ""))
        fill = tiles.row_blocks * fill_units_channels_last(spec)
        return costed_plan(self.name, "im2col:tiles", _work("im2col:tiles", spec), ctx,
                           tiles.workspace_bytes(itemsize), path, detail=tiles, fill=fill,
                           fill_model="im2col:fill",
                           copies=spec.weight_shape[0] * math.prod(spec.weight_shape[1:])
                           * itemsize)

    def plan_forward(self, spec, ctx):
        if spec.memory_format == "channels_last":
            return self._plan_channels_last(spec, ctx)
        itemsize = spec.compute_dtype.itemsize
        tiles = None
        if spec.is_pointwise:
            model, path, workspace = "im2col:pointwise", "pointwise", 0
        else:
            tiles = plan_tiles(spec, itemsize, ctx.pool_threads, ctx.workspace_limit)
            small = spec.out_channels_per_group <= im2col_cpu.SMALL_GEMM_ROWS
            model = "im2col:small" if small else "im2col:tiles"
            path = (f"tiles of {tiles.tile} pixels" + (" (numba products)" if small else "")
                    + (f", {tiles.row_blocks} channel blocks" if tiles.row_blocks > 1 else ""))
            workspace = tiles.workspace_bytes(itemsize)
        # every row block fills its tile's columns
        fill = 0.0 if tiles is None else tiles.row_blocks * fill_units(
            spec, tiles.tile, same_width_fill(spec) and tiles.tile % spec.output_size3[2] == 0)
        return costed_plan(self.name, model, _work(model, spec), ctx, workspace, path,
                           detail=tiles, fill=fill, fill_model="im2col:fill")

    def takes_as_transposed(self, spec):
        # stride-1 transposed problems too: a one-pixel input's is one GEMM
        return spec.has_input_dilation or (spec.origin in TRANSPOSED_ORIGINS
                                           and spec.computation == "forward")

    def reads_transposed_weight(self, spec):
        return self.takes_as_transposed(spec)    # Note [transposed weight]

    def plan_input_dilated(self, spec, ctx):
        """The cheapest transposed GEMM (Note [transposed GEMM cost]), or for a
        stride-1 problem its forward plan where that is cheaper.  The choice
        is made for the pool's threads: which one runs decides the bits, so
        it must not depend on the call's threads (``tests/test_bits.py``).
        A pointwise problem of one one-pixel image is a vector-matrix
        product (:class:`OnePixelPlan`)."""
        if not spec.has_input_dilation and rewrites.cropped_spec(spec) is None:
            return Plan(self.name, "bias only", 0.0)
        if one_pixel_pointwise_serves(spec):
            blocks = pool_channel_blocks(spec, ctx.pool_threads)
            return costed_plan(self.name, "im2col:small", _small_work(spec), ctx, 0,
                               f"vector-matrix product, {blocks} channel block(s)",
                               detail=OnePixelPlan(blocks))
        candidates = [functools.partial(self._plan_transposed, spec, form, pack)
                      for form, pack in transposed_forms(spec)]
        if not spec.has_input_dilation:
            candidates.append(functools.partial(self._plan_forward_of_transposed, spec))
        pool = ctx if ctx.threads == ctx.pool_threads else replace(ctx, threads=ctx.pool_threads)
        best = min(candidates, key=lambda candidate: candidate(pool).seconds)
        return best(ctx)

    def _plan_transposed(self, spec, form, pack, ctx):
        itemsize = spec.compute_dtype.itemsize
        detail = plan_transposed(spec, form, itemsize, ctx.workspace_limit, ctx.pool_threads,
                                 pack)
        copies = (spec.batch * spec.in_channels * math.prod(spec.input_size) * itemsize
                  if pack else 0)
        path = (f"transposed {form}" + (" of a channels-last copy" if pack else "")
                + (f", {detail.bands} bands" if detail.bands > 1 else "")
                + (f", {detail.cblocks} channel blocks" if detail.cblocks > 1 else ""))
        return costed_plan(self.name, "im2col:transposed",
                           transposed_work(spec, detail, ctx.pool_threads), ctx,
                           ctx.threads * detail.result_bytes(spec, itemsize), path,
                           detail=detail, copies=copies)

    def _plan_forward_of_transposed(self, spec, ctx):
        # a stride-1 problem's forward kernels, on the rewritten weight (Note
        # [transposed weight]): its copy is costed
        forward = self.plan_forward(rewrites.cropped_spec(spec), ctx)
        copied = weight_bytes(spec)
        return replace(forward, detail=ForwardOfTransposed(forward.detail),
                       seconds=forward.seconds + PACK_SECONDS_PER_BYTE * copied,
                       copies=forward.copies + copied)

    def plan_grad_weight(self, spec, ctx):
        if pointwise_grad_weight_serves(spec):
            plan = plan_pointwise_grad_weight(spec, ctx.pool_threads)
            pixels = math.prod(spec.output_size)
            if pixels <= im2col_cpu.SHORT_POINTWISE_PIXELS:
                model, units = "im2col:grad_small", _small_work(spec)
            else:
                model = "im2col:pointwise"
                units = (costs.gemm_work(spec.flops / 2, spec.out_channels_per_group,
                                         spec.in_channels_per_group, pixels)
                         + costs.GEMM_CALL * spec.batch * spec.groups * plan.row_blocks)
            return costed_plan(self.name, model, units, ctx, 0,
                               f"pointwise weight gradient, {plan.row_blocks} row block(s)",
                               detail=plan)
        itemsize = spec.compute_dtype.itemsize
        plan = plan_grad_weight(spec, itemsize, ctx.workspace_limit, ctx.pool_threads)
        small = spec.out_channels_per_group <= im2col_cpu.SMALL_GEMM_ROWS
        model = "im2col:grad_small" if small else "im2col:grad_tiles"
        K = spec.in_channels_per_group * math.prod(spec.kernel_size)
        workspace = (ctx.threads * plan.rows * plan.tile
                     + plan.segments * K * spec.out_channels) * itemsize
        fill = fill_units(spec, plan.tile,
                                same_width_fill(spec) and plan.tile % spec.output_size3[2] == 0)
        units = _work(model, spec)
        if small:           # Note [short dot products]
            tiles = -(-math.prod(spec.output_size) // plan.tile)
            units += DOT_UNITS * spec.batch * tiles * spec.out_channels * K
        return costed_plan(self.name, model, units, ctx, workspace,
                           f"weight-gradient tiles of {plan.tile} pixels, "
                           f"{plan.segments} segment(s)", detail=plan, fill=fill,
                           fill_model="im2col:fill", copies=_canonical_copies(spec))

    def run_grad_weight(self, spec, x, grad_output, out, ctx, detail=None):
        if isinstance(detail, PointwiseGradPlan) or (detail is None
                                                     and pointwise_grad_weight_serves(spec)):
            return im2col_pointwise_grad_weight(spec, x, grad_output, out, plan=detail, ctx=ctx)
        if spec.memory_format == "channels_last":
            # the column tiles of Note [weight-gradient tiles] on canonical copies
            x, grad_output = (channels_first_copy(a, ctx.threads) for a in (x, grad_output))
        return im2col_grad_weight(spec, x, grad_output, out, plan=detail, ctx=ctx)

    def run_input_dilated(self, spec, x, weight, epilogue, out, ctx, detail=None):
        if out.size == 0:
            return out
        if detail is None:
            detail = self.plan_input_dilated(spec, ctx).detail
            if detail is None:                                  # bias only
                return rewrites.fill_epilogue(spec, epilogue, out)
        if isinstance(detail, OnePixelPlan):
            return im2col_one_pixel_transposed(spec, x, weight, epilogue, out, detail, ctx)
        if isinstance(detail, ForwardOfTransposed):
            spec, x = rewrites.crop_negative_padding(spec, x)
            return self.forward(spec, x, rewrites.rewritten_weight(weight), epilogue, out, ctx,
                                detail.detail)
        return im2col_transposed_gemm(spec, x, weight, epilogue, out, plan=detail, ctx=ctx)


def _canonical_copies(spec):
    """Bytes of the canonical copies a channels-last weight gradient takes
    (its input and output gradient); none for a contiguous spec."""
    if spec.memory_format != "channels_last":
        return 0
    return spec.batch * (spec.in_channels * math.prod(spec.input_size)
                         + spec.out_channels * math.prod(spec.output_size)) \
        * spec.compute_dtype.itemsize


IM2COL = register(Im2colAlgorithm())
