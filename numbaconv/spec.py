"""One normalised, validated description of a convolution problem.

Every public entry point builds a :class:`ConvSpec` once, from the raw user
arguments, and hands it to the algorithm that runs the problem.  All argument
checking and all output-shape arithmetic live here, so algorithms never
re-validate and never disagree about shapes.

Algorithms work on a *canonical 3-D form*: 1-D and 2-D problems are lifted to
3-D by prepending unit spatial dimensions (``W -> (1, 1, W)``,
``(H, W) -> (1, H, W)``), so one dimension-generic kernel serves all three
ranks.  The ``*3`` properties give that form.

Note [one general convolution]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
A spec describes one *general* convolution, in the way JAX's
``conv_general_dilated`` does: besides PyTorch's stride, padding and (kernel)
dilation it has an ``input_dilation`` (``L - 1`` zeros between neighbouring
input elements along an axis) and a ``computation``:

* ``"forward"``: ``out = conv(dilate(x, input_dilation), weight)``.  A plain
  convolution has ``input_dilation == 1``; a transposed convolution with
  stride ``s`` (and so the input gradient of a strided convolution) is the
  forward convolution of its input dilated by ``s`` with the flipped,
  in/out-swapped weight and padding ``dilation * (k - 1) - padding``
  (:mod:`numbaconv.rewrites`).  Padding may then be negative (a crop) or
  asymmetric (``output_padding`` adds to the end).
* ``"grad_weight"``: the gradient with respect to the weight of the forward
  convolution the spec describes (``input_dilation == 1``): a convolution
  whose reduction runs over the batch and the output positions.

Shape arithmetic is in the small pure functions :func:`conv_output_size` and
:func:`conv_input_size` (ATen's helpers of the same names).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NamedTuple, Sequence, Tuple, Union

import numpy as np

#: Type aliases of the public signatures.
Array = np.ndarray
ArrayLike = Union[np.ndarray, Sequence]
IntOrTuple = Union[int, Tuple[int, ...]]
PaddingArg = Union[int, Tuple[int, ...], str]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
COMPUTATIONS = ("forward", "grad_weight")
#: The public computation a spec was built for (Note [one general convolution]).
ORIGINS = ("forward", "transposed", "grad_input", "grad_weight")
#: How the input and output are laid out in memory: ``"contiguous"`` is
#: C-contiguous (N, C, spatial...); ``"channels_last"`` (N, spatial..., C) in
#: memory behind the same logical axes, as PyTorch's memory format (Note
#: [memory format]).
MEMORY_FORMATS = ("contiguous", "channels_last")
SUPPORTED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_DIM_NAMES = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}


# ---------------------------------------------------------------------------
# shape arithmetic (pure functions, one spatial axis at a time or tuples)
# ---------------------------------------------------------------------------

def _pair(p):
    return (p, p) if isinstance(p, int) else (int(p[0]), int(p[1]))


def dilated_size(size, input_dilation=1):
    """Length of an axis of ``size`` elements with ``input_dilation - 1``
    zeros between neighbours (0 stays 0)."""
    return (size - 1) * input_dilation + 1 if size > 0 else 0


def _axes(name, value, n, *, pairs=False):
    """``value`` as a tuple of ``n`` per-axis entries: an int is broadcast (as
    the conv functions take ``stride=2``), a sequence must have ``n`` entries.
    With ``pairs``, an entry may also be a ``(before, after)`` pair."""
    if _is_int(value):
        return (int(value),) * n
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be an int or a sequence of {n} per-axis entries "
                             f"(one per entry of the sizes), got {name}={value!r}")
        if all(_is_int(v) or (pairs and isinstance(v, (tuple, list)) and len(v) == 2
                              and all(_is_int(e) for e in v)) for v in value):
            return tuple(value)
    what = "ints or (before, after) pairs" if pairs else "ints"
    raise TypeError(f"{name} must be an int or a sequence of {n} {what}, got {name}={value!r}")


def _axis_int(name, value):
    """A one-axis argument of the shape helpers, checked to be an int."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int for a single axis (or pass the sizes as a "
                        f"tuple for several), got {name}={value!r}")
    return int(value)


def conv_output_size(input_size: IntOrTuple, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                     padding: Union[int, Tuple[int, ...], Tuple[Tuple[int, int], ...]] = 0,
                     dilation: IntOrTuple = 1, input_dilation: IntOrTuple = 1) -> IntOrTuple:
    """Output length of a convolution along one axis, or a tuple of them.

    Parameters
    ----------
    input_size : int or sequence of int
        One axis's length, or one length per axis (the result is then a tuple).
    kernel_size, stride, dilation, input_dilation : int or sequence of int
        An int applies to every axis, as the conv functions take it; a
        sequence gives one entry per axis of ``input_size``.
    padding : int, (before, after) pair, or sequence of them
        Either side may be negative (a crop); with several axes, an int
        pads every axis on both sides and a sequence has an int or a pair
        per axis.

    Returns
    -------
    int or tuple of int
        May be zero or negative when the kernel does not fit; callers check.

    Raises
    ------
    TypeError, ValueError
        An argument is not an int (or pair) or has the wrong number of
        entries; the message names it.

    Examples
    --------
    >>> conv_output_size(56, 3, stride=2, padding=1)
    28
    >>> conv_output_size((32, 32), (3, 3), stride=2, padding=1)
    (16, 16)
    >>> conv_output_size((28, 28), (4, 4), (1, 1), ((2, 2), (2, 2)), (1, 1), (2, 2))
    (56, 56)
    """
    if isinstance(input_size, (tuple, list)):
        n = len(input_size)
        return _output_sizes(
            _axes("input_size", input_size, n), _axes("kernel_size", kernel_size, n),
            _axes("stride", stride, n), _axes("padding", padding, n, pairs=True),
            _axes("dilation", dilation, n), _axes("input_dilation", input_dilation, n))
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2 or not all(_is_int(p) for p in padding):
            raise TypeError(f"padding must be an int or a (before, after) pair for a single "
                            f"axis, got padding={padding!r}")
    else:
        _axis_int("padding", padding)
    return _output_length(_axis_int("input_size", input_size),
                          _axis_int("kernel_size", kernel_size), _axis_int("stride", stride),
                          padding, _axis_int("dilation", dilation),
                          _axis_int("input_dilation", input_dilation))


