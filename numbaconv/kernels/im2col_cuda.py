"""Implicit-GEMM im2col kernels for the GPU (``numba.cuda``).

All kernels work on the canonical 3-D form (see :mod:`numbaconv.spec`) of
C-contiguous device arrays: input ``x`` ``(N, C, D, H, W)``, weight ``w``
``(C_out, C_in/groups, KD, KH, KW)``, output ``(N, C_out, OD, OH, OW)``.
As on the CPU (:mod:`numbaconv.kernels.im2col_cpu`), the column matrix ``B``
of image ``n`` and group ``g`` has a row per weight tap ``k = (ci, kd, kh,
kw)`` (the C order of the weight's trailing axes, so the group's weight is a
plain ``(C_out/groups, K)`` matrix, ``K = C_in/groups * KD * KH * KW``) and
a column per output pixel ``p = (od, oh, ow)`` (``P = OD * OH * OW``).  Its
entry is the padded, input-dilated input, read through the padding maps of
:func:`numbaconv.padding.padding_maps`::

    B[k, p] = x[n, g * C_in/groups + ci, mD[od*sd + kd*dd], mH[oh*sh + kh*dh],
                mW[ow*sw + kw*dw]]     (zero where any map gives -1)

which covers every padding mode, negative padding (a crop) and input
dilation (transposed convolutions), so the kernels never see a spec.

* :func:`implicit_gemm_forward`: ``out[n, g] = activation(W_g @ B + bias +
  residual)`` (the epilogue at the store, Note [GPU epilogue] in
  kernels/epilogue_cuda.py);
* :func:`implicit_gemm_grad_weight`: ``grad_w[g] = sum_n G[n, g] @ B^T``;
* :func:`batched_gemm`: ``c[i] = a[i] @ b[i]`` (Winograd's transform-domain
  products);

all three built on one tiled micro-kernel (Note [implicit GEMM]).

Note [implicit GEMM]
~~~~~~~~~~~~~~~~~~~~
``B`` is never written to global memory (it is ``K`` times the input).  A
block computes one ``TILE_M x TILE_N`` tile of a product ``C = A @ B``
(sizes from :mod:`numbaconv.cuda.launch`) in steps of ``TILE_K``: at each
step its threads load a ``TILE_K x TILE_M`` slice of ``A`` (stored
transposed, k-major) and a ``TILE_K x TILE_N`` slice of ``B`` into shared
memory -- the slice of ``B`` gathered from the input through the maps, so
the gather happens once per tile element, not once per product -- wait at a
barrier, and multiply.  Each of the ``(TILE_M / THREAD_M) * (TILE_N /
THREAD_N)`` threads keeps a ``THREAD_M x THREAD_N`` block of ``C`` in
registers (``cuda.local.array``, indexed in unrolled loops) and, per ``k``, reads
``THREAD_M + THREAD_N`` shared values for ``THREAD_M * THREAD_N``
multiply-adds.  A thread's rows and columns are strided by the number of
threads along that axis, so the threads of a warp read neighbouring shared
words (no bank conflicts) and store neighbouring output pixels (coalesced).
Tiles past the edges of ``M``, ``N`` or ``K`` are zero-filled in shared
memory, so the products need no bounds checks; only the stores skip what
lies outside ``C``.  The shared ``A`` tile is one column wider than
``TILE_M`` (a skew), so that loads that walk ``k`` fastest -- along a
weight row, or along the pixels of a gradient row -- do not all hit one
memory bank.

The blocks' work is flattened into one index ``(batch, group, m-tile,
n-tile)``, n-tiles fastest, and at most :data:`MAX_BLOCKS` blocks stride
over it, so no grid dimension nears a CUDA limit whatever the problem.

The weight gradient is the same product with ``A = G_g`` (the output
gradient, ``C_out/groups x N*P``) and ``B^T`` (``N*P x K``): its reduction
runs over images and pixels, usually far longer than the ``C_out/groups x
K`` result has tiles.  It is split into at most :data:`MAX_SPLITS` chunks
(Note [deterministic split]) whose partial products are summed by a second
kernel.

Note [deterministic split]
~~~~~~~~~~~~~~~~~~~~~~~~~~
The number of reduction chunks and their bounds depend only on the problem
and tile sizes (never on the device, timing or atomics), each chunk is summed in
``TILE_K`` steps in index order by one thread per result element, and the
chunks are added in chunk order: the same sizes give the same bits on every
run and every GPU.  The workspace is ``splits * C_out * K`` values, at most
:data:`MAX_SPLITS` weights; a large weight has enough tiles on its own and
is not split.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda, types

from ..cuda import launch
from ..cuda.arrays import workspace
from ..cuda.device import device_function, unravel
from . import epilogue_cuda

#: Most blocks a launch gets; each strides over the flattened tile indices.
MAX_BLOCKS = 65535

#: Weight gradient (Note [deterministic split]): the reduction is split
#: until about this many blocks run ...
SPLIT_TARGET_BLOCKS = 512
#: ... each chunk keeping at least this many TILE_K steps (else the partial
#: sums cost more traffic than they save) ...
SPLIT_MIN_STEPS = 8
#: ... in at most this many chunks (the workspace is that many weights).
MAX_SPLITS = 64

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------

def implicit_gemm_forward(x, maps, w, bias, out, groups, stride3, dilation3, stream, *,
                          residual=None, activation=0, negative_slope=0.01):
    """Forward convolution as an implicit GEMM (Note [implicit GEMM]), with
    the fused epilogue at the store.

    Parameters
    ----------
    x : (N, C_in, D, H, W) device array
        The unpadded canonical input (of the input-dilated problem: the
        maps dilate it).
    maps : tuple of three int64 device arrays
        ``padding_maps(spec)`` of the D, H and W axes.
    w : (C_out, C_in/groups, KD, KH, KW) device array
    bias : (C_out,) device array, or None or empty for none (Note [no bias])
    out : (N, C_out, OD, OH, OW) device array
        Written in full.
    groups : int
    stride3, dilation3 : (3,) tuples of int
    stream : numba stream or 0
        Where the kernel runs (0: the default stream).
    residual : device array of ``out``'s size and layout, optional
    activation : int
        The activation code (0: none).
    negative_slope : float
        ``out = activation(conv + bias + residual)`` (Note [GPU epilogue] in
        kernels/epilogue_cuda.py).
    """
    _check_dtypes("implicit_gemm_forward", x, w, out, *(() if bias is None else (bias,)),
                  *(() if residual is None else (residual,)))
    N, Co = out.shape[:2]
    K = math.prod(w.shape[1:])
    P = math.prod(out.shape[2:])
    cout_g = Co // groups
    blocks = N * groups * _tiles(cout_g, launch.TILE_M) * _tiles(P, launch.TILE_N)
    if blocks == 0:
        return
    if bias is None:                      # an empty bias means none (no None in kernels)
        bias = cuda.device_array(0, dtype=out.dtype, stream=stream)
    map_d, map_h, map_w = maps
    kernel = _forward_kernel(np.dtype(out.dtype))
    kernel[_grid(blocks), _block(), stream](
        x, map_d, map_h, map_w, w.reshape(groups, cout_g, K), bias, out.reshape(N, Co, P),
        _geometry(w.shape, out.shape, stride3, dilation3),
        *epilogue_cuda.arguments(residual, activation, negative_slope, out, stream))


def implicit_gemm_grad_weight(x, maps, grad_output, out, groups, stride3, dilation3, stream):
    """Weight gradient as an implicit GEMM: ``out[g] = G_g @ B^T``.

    Deterministic (Note [deterministic split]).

    Parameters
    ----------
    x : (N, C_in, D, H, W) device array
        The forward convolution's unpadded canonical input.
    maps : tuple of three int64 device arrays
        ``padding_maps(spec)`` of the forward convolution.
    grad_output : (N, C_out, OD, OH, OW) device array
    out : (C_out, C_in/groups, KD, KH, KW) device array
        Written in full (zeros when ``N == 0``).
    groups : int
    stride3, dilation3 : (3,) tuples of int
    stream : numba stream or 0
    """
    _check_dtypes("implicit_gemm_grad_weight", x, grad_output, out)
    N, Co = grad_output.shape[:2]
    K = math.prod(out.shape[1:])
    P = math.prod(grad_output.shape[2:])
    cout_g = Co // groups
    tiles = groups * _tiles(cout_g, launch.TILE_M) * _tiles(K, launch.TILE_N)
    splits, steps = split_reduction(N * P, tiles)
    dtype = np.dtype(out.dtype)
    # one chunk writes the result itself; several write partial sums
    partial = (out.reshape(1, Co, K) if splits == 1
               else workspace((splits, Co, K), dtype, stream))
    map_d, map_h, map_w = maps
    kernel = _grad_weight_kernel(dtype)
    kernel[_grid(splits * tiles), _block(), stream](
        x, map_d, map_h, map_w, grad_output.reshape(N, Co, P), partial, groups,
        _geometry(out.shape, grad_output.shape, stride3, dilation3), steps)
    if splits > 1:
        _sum_kernel(dtype)[_grid(launch.blocks_for(Co * K)), launch.THREADS, stream](
            partial.reshape(splits, Co * K), out.reshape(Co * K))


def batched_gemm(a, b, c, stream):
    """``c[i] = a[i] @ b[i]`` for every ``i`` (the tiled scheme of Note
    [implicit GEMM] on plain matrices).

    Parameters
    ----------
    a : (B, M, K) device array
    b : (B, K, N) device array
    c : (B, M, N) device array
        Written in full (zeros when ``K == 0``).
    stream : numba stream or 0
    """
    _check_dtypes("batched_gemm", a, b, c)
    count, M, N = c.shape
    if a.shape != (count, M, a.shape[2]) or b.shape != (count, a.shape[2], N):
        raise ValueError(f"batched_gemm: shapes {a.shape} @ {b.shape} -> {c.shape} do not match")
    blocks = count * _tiles(M, launch.TILE_M) * _tiles(N, launch.TILE_N)
    if blocks == 0:
        return
    _batched_gemm_kernel(np.dtype(c.dtype))[_grid(blocks), _block(), stream](a, b, c)


def split_reduction(reduction, tiles):
    """``(splits, steps)``: the weight gradient's reduction of ``reduction``
    terms cut into ``splits`` chunks of ``steps`` TILE_K steps (the last one
    shorter), for a result of ``tiles`` tiles.  A function of the sizes
    alone (Note [deterministic split])."""
    total = -(-reduction // launch.TILE_K)
    splits = max(1, min(SPLIT_TARGET_BLOCKS // max(tiles, 1), total // SPLIT_MIN_STEPS,
                        MAX_SPLITS))
    steps = max(1, -(-total // splits))
    return max(1, -(-total // steps)), steps     # no empty chunk


def ptx_kernels():
    """Every kernel of the module as ``(name, python function, signature)``,
    for float32 and float64: the arguments of ``numba.cuda.compile_ptx``
    (the tests compile them for real hardware without a GPU).

    The kernels call ``@cuda.jit(device=True)`` helpers, which numba-cuda
    (0.30, ``CUDADispatcher.compile_device``) compiles for the compute
    capability of ``cuda.get_current_device()``, even inside
    ``compile_ptx``: without a CUDA driver, the caller must stand in for it
    (tests/test_gpu_im2col_kernels.py replaces
    ``numba.cuda.dispatcher.get_current_device`` with one reporting the
    target's capability, in a child process).
    """
    result = []
    for dtype in DTYPES:
        t = numba.from_dtype(dtype)
        maps = (types.int64[::1],) * 3
        geometry = types.UniTuple(types.int64, 11)
        for name, kernel, args in (
                ("implicit_gemm_forward", _forward_kernel(dtype),
                 (t[:, :, :, :, ::1], *maps, t[:, :, ::1], t[::1], t[:, :, ::1], geometry,
                  t[::1], types.int64, t)),
                ("implicit_gemm_grad_weight", _grad_weight_kernel(dtype),
                 (t[:, :, :, :, ::1], *maps, t[:, :, ::1], t[:, :, ::1], types.int64, geometry,
                  types.int64)),
                ("sum_splits", _sum_kernel(dtype), (t[:, ::1], t[::1])),
                ("batched_gemm", _batched_gemm_kernel(dtype),
                 (t[:, :, ::1], t[:, :, ::1], t[:, :, ::1]))):
            result.append((f"{name}[{dtype.name}]", kernel.py_func, types.void(*args)))
    return result


# ---------------------------------------------------------------------------
# launch helpers
# ---------------------------------------------------------------------------

def _check_dtypes(op, *arrays):
    dtype = np.dtype(arrays[0].dtype)
    if dtype not in DTYPES or any(np.dtype(a.dtype) != dtype for a in arrays):
        raise TypeError(f"{op}: arrays must all be float32 or all float64, got "
                        f"{[np.dtype(a.dtype).name for a in arrays]}")


def _tiles(size, tile):
    return -(-size // tile)


def _grid(blocks):
    return max(1, min(blocks, MAX_BLOCKS))


def _block():
    return (launch.TILE_M // launch.THREAD_M) * (launch.TILE_N // launch.THREAD_N)


def _geometry(weight_shape, output_shape, stride3, dilation3):
    """The ints the column gather needs, as one tuple argument."""
    return (*(int(k) for k in weight_shape[2:]), int(output_shape[3]), int(output_shape[4]),
            *(int(s) for s in stride3), *(int(d) for d in dilation3))


# ---------------------------------------------------------------------------
# device helpers: the micro-kernel and the tile loaders (Note [implicit GEMM])
# ---------------------------------------------------------------------------

@functools.cache
def _helpers():
    """The device functions shared by every kernel, closing over the tile
    sizes of :mod:`numbaconv.cuda.launch` as read now (compile-time
    constants: loop bounds the compiler unrolls)."""
    TILE_M, TILE_N, TILE_K = launch.TILE_M, launch.TILE_N, launch.TILE_K
    THREAD_M, THREAD_N = launch.THREAD_M, launch.THREAD_N
    ROW_THREADS = TILE_M // THREAD_M      # threads of a block along m
    COL_THREADS = TILE_N // THREAD_N      # and along n
    THREADS = ROW_THREADS * COL_THREADS
    assert ROW_THREADS * THREAD_M == TILE_M and COL_THREADS * THREAD_N == TILE_N
    device = device_function

    @device
    def clear(acc):
        for i in range(THREAD_M * THREAD_N):
            acc[i] = 0

    @device
    def multiply_tiles(a_tile, b_tile, acc, a_frag, b_frag, ty, tx):
        """acc += this thread's block of a_tile^T @ b_tile (both k-major)."""
        for kk in range(TILE_K):
            for i in range(THREAD_M):
                a_frag[i] = a_tile[kk, ty + i * ROW_THREADS]
            for j in range(THREAD_N):
                b_frag[j] = b_tile[kk, tx + j * COL_THREADS]
            for i in range(THREAD_M):
                for j in range(THREAD_N):
                    acc[i * THREAD_N + j] += a_frag[i] * b_frag[j]

    @device
    def add_bias(acc, bias, first_row, rows, m0, ty):
        """acc[i, :] += bias[first_row + m] for the thread's rows m < rows."""
        if bias.shape[0] > 0:
            for i in range(THREAD_M):
                m = m0 + ty + i * ROW_THREADS
                if m < rows:
                    for j in range(THREAD_N):
                        acc[i * THREAD_N + j] += bias[first_row + m]

    @device
    def store_tile(c, lead, first_row, rows, m0, n0, acc, ty, tx):
        """c[lead, first_row + m, n] = the thread's block, for m < rows and
        n < c.shape[2] (consecutive tx: consecutive n, coalesced)."""
        cols = c.shape[2]
        for i in range(THREAD_M):
            m = m0 + ty + i * ROW_THREADS
            if m < rows:
                for j in range(THREAD_N):
                    n = n0 + tx + j * COL_THREADS
                    if n < cols:
                        c[lead, first_row + m, n] = acc[i * THREAD_N + j]

    @device
    def load_rows(a_tile, a, lead, m0, k0, tid):
        """a_tile[kk, mm] = a[lead, m0 + mm, k0 + kk] (zero outside a):
        a row-major A, read along its rows (k fastest)."""
        rows, cols = a.shape[1], a.shape[2]
        for idx in range(tid, TILE_K * TILE_M, THREADS):
            kk = idx % TILE_K
            mm = idx // TILE_K
            m = m0 + mm
            k = k0 + kk
            if m < rows and k < cols:
                a_tile[kk, mm] = a[lead, m, k]
            else:
                a_tile[kk, mm] = 0

    @device
    def load_matrix(b_tile, b, lead, k0, n0, tid):
        """b_tile[kk, nn] = b[lead, k0 + kk, n0 + nn] (zero outside b),
        n fastest."""
        rows, cols = b.shape[1], b.shape[2]
        for idx in range(tid, TILE_K * TILE_N, THREADS):
            nn = idx % TILE_N
            kk = idx // TILE_N
            k = k0 + kk
            n = n0 + nn
            if k < rows and n < cols:
                b_tile[kk, nn] = b[lead, k, n]
            else:
                b_tile[kk, nn] = 0

    @device
    def tap_source(map_d, map_h, map_w, k, p, geometry):
        """(ci, id, ih, iw) that column-matrix entry (k, p) reads; id is -1
        when the entry is a zero (module docstring)."""
        KD, KH, KW, OH, OW, sd, sh, sw, dd, dh, dw = geometry
        ci, kd, kh, kw = unravel(k, KD, KH, KW)
        od, _, oh, ow = unravel(p, 1, OH, OW)
        id_ = map_d[od * sd + kd * dd]
        ih = map_h[oh * sh + kh * dh]
        iw = map_w[ow * sw + kw * dw]
        if ih < 0 or iw < 0:
            id_ = -1
        return ci, id_, ih, iw

    @device
    def load_columns(b_tile, x, map_d, map_h, map_w, n, c0, k0, K, p0, P, geometry, tid):
        """b_tile[kk, nn] = B[k0 + kk, p0 + nn] of image n, channels from
        c0 (zero outside B); pixels fastest (neighbouring input reads)."""
        for idx in range(tid, TILE_K * TILE_N, THREADS):
            nn = idx % TILE_N
            kk = idx // TILE_N
            k = k0 + kk
            p = p0 + nn
            value_set = False
            if k < K and p < P:
                ci, id_, ih, iw = tap_source(map_d, map_h, map_w, k, p, geometry)
                if id_ >= 0:
                    b_tile[kk, nn] = x[n, c0 + ci, id_, ih, iw]
                    value_set = True
            if not value_set:
                b_tile[kk, nn] = 0

    @device
    def load_columns_t(b_tile, x, map_d, map_h, map_w, c0, r0, r_stop, k0, K, P, geometry,
                       tid):
        """b_tile[kk, nn] = B^T[r0 + kk, k0 + nn] for the reduction index
        r = n * P + p < r_stop (zero beyond); r fastest (neighbouring
        pixels)."""
        for idx in range(tid, TILE_K * TILE_N, THREADS):
            kk = idx % TILE_K
            nn = idx // TILE_K
            r = r0 + kk
            k = k0 + nn
            value_set = False
            if r < r_stop and k < K:
                n = r // P
                ci, id_, ih, iw = tap_source(map_d, map_h, map_w, k, r - n * P, geometry)
                if id_ >= 0:
                    b_tile[kk, nn] = x[n, c0 + ci, id_, ih, iw]
                    value_set = True
            if not value_set:
                b_tile[kk, nn] = 0

    @device
    def load_gradients(a_tile, g, first_row, rows, m0, r0, r_stop, tid):
        """a_tile[kk, mm] = g[n, first_row + m0 + mm, p] for r = r0 + kk =
        n * P + p < r_stop and m0 + mm < rows (zero outside); r fastest
        (g's rows are contiguous in p)."""
        P = g.shape[2]
        for idx in range(tid, TILE_K * TILE_M, THREADS):
            kk = idx % TILE_K
            mm = idx // TILE_K
            r = r0 + kk
            m = m0 + mm
            if r < r_stop and m < rows:
                n = r // P
                a_tile[kk, mm] = g[n, first_row + m, r - n * P]
            else:
                a_tile[kk, mm] = 0

    return dict(clear=clear, multiply_tiles=multiply_tiles, add_bias=add_bias,
                store_tile=store_tile, load_rows=load_rows, load_matrix=load_matrix,
                load_columns=load_columns, load_columns_t=load_columns_t,
                load_gradients=load_gradients)


def _constants():
    """Tile sizes as the kernels' compile-time constants (read at factory
    time, so :func:`numbaconv.cuda.launch.use_small_blocks` before the first
    GPU call takes effect)."""
    col_threads = launch.TILE_N // launch.THREAD_N
    return (launch.TILE_M, launch.TILE_N, launch.TILE_K, launch.THREAD_M, launch.THREAD_N,
            col_threads)


# ---------------------------------------------------------------------------
# kernels (one factory per kernel, cached by dtype)
# ---------------------------------------------------------------------------

@functools.cache
def _forward_kernel(dtype):
    h = _helpers()
    clear, multiply_tiles, add_bias = h["clear"], h["multiply_tiles"], h["add_bias"]
    load_rows, load_columns = h["load_rows"], h["load_columns"]
    TILE_M, TILE_N, TILE_K, THREAD_M, THREAD_N, COL_THREADS = _constants()
    ACC = THREAD_M * THREAD_N
    SKEWED_M = TILE_M + 1             # the A tile's skew column (Note [implicit GEMM])
    ROW_THREADS = TILE_M // THREAD_M
    t = numba.from_dtype(dtype)
    finish = epilogue_cuda.finisher(dtype)

    @device_function
    def store_output(out, n, first_row, rows, m0, p0, acc, ty, tx, residual, code, slope):
        """store_tile's stores, each value through the epilogue at its flat
        output index (Note [GPU epilogue] in kernels/epilogue_cuda.py)."""
        Co, P = out.shape[1], out.shape[2]
        for i in range(THREAD_M):
            m = m0 + ty + i * ROW_THREADS
            if m < rows:
                row = (n * Co + first_row + m) * P
                for j in range(THREAD_N):
                    p = p0 + tx + j * COL_THREADS
                    if p < P:
                        out[n, first_row + m, p] = finish(acc[i * THREAD_N + j], residual,
                                                          row + p, code, slope)

    @cuda.jit
    def implicit_gemm_forward(x, map_d, map_h, map_w, w, bias, out, geometry, residual, code,
                              slope):
        """out[n, g*cout_g + m, p] = activation(sum_k w[g, m, k] * B_n,g[k, p]
        + bias + residual); w (groups, cout_g, K), out (N, C_out, P); blocks
        over (n, g, m-tile, p-tile)."""
        a_tile = cuda.shared.array((TILE_K, SKEWED_M), t)
        b_tile = cuda.shared.array((TILE_K, TILE_N), t)
        acc = cuda.local.array(ACC, t)
        a_frag = cuda.local.array(THREAD_M, t)
        b_frag = cuda.local.array(THREAD_N, t)
        groups, cout_g, K = w.shape
        N, P = out.shape[0], out.shape[2]
        cin_g = x.shape[1] // groups
        m_tiles = (cout_g + TILE_M - 1) // TILE_M
        n_tiles = (P + TILE_N - 1) // TILE_N
        tid = cuda.threadIdx.x
        ty = tid // COL_THREADS
        tx = tid % COL_THREADS
        for block in range(cuda.blockIdx.x, N * groups * m_tiles * n_tiles, cuda.gridDim.x):
            n, g, mt, nt = unravel(block, groups, m_tiles, n_tiles)
            m0 = mt * TILE_M
            p0 = nt * TILE_N
            clear(acc)
            for k0 in range(0, K, TILE_K):
                load_rows(a_tile, w, g, m0, k0, tid)
                load_columns(b_tile, x, map_d, map_h, map_w, n, g * cin_g, k0, K, p0, P,
                             geometry, tid)
                cuda.syncthreads()
                multiply_tiles(a_tile, b_tile, acc, a_frag, b_frag, ty, tx)
                cuda.syncthreads()          # before the next step overwrites the tiles
            add_bias(acc, bias, g * cout_g, cout_g, m0, ty)
            store_output(out, n, g * cout_g, cout_g, m0, p0, acc, ty, tx, residual, code,
                         slope)

    return implicit_gemm_forward


@functools.cache
def _grad_weight_kernel(dtype):
    h = _helpers()
    clear, multiply_tiles, store_tile = h["clear"], h["multiply_tiles"], h["store_tile"]
    load_gradients, load_columns_t = h["load_gradients"], h["load_columns_t"]
    TILE_M, TILE_N, TILE_K, THREAD_M, THREAD_N, COL_THREADS = _constants()
    ACC = THREAD_M * THREAD_N
    SKEWED_M = TILE_M + 1             # the A tile's skew column (Note [implicit GEMM])
    t = numba.from_dtype(dtype)

    @cuda.jit
    def implicit_gemm_grad_weight(x, map_d, map_h, map_w, g, partial, groups, geometry,
                                  steps):
        """partial[s, gr*cout_g + m, k] = sum over r = n*P + p in chunk s of
        g[n, gr*cout_g + m, p] * B_n,gr[k, p]; g (N, C_out, P), partial
        (splits, C_out, K), chunks of ``steps`` TILE_K steps; blocks over
        (s, gr, m-tile, k-tile)."""
        a_tile = cuda.shared.array((TILE_K, SKEWED_M), t)
        b_tile = cuda.shared.array((TILE_K, TILE_N), t)
        acc = cuda.local.array(ACC, t)
        a_frag = cuda.local.array(THREAD_M, t)
        b_frag = cuda.local.array(THREAD_N, t)
        splits, Co, K = partial.shape
        N, P = g.shape[0], g.shape[2]
        cout_g = Co // groups
        cin_g = x.shape[1] // groups
        R = N * P
        m_tiles = (cout_g + TILE_M - 1) // TILE_M
        n_tiles = (K + TILE_N - 1) // TILE_N
        tid = cuda.threadIdx.x
        ty = tid // COL_THREADS
        tx = tid % COL_THREADS
        for block in range(cuda.blockIdx.x, splits * groups * m_tiles * n_tiles,
                           cuda.gridDim.x):
            s, gr, mt, nt = unravel(block, groups, m_tiles, n_tiles)
            m0 = mt * TILE_M
            k0 = nt * TILE_N
            r_start = s * steps * TILE_K
            r_stop = min(R, r_start + steps * TILE_K)
            clear(acc)
            for r0 in range(r_start, r_stop, TILE_K):
                load_gradients(a_tile, g, gr * cout_g, cout_g, m0, r0, r_stop, tid)
                load_columns_t(b_tile, x, map_d, map_h, map_w, gr * cin_g, r0, r_stop, k0, K,
                               P, geometry, tid)
                cuda.syncthreads()
                multiply_tiles(a_tile, b_tile, acc, a_frag, b_frag, ty, tx)
                cuda.syncthreads()
            store_tile(partial, s, gr * cout_g, cout_g, m0, k0, acc, ty, tx)

    return implicit_gemm_grad_weight


@functools.cache
def _sum_kernel(dtype):
    @cuda.jit
    def sum_splits(partial, out):
        """out[i] = sum_s partial[s, i], s in order (Note [deterministic split])."""
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, out.shape[0], step):
            total = partial[0, i]
            for s in range(1, partial.shape[0]):
                total += partial[s, i]
            out[i] = total

    return sum_splits


