"""The direct algorithm's thin gradients: depthwise and few-channel groups.

Note [thin weight gradient] and Note [thin transposed phases] in
numbaconv/kernels/direct_thin_grad.py: the weight gradient and the strided
input gradient (a transposed convolution) of zero-padded 1-D/2-D layers
with at most ``direct.THIN_GRAD_CHANNELS`` input channels per group.
What is checked:

* both gradients against the float64 references of :mod:`numbaconv.reference`
  over strides 1-3, padding 0-2, dilation 1-2, kernels 3/5/7 (and 1, 2, 4),
  odd and even sizes, batch 1 and 3, depth multipliers 1 and 2, groups of
  2 and 4 channels, float32 and float64, and that they took the thin path;
* the same against ``torch.nn.grad`` where PyTorch is installed;
* channels-last calls, and each of direct's three plans for them (the
  depthwise kernels reading channels-last arrays in place, the canonical
  kernels on copies, the rewrite or phases), against the references;
* bit-identity for 1 and 2 threads, with several segments and bands, and
  of the channels-last kernels; the transposed kernel's bits do not depend
  on its bands either;
* NaN and infinity as PyTorch has them (the weight gradient's exact pass);
* the fused epilogue of ``conv_transpose``, ``out=``, unbatched and empty
  batches, the workspace limit, 1-D, bad arguments' errors, and what
  ``"auto"`` picks for MobileNet's and EfficientNet's depthwise layers.

Tolerances are test_backward.py's (tests/conftest.py): ``|y - ref| <= 16
eps * S`` elementwise, ``S`` the same gradient of ``|x|``, ``|w|``, ``|g|``
(the kernels' sums are reordered, never approximated: the largest measured
ratio here was about 1 eps), and 32 eps * S against PyTorch, whose own
float32 summation adds an error of the same size.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest

import numbaconv as nc
from numbaconv import get_workspace_limit, set_workspace_limit
from numbaconv.algorithms import direct, get_algorithm
from numbaconv.context import current_context
from numbaconv.spec import problem_spec

from .conftest import EPS, torch
from .test_backward import a64, check_grad_input, check_grad_weight, check_transposed

GRAD_INPUT = {1: nc.grad.conv1d_input, 2: nc.grad.conv2d_input}
GRAD_WEIGHT = {1: nc.grad.conv1d_weight, 2: nc.grad.conv2d_weight}


def _problems():
    """(shape, weight shape, kwargs): a covering selection of the grid in
    the module docstring (every value of every parameter, in varied
    combinations), plus the special sizes."""
    kernels, strides, paddings, dilations = (3, 5, 7), (1, 2, 3), (0, 1, 2), (1, 2)
    channels = [(1, 1), (1, 2), (2, 1), (4, 1), (4, 2)]   # (C_in/groups, multiplier)
    sizes = [(11, 12), (12, 13), (9, 9), (16, 10)]
    batches = (1, 3)
    problems = []
    for i, (k, s, p, d) in enumerate(itertools.product(kernels, strides, paddings, dilations)):
        cin_g, m = channels[i % len(channels)]
        H, W = sizes[i % len(sizes)]
        if (H + 2 * p - d * (k - 1)) < 1 or (W + 2 * p - d * (k - 1)) < 1:
            H, W = H + d * k, W + d * k
        groups = 3 if cin_g > 1 else 4
        n = batches[i % 2]
        problems.append(pytest.param((n, cin_g * groups, H, W),
                                     (groups * m * (1 if cin_g == 1 else cin_g), cin_g, k, k),
                                     dict(stride=s, padding=p, dilation=d, groups=groups),
                                     id=f"k{k}-s{s}-p{p}-d{d}-cin{cin_g}-m{m}-n{n}"))
    special = [
        ("1x1-s2", (2, 4, 9, 8), (4, 1, 1, 1), dict(stride=2, groups=4)),
        ("2x2-s3", (1, 4, 10, 11), (4, 1, 2, 2), dict(stride=3, groups=4)),
        ("4x4-s2-p1", (2, 6, 14, 13), (6, 1, 4, 4), dict(stride=2, padding=1, groups=6)),
        ("3x5-s2x1", (1, 4, 12, 9), (8, 1, 3, 5), dict(stride=(2, 1), padding=(1, 2),
                                                        groups=4)),
        ("5x3-s1x3-d2x1", (2, 4, 15, 14), (4, 1, 5, 3),
         dict(stride=(1, 3), padding=(2, 0), dilation=(2, 1), groups=4)),
        ("wide-padding", (1, 4, 6, 7), (4, 1, 3, 3), dict(stride=2, padding=2, groups=4)),
        ("one-row", (2, 4, 1, 17), (4, 1, 1, 5), dict(stride=2, padding=(0, 2), groups=4)),
        ("1d", (3, 6, 29), (6, 1, 5), dict(stride=2, padding=2, groups=6)),
        ("1d-m2-d2", (1, 4, 30), (8, 1, 3), dict(stride=3, padding=1, dilation=2, groups=4)),
    ]
    problems += [pytest.param(s, w, kw, id=name) for name, s, w, kw in special]
    return problems


PROBLEMS = _problems()


def _arrays(rng, shape, wshape, kw, dtype):
    ndim = len(wshape) - 2
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    conv = nc.conv1d if ndim == 1 else nc.conv2d
    g = rng.standard_normal(conv(x, w, **kw).shape).astype(dtype)
    return x, w, g


def _path(shape, wshape, kw, gradient):
    return get_algorithm("direct").plan(problem_spec(shape, wshape, gradient=gradient,
                                                     **kw)).path


def test_problems_cover_every_parameter_value():
    seen = {name: set() for name in ("k", "s", "p", "d", "cin", "m", "n")}
    for p in PROBLEMS:
        if p.id[0] != "k":
            continue
        for part in p.id.split("-"):
            name = part.rstrip("0123456789")
            seen[name].add(int(part[len(name):]))
    assert seen == {"k": {3, 5, 7}, "s": {1, 2, 3}, "p": {0, 1, 2}, "d": {1, 2},
                    "cin": {1, 2, 4}, "m": {1, 2}, "n": {1, 3}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, wshape, kw", PROBLEMS)
def test_gradients_match_the_reference(rng, shape, wshape, kw, dtype):
    ndim = len(wshape) - 2
    x, w, g = _arrays(rng, shape, wshape, kw, dtype)
    assert "thin weight gradient" in _path(shape, wshape, kw, "weight")
    gw = GRAD_WEIGHT[ndim](x, wshape, g, algorithm="direct", **kw)
    check_grad_weight(gw, x, w, g, kw, dtype)
    gi = GRAD_INPUT[ndim](shape, w, g, algorithm="direct", **kw)
    check_grad_input(gi, shape, w, g, kw, dtype)
    spec = problem_spec(shape, wshape, gradient="input", **kw)
    if spec.has_input_dilation and spec.in_channels_per_group <= direct.THIN_GRAD_CHANNELS:
        assert "thin transposed phases" in _path(shape, wshape, kw, "input")


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("shape, wshape, kw", PROBLEMS[::3])
def test_gradients_match_torch(rng, shape, wshape, kw):
    ndim = len(wshape) - 2
    x, w, g = _arrays(rng, shape, wshape, kw, np.float32)
    tgrad = {1: (torch.nn.grad.conv1d_input, torch.nn.grad.conv1d_weight),
             2: (torch.nn.grad.conv2d_input, torch.nn.grad.conv2d_weight)}[ndim]
    tx, tw, tg = (torch.from_numpy(a.astype(np.float64)) for a in (x, w, g))
    gi_t = tgrad[0](shape, tw, tg, **kw).numpy()
    gw_t = tgrad[1](tx, wshape, tg, **kw).numpy()
    gi = GRAD_INPUT[ndim](shape, w, g, algorithm="direct", **kw)
    gw = GRAD_WEIGHT[ndim](x, wshape, g, algorithm="direct", **kw)
    gi_scale = tgrad[0](shape, tw.abs(), tg.abs(), **kw).numpy()
    gw_scale = tgrad[1](tx.abs(), wshape, tg.abs(), **kw).numpy()
    eps = EPS[np.dtype(np.float32)]
    assert np.all(np.abs(gi - gi_t) <= 32 * eps * gi_scale)
    assert np.all(np.abs(gw - gw_t) <= 32 * eps * gw_scale)


def _channels_last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)).transpose(
        (0, a.ndim - 1) + tuple(range(1, a.ndim - 1)))


def _forced(gradient, kind, shape, wshape, kw, x, w, g):
    """The gradient of a channels-last call computed by one of direct's thin
    plans, ``kind`` ``"native"`` (Note [channels-last thin gradients]),
    ``"thin"`` (canonical copies) or ``"default"`` (the rewrite or the
    phases), through the algorithm's ``run`` as the public functions call it."""
    from numbaconv.epilogue import Epilogue
    algorithm = get_algorithm("direct")
    spec = problem_spec(shape, wshape, gradient=gradient, memory_format="channels_last", **kw)
    ctx = current_context()
    plans = {"thin": algorithm._thin_grad_weight_plan(spec, ctx) if gradient == "weight"
             else None}
    chosen = (algorithm.plan_grad_weight if gradient == "weight"
              else algorithm.plan_input_dilated)(spec, ctx)
    lead = (1,) * (3 - spec.ndim)
    if gradient == "weight":
        xs = np.moveaxis(x, 1, -1).reshape(spec.run_input_shape)
        gs = np.moveaxis(g, 1, -1).reshape(spec.run_output_shape)
        out = np.full(spec.weight_shape3, np.nan, spec.compute_dtype)
        detail = _detail(algorithm, spec, ctx, kind, chosen, plans)
        algorithm.run_grad_weight(spec, np.ascontiguousarray(xs), np.ascontiguousarray(gs), out,
                                  ctx, detail)
        return out.reshape(wshape)
    from numbaconv.rewrites import transposed_weight
    wt = transposed_weight(w, kw["groups"]).reshape(spec.weight_shape3)
    gs = np.ascontiguousarray(np.moveaxis(g, 1, -1).reshape(spec.run_input_shape))
    out = np.full(spec.run_output_shape, np.nan, spec.compute_dtype)
    detail = _detail(algorithm, spec, ctx, kind, chosen, plans)
    algorithm.run_input_dilated(spec, gs, wt, Epilogue.of(None, spec.compute_dtype), out, ctx,
                                detail)
    return np.moveaxis(out.reshape((shape[0],) + lead + tuple(shape[2:]) + (shape[1],))
                       .reshape((shape[0],) + tuple(shape[2:]) + (shape[1],)), -1, 1)