def _output_sizes(input_size, kernel_size, stride, padding, dilation, input_dilation):
    """:func:`conv_output_size` of per-axis tuples, unchecked: the specs'
    own arithmetic, on validated values, on every call's path."""
    return tuple(map(_output_length, input_size, kernel_size, stride, padding, dilation,
                     input_dilation))


def _output_length(input_size, kernel_size, stride, padding, dilation, input_dilation):
    lo, hi = _pair(padding)
    padded = dilated_size(input_size, input_dilation) + lo + hi
    return (padded - dilation * (kernel_size - 1) - 1) // stride + 1


def conv_input_size(output_size: IntOrTuple, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                    padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
                    output_padding: IntOrTuple = 0) -> IntOrTuple:
    """Input length a convolution's output (of ``output_size``) came from.

    The output size of the transposed convolution and the input size its
    input gradient has: ``(out - 1) * stride - 2 * padding + dilation *
    (kernel - 1) + output_padding + 1``.  Of the ``stride`` input sizes that
    give the same output, ``output_padding`` (``< stride``) picks one.

    Parameters
    ----------
    output_size : int or sequence of int
        One axis's length, or one length per axis (the result is then a tuple).
    kernel_size, stride, padding, dilation, output_padding : int or sequence of int
        An int applies to every axis, as the conv functions take it; a
        sequence gives one entry per axis of ``output_size``.

    Returns
    -------
    int or tuple of int

    Raises
    ------
    TypeError, ValueError
        An argument is not an int or has the wrong number of entries; the
        message names it.

    Examples
    --------
    >>> conv_input_size(28, 4, stride=2, padding=1)
    56
    >>> conv_input_size((16, 16), (3, 3), stride=2, padding=1, output_padding=1)
    (32, 32)
    """
    if isinstance(output_size, (tuple, list)):
        n = len(output_size)
        return _input_sizes(_axes("output_size", output_size, n),
                            _axes("kernel_size", kernel_size, n), _axes("stride", stride, n),
                            _axes("padding", padding, n), _axes("dilation", dilation, n),
                            _axes("output_padding", output_padding, n))
    return _input_length(*(_axis_int(name, value) for name, value in (
        ("output_size", output_size), ("kernel_size", kernel_size), ("stride", stride),
        ("padding", padding), ("dilation", dilation), ("output_padding", output_padding))))


def _input_sizes(output_size, kernel_size, stride, padding, dilation, output_padding):
    """:func:`conv_input_size` of per-axis tuples, unchecked (the twin of
    :func:`_output_sizes`)."""
    return tuple(map(_input_length, output_size, kernel_size, stride, padding, dilation,
                     output_padding))


def _input_length(output_size, kernel_size, stride, padding, dilation, output_padding):
    return ((output_size - 1) * stride - 2 * padding + dilation * (kernel_size - 1)
            + output_padding + 1)


# ---------------------------------------------------------------------------
# Note [memory format]
# ---------------------------------------------------------------------------
# The memory format follows the input, as PyTorch's channels_last does
# (SPEC 1b, docs/semantics.md "Memory format").  An array of ``ndim``
# spatial axes is *channels-last* when it is not C-contiguous and moving its
# channel axis (1, or 0 unbatched) last gives a C-contiguous array: a logical
# (N, C, H, W) view of NHWC memory such as ``x_nhwc.transpose(0, 3, 1, 2)``.
# Everything else is *contiguous* (other strides are copied, as before).
# Contiguity is NumPy's, which ignores the strides of axes of length 1, so an
# ambiguous array -- one channel, or every spatial size 1, which is both
# layouts at once -- is C-contiguous and so contiguous, as PyTorch's
# suggest_memory_format answers.  The spec of a call records the format of
# its input (of grad_output for an input gradient); algorithms that declare
# it receive channels-last arrays as (N, D, H, W, C) C-contiguous views, the
# others are served by packing (numbaconv.algorithms.registry, Note [packing]).
# On the GPU the CUDA backend packs on the device and runs the contiguous
# spec (Note [GPU memory format] in numbaconv/cuda/arrays.py).


def c_contiguous_strides(shape, strides, itemsize):
    """NumPy's C-contiguity from a shape and strides (axes of length 1 do
    not count; an empty array is contiguous)."""
    if 0 in shape:
        return True
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1:
            if s != expected:
                return False
            expected *= n
    return True


def memory_format_of(array, ndim) -> str:
    """``"channels_last"`` or ``"contiguous"``: the memory format of an
    array of ``ndim`` spatial axes, batched or not (Note [memory format]).

    Anything without strides (an :class:`Operand`, a shape) is contiguous,
    as is an array of another rank (its call refuses it)."""
    if type(array) is np.ndarray and array.flags.c_contiguous:
        return "contiguous"                    # the common case, without the arithmetic
    strides = getattr(array, "strides", None)
    shape = tuple(getattr(array, "shape", ()))
    if strides is None or len(shape) not in (ndim + 1, ndim + 2):
        return "contiguous"
    strides = tuple(strides)
    itemsize = np.dtype(array.dtype).itemsize
    if c_contiguous_strides(shape, strides, itemsize):
        return "contiguous"
    axis = len(shape) - ndim - 1
    moved = lambda t: t[:axis] + t[axis + 1:] + (t[axis],)   # noqa: E731
    return ("channels_last" if c_contiguous_strides(moved(shape), moved(strides), itemsize)
            else "contiguous")


def check_memory_format(op, memory_format):
    """``memory_format`` if it is one of :data:`MEMORY_FORMATS`, else a
    ValueError (TypeError for a non-string) naming it (after ``op``, when
    given)."""
    where = f"{op}: " if op else ""
    if not isinstance(memory_format, str):
        raise TypeError(f"{where}memory_format must be a string, got "
                        f"{type(memory_format).__name__}")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"{where}memory_format must be one of "
                         f"{', '.join(map(repr, MEMORY_FORMATS))}, got {memory_format!r}")
    return memory_format


