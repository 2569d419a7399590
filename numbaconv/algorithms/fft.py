"""The ``fft`` algorithm: cross-correlation by real FFTs (``scipy.fft``).

Serves every valid forward spec.  In the canonical 3-D form, along each
spatial axis the padded input has ``P`` positions and the (dilated) kernel
spans ``ke = dilation * (k - 1) + 1``; the stride-1 correlation has
``P - ke + 1`` positions, of which the output keeps every ``stride``-th
(compute, then subsample).

Note [fft tiles]
~~~~~~~~~~~~~~~~
The stride-1 output is cut into tiles of ``T`` positions per axis
(overlap-save): a tile needs the padded-input block of ``L = T + ke - 1``
positions from its origin, and the circular correlation of that block with
the kernel, both transformed at length ``L``, is exact on the tile's ``T``
positions.  One tile can cover the whole output (``L`` about the input
size), or many tiles a large input with a small kernel (``L`` a few times
the kernel), which bounds memory and keeps the transforms in cache.
:func:`plan_fft` picks ``L`` per axis among SciPy's fast lengths with a
cost model (transforms of every input block, output block and weight, and
the channel contraction), under the workspace limit.

Per call: the weight is dilated, transformed once and conjugated; then each
step, a batch of (tile, image) blocks, runs on one of the algorithm's worker
threads (Note [fft threads]): gather (numba), ``rfftn`` (SciPy, one
thread), the channel contraction per frequency (numba,
:func:`numbaconv.kernels.fft_cpu.contract_channels`), ``irfftn``, and the
strided crop plus bias into ``out`` (numba).  float32 stays complex64,
float64 complex128.  Transposed problems run as phases and weight gradients
as the grouped forward rewrite (:mod:`numbaconv.rewrites`).
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from .. import config
from ..context import current_context
from ..kernels import fft_cpu
from ..padding import padding_maps
from ..workspaces import all_finite, scratch
from .direct import direct_forward
from .. import costs
from .registry import ConvAlgorithm, composite_paths, costed_plan, register

#: the cost model charges a transform of ``P`` points ``P * (FFT_POINT_COST +
#: log2 P)``: the strided passes of SciPy's multi-dimensional real FFTs cost
#: about the same per point at every length from 64 to 1024, so the number of
#: points (overlap included) matters more than ``log2 P`` (bigk2d: 12.5 ms
#: in the blocks ``P log2 P`` chose, 8.9 ms in whole rows;
#: docs/results-fft.md, "Speed").
FFT_POINT_COST = 16.0
#: relative cost of one complex multiply-add of the contraction against one
#: unit of FFT work (per transform point)
CONTRACTION_WEIGHT = 1.5
#: cost of copying one point in the gather and scatter kernels, same units
COPY_WEIGHT = 1.0
#: cost of reading one complex weight-spectrum value from memory, paid once
#: per step (each step's contraction streams the whole spectrum), same
#: units.  Without it, a 3-D layer whose spectrum nearly fills the workspace
#: limit (192 -> 64 channels, 3x3x3 on 64^3: 50 MB, steps of 3 blocks) was
#: estimated at 0.91x winograd's time and took 2.1x (docs/results-fft.md,
#: "Streaming the weight spectrum").
STREAM_WEIGHT = 8.0


@dataclass(frozen=True)
class FFTPlan:
    """FFT lengths and batching of one call (see :func:`plan_fft`)."""

    lengths: tuple        # L per canonical axis (1 on unused axes)
    tiles: tuple          # tiles per canonical axis
    images_per_step: int
    tiles_per_step: int
    cost: float = 0.0     # the cost model's estimate (arbitrary units)
    workspace: int = 0    # bytes: weight spectrum plus one step's blocks


def _candidate_lengths(ke, needed):
    """Fast FFT lengths worth trying on one axis: from twice the kernel span up
    to the whole axis (``needed + ke - 1``) in steps of about 25%."""
    import scipy.fft   # here, not at import: scipy.fft takes 0.25 s to import
    whole = scipy.fft.next_fast_len(needed + ke - 1, real=True)
    found = {whole}
    length = max(2 * ke, 8)
    while length < whole:
        found.add(scipy.fft.next_fast_len(length, real=True))
        length = int(length * 1.25) + 1
    return sorted(v for v in found if ke <= v <= whole)


@functools.lru_cache(maxsize=256)
def _plan(ndim, batch, cin, cout, groups, needed, kernel_span, itemsize, limit, threads):
    """Cached planner; ``needed`` and ``kernel_span`` are per canonical axis."""
    cin_g = cin // groups
    axes = range(3 - ndim, 3)
    per_axis = []
    for a in range(3):
        if a in axes:
            per_axis.append(_candidate_lengths(kernel_span[a], needed[a]))
        else:
            per_axis.append([1])
    complex_size = 2 * itemsize
    plans = []                                   # (over the limit?, cost, plan)
    for LD in per_axis[0]:
        for LH in per_axis[1]:
            for LW in per_axis[2]:
                lengths = (LD, LH, LW)
                tiles = tuple(-(-needed[a] // (lengths[a] - kernel_span[a] + 1))
                              for a in range(3))
                points = LD * LH * LW
                half = points // LW * (LW // 2 + 1)
                ntiles = math.prod(tiles)
                fft = points * (FFT_POINT_COST + math.log2(max(points, 2)))
                cost = (batch * ntiles * (cin + cout) * fft + cout * cin_g * fft
                        + CONTRACTION_WEIGHT * batch * ntiles * cout * cin_g * half
                        + COPY_WEIGHT * batch * ntiles * (cin + cout) * points)
                weights = cout * cin_g * half * complex_size
                per_block = (cin + cout) * (points * itemsize + half * complex_size)
                # blocks run on `parallel` threads at once (Note [fft threads])
                total = batch * ntiles
                parallel = min(threads, total)
                blocks = max(1, (limit - weights) // (parallel * per_block))
                blocks = min(blocks, -(-total // parallel))
                # the busiest thread does ceil(total / parallel) blocks
                cost = cost * (-(-total // parallel)) / (total / parallel)
                if blocks >= ntiles:
                    images, per_step = max(1, blocks // ntiles), ntiles
                else:
                    images, per_step = 1, blocks
                steps = -(-total // (images * per_step))
                cost += STREAM_WEIGHT * steps * cout * cin_g * half
                workspace = weights + parallel * images * per_step * per_block
                plans.append((workspace > limit, cost / parallel,
                              FFTPlan(lengths, tiles, images, per_step, cost / parallel,
                                      workspace)))
    return min(plans, key=lambda item: item[:2])[2]


def plan_fft(spec, itemsize, limit=None, threads=None):
    """FFT lengths per axis and how many (tile, image) blocks per step.

    Minimises the cost model of Note [fft tiles] over SciPy's fast lengths
    per axis (divided by the threads that can work at once), subject to the
    weight spectrum plus the blocks of one step per thread fitting
    ``limit`` bytes (the workspace limit).

    Note [fft lengths and threads]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    The lengths decide every output's rounding, so ``threads`` is the size
    of numba's pool (``ctx.pool_threads``; the default), never the threads
    of one call: planned for the call's threads, a 12-channel depthwise 5x5
    layer took other lengths on one thread than on two, and 86% of its
    outputs differed in the last bits.  The weight spectrum alone is
    ``C_out * C_in/groups`` transforms; if it does not fit under any length
    (many channels and a small limit), the cheapest plan is taken anyway,
    with one block per step, and ``plan.workspace`` says what it needs.
    """
    if limit is None:
        limit = config.get_workspace_limit()
    # stride-1 positions actually needed: up to the last strided output
    needed = tuple((o - 1) * s + 1 for o, s in zip(spec.output_size3, spec.stride3))
    return _plan(spec.ndim, spec.batch, spec.in_channels, spec.out_channels, spec.groups,
                 needed, spec.effective_kernel_size3, itemsize, limit,
                 threads or numba.config.NUMBA_NUM_THREADS)


def _padded_weight(weight, dilation, lengths):
    """(C_out, C_in/g, KD, KH, KW) -> ``(C_out, C_in/g) + lengths`` (scratch):
    the weight with ``dilation - 1`` zeros between taps, zero-extended to
    the FFT lengths (what ``rfftn(..., s=lengths)`` transforms)."""
    co, ci, kd, kh, kw = weight.shape
    dd, dh, dw = dilation
    out = scratch((co, ci) + tuple(lengths), weight.dtype, zero=True)
    out[:, :, :dd * (kd - 1) + 1:dd, :dh * (kh - 1) + 1:dh, :dw * (kw - 1) + 1:dw] = weight
    return out


def _pocketfft():
    """SciPy's pocketfft module, whose transforms take ``out=`` (Note [fft
    transforms into scratch]), or None."""
    try:
        from scipy.fft._pocketfft import pypocketfft
    except ImportError:             # pragma: no cover - another SciPy layout
        return None
    return pypocketfft


def _rfftn(a, axes, inorm, out, workers):
    """``scipy.fft.rfftn(a, axes=axes, workers=workers)`` (``inorm`` 0: no
    scaling, 2: ``norm="forward"``) written into ``out``.

    Note [fft transforms into scratch]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    ``scipy.fft.rfftn`` and ``irfftn`` return new arrays, so each step
    allocated its spectra afresh (Note [workspace arena] in
    :mod:`numbaconv.workspaces`).  They are thin wrappers over pocketfft's
    ``r2c`` and ``c2r``, which take an ``out=`` array: called with the
    wrappers' own arguments (shapes already at the FFT lengths, so the
    wrappers' zero-extension is a no-op) they compute the same bits into
    the arena's buffers.  pocketfft's inverse over several axes allocates a
    complex copy of its input, transforms the leading axes into it
    (``c2c``) and then the last one (``c2r``); the products' spectra are
    scratch, so here those two steps run on them in place, with the same
    arithmetic (the same bits, checked against ``irfftn`` for 1 to 3 axes,
    both dtypes, 1 and 2 threads).  Where SciPy has no such module the
    public functions run and their results are copied.
    """
    pocketfft = _pocketfft()
    if pocketfft is not None:
        return pocketfft.r2c(a, axes, True, inorm, out, workers)
    import scipy.fft
    out[...] = scipy.fft.rfftn(a, axes=axes, workers=workers,
                               norm="forward" if inorm == 2 else None)
    return out


def _irfftn_forward(a, axes, last, out, workers):
    """``scipy.fft.irfftn(a, s=..., axes=axes, workers=workers,
    norm="forward")`` (``last``: the last axis' length) written into
    ``out``; ``a`` is overwritten (Note [fft transforms into scratch])."""
    pocketfft = _pocketfft()
    if pocketfft is not None:
        if len(axes) > 1:   # pocketfft's own two steps, the first in place
            pocketfft.c2c(a, axes[:-1], False, 0, a, workers)
        return pocketfft.c2r(a, axes[-1:], last, False, 0, out, workers)
    import scipy.fft
    out[...] = scipy.fft.irfftn(a, s=out.shape[-len(axes):], axes=axes, workers=workers,
                                overwrite_x=True, norm="forward")
    return out


def _tile_table(spec, plan):
    """Per tile: first and stop output index, and block origin, per axis (int64 (T, 9))."""
    spans = spec.effective_kernel_size3
    per_axis = []
    for a in range(3):
        T = plan.lengths[a] - spans[a] + 1
        s = spec.stride3[a]
        rows = []
        for t in range(plan.tiles[a]):
            start = -(-(t * T) // s)
            stop = min(spec.output_size3[a], -(-((t + 1) * T) // s))
            if stop > start:
                rows.append((start, stop, t * T))
        per_axis.append(rows)
    table = [(d[0], h[0], w[0], d[1], h[1], w[1], d[2], h[2], w[2])
             for d in per_axis[0] for h in per_axis[1] for w in per_axis[2]]
    return np.array(table, dtype=np.int64).reshape(-1, 9)


_executor = None
_executor_workers = 0
_executor_lock = threading.Lock()


def _pool(threads):
    """The algorithm's worker threads (created once, grown when needed)."""
    global _executor, _executor_workers
    with _executor_lock:
        if _executor is None or _executor_workers < threads:
            _executor = ThreadPoolExecutor(max_workers=threads,
                                           thread_name_prefix="numbaconv-fft")
            _executor_workers = threads
        return _executor


def fft_forward(spec, x, weight, epilogue, out, plan=None, ctx=None):
    """Run the fft algorithm on canonical 3-D arrays (see the registry).

    Note [fft threads]
    ~~~~~~~~~~~~~~~~~~
    The work is cut into steps (a batch of tiles of a batch of images) that
    run whole -- gather, forward transform, contraction, inverse transform,
    scatter -- on one of ``numba.get_num_threads()`` Python worker threads,
    with single-threaded transforms and serial numba kernels (which release
    the GIL).  Numba's OpenMP pool is not used: its workers spin for
    milliseconds after every parallel kernel, and SciPy's transform threads
    running next to them were up to 50% slower (docs/results-fft.md,
    "Speed").
    Only a call with a single step transforms with SciPy's own workers.
    """
    if spec.has_input_dilation or any(lo < 0 or hi < 0 for lo, hi in spec.padding):
        # gather_blocks reads the interior as a shift of the input
        raise ValueError("fft_forward: the spec must have no input dilation and no "
                         "negative padding (use the algorithm's run)")
    if out.size == 0:
        return out
    ctx = current_context() if ctx is None else ctx
    dtype = out.dtype
    threads = ctx.threads
    if plan is None:
        plan = plan_fft(spec, dtype.itemsize, ctx.workspace_limit, ctx.pool_threads)
    ndim = spec.ndim
    axes = tuple(range(6 - ndim, 6))          # FFT axes of (tiles, images, C, LD, LH, LW)
    lengths = plan.lengths[3 - ndim:]
    wd = _padded_weight(weight, spec.dilation3, plan.lengths)
    # the inverse transform's 1/L scaling is folded into the weight spectrum
    # (norm="forward" on both), saving a pass over every output block
    cout, cin_g = wd.shape[:2]
    complex_dtype = np.result_type(dtype, np.complex64)
    half = plan.lengths[:2] + (plan.lengths[2] // 2 + 1,)     # a spectrum's shape
    wf = _rfftn(wd, tuple(range(5 - ndim, 5)), 2, scratch((cout, cin_g) + half, complex_dtype),
                threads)
    np.conj(wf, out=wf)
    wf = wf.reshape(cout, cin_g, -1)
    bias = epilogue.bias
    finish = epilogue.kernel_args(dtype)        # applied by scatter_tiles: Note [epilogue]
    table = _tile_table(spec, plan)
    maps = padding_maps(spec)
    n_images, C = x.shape[:2]
    steps = [(first_image, min(plan.images_per_step, n_images - first_image),
              table[first_tile:first_tile + plan.tiles_per_step])
             for first_image in range(0, n_images, plan.images_per_step)
             for first_tile in range(0, len(table), plan.tiles_per_step)]
    workers = threads if len(steps) == 1 else 1
    # scratch for each step running at once (blocks, their spectra, the
    # products' spectra, the products), taken here: the worker threads have
    # no frame of their own (Note [workspace arena] in numbaconv.workspaces)
    parallel = 1 if workers == threads else min(threads, len(steps))
    most = min(plan.tiles_per_step, len(table)) * min(plan.images_per_step, n_images)
    points, spectrum = math.prod(plan.lengths), math.prod(half)
    free = queue.SimpleQueue()
    for _ in range(parallel):
        free.put((scratch(most * C * points, dtype), scratch(most * C * spectrum, complex_dtype),
                  scratch(most * cout * spectrum, complex_dtype),
                  scratch(most * cout * points, dtype)))

    def run_step(step):
        first_image, nb, rows = step
        sets = free.get()
        try:
            blocks_, xf_, yf_, y_ = sets
            count = len(rows) * nb
            blocks = blocks_[:count * C * points].reshape((len(rows), nb, C) + plan.lengths)
            fft_cpu.gather_blocks(x, first_image, *maps, spec.padding3[2][0],
                                  np.ascontiguousarray(rows[:, 6:9]), blocks)
            xf = _rfftn(blocks, axes, 0, xf_[:count * C * spectrum].reshape(
                (len(rows), nb, C) + half), workers).reshape(count, C, -1)
            yf = yf_[:count * cout * spectrum].reshape(count, cout, spectrum)
            fft_cpu.contract_channels(xf, wf, yf, spec.groups)
            y = _irfftn_forward(yf.reshape((len(rows), nb, cout) + half), axes, lengths[-1],
                                y_[:count * cout * points].reshape((len(rows), nb, cout)
                                                                   + plan.lengths), workers)
            fft_cpu.scatter_tiles(y, first_image, np.ascontiguousarray(rows), *spec.stride3,
                                  bias, out, *finish)
        finally:
            free.put(sets)

    if workers == threads:
        for step in steps:
            run_step(step)
    else:
        for _ in _pool(threads).map(run_step, steps):
            pass
    return out


class FFTAlgorithm(ConvAlgorithm):
    """FFT convolution; serves every valid forward spec on the CPU.

    A transform mixes every value of a tile, so one NaN or infinity in the
    input or weight would spread to the whole tile, where PyTorch poisons
    only the outputs whose window contains it.  Such calls are computed by
    the direct algorithm instead (one ``isfinite`` pass over the inputs
    decides; documented in docs/semantics.md).
    """

    name = "fft"
    #: units: the planner's cost, already per thread (Note [cost models]);
    #: constants shipped from the development machine (docs/choosing.md)
    paths = (costs.PathModel("fft", 1.501e-10, per_thread=False),
             ) + composite_paths("fft", phases=1.750e+00, rewrite=9.833e-01)
    #: docs/semantics.md, "Accuracy"
    measured_error_eps = 1.9
    transforms_values = True
    fuses_epilogue = True

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        if not all_finite(x, weight):
            return direct_forward(spec, x, weight, epilogue, out, ctx=ctx)
        return fft_forward(spec, x, weight, epilogue, out, plan=detail, ctx=ctx)

    def plan_forward(self, spec, ctx):
        # the lengths decide the bits, so they are planned for the pool
        # (Note [fft lengths and threads]); the estimate is for this call's threads
        plan = plan_fft(spec, spec.compute_dtype.itemsize, ctx.workspace_limit, ctx.pool_threads)
        lengths = "x".join(str(v) for v in plan.lengths[3 - spec.ndim:])
        tiles = math.prod(plan.tiles)
        blocks = spec.batch * tiles
        units = plan.cost * min(ctx.pool_threads, blocks) / max(1, min(ctx.threads, blocks))
        return costed_plan(self.name, "fft", units, ctx, plan.workspace,
                           f"{tiles} tile(s) of {lengths}", per_thread=False, detail=plan)


FFT = register(FFTAlgorithm())
