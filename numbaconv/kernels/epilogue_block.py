"""The fused epilogue's store step (Note [epilogue] in :mod:`numbaconv.epilogue`).

:func:`finish_block` applies ``out = activation(out + residual)`` to a block
of output that a kernel task has just completed: ``rows`` runs of ``cols``
contiguous values, ``row_stride`` apart, starting at flat index ``first``
of the output, with the residual read at the same flat indices.  Every CPU
kernel calls it on its own blocks (an im2col tile, a direct output plane, a
Winograd chunk), so the values are still in that task's cache: no pass over
the whole output.  The activation codes are the positions in
:data:`numbaconv.epilogue.ACTIVATIONS`; the switch is outside the loops so
each loop is one plain pass LLVM can vectorise, the transcendental ones
through :mod:`numbaconv.kernels.vector_math` (Note [vector math]).  NaN
propagates as in PyTorch (``v < 0`` is false for NaN, so relu keeps it).
"""

from __future__ import annotations

import numpy as np

from .jit import cpu_kernel, inline_helper
from .vector_math import exp_of, one_plus_erf_of, tanh_of, vector_loop

# codes of numbaconv.epilogue.ACTIVATIONS (checked by tests/test_epilogue.py)
NONE, RELU, RELU6, LEAKY_RELU, GELU, GELU_TANH, SILU, SIGMOID, TANH, HARDSWISH = range(10)


@inline_helper(fastmath=False)
def finish_block(flat, first, row_stride, rows, cols, residual, code, slope):
    """``flat[i] = activation(flat[i] + residual[i])`` for ``i = first +
    r * row_stride + c``, ``r < rows``, ``c < cols`` (module docstring);
    ``residual`` zero-length: none."""
    zero = flat.dtype.type(0)
    six = flat.dtype.type(6)
    three = flat.dtype.type(3)
    # -0.0, which LLVM cannot see is one: ``v + minus_zero`` is ``v`` to the
    # bit (-0 and NaN included), but a stored value LLVM cannot prove equal
    # to the loaded one.  Where ``row[i] = 0 if v < 0 else v`` stores ``v``
    # back, LLVM keeps only the store of 0, a masked vector store, which AMD's
    # Zen 2 runs in microcode: relu took 8.8 us against relu6's 1.3 on 16 K
    # values (docs/results-networks.md, "Vector math").
    minus_zero = -(abs(slope) * zero)
    add = residual.shape[0] > 0
    for r in range(rows):
        start = first + r * row_stride
        row = flat[start:start + cols]
        if add:
            res = residual[start:start + cols]
            for i in range(cols):
                row[i] += res[i]
        if code == RELU:
            for i in range(cols):
                v = row[i]
                row[i] = zero if v < zero else v + minus_zero
        elif code == RELU6:
            for i in range(cols):
                v = row[i]
                row[i] = zero if v < zero else (six if v > six else v)
        elif code == LEAKY_RELU:
            for i in range(cols):
                v = row[i]
                row[i] = v * slope if v < zero else v + minus_zero
        elif code == GELU:
            _gelu(row)
        elif code == GELU_TANH:
            _gelu_tanh(row)
        elif code == SILU:
            _silu(row)
        elif code == SIGMOID:
            _sigmoid(row)
        elif code == TANH:
            _tanh(row)
        elif code == HARDSWISH:
            for i in range(cols):
                v = row[i]
                t = v + three
                row[i] = v * (zero if t < zero else (six if t > six else t)) / six


# The transcendental activations: each a loop of its own, compiled apart from
# the kernel that calls it (Note [vector math] in kernels/vector_math.py).

@vector_loop
def _gelu(row):
    half = row.dtype.type(0.5)
    root_half = row.dtype.type(0.7071067811865476)
    for i in range(row.shape[0]):
        v = row[i]
        row[i] = half * v * one_plus_erf_of(v * root_half)