def channels_last_view(array, ndim):
    """The (N, spatial..., C) view of a logical (N, C, spatial...) array of
    ``ndim`` spatial axes (unbatched: (spatial..., C) of (C, spatial...)):
    C-contiguous when the array is channels-last."""
    return np.moveaxis(array, array.ndim - ndim - 1, -1)


@dataclass(frozen=True)
class ConvSpec:
    """A validated convolution problem (PyTorch semantics, N C spatial layout).

    Attributes
    ----------
    op : str
        Name of the public function, used in messages (``"conv2d"``).
    ndim : int
        Number of spatial dimensions (1, 2 or 3).
    batch : int
        Batch size N (1 for unbatched input).
    in_channels, out_channels, groups : int
        Channel counts and group count.
    input_size, kernel_size, output_size : tuple of int
        Spatial sizes, ``ndim`` entries each.
    stride, dilation : tuple of int
        Per spatial dimension.
    padding : tuple of (int, int)
        ``(before, after)`` padding per spatial dimension; asymmetric only for
        ``padding="same"`` with an even effective kernel, like PyTorch.
    padding_mode : str
        One of ``"zeros"``, ``"reflect"``, ``"replicate"``, ``"circular"``.
    dtype : numpy.dtype
        Result dtype (NumPy promotion of input, weight and bias).
    compute_dtype : numpy.dtype
        Dtype the kernels compute in (float32 for float16 results).
    has_bias : bool
        Whether a bias is added.
    unbatched : bool
        Whether the user passed input without a batch dimension.
    input_dilation : tuple of int
        Per spatial dimension: ``L - 1`` zeros sit between neighbouring input
        elements (Note [one general convolution]); 1 for a plain convolution.
    computation : {"forward", "grad_weight"}
        What is computed from the convolution described.
    origin : {"forward", "transposed", "grad_input", "grad_weight"}
        The public computation the spec was built for (a transposed
        convolution and an input gradient are both forward computations with
        input dilation; the origin says which one the caller asked for).
    memory_format : {"contiguous", "channels_last"}
        The memory format of the input and output (Note [memory format]):
        an algorithm that declares it in its ``formats`` receives
        ``run_input_shape`` and ``run_output_shape`` arrays.
    """

    op: str
    ndim: int
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    input_size: tuple
    kernel_size: tuple
    stride: tuple
    dilation: tuple
    padding: tuple
    padding_mode: str
    output_size: tuple
    dtype: np.dtype
    compute_dtype: np.dtype
    has_bias: bool
    unbatched: bool = False
    input_dilation: tuple = ()
    computation: str = "forward"
    origin: str = "forward"
    memory_format: str = "contiguous"

    def __post_init__(self):
        if not self.input_dilation:
            object.__setattr__(self, "input_dilation", (1,) * self.ndim)
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got "
                             f"{self.memory_format!r}")

    # ---- derived facts (cached: asked for on every call) ----------------
    @cached_property
    def in_channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @cached_property
    def out_channels_per_group(self) -> int:
        return self.out_channels // self.groups

    @cached_property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.in_channels_per_group == 1

    @cached_property
    def is_pointwise(self) -> bool:
        """1x1 kernel, stride 1, no padding: the convolution is one GEMM."""
        return (all(k == 1 for k in self.kernel_size)
                and all(s == 1 for s in self.stride)
                and all(p == (0, 0) for p in self.padding))

    @cached_property
    def has_input_dilation(self) -> bool:
        return any(v != 1 for v in self.input_dilation)

    @cached_property
    def padded_size(self) -> tuple:
        """Spatial size of the (input-dilated) padded input."""
        return tuple(dilated_size(n, v) + lo + hi for n, v, (lo, hi)
                     in zip(self.input_size, self.input_dilation, self.padding))

    @cached_property
    def effective_kernel_size(self) -> tuple:
        """Extent of the dilated kernel: ``dilation * (k - 1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    @cached_property
    def input_shape(self) -> tuple:
        """Batched input shape ``(N, C_in, *input_size)``."""
        return (self.batch, self.in_channels) + self.input_size

    @cached_property
    def weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels_per_group) + self.kernel_size

    @cached_property
    def weight_shape3(self) -> tuple:
        """The weight's shape in the canonical 3-D form."""
        return self.weight_shape[:2] + (1,) * (3 - self.ndim) + self.kernel_size

    @cached_property
    def output_shape(self) -> tuple:
        """Batched output shape ``(N, C_out, *output_size)``."""
        return (self.batch, self.out_channels) + self.output_size

    @cached_property
    def channels_last(self) -> bool:
        return self.memory_format == "channels_last"

    @cached_property
    def run_input_shape(self) -> tuple:
        """The input array an algorithm runs on: ``(N, C, D, H, W)``, or
        ``(N, D, H, W, C)`` channels-last (the canonical 3-D form)."""
        n, c = self.batch, self.in_channels
        return (n,) + self.input_size3 + (c,) if self.channels_last else (n, c) + self.input_size3

    @cached_property
    def run_output_shape(self) -> tuple:
        """The output array an algorithm writes: ``(N, C_out, OD, OH, OW)``,
        or ``(N, OD, OH, OW, C_out)`` channels-last."""
        n, c = self.batch, self.out_channels
        return ((n,) + self.output_size3 + (c,) if self.channels_last
                else (n, c) + self.output_size3)

    @cached_property
    def user_output_shape(self) -> tuple:
        """Output shape as returned to the user (no batch axis if unbatched)."""
        return self.output_shape[1:] if self.unbatched else self.output_shape

    @cached_property
    def flops(self) -> int:
        """Multiply-adds counted as 2 FLOPs, the convention of docs/benchmarking.md.

        With input dilation only the products with input elements count (a
        transposed convolution: every input pixel meets every tap once);
        a weight gradient costs as much as its forward convolution."""
        if self.has_input_dilation:
            return (2 * self.batch * self.out_channels * self.in_channels_per_group
                    * math.prod(self.kernel_size) * math.prod(self.input_size))
        return (2 * self.batch * self.out_channels * self.in_channels_per_group
                * math.prod(self.kernel_size) * math.prod(self.output_size))

    # ---- canonical 3-D form (cached: asked for on every call) -----------
    def _lift(self, values, fill):
        return (fill,) * (3 - self.ndim) + tuple(values)

    @cached_property
    def input_size3(self) -> tuple:
        return self._lift(self.input_size, 1)

    @cached_property
    def kernel_size3(self) -> tuple:
        return self._lift(self.kernel_size, 1)

    @cached_property
    def output_size3(self) -> tuple:
        return self._lift(self.output_size, 1)

    @cached_property
    def stride3(self) -> tuple:
        return self._lift(self.stride, 1)

    @cached_property
    def dilation3(self) -> tuple:
        return self._lift(self.dilation, 1)

    @cached_property
    def input_dilation3(self) -> tuple:
        return self._lift(self.input_dilation, 1)

    @cached_property
    def padding3(self) -> tuple:
        return self._lift(self.padding, (0, 0))

    @cached_property
    def padded_size3(self) -> tuple:
        return self._lift(self.padded_size, 1)

    @cached_property
    def effective_kernel_size3(self) -> tuple:
        return self._lift(self.effective_kernel_size, 1)

    def describe(self) -> str:
        """Short human-readable summary, for tables and messages.

        A transposed problem (built by :func:`make_transposed_spec`) is
        described with the parameters its caller gave, not the rewritten
        ones."""
        if self.has_input_dilation or self.origin in ("transposed", "grad_input"):
            return self._describe_transposed()
        parts = [f"input={self.input_shape}", f"weight={self.weight_shape}"]
        if any(s != 1 for s in self.stride):
            parts.append(f"stride={self.stride}")
        if any(p != (0, 0) for p in self.padding):
            parts.append(f"padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={self.dilation}")
        if self.has_input_dilation:
            parts.append(f"input_dilation={self.input_dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        what = "" if self.computation == "forward" else f"{self.computation} of "
        return f"{what}{self.op}({', '.join(parts)}, dtype={self.dtype.name}{self._format()})"

    def _format(self):
        return ", memory_format='channels_last'" if self.channels_last else ""

    def _describe_transposed(self):
        weight = (self.in_channels, self.out_channels_per_group) + self.kernel_size
        spans = [d * (k - 1) for k, d in zip(self.kernel_size, self.dilation)]
        padding = tuple(e - lo for e, (lo, _) in zip(spans, self.padding))
        output_padding = tuple(hi - lo for lo, hi in self.padding)
        first = "grad_output" if self.op.endswith("_input") else "input"
        parts = [f"{first}={self.input_shape}", f"weight={weight}"]
        for name, values, default in (("stride", self.input_dilation, 1),
                                      ("padding", padding, 0),
                                      ("output_padding", output_padding, 0),
                                      ("dilation", self.dilation, 1)):
            if any(v != default for v in values):
                parts.append(f"{name}={values}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        return f"{self.op}({', '.join(parts)}, dtype={self.dtype.name}{self._format()})"


# ---------------------------------------------------------------------------
# argument normalisation helpers
# ---------------------------------------------------------------------------

class Operand(NamedTuple):
    """What a spec builder reads of an array: its shape and dtype.

    The builders take these, not arrays, so a spec can be built from shapes
    alone (:func:`problem_spec`) with no placeholder arrays."""

    shape: tuple
    dtype: np.dtype
    memory_format: str = "contiguous"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @classmethod
    def of(cls, array, ndim=None):
        """The operand of ``array`` (anything with ``shape`` and ``dtype``),
        or None for None; with ``ndim`` (spatial axes) its memory format is
        read from its strides (Note [memory format])."""
        if array is None:
            return None
        fmt = "contiguous" if ndim is None else memory_format_of(array, ndim)
        return cls(tuple(array.shape), np.dtype(array.dtype), fmt)


def _format_of(operand):
    return getattr(operand, "memory_format", "contiguous")


def _split_input(input, ndim):
    """(unbatched, batch, channels, spatial sizes) of an input of ``ndim``
    spatial dimensions, with or without its batch axis."""
    unbatched = input.ndim == ndim + 1
    shape = (1,) + input.shape if unbatched else input.shape
    return unbatched, int(shape[0]), int(shape[1]), tuple(int(v) for v in shape[2:])


def _is_int(value) -> bool:
    if type(value) is int:      # the common case, without the slow ABC check
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _per_dim(op, name, value, ndim, *, minimum):
    """Broadcast an int or check a sequence of ``ndim`` ints, each >= minimum."""
    if _is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        if len(value) != ndim:
            raise ValueError(
                f"{op}: {name} must be an int or a tuple of {ndim} ints, "
                f"got {name}={tuple(value)!r} with {len(value)} entries")
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(
            f"{op}: {name} must be an int or a tuple of {ndim} ints, got {value!r}")
    if any(v < minimum for v in values):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {what}, got {name}={value!r}")
    return values


def check_float_array(op, name, array, *, allow_none=False):
    """Return ``array`` as an ndarray of a supported float dtype, or raise."""
    if array is None:
        if allow_none:
            return None
        raise TypeError(f"{op}: {name} must be a NumPy array, got None")
    if not isinstance(array, np.ndarray):
        kind = type(array).__name__
        if getattr(array, "requires_grad", False):
            raise TypeError(f"{op}: {name} is a PyTorch tensor that requires grad; pass "
                            f"{name}.detach() (numbaconv computes gradients with "
                            f"numbaconv.grad / conv_backward, not autograd)")
        from .devices import is_device_array
        if is_device_array(array):
            raise TypeError(f"{op}: {name} is a GPU array ({kind}); this function runs on "
                            f"the host: copy it there first (.copy_to_host(), .get() or "
                            f".cpu().numpy())")
        try:
            array = np.asarray(array)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{op}: {name} must be array-like (a NumPy array or a rectangular "
                            f"nested list), got {kind}: {exc}") from exc
        if array.dtype == object:
            raise TypeError(f"{op}: {name} must be array-like with numbers, got a {kind} that "
                            f"NumPy reads as an array of Python objects")
    if array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{op}: {name} dtype must be float16, float32 or float64, got {array.dtype}")
    return array


@functools.lru_cache(maxsize=None)
def _memory_bytes():
    """This machine's physical memory (1 TiB when the OS does not say); asked
    once, not on every call's spec."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2**40


def _check_sizes(op, shapes, dtype, culprit):
    """Refuse, before anything is allocated, a call whose output (or the
    padded copy of its input some algorithms make) cannot fit in this
    machine's memory, naming the parameter that made it so large: NumPy's
    own "Unable to allocate 3.64 TiB" names nothing."""
    limit = _memory_bytes()
    for what, shape in shapes.items():
        nbytes = math.prod(int(v) for v in shape) * np.dtype(dtype).itemsize
        if nbytes > limit:
            cause = f"; {culprit} makes it that large" if culprit else ""
            raise ValueError(
                f"{op}: the {what} would have shape {tuple(int(v) for v in shape)}, "
                f"{nbytes / 2**30:,.1f} GiB of {np.dtype(dtype).name}, more than this "
                f"machine's {limit / 2**30:,.1f} GiB of memory{cause}")


def _same_padding(dilation, kernel_size):
    """PyTorch's split for padding='same': the odd extra element goes after."""
    pads = []
    for d, k in zip(dilation, kernel_size):
        total = d * (k - 1)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def make_conv_spec(op, ndim, input, weight, bias=None, stride=1, padding=0, dilation=1,
                   groups=1, padding_mode="zeros"):
    """Validate the arguments of a forward convolution and build its spec.

    Parameters follow ``torch.nn.functional.conv{ndim}d`` plus ``padding_mode``
    from ``torch.nn.Conv{ndim}d``.  ``input``, ``weight`` and ``bias`` are
    :class:`Operand` s (or anything with ``shape``, ``ndim`` and ``dtype``)
    of a supported dtype (see :func:`check_float_array`).

    Raises
    ------
    ValueError, TypeError
        With a message naming the parameter, what was expected and what was
        given.
    """
    names = _DIM_NAMES[ndim]
    if input.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"{op}: expected input of {ndim + 1} (unbatched) or {ndim + 2} (batched) "
            f"dimensions (N, C, {', '.join(names)}), got input.shape={input.shape}")
    if weight.ndim != ndim + 2:
        raise ValueError(
            f"{op}: weight must have {ndim + 2} dimensions "
            f"(out_channels, in_channels/groups, {', '.join('k' + n for n in names)}), "
            f"got weight.shape={weight.shape}")
    unbatched, batch, in_channels, input_size = _split_input(input, ndim)
    out_channels = int(weight.shape[0])
    kernel_size = tuple(int(k) for k in weight.shape[2:])

    groups = _check_groups(op, groups)
    if out_channels < 1:
        raise ValueError(
            f"{op}: weight must have at least one output channel, got weight.shape={weight.shape}")
    if in_channels < 1:
        # PyTorch accepts this but returns an output with 0 channels, which
        # contradicts weight.shape[0]; refusing is the only unsurprising answer.
        raise ValueError(f"{op}: input must have at least one channel, got "
                         f"input.shape={input.shape}")
    if out_channels % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide out_channels={out_channels} "
            f"(weight.shape[0])")
    if in_channels % groups:
        raise ValueError(f"{op}: groups={groups} must divide in_channels={in_channels}")
    if weight.shape[1] * groups != in_channels:
        raise ValueError(
            f"{op}: weight.shape[1] must be in_channels/groups = {in_channels}/{groups} "
            f"= {in_channels // groups}, got weight.shape={weight.shape}")
    if any(k < 1 for k in kernel_size):
        raise ValueError(f"{op}: kernel sizes must be positive, got weight.shape={weight.shape}")

    stride = _per_dim(op, "stride", stride, ndim, minimum=1)
    dilation = _per_dim(op, "dilation", dilation, ndim, minimum=1)

    if not isinstance(padding_mode, str):
        raise TypeError(f"{op}: padding_mode must be a string, got {padding_mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{op}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
            f"got {padding_mode!r}")

    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * ndim
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"{op}: padding='same' is not supported for strided convolutions, "
                    f"got stride={stride}")
            pads = _same_padding(dilation, kernel_size)
        else:
            raise ValueError(
                f"{op}: padding must be 'same', 'valid', an int or a tuple of {ndim} ints, "
                f"got {padding!r}")
    else:
        pads = tuple((p, p) for p in _per_dim(op, "padding", padding, ndim, minimum=0))

    if padding_mode != "zeros":
        for name, n, (lo, hi) in zip(names, input_size, pads):
            if padding_mode == "reflect" and max(lo, hi) >= n:
                raise ValueError(
                    f"{op}: padding_mode='reflect' needs padding smaller than the input "
                    f"size, got padding {max(lo, hi)} for input size {n} along {name}")
            if padding_mode in ("circular", "replicate") and n == 0:
                raise ValueError(
                    f"{op}: padding_mode={padding_mode!r} cannot pad an empty input "
                    f"dimension, got input size 0 along {name}")
            if padding_mode == "circular" and max(lo, hi) > n:
                raise ValueError(
                    f"{op}: padding_mode='circular' needs padding at most the input size, "
                    f"got padding {max(lo, hi)} for input size {n} along {name}")

    padded = tuple(n + lo + hi for n, (lo, hi) in zip(input_size, pads))
    effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))
    if any(e > p for e, p in zip(effective, padded)):
        raise ValueError(
            f"{op}: kernel size can't be greater than the padded input size: input size "
            f"{input_size} plus padding {pads} gives {padded}, but the kernel "
            f"(weight.shape={weight.shape}, dilation={dilation}) spans {effective}")
    output_size = tuple((p - e) // s + 1 for p, e, s in zip(padded, effective, stride))

    dtype = _result_dtype(op, input, weight, bias, out_channels)
    compute_dtype = np.dtype(np.float32) if dtype == np.float16 else dtype
    culprit = ("padding" if any(max(lo, hi) > n for n, (lo, hi) in zip(input_size, pads))
               else "dilation" if any(d > 1 and e > 2 * n for e, d, n in
                                      zip(effective, dilation, input_size))
               else None)
    _check_sizes(op, {"output": (batch, out_channels) + output_size,
                      "padded input": (batch, in_channels) + padded}, dtype,
                 culprit and f"{culprit}={padding if culprit == 'padding' else dilation}")

    return ConvSpec(
        op=op, ndim=ndim, batch=int(batch), in_channels=int(in_channels),
        out_channels=out_channels, groups=groups, input_size=input_size,
        kernel_size=kernel_size, stride=stride, dilation=dilation, padding=pads,
        padding_mode=padding_mode, output_size=output_size, dtype=np.dtype(dtype),
        compute_dtype=compute_dtype, has_bias=bias is not None, unbatched=unbatched,
        memory_format=_format_of(input))


def general_spec(op, ndim, batch, in_channels, out_channels, groups, input_size, kernel_size,
                 *, stride=None, padding=None, dilation=None, input_dilation=None,
                 padding_mode="zeros", dtype=np.float32, has_bias=False, unbatched=False,
                 computation="forward", origin="forward", memory_format="contiguous"):
    """A spec built from already-validated numbers (the rewrites' constructor).

    Sizes and per-axis parameters are tuples of ``ndim`` entries (``None``:
    all ones, or no padding); ``padding`` holds ``(before, after)`` pairs and
    may be negative.  Only the derived output size is computed here; the
    caller guarantees it is positive (or the spec is never run).
    """
    ones = (1,) * ndim
    stride = ones if stride is None else tuple(stride)
    dilation = ones if dilation is None else tuple(dilation)
    input_dilation = ones if input_dilation is None else tuple(input_dilation)
    padding = ((0, 0),) * ndim if padding is None else tuple(_pair(p) for p in padding)
    output_size = _output_sizes(input_size, kernel_size, stride, padding, dilation,
                                input_dilation)
    dtype = np.dtype(dtype)
    return ConvSpec(
        op=op, ndim=ndim, batch=int(batch), in_channels=int(in_channels),
        out_channels=int(out_channels), groups=int(groups), input_size=tuple(input_size),
        kernel_size=tuple(kernel_size), stride=stride, dilation=dilation, padding=padding,
        padding_mode=padding_mode, output_size=output_size, dtype=dtype,
        compute_dtype=np.dtype(np.float32) if dtype == np.float16 else dtype,
        has_bias=has_bias, unbatched=unbatched, input_dilation=input_dilation,
        computation=computation, origin=origin, memory_format=memory_format)


# ---------------------------------------------------------------------------
# transposed convolution and gradients
# ---------------------------------------------------------------------------

def _check_rank(op, ndim, name, array, *, layout):
    if array.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"{op}: expected {name} of {ndim + 1} (unbatched) or {ndim + 2} (batched) "
            f"dimensions ({layout}, {', '.join(_DIM_NAMES[ndim])}), got {name}.shape={array.shape}")


