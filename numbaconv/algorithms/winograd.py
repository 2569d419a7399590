"""The ``winograd`` algorithms: F(4x4, 3x3) and F(2x2, 3x3), and their 1-D
and 3-D forms.

Registered as ``"winograd"`` (output tiles of 4 along each axis) and
``"winograd_f2"`` (tiles of 2: fewer multiplications saved, smaller error).
They serve stride 1 and a kernel of 3 along every spatial axis (3 in 1-D,
3x3 in 2-D, 3x3x3 in 3-D), with any dilation, groups, padding and padding
mode; other problems raise ``UnsupportedAlgorithmError`` with the reason.

Per call (kernels in :mod:`numbaconv.kernels.winograd_cpu`): the weight's
transform ``U = G g G^T`` (cached per weight content: Note [weight cache] in
kernels/winograd_weights.py);
then, for chunks of tiles that fit the workspace limit (or, for layers
with few tiles and many channels, for all tiles at once: Note [staged
winograd]), the input transform
``V = BT d BT^T`` of every tile (padding resolved through the padding maps,
partial edge tiles padded with zeros), one BLAS GEMM per transform position
and group ``M = U @ V``, and the output transform ``AT M AT^T`` plus bias,
cropped to the output.  The transform matrices are derived in
:mod:`numbaconv.kernels.winograd_matrices`.

Note [dilation phases]
~~~~~~~~~~~~~~~~~~~~~~
A stride-1 convolution with dilation ``d`` splits into ``d`` undilated ones
per axis: output ``o = d*o' + r`` reads the padded input at ``o + d*k =
d*(o' + k) + r``, so output phase ``r`` is the undilated convolution of the
padded input's phase ``r`` (every ``d``-th element from ``r``).  The phases
are packed as extra images of the channels-last input -- the packing
gathers through the padding maps anyway, so taking every ``d``-th entry of
the maps costs nothing -- and the output transform writes phase ``r``'s
outputs ``d`` apart from ``r``.  The tiles of a phase cover ``ceil(O/d)``
outputs per axis, so the tile count is that of an undilated layer of the
same output size, up to rounding at each phase's edge.  Dilated 3x3 layers
then run at Winograd's speed instead of im2col's (the dilated benchmark
shape: see docs/results-classes.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..context import current_context
from ..workspaces import all_finite, scratch
from ..kernels import blas, direct_pack, winograd_cpu
from ..kernels.winograd_weights import (axis_matrices, extended_maps, transformed_weight,
                                        transformed_weight_and_finiteness)
from .direct import direct_forward
from .. import costs
from .registry import ConvAlgorithm, costed_plan, register

#: Target size of one thread's transformed tiles (input and product):
#: measured on resnet3x3 (docs/results-winograd.md)
CHUNK_BYTES = 2**20

#: Work units of one transform step (one multiply-add of a channel vector
#: element in a 1-D transform pass), in GEMM multiply-adds, by the number of
#: spatial axes (Note [winograd cost]).
TRANSFORM_WEIGHT = {1: 3.9, 2: 3.9, 3: 6.9}


#: Units per transformed-weight element streamed by one chunk's GEMMs, by the
#: size of the whole transformed weight: ``(up to bytes, units)`` -- within
#: the development machine's L2 (2 MiB), its L3 (32 MiB), beyond (Note
#: [winograd cost]).
WEIGHT_STREAM = ((2 * 2**20, 8.0), (32 * 2**20, 24.0), (math.inf, 36.0))

#: Bytes of transformed tiles (``V`` and ``M``) a staged call keeps without
#: the stage term (Note [staged winograd]).
STAGE_FREE_BYTES = 4 * 2**20
#: Units per element of ``V`` and ``M`` beyond :data:`STAGE_FREE_BYTES`: the
#: whole-call buffers' trips through memory (Note [staged winograd]); fitted
#: so that 128-channel 28x28 layers at batch 8 (13.8 MiB), 1.1-1.3x slower
#: staged, stay chunked.
STAGE_UNITS = 100.0
#: Units of a staged call's two extra starts of numba's pool (about 10 us
#: each on two threads).
STAGE_LAUNCHES = 3.2e6

#: Units of one dilation phase's own Python and pack call (Note [dilation
#: phases]: each phase is packed by a call of its own), about 45 us: a 1-D
#: layer with dilation 256 took 4.4x its undilated time, 90 us a phase on a
#: loaded machine (docs/results-winograd.md, "Dilated 1-D layers").
PHASE_UNITS = 3.6e6
#: 1-D layers' work against the model's: measured over im2col's measured
#: over estimated, 1.5-3x on five 1-D layers of 32-256 channels
#: (docs/results-winograd.md, "Dilated 1-D layers").
ONE_D_FACTOR = 2.0


def winograd_tiles(spec, m):
    """Tiles of F(m, 3) Winograd on ``spec``: a dilated layer is tiled one
    dilation phase at a time (Note [dilation phases] of
    :mod:`numbaconv.algorithms.winograd`), each phase ``ceil(O / d)`` long."""
    return spec.batch * math.prod(d * -(-(-(-o // d)) // m)
                                  for o, d in zip(spec.output_size, spec.dilation))


def winograd_work(spec, m, chunk):
    """Work of F(m, 3) Winograd on ``spec`` with ``chunk`` tiles per chunk.

    Note [winograd cost]
    ~~~~~~~~~~~~~~~~~~~~
    Per tile: the transforms, ``alpha`` multiply-adds per transform position,
    channel and axis, for the input's and the output's channels, each step
    weighted :data:`TRANSFORM_WEIGHT` GEMM multiply-adds (timed apart: 3.35-4.0
    on 2-D layers, more on 3-D ones, whose output scatter into NCDHW weighs
    more); and the transform-domain GEMMs, ``Q`` products of ``chunk x
    C_in/g`` by ``C_in/g x C_out/g`` per chunk and group.  Layers with many
    channels and few tiles stream the transformed weight ``U`` through the
    GEMMs once per chunk, which costs more per element the further out of
    cache ``U`` is: :data:`WEIGHT_STREAM`, steps at the L2 and L3 sizes
    (docs/results-winograd.md, "Cost model").
    """
    alpha = m + 2
    tiles = winograd_tiles(spec, m)
    Q = alpha ** spec.ndim
    transforms = (TRANSFORM_WEIGHT[spec.ndim] * tiles * Q
                  * (spec.in_channels + spec.out_channels) * alpha * spec.ndim)
    gemm = costs.gemm_work(tiles * Q * spec.groups * spec.in_channels_per_group
                           * spec.out_channels_per_group, spec.in_channels_per_group,
                           spec.out_channels_per_group, min(chunk, tiles))
    # per chunk of tiles, one GEMM per position and group, each streaming
    # its C_in/g x C_out/g transformed weight: with few tiles per chunk
    # (many channels) that traffic, not the arithmetic, is the cost, and
    # more so once the transformed weight outgrows the cache
    chunks = -(-tiles // chunk)
    calls = Q * spec.groups * chunks
    elements = Q * spec.groups * spec.in_channels_per_group * spec.out_channels_per_group
    size = elements * spec.compute_dtype.itemsize
    per_element = next(units for limit, units in WEIGHT_STREAM if size <= limit)
    work = transforms + gemm + costs.GEMM_CALL * calls + per_element * elements * chunks
    if spec.ndim == 1:
        work *= ONE_D_FACTOR
    return work + PHASE_UNITS * (math.prod(spec.dilation) - 1)


def plan_chunk(spec, m, itemsize, ctx):
    """Tiles per chunk (a thread's unit of work, Note [channels-last
    transforms]): about :data:`CHUNK_BYTES` of transformed tiles, enough
    chunks for every thread of numba's pool, all the pool's buffers under
    the workspace limit.  Returns ``(tiles_per_chunk, bytes per tile)``.

    The chunk is the ``M`` of every transform-domain GEMM, and a GEMM's
    bits depend on its shape (Note [GEMM shapes] of
    :mod:`numbaconv.kernels.blas`), so it is sized by the pool
    (``ctx.pool_threads``), never by the threads of this call."""
    used = [a >= 3 - spec.ndim for a in range(3)]
    Q = math.prod(m + 2 if u else 1 for u in used)
    total = winograd_tiles(spec, m)
    per_tile = Q * (spec.in_channels + spec.out_channels) * itemsize
    pool = ctx.pool_threads
    chunk = max(1, min(-(-total // pool), CHUNK_BYTES // per_tile,
                       ctx.workspace_limit // (pool * per_tile)))
    return chunk, per_tile


@dataclass(frozen=True)
class WinogradPlan:
    """How a Winograd call is split: ``chunk`` tiles per job of the
    pipeline, or (``staged``) the three stages over all the call's tiles
    (Note [staged winograd])."""

    chunk: int
    staged: bool = False


def plan_winograd(spec, m, itemsize, ctx):
    """``(plan, work, workspace bytes)`` of F(m, 3) on ``spec``: the chunked
    pipeline (:func:`plan_chunk`) or the staged one, whichever the cost
    model rates cheaper and the workspace limit allows.

    Note [staged winograd]
    ~~~~~~~~~~~~~~~~~~~~~~
    The pipeline runs each chunk's GEMMs on its own thread, so every chunk
    streams the whole transformed weight ``U`` (Q times the weight).  A
    late layer at a small batch has few tiles and a large ``U``: ResNet-50's
    256-channel 14x14 layer at batch 1 has 16 F(4x4) tiles in two chunks of
    8, each streaming 9 MiB of ``U`` for GEMMs of 8 rows.  Staged, the input
    transform of all tiles, then one GEMM per position over all of them
    (the positions split between threads, each block of ``U`` read once),
    then the output transform: 512 channels on 7x7 at batch 8 took 7.1-7.7
    against 17-19 ms (F(4x4), AVX-512 Zen 4; docs/results-winograd.md,
    "Staged calls").  The cost model rates it as one chunk of all the
    tiles, plus :data:`STAGE_UNITS` per element of ``V`` and ``M`` beyond
    :data:`STAGE_FREE_BYTES` (whole-call buffers leave the cache, and
    larger layers ran slower staged) and :data:`STAGE_LAUNCHES` for its two
    extra starts of the thread pool.
    The GEMMs' rows are all the tiles, a function of the problem, so the
    bits do not depend on the threads.
    """
    chunk, per_tile = plan_chunk(spec, m, itemsize, ctx)
    chunked = winograd_work(spec, m, chunk)
    total = winograd_tiles(spec, m)
    staged_bytes = total * per_tile
    if total > chunk and staged_bytes <= ctx.workspace_limit:
        beyond = max(0, staged_bytes - STAGE_FREE_BYTES) // itemsize
        staged = winograd_work(spec, m, total) + STAGE_UNITS * beyond + STAGE_LAUNCHES
        if staged < chunked:
            return WinogradPlan(total, staged=True), staged, staged_bytes
    return WinogradPlan(chunk), chunked, ctx.threads * chunk * per_tile


def winograd_forward(spec, x, weight, epilogue, out, m=4, plan=None, ctx=None, U=None):
    """Run F(m, 3) Winograd on canonical 3-D arrays (see the registry), split
    as ``plan`` says (a :class:`WinogradPlan`; :func:`plan_winograd`'s when
    not given).  ``U``: the weight's transform, when the caller has it
    (:func:`transformed_weight` otherwise)."""
    if out.size == 0:
        return out
    ctx = current_context() if ctx is None else ctx
    dtype = out.dtype
    threads = ctx.threads
    ndim = spec.ndim
    used = [a >= 3 - ndim for a in range(3)]
    mats = [axis_matrices(m, u, dtype) for u in used]
    AT = [t[0] for t in mats]
    BT = [t[2] for t in mats]
    U = transformed_weight(weight, m, ndim, spec.groups) if U is None else U
    dilation = spec.dilation3
    # tiles of one dilation phase (Note [dilation phases]): the longest
    # phase, ceil(O / d), along each axis
    grid = tuple(-(-(-(-o // d)) // (m if u else 1))
                 for o, d, u in zip(spec.output_size3, dilation, used))
    phases = list(np.ndindex(*dilation))
    total = len(phases) * spec.batch * math.prod(grid)
    C = spec.in_channels
    if plan is None:
        plan = plan_winograd(spec, m, dtype.itemsize, ctx)[0]
    bias = epilogue.bias
    # Note [channels-last transforms]: the padded input, extended to whole
    # tiles, channels last; one block of images per dilation phase
    xp = None
    for i, phase in enumerate(phases):
        maps = extended_maps(spec, grid, m, used, phase)
        if xp is None:
            xp = scratch((len(phases) * spec.batch,) + tuple(len(mp) for mp in maps) + (C,),
                         dtype)
        direct_pack.pack_channels_last(x, *maps, xp[i * spec.batch:(i + 1) * spec.batch],
                                        threads)
    gemm = blas.find_gemm()
    if plan.staged:
        V = scratch((U.shape[0], total, C), dtype)
        M = scratch((U.shape[0], total, spec.out_channels), dtype)
        with blas.single_threaded_blas():
            winograd_cpu.winograd_staged(gemm.address(dtype), gemm.int_witness, xp, *BT, U, *AT,
                                         bias, grid, V, M, out, threads, dilation,
                                         finish=epilogue.kernel_args(dtype))
        return out
    with blas.single_threaded_blas():
        winograd_cpu.winograd_conv(gemm.address(dtype), gemm.int_witness, xp, *BT, U, *AT, bias,
                                   grid, total, plan.chunk, out, threads, dilation,
                                   finish=epilogue.kernel_args(dtype))
    return out


class WinogradAlgorithm(ConvAlgorithm):
    """F(m x m, 3 x 3) Winograd (and its 1-D / 3-D forms) on the CPU."""

    #: docs/semantics.md, "Accuracy": F(4x4, 3x3) is above float64's tolerance
    MEASURED_ERROR_EPS = {4: 29.0, 2: 1.0}
    #: the shipped constants (docs/choosing.md)
    DEFAULT_CONSTANTS = {4: 1.252e-11, 2: 1.431e-11}
    transforms_values = True
    fuses_epilogue = True

    def __init__(self, name, m):
        self.name = name
        self.m = m
        self.measured_error_eps = self.MEASURED_ERROR_EPS[m]
        self.paths = (costs.PathModel(f"winograd:F{m}", self.DEFAULT_CONSTANTS[m]),)

    def unsupported_reason(self, spec):
        if spec.computation == "grad_weight":
            return ("a weight gradient is a convolution whose kernel spans the output "
                    f"({spec.output_size}), not a 3-wide kernel")
        if spec.has_input_dilation:
            return (f"it serves stride-1 problems, got a transposed convolution (or input "
                    f"gradient) with stride {spec.input_dilation}")
        if any(s != 1 for s in spec.stride):
            return f"it needs stride 1, got stride={spec.stride}"
        if any(k != 3 for k in spec.kernel_size):
            return (f"it serves kernels of 3 along every axis, got "
                    f"kernel_size={spec.kernel_size}")
        if blas.find_gemm() is None:
            return "no loaded BLAS library exports cblas_sgemm/cblas_dgemm"
        return None

    def plan_forward(self, spec, ctx):
        model = f"winograd:F{self.m}"
        plan, work, workspace = plan_winograd(spec, self.m, spec.compute_dtype.itemsize, ctx)
        tiles = (f"F({self.m}x{self.m},3x3) tiles" if spec.ndim == 2 else
                 f"F({self.m},3) tiles")
        path = (f"{tiles}, {plan.chunk} staged" if plan.staged
                else f"{tiles}, {plan.chunk} per chunk")
        return costed_plan(self.name, model, work, ctx, workspace, path, detail=plan)

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        # a transform spreads a NaN or infinity over its whole tile: such
        # calls go to the direct algorithm, which keeps them local (the
        # weight's finiteness is cached with its transform)
        U, finite = transformed_weight_and_finiteness(weight, self.m, spec.ndim, spec.groups)
        if not (finite and all_finite(x)):
            return direct_forward(spec, x, weight, epilogue, out, ctx=ctx)
        return winograd_forward(spec, x, weight, epilogue, out, m=self.m, plan=detail, ctx=ctx,
                                U=U)


WINOGRAD = register(WinogradAlgorithm("winograd", 4))
WINOGRAD_F2 = register(WinogradAlgorithm("winograd_f2", 2))