@functools.cache
def _batched_gemm_kernel(dtype):
    h = _helpers()
    clear, multiply_tiles, store_tile = h["clear"], h["multiply_tiles"], h["store_tile"]
    load_rows, load_matrix = h["load_rows"], h["load_matrix"]
    TILE_M, TILE_N, TILE_K, THREAD_M, THREAD_N, COL_THREADS = _constants()
    ACC = THREAD_M * THREAD_N
    SKEWED_M = TILE_M + 1             # the A tile's skew column (Note [implicit GEMM])
    t = numba.from_dtype(dtype)

    @cuda.jit
    def batched_gemm(a, b, c):
        """c[i] = a[i] @ b[i]; blocks over (i, m-tile, n-tile)."""
        a_tile = cuda.shared.array((TILE_K, SKEWED_M), t)
        b_tile = cuda.shared.array((TILE_K, TILE_N), t)
        acc = cuda.local.array(ACC, t)
        a_frag = cuda.local.array(THREAD_M, t)
        b_frag = cuda.local.array(THREAD_N, t)
        count, M, N = c.shape
        K = a.shape[2]
        m_tiles = (M + TILE_M - 1) // TILE_M
        n_tiles = (N + TILE_N - 1) // TILE_N
        tid = cuda.threadIdx.x
        ty = tid // COL_THREADS
        tx = tid % COL_THREADS
        for block in range(cuda.blockIdx.x, count * m_tiles * n_tiles, cuda.gridDim.x):
            i, _, mt, nt = unravel(block, 1, m_tiles, n_tiles)
            m0 = mt * TILE_M
            n0 = nt * TILE_N
            clear(acc)
            for k0 in range(0, K, TILE_K):
                load_rows(a_tile, a, i, m0, k0, tid)
                load_matrix(b_tile, b, i, k0, n0, tid)
                cuda.syncthreads()
                multiply_tiles(a_tile, b_tile, acc, a_frag, b_frag, ty, tx)
                cuda.syncthreads()
            store_tile(c, i, 0, M, m0, n0, acc, ty, tx)

    return batched_gemm