def _result_dtype(op, input, weight, bias, out_channels, where=""):
    """NumPy's promotion of the arrays' dtypes, after checking the bias's shape."""
    dtypes = [input.dtype, weight.dtype]
    if bias is not None:
        if bias.ndim != 1 or bias.shape[0] != out_channels:
            raise ValueError(
                f"{op}: bias must be a 1-D array of out_channels={out_channels} values"
                f"{where}, got bias.shape={bias.shape}")
        dtypes.append(bias.dtype)
    return np.result_type(*dtypes)


def _check_groups(op, groups):
    if not _is_int(groups):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be positive, got groups={groups}")
    return int(groups)


def _int_padding(op, padding, ndim):
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of {ndim} ints "
                         f"(no 'same'/'valid' here, as in PyTorch), got {padding!r}")
    return _per_dim(op, "padding", padding, ndim, minimum=0)


def make_transposed_spec(op, ndim, input, weight, bias=None, stride=1, padding=0,
                         output_padding=0, groups=1, dilation=1, *, origin="transposed"):
    """Validate a transposed convolution and build its general spec.

    Parameters follow ``torch.nn.functional.conv_transpose{ndim}d``: weight
    ``(C_in, C_out/groups, k...)``.  The spec is the equivalent forward
    convolution (Note [one general convolution]): input dilation ``stride``,
    stride 1, padding ``dilation * (k - 1) - padding`` before and that plus
    ``output_padding`` after; its weight is
    :func:`numbaconv.rewrites.transposed_weight` of ``weight``.
    """
    names = _DIM_NAMES[ndim]
    _check_rank(op, ndim, "input", input, layout="N, C_in")
    if weight.ndim != ndim + 2:
        raise ValueError(
            f"{op}: weight must have {ndim + 2} dimensions "
            f"(in_channels, out_channels/groups, {', '.join('k' + n for n in names)}), "
            f"got weight.shape={weight.shape}")
    unbatched, batch, in_channels, input_size = _split_input(input, ndim)
    kernel_size = tuple(int(k) for k in weight.shape[2:])
    groups = _check_groups(op, groups)
    if in_channels < 1:
        raise ValueError(f"{op}: input must have at least one channel, got "
                         f"input.shape={input.shape}")
    if weight.shape[0] != in_channels:
        raise ValueError(f"{op}: weight.shape[0] must be in_channels = {in_channels} "
                         f"(input.shape[{0 if unbatched else 1}]), got weight.shape={weight.shape}")
    if in_channels % groups:
        raise ValueError(f"{op}: groups={groups} must divide in_channels={in_channels}")
    if weight.shape[1] < 1 or any(k < 1 for k in kernel_size):
        raise ValueError(f"{op}: weight sizes must be positive, got weight.shape={weight.shape}")
    if any(n < 1 for n in input_size):
        raise ValueError(f"{op}: input spatial sizes must be positive, got "
                         f"input.shape={input.shape}")
    out_channels = int(weight.shape[1]) * groups
    stride = _per_dim(op, "stride", stride, ndim, minimum=1)
    dilation = _per_dim(op, "dilation", dilation, ndim, minimum=1)
    padding = _int_padding(op, padding, ndim)
    output_padding = _per_dim(op, "output_padding", output_padding, ndim, minimum=0)
    for name, o, s, d in zip(names, output_padding, stride, dilation):
        if o >= s and o >= d:
            raise ValueError(
                f"{op}: output_padding must be smaller than either stride or dilation, got "
                f"output_padding={output_padding}, stride={stride}, dilation={dilation} "
                f"(along {name})")
    output_size = _input_sizes(input_size, kernel_size, stride, padding, dilation,
                               output_padding)
    if any(o < 1 for o in output_size):
        raise ValueError(
            f"{op}: the output size {output_size} = (input - 1) * stride - 2 * padding + "
            f"dilation * (kernel - 1) + output_padding + 1 is not positive; padding={padding} "
            f"is too large for input size {input_size} and weight.shape={weight.shape}")
    dtype = _result_dtype(op, input, weight, bias, out_channels, " (weight.shape[1] * groups)")
    spans = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
    culprit = ("stride" if any(s > 1 and o > 2 * n for o, s, n in
                               zip(output_size, stride, input_size))
               else "dilation" if any(d > 1 and e > 2 * n for e, d, n in
                                      zip(spans, dilation, input_size))
               else None)
    _check_sizes(op, {"output": (batch, out_channels) + output_size}, dtype,
                 culprit and f"{culprit}={stride if culprit == 'stride' else dilation}")
    spec = general_spec(
        op, ndim, batch, in_channels, out_channels, groups, input_size, kernel_size,
        dilation=dilation, input_dilation=stride,
        padding=[(e - p, e - p + o) for e, p, o in zip(spans, padding, output_padding)],
        dtype=dtype, has_bias=bias is not None, unbatched=unbatched, origin=origin,
        memory_format=_format_of(input))
    assert spec.output_size == output_size, (spec, output_size)
    return spec


