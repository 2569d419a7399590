"""Direct convolution kernels for the GPU (``numba.cuda``).

Canonical arrays as on the CPU (:mod:`numbaconv.spec`): input ``(N, C, D, H,
W)``, weight ``(C_out, C_in/groups, KD, KH, KW)``, output ``(N, C_out, OD,
OH, OW)``, all C-contiguous device arrays.  Padding, negative padding and
input dilation are read through the padding maps (:mod:`numbaconv.padding`:
per axis, padded coordinate -> input index, or -1 for a zero), so one kernel
serves every forward spec: the padded input at output ``o`` and tap ``k`` is
``x[map(o * stride + k * dilation)]``.

Note [GPU direct tiles]
~~~~~~~~~~~~~~~~~~~~~~~
``conv_tiled``: a block computes a DIRECT_TILE_H x DIRECT_TILE_W patch of
output pixels of one image and depth slice for DIRECT_CO output channels of
one group.  For each input channel and depth tap it stages the input window
the patch reads -- ``(TILE_H - 1) * stride + (KH - 1) * dilation + 1`` rows
of the analogous width, gathered once through the maps -- and the block's
weights of that channel and depth tap in shared memory; every thread then
computes DIRECT_THREAD_CO channels x DIRECT_THREAD_W neighbouring pixels in
registers, reading each staged input value once per tap for all its
channels.  A 3x3 stride-1 layer reads each input value from global memory
about once per block instead of nine times per output channel.  Layers whose
window or weight slab does not fit the shared arrays (large kernels, large
dilation) take ``conv_naive``, one thread per output, which is also the
baseline the tiled kernel is measured against.

``grad_weight_reduce``: one block per weight element, its threads striding
over (image, output pixel) pairs and a shared-memory tree reduction in a
fixed order: the same bits for any launch of the same sizes.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda, types

from ..cuda import launch
from . import epilogue_cuda


@functools.cache
def _naive_kernel(dtype_name):
    finish = epilogue_cuda.finisher(np.dtype(dtype_name))

    @cuda.jit
    def conv_naive(x, mD, mH, mW, w, bias, out, groups, sd, sh, sw, dd, dh, dw, zero,
                   residual, code, slope):
        """out = activation(conv(x, w) + bias + residual), one thread per output
        element (grid-stride; Note [GPU epilogue] in kernels/epilogue_cuda.py)."""
        N, Co, OD, OH, OW = out.shape
        cin_g, KD, KH, KW = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
        cout_g = Co // groups
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, N * Co * OD * OH * OW, step):
            ow = i % OW
            oh = (i // OW) % OH
            od = (i // (OW * OH)) % OD
            co = (i // (OW * OH * OD)) % Co
            n = i // (OW * OH * OD * Co)
            c0 = (co // cout_g) * cin_g
            acc = zero
            for ci in range(cin_g):
                for kd in range(KD):
                    idd = mD[od * sd + kd * dd]
                    if idd < 0:
                        continue
                    for kh in range(KH):
                        ih = mH[oh * sh + kh * dh]
                        if ih < 0:
                            continue
                        for kw in range(KW):
                            iw = mW[ow * sw + kw * dw]
                            if iw >= 0:
                                acc += x[n, c0 + ci, idd, ih, iw] * w[co, ci, kd, kh, kw]
            if bias.shape[0] > 0:
                acc += bias[co]
            out[n, co, od, oh, ow] = finish(acc, residual, i, code, slope)
    return conv_naive


def tiled_fits(kernel_size3, stride3, dilation3):
    """Whether ``conv_tiled`` serves these sizes (Note [GPU direct tiles])."""
    _, KH, KW = kernel_size3
    wh = (launch.DIRECT_TILE_H - 1) * stride3[1] + (KH - 1) * dilation3[1] + 1
    ww = (launch.DIRECT_TILE_W - 1) * stride3[2] + (KW - 1) * dilation3[2] + 1
    return wh * ww <= launch.DIRECT_WINDOW and launch.DIRECT_CO * KH * KW <= launch.DIRECT_WINDOW


@functools.cache
def _tiled_kernel(dtype_name):
    TH, TW, CO = launch.DIRECT_TILE_H, launch.DIRECT_TILE_W, launch.DIRECT_CO
    RC, RW = launch.DIRECT_THREAD_CO, launch.DIRECT_THREAD_W
    WINDOW = launch.DIRECT_WINDOW
    PIXEL_THREADS = TH * (TW // RW)
    ACC = RC * RW                          # a constant: local array sizes must be
    nbtype = np.dtype(dtype_name)         # NumPy dtypes: numba-cuda's own type objects
    finish = epilogue_cuda.finisher(nbtype)

    @cuda.jit
    def conv_tiled(x, mD, mH, mW, w, bias, out, groups, sd, sh, sw, dd, dh, dw, zero,
                   residual, code, slope):
        """Note [GPU direct tiles]; block = PIXEL_THREADS * (CO / RC) threads; the
        epilogue at the store (Note [GPU epilogue] in kernels/epilogue_cuda.py)."""
        N, Co, OD, OH, OW = out.shape
        cin_g = w.shape[1]
        KD, KH, KW = w.shape[2], w.shape[3], w.shape[4]
        cout_g = Co // groups
        tiles_h = (OH + TH - 1) // TH
        tiles_w = (OW + TW - 1) // TW
        co_blocks = (cout_g + CO - 1) // CO
        WH = (TH - 1) * sh + (KH - 1) * dh + 1
        WW = (TW - 1) * sw + (KW - 1) * dw + 1
        window = cuda.shared.array(WINDOW, nbtype)
        weights = cuda.shared.array(WINDOW, nbtype)
        acc = cuda.local.array(ACC, nbtype)
        t = cuda.threadIdx.x
        threads = cuda.blockDim.x
        # this thread's channels and pixels inside the block's tile
        c_first = (t // PIXEL_THREADS) * RC
        q = t % PIXEL_THREADS
        ph = q // (TW // RW)
        pw = (q % (TW // RW)) * RW
        for block in range(cuda.blockIdx.x, N * OD * groups * co_blocks * tiles_h * tiles_w,
                           cuda.gridDim.x):
            tw_ = block % tiles_w
            th_ = (block // tiles_w) % tiles_h
            cb = (block // (tiles_w * tiles_h)) % co_blocks
            g = (block // (tiles_w * tiles_h * co_blocks)) % groups
            od = (block // (tiles_w * tiles_h * co_blocks * groups)) % OD
            n = block // (tiles_w * tiles_h * co_blocks * groups * OD)
            oh0, ow0 = th_ * TH, tw_ * TW
            co0 = g * cout_g + cb * CO              # first output channel of the block
            ncos = min(CO, (g + 1) * cout_g - co0)
            for r in range(ACC):
                acc[r] = zero
            for ci in range(cin_g):
                c = g * cin_g + ci
                for kd in range(KD):
                    idd = mD[od * sd + kd * dd]
                    cuda.syncthreads()              # the previous slab is used up
                    # the input window of the tile, through the maps
                    for e in range(t, WH * WW, threads):
                        ih = mH[oh0 * sh + e // WW] if oh0 * sh + e // WW < mH.shape[0] else -1
                        iw = mW[ow0 * sw + e % WW] if ow0 * sw + e % WW < mW.shape[0] else -1
                        window[e] = (x[n, c, idd, ih, iw] if idd >= 0 and ih >= 0 and iw >= 0
                                     else zero)
                    # the weights of the block's channels, this input channel and depth tap
                    for e in range(t, CO * KH * KW, threads):
                        cc = e // (KH * KW)
                        weights[e] = (w[co0 + cc, ci, kd, (e // KW) % KH, e % KW]
                                      if cc < ncos else zero)
                    cuda.syncthreads()
                    for kh in range(KH):
                        row = (ph * sh + kh * dh) * WW
                        for kw in range(KW):
                            for j in range(RW):
                                v = window[row + (pw + j) * sw + kw * dw]
                                for r in range(RC):
                                    acc[r * RW + j] += v * weights[((c_first + r) * KH + kh) * KW
                                                                   + kw]
            oh = oh0 + ph
            if oh < OH and c_first < ncos:
                for r in range(RC):
                    co = co0 + c_first + r
                    if c_first + r < ncos:
                        b = bias[co] if bias.shape[0] > 0 else zero
                        row0 = (((n * Co + co) * OD + od) * OH + oh) * OW + ow0 + pw
                        for j in range(RW):
                            if ow0 + pw + j < OW:
                                out[n, co, od, oh, ow0 + pw + j] = finish(
                                    acc[r * RW + j] + b, residual, row0 + j, code, slope)
    return conv_tiled


def tiled_threads():
    """Threads per block of ``conv_tiled``."""
    return (launch.DIRECT_TILE_H * (launch.DIRECT_TILE_W // launch.DIRECT_THREAD_W)
            * (launch.DIRECT_CO // launch.DIRECT_THREAD_CO))


def conv_forward(x, maps, w, bias, out, groups, stride3, dilation3, stream, tiled=True, *,
                 residual=None, activation=0, negative_slope=0.01):
    """Direct forward convolution into ``out`` (module docstring); ``bias``
    ``(C_out,)``, or None or empty for none (Note [no bias] in
    kernels/__init__.py).  ``tiled`` picks Note [GPU direct tiles] (the
    caller checks :func:`tiled_fits`), else one thread per output.
    ``residual`` (None, or a device array of ``out``'s size and layout),
    ``activation`` (a code, 0: none) and ``negative_slope``: the fused
    epilogue, ``out = activation(conv + bias + residual)`` (Note [GPU
    epilogue] in kernels/epilogue_cuda.py)."""
    if out.size == 0:
        return
    zero = out.dtype.type(0)
    b = bias if bias is not None else cuda.device_array(0, dtype=out.dtype, stream=stream)
    epilogue = epilogue_cuda.arguments(residual, activation, negative_slope, out, stream)
    args = (x, *maps, w, b, out, groups, *stride3, *dilation3, zero, *epilogue)
    if tiled:
        N, Co, OD, OH, OW = out.shape
        blocks = (N * OD * groups * -(-(Co // groups) // launch.DIRECT_CO)
                  * -(-OH // launch.DIRECT_TILE_H) * -(-OW // launch.DIRECT_TILE_W))
        _tiled_kernel(out.dtype.name)[min(blocks, 2**31 - 1), tiled_threads(), stream](*args)
    else:
        _naive_kernel(out.dtype.name)[min(launch.blocks_for(out.size), 2**31 - 1),
                                      launch.THREADS, stream](*args)


@functools.cache
def _reduce_kernel(dtype_name):
    THREADS = launch.REDUCE_THREADS
    nbtype = np.dtype(dtype_name)

    @cuda.jit
    def grad_weight_reduce(x, mD, mH, mW, g, out, groups, sd, sh, sw, dd, dh, dw, zero):
        """out[co, ci, k] = sum_{n, o} g[n, co, o] * xpad[n, c, o * s + k * d]; one
        block per weight element, THREADS threads (Note [GPU direct tiles])."""
        Co, cin_g, KD, KH, KW = out.shape
        N, OD, OH, OW = g.shape[0], g.shape[2], g.shape[3], g.shape[4]
        cout_g = Co // groups
        partial = cuda.shared.array(THREADS, nbtype)
        t = cuda.threadIdx.x
        P = OD * OH * OW
        for e in range(cuda.blockIdx.x, out.size, cuda.gridDim.x):
            kw = e % KW
            kh = (e // KW) % KH
            kd = (e // (KW * KH)) % KD
            ci = (e // (KW * KH * KD)) % cin_g
            co = e // (KW * KH * KD * cin_g)
            c = (co // cout_g) * cin_g + ci
            acc = zero
            for i in range(t, N * P, THREADS):
                ow = i % OW
                oh = (i // OW) % OH
                od = (i // (OW * OH)) % OD
                n = i // P
                idd = mD[od * sd + kd * dd]
                ih = mH[oh * sh + kh * dh]
                iw = mW[ow * sw + kw * dw]
                if idd >= 0 and ih >= 0 and iw >= 0:
                    acc += g[n, co, od, oh, ow] * x[n, c, idd, ih, iw]
            partial[t] = acc
            cuda.syncthreads()
            half = THREADS // 2
            while half > 0:                  # THREADS is a power of two
                if t < half:
                    partial[t] += partial[t + half]
                cuda.syncthreads()
                half //= 2
            if t == 0:
                out[co, ci, kd, kh, kw] = partial[0]
            cuda.syncthreads()               # partial[0] read before the next element
    return grad_weight_reduce


def grad_weight(x, maps, grad_output, out, groups, stride3, dilation3, stream):
    """The weight gradient into ``out`` (C_out, C_in/g, KD, KH, KW), every
    element written (zeros for an empty batch)."""
    if out.size == 0:
        return
    kernel = _reduce_kernel(out.dtype.name)
    kernel[min(out.size, 2**31 - 1), launch.REDUCE_THREADS, stream](
        x, *maps, grad_output, out, groups, *stride3, *dilation3, out.dtype.type(0))


def ptx_kernels():
    """``(name, python function, signature)`` of every kernel, float32 and
    float64, for ``numba.cuda.compile_ptx``."""
    found = []
    for dtype_name, nb in (("float32", types.float32), ("float64", types.float64)):
        a5 = types.Array(nb, 5, "C")
        a1 = types.Array(nb, 1, "C")
        m = types.Array(types.int64, 1, "C")
        i = types.int64
        # ... zero, then the epilogue: flat residual, activation code, slope
        conv = (a5, m, m, m, a5, a1, a5, i, i, i, i, i, i, i, nb, a1, i, nb)
        found.append((f"conv_naive_{dtype_name}", _naive_kernel(dtype_name).py_func, conv))
        found.append((f"conv_tiled_{dtype_name}", _tiled_kernel(dtype_name).py_func, conv))
        found.append((f"grad_weight_reduce_{dtype_name}", _reduce_kernel(dtype_name).py_func,
                      (a5, m, m, m, a5, a5, i, i, i, i, i, i, i, nb)))
    return found