def _detail(algorithm, spec, ctx, kind, chosen, plans):
    if kind == "native":
        if spec.computation == "grad_weight":
            from numbaconv.kernels import direct_layouts
            return ("native", direct_layouts.channels_last_grad_weight_split(
                spec.batch, spec.in_channels, spec.output_size3[1]))
        return ("native", None)
    if kind == "thin":
        if spec.computation == "grad_weight":
            return plans["thin"].detail
        return ("thin", direct.thin_transposed_band_rows(spec, ctx))
    return ("default", None)


#: channels-last depthwise layers (multiplier 1) over the parameters
CHANNELS_LAST_PROBLEMS = [
    pytest.param((2, 40, 11, 12), (40, 1, 3, 3), dict(stride=2, padding=1, groups=40),
                 id="k3-s2-p1"),
    pytest.param((1, 16, 9, 9), (16, 1, 5, 5), dict(stride=2, padding=2, groups=16),
                 id="k5-s2-p2"),
    pytest.param((3, 72, 13, 10), (72, 1, 3, 3), dict(stride=3, padding=2, dilation=2,
                                                      groups=72), id="k3-s3-p2-d2"),
    pytest.param((1, 300, 12, 11), (300, 1, 7, 7), dict(padding=3, groups=300),
                 id="k7-s1-p3-two-blocks"),
    pytest.param((2, 24, 15, 14), (24, 1, 5, 5), dict(stride=(2, 1), padding=(0, 2),
                                                      groups=24), id="k5-s2x1-p0x2"),
    pytest.param((1, 33, 16, 1), (33, 1, 3, 1), dict(stride=2, padding=(1, 0), groups=33),
                 id="one-column"),
]