def _size_tuple(op, name, value, lengths):
    if (not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value)
            or len(value) not in lengths):
        raise TypeError(f"{op}: {name} must be a tuple of "
                        f"{' or '.join(map(str, lengths))} ints, got {value!r}")
    return tuple(int(v) for v in value)


def make_grad_input_spec(op, ndim, input_size, weight, grad_output, stride=1, padding=0,
                         dilation=1, groups=1):
    """Validate ``grad.conv{ndim}d_input`` and build its (transposed) spec.

    The input gradient is the transposed convolution of ``grad_output`` with
    ``weight``, with the ``output_padding`` that gives back ``input_size``.
    """
    input_size = _size_tuple(op, "input_size", input_size, (ndim + 1, ndim + 2))
    _check_rank(op, ndim, "grad_output", grad_output, layout="N, C_out")
    if weight.ndim != ndim + 2:
        raise ValueError(f"{op}: weight must have {ndim + 2} dimensions (out_channels, "
                         f"in_channels/groups, kernel...), got weight.shape={weight.shape}")
    if len(input_size) != grad_output.ndim:
        raise ValueError(f"{op}: input_size={input_size} and grad_output.shape="
                         f"{grad_output.shape} must both be batched or both unbatched")
    full = (1,) + input_size if len(input_size) == ndim + 1 else input_size
    gfull = (1,) + grad_output.shape if grad_output.ndim == ndim + 1 else grad_output.shape
    groups = _check_groups(op, groups)
    if any(v < 1 for v in full[1:]) or full[0] < 0:
        raise ValueError(f"{op}: input_size must have positive channel and spatial sizes, "
                         f"got input_size={input_size}")
    if weight.shape[1] * groups != full[1]:
        raise ValueError(f"{op}: weight.shape[1] * groups must be in_channels = "
                         f"input_size[{len(input_size) - ndim - 1}] = {full[1]}, got "
                         f"weight.shape={weight.shape}, groups={groups}")
    if weight.shape[0] % groups:
        raise ValueError(f"{op}: groups={groups} must divide out_channels={weight.shape[0]} "
                         f"(weight.shape[0])")
    if gfull[0] != full[0] or gfull[1] != weight.shape[0]:
        raise ValueError(f"{op}: grad_output.shape must be (N={full[0]}, C_out="
                         f"{weight.shape[0]}, ...) for input_size={input_size} and weight.shape="
                         f"{weight.shape}, got grad_output.shape={grad_output.shape}")
    stride = _per_dim(op, "stride", stride, ndim, minimum=1)
    dilation = _per_dim(op, "dilation", dilation, ndim, minimum=1)
    padding = _int_padding(op, padding, ndim)
    kernel = tuple(int(k) for k in weight.shape[2:])
    expected = _output_sizes(full[2:], kernel, stride, padding, dilation, (1,) * ndim)
    if expected != tuple(gfull[2:]) or any(o < 1 for o in expected):
        raise ValueError(
            f"{op}: input_size={input_size} cannot give grad_output.shape={grad_output.shape}: "
            f"a convolution of that input with weight.shape={weight.shape}, stride={stride}, "
            f"padding={padding}, dilation={dilation} has output size {expected}")
    base = _input_sizes(expected, kernel, stride, padding, dilation, (0,) * ndim)
    output_padding = tuple(n - b for n, b in zip(full[2:], base))
    # extra input rows past the last window get no gradient but are allowed
    # up to stride - 1, as in PyTorch; output_padding < stride holds
    return make_transposed_spec(op, ndim, grad_output, weight, None, stride, padding,
                                output_padding, groups, dilation, origin="grad_input")


