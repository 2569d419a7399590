"""Public convolutions: ``conv{1,2,3}d`` and ``conv_transpose{1,2,3}d``.

The layer between users and algorithms: validate once (build a
:class:`~numbaconv.spec.ConvSpec`), pick the algorithm (:mod:`numbaconv.dispatch`),
and let the device's backend (:mod:`numbaconv.backends`) bring the arrays
into the canonical 3-D, C-contiguous, compute-dtype form the algorithms
expect and handle ``out=``, unbatched input and float16.  A transposed convolution
is its general forward spec (:func:`numbaconv.spec.make_transposed_spec`)
with the rewritten weight (:func:`numbaconv.rewrites.transposed_weight`);
there is no algorithm logic here.
"""

from __future__ import annotations

import numpy as np

from .backends import HOST, checked_arrays
from .context import current_context
from .dispatch import pick_settings, resolve_planned
from .epilogue import Epilogue, check_activation
from .spec import (Array, ArrayLike, IntOrTuple, PaddingArg, exact_key, make_conv_spec,
                   make_transposed_spec, remembered_spec)
from .workspaces import frame


def convolution(op, ndim, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                *, padding_mode="zeros", algorithm="auto", out=None, stream=None,
                activation=None, negative_slope=0.01, residual=None):
    """Shared body of ``conv1d``/``conv2d``/``conv3d`` (``ndim`` spatial dims)."""
    key, prepared = lookup("forward", op, (input, weight, bias, residual),
                           (stride, padding, dilation, groups, padding_mode), algorithm,
                           activation, negative_slope, out, stream)
    if prepared is not None:
        return prepared(input, weight, bias, residual)
    activation, negative_slope = check_activation(op, activation, negative_slope)
    backend, a = checked_arrays(op, stream, input=input, weight=weight, bias=bias,
                                residual=residual)
    spec = remembered_spec(make_conv_spec, op, ndim, (a["input"], a["weight"], a["bias"]),
                           (stride, padding, dilation, groups, padding_mode))
    with frame():               # the call's scratch (Note [workspace arena])
        return execute(spec, algorithm, backend, a, out,
                       canonical_weight=backend.weight(spec, a["weight"], stream),
                       stream=stream, activation=activation, negative_slope=negative_slope,
                       remember_as=key)


def transposed_convolution(op, ndim, input, weight, bias=None, stride=1, padding=0,
                           output_padding=0, groups=1, dilation=1, *, algorithm="auto", out=None,
                           stream=None, activation=None, negative_slope=0.01, residual=None):
    """Shared body of ``conv_transpose1d``/``2d``/``3d``."""
    key, prepared = lookup("transposed", op, (input, weight, bias, residual),
                           (stride, padding, output_padding, groups, dilation), algorithm,
                           activation, negative_slope, out, stream)
    if prepared is not None:
        return prepared(input, weight, bias, residual)
    activation, negative_slope = check_activation(op, activation, negative_slope)
    backend, a = checked_arrays(op, stream, input=input, weight=weight, bias=bias,
                                residual=residual)
    spec = remembered_spec(make_transposed_spec, op, ndim, (a["input"], a["weight"], a["bias"]),
                           (stride, padding, output_padding, groups, dilation))
    with frame():               # the call's scratch (Note [workspace arena])
        return execute(spec, algorithm, backend, a, out,
                       canonical_weight=backend.weight(spec, a["weight"], stream,
                                                       transposed=True),
                       stream=stream, activation=activation, negative_slope=negative_slope,
                       remember_as=key, transposed_weight=True)


# Note [prepared calls]
# ~~~~~~~~~~~~~~~~~~~~~
# A network calls each layer again and again with arrays of the same
# shapes, strides and dtypes.  Checking them, finding the spec and
# resolving the algorithm and its plan took a small layer 11 of its 60 us
# of Python (docs/results-networks.md, "Prepared calls: Python per call").
# So a host call that succeeded without out= or stream= is remembered as a
# PreparedCall under a key of everything those steps read: the computation
# (forward, transposed, input or weight gradient: conv_backward runs three
# under one op name, and a 1x1 layer's input and weight can look alike),
# the op, each array's type, shape, strides and dtype, the exact parameter values (the
# rules of numbaconv.spec.exact_key, which refuse lists and NumPy scalars:
# such calls are checked every time) and the settings a pick depends on
# (numbaconv.dispatch.pick_settings: threads, workspace limit, cost-model
# constants, the registry; no key for "auto" while tuning is on).  A call
# with the same key runs the remembered spec, algorithm and plan at once.
# A call that raises is never remembered, so bad input is refused every time.

