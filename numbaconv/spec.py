"""One normalised, validated description of a convolution problem.

Every public entry point builds a :class:`ConvSpec` once, from the raw user
arguments, and hands it to the algorithm that runs the problem.  All argument
checking and all output-shape arithmetic live here, so algorithms never
re-validate and never disagree about shapes.

Algorithms work on a *canonical 3-D form*: 1-D and 2-D problems are lifted to
3-D by prepending unit spatial dimensions (``W -> (1, 1, W)``,
``(H, W) -> (1, H, W)``), so one dimension-generic kernel serves all three
ranks.  The ``*3`` properties give that form.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
SUPPORTED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_DIM_NAMES = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}


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

    # ---- derived facts -------------------------------------------------
    @property
    def in_channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_channels_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.in_channels_per_group == 1

    @property
    def is_pointwise(self) -> bool:
        """1x1 kernel, stride 1, no padding: the convolution is one GEMM."""
        return (all(k == 1 for k in self.kernel_size)
                and all(s == 1 for s in self.stride)
                and all(p == (0, 0) for p in self.padding))

    @property
    def padded_size(self) -> tuple:
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.input_size, self.padding))

    @property
    def effective_kernel_size(self) -> tuple:
        """Extent of the dilated kernel: ``dilation * (k - 1) + 1``."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    @property
    def input_shape(self) -> tuple:
        """Batched input shape ``(N, C_in, *input_size)``."""
        return (self.batch, self.in_channels) + self.input_size

    @property
    def weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels_per_group) + self.kernel_size

    @property
    def output_shape(self) -> tuple:
        """Batched output shape ``(N, C_out, *output_size)``."""
        return (self.batch, self.out_channels) + self.output_size

    @property
    def user_output_shape(self) -> tuple:
        """Output shape as returned to the user (no batch axis if unbatched)."""
        return self.output_shape[1:] if self.unbatched else self.output_shape

    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 FLOPs, the convention of BENCH_SHAPES."""
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
    def padding3(self) -> tuple:
        return self._lift(self.padding, (0, 0))

    @cached_property
    def padded_size3(self) -> tuple:
        return self._lift(self.padded_size, 1)

    @cached_property
    def effective_kernel_size3(self) -> tuple:
        return self._lift(self.effective_kernel_size, 1)

    def describe(self) -> str:
        """Short human-readable summary, for tables and messages."""
        parts = [f"input={self.input_shape}", f"weight={self.weight_shape}"]
        if any(s != 1 for s in self.stride):
            parts.append(f"stride={self.stride}")
        if any(p != (0, 0) for p in self.padding):
            parts.append(f"padding={self.padding}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        return f"{self.op}({', '.join(parts)}, dtype={self.dtype.name})"


# ---------------------------------------------------------------------------
# argument normalisation helpers
# ---------------------------------------------------------------------------

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
        try:
            array = np.asarray(array)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{op}: {name} must be array-like, got {type(array).__name__}") from exc
    if array.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{op}: {name} dtype must be float16, float32 or float64, got {array.dtype}")
    return array


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
    from ``torch.nn.Conv{ndim}d``.  ``input``, ``weight`` and ``bias`` must
    already be NumPy arrays of a supported dtype (see
    :func:`check_float_array`); only their shapes and dtypes are read.

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
    unbatched = input.ndim == ndim + 1
    batch_shape = (1,) + input.shape if unbatched else input.shape
    batch, in_channels = batch_shape[0], batch_shape[1]
    input_size = tuple(int(s) for s in batch_shape[2:])
    out_channels = int(weight.shape[0])
    kernel_size = tuple(int(k) for k in weight.shape[2:])

    if not _is_int(groups):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"{op}: groups must be positive, got groups={groups}")
    if out_channels < 1:
        raise ValueError(
            f"{op}: weight must have at least one output channel, got weight.shape={weight.shape}")
    if in_channels < 1:
        # PyTorch accepts this but returns an output with 0 channels, which
        # contradicts weight.shape[0]; refusing is the only unsurprising answer.
        raise ValueError(f"{op}: input must have at least one channel, got input.shape={input.shape}")
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

    dtypes = [input.dtype, weight.dtype]
    if bias is not None:
        if bias.ndim != 1 or bias.shape[0] != out_channels:
            raise ValueError(
                f"{op}: bias must be a 1-D array of out_channels={out_channels} values, "
                f"got bias.shape={bias.shape}")
        dtypes.append(bias.dtype)
    dtype = np.result_type(*dtypes)
    compute_dtype = np.dtype(np.float32) if dtype == np.float16 else dtype

    return ConvSpec(
        op=op, ndim=ndim, batch=int(batch), in_channels=int(in_channels),
        out_channels=out_channels, groups=groups, input_size=input_size,
        kernel_size=kernel_size, stride=stride, dilation=dilation, padding=pads,
        padding_mode=padding_mode, output_size=output_size, dtype=np.dtype(dtype),
        compute_dtype=compute_dtype, has_bias=bias is not None, unbatched=unbatched)
