"""The native channels-last kernels of im2col and direct (SPEC 1b), at the
algorithm level: specs with ``memory_format="channels_last"``, ``(N, D, H, W,
C)`` input and output arrays, against the float64 reference and the
canonical result of the same algorithm.

Tolerances: the elementwise bound of tests/conftest.py (16 eps * S, S the
sum over absolute values) against the reference; a channels-last result and
a canonical one of the same algorithm sum in different orders, each within
that bound of the exact value, so they are compared within twice it.
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest

from numbaconv import rewrites
from numbaconv.algorithms.direct import DIRECT
from numbaconv.algorithms.im2col import IM2COL, plan_tiles
from numbaconv.context import current_context
from numbaconv.epilogue import Epilogue, activate
from numbaconv.spec import make_conv_spec, problem_spec

from .conftest import RTOL_FACTOR, EPS, assert_matches_reference, error_scale

ALGORITHMS = {"im2col": IM2COL, "direct": DIRECT}

CASES = [
    ((2, 8, 9, 11), (12, 8, 3, 3), dict(padding=1)),
    ((2, 8, 9, 11), (12, 8, 1, 1), {}),                                  # pointwise
    ((2, 8, 9, 11), (12, 2, 1, 1), dict(groups=4)),                      # grouped pointwise
    ((2, 6, 9, 11), (12, 2, 3, 2), dict(groups=3, stride=2, padding=(1, 2), dilation=(2, 1))),
    ((2, 16, 9, 11), (16, 1, 3, 3), dict(groups=16, padding=1)),         # depthwise
    ((2, 16, 9, 11), (32, 1, 3, 3), dict(groups=16, padding=1, stride=2)),  # multiplier 2
    ((1, 3, 4, 5), (3, 1, 3, 3), dict(groups=3, padding=2)),             # padding > kernel/2
    ((2, 8, 9, 11), (12, 8, 3, 3), dict(padding=1, padding_mode="reflect")),
    ((2, 8, 9, 11), (12, 8, 3, 3), dict(padding=2, padding_mode="circular", dilation=2)),
    ((2, 4, 7, 6), (5, 4, 3, 3), dict(padding=1, padding_mode="replicate", stride=(1, 2))),
    ((2, 4, 5, 6, 7), (6, 4, 3, 3, 2), dict(padding=1)),                 # 3-D
    ((3, 5, 17), (7, 5, 4), dict(padding=2, stride=3)),                  # 1-D
    ((1, 3, 10, 9), (9, 3, 4, 3), dict(padding="same")),                 # asymmetric padding
    ((1, 2, 3, 75), (4, 2, 1, 3), dict(padding=(0, 1))),                 # a row over 64 pixels
]


def _spec(x, w, b, **kw):
    ndim = w.ndim - 2
    spec = make_conv_spec(f"conv{ndim}d", ndim, x, w, b, **kw)
    return dataclasses.replace(spec, memory_format="channels_last")


def _nhwc(a, spec_shape):
    """``a`` (N, C, spatial...) as a C-contiguous (N, D, H, W, C) array."""
    return np.ascontiguousarray(a.reshape(spec_shape).transpose(0, 2, 3, 4, 1))


def _canonical_weight(w):
    ndim = w.ndim - 2
    return np.ascontiguousarray(w.reshape(w.shape[:2] + (1,) * (3 - ndim) + w.shape[2:]))


def run_channels_last(algorithm, x, w, b=None, detail=None, epilogue=None, via_run=False,
                      **kw):
    """``algorithm`` on the channels-last form of the problem; the result
    returned in the user's (N, C, spatial...) shape."""
    spec = _spec(x, w, b, **kw)
    x5 = _nhwc(x, spec.input_shape[:2] + spec.input_size3)
    out = np.full((spec.batch,) + spec.output_size3 + (spec.out_channels,), np.nan, x.dtype)
    ep = Epilogue.of(b, spec.compute_dtype) if epilogue is None else epilogue(spec)
    if via_run:
        algorithm.run(spec, x5, _canonical_weight(w), ep, out)
    else:
        algorithm.forward(spec, x5, _canonical_weight(w), ep, out, current_context(), detail)
    return out.transpose(0, 4, 1, 2, 3).reshape(spec.output_shape)