#: prepared_key -> PreparedCall; cleared when it reaches PREPARED_CALLS.
_PREPARED: dict = {}
PREPARED_CALLS = 1024


def _array_key(array):
    if array is None:
        return None
    if type(array) is not np.ndarray:      # a GPU array, a list, a subclass: checked each time
        raise TypeError
    return array.shape, array.strides, array.dtype


def _number_key(value):
    """``value`` exactly: a float by its bits (0.0 is not -0.0), an int as itself."""
    if type(value) is float:
        return float, value.hex()
    if type(value) is int:
        return int, value
    raise TypeError


def lookup(computation, op, arrays, params, algorithm, activation=None, negative_slope=0.01,
           out=None, stream=None):
    """``(key, prepared)``: the call's :func:`prepared_key` (None for a call
    with ``out=`` or ``stream=``, or not remembered) and the
    :class:`PreparedCall` remembered under it, or None."""
    if out is not None or stream is not None:
        return None, None
    key = prepared_key(computation, op, arrays, params, algorithm, activation, negative_slope)
    return key, _PREPARED.get(key)


def remember(key, prepared):
    """Keep ``prepared`` (a :class:`PreparedCall` or the like) under ``key``."""
    if len(_PREPARED) >= PREPARED_CALLS:
        _PREPARED.clear()
    _PREPARED[key] = prepared


def prepared_key(computation, op, arrays, params, algorithm, activation, negative_slope):
    """The key of a host call's :class:`PreparedCall` (Note [prepared calls]),
    or None for a call that is not remembered.  ``computation`` names the
    body that remembers it ("forward", "transposed", "grad_input",
    "grad_weight"): one op name serves several (``conv_backward`` calls
    three), and their arrays and parameters can look alike (a 1x1 layer's
    input and weight can have one shape, its input size and weight size one
    value)."""
    settings = pick_settings(algorithm) if type(algorithm) is str else None
    if settings is None:
        return None
    try:
        return (computation, op, tuple(map(_array_key, arrays)), tuple(map(exact_key, params)),
                algorithm, exact_key(activation), _number_key(negative_slope), settings)
    except TypeError:
        return None


class PreparedCall:
    """A host call remembered after its first run (Note [prepared calls]):
    what :func:`execute` found for it, run again on new arrays of the same
    layout."""

    __slots__ = ("spec", "runner", "plan", "ctx", "transposed_weight", "activation",
                 "negative_slope")

    def __init__(self, spec, runner, plan, ctx, transposed_weight, activation, negative_slope):
        self.spec, self.runner, self.plan, self.ctx = spec, runner, plan, ctx
        self.transposed_weight = transposed_weight
        self.activation, self.negative_slope = activation, negative_slope

    def __call__(self, input, weight, bias=None, residual=None):
        spec = self.spec
        with frame():           # the call's scratch (Note [workspace arena])
            return run_planned(spec, self.runner, self.plan, self.ctx, HOST, input,
                               HOST.weight(spec, weight, transposed=self.transposed_weight),
                               bias, residual, None, None, self.activation, self.negative_slope)


def _check_residual(spec, residual):
    """The residual of a fused epilogue (SPEC 1c): exactly the output's shape
    (no broadcasting) and dtype, or a ValueError naming it."""
    if residual.shape != spec.user_output_shape:
        raise ValueError(f"{spec.op}: residual must have the output's shape "
                         f"{spec.user_output_shape} (no broadcasting), got "
                         f"residual.shape={residual.shape}")
    if residual.dtype != spec.dtype:
        raise ValueError(f"{spec.op}: residual must have the output's dtype {spec.dtype}, got "
                         f"residual.dtype={residual.dtype}")


