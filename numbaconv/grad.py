"""Gradients of convolutions: ``torch.nn.grad``'s functions, and ``conv_backward``.

``conv{1,2,3}d_input`` and ``conv{1,2,3}d_weight`` have the names and
argument order of ``torch.nn.grad``.  The input gradient is the transposed
convolution of the output gradient (:func:`numbaconv.spec.make_grad_input_spec`),
the weight gradient a spec of its own computation
(:func:`numbaconv.spec.make_grad_weight_spec`); the algorithms serve both
(Note [one general convolution] in :mod:`numbaconv.spec`).
"""

from __future__ import annotations

import numpy as np

from .backends import HOST, checked_arrays
from .context import current_context
from .dispatch import resolve_planned
from .epilogue import (ACTIVATION_CODES, OUTPUT_DERIVATIVE_ACTIVATIONS, Epilogue,
                       check_activation)
from .functional import convolution, execute, lookup, remember, run_array
from .workspaces import frame
from typing import Tuple

from .spec import (Array, ArrayLike, IntOrTuple, make_conv_spec, make_grad_input_spec,
                   make_grad_weight_spec, make_transposed_spec, remembered_spec)

__all__ = ["conv1d_input", "conv2d_input", "conv3d_input", "conv1d_weight", "conv2d_weight",
           "conv3d_weight", "conv_backward", "activation_backward"]


def activation_backward(grad_output: ArrayLike, output: ArrayLike, activation: str,
                        negative_slope: float = 0.01, *, stream: object = None) -> Array:
    """The gradient before a fused activation, from the gradient after it.

    ``grad_output * activation'(z)`` computed from the activation's output
    ``y = activation(z)``, for the activations whose derivative is a
    function of their output: "relu", "relu6", "leaky_relu" (slope at least
    0), "sigmoid", "tanh" (PyTorch's backward formulas).  It is what
    ``conv_backward(..., activation=, output=)`` folds into its first pass;
    a caller whose layer has a residual needs it once more, as the
    residual's gradient.

    Parameters
    ----------
    grad_output : ndarray
        Gradient with respect to ``y``, any shape ``(N, C, ...)`` or ``(C, ...)``.
    output : ndarray
        ``y``, the same shape.
    activation : str
    negative_slope : float, default 0.01
    stream : numba CUDA stream, optional

    Returns
    -------
    ndarray
        ``grad_output``'s shape and memory layout, in its dtype's compute
        dtype (float32 for float16).
    """
    op = "activation_backward"
    backend, a = checked_arrays(op, stream, grad_output=grad_output, output=output)
    g = a["grad_output"]
    if g.ndim < 2:
        raise ValueError(f"{op}: grad_output must have a channel axis, (N, C, ...) or "
                         f"(C, ...), got grad_output.shape={tuple(g.shape)}")
    if activation is None:
        raise ValueError(f"{op}: activation must be one of "
                         f"{', '.join(OUTPUT_DERIVATIVE_ACTIVATIONS)}, got None")
    ndim = max(1, g.ndim - 2)      # elementwise: how the axes split does not matter
    activation, negative_slope = _check_backward_activation(op, activation, negative_slope,
                                                            a["output"], ndim, tuple(g.shape))
    folded, _ = backend.fold_activation(g, a["output"], ndim, ACTIVATION_CODES[activation],
                                        negative_slope, None, stream)
    return folded


def grad_input(op, ndim, input_size, weight, grad_output, stride=1, padding=0, dilation=1,
               groups=1, *, algorithm="auto", stream=None):
    """Shared body of ``conv{ndim}d_input``."""
    key, prepared = lookup("grad_input", op, (weight, grad_output),  # Note [prepared calls]
                           (input_size, stride, padding, dilation, groups),  # (functional)
                           algorithm, stream=stream)
    if prepared is not None:
        return prepared(grad_output, weight)
    backend, a = checked_arrays(op, stream, weight=weight, grad_output=grad_output)
    spec = remembered_spec(make_grad_input_spec, op, ndim,
                           (input_size, a["weight"], a["grad_output"]),
                           (stride, padding, dilation, groups))
    with frame():               # the call's scratch (Note [workspace arena])
        return execute(spec, algorithm, backend,
                       {"input": a["grad_output"], "weight": a["weight"]}, None,
                       canonical_weight=backend.weight(spec, a["weight"], stream,
                                                       transposed=True),
                       stream=stream, remember_as=key, transposed_weight=True)


