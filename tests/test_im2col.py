"""The im2col algorithm's own machinery: tile plans, the workspace limit, both
column fills, both products, the pointwise path and the thread pools.

(Every named case and hypothesis spec also runs through im2col in
tests/test_conv.py.)
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import numbaconv as nc
from numbaconv.algorithms import im2col
from numbaconv.bench.suite import PUBLIC_SHAPES
from numbaconv.kernels import im2col_cpu

from .conftest import CONV, assert_matches_reference, run_canonical, spec_of, tolerance


def run_with_plan(x, w, b, plan_args, **kw):
    """im2col with a forced tile plan."""
    plan = im2col.TilePlan(threads=numba.get_num_threads(), **plan_args)
    return run_canonical(lambda *args: im2col.im2col_forward(*args, plan=plan), x, w, b, **kw)


# ---------------------------------------------------------------------------
# tile plans and the workspace limit
# ---------------------------------------------------------------------------

PLAN_SPECS = [(c.input_shape, c.weight_shape, c.kwargs) for c in PUBLIC_SHAPES
              if not c.transposed] + [
    ((1, 4096, 64, 64), (8, 4096, 31, 31), dict(padding=15)),   # K = 3.9M
    ((2, 3, 2000, 3000), (16, 3, 3, 3), {}),                     # a large image
    ((1, 1, 10), (1, 1, 3), {}),
]


@pytest.mark.parametrize("limit", [2**20, 8 * 2**20, 64 * 2**20])
@pytest.mark.parametrize("threads", [1, 2, 8])
@pytest.mark.parametrize("shape, wshape, kw", PLAN_SPECS)
def test_plans_respect_the_workspace_limit(shape, wshape, kw, threads, limit):
    for dtype in (np.float32, np.float64):
        spec = spec_of(shape, wshape, dtype, **kw)
        plan = im2col.plan_tiles(spec, np.dtype(dtype).itemsize, threads, limit)
        K = spec.in_channels_per_group * math.prod(spec.kernel_size3)
        assert plan.chunks_k * plan.rows == K
        assert 1 <= plan.tile <= math.prod(spec.output_size3)
        assert plan.workspace_bytes(np.dtype(dtype).itemsize) <= limit


def test_huge_reduction_splits_k_under_a_small_limit():
    spec = spec_of((1, 4096, 64, 64), (8, 4096, 31, 31), padding=15)
    plan = im2col.plan_tiles(spec, 4, 2, 2**20)
    assert plan.chunks_k > 1 and plan.tile == 1


def test_workspace_limit_setting():
    default = nc.get_workspace_limit()
    assert default == 64 * 2**20
    try:
        assert nc.set_workspace_limit(2**21) == default
        assert nc.get_workspace_limit() == 2**21
        spec = spec_of((4, 64, 56, 56), (64, 64, 3, 3), padding=1)
        assert im2col.plan_tiles(spec, 4, 2).workspace_bytes(4) <= 2**21
    finally:
        nc.set_workspace_limit(None)
    assert nc.get_workspace_limit() == default


@pytest.mark.parametrize("value, exc, match", [
    (2**20 - 1, ValueError, r"nbytes must be at least 1048576 \(1 MiB\), got 1048575"),
    (-5, ValueError, r"nbytes must be at least .*got -5"),
    (1.5e8, TypeError, r"nbytes must be an int number of bytes or None, got float"),
    ("64MiB", TypeError, r"got str '64MiB'"),
    (True, TypeError, r"got bool True"),
])
def test_workspace_limit_rejects_bad_values(value, exc, match):
    before = nc.get_workspace_limit()
    with pytest.raises(exc, match=match):
        nc.set_workspace_limit(value)
    assert nc.get_workspace_limit() == before


# ---------------------------------------------------------------------------
# forced plans: every fill and product path against the reference
# ---------------------------------------------------------------------------

FILL_CASES = [
    # same-width layers (the fast fill when tiles are whole rows), every mode
    ((2, 3, 7, 9), (4, 3, 3, 3), dict(padding=1)),
    ((1, 2, 8, 6), (3, 2, 3, 5), dict(padding=(2, 4), dilation=(1, 2), padding_mode="reflect")),
    ((1, 2, 6, 7), (2, 2, 4, 4), dict(padding="same", padding_mode="replicate")),
    ((1, 4, 5, 9), (4, 2, 3, 3), dict(padding="same", dilation=2, groups=2,
                                      padding_mode="circular")),
    ((2, 3, 11), (5, 3, 4), dict(padding="same", dilation=3)),
    ((2, 6, 9, 9), (6, 1, 3, 3), dict(padding=1, groups=6)),          # depthwise
    # not same-width: the row-by-row fill
    ((1, 3, 9, 10), (4, 3, 3, 2), dict(stride=(2, 3), padding=(1, 2), padding_mode="reflect")),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 3), dict(padding=1, stride=(1, 1, 2),
                                            padding_mode="circular")),
    ((1, 2, 12), (3, 2, 5), dict(stride=2, dilation=2)),
]


@pytest.mark.parametrize("tile", [1, 5, 7, 9, 14, 10_000])
@pytest.mark.parametrize("cout_g", [1, 2, 5])     # <= SMALL_GEMM_ROWS: numba; above: BLAS
@pytest.mark.parametrize("shape, wshape, kw", FILL_CASES)
def test_forced_tiles_match_reference(rng, shape, wshape, kw, tile, cout_g):
    wshape = (cout_g * kw.get("groups", 1),) + wshape[1:]
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[0]).astype(np.float32)
    K = math.prod(wshape[1:])
    y = run_with_plan(x, w, b, dict(tile=tile, chunks_k=1, rows=K), **kw)
    assert_matches_reference(y, x, w, b, **kw)


@pytest.mark.parametrize("row_blocks", [2, 3, 7])
@pytest.mark.parametrize("shape, wshape, kw", [
    ((1, 6, 5, 7), (67, 6, 3, 3), dict(padding=1)),             # ragged last block
    ((2, 8, 6, 5), (40, 4, 3, 2), dict(padding=(1, 0), groups=2, stride=(1, 2))),
])
def test_output_channel_blocks_match_reference(rng, shape, wshape, kw, row_blocks):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[0]).astype(np.float32)
    K = math.prod(wshape[1:])
    y = run_with_plan(x, w, b, dict(tile=9, chunks_k=1, rows=K, row_blocks=row_blocks), **kw)
    assert_matches_reference(y, x, w, b, **kw)
    # not bit-equal to the unblocked plan: a GEMM's bits depend on its shape
    # (Note [GEMM shapes]); the plan itself never depends on the call's
    # threads (tests/test_bits.py)


@pytest.mark.parametrize("shape, wshape, packed", [
    ((1, 512, 4, 4), (512, 512, 4, 4), True),       # pix2pix's down7 at batch 1
    ((1, 512, 7, 7), (512, 512, 3, 3), True),       # ResNet-50's layer4 3x3 at batch 1
    ((8, 64, 56, 56), (64, 64, 3, 3), False),
    ((1, 512, 7, 7), (2048, 512, 1, 1), False),     # pointwise: the weight is a view
])
def test_channels_last_packs_where_the_weight_outweighs_the_activations(shape, wshape, packed):
    from numbaconv.spec import Operand, make_conv_spec
    n, c, h, w = shape
    x = np.empty((n, h, w, c), np.float32).transpose(0, 3, 1, 2)     # channels-last
    spec = make_conv_spec("conv2d", 2, Operand.of(x, 2),
                          Operand.of(np.empty(wshape, np.float32), 2), None,
                          padding=wshape[-1] // 2)
    assert spec.channels_last
    assert im2col.IM2COL.serves_natively(spec) is not packed


@pytest.mark.parametrize("shape, threads, row_blocks", [
    ((1, 512, 7, 7), 2, 2),       # 49 pixels: the channels are split, not the pixels
    ((1, 512, 7, 7), 1, 1),
    ((4, 512, 7, 7), 2, 1),       # enough images for every thread
    ((1, 512, 56, 56), 2, 1),     # enough pixels for long tiles
])
def test_few_pixels_split_the_output_channels(shape, threads, row_blocks):
    spec = spec_of(shape, (512, shape[1], 3, 3), padding=1)
    plan = im2col.plan_tiles(spec, 4, threads, 2**26)
    assert plan.row_blocks == row_blocks
    if row_blocks > 1:
        assert plan.tile == 49


@pytest.mark.parametrize("shape, wshape, kw, tile_bytes", [
    # at most im2col.FEW_ROWS output channels per group: tiles kept in the cache
    ((1, 4, 256, 256), (4, 4, 3, 3), dict(padding=1), im2col.FEW_ROWS_TILE_BYTES),
    ((4, 128, 56, 56), (128, 4, 3, 3), dict(padding=1, groups=32), im2col.FEW_ROWS_TILE_BYTES),
    ((1, 16, 256, 256), (16, 16, 3, 3), dict(padding=1), im2col.FEW_ROWS_TILE_BYTES),
    ((1, 16, 256, 256), (32, 16, 3, 3), dict(padding=1), im2col.TILE_BYTES),
])
def test_few_output_channels_take_cache_sized_tiles(shape, wshape, kw, tile_bytes):
    spec = spec_of(shape, wshape, **kw)
    K = spec.in_channels_per_group * math.prod(spec.kernel_size)
    plan = im2col.plan_tiles(spec, 4, 2, 2**26)
    columns = plan.tile * K * 4
    # whole output rows of 256 pixels round the tile down, never past the target
    assert tile_bytes / 2 <= columns <= tile_bytes


@pytest.mark.parametrize("cout", [4, 24])      # 2 or 12 per group: numba or BLAS product
@pytest.mark.parametrize("chunks_k", [2, 3, 6])
def test_split_reduction_matches_reference(rng, cout, chunks_k):
    x = rng.standard_normal((2, 4, 7, 8)).astype(np.float64)
    w = rng.standard_normal((cout, 2, 3, 3)).astype(np.float64)      # K = 18 per group
    b = rng.standard_normal(cout).astype(np.float64)
    kw = dict(padding=1, groups=2, stride=(1, 2))
    y = run_with_plan(x, w, b, dict(tile=6, chunks_k=chunks_k, rows=18 // chunks_k), **kw)
    assert_matches_reference(y, x, w, b, **kw)


# ---------------------------------------------------------------------------
# the pointwise path
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape, wshape, kw", [
    ((3, 8, 5, 7), (6, 8, 1, 1), {}),
    ((2, 8, 5, 7), (6, 4, 1, 1), dict(groups=2)),
    ((2, 6, 4, 3, 5), (4, 6, 1, 1, 1), dict(dilation=3)),
    ((2, 6, 9), (6, 6, 1), dict(padding="same")),
])
def test_pointwise_is_one_gemm_without_columns(monkeypatch, rng, shape, wshape, kw):
    def no_columns(*args, **kwargs):
        raise AssertionError("the pointwise path built a column matrix")
    monkeypatch.setattr(im2col_cpu, "im2col_conv", no_columns)
    monkeypatch.setattr(im2col_cpu, "fill_columns", no_columns)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[0]).astype(np.float32)
    y = CONV[len(wshape) - 2](x, w, b, algorithm="im2col", **kw)
    assert_matches_reference(y, x, w, b, **kw)


@pytest.mark.parametrize("shape, wshape, kw", [
    ((1, 96, 1, 1), (24, 96, 1, 1), {}),
    ((3, 40, 1, 1), (60, 20, 1, 1), dict(groups=2)),
    ((2, 33, 1), (7, 33, 1), {}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pixel_pointwise_is_a_matrix_vector_product_of_any_threads(rng, shape, wshape, kw,
                                                                       dtype):
    # a squeeze-excitation's layers: dot products, no GEMM (the GEMM of one
    # column packed the whole weight on every call)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    conv = CONV[len(wshape) - 2]
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(conv(x, w, b, algorithm="im2col", **kw))
    finally:
        numba.set_num_threads(previous)
    assert_matches_reference(results[0], x, w, b, **kw)
    np.testing.assert_array_equal(results[0], results[1])
    # with the fused epilogue and no bias
    y = conv(x, w, None, algorithm="im2col", activation="relu", **kw)
    ref = np.maximum(nc.conv_reference(x, w, None, **kw), 0)
    bound = tolerance(x, w, None, dtype, "im2col", **kw)
    assert np.all(np.abs(y - ref) <= bound)


def test_strided_pointwise_uses_the_tiles(monkeypatch, rng):
    calls = []
    original = im2col_cpu.im2col_conv
    monkeypatch.setattr(im2col_cpu, "im2col_conv",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 4, 1, 1)).astype(np.float32)
    y = nc.conv2d(x, w, stride=2, algorithm="im2col")
    assert calls and y.shape == (1, 3, 3, 3)
    assert_matches_reference(y, x, w, stride=2)


# ---------------------------------------------------------------------------
# thread pools: the result does not depend on how the threads are arranged
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape, wshape, kw", [
    ((2, 16, 13, 15), (24, 16, 3, 3), dict(padding=1)),               # BLAS product
    ((2, 8, 13, 15), (8, 1, 3, 3), dict(padding=1, groups=8)),        # numba product
    ((2, 16, 9, 11), (12, 16, 1, 1), {}),                              # pointwise GEMM
])
def test_thread_arrangements_give_the_same_result(rng, shape, wshape, kw):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[0]).astype(np.float32)
    previous = numba.get_num_threads()
    results = []
    try:
        for numba_threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(numba_threads)
            for blas_threads in (1, 2):
                with threadpool_limits(blas_threads, user_api="blas"):
                    results.append(nc.conv2d(x, w, b, algorithm="im2col", **kw))
    finally:
        numba.set_num_threads(previous)
    for y in results:
        assert_matches_reference(y, x, w, b, **kw)
        # on any CPU: the plan is the pool's and BLAS is held at one thread
        # inside the call, whatever limit is set around it (Note [GEMM shapes])
        assert np.array_equal(y, results[0])


def test_blas_thread_limit_is_restored(rng):
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    with threadpool_limits(2, user_api="blas"):
        nc.conv2d(x, w, algorithm="im2col")
        from threadpoolctl import threadpool_info
        assert all(lib["num_threads"] == 2 for lib in threadpool_info()
                   if lib["user_api"] == "blas")


# ---------------------------------------------------------------------------
# memory: a large input runs in bounded scratch
# ---------------------------------------------------------------------------

def test_large_input_peak_memory_stays_bounded():
    """A 3x3 layer whose whole column matrix would be 9x the input (576 MiB)
    runs under a 4 MiB workspace limit; peak RSS grows by about the input,
    output and weight, not by the column matrix."""
    script = textwrap.dedent("""
        import json, resource
        import numpy as np
        import numbaconv as nc
        x = np.ones((1, 16, 32, 32), np.float32); w = np.ones((16, 16, 3, 3), np.float32)
        nc.conv2d(x, w, padding=1, algorithm="im2col")          # load the kernels
        nc.set_workspace_limit(4 * 2**20)
        x = np.ones((1, 64, 512, 512), np.float32)              # 64 MiB
        w = np.ones((64, 64, 3, 3), np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        y = nc.conv2d(x, w, padding=1, algorithm="im2col")      # 64 MiB out
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"growth_mib": (after - before) / 1024, "ok": bool(y[0, 0, 5, 5] == 576)}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"]
    # the input (64 MiB) was resident before; the output (64 MiB) and the
    # workspace (4 MiB) are new; the full column matrix would be 576 MiB
    assert result["growth_mib"] < 64 + 4 + 24, result