def execute(spec, algorithm, backend, arrays, out, *, canonical_weight, stream=None,
            activation=None, negative_slope=0.01, remember_as=None, transposed_weight=False):
    """Run a forward-computation ``spec`` (any input dilation) with the
    algorithm chosen by ``algorithm`` on ``backend``'s device.

    ``arrays`` are the call's checked arrays (input, weight, bias, residual);
    ``canonical_weight`` is the weight the spec describes, in canonical form
    on that device (``arrays["weight"]`` only serves the ``out=`` overlap
    check).  ``activation`` and the residual form the epilogue (Note
    [epilogue]).  ``remember_as``: the call's :func:`prepared_key`, under which
    it is remembered once it has run (a weight the backend takes with
    ``transposed=transposed_weight``; Note [prepared calls])."""
    ctx = current_context(backend.device, stream)
    runner, plan = resolve_planned(algorithm, spec, ctx)
    residual = arrays.get("residual")
    if residual is not None:
        _check_residual(spec, residual)
    if out is not None:
        out = backend.check_out(spec, out, arrays)
    result = run_planned(spec, runner, plan, ctx, backend, arrays["input"], canonical_weight,
                         arrays.get("bias"), residual, out, stream, activation, negative_slope)
    if remember_as is not None:
        remember(remember_as, PreparedCall(spec, runner, plan, ctx, transposed_weight,
                                           activation, negative_slope))
    return result


def run_planned(spec, runner, plan, ctx, backend, input, canonical_weight, bias, residual, out,
                stream, activation, negative_slope):
    """The part of :func:`execute` after its checks: ``runner`` computes
    ``spec`` with ``plan`` into a new result (or the checked ``out``)."""
    cdtype = spec.compute_dtype
    run = backend.run_spec(spec)     # the GPU's is contiguous (Note [GPU memory format])
    x = run_array(backend, spec, input, run.run_input_shape, stream)
    epilogue = Epilogue.of(
        None if bias is None else backend.canonical(bias, bias.shape, cdtype, stream), cdtype,
        activation, negative_slope,
        None if residual is None else run_array(backend, spec, residual, run.run_output_shape,
                                                stream, "residual"))
    result = backend.result_buffer(spec, out, stream)
    runner.run(run, x, canonical_weight, epilogue, backend.run_view(run, result), ctx, plan)
    return backend.finish(spec, result, out, stream)


def run_array(backend, spec, array, shape, stream=None, name="input"):
    """An input-like or output-like array of the call (input, residual,
    output gradient) as the algorithms take it: ``shape`` (the run spec's
    ``run_input_shape`` or ``run_output_shape``, ``backend.run_spec``) in
    the memory format the algorithm runs (Note [memory format] in
    :mod:`numbaconv.spec`; on the GPU always canonical, Note [GPU memory
    format] in :mod:`numbaconv.cuda.arrays`) and the compute dtype: a view
    where the array already is, else a copy.  ``name`` names it in errors."""
    return backend.run_array(spec, array, shape, stream, name)


_DOC = """{ndim}-D convolution (cross-correlation), with PyTorch's semantics.

Equivalent to ``torch.nn.functional.conv{ndim}d`` plus ``padding_mode`` from
``torch.nn.Conv{ndim}d``, on NumPy arrays.

Parameters
----------
input : ndarray, shape ({batched}) or ({unbatched})
    float16, float32 or float64.  Unbatched input gives unbatched output.
    Any strides (including negative) are accepted; the input is never
    modified.  Channels-last input (a view of ({cl}) memory, such as
    ``x_nhwc.transpose({cl_perm})``, as PyTorch's ``channels_last``) is
    read without a copy and gives channels-last output; any other strides
    give C-contiguous output (docs/semantics.md, "Memory format").  A GPU
    array (numba device array, CuPy array, PyTorch CUDA
    tensor: anything with ``__cuda_array_interface__``; C-contiguous or
    channels-last) runs on the GPU, and then every array must be on the GPU.
weight : ndarray, shape (C_out, C_in / groups, {kernel})
bias : ndarray, shape (C_out,), optional
stride, dilation : int or tuple of {ndim} ints, default 1
padding : int, tuple of {ndim} ints, "valid" or "same", default 0
    "same" keeps the input size (stride 1 only); when the total padding
    is odd the extra element goes after, like PyTorch.
groups : int, default 1
    Must divide C_in and C_out.
padding_mode : {{"zeros", "reflect", "replicate", "circular"}}, default "zeros"
algorithm : str, default "auto"
    ``"auto"`` or a name from ``numbaconv.algorithm_names()``.
out : ndarray, optional
    Array of exactly the output shape and dtype, contiguous in the call's
    memory format (C-contiguous, or channels-last contiguous when the input
    is channels-last); filled and returned (a device array for a GPU
    call).
stream : numba CUDA stream, optional
    The stream of a GPU call (default: the default stream); an error with
    host arrays.
activation : str, optional
    A fused activation applied to each output where the kernels write it
    (SPEC 1c, docs/semantics.md "Fused epilogues"): None, "relu", "relu6",
    "leaky_relu", "gelu" (exact), "gelu_tanh", "silu", "sigmoid", "tanh" or
    "hardswish", with PyTorch's definitions.  The result is
    ``activation(conv + bias + residual)``.
negative_slope : float, default 0.01
    leaky_relu's slope (an error with another activation).
residual : ndarray, optional
    Added to the output before the activation, in the same pass: exactly
    the output's shape (no broadcasting) and dtype, on the same device, not
    sharing memory with ``out``; read in place when it has the call's
    memory format, else copied to it.

Returns
-------
ndarray, shape ({out_batched})
    A numba device array for a GPU call.  dtype is NumPy's promotion of
    the input, weight and bias dtypes; float16 is computed in float32 and
    rounded once at the end.

Raises
------
TypeError
    Non-float (integer, bool, complex, object) arrays or wrongly typed
    arguments.
ValueError
    Inconsistent shapes or parameters; the message names the parameter,
    what was expected and what was given.
numbaconv.UnsupportedAlgorithmError
    The requested algorithm cannot serve these parameters.

Examples
--------
>>> import numpy as np, numbaconv as nc
>>> x = np.ones({example_x}, dtype=np.float32)
>>> w = np.ones({example_w}, dtype=np.float32)
>>> nc.conv{ndim}d(x, w, padding=1).shape
{example_out}
"""

