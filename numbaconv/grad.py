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

from .dispatch import resolve_planned
from .context import current_context
from .functional import (_canonical, _finish, _weight_shape3, checked_arrays, convolution,
                         device_weight, execute)
from .rewrites import transposed_weight
from .spec import (make_conv_spec, make_grad_input_spec,
                   make_grad_weight_spec, make_transposed_spec)

__all__ = ["conv1d_input", "conv2d_input", "conv3d_input", "conv1d_weight", "conv2d_weight",
           "conv3d_weight", "conv_backward"]


def grad_input(op, ndim, input_size, weight, grad_output, stride=1, padding=0, dilation=1,
               groups=1, *, algorithm="auto", stream=None):
    """Shared body of ``conv{ndim}d_input``."""
    device, a, d = checked_arrays(op, stream, weight=weight, grad_output=grad_output)
    spec = make_grad_input_spec(op, ndim, input_size, d["weight"], d["grad_output"], stride,
                                padding, dilation, groups)
    return execute(spec, algorithm, a["grad_output"], a["weight"], None, None,
                   canonical_weight=device_weight(spec, a["weight"], device, stream,
                                                  transposed=True),
                   device=device, stream=stream)


def grad_weight(op, ndim, input, weight_size, grad_output, stride=1, padding=0, dilation=1,
                groups=1, *, algorithm="auto", stream=None):
    """Shared body of ``conv{ndim}d_weight``."""
    device, a, d = checked_arrays(op, stream, input=input, grad_output=grad_output)
    spec = make_grad_weight_spec(op, ndim, d["input"], weight_size, d["grad_output"], stride,
                                 padding, dilation, groups)
    ctx = current_context(device, stream)
    runner, plan = resolve_planned(algorithm, spec, ctx)
    cdtype = spec.compute_dtype
    x_shape = spec.input_shape[:2] + spec.input_size3
    g_shape = spec.output_shape[:2] + spec.output_size3
    if device == "cuda":
        from .cuda import arrays as dev
        x = dev.canonical(a["input"], x_shape, cdtype, stream)
        g = dev.canonical(a["grad_output"], g_shape, cdtype, stream)
        result = dev.empty(spec.weight_shape, cdtype, stream)
        runner.run(spec, x, g, None, result.reshape(_weight_shape3(spec)), ctx, plan)
        return dev.finish(spec, result, None, stream, unbatched=False)
    x = _canonical(a["input"], x_shape, cdtype)
    g = _canonical(a["grad_output"], g_shape, cdtype)
    result = np.empty(spec.weight_shape, dtype=cdtype)
    runner.run(spec, x, g, None, result.reshape(_weight_shape3(spec)), ctx, plan)
    return _finish(spec, result, None, unbatched=False)