def grad_weight(op, ndim, input, weight_size, grad_output, stride=1, padding=0, dilation=1,
                groups=1, *, algorithm="auto", stream=None):
    """Shared body of ``conv{ndim}d_weight``."""
    key, prepared = lookup("grad_weight", op, (input, grad_output),  # Note [prepared calls]
                           (weight_size, stride, padding, dilation, groups),  # (functional)
                           algorithm, stream=stream)
    if prepared is not None:
        return prepared(input, grad_output)
    backend, a = checked_arrays(op, stream, input=input, grad_output=grad_output)
    spec = remembered_spec(make_grad_weight_spec, op, ndim,
                           (a["input"], weight_size, a["grad_output"]),
                           (stride, padding, dilation, groups))
    ctx = current_context(backend.device, stream)
    runner, plan = resolve_planned(algorithm, spec, ctx)
    result = _run_grad_weight(spec, runner, plan, ctx, backend, a["input"], a["grad_output"],
                              stream)
    if key is not None:
        remember(key, PreparedGradWeight(spec, runner, plan, ctx))
    return result


def _run_grad_weight(spec, runner, plan, ctx, backend, input, grad_output, stream):
    """The weight gradient ``spec`` computed by ``runner`` with ``plan``."""
    cdtype = spec.compute_dtype
    with frame():               # the call's scratch (Note [workspace arena])
        # both in the input's memory format (Note [memory format] in numbaconv.spec),
        # canonical on the GPU (Note [GPU memory format] in numbaconv.cuda.arrays)
        run = backend.run_spec(spec)
        x = run_array(backend, spec, input, run.run_input_shape, stream)
        g = run_array(backend, spec, grad_output, run.run_output_shape, stream, "grad_output")
        result = backend.empty(spec.weight_shape, cdtype, stream)
        runner.run(run, x, g, Epilogue.of(None, cdtype), result.reshape(spec.weight_shape3),
                   ctx, plan)
        return backend.finish(spec, result, None, stream, unbatched=False)


class PreparedGradWeight:
    """A host weight-gradient call remembered after its first run (Note
    [prepared calls] in :mod:`numbaconv.functional`)."""

    __slots__ = ("spec", "runner", "plan", "ctx")

    def __init__(self, spec, runner, plan, ctx):
        self.spec, self.runner, self.plan, self.ctx = spec, runner, plan, ctx

    def __call__(self, input, grad_output):
        return _run_grad_weight(self.spec, self.runner, self.plan, self.ctx, HOST, input,
                                grad_output, None)


