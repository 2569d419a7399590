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

import numba
import numpy as np

from .blas import gemm, gemm_tn
from .jit import FASTMATH, cpu_kernel
from .parallel import run_in_chunks


def winograd_conv(gemm_address, int_witness, xp, BTd, BTh, BTw, U, ATd, ATh, ATw, bias, tiles,
                  total, chunk, out, chunks):
    """The whole transform-multiply-transform pipeline, a chunk of tiles at a time.

    Each job is ``chunk`` consecutive tiles: input transform into the
    thread's own ``V``, one GEMM per position and group into its ``M``,
    output transform into ``out`` -- all on the same thread, while the
    chunk's buffers are still in its cache (Note [one thread pool] of
    :mod:`numbaconv.kernels.im2col_cpu`).
    """
    run_in_chunks(_pipeline_chunk, (gemm_address, int_witness, xp, BTd, BTh, BTw, U, ATd, ATh,
                                    ATw, bias, tiles[0], tiles[1], tiles[2], total, chunk, out),
                  -(-total // chunk), chunks)


@cpu_kernel(parallel=False)
def _pipeline_chunk(gemm_address, int_witness, xp, BTd, BTh, BTw, U, ATd, ATh, ATw, bias, tD, tH,
                    tW, total, chunk, out, first_job, stop_job):
    Q, groups, cin_g, cout_g = U.shape
    C, Co = xp.shape[4], out.shape[1]
    V = np.empty((Q, chunk, C), dtype=out.dtype)
    M = np.empty((Q, chunk, Co), dtype=out.dtype)
    for job in range(first_job, stop_job):
        first = job * chunk
        P = min(chunk, total - first)
        _input_chunk(xp, BTd, BTh, BTw, tD, tH, tW, first, V, 0, P)
        for q in range(Q):
            for g in range(groups):
                gemm(gemm_address, int_witness, V[q, :P, g * cin_g:(g + 1) * cin_g], U[q, g],
                     M[q, :P, g * cout_g:(g + 1) * cout_g], 0.0)
        _output_chunk(M, ATd, ATh, ATw, bias, tD, tH, tW, first, out, 0, P)


def input_transform(xp, BTd, BTh, BTw, tiles, first, V, chunks):
    """V[:, p] = (BTd x BTh x BTw) applied to tile ``first + p``'s patch of ``xp``.

    ``xp`` is the packed, zero-extended input ``(N, D', H', W', C)``; the
    patch of tile ``(td, th, tw)`` starts at ``(td*mD, th*mH, tw*mW)``.
    """
    run_in_chunks(_input_chunk, (xp, BTd, BTh, BTw, tiles[0], tiles[1], tiles[2], first, V),
                  V.shape[1], chunks)


@cpu_kernel(parallel=False)
def _input_chunk(xp, BTd, BTh, BTw, tD, tH, tW, first, V, first_job, stop_job):
    Dx, Hx, Wx, C = xp.shape[1], xp.shape[2], xp.shape[3], xp.shape[4]
    P = V.shape[1]
    aD, aH, aW = BTd.shape[0], BTh.shape[0], BTw.shape[0]
    mD, mH, mW = max(aD - 2, 1), max(aH - 2, 1), max(aW - 2, 1)
    t1 = np.empty(aD * aH * aW * C, dtype=V.dtype)
    t2 = np.empty(aD * aH * aW * C, dtype=V.dtype)
    src = xp.ravel()
    dst = V.ravel()
    for p in range(first_job, stop_job):
        n, td, th, tw = _tile_position(first + p, tD, tH, tW)
        # along W, straight from the packed rows: t1[a, b, k, :]
        for a in range(aD):
            for b in range(aH):
                row = (((n * Dx + td * mD + a) * Hx + th * mH + b) * Wx + tw * mW) * C
                for k in range(aW):
                    _weighted_sum(BTw, k, src, row, C, aW, t1, ((a * aH + b) * aW + k) * C, C)
        _apply_h(t1, BTh, aD, aH, aW, aW, C, t2)
        # along D, into V[q, p, :]
        for kd in range(aD):
            for kh in range(aH):
                for kw in range(aW):
                    q = (kd * aH + kh) * aW + kw
                    _weighted_sum(BTd, kd, t2, (kh * aW + kw) * C, aH * aW * C, aD, dst,
                                  (q * P + p) * C, C)


@cpu_kernel(parallel=False)
def _tile_position(tile, tD, tH, tW):
    """(image, td, th, tw) of tile number ``tile`` (module notes)."""
    return tile // (tW * tH * tD), (tile // (tW * tH)) % tD, (tile // tW) % tH, tile % tW


@cpu_kernel(parallel=False)
def _apply_h(t1, T, aD, aH, aW, width, C, t2):
    """t2[a, r, k, :] = sum_b T[r, b] * t1[a, b, k, :] for r < T.shape[0] and
    k < width (buffers laid out ``(aD, aH, aW, C)``)."""
    for a in range(aD):
        for r in range(T.shape[0]):
            for k in range(width):
                _weighted_sum(T, r, t1, (a * aH * aW + k) * C, aW * C, aH, t2,
                              ((a * aH + r) * aW + k) * C, C)


@numba.njit(inline="always", fastmath=set(FASTMATH), boundscheck=False, error_model="numpy")
def _weighted_sum(T, r, src, first, stride, count, dst, at, C):
    """dst[at:at+C] = sum_{j < count} T[r, j] * src[first + j*stride : +C].

    The one step of every separable transform: a combination of ``count``
    channel vectors with one row of a transform matrix (its zero entries
    skipped), vectorised over the channels.  Inlined by numba
    (``inline="always"``): as a called function, with array arguments shared
    by the threads, it made the transforms 25-30% slower (Note [reference
    counts] of :mod:`numbaconv.kernels.direct_cpu`); inlined it runs as
    fast as the loops written out in place (A/B in one process, resnet3x3
    5.1 against 5.2 ms, identical results).
    """
    for c in range(C):
        dst[np.uint64(at + c)] = 0
    for j in range(count):
        coef = T[r, j]
        if coef != 0:
            s = first + j * stride
            for c in range(C):
                dst[np.uint64(at + c)] += coef * src[np.uint64(s + c)]


def transform_products(gemm_address, int_witness, U, V, M, chunks):
    """M[q][:, g] = V[q][:, g] @ U[q, g] for every position q and group g (BLAS)."""
    run_in_chunks(_products_chunk, (gemm_address, int_witness, U, V, M),
                  U.shape[0] * U.shape[1], chunks)


@cpu_kernel(parallel=False)
def _products_chunk(gemm_address, int_witness, U, V, M, first_job, stop_job):
    groups, cin_g, cout_g = U.shape[1], U.shape[2], U.shape[3]
    for job in range(first_job, stop_job):
        g = job % groups
        q = job // groups
        gemm(gemm_address, int_witness, V[q, :, g * cin_g:(g + 1) * cin_g], U[q, g],
             M[q, :, g * cout_g:(g + 1) * cout_g], 0.0)


def output_transform(M, ATd, ATh, ATw, bias, tiles, first, out, chunks):
    """out tile of ``first + p`` = (ATd x ATh x ATw) M[:, p] + bias, cropped to
    the output (``bias`` empty: none)."""
    run_in_chunks(_output_chunk, (M, ATd, ATh, ATw, bias, tiles[0], tiles[1], tiles[2],
                                  first, out), M.shape[1], chunks)


@cpu_kernel(parallel=False)
def _output_chunk(M, ATd, ATh, ATw, bias, tD, tH, tW, first, out, first_job, stop_job):
    P, Co = M.shape[1], M.shape[2]
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    aD, aH, aW = ATd.shape[1], ATh.shape[1], ATw.shape[1]
    mD, mH, mW = ATd.shape[0], ATh.shape[0], ATw.shape[0]
    t1 = np.empty(aD * aH * aW * Co, dtype=M.dtype)
    t2 = np.empty(aD * aH * aW * Co, dtype=M.dtype)
    res = np.empty(Co, dtype=M.dtype)
    src = M.ravel()
    dst = out.ravel()
    plane = OD * OH * OW
    for p in range(first_job, stop_job):
        n, td, th, tw = _tile_position(first + p, tD, tH, tW)
        # along W, straight from M[q, p, :]: t1[a, b, k, :] for k < mW
        for a in range(aD):
            for b in range(aH):
                for k in range(mW):
                    _weighted_sum(ATw, k, src, ((a * aH + b) * aW * P + p) * Co, P * Co, aW, t1,
                                  ((a * aH + b) * aW + k) * Co, Co)
        _apply_h(t1, ATh, aD, aH, aW, mW, Co, t2)
        # along D, then bias and the cropped scatter into out (N, C_out, ...)
        for kd in range(min(mD, OD - td * mD)):
            for kh in range(min(mH, OH - th * mH)):
                for kw in range(min(mW, OW - tw * mW)):
                    _weighted_sum(ATd, kd, t2, (kh * aW + kw) * Co, aH * aW * Co, aD, res, 0, Co)
                    o = (n * Co * OD + td * mD + kd) * OH * OW + (th * mH + kh) * OW + tw * mW + kw
                    for c in range(Co):
                        b = bias[c] if bias.shape[0] else out.dtype.type(0)
                        dst[np.uint64(o + c * plane)] = res[c] + b


# ---------------------------------------------------------------------------
# the weight gradient
# ---------------------------------------------------------------------------

def winograd_grad_weight(gemm_address, int_witness, xp, gp, BTd, BTh, BTw, Gd, Gh, Gw, tiles,
                         total, chunk, acc, chunks):
    """Transform-domain sums of the weight gradient (Note [winograd weight gradient]).

    ``xp`` is the packed, zero-extended input ``(N, D', H', W', C_in)``,
    ``gp`` the packed output gradient ``(N, OD', OH', OW', C_out)`` extended
    with zeros to whole tiles of ``r`` (``Gd.shape[1]`` ...) per axis.
    ``acc`` ``(segments, Q, groups, C_out/g, C_in/g)`` receives, per segment
    of consecutive tiles, ``sum_t U_t[q]^T V_t[q]`` per position and group.
    """
    run_in_chunks(_grad_weight_segment,
                  (gemm_address, int_witness, xp, gp, BTd, BTh, BTw, Gd, Gh, Gw, tiles[0],
                   tiles[1], tiles[2], total, chunk, acc),
                  acc.shape[0], chunks)


@cpu_kernel(parallel=False)
def _grad_weight_segment(gemm_address, int_witness, xp, gp, BTd, BTh, BTw, Gd, Gh, Gw, tD, tH,
                         tW, total, chunk, acc, first_job, stop_job):
    """Segments ``first_job <= s < stop_job``: tiles ``[s*total//S, (s+1)*total//S)``.

    Note [winograd weight gradient]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    For a stride-1 3-wide kernel, ``grad_w[o, i, k] = sum_{n,p} g[n, o, p] *
    xpad[n, i, p + k]``.  Cut the output gradient into tiles of ``r`` per
    axis: each tile contributes the correlation of its ``r`` values with the
    ``r + 2`` inputs under it, 3 outputs from an ``r``-tap "kernel" -- the
    minimal filter F(3, r), whose transforms are those of F(r, 3) with the
    roles swapped: ``G`` (``alpha x r``) transforms the gradient tile,
    ``BT`` the input patch, ``AT`` (``3 x alpha``) gives the 3 taps.  The
    tiles' products add up in the transform domain, so per position ``q``
    the whole reduction over images and tiles is one GEMM
    ``M[q] = sum_t U_t[q]^T V_t[q]`` (C_out x C_in per group), and the
    output transform runs once at the end.  F(3, 2) multiplies 16 times per
    4 gradient values where the direct sum multiplies 36 times; F(3, 4) 36
    per 16 against 144.  Segments of consecutive tiles are fixed by the
    sizes (not the thread count) and summed in order afterwards, so results
    are bit-identical for any number of threads.
    """
    S = acc.shape[0]
    Q, groups, cout_g, cin_g = acc.shape[1], acc.shape[2], acc.shape[3], acc.shape[4]
    C, Co = xp.shape[4], gp.shape[4]
    V = np.empty((Q, chunk, C), dtype=acc.dtype)
    U = np.empty((Q, chunk, Co), dtype=acc.dtype)
    rD, rH, rW = Gd.shape[1], Gh.shape[1], Gw.shape[1]
    for s in range(first_job, stop_job):
        first = s * total // S
        stop = (s + 1) * total // S
        if stop == first:
            acc[s] = 0
            continue
        for c0 in range(first, stop, chunk):
            P = min(chunk, stop - c0)
            _transform_tiles(xp, BTd, BTh, BTw, rD, rH, rW, tD, tH, tW, c0, P, V)
            _transform_tiles(gp, Gd, Gh, Gw, rD, rH, rW, tD, tH, tW, c0, P, U)
            for q in range(Q):
                for g in range(groups):
                    gemm_tn(gemm_address, int_witness, U[q, :P, g * cout_g:(g + 1) * cout_g],
                            V[q, :P, g * cin_g:(g + 1) * cin_g], acc[s, q, g],
                            0.0 if c0 == first else 1.0)


@cpu_kernel(parallel=False)
def _transform_tiles(src, Td, Th, Tw, sD, sH, sW, tD, tH, tW, first, P, V):
    """V[q, p, :] = (Td x Th x Tw) applied to the patch of tile ``first + p``.

    ``src`` is channels-last ``(N, D, H, W, C)``; tile ``(td, th, tw)``'s
    patch starts at ``(td*sD, th*sH, tw*sW)`` and spans ``T.shape[1]`` per
    axis; ``q`` runs over ``T.shape[0]`` per axis.  Rectangular matrices, so
    the same kernel transforms input patches (``BT``) and gradient tiles
    (``G``).
    """
    Dx, Hx, Wx, C = src.shape[1], src.shape[2], src.shape[3], src.shape[4]
    oD, oH, oW = Td.shape[0], Th.shape[0], Tw.shape[0]
    iD, iH, iW = Td.shape[1], Th.shape[1], Tw.shape[1]
    t1 = np.empty(iD * iH * oW * C, dtype=V.dtype)
    t2 = np.empty(iD * oH * oW * C, dtype=V.dtype)
    flat = src.ravel()
    dst = V.ravel()
    Vp = V.shape[1]
    for p in range(P):
        n, td, th, tw = _tile_position(first + p, tD, tH, tW)
        # along W: t1[a, b, k, :]
        for a in range(iD):
            for b in range(iH):
                row = (((n * Dx + td * sD + a) * Hx + th * sH + b) * Wx + tw * sW) * C
                for k in range(oW):
                    _weighted_sum(Tw, k, flat, row, C, iW, t1, ((a * iH + b) * oW + k) * C, C)
        # along H: t2[a, r, k, :]
        for a in range(iD):
            for r in range(oH):
                for k in range(oW):
                    _weighted_sum(Th, r, t1, (a * iH * oW + k) * C, oW * C, iH, t2,
                                  ((a * oH + r) * oW + k) * C, C)
        # along D, into V[q, p, :]
        for kd in range(oD):
            for kh in range(oH):
                for kw in range(oW):
                    q = (kd * oH + kh) * oW + kw
                    _weighted_sum(Td, kd, t2, (kh * oW + kw) * C, oH * oW * C, iD, dst,
                                  (q * Vp + p) * C, C)
