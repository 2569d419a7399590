"""numba kernels of the Winograd algorithm: input and output transforms,
and the transform-domain GEMMs.

Everything is written for the canonical 3-D form with one transform per
axis (``BT``/``AT`` matrices of each axis; a 1x1 identity on the unused
axes of 1-D and 2-D problems), so one set of kernels serves every rank.
Tiles are numbered ``p = ((n * tD + td) * tH + th) * tW + tw`` over the
images and the tile grid; a call works on the tiles ``[first, first + P)``.

Layouts (``Q = alphaD * alphaH * alphaW`` transform positions):

* ``V`` -- ``(Q, C_in, P)``: transformed input tiles;
* ``U`` -- ``(Q, C_out, C_in/groups)``: transformed weights;
* ``M`` -- ``(Q, C_out, P)``: their products, ``M[q, g] = U[q, g] @ V[q, g]``
  for each group's rows (one BLAS GEMM per position and group).
"""

from __future__ import annotations

import numpy as np

from .blas import gemm
from .jit import cpu_kernel
from .parallel import run_in_chunks


def input_transform(x, map_d, map_h, map_w, BTd, BTh, BTw, tiles, first, V, chunks):
    """V[:, c, p] = (BTd x BTh x BTw) applied to tile ``first + p``'s input patch.

    ``tiles`` is the tile grid ``(tD, tH, tW)``; the patch of tile
    ``(td, th, tw)`` starts at padded position ``(td*mD, th*mH, tw*mW)``
    (``m = alpha - 2``); positions past the padded input are zeros.
    """
    C, P = V.shape[1], V.shape[2]
    run_in_chunks(_input_chunk, (x, map_d, map_h, map_w, BTd, BTh, BTw, tiles[0], tiles[1],
                                 tiles[2], first, V), C * P, chunks)


@cpu_kernel(parallel=False)
def _input_chunk(x, map_d, map_h, map_w, BTd, BTh, BTw, tD, tH, tW, first, V, first_job,
                 stop_job):
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    P = V.shape[2]
    aD, aH, aW = BTd.shape[0], BTh.shape[0], BTw.shape[0]
    mD, mH, mW = max(aD - 2, 1), max(aH - 2, 1), max(aW - 2, 1)
    Dp, Hp, Wp = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    patch = np.empty((aD, aH, aW), dtype=V.dtype)
    tmp = np.empty((aD, aH, aW), dtype=V.dtype)
    src = x.ravel()
    dst = V.ravel()
    zero = V.dtype.type(0)
    for job in range(first_job, stop_job):
        c = job // P
        p = job % P
        tile = first + p
        tw = tile % tW
        th = (tile // tW) % tH
        td = (tile // (tW * tH)) % tD
        n = tile // (tW * tH * tD)
        plane = (n * C + c) * D * H * W
        for i in range(aD):
            pd = td * mD + i
            sd = map_d[pd] if pd < Dp else -1
            for j in range(aH):
                ph = th * mH + j
                sh = map_h[ph] if ph < Hp else -1
                for k in range(aW):
                    pw = tw * mW + k
                    sw = map_w[pw] if pw < Wp else -1
                    patch[i, j, k] = (src[np.uint64(plane + (sd * H + sh) * W + sw)]
                                      if sd >= 0 and sh >= 0 and sw >= 0 else zero)
        _separable(patch, BTd, BTh, BTw, tmp)
        q = 0
        for i in range(aD):
            for j in range(aH):
                for k in range(aW):
                    dst[np.uint64((q * C + c) * P + p)] = patch[i, j, k]
                    q += 1


@cpu_kernel(parallel=False)
def _separable(patch, Td, Th, Tw, tmp):
    """patch <- (Td x Th x Tw) patch in place; Tx are square (input side) or
    the first rows are used (output side: result in patch[:md, :mh, :mw])."""
    aD, aH, aW = patch.shape
    rD, rH, rW = Td.shape[0], Th.shape[0], Tw.shape[0]
    # along W
    for i in range(aD):
        for j in range(aH):
            for r in range(rW):
                s = patch.dtype.type(0)
                for k in range(aW):
                    s += Tw[r, k] * patch[i, j, k]
                tmp[i, j, r] = s
    # along H
    for i in range(aD):
        for k in range(rW):
            for r in range(rH):
                s = patch.dtype.type(0)
                for j in range(aH):
                    s += Th[r, j] * tmp[i, j, k]
                patch[i, r, k] = s
    # along D
    for j in range(rH):
        for k in range(rW):
            for r in range(rD):
                s = patch.dtype.type(0)
                for i in range(aD):
                    s += Td[r, i] * patch[i, j, k]
                tmp[r, j, k] = s
    for i in range(rD):
        for j in range(rH):
            for k in range(rW):
                patch[i, j, k] = tmp[i, j, k]


def transform_products(gemm_address, int_witness, U, V, M, groups, chunks):
    """M[q, g] = U[q, g] @ V[q, g] for every position q and group g (BLAS)."""
    run_in_chunks(_products_chunk, (gemm_address, int_witness, U, V, M, groups),
                  U.shape[0] * groups, chunks)


@cpu_kernel(parallel=False)
def _products_chunk(gemm_address, int_witness, U, V, M, groups, first_job, stop_job):
    cout_g = U.shape[1] // groups
    cin_g = U.shape[2]
    for job in range(first_job, stop_job):
        g = job % groups
        q = job // groups
        gemm(gemm_address, int_witness, U[q, g * cout_g:(g + 1) * cout_g],
             V[q, g * cin_g:(g + 1) * cin_g], M[q, g * cout_g:(g + 1) * cout_g], 0.0)


def output_transform(M, ATd, ATh, ATw, bias, tiles, first, out, chunks):
    """out tile of ``first + p`` = (ATd x ATh x ATw) M[:, co, p] + bias, cropped
    to the output (``bias`` empty: none)."""
    Co, P = M.shape[1], M.shape[2]
    run_in_chunks(_output_chunk, (M, ATd, ATh, ATw, bias, tiles[0], tiles[1], tiles[2],
                                  first, out), Co * P, chunks)


@cpu_kernel(parallel=False)
def _output_chunk(M, ATd, ATh, ATw, bias, tD, tH, tW, first, out, first_job, stop_job):
    Co, P = M.shape[1], M.shape[2]
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    aD, aH, aW = ATd.shape[1], ATh.shape[1], ATw.shape[1]
    mD, mH, mW = ATd.shape[0], ATh.shape[0], ATw.shape[0]
    patch = np.empty((aD, aH, aW), dtype=M.dtype)
    tmp = np.empty((aD, aH, aW), dtype=M.dtype)
    src = M.ravel()
    dst = out.ravel()
    for job in range(first_job, stop_job):
        co = job // P
        p = job % P
        tile = first + p
        tw = tile % tW
        th = (tile // tW) % tH
        td = (tile // (tW * tH)) % tD
        n = tile // (tW * tH * tD)
        q = 0
        for i in range(aD):
            for j in range(aH):
                for k in range(aW):
                    patch[i, j, k] = src[np.uint64((q * Co + co) * P + p)]
                    q += 1
        _separable(patch, ATd, ATh, ATw, tmp)
        b = bias[co] if bias.shape[0] else out.dtype.type(0)
        base = (n * Co + co) * OD * OH * OW
        for i in range(min(mD, OD - td * mD)):
            for j in range(min(mH, OH - th * mH)):
                row = base + ((td * mD + i) * OH + th * mH + j) * OW + tw * mW
                for k in range(min(mW, OW - tw * mW)):
                    dst[np.uint64(row + k)] = patch[i, j, k] + b
