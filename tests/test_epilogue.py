"""The fused epilogue (SPEC 1c): ``y = activation(conv(x, w) + bias + residual)``.

Every CPU algorithm applies it where its kernel writes a block of the
output (Note [epilogue] in numbaconv/epilogue.py), so these tests run each
algorithm -- and each of direct's loop orders, im2col's pointwise GEMM and
its col2im transposed path -- with every activation, with and without a
residual, against the float64 composition ``activate(conv_reference(x, w,
b) + residual)``.

Tolerance: the convolution's own bound (tests/conftest.py ``tolerance``)
times 1.5, plus ``4 eps |y|``.  The activations are Lipschitz with
constant at most 1.5 (hardswish's slope at 3; gelu's and silu's are below
1.13), so the convolution's error grows by at most that factor, and each
activation's own evaluation adds a few roundings relative to its value:
the largest measured over these cases was 2.1 eps |y| (gelu_tanh, float32).
"""

from __future__ import annotations

import numpy as np
import pytest

import numbaconv as nc
from numbaconv.algorithms.direct import LOOP_ORDERS, direct_forward, serves_phase_planes
from numbaconv.epilogue import ACTIVATIONS, Epilogue, activate
from numbaconv.spec import make_conv_spec

from .conftest import EPS, tolerance, torch, torch_conv

SLOPE = 0.2
FUSED_ACTIVATIONS = [a for a in ACTIVATIONS if a is not None]


def _slope(activation):
    """negative_slope= where it applies (it is an error elsewhere)."""
    return {"negative_slope": SLOPE} if activation == "leaky_relu" else {}