@pytest.mark.parametrize("kind", ["native", "thin", "default"])
@pytest.mark.parametrize("shape, wshape, kw", CHANNELS_LAST_PROBLEMS)
def test_channels_last_plans_match_the_reference(rng, shape, wshape, kw, kind):
    x, w, g = _arrays(rng, shape, wshape, kw, np.float32)
    check_grad_weight(_forced("weight", kind, shape, wshape, kw, x, w, g), x, w, g, kw,
                      np.float32)
    if problem_spec(shape, wshape, gradient="input", **kw).has_input_dilation:
        check_grad_input(_forced("input", kind, shape, wshape, kw, x, w, g), shape, w, g, kw,
                         np.float32)


@pytest.mark.parametrize("shape, wshape, kw", PROBLEMS[1::4])
def test_channels_last_calls_match_the_reference(rng, shape, wshape, kw):
    """Whichever plan a channels-last call takes (depthwise layers read in
    place, the other thin groups on canonical copies or by the rewrite)."""
    ndim = len(wshape) - 2
    x, w, g = _arrays(rng, shape, wshape, kw, np.float32)
    xc, gc = _channels_last(x), _channels_last(g)
    assert not xc.flags.c_contiguous
    check_grad_weight(GRAD_WEIGHT[ndim](xc, wshape, gc, algorithm="direct", **kw), x, w, g, kw,
                      np.float32)
    check_grad_input(GRAD_INPUT[ndim](shape, w, gc, algorithm="direct", **kw), shape, w, g, kw,
                     np.float32)


