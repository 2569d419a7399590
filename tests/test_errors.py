"""Bad arguments to conv1d/conv2d/conv3d: exception type, message, no side effects.

One table, :data:`CASES`, lists every bad-input case: the function, a factory
that builds fresh arguments, the expected exception type and a regex that the
message must match.  Each regex names the offending parameter and the value or
shape that was given, so a message that stops saying *what* was wrong fails
here.  The same table drives

* :func:`test_bad_input_raises` -- the exception and message, and that the
  failed call left every argument array unchanged;
* :func:`test_torch_raises_too` -- for the shape/parameter cases, that
  ``torch.nn.functional.conv*d`` rejects the same arguments with the stated
  exception and message (skipped without torch), which shows our error cases
  are PyTorch's and not stricter.

All arrays are tiny and every call fails during validation, so no numba
kernel is compiled or run by this file.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import numbaconv
from numbaconv import UnsupportedAlgorithmError, conv1d, conv2d, conv3d

F32 = np.float32

_DEFAULT_SHAPES = {
    # ndim: (input shape, weight shape); valid output shape in the comment
    1: ((1, 2, 5), (2, 2, 3)),              # -> (1, 2, 3)
    2: ((1, 2, 5, 5), (2, 2, 3, 3)),        # -> (1, 2, 3, 3)
    3: ((1, 2, 4, 4, 4), (2, 2, 3, 3, 3)),  # -> (1, 2, 2, 2, 2)
}

HAS_LONGDOUBLE = np.dtype(np.longdouble) != np.dtype(np.float64)
LONGDOUBLE = np.dtype(np.longdouble)


def arr(shape, dtype=F32):
    """A small array of distinct, finite values (so array_equal is meaningful)."""
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float64).reshape(shape) / max(n, 1) - 0.5).astype(dtype)


def args(nd=2, x=None, w=None, **kwargs):
    """Keyword arguments for ``conv{nd}d``; ``x``/``w`` are shapes or arrays."""
    default_x, default_w = _DEFAULT_SHAPES[nd]
    x = default_x if x is None else x
    w = default_w if w is None else w
    kwargs["input"] = arr(x) if isinstance(x, tuple) else x
    kwargs["weight"] = arr(w) if isinstance(w, tuple) else w
    return kwargs


def nan_out(shape, dtype=F32):
    """An ``out=`` buffer of NaN: a failed call that wrote to it shows up."""
    return np.full(shape, np.nan, dtype)


def readonly(a):
    a.flags.writeable = False
    return a


def out_sharing_input():
    x = arr((1, 2, 5, 5))
    return args(x=x, w=(2, 2, 1, 1), out=x)  # 1x1 kernel: out shape == input shape


def out_sharing_weight():
    buf = np.zeros(50, dtype=F32)
    weight = buf[:4].reshape(2, 2, 1, 1)
    return args(w=weight, out=buf.reshape(1, 2, 5, 5))


def out_sharing_bias():
    buf = np.zeros(18, dtype=F32)
    return args(bias=buf[:2], out=buf.reshape(1, 2, 3, 3))


def case(id, fn, make, exc, match, *, torch=None, marks=()):
    """One row: ``fn(**make())`` must raise ``exc`` matching ``match``.

    ``torch=(exception class, regex)`` marks a shape/parameter case that
    PyTorch rejects too, with the exception and message it raises (measured
    with torch 2.13).
    """
    return pytest.param(fn, make, exc, match, torch, id=id, marks=marks)


skip_no_longdouble = pytest.mark.skipif(
    not HAS_LONGDOUBLE, reason="np.longdouble is float64 on this platform")


CASES = [
    # ---- padding ------------------------------------------------------------
    case("padding_negative", conv2d, lambda: args(padding=-1),
         ValueError, r"padding must be non-negative, got padding=-1",
         torch=(RuntimeError, r"negative padding is not supported")),
    case("padding_tuple_negative", conv2d, lambda: args(padding=(1, -1)),
         ValueError, r"padding must be non-negative, got padding=\(1, -1\)",
         torch=(RuntimeError, r"negative padding is not supported")),
    case("padding_negative_conv3d", conv3d, lambda: args(3, padding=-2),
         ValueError, r"padding must be non-negative, got padding=-2",
         torch=(RuntimeError, r"negative padding is not supported")),
    case("padding_unknown_string", conv2d, lambda: args(padding="full"),
         ValueError, r"padding must be 'same', 'valid', an int or a tuple of 2 ints, got 'full'",
         torch=(RuntimeError, r"Invalid padding string: 'full'")),
    case("padding_same_stride2", conv2d, lambda: args(padding="same", stride=2),
         ValueError, r"padding='same' is not supported for strided convolutions, "
                     r"got stride=\(2, 2\)",
         torch=(RuntimeError, r"padding='same' is not supported for strided convolutions")),
    case("padding_same_stride_tuple", conv2d, lambda: args(padding="same", stride=(1, 2)),
         ValueError, r"padding='same' .*got stride=\(1, 2\)",
         torch=(RuntimeError, r"padding='same' is not supported for strided convolutions")),
    case("padding_tuple_wrong_length_conv1d", conv1d, lambda: args(1, padding=(1, 1)),
         ValueError, r"padding must be an int or a tuple of 1 ints, got padding=\(1, 1\) "
                     r"with 2 entries",
         torch=(RuntimeError, r"expected padding to be .*a list of 1 values.*"
                r"got padding=\[1, 1\]")),
    case("padding_float", conv2d, lambda: args(padding=1.0),
         TypeError, r"padding must be an int or a tuple of 2 ints, got 1\.0",
         torch=(TypeError, r"invalid combination of arguments - got \(.*padding=float")),
    # ---- stride -------------------------------------------------------------
    case("stride_zero", conv2d, lambda: args(stride=0),
         ValueError, r"stride must be positive, got stride=0",
         torch=(RuntimeError, r"non-positive stride is not supported")),
    case("stride_negative", conv2d, lambda: args(stride=-1),
         ValueError, r"stride must be positive, got stride=-1",
         torch=(RuntimeError, r"non-positive stride is not supported")),
    case("stride_tuple_zero", conv2d, lambda: args(stride=(2, 0)),
         ValueError, r"stride must be positive, got stride=\(2, 0\)",
         torch=(RuntimeError, r"non-positive stride is not supported")),
    case("stride_zero_conv1d", conv1d, lambda: args(1, stride=0),
         ValueError, r"stride must be positive, got stride=0",
         torch=(RuntimeError, r"non-positive stride is not supported")),
    case("stride_tuple_wrong_length", conv2d, lambda: args(stride=(1, 1, 1)),
         ValueError, r"stride must be an int or a tuple of 2 ints, got stride=\(1, 1, 1\) "
                     r"with 3 entries",
         torch=(RuntimeError, r"expected stride to be .*a list of 2 values.*"
                r"got stride=\[1, 1, 1\]")),
    case("stride_tuple_wrong_length_conv3d", conv3d, lambda: args(3, stride=(1, 1)),
         ValueError, r"stride must be an int or a tuple of 3 ints, got stride=\(1, 1\) "
                     r"with 2 entries",
         torch=(RuntimeError, r"expected stride to be .*a list of 3 values.*"
                r"got stride=\[1, 1\]")),
    case("stride_float", conv2d, lambda: args(stride=1.5),
         TypeError, r"stride must be an int or a tuple of 2 ints, got 1\.5",
         torch=(TypeError, r"invalid combination of arguments - got \(.*stride=float")),
    case("stride_tuple_with_float", conv2d, lambda: args(stride=(1, 2.0)),
         TypeError, r"stride must be an int or a tuple of 2 ints, got \(1, 2\.0\)",
         torch=(TypeError, r"argument 'stride' failed to unpack")),
    # ---- dilation -----------------------------------------------------------
    case("dilation_zero", conv2d, lambda: args(dilation=0),
         ValueError, r"dilation must be positive, got dilation=0",
         torch=(RuntimeError, r"dilation should be greater than zero")),
    case("dilation_negative_conv1d", conv1d, lambda: args(1, dilation=-1),
         ValueError, r"dilation must be positive, got dilation=-1",
         torch=(RuntimeError, r"dilation should be greater than zero")),
    # ---- groups -------------------------------------------------------------
    case("groups_zero", conv2d, lambda: args(groups=0),
         ValueError, r"groups must be positive, got groups=0",
         torch=(RuntimeError, r"non-positive groups is not supported")),
    case("groups_negative", conv2d, lambda: args(groups=-1),
         ValueError, r"groups must be positive, got groups=-1",
         torch=(RuntimeError, r"non-positive groups is not supported")),
    case("groups_float", conv2d, lambda: args(groups=1.0),
         TypeError, r"groups must be an int, got 1\.0",
         torch=(TypeError, r"invalid combination of arguments - got \(.*groups=float")),
    case("groups_bool", conv2d, lambda: args(groups=True),
         TypeError, r"groups must be an int, got True",
         torch=(TypeError, r"invalid combination of arguments - got \(.*groups=bool")),
    case("groups_not_dividing_in_channels", conv2d,
         lambda: args(x=(1, 3, 5, 5), w=(2, 1, 3, 3), groups=2),
         ValueError, r"groups=2 must divide in_channels=3",
         torch=(RuntimeError, r"Given groups=2, weight of size \[2, 1, 3, 3\], "
                r"expected input\[1, 3, 5, 5\] to have 2 channels, but got 3")),
    case("groups_not_dividing_out_channels", conv2d, lambda: args(w=(3, 1, 3, 3), groups=2),
         ValueError, r"groups=2 must divide out_channels=3",
         torch=(RuntimeError, r"Given groups=2, expected weight to be divisible by 2 "
                r"at dimension 0")),
    case("weight_in_channels_mismatch", conv2d, lambda: args(w=(2, 1, 3, 3)),
         ValueError, r"weight\.shape\[1\] must be in_channels/groups = 2/1 = 2, "
                     r"got weight\.shape=\(2, 1, 3, 3\)",
         torch=(RuntimeError, r"Given groups=1, weight of size \[2, 1, 3, 3\], "
                r"expected input\[1, 2, 5, 5\] to have 1 channels, but got 2")),
    case("weight_in_channels_mismatch_grouped", conv2d,
         lambda: args(x=(1, 4, 5, 5), w=(2, 1, 3, 3), groups=2),
         ValueError, r"weight\.shape\[1\] must be in_channels/groups = 4/2 = 2, "
                     r"got weight\.shape=\(2, 1, 3, 3\)",
         torch=(RuntimeError, r"Given groups=2, weight of size \[2, 1, 3, 3\], "
                r"expected input\[1, 4, 5, 5\] to have 2 channels, but got 4")),
    case("unbatched_in_channels_mismatch", conv2d, lambda: args(x=(3, 5, 5)),
         ValueError, r"weight\.shape\[1\] must be in_channels/groups = 3/1 = 3, "
                     r"got weight\.shape=\(2, 2, 3, 3\)",
         torch=(RuntimeError, r"Given groups=1, weight of size \[2, 2, 3, 3\], "
                r"expected input\[1, 3, 5, 5\] to have 2 channels, but got 3")),
    # ---- ranks --------------------------------------------------------------
    # PyTorch takes the convolution's rank from the weight, so it reports
    # conv2d's default 2-entry stride as the mismatch, not the weight's rank.
    case("weight_rank_3_in_conv2d", conv2d, lambda: args(w=(2, 2, 3)),
         ValueError, r"weight must have 4 dimensions .*got weight\.shape=\(2, 2, 3\)",
         torch=(RuntimeError, r"expected stride to be .*a list of 1 values.*"
                r"got stride=\[1, 1\]")),
    case("weight_rank_4_in_conv3d", conv3d, lambda: args(3, w=(2, 2, 3, 3)),
         ValueError, r"weight must have 5 dimensions .*got weight\.shape=\(2, 2, 3, 3\)",
         torch=(RuntimeError, r"expected stride to be .*a list of 2 values.*"
                r"got stride=\[1, 1, 1\]")),
    case("input_rank_5_in_conv2d", conv2d, lambda: args(x=(1, 1, 2, 5, 5)),
         ValueError, r"expected input of 3 \(unbatched\) or 4 \(batched\) dimensions .*"
                     r"got input\.shape=\(1, 1, 2, 5, 5\)",
         torch=(RuntimeError, r"Expected 3D \(unbatched\) or 4D \(batched\) "
                r"input to conv2d, but got input of size: \[1, 1, 2, 5, 5\]")),
    case("input_rank_2_in_conv2d", conv2d, lambda: args(x=(5, 5)),
         ValueError, r"expected input of 3 \(unbatched\) or 4 \(batched\) dimensions .*"
                     r"got input\.shape=\(5, 5\)",
         torch=(RuntimeError, r"Expected 3D \(unbatched\) or 4D \(batched\) "
                r"input to conv2d, but got input of size: \[5, 5\]")),
    case("input_rank_1_in_conv1d", conv1d, lambda: args(1, x=(5,)),
         ValueError, r"expected input of 2 \(unbatched\) or 3 \(batched\) dimensions .*"
                     r"got input\.shape=\(5,\)",
         torch=(RuntimeError, r"Expected 2D \(unbatched\) or 3D \(batched\) "
                r"input to conv1d, but got input of size: \[5\]")),
    case("input_rank_3_in_conv3d", conv3d, lambda: args(3, x=(4, 4, 4)),
         ValueError, r"expected input of 4 \(unbatched\) or 5 \(batched\) dimensions .*"
                     r"got input\.shape=\(4, 4, 4\)",
         torch=(RuntimeError, r"Expected 4D \(unbatched\) or 5D \(batched\) "
                r"input to conv3d, but got input of size: \[4, 4, 4\]")),
    # ---- kernel size --------------------------------------------------------
    case("kernel_larger_than_input", conv2d, lambda: args(w=(2, 2, 7, 7)),
         ValueError, r"kernel size can't be greater than the padded input size: input size \(5, 5\) "  # noqa: E501
                     r"plus padding \(\(0, 0\), \(0, 0\)\) gives \(5, 5\), but the kernel "
                     r"\(weight\.shape=\(2, 2, 7, 7\), dilation=\(1, 1\)\) spans \(7, 7\)",
         torch=(RuntimeError, r"padded input size per channel: \(5 x 5\)\. "
                r"Kernel size: \(7 x 7\)\. Kernel size can't be greater")),
    case("kernel_larger_along_one_dim", conv2d, lambda: args(w=(2, 2, 3, 6)),
         ValueError, r"kernel size can't be greater than the padded input size: .* gives \(5, 5\), "
                     r"but the kernel \(weight\.shape=\(2, 2, 3, 6\).* spans \(3, 6\)",
         torch=(RuntimeError, r"padded input size per channel: \(5 x 5\)\. "
                r"Kernel size: \(3 x 6\)\. Kernel size can't be greater")),
    case("dilated_kernel_larger_than_input", conv2d, lambda: args(dilation=3),
         ValueError, r"kernel size can't be greater than the padded input size: .* gives \(5, 5\), "
                     r"but the kernel \(weight\.shape=\(2, 2, 3, 3\), dilation=\(3, 3\)\) "
                     r"spans \(7, 7\)",
         torch=(RuntimeError, r"padded input size per channel: \(5 x 5\)\. "
                r"Kernel size: \(7 x 7\)\. Kernel size can't be greater")),
    case("kernel_larger_than_padded_input_conv1d", conv1d,
         lambda: args(1, w=(2, 2, 8), padding=1),
         ValueError, r"gives \(7,\), but the kernel .* spans \(8,\)",
         torch=(RuntimeError, r"padded input size per channel: \(7\)\. Kernel size: \(8\)\. "
                r"Kernel size can't be greater")),
    case("kernel_size_zero", conv2d, lambda: args(w=(2, 2, 0, 3)),
         ValueError, r"kernel sizes must be positive, got weight\.shape=\(2, 2, 0, 3\)",
         torch=(RuntimeError, r"kernel size should be greater than zero")),
    # PyTorch accepts zero input channels but returns a 0-channel output that
    # contradicts weight.shape[0]; we refuse (torch=False: it does not raise).
    case("input_zero_channels", conv2d, lambda: args(x=(1, 0, 5, 5), w=(2, 0, 3, 3)),
         ValueError, r"input must have at least one channel, got input\.shape=\(1, 0, 5, 5\)"),
    case("weight_zero_out_channels", conv2d, lambda: args(w=(0, 2, 3, 3)),
         ValueError, r"weight must have at least one output channel, "
                     r"got weight\.shape=\(0, 2, 3, 3\)",
         torch=(RuntimeError, r"expected weight to be at least 1 at dimension 0, "
                r"but got weight of size \[0, 2, 3, 3\]")),
    # ---- padding_mode -------------------------------------------------------
    case("padding_mode_unknown", conv2d, lambda: args(padding_mode="mirror"),
         ValueError, r"padding_mode must be one of 'zeros', 'reflect', 'replicate', "
                     r"'circular', got 'mirror'"),
    case("padding_mode_not_string", conv2d, lambda: args(padding_mode=0),
         TypeError, r"padding_mode must be a string, got 0"),
    case("padding_mode_none", conv2d, lambda: args(padding_mode=None),
         TypeError, r"padding_mode must be a string, got None"),
    case("reflect_padding_equal_input", conv2d,
         lambda: args(padding=5, padding_mode="reflect"),
         ValueError, r"padding_mode='reflect' needs padding smaller than the input size, "
                     r"got padding 5 for input size 5 along H"),
    case("reflect_padding_too_large_along_W", conv2d,
         lambda: args(x=(1, 2, 5, 3), padding=(1, 3), padding_mode="reflect"),
         ValueError, r"padding_mode='reflect' .*got padding 3 for input size 3 along W"),
    case("reflect_padding_conv1d", conv1d,
         lambda: args(1, padding=7, padding_mode="reflect"),
         ValueError, r"padding_mode='reflect' .*got padding 7 for input size 5 along W"),
    case("circular_padding_larger_than_input", conv2d,
         lambda: args(padding=6, padding_mode="circular"),
         ValueError, r"padding_mode='circular' needs padding at most the input size, "
                     r"got padding 6 for input size 5 along H"),
    case("replicate_empty_input_dim", conv2d,
         lambda: args(x=(1, 2, 0, 5), padding=1, padding_mode="replicate"),
         ValueError, r"padding_mode='replicate' cannot pad an empty input dimension, "
                     r"got input size 0 along H"),
    # ---- dtypes and array-likeness ----------------------------------------
    case("input_int32", conv2d, lambda: args(x=arr((1, 2, 5, 5), np.int32)),
         TypeError, r"input dtype must be float16, float32 or float64, got int32"),
    case("weight_int64", conv2d, lambda: args(w=arr((2, 2, 3, 3), np.int64)),
         TypeError, r"weight dtype must be float16, float32 or float64, got int64"),
    case("bias_int64", conv2d, lambda: args(bias=np.arange(2, dtype=np.int64)),
         TypeError, r"bias dtype must be float16, float32 or float64, got int64"),
    case("input_bool", conv2d, lambda: args(x=np.ones((1, 2, 5, 5), dtype=bool)),
         TypeError, r"input dtype must be .*got bool"),
    case("weight_bool", conv2d, lambda: args(w=np.ones((2, 2, 3, 3), dtype=bool)),
         TypeError, r"weight dtype must be .*got bool"),
    case("bias_bool", conv2d, lambda: args(bias=np.ones(2, dtype=bool)),
         TypeError, r"bias dtype must be .*got bool"),
    case("input_complex64", conv2d, lambda: args(x=arr((1, 2, 5, 5), np.complex64)),
         TypeError, r"input dtype must be .*got complex64"),
    case("weight_complex128", conv2d, lambda: args(w=arr((2, 2, 3, 3), np.complex128)),
         TypeError, r"weight dtype must be .*got complex128"),
    case("bias_complex64", conv2d, lambda: args(bias=arr((2,), np.complex64)),
         TypeError, r"bias dtype must be .*got complex64"),
    case("input_object", conv2d, lambda: args(x=arr((1, 2, 5, 5), object)),
         TypeError, r"input dtype must be .*got object"),
    case("weight_object", conv2d, lambda: args(w=arr((2, 2, 3, 3), object)),
         TypeError, r"weight dtype must be .*got object"),
    case("bias_object", conv2d, lambda: args(bias=arr((2,), object)),
         TypeError, r"bias dtype must be .*got object"),
    case("input_longdouble", conv2d, lambda: args(x=arr((1, 2, 5, 5), np.longdouble)),
         TypeError, rf"input dtype must be .*got {LONGDOUBLE}", marks=skip_no_longdouble),
    case("weight_longdouble", conv2d, lambda: args(w=arr((2, 2, 3, 3), np.longdouble)),
         TypeError, rf"weight dtype must be .*got {LONGDOUBLE}", marks=skip_no_longdouble),
    case("bias_longdouble", conv2d, lambda: args(bias=arr((2,), np.longdouble)),
         TypeError, rf"bias dtype must be .*got {LONGDOUBLE}", marks=skip_no_longdouble),
    case("input_int_conv1d", conv1d, lambda: args(1, x=arr((1, 2, 5), np.int16)),
         TypeError, r"input dtype must be .*got int16"),
    case("weight_int_conv3d", conv3d, lambda: args(3, w=arr((2, 2, 3, 3, 3), np.uint8)),
         TypeError, r"weight dtype must be .*got uint8"),
    case("input_none", conv2d, lambda: args(x=None) | {"input": None},
         TypeError, r"input must be a NumPy array, got None"),
    case("weight_none", conv2d, lambda: args() | {"weight": None},
         TypeError, r"weight must be a NumPy array, got None"),
    case("input_ragged_list", conv2d, lambda: args() | {"input": [[1.0, 2.0], [3.0]]},
         TypeError, r"input must be array-like \(a NumPy array or a rectangular nested "
                    r"list\), got list: .*inhomogeneous"),
    # ---- bias shape ---------------------------------------------------------
    case("bias_wrong_length", conv2d, lambda: args(bias=arr((3,))),
         ValueError, r"bias must be a 1-D array of out_channels=2 values, "
                     r"got bias\.shape=\(3,\)",
         torch=(RuntimeError, r"expected bias to be 1-dimensional with 2 elements, "
                r"but got bias of size \[3\]")),
    case("bias_2d", conv2d, lambda: args(bias=arr((2, 1))),
         ValueError, r"bias must be a 1-D array of out_channels=2 values, "
                     r"got bias\.shape=\(2, 1\)",
         torch=(RuntimeError, r"expected bias to be 1-dimensional with 2 elements, "
                r"but got bias of size \[2, 1\]")),
    case("bias_0d", conv2d, lambda: args(bias=np.array(0.5, dtype=F32)),
         ValueError, r"bias must be a 1-D array of out_channels=2 values, "
                     r"got bias\.shape=\(\)",
         torch=(RuntimeError, r"expected bias to be 1-dimensional with 2 elements")),
    case("bias_wrong_length_conv3d", conv3d, lambda: args(3, bias=arr((1,))),
         ValueError, r"bias must be a 1-D array of out_channels=2 values, "
                     r"got bias\.shape=\(1,\)",
         torch=(RuntimeError, r"expected bias to be 1-dimensional with 2 elements, "
                r"but got bias of size \[1\]")),
    # ---- out= ---------------------------------------------------------------
    case("out_wrong_shape", conv2d, lambda: args(out=nan_out((1, 2, 4, 4))),
         ValueError, r"out must have shape \(1, 2, 3, 3\), got out\.shape=\(1, 2, 4, 4\)"),
    case("out_batched_for_unbatched_input", conv2d,
         lambda: args(x=(2, 5, 5), out=nan_out((1, 2, 3, 3))),
         ValueError, r"out must have shape \(2, 3, 3\), got out\.shape=\(1, 2, 3, 3\)"),
    case("out_wrong_dtype", conv2d, lambda: args(out=nan_out((1, 2, 3, 3), np.float64)),
         ValueError, r"out must have dtype float32, got out\.dtype=float64"),
    case("out_float16_for_float32", conv2d, lambda: args(out=nan_out((1, 2, 3, 3), np.float16)),
         ValueError, r"out must have dtype float32, got out\.dtype=float16"),
    case("out_transposed_view", conv2d, lambda: args(out=nan_out((3, 3, 2, 1)).T),
         ValueError, r"out must be C-contiguous, as the call.s input is contiguous, got an array with out\.strides="),  # noqa: E501
    case("out_sliced_view", conv2d, lambda: args(out=nan_out((1, 2, 3, 6))[..., ::2]),
         ValueError, r"out must be C-contiguous, as the call.s input is contiguous, got an array with out\.strides=\(144, 72, 24, 8\)"),  # noqa: E501
    case("out_read_only", conv2d, lambda: args(out=readonly(nan_out((1, 2, 3, 3)))),
         ValueError, r"out must be writeable, got a read-only array"),
    case("out_python_list", conv2d,
         lambda: args(out=np.zeros((1, 2, 3, 3), F32).tolist()),
         ValueError, r"out must be a NumPy array, got list"),
    case("out_shares_input", conv2d, out_sharing_input,
         ValueError, r"out must not share memory with input"),
    case("out_shares_weight", conv2d, out_sharing_weight,
         ValueError, r"out must not share memory with weight"),
    case("out_shares_bias", conv2d, out_sharing_bias,
         ValueError, r"out must not share memory with bias"),
    # ---- algorithm ----------------------------------------------------------
    case("algorithm_unknown", conv2d, lambda: args(algorithm="nope"),
         ValueError, r"algorithm must be one of 'auto', 'direct'.*, got 'nope'"),
    case("algorithm_not_string", conv2d, lambda: args(algorithm=3),
         TypeError, r"algorithm must be a string, got 3"),
    case("algorithm_none", conv1d, lambda: args(1, algorithm=None),
         TypeError, r"algorithm must be a string, got None"),
    case("algorithm_misspelt", conv2d, lambda: args(algorithm="im2cols"),
         ValueError, r"algorithm must be one of 'auto', 'direct'.*, got 'im2cols'"),
    case("algorithm_case_sensitive", conv3d, lambda: args(3, algorithm="Direct"),
         ValueError, r"algorithm must be one of 'auto', 'direct'.*, got 'Direct'"),
]

TORCH_CASES = [pytest.param(*p.values[:2], *p.values[4], id=p.id, marks=p.marks)
               for p in CASES if p.values[4] is not None]


def _snapshot(kwargs):
    return {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v))
            for k, v in kwargs.items()}


def _assert_unchanged(kwargs, before):
    for name, value in kwargs.items():
        old = before[name]
        if isinstance(value, np.ndarray):
            assert value.dtype == old.dtype and value.shape == old.shape, name
            # NaN (the out= buffers) equals NaN; equal_nan needs a float dtype
            nan_ok = value.dtype.kind in "fc"
            assert np.array_equal(value, old, equal_nan=nan_ok), (
                f"{name} was modified by a failed call")
        else:
            assert value == old, f"{name} was modified by a failed call"


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn, make, exc, match, torch_expected", CASES)
def test_bad_input_raises(fn, make, exc, match, torch_expected):
    kwargs = make()
    before = _snapshot(kwargs)
    with pytest.raises(exc, match=match) as info:
        fn(**kwargs)
    # the exact type, not a subclass (UnsupportedAlgorithmError is a ValueError)
    assert type(info.value) is exc
    _assert_unchanged(kwargs, before)


def test_table_covers_all_functions_and_ids_are_unique():
    fns = {p.values[0] for p in CASES}
    assert fns == {conv1d, conv2d, conv3d}
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))


#: The PyTorch release whose messages the tables copy.  Other releases word
#: some of them differently, so the comparison runs with this one only; our
#: own messages are tested on any setup (test_bad_input_raises).
MEASURED_TORCH = "2.13."


def _measured_torch():
    torch = pytest.importorskip("torch")
    if not torch.__version__.startswith(MEASURED_TORCH):
        pytest.skip(f"PyTorch's messages were copied from torch {MEASURED_TORCH}x, "
                    f"got torch {torch.__version__}")
    return torch


@pytest.mark.parametrize("fn, make, torch_exc, torch_match", TORCH_CASES)
def test_torch_raises_too(fn, make, torch_exc, torch_match):
    torch = _measured_torch()
    import torch.nn.functional as F

    kwargs = make()
    torch_fn = getattr(F, fn.__name__)
    tkw = {}
    for name in ("input", "weight", "bias", "stride", "padding", "dilation", "groups"):
        if name in kwargs:
            value = kwargs[name]
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(np.ascontiguousarray(value))
            tkw[name] = value
    with pytest.raises(torch_exc, match=torch_match) as info:
        torch_fn(**tkw)
    assert type(info.value) is torch_exc


# ---------------------------------------------------------------------------
# UnsupportedAlgorithmError and the registry
# ---------------------------------------------------------------------------

def test_unsupported_algorithm_error_is_value_error():
    assert issubclass(UnsupportedAlgorithmError, ValueError)
    assert numbaconv.UnsupportedAlgorithmError is UnsupportedAlgorithmError


DUMMY_REASON = "the dummy algorithm refuses every problem"


@pytest.fixture
def refusing_algorithm():
    """Register an algorithm that refuses everything; remove it afterwards."""
    from numbaconv.algorithms import registry

    class Refuser(registry.ConvAlgorithm):
        name = "test_errors_refuser"
        measured_error_eps = 0.0
        transforms_values = False

        def unsupported_reason(self, spec):
            return DUMMY_REASON

        def run(self, spec, x, weight, epilogue, out, ctx=None, plan=None):  # pragma: no cover
            raise AssertionError("a refusing algorithm was run")

    saved_registry = dict(registry._REGISTRY)
    try:
        yield registry.register(Refuser())
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved_registry)
    assert "test_errors_refuser" not in numbaconv.algorithm_names()


def test_explicit_refusing_algorithm_raises_unsupported(refusing_algorithm):
    assert refusing_algorithm.name in numbaconv.algorithm_names()
    kwargs = args(bias=arr((2,)), stride=2, padding=1)
    before = _snapshot(kwargs)
    with pytest.raises(UnsupportedAlgorithmError) as info:
        conv2d(**kwargs, algorithm=refusing_algorithm.name)
    assert type(info.value) is UnsupportedAlgorithmError
    message = str(info.value)
    assert DUMMY_REASON in message
    assert f"algorithm='{refusing_algorithm.name}'" in message
    assert "conv2d" in message
    _assert_unchanged(kwargs, before)


def test_auto_with_only_refusing_algorithms_raises_unsupported(refusing_algorithm):
    from numbaconv.algorithms import registry

    # only the refuser left (restored by the fixture)
    for key in [k for k in registry._REGISTRY if k[0] != refusing_algorithm.name]:
        del registry._REGISTRY[key]
    with pytest.raises(UnsupportedAlgorithmError, match=DUMMY_REASON) as info:
        conv1d(**args(1))
    assert type(info.value) is UnsupportedAlgorithmError
    assert f"{refusing_algorithm.name}: cannot serve: {DUMMY_REASON}" in str(info.value)


def test_refusal_names_the_algorithms_that_serve_the_call(refusing_algorithm):
    with pytest.raises(UnsupportedAlgorithmError) as info:
        conv2d(**args(stride=2, padding=1), algorithm="winograd")
    error = info.value
    # computed from the registry for this spec: winograd_f2 (stride 1 only)
    # and the refuser are not named, every other registered algorithm is
    assert str(error).endswith("; algorithms that serve this call: direct, im2col, fft")
    assert error.algorithm == "winograd" and error.serving == ("direct", "im2col", "fft")
    assert error.reason == "it needs stride 1, got stride=(2, 2)"
    with pytest.raises(UnsupportedAlgorithmError) as info:
        conv2d(**args(), algorithm=refusing_algorithm.name)
    assert str(info.value).endswith(
        "algorithms that serve this call: direct, im2col, fft, winograd, winograd_f2")


def test_refusal_names_only_algorithms_within_the_workspace_limit():
    # an algorithm that serves the call but whose plan is over the workspace
    # limit is not offered (the call would raise MemoryError)
    from numbaconv.algorithms import registry

    class Hog(registry.ConvAlgorithm):
        name = "test_errors_hog"
        measured_error_eps = 0.0
        transforms_values = False

        def plan_forward(self, spec, ctx):
            return registry.Plan(self.name, "everything at once", 1.0,
                                 workspace=ctx.workspace_limit + 1)

    try:
        registry.register(Hog())
        with pytest.raises(UnsupportedAlgorithmError) as info:
            conv2d(**args(stride=2), algorithm="winograd")
    finally:
        registry.unregister("test_errors_hog")
    assert info.value.serving == ("direct", "im2col", "fft")


def test_unsupported_algorithm_error_pickles_with_its_details():
    import pickle
    with pytest.raises(UnsupportedAlgorithmError) as info:
        conv1d(**args(1, stride=2), algorithm="winograd_f2")
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is UnsupportedAlgorithmError and str(again) == str(info.value)
    assert (again.algorithm, again.reason, again.serving) == (
        info.value.algorithm, info.value.reason, info.value.serving)


def test_invalid_arguments_are_reported_before_the_algorithm(refusing_algorithm):
    # a bad parameter is a plain ValueError, not the algorithm's refusal
    with pytest.raises(ValueError, match=r"stride must be positive") as info:
        conv2d(**args(stride=0), algorithm=refusing_algorithm.name)
    assert not isinstance(info.value, UnsupportedAlgorithmError)


# ---------------------------------------------------------------------------
# transposed convolution, nc.grad and conv_backward
# ---------------------------------------------------------------------------

from numbaconv import (conv_backward, conv_transpose1d, conv_transpose2d,  # noqa: E402
                       conv_transpose3d)
from numbaconv import grad as nc_grad  # noqa: E402


def targs(nd=2, x=None, w=None, **kwargs):
    """Keyword arguments for ``conv_transpose{nd}d``: weight (C_in, C_out/groups, k...)."""
    kwargs["input"] = arr(x if x is not None else (1, 2) + (4,) * nd)
    kwargs["weight"] = arr(w if w is not None else (2, 3) + (3,) * nd)
    return kwargs


def gi_args(input_size=(1, 2, 5, 5), w=(2, 2, 3, 3), g=(1, 2, 3, 3), **kwargs):
    """Keyword arguments for ``grad.conv2d_input`` (valid: 5x5 -> 3x3)."""
    return dict(input_size=input_size, weight=arr(w), grad_output=arr(g), **kwargs)


def gw_args(x=(1, 2, 5, 5), weight_size=(2, 2, 3, 3), g=(1, 2, 3, 3), **kwargs):
    """Keyword arguments for ``grad.conv2d_weight`` (valid: 5x5 -> 3x3)."""
    return dict(input=arr(x), weight_size=weight_size, grad_output=arr(g), **kwargs)


def cb_args(x=(1, 2, 5, 5), w=(2, 2, 3, 3), g=(1, 2, 3, 3), **kwargs):
    """Keyword arguments for ``conv_backward`` (valid: 5x5 -> 3x3)."""
    return dict(input=arr(x), weight=arr(w), grad_output=arr(g), **kwargs)


_OP_MESSAGE = r"output padding must be smaller than either stride or dilation"

BACKWARD_CASES = [
    # ---- output_padding -----------------------------------------------------
    case("transpose_output_padding_equals_stride", conv_transpose2d,
         lambda: targs(stride=2, output_padding=2),
         ValueError, r"output_padding must be smaller than either stride or dilation, got "
                     r"output_padding=\(2, 2\), stride=\(2, 2\), dilation=\(1, 1\) \(along H\)",
         torch=(RuntimeError, _OP_MESSAGE)),
    case("transpose_output_padding_with_stride1", conv_transpose1d,
         lambda: targs(1, output_padding=1),
         ValueError, r"output_padding must be smaller than either stride or dilation, got "
                     r"output_padding=\(1,\), stride=\(1,\), dilation=\(1,\)",
         torch=(RuntimeError, _OP_MESSAGE)),
    case("transpose_output_padding_equals_dilation_along_W", conv_transpose3d,
         lambda: targs(3, x=(1, 2, 3, 3, 3), stride=(2, 2, 1), dilation=(1, 1, 2),
                       output_padding=(1, 1, 2)),
         ValueError, r"output_padding must be smaller than either stride or dilation, got "
                     r"output_padding=\(1, 1, 2\), .*\(along W\)",
         torch=(RuntimeError, _OP_MESSAGE)),
    case("transpose_output_padding_negative", conv_transpose2d,
         lambda: targs(output_padding=-1),
         ValueError, r"output_padding must be non-negative, got output_padding=-1"),
    # ---- conv_transpose shapes and padding ---------------------------------
    case("transpose_huge_padding_negative_output", conv_transpose2d,
         lambda: targs(x=(1, 2, 3, 3), w=(2, 2, 3, 3), padding=5),
         ValueError, r"the output size \(-5, -5\) = .* is not positive; padding=\(5, 5\) is "
                     r"too large for input size \(3, 3\)",
         torch=(RuntimeError, r"Calculated output size per channel: \(-5 x -5\)")),
    case("transpose_padding_string", conv_transpose2d, lambda: targs(padding="same"),
         ValueError, r"padding must be an int or a tuple of 2 ints \(no 'same'/'valid' here, "
                     r"as in PyTorch\), got 'same'",
         torch=(TypeError, r"argument 'padding' must be tuple of ints, not str")),
    case("transpose_weight_in_channels", conv_transpose2d, lambda: targs(w=(3, 3, 3, 3)),
         ValueError, r"weight\.shape\[0\] must be in_channels = 2 \(input\.shape\[1\]\), "
                     r"got weight\.shape=\(3, 3, 3, 3\)"),
    case("transpose_groups_not_dividing", conv_transpose2d,
         lambda: targs(x=(1, 3, 4, 4), w=(3, 2, 3, 3), groups=2),
         ValueError, r"groups=2 must divide in_channels=3"),
    case("transpose_bias_length", conv_transpose2d, lambda: targs(bias=arr((2,))),
         ValueError, r"bias must be a 1-D array of out_channels=3 values "
                     r"\(weight\.shape\[1\] \* groups\), got bias\.shape=\(2,\)"),
    case("transpose_out_wrong_shape", conv_transpose2d,
         lambda: targs(out=nan_out((1, 3, 4, 4))),
         ValueError, r"out must have shape \(1, 3, 6, 6\), got out\.shape=\(1, 3, 4, 4\)"),
    case("transpose_winograd_strided", conv_transpose2d,
         lambda: targs(stride=2, algorithm="winograd"),
         UnsupportedAlgorithmError, r"algorithm='winograd' cannot serve conv_transpose2d\(.*"
                                    r"stride=\(2, 2\).*\): it serves stride-1 problems, "
                                    r"got a transposed convolution .*with stride \(2, 2\)"),
    case("transpose_winograd_f2_strided_1d", conv_transpose1d,
         lambda: targs(1, stride=(3,), algorithm="winograd_f2"),
         UnsupportedAlgorithmError, r"algorithm='winograd_f2' cannot serve .*with stride \(3,\)"),
    # ---- grad.conv*d_input --------------------------------------------------
    case("grad_input_size_cannot_give_grad_output", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(1, 2, 9, 9), stride=2),
         ValueError, r"input_size=\(1, 2, 9, 9\) cannot give grad_output\.shape=\(1, 2, 3, 3\): "
                     r".* has output size \(4, 4\)",
         torch=(RuntimeError, r"Expected a tensor of dimension 4 and tensor\.size\[2\] == 4")),
    case("grad_input_size_too_large_by_one_stride1", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(1, 2, 6, 5)),
         ValueError, r"input_size=\(1, 2, 6, 5\) cannot give grad_output\.shape=\(1, 2, 3, 3\)"),
    case("grad_input_size_wrong_length", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(1, 2, 5, 5, 1)),
         TypeError, r"input_size must be a tuple of 3 or 4 ints, got \(1, 2, 5, 5, 1\)"),
    case("grad_input_size_not_a_tuple", nc_grad.conv2d_input, lambda: gi_args(input_size=5),
         TypeError, r"input_size must be a tuple of 3 or 4 ints, got 5"),
    case("grad_input_size_float_entry", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(1, 2, 5.0, 5)),
         TypeError, r"input_size must be a tuple of 3 or 4 ints, got \(1, 2, 5\.0, 5\)"),
    case("grad_input_grad_output_channels", nc_grad.conv2d_input,
         lambda: gi_args(g=(1, 3, 3, 3)),
         ValueError, r"grad_output\.shape must be \(N=1, C_out=2, \.\.\.\) .*"
                     r"got grad_output\.shape=\(1, 3, 3, 3\)"),
    case("grad_input_grad_output_batch", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(2, 2, 5, 5)),
         ValueError, r"grad_output\.shape must be \(N=2, C_out=2, \.\.\.\) .*"
                     r"got grad_output\.shape=\(1, 2, 3, 3\)"),
    case("grad_input_unbatched_size_batched_grad_output", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(2, 5, 5)),
         ValueError, r"input_size=\(2, 5, 5\) and grad_output\.shape=\(1, 2, 3, 3\) must both "
                     r"be batched or both unbatched"),
    case("grad_input_groups_inconsistent", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(1, 4, 5, 5), groups=3),
         ValueError, r"weight\.shape\[1\] \* groups must be in_channels = input_size\[1\] = 4, "
                     r"got weight\.shape=\(2, 2, 3, 3\), groups=3"),
    case("grad_input_padding_string", nc_grad.conv2d_input,
         lambda: gi_args(g=(1, 2, 5, 5), padding="same"),
         ValueError, r"padding must be an int or a tuple of 2 ints \(no 'same'/'valid' here"),
    case("grad_input_winograd_strided", nc_grad.conv2d_input,
         lambda: gi_args(input_size=(1, 2, 7, 7), stride=2, algorithm="winograd"),
         UnsupportedAlgorithmError, r"algorithm='winograd' cannot serve grad\.conv2d_input\(.*"
                                    r"with stride \(2, 2\)"),
    # ---- grad.conv*d_weight -------------------------------------------------
    case("grad_weight_size_inconsistent_with_groups", nc_grad.conv2d_weight,
         lambda: gw_args(groups=2),
         ValueError, r"weight_size=\(2, 2, 3, 3\) is inconsistent with groups=2: "
                     r"weight_size\[1\] \* groups must be in_channels=2"),
    case("grad_weight_size_groups_not_dividing_out_channels", nc_grad.conv2d_weight,
         lambda: gw_args(x=(1, 4, 5, 5), weight_size=(3, 2, 3, 3), g=(1, 3, 3, 3), groups=2),
         ValueError, r"weight_size=\(3, 2, 3, 3\) is inconsistent with groups=2: groups must "
                     r"divide weight_size\[0\]"),
    case("grad_weight_size_wrong_length", nc_grad.conv2d_weight,
         lambda: gw_args(weight_size=(2, 2, 3)),
         TypeError, r"weight_size must be a tuple of 4 ints, got \(2, 2, 3\)"),
    case("grad_weight_size_zero", nc_grad.conv2d_weight,
         lambda: gw_args(weight_size=(0, 2, 3, 3)),
         ValueError, r"weight_size must be positive, got weight_size=\(0, 2, 3, 3\)"),
    case("grad_weight_grad_output_shape", nc_grad.conv2d_weight, lambda: gw_args(g=(1, 2, 4, 4)),
         ValueError, r"grad_output must have the convolution's output shape \(1, 2, 3, 3\), "
                     r"got grad_output\.shape=\(1, 2, 4, 4\)",
         torch=(RuntimeError, r"Expected a tensor of dimension 4 and tensor\.size\[2\] == 3")),
    case("grad_weight_unbatched_grad_output", nc_grad.conv2d_weight, lambda: gw_args(g=(2, 3, 3)),
         ValueError, r"grad_output must have the convolution's output shape \(1, 2, 3, 3\), "
                     r"got grad_output\.shape=\(2, 3, 3\)"),
    case("grad_weight_padding_string", nc_grad.conv2d_weight, lambda: gw_args(padding="valid"),
         ValueError, r"padding must be an int or a tuple of 2 ints \(no 'same'/'valid' here, "
                     r"as in PyTorch\), got 'valid'"),
    case("grad_weight_winograd", nc_grad.conv2d_weight, lambda: gw_args(algorithm="winograd"),
         UnsupportedAlgorithmError, r"algorithm='winograd' cannot serve grad_weight of "
                                    r"grad\.conv2d_weight\(.*\): a weight gradient is a "
                                    r"convolution whose kernel spans the output"),
    # ---- conv_backward ------------------------------------------------------
    case("backward_grad_output_shape", conv_backward, lambda: cb_args(g=(1, 2, 4, 4)),
         ValueError, r"conv_backward: .*grad_output\.shape=\(1, 2, 4, 4\)"),
    case("backward_grad_output_channels_weight_only", conv_backward,
         lambda: cb_args(g=(1, 3, 3, 3), output_mask=(False, True, False)),
         ValueError, r"grad_output must have the convolution's output shape \(1, 2, 3, 3\), "
                     r"got grad_output\.shape=\(1, 3, 3, 3\)"),
    # only the bias gradient asked for: grad_output is still checked
    case("backward_grad_output_shape_bias_only", conv_backward,
         lambda: cb_args(g=(1, 2, 4, 4), output_mask=(False, False, True)),
         ValueError, r"conv_backward: .*grad_output\.shape=\(1, 2, 4, 4\)"),
    case("backward_transposed_grad_output_shape", conv_backward,
         lambda: cb_args(g=(1, 2, 4, 4), stride=2, transposed=True),
         ValueError, r"grad_output must have the transposed convolution's output shape "
                     r"\(1, 2, 11, 11\), got grad_output\.shape=\(1, 2, 4, 4\)"),
    case("backward_transposed_output_padding_too_large", conv_backward,
         lambda: cb_args(g=(1, 2, 11, 11), stride=2, transposed=True, output_padding=2),
         ValueError, r"output_padding must be smaller than either stride or dilation"),
    case("backward_output_padding_without_transposed", conv_backward,
         lambda: cb_args(output_padding=1),
         ValueError, r"output_padding applies to transposed convolutions only, got "
                     r"output_padding=1 with transposed=False"),
    case("backward_padding_string", conv_backward, lambda: cb_args(g=(1, 2, 5, 5), padding="same"),
         ValueError, r"padding must be an int or a tuple of 2 ints \(no 'same'/'valid' here"),
    case("backward_output_mask_ints", conv_backward, lambda: cb_args(output_mask=(1, 1, 1)),
         TypeError, r"output_mask must be a tuple of 3 bools, got \(1, 1, 1\)"),
    case("backward_output_mask_length", conv_backward, lambda: cb_args(output_mask=(True, True)),
         TypeError, r"output_mask must be a tuple of 3 bools, got \(True, True\)"),
    case("backward_transposed_not_bool", conv_backward, lambda: cb_args(transposed=1),
         TypeError, r"transposed must be a bool, got 1"),
    case("backward_weight_rank", conv_backward,
         lambda: cb_args(x=(1, 2, 5, 5, 5, 5), w=(2, 2, 3, 3, 3, 3), g=(1, 2, 3, 3, 3, 3)),
         ValueError, r"weight must have 3, 4 or 5 dimensions, got "
                     r"weight\.shape=\(2, 2, 3, 3, 3, 3\)"),
]

BACKWARD_TORCH_CASES = [pytest.param(*p.values[:2], *p.values[4], id=p.id, marks=p.marks)
                        for p in BACKWARD_CASES if p.values[4] is not None]


@pytest.mark.parametrize("fn, make, exc, match, torch_expected", BACKWARD_CASES)
def test_backward_bad_input_raises(fn, make, exc, match, torch_expected):
    kwargs = make()
    before = _snapshot(kwargs)
    with pytest.raises(exc, match=match) as info:
        fn(**kwargs)
    assert type(info.value) is exc
    _assert_unchanged(kwargs, before)


def test_backward_table_ids_are_unique():
    ids = [p.id for p in CASES + BACKWARD_CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("fn, make, torch_exc, torch_match", BACKWARD_TORCH_CASES)
def test_backward_torch_raises_too(fn, make, torch_exc, torch_match):
    torch = _measured_torch()

    kwargs = {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
              for k, v in make().items()}
    if fn.__module__ == "numbaconv.grad":
        torch_fn = getattr(torch.nn.grad, fn.__name__)
    else:
        torch_fn = getattr(torch.nn.functional, fn.__name__)
    with pytest.raises(torch_exc, match=torch_match) as info:
        torch_fn(**kwargs)
    assert type(info.value) is torch_exc


# ---------------------------------------------------------------------------
# what a new user tries (issue 16): the message says what to do
# ---------------------------------------------------------------------------

from .conftest import torch as torch_module  # noqa: E402
import numbaconv as nc  # noqa: E402

def test_huge_output_is_refused_before_allocating_and_names_the_parameter():
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv2d: the output would have shape "
                                         r"\(1, 1, 1000002, 1000002\), .* GiB of float32, "
                                         r"more than this machine's .* padding=500000"):
        nc.conv2d(x, w, padding=500000)
    with pytest.raises(ValueError, match=r"conv_transpose2d: .*stride=\(1000000, 1000000\)"):
        nc.conv_transpose2d(x, w, stride=1000000)


@pytest.mark.skipif(torch_module is None, reason="PyTorch not installed")
def test_pytorch_cpu_tensors_are_host_arrays():
    torch = torch_module
    x = torch.ones(1, 2, 5, 5)
    w = torch.ones(3, 2, 3, 3)
    y = nc.conv2d(x, w)
    assert isinstance(y, np.ndarray)
    assert np.array_equal(y, nc.conv2d(x.numpy(), w.numpy()))
    with pytest.raises(TypeError, match=r"conv2d: input is a PyTorch tensor that requires "
                                        r"grad; pass input.detach\(\)"):
        nc.conv2d(torch.ones(1, 2, 5, 5, requires_grad=True), w.numpy())


def test_gpu_array_where_the_function_runs_on_the_host():
    from numba import cuda
    device = cuda.to_device(np.ones((1, 1, 4, 4), np.float32))
    with pytest.raises(TypeError, match=r"conv2d: input is a GPU array .*copy it "
                                        r"there first"):
        nc.conv_reference(device, np.ones((1, 1, 3, 3), np.float32))


def test_object_arrays_are_refused_by_name():
    x = np.empty((1, 1, 4, 4), dtype=object)
    with pytest.raises(TypeError, match=r"input dtype must be float16, float32 or float64, "
                                        r"got object"):
        nc.conv2d(x, np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"input must be array-like with numbers"):
        nc.conv2d([[[object()]]], np.ones((1, 1, 1, 1), np.float32))


def test_remembered_specs_still_refuse_what_validation_refuses():
    # numbaconv.spec.remembered_spec keys specs by exact types and values:
    # a valid call must not let an equal-comparing invalid one through
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    for _ in range(2):
        assert nc.conv2d(x, w, stride=1, padding=1).shape == (1, 2, 5, 5)
    with pytest.raises(TypeError, match="stride"):
        nc.conv2d(x, w, stride=True, padding=1)
    with pytest.raises(TypeError, match="padding"):
        nc.conv2d(x, w, stride=1, padding=1.0)
    with pytest.raises(ValueError, match="groups"):
        nc.conv2d(x, w, stride=1, padding=1, groups=2)
    # the same shapes in another dtype, or as another rank, are their own problem
    assert nc.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1).dtype == np.float64
    with pytest.raises(ValueError, match="weight must have"):
        nc.conv1d(x[0], w, padding=1)


# ---------------------------------------------------------------------------
# the shape helpers take parameters as the conv functions do
# ---------------------------------------------------------------------------

def test_shape_helpers_broadcast_int_parameters_like_the_conv_functions():
    # an int stride/padding/dilation applies to every axis (it raised
    # "'int' object is not iterable" with tuple sizes)
    assert nc.conv_output_size((32, 32), (3, 3), stride=2, padding=1) == (16, 16)
    assert nc.conv_output_size([32, 33], 3, stride=2, padding=1, dilation=1) == (16, 17)
    assert nc.conv_output_size((28, 28), (4, 4), 1, 2, 1, 2) == (56, 56)
    # per-axis forms keep working, padding per axis as an int or a pair
    assert nc.conv_output_size((32, 32), (3, 3), (2, 1), (1, (0, 2))) == (16, 32)
    assert nc.conv_output_size(56, 3, stride=2, padding=(1, 1)) == 28
    assert nc.conv_input_size((16, 16), (3, 3), stride=2, padding=1,
                              output_padding=1) == (32, 32)
    assert nc.conv_input_size((16, 16), 3, (2, 1), (1, 0), 1, (1, 0)) == (32, 18)
    assert nc.conv_input_size(28, 4, stride=2, padding=1) == 56
    # the result is what the conv functions return
    x = np.zeros((1, 1, 32, 31), np.float32)
    w = np.zeros((1, 1, 3, 3), np.float32)
    assert nc.conv2d(x, w, stride=2, padding=1).shape[2:] == nc.conv_output_size(
        x.shape[2:], w.shape[2:], stride=2, padding=1)
    assert nc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1).shape[2:] == \
        nc.conv_input_size(x.shape[2:], w.shape[2:], stride=2, padding=1, output_padding=1)


@pytest.mark.parametrize("fn, kwargs, exc, match", [
    (nc.conv_output_size, dict(stride=(1, 2, 3)), ValueError, r"stride must be .* 2 per-axis"),
    (nc.conv_output_size, dict(padding="same"), TypeError, r"padding must be .*got padding='same'"),
    (nc.conv_output_size, dict(padding=((1, 2, 3), 1)), TypeError, r"padding must be"),
    (nc.conv_output_size, dict(dilation=1.5), TypeError, r"dilation must be .*got dilation=1\.5"),
    (nc.conv_output_size, dict(kernel_size=(3,)), ValueError, r"kernel_size must be"),
    (nc.conv_output_size, dict(stride=True), TypeError, r"stride must be"),
    (nc.conv_input_size, dict(output_padding=(1,)), ValueError, r"output_padding must be"),
    (nc.conv_input_size, dict(padding=(1, (1, 1))), TypeError, r"padding must be"),
])
def test_shape_helpers_name_a_bad_parameter(fn, kwargs, exc, match):
    kwargs = dict(dict(kernel_size=(3, 3)), **kwargs)
    with pytest.raises(exc, match=match):
        fn((32, 32), **kwargs)


def test_shape_helpers_for_one_axis_take_ints():
    with pytest.raises(TypeError, match=r"stride must be an int for a single axis"):
        nc.conv_output_size(32, 3, stride=(2, 2))
    with pytest.raises(TypeError, match=r"padding must be an int or a \(before, after\) pair"):
        nc.conv_output_size(32, 3, padding=(1, 1, 1))
    with pytest.raises(TypeError, match=r"output_padding must be an int"):
        nc.conv_input_size(16, 3, output_padding=(1,))
