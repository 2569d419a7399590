"""The winograd algorithms: transform matrices, coverage, weight cache, errors."""

from __future__ import annotations

from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv as nc
from numbaconv.algorithms import get_algorithm, winograd
from numbaconv.kernels import winograd_weights
from numbaconv.kernels.winograd_matrices import (LAVIN_POINTS_F4, winograd_fractions,
                                                winograd_matrices)

from .cases import CASES as NAMED
from .conftest import (CONV, assert_matches_reference, run_canonical, spec_of, tolerance, torch,
                       torch_conv)

ALGORITHMS = ["winograd", "winograd_f2"]

# Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks"
LAVIN_F4 = dict(
    BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    G=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
       [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
LAVIN_F2 = dict(BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                G=[[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
                AT=[[1, 1, 1, 0], [0, 1, -1, -1]])


def test_f4_matrices_from_lavins_points_are_lavins():
    AT, G, BT = winograd_fractions(4, points=LAVIN_POINTS_F4)
    F = Fraction
    assert AT == tuple(tuple(map(F, row)) for row in LAVIN_F4["AT"])
    assert BT == tuple(tuple(map(F, row)) for row in LAVIN_F4["BT"])
    assert G == ((1 / F(4), 0, 0), (-1 / F(6), -1 / F(6), -1 / F(6)),
                 (-1 / F(6), 1 / F(6), -1 / F(6)), (1 / F(24), 1 / F(12), 1 / F(6)),
                 (1 / F(24), -1 / F(12), 1 / F(6)), (0, 0, 1))
    np.testing.assert_allclose(winograd_matrices(4, points=LAVIN_POINTS_F4)[1], LAVIN_F4["G"],
                               rtol=0, atol=0)


@pytest.mark.parametrize("m, points", [(2, None), (4, None), (4, LAVIN_POINTS_F4)])
def test_matrices_are_exact_rationals(m, points):
    """Note [exact transforms]: the Fraction matrices satisfy the Winograd
    identity ``sum_j AT[i, j] G[j, k] BT[j, t] = [t == i + k]`` exactly;
    the float64 arrays hold each entry rounded once (float(Fraction)); AT's
    and BT's entries are exact in float32, so the float32 matrices the
    kernels use are exact too.  No floating-point linear algebra is
    involved, so this holds on every machine (a float64 lstsq solve once
    gave -4.249999999999994 for -17/4 on AVX2 and -4.250000000000004 on
    AVX-512)."""
    AT, G, BT = winograd_fractions(m, points=points)
    alpha = m + 2
    assert all(isinstance(v, Fraction) for M in (AT, G, BT) for row in M for v in row)
    for i in range(m):
        for k in range(3):
            for t in range(alpha):
                assert sum(AT[i][j] * G[j][k] * BT[j][t] for j in range(alpha)) == (t == i + k)
    for exact, floats in zip((AT, G, BT), winograd_matrices(m, points=points)):
        assert floats.dtype == np.float64
        assert floats.tolist() == [[float(v) for v in row] for row in exact]
    for exact in (AT, BT):
        assert all(Fraction(float(np.float32(v))) == v for row in exact for v in row)
    if m == 4 and points is None:                       # 0, +-1/2, +-2 (docs/results-winograd.md)
        assert BT[0] == (1, 0, Fraction(-17, 4), 0, 1, 0)


def test_f2_matrices_equal_lavins_up_to_row_signs():
    AT, G, BT = winograd_matrices(2)
    # a row of G and the same row of BT may both change sign (their product
    # is what counts); the last row of AT differs in the infinity column's sign
    # convention, compensated by BT's last row
    for ours, theirs in ((G, LAVIN_F2["G"]), (BT, LAVIN_F2["BT"])):
        for row, ref in zip(ours, np.array(theirs, float)):
            assert np.allclose(row, ref) or np.allclose(row, -ref)


@pytest.mark.parametrize("m", [2, 4])
def test_matrices_compute_the_exact_correlation(m):
    AT, G, BT = winograd_matrices(m)
    rng = np.random.default_rng(m)
    for _ in range(20):
        g, d = rng.standard_normal(3), rng.standard_normal(m + 2)
        expected = [g @ d[i:i + 3] for i in range(m)]
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), expected, rtol=0, atol=1e-13)


CASES = [
    ((2, 6, 9, 11), (4, 3, 3, 3), dict(padding=1, groups=2)),          # partial tiles
    ((1, 3, 10, 12), (5, 3, 3, 3), dict(padding=(1, 2), padding_mode="reflect")),
    ((1, 4, 7, 5), (4, 4, 3, 3), dict(padding="same", padding_mode="replicate")),
    ((2, 4, 13, 6), (8, 1, 3, 3), dict(padding=1, groups=4, padding_mode="circular")),
    ((1, 3, 5, 5), (2, 3, 3, 3), {}),                                    # one partial tile
    ((1, 3, 3, 3), (2, 3, 3, 3), {}),                                    # 1x1 output
    ((2, 4, 17), (6, 4, 3), dict(padding=2)),
    ((3, 2, 8), (4, 1, 3), dict(padding="same", groups=2, padding_mode="reflect")),
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), dict(padding=1, padding_mode="circular")),
    ((2, 3, 4, 4, 9), (3, 3, 3, 3, 3), dict(padding=(0, 1, 1))),
    # dilation phases (Note [dilation phases]): phases of unequal length,
    # per-axis dilations, a padding mode, groups, 1-D and 3-D
    ((2, 4, 13, 11), (5, 4, 3, 3), dict(padding=2, dilation=2)),
    ((1, 6, 17, 9), (6, 2, 3, 3), dict(padding=(1, 3), dilation=(3, 2), groups=3)),
    ((2, 3, 12, 10), (4, 3, 3, 3), dict(padding=2, dilation=(2, 1), padding_mode="reflect")),
    ((2, 4, 19), (3, 4, 3), dict(dilation=4, padding=3, padding_mode="circular")),
    ((1, 2, 7, 8, 9), (3, 2, 3, 3, 3), dict(dilation=(1, 2, 3), padding=2)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("shape, wshape, kw", CASES)
def test_cases_match_reference_and_pytorch(rng, shape, wshape, kw, algorithm, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    copies = [a.copy() for a in (x, w, b)]
    y = CONV[len(wshape) - 2](x, w, b, algorithm=algorithm, **kw)
    assert_matches_reference(y, x, w, b, algorithm=algorithm, **kw)
    for before, after in zip(copies, (x, w, b)):
        assert np.array_equal(before, after)
    if torch is not None:
        bound = tolerance(x, w, b, dtype, algorithm, factor=32, **kw)
        assert np.all(np.abs(y.astype(np.float64) - torch_conv(x, w, b, **kw)) <= bound)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("kw, reason", [
    (dict(stride=2), r"needs stride 1, got stride=\(2, 2\)"),
])
def test_unsupported_parameters_say_why(algorithm, kw, reason):
    x = np.ones((1, 2, 8, 8), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    with pytest.raises(nc.UnsupportedAlgorithmError, match=reason):
        nc.conv2d(x, w, algorithm=algorithm, **kw)


def test_other_kernel_sizes_are_unsupported():
    with pytest.raises(nc.UnsupportedAlgorithmError, match=r"kernel_size=\(5, 3\)"):
        nc.conv2d(np.ones((1, 1, 8, 8)), np.ones((1, 1, 5, 3)), algorithm="winograd")


def test_weight_transform_is_cached_and_never_stale(rng, monkeypatch):
    x = rng.standard_normal((1, 4, 9, 9))
    w = rng.standard_normal((3, 4, 3, 3))
    winograd_weights.clear_weight_cache()
    calls = []
    original = np.einsum
    monkeypatch.setattr(winograd.np, "einsum",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    first = nc.conv2d(x, w, padding=1, algorithm="winograd")
    again = nc.conv2d(x, w, padding=1, algorithm="winograd")
    assert len(calls) == 1 and np.array_equal(first, again)
    w[1, 2, 0, 0] += 1.0                                   # changed in place
    changed = nc.conv2d(x, w, padding=1, algorithm="winograd")
    assert len(calls) == 2
    assert_matches_reference(changed, x, w, None, algorithm="winograd", padding=1)


@pytest.mark.parametrize("tiles_per_chunk", [1, 3, 7])
def test_chunked_tiles_give_the_same_result(rng, tiles_per_chunk):
    x = rng.standard_normal((2, 3, 11, 10)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    chunked = run_canonical(lambda *a: winograd.winograd_forward(
        *a, plan=winograd.WinogradPlan(tiles_per_chunk)), x, w, None, padding=1)
    # against the reference, not bit for bit against one chunk: the chunk is
    # the GEMMs' M, and a GEMM's bits depend on its shape (Note [GEMM
    # shapes]); the chunk never depends on the call's threads (test_bits.py)
    assert_matches_reference(chunked, x, w, None, algorithm="winograd", padding=1)


#: staged calls (Note [staged winograd]): 2-D with ragged tiles, 1-D with
#: dilation phases, 3-D, and groups
STAGED_PROBLEMS = [
    pytest.param((2, 3, 11, 10), (4, 3, 3, 3), dict(padding=1), id="2d"),
    pytest.param((1, 6, 13), (5, 6, 3), dict(padding=2, dilation=2), id="1d-dilated"),
    pytest.param((1, 4, 6, 7, 5), (3, 4, 3, 3, 3), dict(padding=1), id="3d"),
    pytest.param((2, 8, 9, 9), (6, 4, 3, 3), dict(padding=(1, 2), groups=2), id="groups"),
]


@pytest.mark.parametrize("m", [4, 2])
@pytest.mark.parametrize("shape, wshape, kw", STAGED_PROBLEMS)
def test_staged_calls_match_the_reference(rng, m, shape, wshape, kw):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[0]).astype(np.float32)
    staged = run_canonical(lambda *a: winograd.winograd_forward(
        *a, m=m, plan=winograd.WinogradPlan(1, staged=True)), x, w, b, **kw)
    assert_matches_reference(staged, x, w, b, algorithm="winograd" if m == 4 else "winograd_f2",
                             **kw)


def test_late_layers_at_small_batches_run_staged():
    """Few tiles and a large transformed weight: staged; many tiles: the
    pipeline's chunks; and never over the workspace limit."""
    from numbaconv.context import ExecutionContext
    ctx = ExecutionContext(threads=2, pool_threads=2)
    late = spec_of((1, 256, 14, 14), (256, 256, 3, 3), padding=1)
    early = spec_of((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    for m, name in ((4, "winograd"), (2, "winograd_f2")):
        plan = winograd.plan_winograd(late, m, 4, ctx)[0]
        assert plan.staged and plan.chunk == winograd.winograd_tiles(late, m)
        assert "staged" in get_algorithm(name).plan(late, ctx).path
        assert not winograd.plan_winograd(early, m, 4, ctx)[0].staged
    tight = ExecutionContext(threads=2, pool_threads=2, workspace_limit=2**20)
    assert not winograd.plan_winograd(late, 4, 4, tight)[0].staged


def test_a_staged_call_fuses_the_epilogue(rng):
    # 49 tiles: staged for a pool of any size
    x = rng.standard_normal((1, 96, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((96, 96, 3, 3)) / 20).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    r = rng.standard_normal((1, 96, 28, 28)).astype(np.float32)
    spec = spec_of(x.shape, w.shape, padding=1)
    assert get_algorithm("winograd").plan(spec).detail.staged
    y = nc.conv2d(x, w, b, padding=1, algorithm="winograd", activation="relu", residual=r)
    ref = nc.conv_reference(x, w, b, padding=1) + r
    bound = tolerance(x, w, b, np.float32, "winograd", padding=1) + np.abs(r) * 2**-23
    assert np.all(np.abs(y - np.maximum(ref, 0)) <= bound)


def test_a_non_finite_weight_goes_to_direct_every_call(rng):
    """The weight's finiteness is cached with its transform: a weight made
    non-finite in place is seen on the next call."""
    x = rng.standard_normal((1, 2, 12, 12)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    nc.conv2d(x, w, padding=1, algorithm="winograd")
    w[1, 0, 2, 2] = np.inf
    for _ in range(2):
        y = nc.conv2d(x, w, padding=1, algorithm="winograd")
        expected = nc.conv2d(x, w, padding=1, algorithm="direct")
        np.testing.assert_array_equal(np.isfinite(y), np.isfinite(expected))
        assert np.isfinite(y[0, 0]).all() and not np.isfinite(y[0, 1]).all()


def test_non_finite_values_stay_local(rng):
    x = rng.standard_normal((1, 2, 12, 12)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x[0, 0, 5, 6] = np.nan
    y = nc.conv2d(x, w, padding=1, algorithm="winograd")
    expected = nc.conv2d(x, w, padding=1, algorithm="direct")
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_thread_count_does_not_change_the_result(rng, algorithm):
    x = rng.standard_normal((2, 8, 13, 15)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = nc.conv2d(x, w, padding=1, algorithm=algorithm)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = nc.conv2d(x, w, padding=1, algorithm=algorithm)
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(one, two)


@st.composite
def winograd_problems(draw):
    """Random problems in the winograd algorithms' domain (kernel 3, stride 1)."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin_g, cout_g = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding_mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(ndim))
    sizes = tuple(draw(st.integers(max(3 - 2 * p, p + 1, 1), 12)) for p in pads)
    shape = (draw(st.integers(1, 3)), cin_g * groups) + sizes
    wshape = (cout_g * groups, cin_g) + (3,) * ndim
    kw = dict(padding=pads, groups=groups, padding_mode=padding_mode)
    return (shape, wshape, kw, draw(st.sampled_from(ALGORITHMS)),
            draw(st.sampled_from([np.float32, np.float64])), draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(winograd_problems())
def test_hypothesis_problems_match_reference(problem):
    shape, wshape, kw, algorithm, dtype, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    y = CONV[len(wshape) - 2](x, w, b, algorithm=algorithm, **kw)
    assert_matches_reference(y, x, w, b, algorithm=algorithm, **kw)


def _serves(shape, wshape, kw):
    spec = spec_of(shape, wshape, **kw)
    return winograd.WINOGRAD.unsupported_reason(spec) is None


NAMED_IN_DOMAIN = [pytest.param(shape, wshape, kw, id=name) for name, shape, wshape, kw in NAMED
                   if _serves(shape, wshape, kw)]


def test_some_named_cases_are_in_the_domain():
    assert len(NAMED_IN_DOMAIN) >= 5


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("shape, wshape, kw", NAMED_IN_DOMAIN)
def test_named_cases_in_the_domain(rng, shape, wshape, kw, algorithm):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[0]).astype(np.float32)
    y = CONV[len(wshape) - 2](x, w, b, algorithm=algorithm, **kw)
    assert_matches_reference(y, x, w, b, algorithm=algorithm, **kw)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_gpu_winograd_refuses_dilation_the_cpu_serves(algorithm):
    from numbaconv.algorithms.registry import get_algorithm
    spec = spec_of((1, 2, 9, 9), (2, 2, 3, 3), padding=2, dilation=2)
    assert get_algorithm(algorithm, "cpu").unsupported_reason(spec) is None
    assert "dilation 1 on the GPU" in get_algorithm(algorithm, "cuda").unsupported_reason(spec)


def test_generated_transforms_are_up_to_date():
    """numbaconv/kernels/winograd_transforms.py is what its generator writes
    from the current matrices (Note [constant transforms])."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "gen_winograd_transforms.py"
    spec = importlib.util.spec_from_file_location("gen_winograd_transforms", path)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.TARGET.read_text() == generator.module_source()


def test_generated_transforms_do_not_depend_on_the_machines_linear_algebra(monkeypatch):
    """The generator's output comes from exact arithmetic alone (Note [exact
    transforms]): with NumPy's linear algebra unusable and the matrices'
    caches empty it writes the same file, byte for byte."""
    import importlib.util
    import pathlib
    from numbaconv.kernels import winograd_matrices as wm

    def refuse(*args, **kwargs):
        raise AssertionError("the Winograd matrices must not use floating-point linear algebra")

    for name in ("lstsq", "solve", "inv", "pinv", "qr", "svd", "matrix_rank"):
        monkeypatch.setattr(np.linalg, name, refuse)
    path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "gen_winograd_transforms.py"
    spec = importlib.util.spec_from_file_location("gen_winograd_transforms", path)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    wm.winograd_fractions.cache_clear()
    wm.winograd_matrices.cache_clear()
    try:
        assert generator.TARGET.read_bytes() == generator.module_source().encode()
        for m in (2, 4):
            winograd_matrices(m)
    finally:
        wm.winograd_fractions.cache_clear()
        wm.winograd_matrices.cache_clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [2, 4])
def test_constant_transforms_are_the_runtime_matrices_to_the_bit(m, dtype):
    """Channel c of the source is the unit vector e_c, so each output is one
    coefficient times 1 plus exact zeros: the generated constants, read back
    bit for bit, are the runtime matrices (cast to ``dtype``, as the
    algorithm and the GPU kernels use them)."""
    from numbaconv.kernels import winograd_transforms as transforms
    AT, _, BT = winograd_matrices(m)
    for T, name in ((BT, f"input_f{m}"), (AT, f"output_f{m}")):
        rows, alpha = T.shape
        src = np.eye(alpha, dtype=dtype).ravel()         # x_j of channel c = [j == c]
        dst = np.full(rows * alpha, np.nan, dtype)
        getattr(transforms, name)(src, 0, alpha, dst, 0, alpha, alpha)
        got = dst.reshape(rows, alpha) + 0               # + 0: a zero's sign is no coefficient
        expected = T.astype(dtype) + 0
        assert got.dtype == expected.dtype == dtype
        assert got.tobytes() == expected.tobytes(), (name, got, expected)


@pytest.mark.parametrize("m", [2, 4])
def test_constant_transforms_apply_the_matrices(m):
    from numbaconv.kernels import winograd_transforms as transforms
    AT, _, BT = winograd_matrices(m)
    rng = np.random.default_rng(m)
    for T, name in ((BT, f"input_f{m}"), (AT, f"output_f{m}")):
        rows, alpha = T.shape
        C, stride, dstride = 5, 7, 9
        src = rng.standard_normal(alpha * stride + 3)
        dst = np.full(rows * dstride + 2, np.nan)
        getattr(transforms, name)(src, 2, stride, dst, 1, dstride, C)
        x = np.stack([src[2 + j * stride:2 + j * stride + C] for j in range(alpha)])
        got = np.stack([dst[1 + r * dstride:1 + r * dstride + C] for r in range(rows)])
        np.testing.assert_allclose(got, T @ x, rtol=1e-13, atol=1e-13)


def test_weight_fingerprint_sees_every_change(rng):
    """Note [weight fingerprint]: one ulp anywhere, two swapped values, a
    different length or tail byte all change it; the thread count does not."""
    from numbaconv.kernels.fingerprint import fingerprint
    w = rng.standard_normal(4099).astype(np.float32)
    base = fingerprint(w)
    for i in (0, 1, 2048, 4098):
        changed = w.copy()
        changed[i] = np.nextafter(changed[i], np.inf)
        assert fingerprint(changed) != base
    swapped = w.copy()
    swapped[[10, 11]] = swapped[[11, 10]]
    assert fingerprint(swapped) != base
    assert fingerprint(w[:-1]) != base
    raw = w.view(np.uint8)
    assert fingerprint(raw[:-1]) != fingerprint(np.concatenate([raw[:-2], raw[-1:]]))
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert fingerprint(w) == base
    finally:
        numba.set_num_threads(previous)
