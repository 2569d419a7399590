"""numba kernels of the Winograd algorithm: input and output transforms,
and the transform-domain GEMMs.

Everything is written for the canonical 3-D form with one transform per
axis (``BT``/``AT`` matrices of each axis; a 1x1 identity on the unused
axes of 1-D and 2-D problems), so one set of kernels serves every rank.
Tiles are numbered ``p = ((n * tD + td) * tH + th) * tW + tw`` over the
images and the tile grid; a call works on the tiles ``[first, first + P)``.

Note [channels-last transforms]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
The transforms work on channels-last data so that their innermost loops
run over channels: the input is packed once to ``(N, D', H', W', C)`` (the
padded input, extended with zeros to whole tiles, by the direct
algorithm's packing kernel), a tile's patch is ``alpha^3`` contiguous
channel vectors, and each 1-D transform step is a handful of
multiply-adds of whole channel vectors, which LLVM vectorises.  Layouts
(``Q = alphaD * alphaH * alphaW`` transform positions):

* ``V`` -- ``(Q, P, C_in)``: transformed input tiles;
* ``U`` -- ``(Q, groups, C_in/groups, C_out/groups)``: transformed weights;
* ``M`` -- ``(Q, P, C_out)``: ``M[q][:, g] = V[q][:, g] @ U[q, g]``, one BLAS
  GEMM per position and group (column blocks, row stride ``C``).

A first version transformed one tile at a time with matrix loops over its
NCHW patch: 25-35 ms of resnet3x3's 45-65 ms went to the input transform
and 15 ms to the output transform.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import winograd_transforms as transforms
from .blas import gemm
from .epilogue_block import finish_args, finish_block
from .jit import cpu_kernel, inline_helper
from .parallel import chunk_of, chunk_scratch, run_in_chunks


def winograd_conv(gemm_address, int_witness, xp, BTd, BTh, BTw, U, ATd, ATh, ATw, bias, tiles,
                  total, chunk, out, chunks, dilation=(1, 1, 1), finish=None):
    """The whole transform-multiply-transform pipeline, a chunk of tiles at a time.

    Each job is ``chunk`` consecutive tiles: input transform into the
    thread's own ``V``, one GEMM per position and group into its ``M``,
    output transform into ``out`` -- all on the same thread, while the
    chunk's buffers are still in its cache (Note [one thread pool] of
    :mod:`numbaconv.kernels.im2col_cpu`).  With a ``dilation`` other than 1,
    ``xp`` holds the dilation phases as extra images (Note [dilation phases]
    of :mod:`numbaconv.algorithms.winograd`), and each phase's outputs land
    ``dilation`` apart in ``out``.  ``finish`` is the epilogue's ``(code,
    slope, residual)`` (:meth:`numbaconv.epilogue.Epilogue.kernel_args`),
    applied by the output transform to each tile's outputs as it writes
    them; None: bias only.
    """
    jobs = -(-total // chunk)
    Q = BTd.shape[0] * BTh.shape[0] * BTw.shape[0]
    C, Co = xp.shape[4], out.shape[1]
    # per chunk, V and M (Note [chunk scratch])
    work = chunk_scratch(jobs, chunks, Q * chunk * (C + Co), out.dtype)
    run_in_chunks(_TASKS[BTw.shape[0]].pipeline,
                  (gemm_address, int_witness, xp, BTd, BTh, BTw, U, ATd, ATh, ATw, bias,
                   tiles[0], tiles[1], tiles[2], total, chunk, out, *dilation,
                   *finish_args(finish, out.dtype), work),
                  jobs, chunks)


def winograd_staged(gemm_address, int_witness, xp, BTd, BTh, BTw, U, ATd, ATh, ATw, bias, tiles,
                    V, M, out, chunks, dilation=(1, 1, 1), finish=None):
    """The pipeline of :func:`winograd_conv` as three whole-call stages
    (Note [staged winograd] of :mod:`numbaconv.algorithms.winograd`): the
    input transform of every tile into ``V`` (``(Q, P, C_in)``, P all the
    call's tiles), one GEMM per position and group into ``M`` (``(Q, P,
    C_out)``), whose jobs split the positions between threads so that each
    block of ``U`` is read once, and the output transform; each stage's jobs
    on numba's pool.  Arguments as for :func:`winograd_conv`."""
    input_transform(xp, BTd, BTh, BTw, tiles, 0, V, chunks)
    transform_products(gemm_address, int_witness, U, V, M, chunks)
    output_transform(M, ATd, ATh, ATw, bias, tiles, 0, out, chunks, dilation, finish)


