"""Reliability under concurrency and with non-finite values (issue 16).

* 10 Python threads run different convolutions at once (every CPU algorithm
  and loop order, forward, transposed and both gradients), while two of them
  and another process keep writing the autotune cache: every result is bit
  for bit the serial one, and the cache file stays valid JSON.
* NaN and infinity propagate as in PyTorch for every algorithm and every
  computation: the NaN / +inf / -inf masks of the output equal PyTorch's.
  (The transform algorithms hand non-finite calls to ``direct``, which keeps
  a NaN local to the outputs that read it.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import numbaconv as nc
from numbaconv import tuning

from .conftest import torch

PROBLEMS = [
    # (label, callable(x, w) -> result, input shape, weight shape)
    ("direct channels-last", lambda x, w: nc.conv2d(x, w, padding=1, algorithm="direct"),
     (2, 16, 20, 20), (16, 16, 3, 3)),
    ("direct phase planes s2", lambda x, w: nc.conv2d(x, w, padding=1, stride=2, groups=16,
                                                      algorithm="direct"),
     (2, 16, 20, 20), (16, 1, 3, 3)),
    ("im2col", lambda x, w: nc.conv2d(x, w, padding=2, dilation=2, algorithm="im2col"),
     (2, 16, 20, 20), (8, 16, 3, 3)),
    ("fft", lambda x, w: nc.conv2d(x, w, padding=4, algorithm="fft"),
     (1, 4, 40, 40), (4, 4, 9, 9)),
    ("winograd", lambda x, w: nc.conv2d(x, w, padding=1, algorithm="winograd"),
     (2, 16, 20, 20), (16, 16, 3, 3)),
    ("transposed", lambda x, w: nc.conv_transpose2d(x, w, stride=2, padding=1,
                                                    algorithm="im2col"),
     (2, 16, 10, 10), (16, 8, 4, 4)),
    ("grad weight", lambda x, w: nc.grad.conv2d_weight(
        x, w.shape, nc.conv2d(x, w, padding=1, algorithm="direct"), padding=1,
        algorithm="im2col"),
     (2, 16, 12, 12), (8, 16, 3, 3)),
    ("3-D", lambda x, w: nc.conv3d(x, w, padding=1, algorithm="direct"), (1, 4, 8, 9, 10),
     (6, 4, 3, 3, 3)),
    ("auto", lambda x, w: nc.conv2d(x, w, padding=1), (2, 8, 16, 16), (8, 8, 3, 3)),
    ("auto grad weight", lambda x, w: nc.grad.conv2d_weight(
        x, w.shape, nc.conv2d(x, w, padding=1, algorithm="direct"), padding=1),
     (2, 16, 12, 12), (8, 16, 3, 3)),
]
# "auto" picks by the cost constants in force; its caches once keyed them by
# id() and served stale picks after a cache-directory change (the regression
# test is in tests/test_dispatch.py), which this test saw as different bits.

TUNE_SCRIPT = """
import sys
import numbaconv as nc
for _ in range(int(sys.argv[1])):
    for c in (4, 6, 8):
        nc.tune((1, c, 12, 12), (c, c, 3, 3), padding=1, force=True)