def conv_backward(input, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  transposed=False, output_padding=0, output_mask=(True, True, True),
                  algorithm="auto", stream=None):
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
    that of the plain convolution from ``grad_output`` to ``input``.
    """
    op = "conv_backward"
    device, a, _ = checked_arrays(op, stream, weight=weight, input=input,
                                  grad_output=grad_output)
    weight, input, grad_output = a["weight"], a["input"], a["grad_output"]
    if device == "cuda":
        return _conv_backward_on_host_edges(input, weight, grad_output, stride, padding,
                                            dilation, groups, transposed, output_padding,
                                            output_mask, algorithm, stream)
    ndim = weight.ndim - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"{op}: weight must have 3, 4 or 5 dimensions, got "
                         f"weight.shape={weight.shape}")
    if (not isinstance(output_mask, (tuple, list)) or len(output_mask) != 3
            or not all(isinstance(m, (bool, np.bool_)) for m in output_mask)):
        raise TypeError(f"{op}: output_mask must be a tuple of 3 bools, got {output_mask!r}")
    if not isinstance(transposed, (bool, np.bool_)):
        raise TypeError(f"{op}: transposed must be a bool, got {transposed!r}")
    if transposed:
        # check the whole call once: grad_output must be the output's shape
        expected = make_transposed_spec(op, ndim, input, weight, None, stride, padding,
                                        output_padding, groups, dilation).user_output_shape
        if grad_output.shape != expected:
            raise ValueError(f"{op}: grad_output must have the transposed convolution's output "
                             f"shape {expected}, got grad_output.shape={grad_output.shape}")
        # y = conv_transpose(x, w) is the input gradient of the convolution
        # y -> x: so dL/dx is that convolution of dL/dy, and dL/dw its
        # weight gradient with dL/dy as the input and x as the output
        # gradient.  An output_padding of at least the stride (allowed below
        # the dilation) gives that convolution more positions than x has:
        # they are cropped from dL/dx, and x is extended with zeros for dL/dw.
        gi = gw = None
        if output_mask[0] or output_mask[1]:
            gi = convolution(op, ndim, grad_output, weight, None, stride, padding, dilation,
                             groups, algorithm=algorithm)
        if output_mask[1]:
            x = input
            if gi.shape != input.shape:
                x = np.zeros(gi.shape, dtype=input.dtype)
                x[tuple(slice(0, n) for n in input.shape)] = input
            gw = grad_weight(op, ndim, grad_output, weight.shape, x, stride, padding, dilation,
                             groups, algorithm=algorithm)
        if output_mask[0]:
            gi = gi[tuple(slice(0, n) for n in input.shape)]
            gi = gi if gi.flags.c_contiguous else np.ascontiguousarray(gi)
        else:
            gi = None
    else:
        if output_padding not in (0, (0,) * ndim, [0] * ndim):
            raise ValueError(f"{op}: output_padding applies to transposed convolutions only, "
                             f"got output_padding={output_padding!r} with transposed=False")
        expected = make_conv_spec(op, ndim, input, weight, None, stride, padding, dilation,
                                  groups).user_output_shape
        if grad_output.shape != expected:
            raise ValueError(f"{op}: grad_output must have the convolution's output shape "
                             f"{expected}, got grad_output.shape={grad_output.shape}")
        gi = (grad_input(op, ndim, input.shape, weight, grad_output, stride, padding, dilation,
                         groups, algorithm=algorithm) if output_mask[0] else None)
        gw = (grad_weight(op, ndim, input, weight.shape, grad_output, stride, padding, dilation,
                          groups, algorithm=algorithm) if output_mask[1] else None)
    # every gradient in NumPy's promotion of the three arrays' dtypes
    dtype = np.result_type(input, weight, grad_output)
    gi = None if gi is None else gi.astype(dtype, copy=False)
    gw = None if gw is None else gw.astype(dtype, copy=False)
    gb = _grad_bias(grad_output, ndim, dtype) if output_mask[2] else None
    return gi, gw, gb


def _conv_backward_on_host_edges(input, weight, grad_output, stride, padding, dilation, groups,
                                 transposed, output_padding, output_mask, algorithm, stream):
    """conv_backward for GPU arrays: the input and weight gradients run on the
    GPU (the same calls as on the host); what little is not a convolution --
    the bias gradient's sum, a dtype promotion across the three arrays, the
    crop or zero extension of a transposed call with a large output_padding
    -- is done on host copies of only the arrays it needs, and sent back
    (small next to the convolutions; a GPU reduction kernel would be the
    next step)."""
    from .cuda import arrays as dev
    ndim = weight.ndim - 2
    dtype = np.result_type(input.dtype, weight.dtype, grad_output.dtype)

    def promoted(result):
        if result is None or result.dtype == dtype:
            return result
        return dev.to_device(dev.to_host(result, stream).astype(dtype), stream)

    # validate exactly as on the host, on shapes only (no copies of data)
    def shape_only(arr):
        return np.lib.stride_tricks.as_strided(np.zeros(1, arr.dtype), tuple(arr.shape),
                                               (0,) * len(arr.shape))

    conv_backward(shape_only(input), shape_only(weight), shape_only(grad_output), stride,
                  padding, dilation, groups, transposed=transposed,
                  output_padding=output_padding, output_mask=(False, False, False),
                  algorithm=algorithm)
    gi = gw = gb = None
    if transposed:
        if output_mask[0] or output_mask[1]:
            gi = convolution("conv_backward", ndim, grad_output, weight, None, stride, padding,
                             dilation, groups, algorithm=algorithm, stream=stream)
        if output_mask[1]:
            x = input
            if tuple(gi.shape) != tuple(input.shape):
                extended = np.zeros(gi.shape, dtype=input.dtype)
                extended[tuple(slice(0, n) for n in input.shape)] = dev.to_host(input, stream)
                x = dev.to_device(extended, stream)
            gw = grad_weight("conv_backward", ndim, grad_output, tuple(weight.shape), x, stride,
                             padding, dilation, groups, algorithm=algorithm, stream=stream)
        if output_mask[0] and tuple(gi.shape) != tuple(input.shape):
            gi = dev.to_device(dev.to_host(gi, stream)[tuple(slice(0, n) for n in input.shape)],
                               stream)
        gi = gi if output_mask[0] else None
    else:
        if output_mask[0]:
            gi = grad_input("conv_backward", ndim, tuple(input.shape), weight, grad_output, stride,
                            padding, dilation, groups, algorithm=algorithm, stream=stream)
        if output_mask[1]:
            gw = grad_weight("conv_backward", ndim, input, tuple(weight.shape), grad_output, stride,
                             padding, dilation, groups, algorithm=algorithm, stream=stream)
    if output_mask[2]:
        gb = dev.to_device(_grad_bias(dev.to_host(grad_output, stream), ndim, dtype), stream)
    return promoted(gi), promoted(gw), gb


def _grad_bias(grad_output, ndim, dtype):
    """The bias gradient: ``grad_output`` summed over the batch and spatial
    axes (float16 summed in float32), in ``dtype``."""
    batched = grad_output.ndim == ndim + 2
    axes = ((0,) if batched else ()) + tuple(range(grad_output.ndim - ndim, grad_output.ndim))
    compute = np.float32 if dtype == np.float16 else dtype
    return grad_output.sum(axis=axes, dtype=compute).astype(dtype)


_IDOC = """Gradient of ``conv{ndim}d`` with respect to its input (``torch.nn.grad.conv{ndim}d_input``).

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

