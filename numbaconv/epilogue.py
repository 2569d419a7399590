"""The epilogue: what is applied to each output value where a kernel writes it.

Note [epilogue]
~~~~~~~~~~~~~~~
``y = activation(conv(x, w) + bias + residual)`` (SPEC 1c).  Every
algorithm's kernels apply the epilogue in the pass that writes the output,
never as a separate pass over it: a separate pass reads and writes the
whole output once more, which is what PyTorch's eager ``relu(conv(x) + r)``
pays and oneDNN's post-ops avoid.  The epilogue is carried from the public
function to the kernels as one :class:`Epilogue` object, so a new term is
added here and in the kernels' store, not threaded positionally through
every module.

Where the kernels apply it:

* The bias is added where each kernel starts (or ends) an output sum, as
  before.
* The residual and the activation are applied by
  :func:`numbaconv.kernels.epilogue_block.finish_block` to each block of
  output a kernel task has just completed (an im2col tile after its last
  GEMM, a direct kernel's output plane or pixel run, a Winograd or FFT
  chunk's scattered outputs), while that block is still in the task's
  cache.  One generic helper serves every kernel; its activation switch is
  outside the loops, so each loop is a plain vectorisable pass over a few
  kilobytes.
* The GPU kernels apply it per element at their store.

An epilogue without an activation or a residual (``fused`` false) takes
none of these paths, so the bias-only kernels are exactly what they were.

Conventions:

* ``Epilogue.bias`` is always an array, of ``C_out`` values or of none (a
  zero-length array); kernels test its length (Note [no bias] in
  kernels/__init__.py).
* ``Epilogue.residual`` is None or an array of the kernel's output shape
  and memory layout (C-contiguous, in the compute dtype), read at the same
  flat index the kernel writes.
* A rewrite that splits a problem (phases, crops) gives each part
  :meth:`Epilogue.window` of the epilogue for its part of the output, and
  output positions no part writes receive :meth:`Epilogue.fill`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: The activation names of SPEC 1c, in the order of their kernel codes
#: (code 0: none).  PyTorch's definitions: ``gelu`` is the exact (erf) form,
#: ``gelu_tanh`` is ``gelu(approximate="tanh")``.
ACTIVATIONS = (None, "relu", "relu6", "leaky_relu", "gelu", "gelu_tanh", "silu", "sigmoid",
               "tanh", "hardswish")

#: Activations whose derivative is a function of their output, so that
#: ``conv_backward(..., activation=, output=y)`` can fold it into
#: ``grad_output`` (SPEC 1c).
OUTPUT_DERIVATIVE_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "sigmoid", "tanh")

ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}


def check_activation(op, activation, negative_slope=0.01):
    """``activation`` (a name of :data:`ACTIVATIONS`) and ``negative_slope``
    validated, or a ValueError / TypeError naming the parameter."""
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"{op}: activation must be None or a string, got "
                        f"{type(activation).__name__}")
    if activation not in ACTIVATION_CODES:
        names = ", ".join(repr(a) for a in ACTIVATIONS)
        raise ValueError(f"{op}: activation must be one of {names}, got {activation!r}")
    if isinstance(negative_slope, (bool, np.bool_)) or not isinstance(
            negative_slope, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: negative_slope must be a real number, got "
                        f"{type(negative_slope).__name__}")
    if not math.isfinite(float(negative_slope)):
        raise ValueError(f"{op}: negative_slope must be finite, got {negative_slope!r}")
    if negative_slope != 0.01 and activation != "leaky_relu":
        raise ValueError(f"{op}: negative_slope applies to activation='leaky_relu' only, got "
                         f"negative_slope={negative_slope!r} with activation={activation!r}")
    return activation, float(negative_slope)


@functools.lru_cache(maxsize=None)
def _no_residual(dtype):
    """The zero-length residual of ``dtype`` kernels take for none (one per
    dtype: nothing writes to it)."""
    return np.empty(0, dtype=dtype)


@dataclass(frozen=True, eq=False)
class Epilogue:
    """The epilogue of one call (Note [epilogue]).

    Attributes
    ----------
    bias : array
        ``(C_out,)`` values added to every output of a channel, in the
        compute dtype, on the call's device; zero-length for no bias.
    activation : str or None
        A name of :data:`ACTIVATIONS`.
    negative_slope : float
        leaky_relu's slope.
    residual : array or None
        Added before the activation: the kernel's output shape and layout,
        C-contiguous, compute dtype, on the call's device.
    """

    bias: Any
    activation: str | None = None
    negative_slope: float = 0.01
    residual: Any = None

    @classmethod
    def of(cls, bias, dtype, activation=None, negative_slope=0.01, residual=None):
        """The epilogue of a call with ``bias`` (an array, or None) computing
        in ``dtype``, with an optional activation and residual."""
        if bias is None:
            none = _NONE.get(np.dtype(dtype))
            bias_only = cls(np.empty(0, dtype=dtype)) if none is None else none
        else:
            bias_only = cls(bias)
        if activation is None and residual is None:
            return bias_only
        # the constructor, not dataclasses.replace: 3 us of each call of a
        # small layer (docs/results-networks.md, "One-pixel layers")
        return cls(bias_only.bias, activation, float(negative_slope), residual)

    @property
    def has_bias(self) -> bool:
        return len(self.bias) != 0

    @property
    def fused(self) -> bool:
        """Whether there is more than the bias (an activation or a residual)."""
        return self.activation is not None or self.residual is not None

    @property
    def activation_code(self) -> int:
        return ACTIVATION_CODES[self.activation]

    def bias_or_none(self):
        """The bias array, or None when there is none."""
        return self.bias if len(self.bias) else None

    def without_bias(self):
        """This epilogue less its bias (for a caller that adds the bias itself)."""
        return replace(self, bias=self.bias[:0])

    def bias_only(self):
        """Just the bias (for a part whose residual and activation a caller
        applies itself, e.g. into a scratch buffer that is summed later)."""
        return Epilogue.of(self.bias_or_none(), self.bias.dtype)

    def kernel_args(self, dtype):
        """``(activation code, slope, flat residual)``: the arguments
        :func:`numbaconv.kernels.epilogue_block.finish_block` takes (a
        zero-length residual for none)."""
        residual = (_no_residual(dtype) if self.residual is None
                    else self.residual.reshape(-1))
        return self.activation_code, dtype.type(self.negative_slope), residual

    def window(self, index, shape=None):
        """The epilogue of ``out[index]`` computed into a C-contiguous buffer
        of that part's shape (``shape``, for a reshape of the part)."""
        if self.residual is None:
            return self
        part = np.ascontiguousarray(self.residual[index])
        return replace(self, residual=part if shape is None else part.reshape(shape))

    def fill(self, out):
        """Write the epilogue of an all-zero convolution into ``out``
        (canonical ``(N, C_out, ...)``): ``activation(bias + residual)``."""
        if self.has_bias:
            out[...] = self.bias.reshape((1, -1) + (1,) * (out.ndim - 2))
        else:
            out[...] = 0
        return self.apply(out) if self.fused else out

    def apply(self, out):
        """``out = activation(out + residual)`` in place, as a separate NumPy
        pass.

        For the few places that must (an output no kernel writes, a part
        computed into a scratch buffer) and for the unfused benchmark; the
        kernels fuse it (Note [epilogue]).  Works on any NumPy array of the
        residual's shape."""
        if not self.fused:
            return out
        if self.residual is not None:
            out += self.residual.reshape(out.shape)
        out[...] = activate(self.activation, out, self.negative_slope)
        return out