@pytest.mark.parametrize("shape, wshape, kw", [
    ((1, 64, 112, 112), (64, 1, 3, 3), dict(stride=2, padding=1, groups=64)),
    ((1, 240, 28, 28), (240, 1, 5, 5), dict(padding=2, groups=240)),
])
def test_channels_last_depthwise_layers_are_read_in_place(shape, wshape, kw):
    for gradient in ("weight", "input"):
        spec = problem_spec(shape, wshape, gradient=gradient, memory_format="channels_last",
                            **kw)
        if spec.computation == "forward" and not spec.has_input_dilation:
            continue                        # a unit-stride input gradient: a forward problem
        assert get_algorithm("direct").plan(spec).path.startswith("native thin"), gradient


#: (shape, weight shape, kwargs, workspace limit): several segments (few
#: groups), several bands (a small limit), every column form
BITS_PROBLEMS = [
    pytest.param((1, 4, 23, 21), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4), None,
                 id="segments-s2"),
    pytest.param((3, 2, 17, 16), (4, 1, 5, 5), dict(padding=2, groups=2), None,
                 id="segments-images-m2"),
    # a thread's share of a 1 MiB limit is 128 Ki float32 values: these
    # planes' buffers are larger
    pytest.param((2, 4, 400, 380), (4, 1, 3, 3), dict(stride=3, padding=1, groups=4),
                 2**20, id="bands-s3"),
    pytest.param((1, 4, 300, 300), (4, 2, 7, 7), dict(padding=3, groups=2), 2**20,
                 id="bands-groups-of-2"),
]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
@pytest.mark.parametrize("shape, wshape, kw", CHANNELS_LAST_PROBLEMS[:4])
def test_channels_last_kernels_agree_bitwise_on_one_and_two_threads(rng, shape, wshape, kw):
    x, w, g = _arrays(rng, shape, wshape, kw, np.float32)
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1, 2):
            numba.set_num_threads(threads)
            results.append([_forced(gradient, "native", shape, wshape, kw, x, w, g)
                            for gradient in ("weight", "input")])
    finally:
        numba.set_num_threads(previous)
    for result in results[1:]:
        for a, b in zip(result, results[0]):
            assert np.array_equal(a, b)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