_WDOC = """Gradient of ``conv{ndim}d`` with respect to its weight (``torch.nn.grad.conv{ndim}d_weight``).

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


def _make(ndim):
    def conv_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                   *, algorithm="auto", stream=None):
        return grad_input(f"grad.conv{ndim}d_input", ndim, input_size, weight, grad_output,
                          stride, padding, dilation, groups, algorithm=algorithm, stream=stream)

    def conv_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1,
                    *, algorithm="auto", stream=None):
        return grad_weight(f"grad.conv{ndim}d_weight", ndim, input, weight_size, grad_output,
                           stride, padding, dilation, groups, algorithm=algorithm, stream=stream)

    fmt = dict(ndim=ndim, spatial=_SPATIAL[ndim], kernel=_KERNEL[ndim], ospatial=_OSPATIAL[ndim])
    for fn, name, doc in ((conv_input, f"conv{ndim}d_input", _IDOC),
                          (conv_weight, f"conv{ndim}d_weight", _WDOC)):
        fn.__name__ = fn.__qualname__ = name
        fn.__module__ = "numbaconv.grad"
        fn.__doc__ = doc.format(**fmt)
    return conv_input, conv_weight


conv1d_input, conv1d_weight = _make(1)
conv2d_input, conv2d_weight = _make(2)
conv3d_input, conv3d_weight = _make(3)
