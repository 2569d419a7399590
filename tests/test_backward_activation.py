"""conv_backward(activation=, output=) and activation_backward (SPEC 1c).

The folded gradient ``grad_output * activation'(z)`` is computed from the
forward output ``y = activation(z)``.  The expected gradients are built in
float64 from the reference convolution: ``z`` from
:func:`numbaconv.conv_reference`, the derivative from ``z`` itself (not from
``y``), then the reference input and weight gradients of the folded
gradient.  Tolerance: normwise, ``max|ours - ref| <= 32 eps * max|ref|``; the
largest measured over these cases was 6.5 eps (tanh, float32: ``1 - y*y``
amplifies ``y``'s rounding where ``|y|`` is near 1), and float16 (computed
in float32, ``y`` given in float16) measured 1.1 eps of float16.
"""

from __future__ import annotations

import numpy as np
import pytest

import numbaconv as nc
from numbaconv.epilogue import OUTPUT_DERIVATIVE_ACTIVATIONS

from .conftest import torch

SLOPE = 0.1


def _derivative(activation, z):
    """activation'(z) in float64, from the value before the activation."""
    if activation == "relu":
        return (z > 0).astype(np.float64)
    if activation == "relu6":
        return ((z > 0) & (z < 6)).astype(np.float64)
    if activation == "leaky_relu":
        return np.where(z > 0, 1.0, SLOPE)
    if activation == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    return 1 - np.tanh(z) ** 2                                            # tanh


def _case(rng, dtype, ndim=2, transposed=False):
    shape = (2, 5) + (7,) * ndim
    x = rng.standard_normal(shape).astype(dtype)
    if transposed:
        w = (rng.standard_normal((5, 3) + (3,) * ndim) * 2).astype(dtype)
    else:
        w = (rng.standard_normal((6, 5) + (3,) * ndim) * 0.5).astype(dtype)
    b = rng.standard_normal(w.shape[1] if transposed else 6).astype(dtype)
    return x, w, b


def _forward(x, w, b, activation, transposed, **kw):
    ndim = w.ndim - 2
    if transposed:
        fn = {1: nc.conv_transpose1d, 2: nc.conv_transpose2d, 3: nc.conv_transpose3d}[ndim]
        return fn(x, w, b, stride=2, padding=1, activation=activation, **kw)
    fn = {1: nc.conv1d, 2: nc.conv2d, 3: nc.conv3d}[ndim]
    return fn(x, w, b, padding=1, activation=activation, **kw)


def _expected(x, w, b, g, activation, transposed):
    x64, w64, b64, g64 = (a.astype(np.float64) for a in (x, w, b, g))
    if transposed:
        z = nc.conv_transpose_reference(x64, w64, b64, stride=2, padding=1)
    else:
        z = nc.conv_reference(x64, w64, b64, padding=1)
    folded = g64 * _derivative(activation, z)
    if transposed:     # y = conv_transpose(x): dx = conv(folded), dw from the conv folded -> x
        gi = nc.conv_reference(folded, w64, None, stride=2, padding=1)
        gw = nc.conv_grad_weight_reference(folded, w64.shape, x64, stride=2, padding=1)
    else:
        gi = nc.conv_grad_input_reference(x64.shape, w64, folded, padding=1)
        gw = nc.conv_grad_weight_reference(x64, w64.shape, folded, padding=1)
    axes = (0,) + tuple(range(2, g.ndim))
    return gi, gw, folded.sum(axis=axes)


def _assert_close(ours, ref, dtype):
    eps = float(np.finfo(dtype).eps)
    err = np.abs(ours.astype(np.float64) - ref).max()
    assert err <= 32 * eps * np.abs(ref).max(), (err, np.abs(ref).max(), eps)