def conv_backward(input: ArrayLike, weight: ArrayLike, grad_output: ArrayLike,
                  stride: IntOrTuple = 1, padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                  groups: int = 1, *, transposed: bool = False, output_padding: IntOrTuple = 0,
                  output_mask: Tuple[bool, bool, bool] = (True, True, True),
                  algorithm: str = "auto", stream: object = None,
                  activation: str | None = None, negative_slope: float = 0.01,
                  output: ArrayLike | None = None,
                  ) -> Tuple[Array | None, Array | None, Array | None]:
    """Gradients of a convolution (or transposed convolution) of any rank.

    Parameters
    ----------
    input, weight : ndarray
        The forward call's input and weight (``weight`` as that call takes
        it: ``(C_out, C_in/groups, k...)``, or ``(C_in, C_out/groups, k...)``
        when ``transposed``).  The rank is ``weight.ndim - 2``.
    grad_output : ndarray
        Gradient of the loss with respect to the forward call's output.
    stride, padding, dilation, groups, output_padding
        The forward call's parameters (``output_padding`` only when
        ``transposed``).
    transposed : bool, default False
        Whether the forward call was ``conv_transpose{N}d``.
    output_mask : tuple of 3 bools, default (True, True, True)
        Which of (input, weight, bias) gradients to compute.
    algorithm : str, default "auto"
    stream : numba CUDA stream, optional
        With GPU arrays (all three on the GPU): the stream; the gradients
        are then numba device arrays.
    activation : str, optional
        The fused activation of the forward call (SPEC 1c): one of "relu",
        "relu6", "leaky_relu", "sigmoid" and "tanh", whose derivative is a
        function of the forward call's ``output``.  ``grad_output`` is then
        the gradient with respect to that activation's output, and its
        derivative is folded in, in the same pass that sums the bias
        gradient.  The other activations (gelu, gelu_tanh, silu, hardswish)
        need the value before the activation: multiply ``grad_output`` by
        their derivative yourself and pass ``activation=None``
        (docs/semantics.md, "Fused epilogues").  With a residual, the
        residual's gradient is the folded gradient,
        :func:`numbaconv.activation_backward`.
    negative_slope : float, default 0.01
        leaky_relu's slope (at least 0: with a negative slope the output's
        sign no longer tells the input's).
    output : ndarray, optional
        The forward call's output ``y`` (required with ``activation``):
        ``grad_output``'s shape.

    Returns
    -------
    (grad_input, grad_weight, grad_bias)
        Each an ndarray, or None where ``output_mask`` is False, all of
        NumPy's promotion of the three arrays' dtypes.  The bias gradient is
        the sum of ``grad_output`` over the batch and spatial axes.

    Notes
    -----
    For a transposed convolution the input gradient is the plain
    convolution of ``grad_output`` with ``weight``, and the weight gradient
    that of the plain convolution from ``grad_output`` to ``input``.  On the
    GPU, what is not a convolution (the bias gradient's sum, the dtype
    promotion, a crop or zero extension) is done by the CUDA backend
    (:mod:`numbaconv.backends.cuda`).
    """
    return _conv_backward(input, weight, grad_output, stride, padding, dilation, groups,
                          transposed, output_padding, output_mask, algorithm, stream,
                          activation, negative_slope, output)


def _check_backward_activation(op, activation, negative_slope, output, ndim, g_shape):
    """The activation of a ``conv_backward`` call: None, or one whose
    derivative is a function of its output, with that output given."""
    activation, negative_slope = check_activation(op, activation, negative_slope)
    if activation is None:
        if output is not None:
            raise ValueError(f"{op}: output= is the forward output for activation=, got "
                             "output without an activation")
        return None, negative_slope
    if activation not in OUTPUT_DERIVATIVE_ACTIVATIONS:
        raise ValueError(
            f"{op}: activation={activation!r} cannot be folded from the output: its derivative "
            f"needs the value before the activation; the activations whose derivative is a "
            f"function of their output are {', '.join(OUTPUT_DERIVATIVE_ACTIVATIONS)}. Multiply "
            f"grad_output by the derivative yourself and pass activation=None")
    if activation == "leaky_relu" and negative_slope < 0:
        raise ValueError(f"{op}: negative_slope must be at least 0 to fold leaky_relu's "
                         f"derivative from its output, got {negative_slope!r}")
    if output is None:
        raise ValueError(f"{op}: activation={activation!r} needs output=, the forward call's "
                         "output")
    if tuple(output.shape) != g_shape:
        raise ValueError(f"{op}: output must have grad_output's shape {g_shape}, got "
                         f"output.shape={tuple(output.shape)}")
    return activation, negative_slope