def _case(rng, dtype, ndim=2, cin=6, cout=8, size=9, k=3, groups=1, batch=2):
    x = rng.standard_normal((batch, cin) + (size,) * ndim).astype(dtype)
    # weights scaled so that outputs cover every activation's interesting
    # range (hardswish and relu6 bend at +-3 and 6)
    w = (rng.standard_normal((cout, cin // groups) + (k,) * ndim) * 1.5).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    return x, w, b


def _expected(x, w, b, activation, residual, **kw):
    z = nc.conv_reference(x.astype(np.float64), w.astype(np.float64),
                          b.astype(np.float64), **kw)
    if residual is not None:
        z = z + residual.astype(np.float64)
    return activate(activation, z, SLOPE)


def _check(y, x, w, b, activation, residual, algorithm, **kw):
    want = _expected(x, w, b, activation, residual, **kw)
    assert y.shape == want.shape and y.dtype == x.dtype
    bound = (1.5 * tolerance(x, w, b, x.dtype, algorithm, **kw)
             + 4 * EPS[np.dtype(x.dtype)] * np.abs(want))
    if residual is not None:
        bound = bound + EPS[np.dtype(x.dtype)] * np.abs(residual)
    err = np.abs(y.astype(np.float64) - want)
    assert np.all(err <= bound), f"max excess {np.max(err - bound):.3g}"


def _residual(rng, x, w, dtype, **kw):
    shape = nc.conv_reference(x.astype(np.float64), w.astype(np.float64), None, **kw).shape
    return (rng.standard_normal(shape) * 2).astype(dtype)


ALGORITHMS = ["direct", "im2col", "fft", "winograd", "winograd_f2"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_algorithm_fuses_every_activation(rng, algorithm, activation, dtype):
    x, w, b = _case(rng, dtype)
    r = _residual(rng, x, w, dtype, padding=1)
    for residual in (None, r):
        y = nc.conv2d(x, w, b, padding=1, activation=activation, residual=residual,
                      **_slope(activation), algorithm=algorithm)
        _check(y, x, w, b, activation, residual, algorithm, padding=1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_fusing_algorithms_make_no_separate_pass(rng, monkeypatch, algorithm):
    """Each CPU algorithm declares fuses_epilogue, so the registry's separate
    NumPy pass (Epilogue.apply) is never called on its forward path."""
    def no_separate_pass(self, out):
        raise AssertionError("Epilogue.apply called: the epilogue was not fused")
    monkeypatch.setattr(Epilogue, "apply", no_separate_pass)
    x, w, b = _case(rng, np.float32)
    r = _residual(rng, x, w, np.float32, padding=1)
    y = nc.conv2d(x, w, b, padding=1, activation="silu", residual=r, algorithm=algorithm)
    _check(y, x, w, b, "silu", r, algorithm, padding=1)


@pytest.mark.parametrize("loop_order", LOOP_ORDERS)
@pytest.mark.parametrize("activation", ["relu", "gelu", "hardswish", "leaky_relu"])
@pytest.mark.parametrize("stride", [1, 2])
def test_direct_loop_orders(rng, loop_order, activation, stride):
    groups = 6 if loop_order == "thin_channels_last" else 2
    x, w, b = _case(rng, np.float32, groups=groups, cout=12, size=10)
    kw = dict(stride=stride, padding=1, groups=groups)
    spec = make_conv_spec("conv2d", 2, x, w, b, **kw)
    if loop_order == "phase_planes" and not serves_phase_planes(spec):
        pytest.skip("phase_planes does not serve this spec")
    r = _residual(rng, x, w, np.float32, **kw)
    x5, w5 = x[:, :, None], w[:, :, None]
    out = np.full(spec.output_shape[:2] + spec.output_size3, np.nan, np.float32)
    epilogue = Epilogue.of(b, np.dtype(np.float32), activation, SLOPE, r[:, :, None])
    direct_forward(spec, x5, w5, epilogue, out, loop_order=loop_order)
    _check(out[:, :, 0], x, w, b, activation, r, "direct", **kw)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "fft"])
@pytest.mark.parametrize("ndim", [1, 3])
def test_one_and_three_dimensions(rng, algorithm, ndim):
    x, w, b = _case(rng, np.float32, ndim=ndim, size=7 if ndim == 3 else 20)
    kw = dict(padding=1, stride=2)
    r = _residual(rng, x, w, np.float32, **kw)
    conv = {1: nc.conv1d, 3: nc.conv3d}[ndim]
    y = conv(x, w, b, activation="tanh", residual=r, algorithm=algorithm, **kw)
    _check(y, x, w, b, "tanh", r, algorithm, **kw)


@pytest.mark.parametrize("algorithm", ["im2col", "direct"])
def test_pointwise(rng, algorithm):
    """The 1x1 layer: im2col's GEMM on views (pointwise_conv)."""
    x, w, b = _case(rng, np.float32, cin=16, cout=24, k=1)
    r = _residual(rng, x, w, np.float32)
    y = nc.conv2d(x, w, b, activation="relu6", residual=r, algorithm=algorithm)
    _check(y, x, w, b, "relu6", r, algorithm)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "fft"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "gelu_tanh"])
def test_transposed(rng, algorithm, activation):
    """conv_transpose2d: im2col's col2im path finishes each job's planes
    after every tile was added; direct and fft through the phase rewrite."""
    x = rng.standard_normal((2, 6, 5, 5)).astype(np.float32)
    w = rng.standard_normal((6, 4, 4, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    kw = dict(stride=2, padding=1)
    z = nc.conv_transpose_reference(x.astype(np.float64), w.astype(np.float64),
                                    b.astype(np.float64), **kw)
    r = rng.standard_normal(z.shape).astype(np.float32)
    y = nc.conv_transpose2d(x, w, b, activation=activation, residual=r, algorithm=algorithm,
                            **kw, **_slope(activation))
    want = activate(activation, z + r, SLOPE)
    plain = nc.conv_transpose2d(x, w, b, algorithm=algorithm, **kw)
    # the unfused composition in float32 is the yardstick: same rounding of
    # the convolution, then the activation's few roundings
    bound = 1.5 * np.abs(plain - z).max() + 4 * EPS[np.dtype(np.float32)] * (np.abs(want) + 1)
    assert np.all(np.abs(y - want) <= bound)


def test_bias_free_and_nan(rng):
    """No bias, and NaN in the residual: it propagates through every
    activation, as in PyTorch."""
    x, w, _ = _case(rng, np.float32)
    r = _residual(rng, x, w, np.float32, padding=1)
    r[0, 0, 0, 0] = np.nan
    for activation in FUSED_ACTIVATIONS:
        y = nc.conv2d(x, w, None, padding=1, activation=activation, residual=r,
                      algorithm="im2col")
        assert np.isnan(y[0, 0, 0, 0]), activation
        assert np.isfinite(np.delete(y.ravel(), 0)).all()


@pytest.mark.parametrize("activation, want", [
    ("relu", [np.nan, 0.0, 0.0, 0.0, 2.0, 0.0, np.inf]),
    ("leaky_relu", [np.nan, -0.2, 0.0, 0.0, 2.0, -np.inf, np.inf]),
])
def test_relu_keeps_nan_infinities_and_zeros(activation, want):
    """NaN, infinities and zeros through the relu forms that keep the
    store vectorised (``v + minus_zero`` in kernels/epilogue_block.py), to
    the bit.  (A -0.0 residual on a +0.0 convolution is +0.0 before the
    activation, as in PyTorch's composition.)"""
    values = np.float32([np.nan, -1.0, -0.0, 0.0, 2.0, -np.inf, np.inf])
    # a 1x1 convolution of zeros with weight 1: the residual brings the values
    x = np.zeros((1, 1, 1, values.size), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    for algorithm in ("direct", "im2col"):
        y = nc.conv2d(x, w, activation=activation, residual=values.reshape(x.shape),
                      algorithm=algorithm, **_slope(activation)).ravel()
        np.testing.assert_array_equal(y, np.float32(want))
        assert np.array_equal(np.signbit(y), np.signbit(np.float32(want))), algorithm


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
def test_matches_pytorch_composition(rng, algorithm, activation):
    """PyTorch eager: conv2d with its bias, + residual, then the activation."""
    x, w, b = _case(rng, np.float32)
    r = _residual(rng, x, w, np.float32, padding=1)
    z = torch.from_numpy(torch_conv(x, w, b, padding=1)) + torch.from_numpy(r)
    F = torch.nn.functional
    ops = {"relu": F.relu, "relu6": F.relu6, "gelu": F.gelu,
           "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu,
           "sigmoid": torch.sigmoid, "tanh": torch.tanh, "hardswish": F.hardswish,
           "leaky_relu": lambda t: F.leaky_relu(t, SLOPE)}
    want = ops[activation](z).numpy()
    y = nc.conv2d(x, w, b, padding=1, activation=activation, residual=r, algorithm=algorithm,
                  **_slope(activation))
    bound = 2 * (1.5 * tolerance(x, w, b, np.float32, algorithm, padding=1)
                 + 4 * EPS[np.dtype(np.float32)] * (np.abs(want) + np.abs(r)))
    assert np.all(np.abs(y - want) <= bound)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "fft", "winograd"])
def test_float16(rng, algorithm):
    """float16 computes in float32 (numba has no float16 arithmetic): the
    epilogue runs in float32 before the one rounding to float16, so the
    result is the float32 one within half a float16 eps of its value."""
    x, w, b = _case(rng, np.float16)
    r = _residual(rng, x, w, np.float16, padding=1)
    y = nc.conv2d(x, w, b, padding=1, activation="gelu", residual=r, algorithm=algorithm)
    assert y.dtype == np.float16
    want = _expected(x, w, b, "gelu", r, padding=1)
    bound = (1.5 * tolerance(x, w, b, np.float32, algorithm, padding=1)
             + (4 * EPS[np.dtype(np.float32)] + np.finfo(np.float16).eps / 2) * np.abs(want))
    assert np.all(np.abs(y.astype(np.float64) - want) <= bound)