def input_transform(xp, BTd, BTh, BTw, tiles, first, V, chunks):
    """V[:, p] = (BTd x BTh x BTw) applied to tile ``first + p``'s patch of ``xp``.

    ``xp`` is the packed, zero-extended input ``(N, D', H', W', C)``; the
    patch of tile ``(td, th, tw)`` starts at ``(td*mD, th*mH, tw*mW)``.
    """
    run_in_chunks(_TASKS[BTw.shape[0]].input,
                  (xp, BTd, BTh, BTw, tiles[0], tiles[1], tiles[2], first, V), V.shape[1],
                  chunks)


def transform_products(gemm_address, int_witness, U, V, M, chunks):
    """M[q][:, g] = V[q][:, g] @ U[q, g] for every position q and group g (BLAS)."""
    run_in_chunks(_products_chunk, (gemm_address, int_witness, U, V, M),
                  U.shape[0] * U.shape[1], chunks)


def output_transform(M, ATd, ATh, ATw, bias, tiles, first, out, chunks, dilation=(1, 1, 1),
                     finish=None):
    """out tile of ``first + p`` = (ATd x ATh x ATw) M[:, p] + bias, cropped to
    the output (``bias`` empty: none), then the epilogue ``finish`` (as for
    :func:`winograd_conv`); tiles of dilation phases (image numbers from
    ``N`` up) land ``dilation`` apart (Note [dilation phases])."""
    run_in_chunks(_TASKS[ATw.shape[1]].output,
                  (M, ATd, ATh, ATw, bias, tiles[0], tiles[1], tiles[2], first, out, *dilation,
                   *finish_args(finish, out.dtype)),
                  M.shape[1], chunks)


class _Tasks(NamedTuple):
    """The tasks of one F(m, 3) (Note [tasks per transform])."""

    input: object
    output: object
    pipeline: object