def make_grad_weight_spec(op, ndim, input, weight_size, grad_output, stride=1, padding=0,
                          dilation=1, groups=1):
    """Validate ``grad.conv{ndim}d_weight`` and build its spec: the forward
    spec of the convolution, with ``computation="grad_weight"``."""
    weight_size = _size_tuple(op, "weight_size", weight_size, (ndim + 2,))
    groups = _check_groups(op, groups)
    if any(v < 1 for v in weight_size):
        raise ValueError(f"{op}: weight_size must be positive, got weight_size={weight_size}")
    _check_rank(op, ndim, "input", input, layout="N, C_in")
    in_channels = input.shape[-ndim - 1]
    if weight_size[1] * groups != in_channels:
        raise ValueError(f"{op}: weight_size={weight_size} is inconsistent with groups={groups}: "
                         f"weight_size[1] * groups must be in_channels={in_channels}")
    if weight_size[0] % groups:
        raise ValueError(f"{op}: weight_size={weight_size} is inconsistent with groups={groups}: "
                         f"groups must divide weight_size[0]")
    _check_rank(op, ndim, "grad_output", grad_output, layout="N, C_out")
    padding = _int_padding(op, padding, ndim)
    spec = make_conv_spec(op, ndim, input, Operand(weight_size, grad_output.dtype), None, stride,
                          padding, dilation, groups)
    if grad_output.shape != spec.user_output_shape:
        raise ValueError(f"{op}: grad_output must have the convolution's output shape "
                         f"{spec.user_output_shape}, got grad_output.shape={grad_output.shape}")
    return replace(spec, computation="grad_weight", origin="grad_weight")


