"""FFT convolution on the GPU through CuPy's cuFFT (the ``gpu-fft`` extra).

CuPy wraps the numba device arrays without a copy (``__cuda_array_interface__``).
One call: the padded input is gathered through the padding maps (a
trailing zero slot per axis stands for every -1), whole planes are
transformed (``rfftn`` over the spatial axes at the padded size), the
channels contracted per group in the frequency domain against the
conjugated spectrum of the dilated weight (a correlation), transformed
back, and the strided outputs of the wrap-free part written by one numba
kernel, :func:`store` (``fft_store``), that adds the bias and applies the
fused epilogue on the way (Note [GPU epilogue] in kernels/epilogue_cuda.py):
the strided crop, the bias, the residual, the activation and the cast to
the output's dtype are one pass over the output, where CuPy's elementwise
operations would be one pass each (and CuPy has no ``erf`` outside
``cupyx.scipy``).  No tiling: on a GPU the planes of ordinary layers fit,
and cuFFT's batched plans want whole planes.  The CuPy part is verified
only on a GPU machine with CuPy (scripts/gpu_check.py); the tests run it
with NumPy standing in for CuPy, and :func:`store` under the simulator.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda, types

from ..cuda import launch
from . import epilogue_cuda


def _cupy_stream(stream):
    import cupy
    handle = getattr(stream, "handle", 0) if stream else 0
    handle = getattr(handle, "value", handle)
    return cupy.cuda.ExternalStream(int(handle or 0))


def fft_forward(spec, x, weight, bias, out, maps, stream, *, residual=None, activation=0,
                negative_slope=0.01):
    """``out = activation(conv(x, weight) + bias + residual)`` for a forward
    spec (any padding mode, input dilation or negative padding: through
    ``maps``), on canonical device arrays; ``residual`` None or of ``out``'s
    size and layout, ``activation`` a code (0: none)."""
    import cupy as cp

    with _cupy_stream(stream):
        xs = cp.asarray(x)
        N, C, D, H, W = xs.shape
        zero_slotted = cp.zeros((N, C, D + 1, H + 1, W + 1), dtype=xs.dtype)
        zero_slotted[:, :, :D, :H, :W] = xs
        index = [cp.where(cp.asarray(m) < 0, size, cp.asarray(m))
                 for m, size in zip(maps, (D, H, W))]
        padded = zero_slotted[:, :, index[0]][:, :, :, index[1]][:, :, :, :, index[2]]
        lengths = padded.shape[2:]
        w = cp.asarray(weight)
        dd, dh, dw = spec.dilation3
        KD, KH, KW = w.shape[2:]
        dilated = cp.zeros(w.shape[:2] + ((KD - 1) * dd + 1, (KH - 1) * dh + 1,
                                          (KW - 1) * dw + 1), dtype=w.dtype)
        dilated[:, :, ::dd, ::dh, ::dw] = w
        axes = (2, 3, 4)
        xf = cp.fft.rfftn(padded, s=lengths, axes=axes)
        wf = cp.conj(cp.fft.rfftn(dilated, s=lengths, axes=axes))
        g, cin_g, cout_g = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
        xf = xf.reshape((N, g, cin_g) + xf.shape[2:])
        wf = wf.reshape((g, cout_g, cin_g) + wf.shape[2:])
        yf = cp.einsum("ngcdhw,gocdhw->ngodhw", xf, wf).reshape((N, g * cout_g) + xf.shape[3:])
        y = cp.ascontiguousarray(cp.fft.irfftn(yf, s=lengths, axes=axes))
    # on the same stream, after the CuPy work queued above
    store(y, bias, out, spec.stride3, stream, residual=residual, activation=activation,
          negative_slope=negative_slope)


def store(y, bias, out, stride3, stream, *, residual=None, activation=0, negative_slope=0.01):
    """``out[n, c, o] = activation(y[n, c, o * stride] + bias[c] +
    residual[n, c, o])``, ``y`` the C-contiguous full correlation ``(N, C_out,
    LD, LH, LW)`` (any object with ``__cuda_array_interface__``), ``bias``
    None or empty for none; cast to ``out``'s dtype."""
    if out.size == 0:
        return
    dtype = np.dtype(out.dtype)
    if bias is None:
        bias = cuda.device_array(0, dtype=dtype, stream=stream)
    flat = out.reshape(-1)
    _store_kernel(np.dtype(y.dtype), dtype)[
        min(launch.blocks_for(flat.size), 2**31 - 1), launch.THREADS, stream](
        y, bias, out, *stride3, *epilogue_cuda.arguments(residual, activation, negative_slope,
                                                         out, stream))


@functools.cache
def _store_kernel(y_dtype, dtype):
    finish = epilogue_cuda.finisher(dtype)
    compute = np.dtype(dtype).type

    @cuda.jit
    def fft_store(y, bias, out, sd, sh, sw, residual, code, slope):
        """One thread per output element, grid-stride (module docstring)."""
        N, Co, OD, OH, OW = out.shape
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, N * Co * OD * OH * OW, step):
            ow = i % OW
            oh = (i // OW) % OH
            od = (i // (OW * OH)) % OD
            co = (i // (OW * OH * OD)) % Co
            n = i // (OW * OH * OD * Co)
            v = y[n, co, od * sd, oh * sh, ow * sw]
            if bias.shape[0] > 0:
                v += bias[co]          # in y's dtype, then cast, as CuPy's y + bias did
            out[n, co, od, oh, ow] = finish(compute(v), residual, i, code, slope)

    return fft_store


def ptx_kernels():
    """``(name, python function, signature)`` of :func:`store`'s kernel,
    float32 and float64 (cuFFT's output in the compute dtype), for
    ``numba.cuda.compile_ptx``."""
    found = []
    for dtype in epilogue_cuda.DTYPES:
        t = numba.from_dtype(dtype)
        a5, a1, i = types.Array(t, 5, "C"), types.Array(t, 1, "C"), types.int64
        found.append((f"fft_store[{dtype.name}]", _store_kernel(dtype, dtype).py_func,
                      types.void(a5, a1, a5, i, i, i, a1, i, t)))
    return found