def test_short_reductions_split_rows_not_the_reduction():
    """Note [short reductions]: a weight gradient reducing over fewer than
    4 K (batch x output pixels) gives the pool's threads row blocks and one
    segment; a long reduction keeps its segments.  Either way the result is
    the reference's within the elementwise bound."""
    from numbaconv.algorithms.im2col import plan_grad_weight
    from numbaconv.spec import problem_spec
    short = problem_spec((1, 64, 8, 8), (96, 64, 1, 1), stride=2, gradient="weight")
    plan = plan_grad_weight(short, 4, pool=2)
    assert (plan.segments, plan.rows) == (1, 32)
    long = problem_spec((4, 8, 16, 16), (16, 8, 3, 3), padding=1, gradient="weight")
    assert plan_grad_weight(long, 4, pool=2).segments == 2
    rng = np.random.default_rng(7)
    for spec, kw in ((short, dict(stride=2)), (long, dict(padding=1))):
        x = rng.standard_normal(spec.input_shape).astype(np.float32)
        g = rng.standard_normal(spec.output_shape).astype(np.float32)
        got = nc.grad.conv2d_weight(x, spec.weight_shape, g, algorithm="im2col", **kw)
        ref = nc.conv_grad_weight_reference(x, spec.weight_shape, g, **kw)
        scale = nc.conv_grad_weight_reference(np.abs(x), spec.weight_shape, np.abs(g), **kw)
        assert np.all(np.abs(got - ref) <= 16 * np.finfo(np.float32).eps * scale)