def _conv_backward(input, weight, grad_output, stride, padding, dilation, groups, transposed,
                   output_padding, output_mask, algorithm, stream, activation=None,
                   negative_slope=0.01, output=None):
    op = "conv_backward"
    backend, a = checked_arrays(op, stream, weight=weight, input=input, grad_output=grad_output,
                                output=output)
    weight, input, grad_output, output = a["weight"], a["input"], a["grad_output"], a["output"]
    in_shape, g_shape = tuple(input.shape), tuple(grad_output.shape)
    ndim = len(weight.shape) - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"{op}: weight must have 3, 4 or 5 dimensions, got "
                         f"weight.shape={tuple(weight.shape)}")
    if (not isinstance(output_mask, (tuple, list)) or len(output_mask) != 3
            or not all(isinstance(m, (bool, np.bool_)) for m in output_mask)):
        raise TypeError(f"{op}: output_mask must be a tuple of 3 bools, got {output_mask!r}")
    activation, negative_slope = _check_backward_activation(op, activation, negative_slope,
                                                            output, ndim, g_shape)
    # every gradient in NumPy's promotion of the three arrays' dtypes
    dtype = np.result_type(input.dtype, weight.dtype, grad_output.dtype)
    gb = None
    if activation is not None:
        grad_output, gb = backend.fold_activation(
            grad_output, output, ndim, ACTIVATION_CODES[activation], negative_slope,
            dtype if output_mask[2] else None, stream)
    if not isinstance(transposed, (bool, np.bool_)):
        raise TypeError(f"{op}: transposed must be a bool, got {transposed!r}")
    if transposed:
        # check the whole call once: grad_output must be the output's shape
        expected = remembered_spec(make_transposed_spec, op, ndim, (input, weight, None),
                                   (stride, padding, output_padding, groups,
                                    dilation)).user_output_shape
        if g_shape != expected:
            raise ValueError(f"{op}: grad_output must have the transposed convolution's output "
                             f"shape {expected}, got grad_output.shape={g_shape}")
        # y = conv_transpose(x, w) is the input gradient of the convolution
        # y -> x: so dL/dx is that convolution of dL/dy, and dL/dw its
        # weight gradient with dL/dy as the input and x as the output
        # gradient.  An output_padding of at least the stride (allowed below
        # the dilation) gives that convolution more positions than x has:
        # they are cropped from dL/dx, and x is extended with zeros for dL/dw.
        gi = gw = None
        if output_mask[0] or output_mask[1]:
            gi = convolution(op, ndim, grad_output, weight, None, stride, padding, dilation,
                             groups, algorithm=algorithm, stream=stream)
        if output_mask[1]:
            x = input
            if tuple(gi.shape) != in_shape:
                x = backend.zero_extended(input, tuple(gi.shape), stream)
            gw = grad_weight(op, ndim, grad_output, tuple(weight.shape), x, stride, padding,
                             dilation, groups, algorithm=algorithm, stream=stream)
        gi = backend.cropped(gi, in_shape, stream) if output_mask[0] else None
    else:
        if output_padding not in (0, (0,) * ndim, [0] * ndim):
            raise ValueError(f"{op}: output_padding applies to transposed convolutions only, "
                             f"got output_padding={output_padding!r} with transposed=False")
        expected = remembered_spec(make_conv_spec, op, ndim, (input, weight, None),
                                   (stride, padding, dilation, groups)).user_output_shape
        if g_shape != expected:
            raise ValueError(f"{op}: grad_output must have the convolution's output shape "
                             f"{expected}, got grad_output.shape={g_shape}")
        gi = (grad_input(op, ndim, in_shape, weight, grad_output, stride, padding, dilation,
                         groups, algorithm=algorithm, stream=stream) if output_mask[0] else None)
        gw = (grad_weight(op, ndim, input, tuple(weight.shape), grad_output, stride, padding,
                          dilation, groups, algorithm=algorithm, stream=stream)
              if output_mask[1] else None)
    if output_mask[2] and gb is None:
        gb = backend.grad_bias(grad_output, ndim, dtype, stream)
    return backend.astype(gi, dtype, stream), backend.astype(gw, dtype, stream), gb


_IDOC = """Gradient of ``conv{ndim}d`` with respect to its input.

As ``torch.nn.grad.conv{ndim}d_input``.

Parameters
----------
input_size : tuple of ints
    Shape of the forward call's input, ``(N, C_in, {spatial})`` or
    unbatched ``(C_in, {spatial})``; of the sizes that give the same output
    (``stride`` of them), this one is returned.
weight : ndarray, shape (C_out, C_in / groups, {kernel})
grad_output : ndarray, shape (N, C_out, {ospatial}) (unbatched without N)
stride, padding, dilation, groups
    The forward call's (``padding`` an int or tuple; no strings).
algorithm : str, default "auto"
stream : numba CUDA stream, optional
    With GPU arrays: the stream (the result is then a numba device array).

Returns
-------
ndarray of shape ``input_size``
    Input positions that no output window reads get zero (with "fft",
    rounding of the size of the normwise bound).
"""

