"""The fused epilogue on the GPU (Note [epilogue] in :mod:`numbaconv.epilogue`).

Note [GPU epilogue]
~~~~~~~~~~~~~~~~~~~
Every GPU forward kernel computes an output value ``v`` (its sum plus the
bias) in a register and passes it, with the flat index ``i`` of the output
element it is about to write, through :func:`finisher`'s device function
``finish(v, residual, i, code, slope)``, which returns ``activation(v +
residual[i])``.  So the residual is read once and the output written once:
no second pass over the output.  The arguments are the same for every
kernel:

* ``residual``: a flat, C-contiguous device array laid out like the
  canonical output ``(N, C_out, OD, OH, OW)`` (so ``i`` is the output's own
  flat index), or a zero-length array for none;
* ``code``: the activation's position in
  :data:`numbaconv.epilogue.ACTIVATIONS` (0: none), the codes of
  :mod:`numbaconv.kernels.epilogue_block`;
* ``slope``: leaky_relu's negative slope, in the output's dtype.

``code`` is a kernel argument, not a compile-time constant: every thread
of a launch takes the same branch (a uniform branch costs a compare per
stored value, next to a sum of many multiply-adds), and one compiled kernel
serves every activation.  The formulas, and their NaN behaviour, are those
of :func:`numbaconv.kernels.epilogue_block.finish_block` (PyTorch's
definitions); the constants are of the kernel's dtype, so the float32
kernels do no float64 arithmetic.  With code 0 and no residual ``finish``
returns ``v`` unchanged: the bias-only outputs are what they were.

:func:`apply_epilogue` is the same function as a separate pass over a
finished output: the generic path of a GPU algorithm that does not fuse
(``fuses_epilogue`` false in :mod:`numbaconv.algorithms.registry`), and the
unfused comparison of scripts/gpu_check.py.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda, types

from ..cuda import launch
from ..cuda.device import device_function
from .epilogue_block import (GELU, GELU_TANH, HARDSWISH, LEAKY_RELU, NONE, RELU, RELU6, SIGMOID,
                             SILU, TANH)

#: Every activation code, in order (the codes of epilogue_block).
CODES = (NONE, RELU, RELU6, LEAKY_RELU, GELU, GELU_TANH, SILU, SIGMOID, TANH, HARDSWISH)

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def arguments(residual, activation, negative_slope, out, stream):
    """``(flat residual, code, slope)``, the three epilogue arguments of a
    GPU kernel that writes ``out`` (Note [GPU epilogue]).

    Parameters
    ----------
    residual : device array or None
        Of ``out``'s size and canonical layout, C-contiguous, in ``out``'s
        dtype; None for none (a zero-length array is passed).
    activation : int
        The activation code (0: none).
    negative_slope : float
    out : device array
        The output the kernel writes (its dtype is the compute dtype).
    stream : numba stream or 0

    The kernels read ``residual[i]`` for every flat output index ``i``
    without a bounds check, so a residual of another size or dtype is
    refused here (the public functions have checked the user's already;
    this guards the kernels' own entry points).
    """
    dtype = np.dtype(out.dtype)
    if not 0 <= int(activation) < len(CODES):
        raise ValueError(f"epilogue: activation must be a code in [0, {len(CODES)}), "
                         f"got {activation!r}")
    if residual is None:
        flat = cuda.device_array(0, dtype=dtype, stream=stream)
    else:
        if np.dtype(residual.dtype) != dtype:
            raise TypeError(f"epilogue: residual dtype must be {dtype}, got {residual.dtype}")
        if residual.size != out.size:
            raise ValueError(f"epilogue: residual must have the output's size {out.size}, "
                             f"got {residual.size}")
        if not residual.is_c_contiguous():
            raise ValueError("epilogue: residual must be C-contiguous")
        flat = residual.reshape(-1)
    return flat, int(activation), dtype.type(negative_slope)


@functools.cache
def finisher(dtype):
    """The device function ``finish(v, residual, i, code, slope)`` for values
    of ``dtype`` (Note [GPU epilogue])."""
    real = np.dtype(dtype).type
    zero, one, three, six, half = real(0), real(1), real(3), real(6), real(0.5)
    root_half = real(0.7071067811865476)
    tanh_scale = real(0.7978845608028654)
    cubic = real(0.044715)

    @device_function
    def finish(v, residual, i, code, slope):
        """``activation(v + residual[i])`` (``residual`` zero-length: none)."""
        if residual.shape[0] > 0:
            v += residual[i]
        if code == RELU:
            return zero if v < zero else v          # NaN < 0 is false: NaN stays
        elif code == RELU6:
            return zero if v < zero else (six if v > six else v)
        elif code == LEAKY_RELU:
            return v * slope if v < zero else v
        elif code == GELU:
            return half * v * (one + math.erf(v * root_half))
        elif code == GELU_TANH:
            return half * v * (one + math.tanh(tanh_scale * (v + cubic * v * v * v)))
        elif code == SILU:
            return v / (one + math.exp(-v))
        elif code == SIGMOID:
            return one / (one + math.exp(-v))
        elif code == TANH:
            return math.tanh(v)
        elif code == HARDSWISH:
            t = v + three
            return v * (zero if t < zero else (six if t > six else t)) / six
        return v

    return finish


@functools.cache
def _apply_kernel(dtype):
    finish = finisher(dtype)

    @cuda.jit
    def apply_epilogue(flat, residual, code, slope):
        """flat[i] = activation(flat[i] + residual[i]), grid-stride."""
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, flat.shape[0], step):
            flat[i] = finish(flat[i], residual, i, code, slope)

    return apply_epilogue


def apply_epilogue(out, residual, activation, negative_slope, stream):
    """``out = activation(out + residual)`` in place, as a separate pass over
    the C-contiguous device array ``out`` (Note [GPU epilogue]); ``residual``
    of ``out``'s size and layout, or None."""
    if out.size == 0:
        return out
    dtype = np.dtype(out.dtype)
    residual, code, slope = arguments(residual, activation, negative_slope, out, stream)
    flat = out.reshape(-1)
    _apply_kernel(dtype)[min(launch.blocks_for(flat.size), 2**31 - 1), launch.THREADS,
                         stream](flat, residual, code, slope)
    return out


def ptx_kernels():
    """``(name, python function, signature)`` of this module's kernel, float32
    and float64, for ``numba.cuda.compile_ptx``."""
    found = []
    for dtype in DTYPES:
        t = numba.from_dtype(dtype)
        flat = types.Array(t, 1, "C")
        found.append((f"apply_epilogue[{dtype.name}]", _apply_kernel(dtype).py_func,
                      types.void(flat, flat, types.int64, t)))
    return found