@pytest.mark.parametrize("shape, wshape, kw", [
    ((1, 96, 1, 1), (24, 96, 1, 1), {}),                        # short: the numba loop
    ((1, 40, 2, 3), (60, 20, 1, 1), dict(groups=2)),
    ((1, 24, 7, 7), (72, 24, 1, 1), {}),                        # a GEMM per row block
    ((1, 12, 5, 6, 7), (9, 4, 1, 1, 1), dict(groups=3, dilation=2)),
    ((9, 17), (5, 9, 1), {}),                                   # unbatched
    ((3, 24, 7, 7), (72, 24, 1, 1), {}),                        # images added in order
    ((4, 96, 1, 1), (24, 96, 1, 1), {}),                        # the loop over images
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_weight_gradient_reads_the_arrays_in_place(monkeypatch, rng, shape, wshape,
                                                             kw, dtype):
    """Note [pointwise weight gradient]: no column tiles, the reference's
    values within the elementwise bound, the same bits on 1 and 2 threads."""
    def no_tiles(*args, **kwargs):
        raise AssertionError("the pointwise weight gradient filled column tiles")
    monkeypatch.setattr(im2col_cpu, "im2col_grad_weight", no_tiles)
    x = rng.standard_normal(shape).astype(dtype)
    channel_axis = len(shape) - (len(wshape) - 1)           # 0 when unbatched
    g_shape = shape[:channel_axis] + (wshape[0],) + shape[channel_axis + 1:]
    g = rng.standard_normal(g_shape).astype(dtype)
    weight_grad = {1: nc.grad.conv1d_weight, 2: nc.grad.conv2d_weight,
                   3: nc.grad.conv3d_weight}[len(wshape) - 2]
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(weight_grad(x, wshape, g, algorithm="im2col", **kw))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    ref = nc.conv_grad_weight_reference(x, wshape, g, **kw)
    scale = nc.conv_grad_weight_reference(np.abs(x), wshape, np.abs(g), **kw)
    assert np.all(np.abs(results[0] - ref) <= 16 * np.finfo(dtype).eps * scale)


@pytest.mark.parametrize("shape, wshape, kw, served", [
    ((1, 24, 28, 28), (72, 24, 1, 1), {}, True),                # one image: always
    ((2, 24, 14, 14), (72, 24, 1, 1), {}, True),                # short reductions
    ((2, 24, 28, 28), (72, 24, 1, 1), {}, False),               # long ones keep the tiles
    ((8, 96, 1, 1), (24, 96, 1, 1), {}, True),                  # a small squeeze-excitation
    ((8, 960, 1, 1), (240, 960, 1, 1), {}, False),              # a large one
    ((1, 24, 7, 7), (72, 24, 1, 1), dict(memory_format="channels_last"), False),
    ((1, 24, 7, 7), (72, 24, 1, 1), dict(stride=2), False),     # not pointwise
])
def test_which_weight_gradients_take_the_pointwise_gemms(shape, wshape, kw, served):
    spec = nc.spec.problem_spec(shape, wshape, gradient="weight", **kw)
    assert im2col.pointwise_grad_weight_serves(spec) is served
    plan = im2col.IM2COL.plan(spec, nc.context.current_context())
    assert isinstance(plan.detail, im2col.PointwiseGradPlan) is served


@pytest.mark.parametrize("cin, cout, groups", [(96, 24, 1), (40, 60, 2), (6, 4, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pixel_transposed_pointwise_is_a_vector_matrix_product(monkeypatch, rng, cin, cout,
                                                                   groups, dtype):
    """A squeeze-excitation layer's input gradient, and a transposed 1x1
    convolution of one pixel with its epilogue: no GEMM (the rows form's
    GEMM of one row packed the whole weight), the reference's values, the
    same bits on 1 and 2 threads."""
    def no_gemm(*args, **kwargs):
        raise AssertionError("the one-pixel transposed problem ran the rows form's GEMM")
    monkeypatch.setattr(im2col.im2col_transposed, "transposed_rows", no_gemm)
    w = rng.standard_normal((cout, cin // groups, 1, 1)).astype(dtype)
    g = rng.standard_normal((1, cout, 1, 1)).astype(dtype)
    spec = nc.spec.problem_spec((1, cin, 1, 1), w.shape, groups=groups, gradient="input")
    assert isinstance(im2col.IM2COL.plan(spec, nc.context.current_context()).detail,
                      im2col.OnePixelPlan)
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(nc.grad.conv2d_input((1, cin, 1, 1), w, g, groups=groups,
                                                algorithm="im2col"))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    ref = nc.conv_transpose_reference(g, w, None, groups=groups)
    scale = nc.conv_transpose_reference(np.abs(g), np.abs(w), None, groups=groups)
    assert np.all(np.abs(results[0] - ref) <= 16 * np.finfo(dtype).eps * scale)
    b = rng.standard_normal(cin).astype(dtype)
    y = nc.conv_transpose2d(g, w, b, groups=groups, algorithm="im2col", activation="relu")
    ref = np.maximum(nc.conv_transpose_reference(g, w, b, groups=groups), 0)
    assert np.all(np.abs(y - ref) <= 16 * np.finfo(dtype).eps * (scale + np.abs(b)[:, None, None]))


@pytest.mark.parametrize("shape, groups", [((64, 32, 1, 1, 1), 1), ((40, 6, 1, 1, 1), 4),
                                           ((8, 4, 3, 3, 1), 2)])
def test_a_transposed_1x1_weight_is_rewritten_by_blocked_transposes(monkeypatch, shape, groups):
    """rewrites.transposed_weight with the host's blocked transposes gives
    NumPy's copy to the bit (a copy changes no value), and a 1x1 layer's
    input gradient that runs as a forward problem takes them: NumPy's
    transposing copy of a 512 x 1024 weight took 3.8 ms, 16x the blocked
    one (docs/results-im2col.md, "Transposed 1x1 weights")."""
    from numbaconv import rewrites
    from numbaconv.backends import host
    w = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(
        rewrites.transposed_weight(w, groups, transpose=host._transposed_matrices),
        rewrites.transposed_weight(w, groups))
    calls = []
    real = host._transposed_matrices
    monkeypatch.setattr(host, "_transposed_matrices", lambda m: calls.append(m.shape) or real(m))
    weight = np.random.default_rng(6).standard_normal((512, 1024, 1, 1)).astype(np.float32)
    g = np.random.default_rng(7).standard_normal((1, 512, 14, 14)).astype(np.float32)
    spec = nc.spec.problem_spec((1, 1024, 14, 14), weight.shape, gradient="input")
    plan = im2col.IM2COL.plan(spec, nc.context.current_context())
    got = nc.grad.conv2d_input((1, 1024, 14, 14), weight, g, algorithm="im2col")
    assert isinstance(plan.detail, im2col.ForwardOfTransposed)       # the rewritten weight
    assert calls == [(1, 512, 1024)]
    ref = nc.grad.conv2d_input((1, 1024, 14, 14), weight.astype(np.float64),
                               g.astype(np.float64), algorithm="direct")
    scale = nc.grad.conv2d_input((1, 1024, 14, 14), np.abs(weight).astype(np.float64),
                                 np.abs(g).astype(np.float64), algorithm="direct")
    assert np.all(np.abs(got - ref) <= 16 * np.finfo(np.float32).eps * scale)
