"""numba.cuda kernels of the Winograd algorithm: F(m, 3) input and output
transforms on the GPU, with the transform-domain products done by one
batched GEMM.

The same canonical 3-D form as the CPU kernels
(:mod:`numbaconv.kernels.winograd_cpu`): one transform matrix per axis,
a 1x1 identity on the unused axes of 1-D and 2-D problems, so one set of
kernels serves every rank.  Tiles are numbered ``p = ((n * tD + td) * tH +
th) * tW + tw`` over the images and the tile grid ``(tD, tH, tW)``; the
patch of tile ``(td, th, tw)`` starts at padded coordinate ``(td*mD,
th*mH, tw*mW)`` and is read through the padding maps (already extended
with -1 to whole tiles, ``extended_maps`` of
:mod:`numbaconv.kernels.winograd_weights`), so padding modes and partial edge
tiles need no code here.

Note [GPU Winograd]
~~~~~~~~~~~~~~~~~~~
Layouts, all C-contiguous (``Q = alphaD * alphaH * alphaW`` transform
positions, ``P`` tiles, ``g`` groups):

* ``V`` -- ``(Q, C_in, P)``: transformed input tiles, read by the GEMM as
  ``(Q*g, C_in/g, P)`` (a group's channels are consecutive, so that is a
  free reshape, and the transforms never look at groups);
* ``UT`` -- ``(Q, g, C_out/g, C_in/g)``: transformed weights, read as
  ``(Q*g, C_out/g, C_in/g)``.  This is the CPU's ``U``
  (``transformed_weight``, ``(Q, g, C_in/g, C_out/g)``, which
  :func:`winograd_conv` takes) with its last two axes swapped by a
  transpose kernel; a caller that keeps ``UT`` on the device
  (:func:`device_weight`) passes it with ``weight_transposed=True``;
* ``M`` -- ``(Q, C_out, P)``: the products, written by the GEMM as
  ``(Q*g, C_out/g, P)``: ``M[q, g] = UT[q, g] @ V[q, g]``.

So one batched GEMM call computes every transform position and group.

Why tiles innermost (the CPU puts channels innermost, Note
[channels-last transforms]): each transform runs one thread per (tile,
channel), and a warp's 32 threads should touch neighbouring addresses.
With the tile index fastest across threads, neighbouring threads hold
neighbouring tiles along W: in the input transform each load of a warp
reads one span of ``32 * mW`` values of an input row (the rest of a
patch row then comes from L1) and each store writes 32 consecutive
values of ``V[q, c, :]``; in the output transform the loads of
``M[q, co, :]`` are consecutive and the stores fill output rows side by
side.  With channels innermost (``V`` as ``(Q, P, C)``, the CPU's layout)
one side of each transform is a whole plane apart from thread to thread:
32 separate memory transactions per warp and access, on data that is
read or written exactly once.  The price is that the GEMM wants ``U^T``:
one extra pass over the transformed weights per call (none when the
caller keeps ``UT``), against ``V`` and ``M`` passes of ``Q * P * C``
values each.

Each thread keeps its tile in local memory (at most 6x6x6 = 216 values,
:data:`MAX_TILE`: local arrays need a compile-time size) and applies the
three 1-D transforms one after another: ``alpha`` multiply-adds per value
and axis instead of ``alpha^3`` for the whole Kronecker product.  The
transform matrices are tiny device arrays that every thread reads, so
they stay in cache.  Every sum starts from its first term, not from a
literal 0.0, so that the float32 kernels never promote to float64
arithmetic (a fraction of float32 speed on most GPUs; the PTX test
checks for it).

A NaN or infinity spreads over its whole tile through the transforms (as
on the CPU); callers route such inputs to another algorithm.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda, types

from ..cuda import launch
from ..cuda.arrays import workspace
from ..cuda.device import unravel
from . import epilogue_cuda
from .winograd_weights import axis_matrices, extended_maps, transformed_weight

#: Largest tile a thread holds: alpha = 6 (F(4, 3)) along three axes.
MAX_TILE = 6 * 6 * 6

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------
# host-side helpers: the device arguments of winograd_conv


def device_matrices(m, ndim, dtype, stream):
    """``((ATd, BTd), (ATh, BTh), (ATw, BTw))`` as device arrays of
    ``dtype``: F(m, 3) on the used axes, 1x1 identities on the others."""
    used = [a >= 3 - ndim for a in range(3)]
    return tuple(tuple(cuda.to_device(np.ascontiguousarray(t), stream=stream)
                       for t in (AT, BT))
                 for AT, _, BT in (axis_matrices(m, u, np.dtype(dtype)) for u in used))


def tile_grid(output_size3, ndim, m):
    """``(tD, tH, tW)``: tiles of ``m`` along the used axes, of 1 elsewhere."""
    used = [a >= 3 - ndim for a in range(3)]
    return tuple(-(-o // (m if u else 1)) for o, u in zip(output_size3, used))


def device_maps(spec, m, stream):
    """The padding maps of ``spec``, extended to whole F(m, 3) tiles, as
    int64 device arrays ``(mD, mH, mW)``."""
    used = [a >= 3 - spec.ndim for a in range(3)]
    grid = tile_grid(spec.output_size3, spec.ndim, m)
    return tuple(cuda.to_device(np.ascontiguousarray(mp, np.int64), stream=stream)
                 for mp in extended_maps(spec, grid, m, used))


def device_weight(weight, m, ndim, groups, stream):
    """``UT`` (Note [GPU Winograd]) of a host weight ``(C_out, C_in/g, kD, kH,
    kW)`` on the device: the CPU's cached transform ``U``, last two axes
    swapped; pass it to :func:`winograd_conv` with ``weight_transposed=True``."""
    U = transformed_weight(weight, m, ndim, groups)
    return cuda.to_device(np.ascontiguousarray(U.transpose(0, 1, 3, 2)), stream=stream)


# --------------------------------------------------------------------------
# the pipeline


def winograd_conv(x, maps, U, mats, bias, out, m, groups, gemm, stream, *,
                  weight_transposed=False, residual=None, activation=0, negative_slope=0.01):
    """``out = activation(conv(x, weight) + bias + residual)`` by F(m, 3)
    Winograd on the GPU (the epilogue in the output transform's store, Note
    [GPU epilogue] in kernels/epilogue_cuda.py).

    Parameters
    ----------
    x : (N, C, D, H, W) device array
    maps : (mD, mH, mW) int64 device arrays
        The padding maps extended to whole tiles (:func:`device_maps`).
    U : (Q, groups, C/g, C_out/g) device array
        The transformed weight in the CPU's layout (``transformed_weight``);
        with ``weight_transposed=True`` instead ``UT``, ``(Q, groups,
        C_out/g, C/g)`` (:func:`device_weight`; Note [GPU Winograd]).
    mats : ((ATd, BTd), (ATh, BTh), (ATw, BTw)) device arrays
        Per axis F(m, 3)'s ``AT`` ``(m, m+2)`` and ``BT`` ``(m+2, m+2)``, or
        1x1 identities on an unused axis (:func:`device_matrices`).
    bias : (C_out,) device array, or None or empty for none (Note [no bias])
    out : (N, C_out, OD, OH, OW) device array, written in full
    m : int
        The output tile size of the used axes (2 or 4).
    groups : int
    gemm : callable
        ``gemm(a, b, c, stream)``: ``c[i] = a[i] @ b[i]`` on C-contiguous
        device arrays, ``(B, M, K) x (B, K, N) -> (B, M, N)``
        (``im2col_cuda.batched_gemm``).
    stream : numba stream or 0
    residual : device array of ``out``'s size and layout, optional
    activation : int
        The activation code (0: none).
    negative_slope : float

    Allocates ``V`` and ``M``, ``Q * P * (C + C_out)`` values for the whole
    batch at once (``P`` tiles); a caller with a workspace limit can split
    the batch (``x[n0:n1]`` and ``out[n0:n1]`` are contiguous views).
    """
    if out.size == 0:
        return out
    AT = tuple(pair[0] for pair in mats)
    BT = tuple(pair[1] for pair in mats)
    alphas = tuple(t.shape[0] for t in BT)
    sizes = tuple(t.shape[0] for t in AT)
    if any(s not in (1, m) or a != (s + 2 if s > 1 else 1) or t.shape[1] != a
           for a, s, t in zip(alphas, sizes, AT)):
        raise ValueError(f"winograd_conv: transform matrices BT {[t.shape for t in BT]}, "
                         f"AT {[t.shape for t in AT]} are not F({m}, 3) or 1x1 identities")
    N, C = x.shape[0], x.shape[1]
    Co = out.shape[1]
    Q = math.prod(alphas)
    cin_g, cout_g = C // groups, Co // groups
    expected = (Q, groups) + ((cout_g, cin_g) if weight_transposed else (cin_g, cout_g))
    if tuple(U.shape) != expected or C % groups or Co % groups:
        raise ValueError(f"winograd_conv: {'UT' if weight_transposed else 'U'} has shape "
                         f"{tuple(U.shape)}, expected {expected}")
    if weight_transposed:
        UT = U
    else:
        UT = workspace((Q, groups, cout_g, cin_g), U.dtype, stream)
        transpose_matrices(U.reshape(Q * groups, cin_g, cout_g),
                           UT.reshape(Q * groups, cout_g, cin_g), stream)
    tiles = tuple(-(-o // s) for o, s in zip(out.shape[2:], sizes))
    P = N * math.prod(tiles)
    V = workspace((Q, C, P), out.dtype, stream)
    M = workspace((Q, Co, P), out.dtype, stream)
    input_transform(x, *maps, *BT, tiles, V, stream)
    gemm(UT.reshape(Q * groups, cout_g, cin_g), V.reshape(Q * groups, cin_g, P),
         M.reshape(Q * groups, cout_g, P), stream)
    output_transform(M, *AT, bias, tiles, out, stream, residual=residual,
                     activation=activation, negative_slope=negative_slope)
    return out


def transpose_matrices(src, dst, stream):
    """``dst[b] = src[b].T`` for ``src`` ``(B, R, S)`` and ``dst`` ``(B, S, R)``."""
    if dst.size == 0:
        return
    kernel = _transpose_kernel(np.dtype(dst.dtype))
    kernel[launch.blocks_for(dst.size), launch.THREADS, stream](src, dst)


def input_transform(x, mD, mH, mW, BTd, BTh, BTw, tiles, V, stream):
    """``V[:, c, p]`` = (BTd x BTh x BTw) applied to the patch of tile ``p``
    of channel ``c`` (read through the maps), ``V`` ``(Q, C, P)``.  One
    thread per (tile, channel), tiles fastest (Note [GPU Winograd])."""
    count = V.shape[1] * V.shape[2]
    if count == 0:
        return
    kernel = _input_kernel(np.dtype(V.dtype))
    kernel[launch.blocks_for(count), launch.THREADS, stream](
        x, mD, mH, mW, BTd, BTh, BTw, tiles[0], tiles[1], tiles[2], V)


def output_transform(M, ATd, ATh, ATw, bias, tiles, out, stream, *, residual=None,
                     activation=0, negative_slope=0.01):
    """The output tile of ``p`` and channel ``co`` = activation((ATd x ATh x
    ATw) ``M[:, co, p]`` + ``bias[co]`` + residual) (bias None or empty: none;
    residual None: none; activation a code, 0: none), cropped at the
    output's edges; ``M`` ``(Q, C_out, P)``.  One thread per (tile,
    channel)."""
    count = M.shape[1] * M.shape[2]
    if count == 0:
        return
    if bias is None:
        # an empty bias means none (as on the CPU): one compiled kernel
        # serves both cases, and compile_ptx gets one signature
        bias = cuda.device_array(0, dtype=out.dtype, stream=stream)
    kernel = _output_kernel(np.dtype(M.dtype))
    kernel[launch.blocks_for(count), launch.THREADS, stream](
        M, ATd, ATh, ATw, bias, tiles[0], tiles[1], tiles[2], out,
        *epilogue_cuda.arguments(residual, activation, negative_slope, out, stream))


# --------------------------------------------------------------------------
# kernels


@functools.cache
def _transpose_kernel(dtype):
    # keyed by dtype like the others: one kernel object per dtype, whose
    # compiled specialisations ptx_kernels() names
    @cuda.jit
    def winograd_transpose_matrices(src, dst):
        B, S, R = dst.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        # dst's last axis fastest across threads: coalesced writes, reads a
        # row apart.  One pass over the weights per call: a shared-memory
        # tiled transpose would not pay for itself.
        for i in range(start, B * S * R, step):
            b = i // (S * R)
            rest = i - b * S * R
            s = rest // R
            r = rest - s * R
            dst[b, s, r] = src[b, r, s]

    return winograd_transpose_matrices


@functools.cache
def _input_kernel(dtype):
    local_type = numba.from_dtype(dtype)

    @cuda.jit
    def winograd_input_transform(x, mapD, mapH, mapW, BTd, BTh, BTw, tD, tH, tW, V):
        C = x.shape[1]
        P = V.shape[2]
        aD, aH, aW = BTd.shape[0], BTh.shape[0], BTw.shape[0]
        # tile strides: alpha - 2 outputs per tile on a used axis, 1 elsewhere
        sD = aD - 2 if aD > 1 else 1
        sH = aH - 2 if aH > 1 else 1
        sW = aW - 2 if aW > 1 else 1
        plane = aH * aW
        d = cuda.local.array(MAX_TILE, local_type)
        t = cuda.local.array(MAX_TILE, local_type)
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, C * P, step):
            c = i // P
            p = i - c * P
            n, td, th, tw = unravel(p, tD, tH, tW)
            # the patch, through the maps (-1: a zero of the padding or of
            # the tile extension): d[a, b, k]
            for a in range(aD):
                z = mapD[td * sD + a]
                for b in range(aH):
                    y = mapH[th * sH + b]
                    base = (a * aH + b) * aW
                    for k in range(aW):
                        w = mapW[tw * sW + k]
                        if z < 0 or y < 0 or w < 0:
                            d[base + k] = 0
                        else:
                            d[base + k] = x[n, c, z, y, w]
            # along W: t[a, b, k] = sum_j BTw[k, j] d[a, b, j]
            for ab in range(aD * aH):
                row = ab * aW
                for k in range(aW):
                    s = BTw[k, 0] * d[row]
                    for j in range(1, aW):
                        s += BTw[k, j] * d[row + j]
                    t[row + k] = s
            # along H: d[a, k, w] = sum_j BTh[k, j] t[a, j, w]
            for a in range(aD):
                for k in range(aH):
                    for w in range(aW):
                        s = BTh[k, 0] * t[a * plane + w]
                        for j in range(1, aH):
                            s += BTh[k, j] * t[a * plane + j * aW + w]
                        d[a * plane + k * aW + w] = s
            # along D, straight into V[q, c, p]
            for k in range(aD):
                for hw in range(plane):
                    s = BTd[k, 0] * d[hw]
                    for j in range(1, aD):
                        s += BTd[k, j] * d[j * plane + hw]
                    V[k * plane + hw, c, p] = s

    return winograd_input_transform


@functools.cache
def _output_kernel(dtype):
    local_type = numba.from_dtype(dtype)
    finish = epilogue_cuda.finisher(dtype)

    @cuda.jit
    def winograd_output_transform(M, ATd, ATh, ATw, bias, tD, tH, tW, out, residual, code,
                                  slope):
        Co = M.shape[1]
        P = M.shape[2]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        aD, aH, aW = ATd.shape[1], ATh.shape[1], ATw.shape[1]
        mD, mH, mW = ATd.shape[0], ATh.shape[0], ATw.shape[0]
        has_bias = bias.shape[0] > 0
        t1 = cuda.local.array(MAX_TILE, local_type)
        t2 = cuda.local.array(MAX_TILE, local_type)
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, Co * P, step):
            co = i // P
            p = i - co * P
            n, td, th, tw = unravel(p, tD, tH, tW)
            # along W, straight from M[q, co, p]: t1[a, b, k] for k < mW
            for ab in range(aD * aH):
                for k in range(mW):
                    s = ATw[k, 0] * M[ab * aW, co, p]
                    for j in range(1, aW):
                        s += ATw[k, j] * M[ab * aW + j, co, p]
                    t1[ab * mW + k] = s
            # along H: t2[a, k, w] = sum_j ATh[k, j] t1[a, j, w]
            for a in range(aD):
                for k in range(mH):
                    for w in range(mW):
                        s = ATh[k, 0] * t1[a * aH * mW + w]
                        for j in range(1, aH):
                            s += ATh[k, j] * t1[(a * aH + j) * mW + w]
                        t2[(a * mH + k) * mW + w] = s
            # along D, then bias and the epilogue (Note [GPU epilogue] in
            # kernels/epilogue_cuda.py), into the part of the tile inside the output
            od0, oh0, ow0 = td * mD, th * mH, tw * mW
            for k in range(min(mD, OD - od0)):
                for hw in range(mH * mW):
                    kh = hw // mW
                    kw = hw - kh * mW
                    if oh0 + kh < OH and ow0 + kw < OW:
                        s = ATd[k, 0] * t2[hw]
                        for j in range(1, aD):
                            s += ATd[k, j] * t2[j * mH * mW + hw]
                        if has_bias:
                            s += bias[co]
                        flat = (((n * Co + co) * OD + od0 + k) * OH + oh0 + kh) * OW + ow0 + kw
                        out[n, co, od0 + k, oh0 + kh, ow0 + kw] = finish(s, residual, flat,
                                                                          code, slope)

    return winograd_output_transform


# --------------------------------------------------------------------------
# ahead-of-time compilation (tests compile these for real hardware)


def ptx_kernels():
    """``(name, python_function, signature)`` of every kernel, float32 and
    float64, for ``numba.cuda.compile_ptx``: the signatures are those that
    the launches above get from C-contiguous device arrays."""
    result = []
    for dtype in _DTYPES:
        dt = numba.from_dtype(dtype)
        arr = lambda nd, t=dt: types.Array(t, nd, "C")  # noqa: E731
        index = types.Array(types.int64, 1, "C")
        i64 = types.int64
        result.append((f"winograd_transpose_matrices[{dtype.name}]",
                       _transpose_kernel(dtype).py_func, types.void(arr(3), arr(3))))
        result.append((f"winograd_input_transform[{dtype.name}]", _input_kernel(dtype).py_func,
                       types.void(arr(5), index, index, index, arr(2), arr(2), arr(2),
                                  i64, i64, i64, arr(3))))
        result.append((f"winograd_output_transform[{dtype.name}]",
                       _output_kernel(dtype).py_func,
                       types.void(arr(3), arr(2), arr(2), arr(2), arr(1), i64, i64, i64,
                                  arr(5), arr(1), i64, dt)))
    return result