def _data(rng, xs, ws, dtype=np.float32):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("xs, ws, kw", CASES)
def test_matches_reference(rng, name, xs, ws, kw):
    x, w, b = _data(rng, xs, ws)
    y = run_channels_last(ALGORITHMS[name], x, w, b, **kw)
    assert_matches_reference(y, x, w, b, algorithm=name, **kw)
    assert_matches_reference(run_channels_last(ALGORITHMS[name], x, w, None, **kw), x, w, None,
                             algorithm=name, **kw)


@pytest.mark.parametrize("xs, ws, kw", [c for c in CASES if c[1][1] == 1])
def test_direct_both_loop_orders_on_thin_layers(rng, xs, ws, kw):
    """Depthwise and one-channel-per-group layers through both channels-last
    loop orders (the patch rows serve them too); float64."""
    x, w, b = _data(rng, xs, ws, np.float64)
    for order in ("channels_last", "thin_channels_last"):
        y = run_channels_last(DIRECT, x, w, b, detail=order, **kw)
        assert_matches_reference(y, x, w, b, algorithm="direct", **kw)


def test_direct_rejects_canonical_loop_orders(rng):
    x, w, b = _data(rng, (1, 4, 6, 6), (4, 4, 3, 3))
    for order in ("planes", "phase_planes"):
        with pytest.raises(ValueError, match="channels_last spec"):
            run_channels_last(DIRECT, x, w, b, detail=order)
    with pytest.raises(ValueError, match="one input channel per group"):
        run_channels_last(DIRECT, x, w, b, detail="thin_channels_last")