_SPATIAL = {1: "W", 2: "H, W", 3: "D, H, W"}
_KERNEL = {1: "kW", 2: "kH, kW", 3: "kD, kH, kW"}
_OSPATIAL = {1: "W_out", 2: "H_out, W_out", 3: "D_out, H_out, W_out"}


def _document(function, template, ndim, example_w, example_out):
    function.__module__ = "numbaconv"
    function.__doc__ = template.format(
        ndim=ndim, batched=f"N, C_in, {_SPATIAL[ndim]}", unbatched=f"C_in, {_SPATIAL[ndim]}",
        kernel=_KERNEL[ndim], out_batched=f"N, C_out, {_OSPATIAL[ndim]}",
        cl=f"N, {_SPATIAL[ndim]}, C_in", cl_perm=", ".join(map(str, (0, ndim + 1)
                                                            + tuple(range(1, ndim + 1)))),
        example_x=(1, 2) + (5,) * ndim, example_w=example_w, example_out=example_out)
    return function


def conv1d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntOrTuple = 1, padding: PaddingArg = 0, dilation: IntOrTuple = 1,
           groups: int = 1, *, padding_mode: str = "zeros", algorithm: str = "auto",
           out: Array | None = None, stream: object = None, activation: str | None = None,
           negative_slope: float = 0.01, residual: ArrayLike | None = None) -> Array:
    return convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups,
                       padding_mode=padding_mode, algorithm=algorithm, out=out, stream=stream,
                       activation=activation, negative_slope=negative_slope, residual=residual)


def conv2d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntOrTuple = 1, padding: PaddingArg = 0, dilation: IntOrTuple = 1,
           groups: int = 1, *, padding_mode: str = "zeros", algorithm: str = "auto",
           out: Array | None = None, stream: object = None, activation: str | None = None,
           negative_slope: float = 0.01, residual: ArrayLike | None = None) -> Array:
    return convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups,
                       padding_mode=padding_mode, algorithm=algorithm, out=out, stream=stream,
                       activation=activation, negative_slope=negative_slope, residual=residual)


def conv3d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntOrTuple = 1, padding: PaddingArg = 0, dilation: IntOrTuple = 1,
           groups: int = 1, *, padding_mode: str = "zeros", algorithm: str = "auto",
           out: Array | None = None, stream: object = None, activation: str | None = None,
           negative_slope: float = 0.01, residual: ArrayLike | None = None) -> Array:
    return convolution("conv3d", 3, input, weight, bias, stride, padding, dilation, groups,
                       padding_mode=padding_mode, algorithm=algorithm, out=out, stream=stream,
                       activation=activation, negative_slope=negative_slope, residual=residual)


for _ndim, _conv in ((1, conv1d), (2, conv2d), (3, conv3d)):
    _document(_conv, _DOC, _ndim, (3, 2) + (3,) * _ndim, (1, 3) + (5,) * _ndim)