@pytest.mark.parametrize("shape, wshape, kw, limit", BITS_PROBLEMS)
def test_one_and_two_threads_agree_bitwise(rng, shape, wshape, kw, limit):
    x, w, g = _arrays(rng, shape, wshape, kw, np.float32)
    previous_limit, previous = get_workspace_limit(), numba.get_num_threads()
    results = []
    try:
        if limit is not None:
            set_workspace_limit(limit)
        for threads in (1, 2, 1, 2):
            numba.set_num_threads(threads)
            results.append((nc.grad.conv2d_weight(x, wshape, g, algorithm="direct", **kw),
                            nc.grad.conv2d_input(shape, w, g, algorithm="direct", **kw)))
        path = _path(shape, wshape, kw, "weight")
    finally:
        numba.set_num_threads(previous)
        set_workspace_limit(previous_limit)
    assert "segments" in path or "bands" in path, path
    for gw, gi in results[1:]:
        assert np.array_equal(gw, results[0][0])
        assert np.array_equal(gi, results[0][1])


def test_transposed_bits_do_not_depend_on_the_bands(rng):
    shape, wshape, kw = (1, 2, 700, 401), (2, 1, 5, 5), dict(stride=2, padding=2, groups=2)
    x, w, g = _arrays(rng, shape, wshape, kw, np.float32)
    whole = nc.grad.conv2d_input(shape, w, g, algorithm="direct", **kw)
    assert "bands" not in _path(shape, wshape, kw, "input")
    previous = get_workspace_limit()
    try:
        set_workspace_limit(2**20)
        assert "bands" in _path(shape, wshape, kw, "input")
        banded = nc.grad.conv2d_input(shape, w, g, algorithm="direct", **kw)
        gw_banded = nc.grad.conv2d_weight(x, wshape, g, algorithm="direct", **kw)
    finally:
        set_workspace_limit(previous)
    assert np.array_equal(banded, whole)
    # the weight gradient's bands reorder its sums: close, not equal
    check_grad_weight(gw_banded, x, w, g, kw, np.float32)


def test_plans_stay_under_the_workspace_limit():
    ctx = current_context()
    previous = get_workspace_limit()
    try:
        for limit in (2**20, 2**22, 2**24):
            set_workspace_limit(limit)
            ctx = current_context()
            for gradient in ("weight", "input"):
                spec = problem_spec((2, 32, 1000, 900), (32, 1, 5, 5), stride=2, padding=2,
                                    groups=32, gradient=gradient)
                plan = get_algorithm("direct").plan(spec, ctx)
                assert "thin" in plan.path and "bands" in plan.path, plan.path
                assert plan.workspace <= limit, (limit, plan)
    finally:
        set_workspace_limit(previous)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("computation", ["grad_input", "grad_weight"])
def test_nan_and_inf_propagate_like_pytorch(rng, computation):
    shape, wshape, kw = (2, 4, 11, 12), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4)
    x, w, g = _arrays(rng, shape, wshape, kw, np.float32)
    poisoned = x if computation == "grad_weight" else g
    flat = poisoned.reshape(-1)
    flat[[3, 100]] = np.nan
    flat[40] = np.inf
    flat[150] = -np.inf
    if computation == "grad_weight":
        # a finite output gradient (docs/semantics.md, "Non-finite values")
        y = nc.grad.conv2d_weight(x, wshape, g, algorithm="direct", **kw)
        expected = torch.nn.grad.conv2d_weight(torch.from_numpy(x), wshape,
                                               torch.from_numpy(g), **kw).numpy()
    else:
        y = nc.grad.conv2d_input(shape, w, g, algorithm="direct", **kw)
        expected = torch.nn.grad.conv2d_input(shape, torch.from_numpy(w),
                                              torch.from_numpy(g), **kw).numpy()
    for mask in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(mask(y), mask(expected))
    assert np.isnan(y).any() and np.isfinite(y).any()
    finite = np.isfinite(expected)
    assert np.allclose(y[finite], expected[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "relu", "silu"])