@pytest.mark.parametrize("xs, ws, kw", [CASES[0], CASES[3]])
def test_im2col_k_chunks_and_channel_blocks(rng, xs, ws, kw):
    """Tile plans with K cut into chunks (column ranges that start inside a
    tap), one-pixel tiles and channel blocks: float64."""
    x, w, b = _data(rng, xs, ws, np.float64)
    spec = _spec(x, w, b, **kw)
    K = spec.in_channels_per_group * int(np.prod(spec.kernel_size3))
    for tile, rows, blocks in ((1, K, 1), (5, 3, 1), (7, K // 2, 2), (16, 1, 3)):
        if K % rows:
            continue
        plan = dataclasses.replace(plan_tiles(spec, 8, 2), tile=tile, rows=rows,
                                   chunks_k=K // rows, row_blocks=blocks)
        y = run_channels_last(IM2COL, x, w, b, detail=plan, **kw)
        assert_matches_reference(y, x, w, b, algorithm="im2col", **kw)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("xs, ws, kw", CASES[:6])
def test_same_as_canonical(rng, name, xs, ws, kw):
    """The channels-last result equals the canonical one of the same
    algorithm within twice the bound (module docstring)."""
    x, w, b = _data(rng, xs, ws)
    y = run_channels_last(ALGORITHMS[name], x, w, b, **kw)
    from numbaconv import conv1d, conv2d, conv3d
    conv = {1: conv1d, 2: conv2d, 3: conv3d}[w.ndim - 2]
    canonical = conv(x, w, b, algorithm=name, **kw)
    bound = 2 * RTOL_FACTOR * EPS[np.dtype(np.float32)] * error_scale(x, w, b, **kw)
    assert np.all(np.abs(y.astype(np.float64) - canonical) <= bound)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("activation", ["relu", "gelu", "leaky_relu", "hardswish"])
@pytest.mark.parametrize("xs, ws, kw", [CASES[0], CASES[2], CASES[5], CASES[10]])
def test_fused_epilogue(rng, name, activation, xs, ws, kw):
    """The kernels apply activation(conv + bias + residual) to their blocks
    (forward called directly, so the registry's separate pass is not in
    the way); the residual is laid out like the output, channels last."""
    x, w, b = _data(rng, xs, ws, np.float64)
    ref = assert_matches_reference(run_channels_last(ALGORITHMS[name], x, w, b, **kw), x, w, b,
                                   algorithm=name, **kw)
    r = rng.standard_normal(ref.shape)

    def epilogue(spec):
        residual = _nhwc(r, spec.output_shape[:2] + spec.output_size3)
        return Epilogue.of(b, spec.compute_dtype, activation, 0.2 if activation == "leaky_relu"
                           else 0.01, residual)

    y = run_channels_last(ALGORITHMS[name], x, w, b, epilogue=epilogue, **kw)
    expected = activate(activation, ref + r, 0.2 if activation == "leaky_relu" else 0.01)
    # activations are 1-Lipschitz up to 1.1 (gelu, hardswish): the bound on
    # the sum, plus rounding of the activation in float64
    bound = 1.2 * RTOL_FACTOR * EPS[np.dtype(np.float64)] * (
        error_scale(x, w, b, **kw) + np.abs(r)) + 1e-15
    assert np.all(np.abs(y - expected) <= bound)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("xs, ws, kw", [CASES[0], CASES[1], CASES[4], CASES[13]])
def test_bit_identical_across_thread_counts(rng, name, xs, ws, kw):
    x, w, b = _data(rng, xs, ws)
    previous = numba.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            results.append(run_channels_last(ALGORITHMS[name], x, w, b, **kw))
    finally:
        numba.set_num_threads(previous)
    assert results[0].tobytes() == results[1].tobytes()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_empty_and_degenerate(rng, name):
    x, w, b = _data(rng, (0, 4, 5, 5), (6, 4, 3, 3))
    assert run_channels_last(ALGORITHMS[name], x, w, b, via_run=True, padding=1).shape == (
        0, 6, 5, 5)


TRANSPOSED = [
    ((2, 6, 5, 4), (6, 4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((2, 4, 5, 4), (4, 3, 3, 2), dict(stride=(3, 2), groups=2, dilation=(1, 2))),
    ((1, 4, 5), (4, 2, 1), dict(stride=3)),   # phases without taps: the bias alone
]


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("xs, ws, kw", TRANSPOSED)
def test_transposed_through_run(rng, name, xs, ws, kw):
    """Input-dilated (transposed) specs through ``run``: direct by the
    format-aware phases, im2col by col2im on canonical copies; with a
    residual and an activation (applied by ``run``)."""
    x, w, _ = _data(rng, xs, ws, np.float64)
    groups = kw.get("groups", 1)
    b = rng.standard_normal(ws[1] * groups)
    spec = problem_spec(x, w, transposed=True, **kw)
    spec = dataclasses.replace(spec, memory_format="channels_last", has_bias=True)
    wf = _canonical_weight(rewrites.transposed_weight(w, groups))
    from numbaconv.reference import conv_transpose_reference
    ref = conv_transpose_reference(x, w, b, **kw)
    r = rng.standard_normal(ref.shape)
    shape3 = spec.output_shape[:2] + spec.output_size3
    ep = Epilogue.of(b, spec.compute_dtype, "relu", residual=_nhwc(r, shape3))
    out = np.full((spec.batch,) + spec.output_size3 + (spec.out_channels,), np.nan)
    ALGORITHMS[name].run(spec, _nhwc(x, spec.input_shape[:2] + spec.input_size3), wf, ep, out)
    y = out.transpose(0, 4, 1, 2, 3).reshape(ref.shape)
    scale = conv_transpose_reference(np.abs(x), np.abs(w), np.abs(b), **kw) + np.abs(r)
    assert np.all(np.abs(y - np.maximum(ref + r, 0)) <= RTOL_FACTOR * EPS[np.dtype(np.float64)]
                  * scale)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("xs, ws, kw", [CASES[0], CASES[3], CASES[10]])
def test_grad_weight_through_run(rng, name, xs, ws, kw):
    """Weight-gradient specs with channels-last input and output gradient."""
    x, w, _ = _data(rng, xs, ws, np.float64)
    from numbaconv.reference import conv_grad_weight_reference
    spec = problem_spec(x, w, gradient="weight", **kw)
    spec = dataclasses.replace(spec, memory_format="channels_last")
    go = rng.standard_normal(spec.output_shape)
    ref = conv_grad_weight_reference(x, w.shape, go, **kw)
    out = np.full(spec.weight_shape3, np.nan)
    ALGORITHMS[name].run(spec, _nhwc(x, spec.input_shape[:2] + spec.input_size3),
                         _nhwc(go, spec.output_shape[:2] + spec.output_size3), None, out)
    scale = conv_grad_weight_reference(np.abs(x), w.shape, np.abs(go), **kw)
    assert np.all(np.abs(out.reshape(ref.shape) - ref)
                  <= RTOL_FACTOR * EPS[np.dtype(np.float64)] * scale)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_plans(name):
    """Channels-last plans name their native path, cost no packed input and
    cost less than the canonical plan's pack would suggest on a 3x3 layer."""
    algorithm = ALGORITHMS[name]
    ctx = current_context()
    for xs, ws, kw in [((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
                       ((8, 256, 14, 14), (1024, 256, 1, 1), {}),
                       ((8, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144))]:
        spec = problem_spec(xs, ws, **kw)
        cl = dataclasses.replace(spec, memory_format="channels_last")
        plan = algorithm.plan(cl, ctx)
        if not algorithm.serves_natively(cl):
            # im2col packs grouped layers (Im2colAlgorithm.serves_natively)
            assert name == "im2col" and kw.get("groups", 1) > 1
            assert "packed" in plan.path, plan.path
            continue
        assert "channels-last" in plan.path or "native" in plan.path, plan.path
        assert 0 < plan.seconds < 10 * algorithm.plan(spec, ctx).seconds
        assert plan.copies <= spec.weight_shape[0] * np.prod(spec.weight_shape[1:]) * 4


NINE_TAP_CASES = [  # Note [nine taps]: 3x3 depthwise, border pixels through the patch
    ((2, 16, 9, 11), dict(padding=1)),
    ((1, 8, 5, 4), dict(padding=2, stride=2)),
    ((1, 24, 3, 3), dict(padding=3, dilation=2)),       # every pixel a border pixel
    ((2, 16, 10, 7), dict(padding=1, stride=(2, 1), dilation=(1, 2))),
    ((1, 8, 6, 7), dict(padding=1, padding_mode="reflect")),
    ((1, 8, 6, 7), dict(padding=2, padding_mode="circular", stride=3)),
    ((1, 8, 6, 7), dict(padding=1, padding_mode="replicate")),
    ((1, 8, 9, 11), {}),                                 # no border
]


@pytest.mark.parametrize("xs, kw", NINE_TAP_CASES)
@pytest.mark.parametrize("fused", [False, True])
def test_nine_taps_of_3x3_depthwise_layers(rng, xs, kw, fused):
    """The thin kernel's nine-tap path on every kind of border, with and
    without bias and a fused relu, against the reference; the same bits for
    one and two threads (a job is one output row)."""
    import numbaconv as nc
    C = xs[1]
    x = rng.standard_normal(xs[:1] + xs[2:] + xs[1:2]).astype(np.float32).transpose(0, 3, 1, 2)
    w = rng.standard_normal((C, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32) if fused else None
    activation = "relu" if fused else None
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(nc.conv2d(x, w, b, groups=C, activation=activation,
                                     algorithm="direct", **kw))
    finally:
        numba.set_num_threads(previous)
    y = results[0]
    assert y.strides[1] == y.itemsize                      # channels-last out
    np.testing.assert_array_equal(y, results[1])
    if fused:
        ref = np.maximum(nc.conv_reference(x.astype(np.float64), w.astype(np.float64),
                                           b.astype(np.float64), groups=C, **kw), 0)
        bound = 1.5 * error_scale(x, w, b, groups=C, **kw) * RTOL_FACTOR * EPS[np.dtype("float32")]
        assert np.all(np.abs(y - ref) <= bound)
    else:
        assert_matches_reference(y, x, w, None, groups=C, **kw)