# ---------------------------------------------------------------------------
# remembered specs
# ---------------------------------------------------------------------------

#: Specs built per exact argument values; cleared when it reaches the size.
_REMEMBERED: dict = {}
REMEMBERED_SPECS = 4096


def exact_key(value):
    """A hashable key of a parameter that equals only for the same types
    and values (``True`` is not ``1``, ``1.0`` is not ``1``: validation
    tells them apart), or a TypeError for anything else (lists, NumPy
    scalars ...: not remembered, validated every call)."""
    if value is None or type(value) in (int, bool, str):
        return (type(value), value)
    if type(value) is tuple and all(type(v) in (int, bool) for v in value):
        return (tuple, tuple((type(v), v) for v in value))
    raise TypeError


def _operands(arrays, ndim):
    return tuple(Operand.of(a, ndim) if hasattr(a, "shape") else a for a in arrays)


def remembered_spec(make, op, ndim, arrays, params):
    """``make(op, ndim, *operands, *params)``, remembered per (op, the arrays'
    shapes and dtypes, the exact parameter values); ``arrays`` are what the
    call was given (arrays, or ints and tuples such as an ``input_size``),
    and the builder gets their :class:`Operand` s.

    A spec depends on nothing else (the makers read only shapes, dtypes and
    memory formats, Note [memory format]),
    and building one, with its validation, took about half of the Python a
    small call spends outside its kernel (docs/results-classes.md, "Python
    per call"); a layer called again with the same shapes skips it.  Calls that raise
    are not remembered, so every bad call is validated and refused again.
    """
    try:
        key = (make, op, ndim,
               tuple(None if a is None else (type(a), a.shape, a.dtype, memory_format_of(a, ndim))
                     if hasattr(a, "shape") else exact_key(a) for a in arrays),
               tuple(exact_key(p) for p in params))
        spec = _REMEMBERED.get(key)
    except TypeError:
        return make(op, ndim, *_operands(arrays, ndim), *params)
    if spec is None:
        spec = make(op, ndim, *_operands(arrays, ndim), *params)
        if len(_REMEMBERED) >= REMEMBERED_SPECS:
            _REMEMBERED.clear()
        _REMEMBERED[key] = spec
    return spec