_TDOC = """{ndim}-D transposed convolution, with PyTorch's semantics.

Equivalent to ``torch.nn.functional.conv_transpose{ndim}d`` on NumPy arrays:
the adjoint of ``conv{ndim}d`` with the same weight, stride, padding,
dilation and groups (the input gradient of that convolution), plus a bias.
Each algorithm computes it without multiplying the zeros a stride inserts
(docs/semantics.md, "Transposed convolution and gradients").

Parameters
----------
input : ndarray, shape ({batched}) or ({unbatched})
    float16, float32 or float64; any strides.  Unbatched input gives
    unbatched output; channels-last input gives channels-last output, as
    for ``conv{ndim}d``.
weight : ndarray, shape (C_in, C_out / groups, {kernel})
bias : ndarray, shape (C_out,), optional
stride, dilation : int or tuple of {ndim} ints, default 1
padding : int or tuple of {ndim} ints, default 0
    ``dilation * (kernel - 1) - padding`` zeros are added to both sides of
    the (stride-dilated) input.
output_padding : int or tuple of {ndim} ints, default 0
    Extra size added to one side of the output; smaller than either the
    stride or the dilation along each axis.
groups : int, default 1
    Must divide C_in.
algorithm : str, default "auto"
    ``"auto"`` or a name from ``numbaconv.algorithm_names()``.
out : ndarray, optional
    As for ``conv{ndim}d``: exactly the output shape and dtype, contiguous
    in the call's memory format; filled and returned.
stream : numba CUDA stream, optional
    As for ``conv{ndim}d``: GPU arrays run on the GPU.
activation, negative_slope, residual : optional
    A fused epilogue, as for ``conv{ndim}d``.

Returns
-------
ndarray, shape ({out_batched})
    A numba device array for a GPU call.  ``out = (in - 1) * stride - 2 *
    padding + dilation * (kernel - 1) + output_padding + 1`` along each
    axis; dtype as for ``conv{ndim}d``.

Raises
------
TypeError, ValueError, numbaconv.UnsupportedAlgorithmError
    As for ``conv{ndim}d``.

Examples
--------
>>> import numpy as np, numbaconv as nc
>>> x = np.ones({example_x}, dtype=np.float32)
>>> w = np.ones({example_w}, dtype=np.float32)
>>> nc.conv_transpose{ndim}d(x, w, stride=2, padding=1).shape
{example_out}
"""


def conv_transpose1d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1, dilation: IntOrTuple = 1,
                     *, algorithm: str = "auto", out: Array | None = None,
                     stream: object = None, activation: str | None = None,
                     negative_slope: float = 0.01, residual: ArrayLike | None = None) -> Array:
    return transposed_convolution("conv_transpose1d", 1, input, weight, bias, stride, padding,
                                  output_padding, groups, dilation, algorithm=algorithm, out=out,
                                  stream=stream, activation=activation,
                                  negative_slope=negative_slope, residual=residual)


def conv_transpose2d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1, dilation: IntOrTuple = 1,
                     *, algorithm: str = "auto", out: Array | None = None,
                     stream: object = None, activation: str | None = None,
                     negative_slope: float = 0.01, residual: ArrayLike | None = None) -> Array:
    return transposed_convolution("conv_transpose2d", 2, input, weight, bias, stride, padding,
                                  output_padding, groups, dilation, algorithm=algorithm, out=out,
                                  stream=stream, activation=activation,
                                  negative_slope=negative_slope, residual=residual)


def conv_transpose3d(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1, dilation: IntOrTuple = 1,
                     *, algorithm: str = "auto", out: Array | None = None,
                     stream: object = None, activation: str | None = None,
                     negative_slope: float = 0.01, residual: ArrayLike | None = None) -> Array:
    return transposed_convolution("conv_transpose3d", 3, input, weight, bias, stride, padding,
                                  output_padding, groups, dilation, algorithm=algorithm, out=out,
                                  stream=stream, activation=activation,
                                  negative_slope=negative_slope, residual=residual)


for _ndim, _transpose in ((1, conv_transpose1d), (2, conv_transpose2d), (3, conv_transpose3d)):
    _document(_transpose, _TDOC, _ndim, (2, 3) + (4,) * _ndim, (1, 3) + (10,) * _ndim)
del _ndim, _conv, _transpose