def _make_tasks(alpha):
    """The input-transform, output-transform and pipeline tasks compiled for
    F(alpha - 2, 3).

    Note [tasks per transform]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~
    The tasks chose the F(4, 3) or F(2, 3) transform of each axis at run
    time, so numba compiled both transforms, and every pass of both, into
    every call: a first Winograd call with an empty cache compiled for 4.7 s
    (CPU, 2-core AVX2 EPYC: the input, output and pipeline tasks 3.4 s, the
    four transforms 1.3 s).  Now a factory makes the tasks per F(m, 3),
    with ``f4`` a constant of the closure (numba prunes the other
    transform), and the transforms' loops are two kernels
    (:func:`_input_tiles`, :func:`_output_tiles`) that take the transform
    as an argument, so a call compiles one transform of each kind and one
    version of each loop: 3.5 s for a 2-D F(4x4, 3x3) call (the two
    transforms 0.9 s, the loops 1.9 s, the pipeline 0.7 s).  Inlining the
    loops into the pipeline instead cost more (numba copies an inlined
    function's IR for every call: 2.8 s for the pipeline alone), and so did
    compiling ``_along`` on its own (once per literal axis).  Tasks per rank
    as well bought nothing for one call (numba does not prune branches on a
    literal argument) and compiled the loops three times over in
    ``numbaconv warmup``.  The arithmetic is in the transforms, called as
    before: the bits are unchanged and the speed is the same
    (docs/results-startup.md).
    """
    f4 = alpha == 6

    @cpu_kernel(parallel=False, python_callable=False)
    def _input_chunk(xp, BTd, BTh, BTw, tD, tH, tW, first, V, first_job, stop_job):
        transform = transforms.input_f4 if f4 else transforms.input_f2
        T = BTd.shape[0] * BTh.shape[0] * BTw.shape[0] * xp.shape[4]
        _input_tiles(xp, BTd, BTh, BTw, tD, tH, tW, first, V, np.empty(T, V.dtype),
                     np.empty(T, V.dtype), first_job, stop_job, transform)

    @cpu_kernel(parallel=False, python_callable=False)
    def _output_chunk(M, ATd, ATh, ATw, bias, tD, tH, tW, first, out, dd, dh, dw, code, slope,
                      residual, first_job, stop_job):
        transform = transforms.output_f4 if f4 else transforms.output_f2
        T = ATd.shape[1] * ATh.shape[1] * ATw.shape[1] * M.shape[2]
        _output_tiles(M, ATd, ATh, ATw, bias, tD, tH, tW, first, out, dd, dh, dw, code, slope,
                      residual, np.empty(T, M.dtype), np.empty(T, M.dtype), first_job,
                      stop_job, transform)

    @cpu_kernel(parallel=False, python_callable=False)
    def _pipeline_chunk(gemm_address, int_witness, xp, BTd, BTh, BTw, U, ATd, ATh, ATw, bias,
                        tD, tH, tW, total, chunk, out, dd, dh, dw, code, slope, residual, work,
                        first_job, stop_job):
        transform_in = transforms.input_f4 if f4 else transforms.input_f2
        transform_out = transforms.output_f4 if f4 else transforms.output_f2
        Q, groups, cin_g, cout_g = U.shape
        C, Co = xp.shape[4], out.shape[1]
        # this chunk's row of the call's scratch (Note [chunk scratch])
        row = work[chunk_of(first_job, (total + chunk - 1) // chunk, work.shape[0])]
        V = row[:Q * chunk * C].reshape((Q, chunk, C))
        M = row[Q * chunk * C:Q * chunk * (C + Co)].reshape((Q, chunk, Co))
        # the transforms' buffers, read and written in the same loops, are
        # the task's own (Note [chunk scratch]): a few KiB, once per chunk
        T = Q * max(C, Co)
        t1 = np.empty(T, dtype=out.dtype)
        t2 = np.empty(T, dtype=out.dtype)
        for job in range(first_job, stop_job):
            first = job * chunk
            P = min(chunk, total - first)
            _input_tiles(xp, BTd, BTh, BTw, tD, tH, tW, first, V, t1, t2, 0, P, transform_in)
            for q in range(Q):
                for g in range(groups):
                    gemm(gemm_address, int_witness, V[q, :P, g * cin_g:(g + 1) * cin_g],
                         U[q, g], M[q, :P, g * cout_g:(g + 1) * cout_g], 0.0)
            _output_tiles(M, ATd, ATh, ATw, bias, tD, tH, tW, first, out, dd, dh, dw, code,
                          slope, residual, t1, t2, 0, P, transform_out)

    return _Tasks(_input_chunk, _output_chunk, _pipeline_chunk)


@cpu_kernel(parallel=False, python_callable=False)
def _input_tiles(xp, BTd, BTh, BTw, tD, tH, tW, first, V, t1, t2, first_job, stop_job,
                 transform):
    """V[:, p] for tiles ``first + p``, ``first_job <= p < stop_job``
    (:func:`input_transform`), with ``transform`` along each axis that has
    one (the others' matrices are 1x1 identities); ``t1`` and ``t2`` are
    scratch of at least ``alpha^3 * C`` values."""
    Dx, Hx, Wx, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    P = V.shape[1]
    aD, aH, aW = BTd.shape[0], BTh.shape[0], BTw.shape[0]
    mD, mH, mW = max(aD - 2, 1), max(aH - 2, 1), max(aW - 2, 1)
    src = xp.ravel()
    dst = V.ravel()
    # V[q, p, :] with q = (d * aH + h) * aW + w: a tile layout whose pitches
    # are P times those of t1/t2
    vd, vh, vw = aH * aW * P * C, aW * P * C, P * C
    bd, bh = aH * aW * C, aW * C
    for p in range(first_job, stop_job):
        n, td, th, tw = _tile_position(first + p, tD, tH, tW)
        corner = (((n * Dx + td * mD) * Hx + th * mH) * Wx + tw * mW) * C
        # along W, straight from the packed rows, then H, then D; the last
        # axis with a transform writes into V
        last_w = aH == 1 and aD == 1
        out_w = dst if last_w else t1
        _along(2, transform, src, corner, Hx * Wx * C, Wx * C, C, out_w, p * C if last_w else 0,
               vd if last_w else bd, vh if last_w else bh, vw if last_w else C, aD, aH, C)
        if aH > 1:
            out_h = dst if aD == 1 else t2
            _along(1, transform, t1, 0, bd, bh, C, out_h, p * C if aD == 1 else 0,
                   vd if aD == 1 else bd, vh if aD == 1 else bh, vw if aD == 1 else C, aD, aW,
                   C)
        if aD > 1:
            _along(0, transform, t2, 0, bd, bh, C, dst, p * C, vd, vh, vw, aH, aW, C)


@inline_helper
def _tile_position(tile, tD, tH, tW):
    """(image, td, th, tw) of tile number ``tile`` (module notes)."""
    return tile // (tW * tH * tD), (tile // (tW * tH)) % tD, (tile // tW) % tH, tile % tW


@inline_helper
def _along(axis, transform, src, s0, sd, sh, sw, dst, d0, dd, dh, dw, n1, n2, C):
    """Apply ``transform`` (a function of Note [constant transforms]) along
    ``axis`` (0: D, 1: H, 2: W) of a tile: ``src`` at ``s0`` with pitches
    ``(sd, sh, sw)`` (channels contiguous), into ``dst`` at ``d0`` with
    pitches ``(dd, dh, dw)``, for every position ``(i, j)`` of the two other
    axes (``n1 x n2``, in axis order)."""
    for i in range(n1):
        for j in range(n2):
            if axis == 2:
                first, at, stride, dstride = s0 + i * sd + j * sh, d0 + i * dd + j * dh, sw, dw
            elif axis == 1:
                first, at, stride, dstride = s0 + i * sd + j * sw, d0 + i * dd + j * dw, sh, dh
            else:
                first, at, stride, dstride = s0 + i * sh + j * sw, d0 + i * dh + j * dw, sd, dd
            transform(src, first, stride, dst, at, dstride, C)


@cpu_kernel(parallel=False, python_callable=False)
def _products_chunk(gemm_address, int_witness, U, V, M, first_job, stop_job):
    groups, cin_g, cout_g = U.shape[1], U.shape[2], U.shape[3]
    for job in range(first_job, stop_job):
        g = job % groups
        q = job // groups
        gemm(gemm_address, int_witness, V[q, :, g * cin_g:(g + 1) * cin_g], U[q, g],
             M[q, :, g * cout_g:(g + 1) * cout_g], 0.0)


@cpu_kernel(parallel=False, python_callable=False)
def _output_tiles(M, ATd, ATh, ATw, bias, tD, tH, tW, first, out, dd, dh, dw, code, slope,
                  residual, t1, t2, first_job, stop_job, transform):
    """The outputs of tiles ``first + p``, ``first_job <= p < stop_job``
    (:func:`output_transform`), with ``transform`` along each axis that has
    one, and the epilogue ``code, slope, residual`` applied to each channel's
    run of a tile row as it is written (Note [epilogue]); ``t1`` and ``t2``
    are scratch of at least ``alpha^3 * C_out`` values."""
    P, Co = M.shape[1], M.shape[2]
    N = out.shape[0]
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    aD, aH, aW = ATd.shape[1], ATh.shape[1], ATw.shape[1]
    mD, mH, mW = ATd.shape[0], ATh.shape[0], ATw.shape[0]
    src = M.ravel()
    dst = out.ravel()
    plane = OD * OH * OW
    zero = out.dtype.type(0)
    fuse = code != 0 or residual.shape[0] > 0       # the fused epilogue: Note [epilogue]
    strided = dw > 1                # a tile row's outputs are dw apart (Note [dilation phases])
    # tile buffers laid out (d, h, w, c) with pitches (aH*aW*Co, aW*Co, Co);
    # M[q, p, :] is that layout with pitches P times larger
    bd, bh = aH * aW * Co, aW * Co
    for p in range(first_job, stop_job):
        image, td, th, tw = _tile_position(first + p, tD, tH, tW)
        # image = phase * N + n; phase (rd, rh, rw) writes the outputs
        # r + d * (its own index): Note [dilation phases]
        n = image % N
        phase = image // N
        rw = phase % dw
        rh = (phase // dw) % dh
        rd = phase // (dw * dh)
        # along W (straight from M), H and D (Note [constant transforms]);
        # the result ends in t1 for 1-D and 3-D, in t2 for 2-D
        _along(2, transform, src, p * Co, aH * aW * P * Co, aW * P * Co, P * Co, t1, 0, bd, bh,
               Co, aD, aH, Co)
        res = t1
        if aH > 1:
            _along(1, transform, t1, 0, bd, bh, Co, t2, 0, bd, bh, Co, aD, mW, Co)
            res = t2
        if aD > 1:
            _along(0, transform, t2, 0, bd, bh, Co, t1, 0, bd, bh, Co, mH, mW, Co)
            res = t1
        # bias and the cropped scatter into out (N, C_out, ...), per channel
        # a run of mW neighbours.  Channel by channel for each output pixel,
        # the writes a plane apart (64 KiB on a 128x128 layer) fell into one
        # cache set and each line was evicted before its neighbours were
        # written: the output transform of U-Net's 64-channel 128x128 layer
        # took 6.9 ms that way and 2.2 ms by rows (one thread).
        # The phase's own output length along each axis: ceil((O - r) / d).
        width = min(mW, (OW - rw + dw - 1) // dw - tw * mW)
        for kd in range(min(mD, (OD - rd + dd - 1) // dd - td * mD)):
            for kh in range(min(mH, (OH - rh + dh - 1) // dh - th * mH)):
                o = ((n * Co * OD + rd + dd * (td * mD + kd)) * OH * OW
                     + (rh + dh * (th * mH + kh)) * OW + rw + dw * tw * mW)
                r = kd * bd + kh * bh
                for c in range(Co):
                    b = bias[c] if bias.shape[0] else zero
                    for kw in range(width):
                        dst[np.uint64(o + c * plane + kw * dw)] = res[r + kw * Co + c] + b
                    if fuse:
                        # the channel's run of the tile row: contiguous, or
                        # with a dilation width runs of one
                        finish_block(dst, o + c * plane, dw, width if strided else 1,
                                     1 if strided else width, residual, code, slope)


#: alpha -> the tasks of F(alpha - 2, 3), each compiled when first called
_TASKS = {alpha: _make_tasks(alpha) for alpha in (6, 4)}
