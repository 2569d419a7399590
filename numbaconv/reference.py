"""A float64 NumPy reference for forward convolution.

Deliberately short and independent of every kernel in the package: padding
through :func:`numpy.pad`, then one strided slice and one ``einsum`` per
kernel offset.  It is the oracle of the tests and of ``numbaconv bench``'s
result checks, so it favours being obviously right over being fast.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .spec import check_float_array, make_conv_spec

# numbaconv / PyTorch padding_mode -> numpy.pad mode.
_NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect",
                   "replicate": "edge", "circular": "wrap"}


def conv_reference(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros"):
    """Forward N-d convolution (cross-correlation) in float64.

    Same arguments and semantics as ``numbaconv.conv{1,2,3}d``; the rank is
    taken from ``weight``.  Always returns float64.
    """
    ndim = np.ndim(weight) - 2
    op = f"conv{ndim}d" if ndim in (1, 2, 3) else "conv_reference"
    if ndim not in (1, 2, 3):
        raise ValueError(f"conv_reference: weight must have 3 to 5 dimensions, got "
                         f"{np.shape(weight)}")
    input = check_float_array(op, "input", input)
    weight = check_float_array(op, "weight", weight)
    bias = check_float_array(op, "bias", bias, allow_none=True)
    spec = make_conv_spec(op, ndim, input, weight, bias, stride, padding, dilation, groups,
                          padding_mode)

    x = np.asarray(input, dtype=np.float64).reshape(spec.input_shape)
    w = np.asarray(weight, dtype=np.float64)
    x = np.pad(x, ((0, 0), (0, 0)) + spec.padding, mode=_NUMPY_PAD_MODE[spec.padding_mode])

    g, cin_g, cout_g = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    x = x.reshape((spec.batch, g, cin_g) + x.shape[2:])
    w = w.reshape((g, cout_g, cin_g) + spec.kernel_size)
    out = np.zeros((spec.batch, g, cout_g) + spec.output_size)
    for offset in itertools.product(*(range(k) for k in spec.kernel_size)):
        window = tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, spec.dilation, spec.stride, spec.output_size))
        patch = x[(slice(None),) * 3 + window]              # (N, G, Cin_g, *out)
        taps = w[(slice(None),) * 3 + offset]               # (G, Cout_g, Cin_g)
        out += np.einsum("ngc...,goc->ngo...", patch, taps)
    out = out.reshape(spec.output_shape)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * ndim)
    return out[0] if spec.unbatched else out


# ---------------------------------------------------------------------------
# Transposed convolution and the two convolution gradients.
#
# These are oracles for code that rewrites them into forward convolutions
# (flipped kernels, zero insertion, swapped axes), so they must not share that
# math: each is written straight from its defining sum, as a scatter or a
# reduction over kernel taps, with explicit index arithmetic.
# ---------------------------------------------------------------------------

def _ints(op, name, value, ndim, minimum=0):
    """``value`` (an int, or a tuple/list of ``ndim`` ints) as a tuple of ``ndim`` ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        values = (int(value),) * ndim
    else:
        values = tuple(int(v) for v in value)
        if len(values) != ndim:
            raise ValueError(f"{op}: {name} must be an int or {ndim} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return values


def _rank(op, weight_ndim):
    ndim = weight_ndim - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"{op}: weight must have 3 to 5 dimensions, got {weight_ndim}")
    return ndim


def _tap_slice(start, step, count):
    """Indices ``start, start + step, ..., start + step * (count - 1)`` as a slice."""
    return slice(start, start + step * count, step) if count else slice(start, start)


