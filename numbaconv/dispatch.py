"""Problems described by shapes, and measured tuning of them (``nc.tune``).

:func:`problem_spec` turns the arguments SPEC section 3 gives
``choose_algorithm`` and ``tune`` -- the forward (or transposed) call's
input and weight shapes, its parameters, ``transposed``, ``gradient`` and
``dtype`` -- into the spec of the computation asked about, validated
exactly as the real call would be.  Arrays are accepted in place of shapes
(their shape and dtype are used).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import tuning
from .spec import (make_conv_spec, make_grad_input_spec, make_grad_weight_spec,
                   make_transposed_spec)

GRADIENTS = (None, "input", "weight")


def _shape_and_dtype(name, value, dtype):
    if isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
        array = np.asarray(value)
        return tuple(array.shape), array.dtype
    if (isinstance(value, (tuple, list)) and value
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        return tuple(int(v) for v in value), np.dtype(dtype)
    raise TypeError(f"{name} must be a tuple of ints or an array, got {value!r}")


def _placeholder(shape, dtype):
    """A zero-memory array of ``shape`` (validation reads shapes and dtypes only)."""
    return np.lib.stride_tricks.as_strided(np.empty(1, dtype), shape, (0,) * len(shape))


def problem_spec(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                 transposed=False, output_padding=0, gradient=None, padding_mode="zeros",
                 dtype="float32", op=None):
    """The spec of the computation a ``choose_algorithm``/``tune`` call asks about.

    ``input_shape`` and ``weight_shape`` are those of the forward call
    (``conv{N}d``, or ``conv_transpose{N}d`` when ``transposed``);
    ``gradient`` is None (the call itself), ``"input"`` or ``"weight"``.
    Raises the errors the real call would raise.
    """
    input_shape, in_dtype = _shape_and_dtype("input_shape", input_shape, dtype)
    weight_shape, w_dtype = _shape_and_dtype("weight_shape", weight_shape, dtype)
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be None, 'input' or 'weight', got {gradient!r}")
    dtype = np.result_type(in_dtype, w_dtype)
    ndim = len(weight_shape) - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"weight_shape must have 3, 4 or 5 entries, got {weight_shape}")
    x = _placeholder(input_shape, dtype)
    w = _placeholder(weight_shape, dtype)
    if not transposed:
        name = op or f"conv{ndim}d"
        forward = make_conv_spec(name, ndim, x, w, None, stride, padding, dilation, groups,
                                 padding_mode)
        if gradient is None:
            return forward
        if padding_mode != "zeros":
            raise ValueError(f"gradients are computed for padding_mode='zeros' only, got "
                             f"{padding_mode!r}")
        if any(lo != hi for lo, hi in forward.padding):
            raise ValueError(f"gradients take symmetric padding, got {forward.padding} from "
                             f"padding={padding!r}")
        g = _placeholder(forward.user_output_shape, dtype)
        pads = tuple(lo for lo, _ in forward.padding)
        if gradient == "input":
            return make_grad_input_spec(op or f"grad.conv{ndim}d_input", ndim, input_shape, w,
                                        g, stride, pads, dilation, groups)
        return make_grad_weight_spec(op or f"grad.conv{ndim}d_weight", ndim, x, weight_shape, g,
                                     stride, pads, dilation, groups)
    if padding_mode != "zeros":
        raise ValueError(f"transposed convolutions pad with zeros only, got "
                         f"padding_mode={padding_mode!r}")
    name = op or f"conv_transpose{ndim}d"
    spec = make_transposed_spec(name, ndim, x, w, None, stride, padding, output_padding, groups,
                                dilation)
    if gradient is None:
        return spec
    # y = conv_transpose(x, w): dL/dx is conv(dL/dy, w), dL/dw the weight
    # gradient of that convolution with dL/dy as its input
    g = _placeholder(spec.user_output_shape, dtype)
    if gradient == "input":
        return make_conv_spec(op or f"conv{ndim}d", ndim, g, w, None, stride, padding, dilation,
                              groups)
    forward = make_conv_spec(f"conv{ndim}d", ndim, g, w, None, stride, padding, dilation, groups)
    xg = _placeholder(forward.user_output_shape, dtype)
    return make_grad_weight_spec(op or f"grad.conv{ndim}d_weight", ndim, g, weight_shape, xg,
                                 stride, padding, dilation, groups)


@dataclass(frozen=True)
class Tuned:
    """What :func:`tune` measured for one problem."""

    algorithm: str          # the fastest, now in the tuning cache
    seconds: dict           # median seconds per candidate
    problem: str            # the problem, described

    def __str__(self):
        return f"{self.problem}: {self.algorithm} ({tuning.estimated_seconds(self.seconds)})"


def tune(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
         transposed=False, output_padding=0, gradient=None, padding_mode="zeros",
         dtype="float32", device="cpu", force=False):
    """Measure every algorithm on one problem and store the fastest.

    Arguments as in ``choose_algorithm`` (SPEC section 3): the forward (or,
    with ``transposed``, transposed) call's input and weight shapes or
    arrays, its parameters, and ``gradient`` (None, ``"input"`` or
    ``"weight"``) for a gradient of it.  The winner goes to the tuning
    cache (Note [tuning cache] in :mod:`numbaconv.tuning`), where
    ``algorithm="auto"`` finds it when tuning is on (:func:`set_tuning`,
    ``NUMBACONV_TUNE=1``), in this and every later process with the same
    thread count, numbaconv version and CPU.

    Parameters
    ----------
    force : bool, default False
        Measure again even if the cache holds an answer.

    Returns
    -------
    Tuned
        ``algorithm`` (the fastest), ``seconds`` (median seconds of each
        candidate; from the cache if it was there) and ``problem``.

    Examples
    --------
    >>> import numbaconv as nc
    >>> nc.tune((1, 4, 32, 32), (4, 4, 3, 3), padding=1).algorithm in nc.algorithm_names()
    True
    """
    if device != "cpu":
        raise ValueError(f"tune: device must be 'cpu' in this release, got {device!r}")
    spec = problem_spec(input_shape, weight_shape, stride=stride, padding=padding,
                        dilation=dilation, groups=groups, transposed=transposed,
                        output_padding=output_padding, gradient=gradient,
                        padding_mode=padding_mode, dtype=dtype)
    name, seconds = tuning.tune_spec(spec, device, force=force)
    return Tuned(algorithm=name, seconds=dict(seconds), problem=spec.describe())
