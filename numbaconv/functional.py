"""Public forward convolutions: ``conv1d``, ``conv2d``, ``conv3d``.

The layer between users and algorithms: validate once (build a
:class:`~numbaconv.spec.ConvSpec`), pick the algorithm, bring the arrays into
the canonical 3-D, C-contiguous, compute-dtype form the algorithms expect,
and handle ``out=``, unbatched input and float16.
"""

from __future__ import annotations

import numpy as np

from .algorithms import resolve_algorithm
from .spec import check_float_array, make_conv_spec


def _check_out(spec, out, arrays):
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{spec.op}: out must be a NumPy array, got {type(out).__name__}")
    expected = spec.user_output_shape
    if out.shape != expected:
        raise ValueError(f"{spec.op}: out must have shape {expected}, got out.shape={out.shape}")
    if out.dtype != spec.dtype:
        raise ValueError(f"{spec.op}: out must have dtype {spec.dtype}, got out.dtype={out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{spec.op}: out must be C-contiguous, got an array with "
                         f"out.strides={out.strides}")
    if not out.flags.writeable:
        raise ValueError(f"{spec.op}: out must be writeable, got a read-only array")
    for name, array in arrays.items():
        if array is not None and _overlaps(out, array):
            raise ValueError(f"{spec.op}: out must not share memory with {name}")


def _overlaps(a, b):
    """Exact overlap test, bounded in work; assume overlap if undecided."""
    try:
        return np.shares_memory(a, b, max_work=10_000)
    except np.exceptions.TooHardError:
        return True


def _canonical(array, shape, dtype):
    """A C-contiguous ``dtype`` copy-or-view of ``array`` reshaped to ``shape``."""
    return np.ascontiguousarray(array, dtype=dtype).reshape(shape)


def convolution(op, ndim, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                *, padding_mode="zeros", algorithm="auto", out=None):
    """Shared body of ``conv1d``/``conv2d``/``conv3d`` (``ndim`` spatial dims)."""
    input = check_float_array(op, "input", input)
    weight = check_float_array(op, "weight", weight)
    bias = check_float_array(op, "bias", bias, allow_none=True)
    spec = make_conv_spec(op, ndim, input, weight, bias, stride, padding, dilation, groups,
                          padding_mode)
    runner = resolve_algorithm(algorithm, spec)
    if out is not None:
        _check_out(spec, out, {"input": input, "weight": weight, "bias": bias})

    cdtype = spec.compute_dtype
    lead3 = (1,) * (3 - ndim)
    x = _canonical(input, spec.input_shape[:2] + spec.input_size3, cdtype)
    w = _canonical(weight, spec.weight_shape[:2] + lead3 + spec.kernel_size, cdtype)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=cdtype)
    out_shape3 = spec.output_shape[:2] + spec.output_size3

    if out is None:
        result = np.empty(spec.output_shape, dtype=cdtype)
    elif out.dtype == cdtype:
        result = out
    else:  # float16 out: compute in float32, convert at the end
        result = np.empty(spec.output_shape, dtype=cdtype)
    runner.run(spec, x, w, b, result.reshape(out_shape3))

    if out is not None:
        if result is not out:
            out[...] = result.reshape(out.shape)
        return out
    if spec.dtype != cdtype:
        result = result.astype(spec.dtype)
    return result[0] if spec.unbatched else result


_DOC = """{ndim}-D convolution (cross-correlation), with PyTorch's semantics.

Equivalent to ``torch.nn.functional.conv{ndim}d`` plus ``padding_mode`` from
``torch.nn.Conv{ndim}d``, on NumPy arrays.

Parameters
----------
input : ndarray, shape ({batched}) or ({unbatched})
    float16, float32 or float64.  Unbatched input gives unbatched output.
    Any strides (including negative) are accepted; the input is never
    modified.
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
    C-contiguous array of exactly the output shape and dtype; filled and
    returned.

Returns
-------
ndarray, shape ({out_batched})
    dtype is NumPy's promotion of the input, weight and bias dtypes;
    float16 is computed in float32 and rounded once at the end.

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


def _make(ndim):
    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
             padding_mode="zeros", algorithm="auto", out=None):
        return convolution(f"conv{ndim}d", ndim, input, weight, bias, stride, padding, dilation,
                           groups, padding_mode=padding_mode, algorithm=algorithm, out=out)

    conv.__name__ = conv.__qualname__ = f"conv{ndim}d"
    conv.__module__ = "numbaconv"
    conv.__doc__ = _DOC.format(
        ndim=ndim, batched=f"N, C_in, {_SPATIAL[ndim]}", unbatched=f"C_in, {_SPATIAL[ndim]}",
        kernel=_KERNEL[ndim], out_batched=f"N, C_out, {_OSPATIAL[ndim]}",
        example_x=(1, 2) + (5,) * ndim, example_w=(3, 2) + (3,) * ndim,
        example_out=(1, 3) + (5,) * ndim)
    return conv


conv1d = _make(1)
conv2d = _make(2)
conv3d = _make(3)