@pytest.mark.parametrize("activation", OUTPUT_DERIVATIVE_ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_folded_gradients_match_reference(rng, activation, dtype):
    x, w, b = _case(rng, dtype)
    kw = {"negative_slope": SLOPE} if activation == "leaky_relu" else {}
    y = _forward(x, w, b, activation, False, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    gi, gw, gb = nc.conv_backward(x, w, g, 1, 1, activation=activation, output=y, **kw)
    assert gi.dtype == gw.dtype == gb.dtype == dtype
    for ours, ref in zip((gi, gw, gb), _expected(x, w, b, g, activation, False)):
        _assert_close(ours, ref, dtype)


@pytest.mark.parametrize("ndim,transposed", [(1, False), (3, False), (2, True)])
def test_folded_gradients_other_ranks_and_transposed(rng, ndim, transposed):
    x, w, b = _case(rng, np.float64, ndim, transposed)
    y = _forward(x, w, b, "tanh", transposed)
    g = rng.standard_normal(y.shape)
    kwargs = dict(transposed=True, stride=2, padding=1) if transposed else dict(padding=1)
    got = nc.conv_backward(x, w, g, activation="tanh", output=y, **kwargs)
    for ours, ref in zip(got, _expected(x, w, b, g, "tanh", transposed)):
        _assert_close(ours, ref, np.float64)


def test_output_mask_and_activation_backward(rng):
    x, w, b = _case(rng, np.float32)
    y = _forward(x, w, b, "relu6", False)
    g = rng.standard_normal(y.shape).astype(np.float32)
    gi, gw, gb = nc.conv_backward(x, w, g, 1, 1, output_mask=(False, False, True),
                                  activation="relu6", output=y)
    assert gi is None and gw is None
    folded = nc.activation_backward(g, y, "relu6")
    np.testing.assert_array_equal(folded, np.where((y > 0) & (y < 6), g, 0))
    # the fused bias sum is the sum of the folded gradient (any order: 8 eps)
    np.testing.assert_allclose(gb, folded.sum(axis=(0, 2, 3)), rtol=0,
                               atol=8 * np.finfo(np.float32).eps * np.abs(folded).sum())
    # without the activation, the same gradients from the folded grad_output
    gi2, gw2, _ = nc.conv_backward(x, w, folded, 1, 1)
    gi1, gw1, _ = nc.conv_backward(x, w, g, 1, 1, activation="relu6", output=y)
    np.testing.assert_array_equal(gi1, gi2)
    np.testing.assert_array_equal(gw1, gw2)


def test_activation_backward_keeps_layout_and_nan_rule(rng):
    # NaN outputs: PyTorch's scalar backward formulas (its vectorised relu6
    # path zeroes them instead; docs/semantics.md "Fused epilogues")
    y = np.array([[-1.0, 0.0, 2.0, np.nan], [5.0, 6.0, 7.0, -0.5]], np.float32)[None]
    g = np.ones_like(y) * 3
    np.testing.assert_array_equal(nc.activation_backward(g, y, "relu"),
                                  [[[0, 0, 3, 3], [3, 3, 3, 0]]])
    np.testing.assert_array_equal(nc.activation_backward(g, y, "relu6"),
                                  [[[0, 0, 3, 3], [3, 0, 0, 0]]])
    np.testing.assert_allclose(nc.activation_backward(g, y, "leaky_relu", 0.5),
                               [[[1.5, 1.5, 3, 1.5], [3, 3, 3, 1.5]]])
    # a channels-last view comes back in the same layout
    nhwc = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    view = nhwc.transpose(0, 3, 1, 2)
    folded = nc.activation_backward(view, view, "tanh")
    assert np.moveaxis(folded, 1, -1).flags.c_contiguous
    np.testing.assert_allclose(folded, view * (1 - view * view), rtol=1e-6)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("activation", OUTPUT_DERIVATIVE_ACTIVATIONS)
def test_matches_torch_autograd(rng, activation):
    F = torch.nn.functional
    x, w, b = _case(rng, np.float32)
    kw = {"negative_slope": SLOPE} if activation == "leaky_relu" else {}
    y = _forward(x, w, b, activation, False, **kw)
    g = rng.standard_normal(y.shape).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    act = {"relu": F.relu, "relu6": F.relu6, "leaky_relu": lambda t: F.leaky_relu(t, SLOPE),
           "sigmoid": torch.sigmoid, "tanh": torch.tanh}[activation]
    ty = act(F.conv2d(tx, tw, tb, padding=1))
    ty.backward(torch.from_numpy(g))
    ours = nc.conv_backward(x, w, g, 1, 1, activation=activation, output=y, **kw)
    for mine, t in zip(ours, (tx, tw, tb)):
        ref = t.grad.numpy()
        assert np.abs(mine - ref).max() <= 64 * np.finfo(np.float32).eps * np.abs(ref).max()


def test_errors_name_the_argument():
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((3, 2, 1, 1), np.float32)
    y = np.ones((1, 3, 4, 4), np.float32)
    cases = [
        (dict(activation="gelu", output=y), "needs the value before the activation"),
        (dict(activation="relu"), "needs output="),
        (dict(output=y), "output= is the forward output"),
        (dict(activation="relu", output=y[:, :2]), "output must have grad_output's shape"),
        (dict(activation="leaky_relu", negative_slope=-0.1, output=y), "at least 0"),
        (dict(activation="swish", output=y), "activation must be one of"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            nc.conv_backward(x, w, y, **kwargs)
    with pytest.raises(TypeError, match="output"):
        nc.conv_backward(x, w, y, activation="relu", output=y.astype(np.int32))
    with pytest.raises(ValueError, match="activation must be one of"):
        nc.activation_backward(y, y, None)