def test_conv_transpose_applies_the_whole_epilogue(rng, activation):
    x = rng.standard_normal((2, 6, 7, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    kw = dict(stride=2, padding=1, output_padding=1, groups=6)
    spec = problem_spec(x.shape, w.shape, transposed=True, **kw)
    assert "thin transposed phases" in get_algorithm("direct").plan(spec).path
    plain = nc.conv_transpose2d(x, w, b, algorithm="direct", **kw)
    check_transposed(plain, x, w, b, kw, np.float32)
    residual = rng.standard_normal(plain.shape).astype(np.float32)
    fused = nc.conv_transpose2d(x, w, b, algorithm="direct", activation=activation,
                                residual=residual, **kw)
    unfused = nc.conv_transpose2d(x, w, b, algorithm="direct", **kw) + residual
    if activation == "relu":
        unfused = np.maximum(unfused, 0)
    elif activation == "silu":
        unfused = unfused / (1 + np.exp(-unfused))
    assert np.allclose(fused, unfused, rtol=1e-6, atol=1e-6)
    out = np.full(plain.shape, np.nan, np.float32)
    assert nc.conv_transpose2d(x, w, b, algorithm="direct", out=out, **kw) is out
    assert np.array_equal(out, plain)


def test_unbatched_and_empty_batches(rng):
    kw = dict(stride=2, padding=1, groups=4)
    x, w, g = _arrays(rng, (1, 4, 9, 10), (4, 1, 3, 3), kw, np.float32)
    gw = nc.grad.conv2d_weight(x[0], w.shape, g[0], algorithm="direct", **kw)
    assert np.array_equal(gw, nc.grad.conv2d_weight(x, w.shape, g, algorithm="direct", **kw))
    gi = nc.grad.conv2d_input(x.shape[1:], w, g[0], algorithm="direct", **kw)
    assert np.array_equal(gi, nc.grad.conv2d_input(x.shape, w, g, algorithm="direct", **kw)[0])
    empty = nc.grad.conv2d_weight(x[:0], w.shape, g[:0], algorithm="direct", **kw)
    assert empty.shape == w.shape and not empty.any()
    assert nc.grad.conv2d_input((0,) + x.shape[1:], w, g[:0], algorithm="direct",
                                **kw).shape == (0,) + x.shape[1:]


def test_gradients_of_conv_backward(rng):
    kw = dict(stride=2, padding=2, groups=6)
    x, w, g = _arrays(rng, (3, 6, 15, 14), (12, 1, 5, 5), kw, np.float64)
    gi, gw, gb = nc.conv_backward(x, w, g, algorithm="direct", **kw)
    check_grad_input(gi, x.shape, w, g, kw, np.float64)
    check_grad_weight(gw, x, w, g, kw, np.float64)
    assert np.allclose(gb, g.sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("call, message", [
    (lambda x, w, g, a: nc.grad.conv2d_weight(x, (4, 2, 3, 3), g, stride=2, padding=1,
                                              groups=4, algorithm=a), "weight_size"),
    (lambda x, w, g, a: nc.grad.conv2d_weight(x, w.shape, g[:, :, 1:], stride=2, padding=1,
                                              groups=4, algorithm=a), "grad_output"),
    (lambda x, w, g, a: nc.grad.conv2d_input((1, 4, 30, 30), w, g, stride=2, padding=1,
                                             groups=4, algorithm=a), "input_size"),
    (lambda x, w, g, a: nc.grad.conv2d_input(x.shape, w, g, stride=0, padding=1, groups=4,
                                             algorithm=a), "stride"),
    (lambda x, w, g, a: nc.grad.conv2d_weight(x, w.shape, g, stride=2, padding=1, groups=3,
                                              algorithm=a), "groups"),
])
def test_bad_arguments_raise_as_before(rng, call, message):
    """Validation comes before any algorithm: the same error, whichever runs."""
    kw = dict(stride=2, padding=1, groups=4)
    x, w, g = _arrays(rng, (1, 4, 9, 10), (4, 1, 3, 3), kw, np.float32)
    errors = []
    for algorithm in ("direct", "im2col", "auto"):
        with pytest.raises(ValueError, match=message) as error:
            call(x, w, g, algorithm)
        errors.append(str(error.value))
    assert errors[0] == errors[1] == errors[2]


def test_the_thin_kernels_serve_only_their_layers():
    assert direct.why_not_thin_gradient(problem_spec(
        (1, 8, 9, 9), (8, 1, 3, 3), groups=8, gradient="weight")) is None
    assert "input channels per group" in direct.why_not_thin_gradient(problem_spec(
        (1, 16, 9, 9), (16, 8, 3, 3), groups=2, gradient="weight"))
    assert "3-D" in direct.why_not_thin_gradient(problem_spec(
        (1, 4, 5, 5, 5), (4, 1, 3, 3, 3), groups=4, gradient="weight"))
    # a stride-1 input gradient is a forward problem: the forward loop orders
    assert "neither" in direct.why_not_thin_gradient(problem_spec(
        (1, 8, 9, 9), (8, 1, 3, 3), padding=1, groups=8, gradient="input"))
    # 3-D layers keep the rewrite and the phases
    spec = problem_spec((1, 4, 5, 5, 5), (4, 1, 3, 3, 3), padding=1, groups=4,
                        gradient="weight")
    assert get_algorithm("direct").plan(spec).path.startswith("rewrite of")


#: MobileNetV3-Large's and EfficientNet-B0's depthwise layers (bench/networks.py)
NETWORK_LAYERS = [
    ((1, 64, 112, 112), (64, 1, 3, 3), dict(stride=2, padding=1, groups=64)),
    ((8, 96, 112, 112), (96, 1, 3, 3), dict(stride=2, padding=1, groups=96)),
    ((1, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144)),
    ((8, 72, 56, 56), (72, 1, 5, 5), dict(stride=2, padding=2, groups=72)),
    ((1, 240, 28, 28), (240, 1, 5, 5), dict(padding=2, groups=240)),
    ((8, 672, 14, 14), (672, 1, 5, 5), dict(stride=2, padding=2, groups=672)),
    ((1, 1152, 7, 7), (1152, 1, 5, 5), dict(padding=2, groups=1152)),
]


@pytest.mark.parametrize("shape, wshape, kw", NETWORK_LAYERS)
def test_auto_picks_the_thin_kernels_for_network_layers(shape, wshape, kw):
    choice = nc.choose_algorithm(shape, wshape, gradient="weight", **kw)
    assert (choice.algorithm, choice.path.split(" in bands")[0]) == (
        "direct", "thin weight gradient"), str(choice)
    if kw.get("stride", 1) > 1:
        choice = nc.choose_algorithm(shape, wshape, gradient="input", **kw)
        assert (choice.algorithm, choice.path) == ("direct", "thin transposed phases"), \
            str(choice)


def test_unit_stride_input_gradients_keep_the_forward_loop_orders():
    choice = nc.choose_algorithm((1, 144, 56, 56), (144, 1, 3, 3), padding=1, groups=144,
                                 gradient="input")
    assert (choice.algorithm, choice.path) == ("direct", "phase_planes"), str(choice)


def test_a_depthwise_weight_gradient_is_summed_from_true_products(rng):
    """Each tap's sum has exactly the products of the definition: an input
    of powers of two makes every partial sum exact, so the result equals
    the float64 reference bit for bit."""
    kw = dict(stride=2, padding=1, groups=3)
    x = 2.0 ** rng.integers(-3, 4, (2, 3, 13, 12))
    w = np.ones((3, 1, 3, 3))
    g = 2.0 ** rng.integers(-3, 4, nc.conv2d(x, w, **kw).shape)
    gw = nc.grad.conv2d_weight(x.astype(np.float32), w.shape, g.astype(np.float32),
                               algorithm="direct", **kw)
    ref = nc.grad.conv2d_weight(x, w.shape, g, algorithm="im2col", **kw)
    assert np.array_equal(gw, ref.astype(np.float32))
    assert np.abs(a64(gw)).max() > 0