#: The epilogue of no bias per compute dtype, shared by every call without one.
_NONE = {np.dtype(t): Epilogue(np.empty(0, dtype=t)) for t in (np.float32, np.float64)}


def activate(activation, y, negative_slope=0.01):
    """``activation(y)`` in NumPy, in ``y``'s dtype, with PyTorch's
    definitions (NaN propagates): the float64 reference of the tests and
    the separate pass of :meth:`Epilogue.apply`."""
    y = np.asarray(y)
    if activation is None:
        return y
    if activation == "relu":
        return np.where(y < 0, 0, y).astype(y.dtype)
    if activation == "relu6":
        return np.where(y < 0, 0, np.where(y > 6, 6, y)).astype(y.dtype)   # NaN stays NaN
    if activation == "leaky_relu":
        return np.where(y < 0, y * negative_slope, y).astype(y.dtype)
    if activation == "gelu":
        from scipy.special import erf     # scipy is a dependency
        return (0.5 * y * (1 + erf(y / np.sqrt(2)))).astype(y.dtype)
    if activation == "gelu_tanh":
        c = np.sqrt(2 / np.pi)
        return (0.5 * y * (1 + np.tanh(c * (y + 0.044715 * y ** 3)))).astype(y.dtype)
    with np.errstate(over="ignore"):
        if activation == "silu":
            return (y / (1 + np.exp(-y))).astype(y.dtype)
        if activation == "sigmoid":
            return (1 / (1 + np.exp(-y))).astype(y.dtype)
    if activation == "tanh":
        return np.tanh(y)
    if activation == "hardswish":
        return (y * np.clip(y + 3, 0, 6) / 6).astype(y.dtype)
    raise ValueError(f"unknown activation {activation!r}")