# ---------------------------------------------------------------------------
# problems given by shapes (choose_algorithm, tune, calibration)
# ---------------------------------------------------------------------------

GRADIENTS = (None, "input", "weight")


def _shape_and_dtype(name, value, dtype):
    if isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
        array = np.asarray(value)
        return tuple(array.shape), array.dtype
    if (isinstance(value, (tuple, list)) and value
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        return tuple(int(v) for v in value), np.dtype(dtype)
    raise TypeError(f"{name} must be a tuple of ints or an array, got {value!r}")


def problem_spec(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                 transposed=False, output_padding=0, gradient=None, padding_mode="zeros",
                 dtype="float32", op=None, memory_format=None):
    """The spec of the computation a ``choose_algorithm``/``tune`` call asks about.

    ``input_shape`` and ``weight_shape`` are those of the forward call
    (``conv{N}d``, or ``conv_transpose{N}d`` when ``transposed``);
    ``gradient`` is None (the call itself), ``"input"`` or ``"weight"``.
    Arrays are accepted in place of shapes (their shape, dtype and, for
    the input, memory format are used).  ``memory_format`` (None:
    the input array's, else ``"contiguous"``) is that of the call's input,
    and so of its output and output gradient (Note [memory format]).
    Raises the errors the real call would raise: it goes through the
    builders the public functions use.
    """
    given = input_shape
    input_shape, in_dtype = _shape_and_dtype("input_shape", input_shape, dtype)
    weight_shape, w_dtype = _shape_and_dtype("weight_shape", weight_shape, dtype)
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be None, 'input' or 'weight', got {gradient!r}")
    dtype = np.result_type(in_dtype, w_dtype)
    ndim = len(weight_shape) - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"weight_shape must have 3, 4 or 5 entries, got {weight_shape}")
    fmt = memory_format_of(given, ndim) if hasattr(given, "strides") else None
    if memory_format is not None:
        check_memory_format(None, memory_format)
        if fmt is not None and fmt != memory_format:
            raise ValueError(f"memory_format={memory_format!r} contradicts the input array "
                             f"given, which is {fmt!r} (its strides {given.strides}); pass "
                             f"its shape instead, or leave memory_format out")
        fmt = memory_format
    fmt = fmt or "contiguous"
    x = Operand(input_shape, dtype, fmt)
    w = Operand(weight_shape, dtype)
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
        g = Operand(forward.user_output_shape, dtype, fmt)
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
    g = Operand(spec.user_output_shape, dtype, fmt)
    if gradient == "input":
        return make_conv_spec(op or f"conv{ndim}d", ndim, g, w, None, stride, padding, dilation,
                              groups)
    forward = make_conv_spec(f"conv{ndim}d", ndim, g, w, None, stride, padding, dilation, groups)
    xg = Operand(forward.user_output_shape, dtype, fmt)
    return make_grad_weight_spec(op or f"grad.conv{ndim}d_weight", ndim, g, weight_shape, xg,
                                 stride, padding, dilation, groups)