print("tuned")
"""


def test_concurrent_calls_equal_serial_while_the_tuning_cache_is_written(
        tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    arrays = [(rng.standard_normal(xs).astype(np.float32),
               rng.standard_normal(ws).astype(np.float32)) for _, _, xs, ws in PROBLEMS]
    serial = [fn(x, w) for (_, fn, _, _), (x, w) in zip(PROBLEMS, arrays)]
    other = subprocess.Popen([sys.executable, "-c", TUNE_SCRIPT, "3"], stdout=subprocess.PIPE,
                             text=True)
    results = {i: [] for i in range(len(PROBLEMS))}
    errors = []

    def worker(i):
        try:
            label, fn, _, _ = PROBLEMS[i]
            x, w = arrays[i]
            for round in range(4):
                results[i].append(fn(x, w))
                if i < 2:           # two threads also write the tuning cache
                    c = (4, 6)[i]
                    nc.tune((1, c, 10 + round, 10), (c, c, 3, 3), padding=1, force=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(PROBLEMS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    out, _ = other.communicate(timeout=600)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    assert other.returncode == 0 and "tuned" in out
    for i, (label, _, _, _) in enumerate(PROBLEMS):
        assert len(results[i]) == 4
        for y in results[i]:
            assert np.array_equal(y, serial[i]), label
    with open(tuning.cache_path()) as fh:
        entries = json.load(fh)
    assert isinstance(entries, dict) and entries


def _poisoned(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[[3, 200]] = np.nan
    flat[77] = np.inf
    flat[150] = -np.inf
    return x


def _masks(y):
    y = np.asarray(y)
    return np.isnan(y), np.isposinf(y), np.isneginf(y)


COMPUTATIONS = ["forward", "transposed", "grad_input", "grad_weight"]


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("computation", COMPUTATIONS)
@pytest.mark.parametrize("algorithm", ["direct", "im2col", "fft", "winograd", "winograd_f2"])
def test_nan_and_inf_propagate_like_pytorch_everywhere(rng, algorithm, computation):
    tf = torch.nn.functional
    x = _poisoned(rng, (2, 4, 9, 9))
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    kw = dict(padding=1)
    if computation == "forward":
        y = nc.conv2d(x, w, algorithm=algorithm, **kw)
        expected = tf.conv2d(torch.from_numpy(x), torch.from_numpy(w), **kw)
    elif computation == "transposed":
        y = nc.conv_transpose2d(x, w, algorithm=algorithm, **kw)
        expected = tf.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), **kw)
    elif computation == "grad_input":
        y = nc.grad.conv2d_input(x.shape, w, x, algorithm=algorithm, **kw)
        expected = torch.nn.grad.conv2d_input(x.shape, torch.from_numpy(w),
                                              torch.from_numpy(x), **kw)
    else:
        if algorithm.startswith("winograd"):
            pytest.skip("winograd does not serve weight gradients")
        # a finite output gradient: with infinities in both, the products of
        # the padding's zeros with an infinity are NaN here and skipped by
        # PyTorch (docs/semantics.md, "Non-finite values")
        g = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
        y = nc.grad.conv2d_weight(x, w.shape, g, algorithm=algorithm, **kw)
        expected = torch.nn.grad.conv2d_weight(torch.from_numpy(x), w.shape,
                                               torch.from_numpy(g), **kw)
    for ours, theirs in zip(_masks(y), _masks(expected.numpy())):
        np.testing.assert_array_equal(ours, theirs)
    assert np.isnan(y).any()


@pytest.mark.parametrize("shape, algorithm, bound", [
    ("resnet3x3", "direct", 2.5),
    ("resnet3x3", "im2col", 2.5),
    ("resnet3x3", "winograd", 2.5),
    # the stride-2 fft peak moved 6.0-8.9x between runs and days, the same
    # code included (docs/hardening.md, "Memory")
    ("s2_3x3", "fft", 10.0),
])
def test_peak_memory_stays_within_the_documented_multiple(shape, algorithm, bound):
    """docs/hardening.md: the extra peak of a call (output included) over the
    input + output + weight bytes, measured as scripts/memory_table.py does."""
    import importlib.util
    import os
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "memory_table.py"
    spec = importlib.util.spec_from_file_location("memory_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    done = subprocess.run([sys.executable, "-c", table.CHILD, shape, algorithm],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072"))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 < result["extra"] <= bound * result["arrays"]


def test_a_workspace_over_the_limit_is_a_memory_error_naming_the_limit(rng):
    # fft's weight spectrum (64 x 64 transforms of at least 9 x 9 points,
    # about 4.7 MiB) cannot shrink under a 1 MiB limit: the explicit call is
    # refused before anything is allocated, and "auto" passes fft over
    x = rng.standard_normal((1, 64, 24, 24)).astype(np.float32)
    w = rng.standard_normal((64, 64, 9, 9)).astype(np.float32)
    out = np.full((1, 64, 16, 16), 7.0, np.float32)
    previous = nc.set_workspace_limit(2**20)
    try:
        with pytest.raises(MemoryError, match=r"conv2d: algorithm='fft' cannot run: its "
                           r"smallest workspace, [\d.]+ MiB .* over the workspace limit of "
                           r"1\.0 MiB; raise it with numbaconv.set_workspace_limit"):
            nc.conv2d(x, w, algorithm="fft", out=out)
        assert (out == 7.0).all()
        choice = nc.choose_algorithm(x.shape, w.shape)
        fft = next(c for c in choice.candidates if c.algorithm == "fft")
        assert "over the workspace limit of 1.0 MiB" in fft.excluded
        assert choice.algorithm != "fft"
        y = nc.conv2d(x, w)                    # auto: another algorithm, under the limit
    finally:
        nc.set_workspace_limit(previous)
    assert_matches_reference(y, x, w, None, algorithm=choice.algorithm)
    assert nc.conv2d(x, w, algorithm="fft").shape == y.shape     # fits the default limit


BIG_H, BIG_W = 2**16 + 64, 2**15        # 2**31 + 2**21 elements
BIG_STRIDE = (32, 64)
# (row, column) of the input's nonzero values: before, at and past element 2**31
BIG_PLACES = [(32, 64), (2**16 - 64, 2**15 - 64), (2**16, 0), (2**16 + 32, 2**15 - 64)]


@pytest.mark.parametrize("computation", ["forward", "grad_weight"])
@pytest.mark.parametrize("algorithm", ["im2col", "auto"])
def test_inputs_over_2_31_elements_index_correctly(computation, algorithm):
    """A (1, 1, 65600, 32768) float32 input, 2**31 + 2**21 elements, through
    a strided 1x1 layer: np.zeros maps untouched pages to the kernel's zero
    page, so the 8 GiB input costs a few pages, and the output is 1M
    values.  A wrapped 32-bit index would read a zero (or a wrong value)
    where the values past element 2**31 are expected.  (direct and fft are
    correct here too but copy the whole input, 8-16 GiB and 10-70 s:
    docs/hardening.md.)"""
    x = np.zeros((1, 1, BIG_H, BIG_W), np.float32)
    assert x.size > 2**31
    rows, cols = np.array(BIG_PLACES).T
    assert (rows * BIG_W + cols)[-2:].min() >= 2**31
    x[0, 0, rows, cols] = np.arange(1, 5, dtype=np.float32)
    out_shape = (-(-BIG_H // BIG_STRIDE[0]), -(-BIG_W // BIG_STRIDE[1]))
    places = (rows // BIG_STRIDE[0], cols // BIG_STRIDE[1])
    if computation == "forward":
        y = nc.conv2d(x, np.full((1, 1, 1, 1), 2.0, np.float32), stride=BIG_STRIDE,
                      algorithm=algorithm)
        expected = np.zeros(out_shape, np.float32)
        expected[places] = 2 * np.arange(1, 5)
        assert np.array_equal(y[0, 0], expected)
    else:
        g = np.zeros((1, 1) + out_shape, np.float32)
        g[0, 0][places] = [10, 100, 1000, 10000]
        gw = nc.grad.conv2d_weight(x, (1, 1, 1, 1), g, stride=BIG_STRIDE,
                                   algorithm=algorithm)
        assert gw.ravel().tolist() == [1 * 10 + 2 * 100 + 3 * 1000 + 4 * 10000]


def test_one_winograd_tile_per_thread_over_the_limit_is_refused():
    # a 3-D F(4,3) tile of 600 + 600 channels is 216 x 1200 values, 1.0 MiB
    # per thread: it cannot run on 2 threads under 1 MiB, nor be picked
    from numbaconv.context import ExecutionContext
    from numbaconv.dispatch import choose_spec, resolve_algorithm
    from numbaconv.spec import problem_spec
    spec = problem_spec((1, 600, 8, 8, 8), (600, 600, 3, 3, 3), padding=1)
    small = ExecutionContext(threads=2, pool_threads=2, workspace_limit=2**20)
    with pytest.raises(MemoryError, match="conv3d: algorithm='winograd' cannot run: .*"
                                          "over the workspace limit of 1.0 MiB"):
        resolve_algorithm("winograd", spec, small)
    choice = choose_spec(spec, small)
    assert choice.algorithm != "winograd"
    roomy = ExecutionContext(threads=2, pool_threads=2, workspace_limit=2**26)
    assert resolve_algorithm("winograd", spec, roomy).name == "winograd"


def test_remembered_call_plans_follow_the_workspace_limit(rng):
    """The public functions remember (algorithm, plan) per call settings
    (dispatch.resolve_planned): a limit lowered after a successful call is
    still a bound, and raising it again lets the same call run."""
    x = rng.standard_normal((1, 8, 64, 64)).astype(np.float32)
    w = rng.standard_normal((8, 8, 31, 31)).astype(np.float32)
    before = nc.get_workspace_limit()
    try:
        first = nc.conv2d(x, w, algorithm="fft")
        nc.set_workspace_limit(2**20)          # fft needs 1.5 MiB here
        with pytest.raises(MemoryError, match="algorithm='fft' cannot run"):
            nc.conv2d(x, w, algorithm="fft")
        assert nc.conv2d(x, w).shape == first.shape          # "auto" passes fft over
    finally:
        nc.set_workspace_limit(before)
    assert np.array_equal(nc.conv2d(x, w, algorithm="fft"), first)


def test_direct_planes_run_in_bands_under_the_workspace_limit(rng):
    """Note [plane bands]: the phase-planes kernels' scratch is the plan's
    workspace; a large plane runs in bands that fit the limit (same
    result), and where even 2-row bands do not fit, explicit direct is
    refused before anything is allocated and "auto" passes it over."""
    from numbaconv.algorithms.direct import DIRECT, plane_band_rows
    from numbaconv.context import current_context
    from numbaconv.spec import make_conv_spec
    x = rng.standard_normal((1, 2, 600, 600)).astype(np.float32)
    w = rng.standard_normal((2, 1, 7, 7)).astype(np.float32)
    before = nc.get_workspace_limit()
    try:
        whole = nc.conv2d(x, w, padding=3, groups=2, algorithm="direct")
        nc.set_workspace_limit(2**20)
        ctx = current_context()
        spec = make_conv_spec("conv2d", 2, x, w, None, 1, 3, 1, 2, "zeros")
        plan = DIRECT.plan(spec, ctx)
        assert plan.workspace <= 2**20 and "in bands of" in plan.path
        assert 2 <= plane_band_rows(spec, ctx) < 600
        assert np.array_equal(nc.conv2d(x, w, padding=3, groups=2, algorithm="direct"), whole)
        wide = rng.standard_normal((1, 1, 4, 200_000)).astype(np.float32)
        one = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
        with pytest.raises(MemoryError, match="algorithm='direct' cannot run"):
            nc.conv2d(wide, one, padding=1, algorithm="direct")
        assert_matches_reference(nc.conv2d(wide, one, padding=1), wide, one, padding=1)
    finally:
        nc.set_workspace_limit(before)


# ---------------------------------------------------------------------------
# differential fuzzing: views and every algorithm
# ---------------------------------------------------------------------------

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from numbaconv.spec import memory_format_of  # noqa: E402

from .conftest import assert_matches_reference, CONV  # noqa: E402
from .test_conv import conv_problems, make_inputs  # noqa: E402

#: A few hundred examples in CI; NUMBACONV_FUZZ_EXAMPLES=20000 for the long
#: profile (docs/hardening.md).
FUZZ_EXAMPLES = int(__import__("os").environ.get("NUMBACONV_FUZZ_EXAMPLES", "200"))


def _view(array, kind):
    """The same values as ``array``, laid out as ``kind`` says."""
    if kind == "contiguous" or array.ndim == 0:
        return array
    if kind == "strided":                       # every other element of a bigger array
        big = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        big[..., ::2] = array
        return big[..., ::2]
    if kind == "negative":                      # a reversed view of a reversed copy
        return np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    return np.asfortranarray(array)             # "fortran"


def _abs64(a):
    return np.abs(np.asarray(a, np.float64))


def _abs_forward_scale(x, w, b, kw):
    return nc.conv_reference(_abs64(x), _abs64(w), None if b is None else _abs64(b), **kw)


def _assert_layout_result(viewed, y, view, ndim, scale):
    """``viewed`` (computed from the view ``view``) is ``y``'s bits, unless
    the view is channels-last memory (a Fortran-order array with one image
    can be): native channels-last kernels sum in their own order (Note
    [memory format] in numbaconv/spec.py), so both results are within the
    elementwise bound ``16 eps * scale`` of the exact one (``scale``: the
    float64 computation on absolute values, a callable), hence within twice
    it of each other."""
    if memory_format_of(view, ndim) != "channels_last":
        assert np.array_equal(viewed, y)
        return
    eps = float(np.finfo(np.float32 if y.dtype == np.float16 else y.dtype).eps)
    bound = 2 * 16 * eps * scale()
    if y.dtype == np.float16:       # and one float16 rounding each
        bound = bound + float(np.finfo(np.float16).eps) * np.abs(y.astype(np.float64))
    assert np.all(np.abs(viewed.astype(np.float64) - y) <= bound)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(conv_problems(), st.sampled_from(["strided", "negative", "fortran"]),
       st.sampled_from(["direct", "im2col", "fft", "winograd", "winograd_f2", "auto"]))
def test_fuzz_views_and_every_algorithm(problem, layout, algorithm):
    """Any memory layout of the same values gives the same bits, and every
    algorithm either serves the problem within its tolerance or refuses it
    with UnsupportedAlgorithmError for a reason of its documented domain."""
    shape, wshape, kw, dtype, bias, seed = problem
    kw = dict(kw, algorithm=algorithm)
    x, w, b = make_inputs(np.random.default_rng(seed), shape, wshape, dtype, bias)
    conv = CONV[len(wshape) - 2]
    try:
        y = conv(x, w, b, **kw)
    except nc.UnsupportedAlgorithmError as exc:
        assert algorithm.startswith("winograd"), exc
        assert any(word in str(exc) for word in ("stride", "kernel", "dilation")), exc
        return
    viewed = conv(_view(x, layout), _view(w, layout), None if b is None else _view(b, layout),
                  **kw)
    # holds on any CPU: a view is copied into the canonical C-contiguous
    # arrays before anything is planned, so the same plan (and GEMM shapes)
    # runs on the same values; OpenBLAS's results do not depend on the
    # arrays' addresses (MKL's may, unless MKL_CBWR is set)
    kw.pop("algorithm")
    _assert_layout_result(viewed, y, _view(x, layout), len(wshape) - 2,
                          lambda: _abs_forward_scale(x, w, b, kw))
    assert_matches_reference(y, x, w, b, algorithm=algorithm, **kw)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "fft", "winograd", "winograd_f2"])
def test_subnormals_are_computed_not_flushed(rng, algorithm):
    """float32 inputs around 1e-38 with weights around 1e-3 give outputs around
    1e-40, below float32's normal range (1.2e-38): they come out subnormal,
    not zero, with the right sign.  Subnormal arithmetic has an absolute
    spacing of 2**-149 (1.4e-45), so the bound adds 2048 such steps (measured
    at most about 70, on winograd whose transforms scale the terms) to the
    elementwise bound of tests/conftest.py."""
    from .conftest import tolerance
    x = (rng.standard_normal((1, 4, 9, 9)) * 1e-38).astype(np.float32)
    w = (rng.standard_normal((4, 4, 3, 3)) * 1e-3).astype(np.float32)
    y = nc.conv2d(x, w, padding=1, algorithm=algorithm)
    ref = nc.conv_reference(x.astype(np.float64), w.astype(np.float64), padding=1)
    assert np.all(np.abs(y) < np.finfo(np.float32).tiny)          # all subnormal or zero
    clear = np.abs(ref) > 1e-42
    assert np.all(np.sign(y[clear]) == np.sign(ref[clear]))
    bound = tolerance(x, w, None, np.float32, algorithm, padding=1) + 2048 * 2.0 ** -149
    assert np.all(np.abs(y - ref) <= bound)


from .test_backward import (CONV_TRANSPOSE, GRAD_INPUT, GRAD_WEIGHT,  # noqa: E402
                            grad_problem, grad_problems, transposed_problem,
                            transposed_problems)


@settings(max_examples=max(1, FUZZ_EXAMPLES // 2), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(transposed_problems(), grad_problems(), st.sampled_from(["strided", "negative", "fortran"]))
# Fortran-order arrays of one image that are channels-last memory (found by
# hypothesis once the native channels-last kernels landed)
@example(transposed=((0, 1, 1), (1, 1, 1), dict(stride=(1,), padding=(0,), output_padding=(0,),
                                               dilation=(1,), groups=1, bias=False),
                     np.float32, "direct", 0),
         gradients=((1, 1, 1, 1, 3), (2, 1, 1, 1, 2),
                    dict(stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), groups=1),
                    np.float32, "direct", 0),
         layout="fortran")
@example(transposed=((1, 2, 2), (2, 1, 3), dict(stride=(2,), padding=(0,), output_padding=(0,),
                                               dilation=(1,), groups=1, bias=False),
                     np.float32, "direct", 0),
         gradients=((0, 1, 1), (1, 1, 1),
                    dict(stride=(1,), padding=(0,), dilation=(1,), groups=1),
                    np.float32, "direct", 0),
         layout="fortran")
def test_fuzz_views_of_transposed_and_gradients(transposed, gradients, layout):
    """The layout of the arrays never changes a transposed convolution's or a
    gradient's bits, except channels-last memory, which stays within the
    bound (their values against the references: tests/test_backward.py)."""
    shape, wshape, kw, dtype, algorithm, seed = transposed
    x, w, b, kw = transposed_problem(np.random.default_rng(seed), shape, wshape, kw, dtype)
    fn = CONV_TRANSPOSE[len(wshape) - 2]
    y = fn(x, w, b, **kw, algorithm=algorithm)
    viewed = fn(_view(x, layout), _view(w, layout), None if b is None else _view(b, layout),
                **kw, algorithm=algorithm)
    ndim = len(wshape) - 2
    a64 = _abs64
    _assert_layout_result(viewed, y, _view(x, layout), ndim, lambda: nc.conv_transpose_reference(
        a64(x), a64(w), None if b is None else a64(b), **kw))
    shape, wshape, kw, dtype, algorithm, seed = gradients
    x, w, g = grad_problem(np.random.default_rng(seed), shape, wshape, kw, dtype)
    ndim = len(wshape) - 2
    gi = GRAD_INPUT[ndim](shape, w, g, **kw, algorithm=algorithm)
    _assert_layout_result(
        GRAD_INPUT[ndim](shape, _view(w, layout), _view(g, layout), **kw, algorithm=algorithm),
        gi, _view(g, layout), ndim,
        lambda: nc.conv_grad_input_reference(shape, a64(w), a64(g), **kw))
    gw = GRAD_WEIGHT[ndim](x, wshape, g, **kw, algorithm=algorithm)
    _assert_layout_result(
        GRAD_WEIGHT[ndim](_view(x, layout), wshape, _view(g, layout), **kw, algorithm=algorithm),
        gw, _view(x, layout), ndim,
        lambda: nc.conv_grad_weight_reference(a64(x), wshape, a64(g), **kw))


# ---------------------------------------------------------------------------
# invalid input: mutations of a valid call
# ---------------------------------------------------------------------------

def _valid_call(op):
    x = np.ones((2, 4, 6, 6), np.float32)
    w = np.ones((4, 2, 3, 3), np.float32)
    b = np.ones(4 if op == "conv2d" else 2, np.float32)
    kw = dict(stride=1, padding=1, groups=2) if op == "conv2d" else dict(stride=1, padding=1)
    return x, w, b, kw


MUTATIONS = {
    # name: (function(x, w, b, kw, value) -> (x, w, b, kw), values)
    "input rank": (lambda x, w, b, kw, v: (np.ones((4,) * v, np.float32), w, b, kw), [1, 2, 5]),
    "weight rank": (lambda x, w, b, kw, v: (x, np.ones((4,) * v, np.float32), b, kw), [1, 2, 5]),
    "zero kernel": (lambda x, w, b, kw, v: (x, np.ones((4, 2, 0, 3), np.float32), b, kw), [0]),
    "zero channels": (lambda x, w, b, kw, v: (np.ones((2, 0, 6, 6), np.float32), w, b, kw), [0]),
    "channels": (lambda x, w, b, kw, v: (x, np.ones((4, 3, 3, 3), np.float32), b, kw), [0]),
    "input dtype": (lambda x, w, b, kw, v: (x.astype(v), w, b, kw),
                    [np.int32, np.int64, np.complex64, np.bool_, np.uint8, object]),
    "weight dtype": (lambda x, w, b, kw, v: (x, w.astype(v), b, kw), [np.int32, np.complex128]),
    "structured": (lambda x, w, b, kw, v: (np.zeros(x.shape, [("a", np.float32)]), w, b, kw),
                   [0]),
    "stride": (lambda x, w, b, kw, v: (x, w, b, dict(kw, stride=v)),
               [0, -1, (1,), (1, 2, 3), (0, 1), 1.5, float("nan"), "2"]),
    "padding": (lambda x, w, b, kw, v: (x, w, b, dict(kw, padding=v)),
                [-1, (1,), (1, 2, 3), "full", (-1, 0), 2**62]),
    "groups": (lambda x, w, b, kw, v: (x, w, b, dict(kw, groups=v)), [0, -1, 3, 8, 2.0]),
    "bias": (lambda x, w, b, kw, v: (x, w, np.ones(v, np.float32), kw), [7, (4, 1)]),
    "ragged": (lambda x, w, b, kw, v: ([[1.0, 2.0], [3.0]], w, b, kw), [0]),
}


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(["conv2d", "conv_transpose2d"]), st.sampled_from(sorted(MUTATIONS)),
       st.data())
def test_fuzz_invalid_inputs_raise_named_errors(op, mutation, data):
    """A mutation of a valid call raises ValueError or TypeError whose message
    starts with the operation's name -- never another exception, a crash or
    a result -- and leaves a given ``out=`` untouched."""
    change, values = MUTATIONS[mutation]
    x, w, b, kw = change(*_valid_call(op), data.draw(st.sampled_from(values)))
    fn = getattr(nc, op)
    with pytest.raises((ValueError, TypeError)) as info:
        fn(x, w, b, **kw)
    assert str(info.value).startswith(op), str(info.value)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("problem", ["shape", "dtype", "alias"])
def test_a_bad_out_is_refused_and_left_untouched(op, problem):
    x, w, b, kw = _valid_call(op)
    good = getattr(nc, op)(x, w, b, **kw)
    if problem == "alias":
        if op != "conv2d":
            pytest.skip("the transposed output is not the input's shape here")
        out = x
    else:
        out = np.full(good.shape if problem == "alias" else
                      (good.shape[:-1] + (good.shape[-1] + 1,) if problem == "shape"
                       else good.shape),
                      7.0, np.float64 if problem == "dtype" else np.float32)
    before = out.copy()
    with pytest.raises((ValueError, TypeError), match=rf"^{op}: .*out"):
        getattr(nc, op)(x, w, b, out=out, **kw)
    assert np.array_equal(out, before)