_WDOC = """Gradient of ``conv{ndim}d`` with respect to its weight.

As ``torch.nn.grad.conv{ndim}d_weight``.

Parameters
----------
input : ndarray, shape (N, C_in, {spatial}) (unbatched without N)
weight_size : tuple of ints
    ``(C_out, C_in / groups, {kernel})``.
grad_output : ndarray, shape (N, C_out, {ospatial}) (unbatched without N)
stride, padding, dilation, groups
    The forward call's (``padding`` an int or tuple; no strings).
algorithm : str, default "auto"
stream : numba CUDA stream, optional
    With GPU arrays: the stream (the result is then a numba device array).

Returns
-------
ndarray of shape ``weight_size``
    The sum over the batch; the reduction is split the same way whatever
    the thread count, so results are identical bit for bit.
"""

_SPATIAL = {1: "W", 2: "H, W", 3: "D, H, W"}
_KERNEL = {1: "kW", 2: "kH, kW", 3: "kD, kH, kW"}
_OSPATIAL = {1: "W_out", 2: "H_out, W_out", 3: "D_out, H_out, W_out"}


def conv1d_input(input_size: Tuple[int, ...], weight: ArrayLike, grad_output: ArrayLike,
                 stride: IntOrTuple = 1, padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                 groups: int = 1, *, algorithm: str = "auto", stream: object = None) -> Array:
    return grad_input("grad.conv1d_input", 1, input_size, weight, grad_output, stride, padding,
                      dilation, groups, algorithm=algorithm, stream=stream)


def conv1d_weight(input: ArrayLike, weight_size: Tuple[int, ...], grad_output: ArrayLike,
                  stride: IntOrTuple = 1, padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                  groups: int = 1, *, algorithm: str = "auto", stream: object = None) -> Array:
    return grad_weight("grad.conv1d_weight", 1, input, weight_size, grad_output, stride,
                       padding, dilation, groups, algorithm=algorithm, stream=stream)


def conv2d_input(input_size: Tuple[int, ...], weight: ArrayLike, grad_output: ArrayLike,
                 stride: IntOrTuple = 1, padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                 groups: int = 1, *, algorithm: str = "auto", stream: object = None) -> Array:
    return grad_input("grad.conv2d_input", 2, input_size, weight, grad_output, stride, padding,
                      dilation, groups, algorithm=algorithm, stream=stream)


def conv2d_weight(input: ArrayLike, weight_size: Tuple[int, ...], grad_output: ArrayLike,
                  stride: IntOrTuple = 1, padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                  groups: int = 1, *, algorithm: str = "auto", stream: object = None) -> Array:
    return grad_weight("grad.conv2d_weight", 2, input, weight_size, grad_output, stride,
                       padding, dilation, groups, algorithm=algorithm, stream=stream)


def conv3d_input(input_size: Tuple[int, ...], weight: ArrayLike, grad_output: ArrayLike,
                 stride: IntOrTuple = 1, padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                 groups: int = 1, *, algorithm: str = "auto", stream: object = None) -> Array:
    return grad_input("grad.conv3d_input", 3, input_size, weight, grad_output, stride, padding,
                      dilation, groups, algorithm=algorithm, stream=stream)


def conv3d_weight(input: ArrayLike, weight_size: Tuple[int, ...], grad_output: ArrayLike,
                  stride: IntOrTuple = 1, padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                  groups: int = 1, *, algorithm: str = "auto", stream: object = None) -> Array:
    return grad_weight("grad.conv3d_weight", 3, input, weight_size, grad_output, stride,
                       padding, dilation, groups, algorithm=algorithm, stream=stream)


for _ndim, _pair in ((1, (conv1d_input, conv1d_weight)), (2, (conv2d_input, conv2d_weight)),
                     (3, (conv3d_input, conv3d_weight))):
    _fmt = dict(ndim=_ndim, spatial=_SPATIAL[_ndim], kernel=_KERNEL[_ndim],
                ospatial=_OSPATIAL[_ndim])
    for _fn, _doc in zip(_pair, (_IDOC, _WDOC)):
        _fn.__module__ = "numbaconv.grad"
        _fn.__doc__ = _doc.format(**_fmt)
del _ndim, _pair, _fmt, _fn, _doc