def _forward_size(n, k, s, p, d):
    """Output length of a forward convolution along one axis (may be <= 0)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_transpose_reference(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                             groups=1, dilation=1):
    """Transposed N-d convolution in float64, written as a scatter.

    Same semantics as ``torch.nn.functional.conv_transpose{1,2,3}d``: every
    input position ``i`` scatters ``input[n, ci, i] * weight[ci, co_local, k]``
    to output position ``i * stride + k * dilation - padding`` (per axis).

    Parameters
    ----------
    input : array_like
        ``(N, C_in, *spatial)``, or ``(C_in, *spatial)`` for unbatched input.
    weight : array_like
        ``(C_in, C_out / groups, *kernel_size)``; its rank (3 to 5 dimensions)
        fixes the number of spatial dimensions.
    bias : array_like, optional
        ``(C_out,)``.
    stride, padding, output_padding, dilation : int or tuple of int
        One value or one per spatial dimension.  ``padding`` is removed from
        both ends of the full output; ``output_padding`` is added at the end
        only (PyTorch requires it to be smaller than stride or dilation).
    groups : int
        Input channels ``g * C_in/groups ...`` feed output channels
        ``g * C_out/groups ...``.

    Returns
    -------
    numpy.ndarray
        float64, ``(N, C_out, *L_out)`` (unbatched in, unbatched out) with
        ``L_out = (L_in - 1) * stride - 2 * padding + dilation * (k - 1)
        + output_padding + 1``.

    Raises
    ------
    ValueError
        On rank or channel mismatches, invalid ``output_padding`` or an empty
        output.
    """
    op = "conv_transpose_reference"
    w = np.asarray(weight, dtype=np.float64)
    ndim = _rank(op, w.ndim)
    x = np.asarray(input, dtype=np.float64)
    if x.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(f"{op}: input must have {ndim + 1} or {ndim + 2} dimensions for a "
                         f"{ndim}-d weight, got shape {x.shape}")
    unbatched = x.ndim == ndim + 1
    if unbatched:
        x = x[None]
    stride = _ints(op, "stride", stride, ndim, 1)
    padding = _ints(op, "padding", padding, ndim, 0)
    output_padding = _ints(op, "output_padding", output_padding, ndim, 0)
    dilation = _ints(op, "dilation", dilation, ndim, 1)
    for o, s, d in zip(output_padding, stride, dilation):
        if not (o < s or o < d):
            raise ValueError(f"{op}: output_padding must be smaller than stride or dilation, "
                             f"got output_padding={output_padding}, stride={stride}, "
                             f"dilation={dilation}")
    cin = w.shape[0]
    if groups < 1 or cin % groups or x.shape[1] != cin:
        raise ValueError(f"{op}: input has {x.shape[1]} channels, weight {w.shape} and "
                         f"groups={groups} do not match")
    g, cin_g, cout_g = groups, cin // groups, w.shape[1]
    kernel = w.shape[2:]
    batch, size = x.shape[0], x.shape[2:]
    out_size = tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, s, p, d, k, o
                     in zip(size, stride, padding, dilation, kernel, output_padding))
    if any(n < 1 for n in size) or any(n < 1 for n in out_size):
        raise ValueError(f"{op}: input size {size} gives output size {out_size}")
    # Full (uncropped) scatter extent; the output window [p, p + L_out) can
    # reach past it by output_padding - padding trailing positions, which no
    # input touches (they hold only the bias).
    full = tuple(max((n - 1) * s + d * (k - 1) + 1, p + m) for n, s, d, k, p, m
                 in zip(size, stride, dilation, kernel, padding, out_size))

    x = x.reshape((batch, g, cin_g) + size)
    w = w.reshape((g, cin_g, cout_g) + kernel)
    out = np.zeros((batch, g, cout_g) + full)
    for tap in itertools.product(*(range(k) for k in kernel)):
        target = tuple(_tap_slice(t * d, s, n)
                       for t, d, s, n in zip(tap, dilation, stride, size))
        out[(slice(None),) * 3 + target] += np.einsum(
            "ngc...,gco->ngo...", x, w[(slice(None),) * 3 + tap])
    out = out[(slice(None),) * 3 + tuple(slice(p, p + m) for p, m in zip(padding, out_size))]
    out = out.reshape((batch, g * cout_g) + out_size)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * ndim)
    return out[0] if unbatched else out


def _check_gradient_shapes(op, ndim, input_shape, weight_shape, go_shape, stride, padding,
                           dilation, groups):
    """Check the (batched) shapes of a convolution-gradient problem; return
    ``(unbatched, input_shape, go_shape)`` with the batch axis present."""
    unbatched = len(input_shape) == ndim + 1
    if len(input_shape) not in (ndim + 1, ndim + 2):
        raise ValueError(f"{op}: input must have {ndim + 1} or {ndim + 2} dimensions for a "
                         f"{ndim}-d weight, got shape {input_shape}")
    if len(go_shape) != len(input_shape):
        raise ValueError(f"{op}: grad_output shape {go_shape} and input shape {input_shape} "
                         "must have the same number of dimensions")
    if unbatched:
        input_shape, go_shape = (1,) + input_shape, (1,) + go_shape
    cout, cin_g = weight_shape[:2]
    if (groups < 1 or cout % groups or input_shape[1] != cin_g * groups
            or go_shape[1] != cout or go_shape[0] != input_shape[0]):
        raise ValueError(f"{op}: input {input_shape}, weight {weight_shape}, grad_output "
                         f"{go_shape} and groups={groups} do not match")
    expected = tuple(_forward_size(n, k, s, p, d) for n, k, s, p, d
                     in zip(input_shape[2:], weight_shape[2:], stride, padding, dilation))
    if any(m < 1 for m in expected) or tuple(go_shape[2:]) != expected:
        raise ValueError(f"{op}: grad_output spatial size {tuple(go_shape[2:])} does not match "
                         f"the forward output size {expected} of input {input_shape}")
    return unbatched, tuple(input_shape), tuple(go_shape)


def conv_grad_input_reference(input_size, weight, grad_output, stride=1, padding=0, dilation=1,
                              groups=1):
    """Gradient of a forward convolution with respect to its input, in float64.

    Same semantics as ``torch.nn.grad.conv{1,2,3}d_input``: the explicit sum

    ``grad_input[n, ci, i] = sum over co in ci's group, taps k and outputs o
    with o * stride + k * dilation - padding == i of
    grad_output[n, co, o] * weight[co, ci_local, k]``,

    accumulated tap by tap into a zero-padded buffer, which is then cropped.
    Input positions that no output window touches get zero.

    Parameters
    ----------
    input_size : sequence of int
        Shape of the forward input, ``(N, C_in, *spatial)`` or, unbatched,
        ``(C_in, *spatial)`` (then ``grad_output`` is unbatched too).
    weight : array_like
        ``(C_out, C_in / groups, *kernel_size)``.
    grad_output : array_like
        ``(N, C_out, *out)``: the gradient of the forward output.
    stride, padding, dilation : int or tuple of int
        The forward convolution's parameters (symmetric integer padding).
    groups : int
        The forward convolution's group count.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``input_size``.

    Raises
    ------
    ValueError
        On rank mismatches, or shapes inconsistent with the forward problem.
    """
    op = "conv_grad_input_reference"
    w = np.asarray(weight, dtype=np.float64)
    ndim = _rank(op, w.ndim)
    go = np.asarray(grad_output, dtype=np.float64)
    stride = _ints(op, "stride", stride, ndim, 1)
    padding = _ints(op, "padding", padding, ndim, 0)
    dilation = _ints(op, "dilation", dilation, ndim, 1)
    user_size = tuple(int(v) for v in input_size)
    unbatched, shape, go_shape = _check_gradient_shapes(
        op, ndim, user_size, w.shape, go.shape, stride, padding, dilation, groups)
    batch, size, out_size, kernel = shape[0], shape[2:], go_shape[2:], w.shape[2:]
    g, cout_g, cin_g = groups, w.shape[0] // groups, w.shape[1]

    go = go.reshape((batch, g, cout_g) + out_size)
    w = w.reshape((g, cout_g, cin_g) + kernel)
    gpad = np.zeros((batch, g, cin_g) + tuple(n + 2 * p for n, p in zip(size, padding)))
    for tap in itertools.product(*(range(k) for k in kernel)):
        # padded input position of output o at this tap: o * s + k * d
        target = tuple(_tap_slice(t * d, s, m)
                       for t, d, s, m in zip(tap, dilation, stride, out_size))
        gpad[(slice(None),) * 3 + target] += np.einsum(
            "ngo...,goc->ngc...", go, w[(slice(None),) * 3 + tap])
    grad = gpad[(slice(None),) * 3 + tuple(slice(p, p + n) for p, n in zip(padding, size))]
    return grad.reshape(user_size)


def conv_grad_weight_reference(input, weight_size, grad_output, stride=1, padding=0, dilation=1,
                               groups=1):
    """Gradient of a forward convolution with respect to its weight, in float64.

    Same semantics as ``torch.nn.grad.conv{1,2,3}d_weight``:

    ``grad_weight[co, ci_local, k] = sum over n and output positions o of
    grad_output[n, co, o] * xpad[n, ci, o * stride + k * dilation]``

    with ``xpad`` the zero-padded input and ``ci`` the ``ci_local``-th input
    channel of ``co``'s group; one reduction per kernel tap.

    Parameters
    ----------
    input : array_like
        The forward input, ``(N, C_in, *spatial)`` or unbatched
        ``(C_in, *spatial)`` (then ``grad_output`` is unbatched too).
    weight_size : sequence of int
        ``(C_out, C_in / groups, *kernel_size)``; its length (3 to 5) fixes
        the number of spatial dimensions.
    grad_output : array_like
        ``(N, C_out, *out)``: the gradient of the forward output.
    stride, padding, dilation : int or tuple of int
        The forward convolution's parameters (symmetric integer padding).
    groups : int
        The forward convolution's group count.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``weight_size`` (zeros for an empty batch).

    Raises
    ------
    ValueError
        On rank mismatches, or shapes inconsistent with the forward problem.
    """
    op = "conv_grad_weight_reference"
    weight_size = tuple(int(v) for v in weight_size)
    ndim = _rank(op, len(weight_size))
    x = np.asarray(input, dtype=np.float64)
    go = np.asarray(grad_output, dtype=np.float64)
    stride = _ints(op, "stride", stride, ndim, 1)
    padding = _ints(op, "padding", padding, ndim, 0)
    dilation = _ints(op, "dilation", dilation, ndim, 1)
    unbatched, shape, go_shape = _check_gradient_shapes(
        op, ndim, x.shape, weight_size, go.shape, stride, padding, dilation, groups)
    batch, out_size, kernel = shape[0], go_shape[2:], weight_size[2:]
    g, cout_g, cin_g = groups, weight_size[0] // groups, weight_size[1]

    xpad = np.pad(x.reshape(shape), ((0, 0), (0, 0)) + tuple((p, p) for p in padding))
    xpad = xpad.reshape((batch, g, cin_g) + xpad.shape[2:])
    npos = math.prod(out_size)
    go = go.reshape(batch, g, cout_g, npos)                  # (N, G, Cout_g, prod(out))
    grad = np.zeros((g, cout_g, cin_g) + kernel)
    for tap in itertools.product(*(range(k) for k in kernel)):
        source = tuple(_tap_slice(t * d, s, m)
                       for t, d, s, m in zip(tap, dilation, stride, out_size))
        patch = xpad[(slice(None),) * 3 + source].reshape(batch, g, cin_g, npos)
        grad[(slice(None),) * 3 + tap] = np.einsum("ngcp,ngop->goc", patch, go)
    return grad.reshape(weight_size)