@vector_loop
def _gelu_tanh(row):
    one = row.dtype.type(1)
    half = row.dtype.type(0.5)
    tanh_scale = row.dtype.type(0.7978845608028654)
    cubic = row.dtype.type(0.044715)
    for i in range(row.shape[0]):
        v = row[i]
        row[i] = half * v * (one + tanh_of(tanh_scale * (v + cubic * v * v * v)))


@vector_loop
def _silu(row):
    one = row.dtype.type(1)
    for i in range(row.shape[0]):
        v = row[i]
        row[i] = v / (one + exp_of(-v))


@vector_loop
def _sigmoid(row):
    one = row.dtype.type(1)
    for i in range(row.shape[0]):
        row[i] = one / (one + exp_of(-row[i]))


@vector_loop
def _tanh(row):
    for i in range(row.shape[0]):
        row[i] = tanh_of(row[i])


def finish_args(finish, dtype):
    """The ``(code, slope, residual)`` a kernel takes: ``finish`` (from
    :meth:`numbaconv.epilogue.Epilogue.kernel_args`), or for None those of
    no activation and no residual, typed like a real epilogue's so that
    both take one compiled kernel.  Kernels call :func:`finish_block` only
    ``if code != 0 or residual.shape[0] > 0``: the bias-only path runs
    exactly as before."""
    if finish is not None:
        return finish
    dtype = np.dtype(dtype)
    return NONE, dtype.type(0.01), np.empty(0, dtype=dtype)


@cpu_kernel(parallel=False)
def finish_array(flat, residual, code, slope):
    """:func:`finish_block` over a whole flat array (one block)."""
    finish_block(flat, 0, 0, 1, flat.shape[0], residual, code, slope)


def fold_activation_derivative(grad_output, output, code, slope, folded, bias_grad, chunks):
    """``folded = grad_output * activation'(output)`` and, when ``bias_grad``
    is not zero-length, ``bias_grad[c] = sum over (n, p) of folded[n, c, p]``,
    in one pass over ``grad_output`` and ``output`` (SPEC 1c).

    The arrays are ``(N, C, P)`` C-contiguous in the compute dtype; a job is
    one channel, so the sums' order does not depend on the thread count.
    ``code`` is one of the output-derivative activations (relu, relu6,
    leaky_relu, sigmoid, tanh).  The conditions are PyTorch's backward
    formulas (``threshold_backward``: zero where ``output <= 0``; relu6's
    hardtanh backward: zero where ``output <= 0`` or ``>= 6``; leaky_relu:
    ``slope`` unless ``output > 0``), so a NaN output treats the gradient
    as PyTorch's does.
    """
    from .parallel import run_in_chunks
    run_in_chunks(_fold_channels, (grad_output, output, code, slope, folded, bias_grad),
                  grad_output.shape[1], chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _fold_channels(grad_output, output, code, slope, folded, bias_grad, first_job, stop_job):
    zero = folded.dtype.type(0)
    one = folded.dtype.type(1)
    six = folded.dtype.type(6)
    N, P = grad_output.shape[0], grad_output.shape[2]
    total = bias_grad.shape[0] > 0
    for c in range(first_job, stop_job):
        acc = zero
        for n in range(N):
            g = grad_output[n, c]
            y = output[n, c]
            f = folded[n, c]
            if code == RELU:
                for p in range(P):
                    f[p] = zero if y[p] <= zero else g[p]
            elif code == RELU6:
                for p in range(P):
                    f[p] = zero if (y[p] <= zero or y[p] >= six) else g[p]
            elif code == LEAKY_RELU:
                for p in range(P):
                    f[p] = g[p] if y[p] > zero else g[p] * slope
            elif code == SIGMOID:
                for p in range(P):
                    f[p] = g[p] * (y[p] * (one - y[p]))
            else:                                              # TANH
                for p in range(P):
                    f[p] = g[p] * (one - y[p] * y[p])
            if total:
                for p in range(P):
                    acc += f[p]
        if total:
            bias_grad[c] = acc
