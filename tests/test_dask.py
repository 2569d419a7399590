"""numbaconv.dask: convolution of dask arrays, block by block (Note [halo]).

What is checked, on the threaded scheduler and on a real
``dask.distributed.LocalCluster`` bound to loopback:

* forward and transposed results against the single-machine
  ``numbaconv.conv*`` on the same arrays: bit for bit with
  ``algorithm="direct"`` (every output is computed from the same values in
  the same order, Note [halo]), within the algorithm's tolerance where the
  summation order depends on the blocks (input-channel chunks, whose partial
  sums are added in a tree, and the transform algorithms); the bound there
  is twice the elementwise bound of tests/conftest.py, ``2 * 16 eps * S``,
  since both sides are within ``16 eps * S`` of the exact result;
* chunkings: batch only, spatial chunks smaller than the kernel, chunk
  boundaries inside the halo, odd strides, dilation, every padding mode,
  unbatched input, channel chunks with and without groups, 1-D and 3-D;
* the graph: the weight is one task every block depends on; task counts;
* clear errors for unsupported combinations;
* on a cluster, workers load the compiled kernels from numba's disk cache
  instead of compiling them.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import numbaconv as nc  # noqa: E402
import numbaconv.dask as ncd  # noqa: E402

from .conftest import EPS  # noqa: E402

FORWARD = {1: nc.conv1d, 2: nc.conv2d, 3: nc.conv3d}
TRANSPOSED = {1: nc.conv_transpose1d, 2: nc.conv_transpose2d, 3: nc.conv_transpose3d}


def arrays(rng, shape, wshape, transposed=False, groups=1, dtype=np.float32):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    out_channels = wshape[1] * groups if transposed else wshape[0]
    b = rng.standard_normal(out_channels).astype(dtype)
    return x, w, b


def run_both(x, w, b, chunks, kw, transposed=False, algorithm="direct", scheduler="threads"):
    ndim = w.ndim - 2
    single = (TRANSPOSED if transposed else FORWARD)[ndim]
    dask_fn = getattr(ncd, f"conv_transpose{ndim}d" if transposed else f"conv{ndim}d")
    expected = single(x, w, b, algorithm=algorithm, **kw)
    lazy = dask_fn(da.from_array(x, chunks=chunks), w, b, algorithm=algorithm, **kw)
    assert isinstance(lazy, da.Array)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    return lazy, lazy.compute(scheduler=scheduler), expected


def within_tolerance(got, expected, x, w, b, kw, transposed=False):
    """|got - expected| <= 2 * 16 eps * S, S the convolution of |x|, |w| plus |b|."""
    ndim = w.ndim - 2
    single = (TRANSPOSED if transposed else FORWARD)[ndim]
    scale = single(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                   np.abs(b).astype(np.float64), algorithm="direct", **kw)
    bound = 2 * 16 * EPS[np.dtype(got.dtype)] * scale
    assert np.all(np.abs(got.astype(np.float64) - expected) <= bound)


FORWARD_CASES = [
    # name, input, chunks, weight, kwargs
    ("batch chunks only", (4, 8, 12, 13), (1, 8, 12, 13), (6, 8, 3, 3), dict(padding=1)),
    ("spatial chunks", (2, 8, 20, 22), (1, 8, 7, 9), (6, 8, 3, 3), dict(padding=1)),
    ("chunks smaller than the kernel", (1, 8, 17, 19), (1, 8, 2, 3), (4, 8, 5, 5),
     dict(padding=2)),
    ("boundaries inside the halo, stride 3", (2, 8, 21, 23), (2, 8, 5, 4), (4, 8, 3, 3),
     dict(padding=1, stride=3)),
    ("stride and dilation", (2, 8, 20, 22), (1, 8, 7, 9), (4, 8, 3, 3),
     dict(padding=2, stride=2, dilation=2)),
    ("asymmetric stride, dilation", (1, 8, 19, 24), (1, 8, 6, 5), (4, 8, 2, 3),
     dict(stride=(3, 1), dilation=(1, 3), padding=(0, 2))),
    ("reflect", (2, 8, 15, 16), (1, 8, 4, 5), (4, 8, 3, 3),
     dict(padding=1, padding_mode="reflect")),
    ("replicate, same", (2, 8, 15, 16), (1, 8, 4, 5), (4, 8, 4, 3),
     dict(padding="same", padding_mode="replicate")),
    ("circular, groups in whole chunks", (2, 8, 21, 23), (2, 4, 6, 6), (8, 2, 3, 3),
     dict(padding=1, groups=4, padding_mode="circular")),
    ("depthwise", (2, 8, 20, 22), (1, 8, 7, 9), (8, 1, 3, 3), dict(padding=1, groups=8)),
    ("depthwise stride 2", (2, 8, 20, 22), (1, 2, 7, 9), (16, 1, 3, 3),
     dict(padding=1, groups=8, stride=2)),
    ("1-D", (2, 8, 40), (1, 8, 7), (6, 8, 5), dict(padding=2, stride=2)),
    ("3-D", (1, 4, 9, 10, 11), (1, 4, 4, 3, 5), (5, 4, 3, 3, 3), dict(padding=1)),
    ("unbatched", (8, 19, 18), (8, 5, 6), (4, 8, 3, 3), dict(padding=1)),
    ("same, even kernel, zeros", (1, 8, 17, 16), (1, 8, 3, 4), (4, 8, 4, 6),
     dict(padding="same")),
    ("padding wider than the chunks", (1, 8, 12, 13), (1, 8, 3, 3), (4, 8, 3, 3),
     dict(padding=5, stride=2)),
]


@pytest.mark.parametrize("name, shape, chunks, wshape, kw", FORWARD_CASES,
                         ids=[c[0] for c in FORWARD_CASES])
def test_forward_equals_one_machine_bit_for_bit(rng, name, shape, chunks, wshape, kw):
    x, w, b = arrays(rng, shape, wshape)
    _, got, expected = run_both(x, w, b, chunks, kw)
    assert np.array_equal(got, expected)


TRANSPOSED_CASES = [
    ("stride 2, output padding", (2, 16, 10, 11), (1, 16, 4, 3), (16, 8, 3, 3),
     dict(padding=1, stride=2, output_padding=1)),
    ("kernel 4 stride 2", (2, 16, 10, 11), (1, 16, 4, 3), (16, 8, 4, 4),
     dict(padding=1, stride=2)),
    ("stride over the kernel", (2, 16, 10, 11), (1, 16, 4, 3), (16, 8, 2, 2), dict(stride=4)),
    ("dilation, odd stride", (1, 16, 9, 8), (1, 16, 2, 3), (16, 4, 3, 3),
     dict(padding=2, dilation=2, stride=3, output_padding=2)),
    ("1-D", (2, 8, 30), (1, 8, 4), (8, 4, 5), dict(stride=3, padding=2)),
    ("3-D", (1, 8, 5, 6, 7), (1, 8, 2, 3, 3), (8, 4, 3, 3, 3), dict(stride=2, padding=1)),
]


@pytest.mark.parametrize("name, shape, chunks, wshape, kw", TRANSPOSED_CASES,
                         ids=[c[0] for c in TRANSPOSED_CASES])
def test_transposed_equals_one_machine_within_rounding(rng, name, shape, chunks, wshape, kw):
    # not bit for bit: a transposed block handles its own padding (docs/dask.md)
    x, w, b = arrays(rng, shape, wshape, transposed=True)
    _, got, expected = run_both(x, w, b, chunks, kw, transposed=True)
    within_tolerance(got, expected, x, w, b, kw, transposed=True)


def test_transposed_one_pixel_chunks_agree_within_rounding():
    """Found by test_fuzz_chunkings_equal_one_machine: a transposed 2x2
    input in 1-pixel chunks, whose blocks each handle their own padding,
    rounds one output differently in the last bit (-0.5815415 against
    -0.5815414): the same sums within the bound, not the same bits."""
    x, w, b = arrays(np.random.default_rng(0), (1, 1, 2, 2), (1, 1, 2, 2), transposed=True)
    kw = dict(padding=(0, 1))
    _, got, expected = run_both(x, w, b, (1, 1, 1, 1), kw, transposed=True)
    within_tolerance(got, expected, x, w, b, kw, transposed=True)
    assert np.abs(got - expected).max() <= 2 * np.spacing(np.abs(expected)).max()


def test_strided_phase_planes_blocks_of_odd_width_agree_within_rounding():
    """Found by test_fuzz_chunkings_equal_one_machine: a (1, 1, 2, 6) input,
    2x2 kernel, stride (1, 2), in 1-pixel chunks; the whole problem runs
    phase planes, a block of odd width cannot, and rounds one output
    differently in the last bit."""
    x, w, b = arrays(np.random.default_rng(0), (1, 1, 2, 6), (1, 1, 2, 2))
    kw = dict(stride=(1, 2))
    _, got, expected = run_both(x, w, b, (1, 1, 1, 1), kw)
    within_tolerance(got, expected, x, w, b, kw)
    assert not _blocks_run_whole_order(x.shape, w.shape, kw)


@pytest.mark.parametrize("transposed", [False, True])
def test_input_channel_chunks_add_partial_sums(rng, transposed):
    if transposed:
        x, w, b = arrays(rng, (2, 16, 9, 10), (16, 6, 3, 3), transposed=True)
        kw = dict(stride=2, padding=1, output_padding=1)
    else:
        x, w, b = arrays(rng, (2, 16, 13, 14), (6, 16, 3, 3))
        kw = dict(padding=1, stride=2)
    lazy, got, expected = run_both(x, w, b, (1, 5, 5, 6), kw, transposed=transposed)
    within_tolerance(got, expected, x, w, b, kw, transposed)
    # the four channel chunks' partial outputs meet in a tree of adds
    layers = lazy.__dask_graph__().layers
    assert any(name.startswith("sum-aggregate") or name.startswith("sum-partial")
               for name in layers) or any("sum" in name for name in layers)


@pytest.mark.parametrize("algorithm", ["im2col", "fft", "winograd", "auto"])
def test_other_algorithms_agree_within_tolerance(rng, algorithm):
    x, w, b = arrays(rng, (2, 8, 18, 20), (6, 8, 3, 3))
    kw = dict(padding=1)
    _, got, expected = run_both(x, w, b, (1, 8, 7, 6), kw, algorithm=algorithm)
    factor = 29 if algorithm == "winograd" else 16       # docs/choosing.md's error table
    scale = nc.conv2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                      np.abs(b).astype(np.float64), **kw)
    assert np.abs(got.astype(np.float64) - expected).max() <= 2 * factor * EPS[
        np.dtype(np.float32)] * scale.max()


def test_weight_is_one_task_every_block_depends_on(rng):
    x, w, b = arrays(rng, (4, 8, 20, 22), (6, 8, 3, 3))
    lazy = ncd.conv2d(da.from_array(x, chunks=(1, 8, 10, 11)), w, b, padding=1)
    graph = dict(lazy.__dask_graph__())
    holders = [key for key, task in graph.items()
               if isinstance(getattr(task, "value", None), np.ndarray)
               and task.value.shape == w.shape]
    assert len(holders) == 1
    blocks = [task for key, task in graph.items()
              if isinstance(key, tuple) and key[0].startswith("_forward_block")]
    assert len(blocks) == 4 * 2 * 2
    assert all(holders[0] in task.dependencies for task in blocks)


def test_typical_task_count(rng):
    """A 4-image batch in 2x2 spatial chunks: 16 blocks; the count stays
    within a few tasks per block (padding, rechunk, overlap, convolution)."""
    x, w, b = arrays(rng, (4, 8, 64, 64), (8, 8, 3, 3))
    lazy = ncd.conv2d(da.from_array(x, chunks=(1, 8, 32, 32)), w, b, padding=1)
    tasks = len(dict(lazy.__dask_graph__()))
    assert 16 < tasks <= 16 * 6          # measured: 85


class TestErrors:
    def test_numpy_input(self, rng):
        x, w, b = arrays(rng, (1, 2, 5, 5), (2, 2, 3, 3))
        with pytest.raises(TypeError, match=r"input must be a dask.array.Array, got ndarray"):
            ncd.conv2d(x, w)

    @pytest.mark.parametrize("which", ["weight", "bias"])
    def test_chunked_weight_or_bias(self, rng, which):
        x, w, b = arrays(rng, (1, 2, 5, 5), (2, 2, 3, 3))
        args = dict(weight=w, bias=b)
        args[which] = da.from_array(args[which], chunks=1)
        with pytest.raises(TypeError, match=rf"{which} must be a NumPy array"):
            ncd.conv2d(da.from_array(x), **args)

    def test_channel_chunks_that_split_a_group(self, rng):
        x, w, b = arrays(rng, (1, 8, 6, 6), (8, 2, 3, 3))
        with pytest.raises(ValueError, match=r"whole groups of 2 channels.*\(3, 5\)"):
            ncd.conv2d(da.from_array(x, chunks=(1, (3, 5), 6, 6)), w, groups=4)

    def test_parameters_are_checked_like_one_machine(self, rng):
        x, w, b = arrays(rng, (1, 6, 6, 6), (4, 2, 3, 3))
        with pytest.raises(ValueError, match=r"groups=4 must divide in_channels=6"):
            ncd.conv2d(da.from_array(x), w, groups=4)
        with pytest.raises(ValueError, match=r"algorithm"):
            ncd.conv2d(da.from_array(x), np.ones((4, 6, 3, 3), np.float32),
                       algorithm="nope")
        with pytest.raises(nc.UnsupportedAlgorithmError, match=r"stride"):
            ncd.conv2d(da.from_array(x), np.ones((4, 6, 3, 3), np.float32), stride=2,
                       algorithm="winograd")

    def test_wrong_rank(self, rng):
        with pytest.raises(ValueError, match=r"input must have 4 dimensions"):
            ncd.conv2d(da.ones((2, 3, 4, 5, 6)), np.ones((1, 3, 3, 3)))


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_on_a_local_cluster(rng, cluster_client):
    # the kernels these blocks use are in the disk cache already (computed
    # here first), as a warmed cache on a real cluster would be
    x, w, b = arrays(rng, (2, 8, 33, 30), (6, 8, 3, 3))
    kw = dict(padding=1, stride=2)
    expected = nc.conv2d(x, w, b, algorithm="direct", **kw)
    lazy = ncd.conv2d(da.from_array(x, chunks=(1, 8, 11, 10)), w, b, algorithm="direct", **kw)
    got = cluster_client.compute(lazy).result()
    assert np.array_equal(got, expected)
    xt, wt, bt = arrays(rng, (2, 8, 9, 10), (8, 4, 3, 3), transposed=True)
    kwt = dict(stride=2, padding=1, output_padding=1)
    lazy_t = ncd.conv_transpose2d(da.from_array(xt, chunks=(1, 8, 4, 3)), wt, bt,
                                  algorithm="direct", **kwt)
    within_tolerance(cluster_client.compute(lazy_t).result(),
                     nc.conv_transpose2d(xt, wt, bt, algorithm="direct", **kwt), xt, wt, bt, kwt,
                     transposed=True)

    def compiled_here():
        from numbaconv.kernels import direct_channels_last, direct_phase_planes
        kernels = (direct_channels_last._channels_last_chunk,
                   direct_phase_planes._phase_planes_chunk)
        return (sum(sum(k.stats.cache_hits.values()) for k in kernels),
                sum(sum(k.stats.cache_misses.values()) for k in kernels))

    for hits, misses in cluster_client.run(compiled_here).values():
        assert misses == 0 and hits >= 1


def test_example_runs_in_smoke_mode(tmp_path):
    """examples/dask_filter.py --smoke: a local cluster, the progress bar, the tile check."""
    import subprocess
    import sys
    from pathlib import Path
    example = Path(__file__).resolve().parents[1] / "examples" / "dask_filter.py"
    done = subprocess.run([sys.executable, str(example), "--smoke", "--out",
                           str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tile check against numbaconv.conv2d" in done.stdout
    assert (tmp_path / "out" / "dask_filter_preview.npy").exists()
    assert not (tmp_path / "dask_filter_preview.npy").exists()      # not in the cwd


# ---------------------------------------------------------------------------
# differential fuzzing of the chunking (issue 16)
# ---------------------------------------------------------------------------

import os  # noqa: E402

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: A tenth of the CPU fuzzers' examples (NUMBACONV_FUZZ_EXAMPLES, docs/hardening.md).
DASK_FUZZ_EXAMPLES = max(1, int(os.environ.get("NUMBACONV_FUZZ_EXAMPLES", "200")) // 10)


@st.composite
def chunked_problems(draw):
    """A random layer of rank 1-3 (forward in any padding mode, or
    transposed) on an input cut into random chunks along every spatial axis
    and the batch, and along the channels in half of the examples."""
    ndim = draw(st.integers(1, 3))
    transposed = draw(st.booleans())
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    pads = tuple(draw(st.integers(0, 3)) for _ in range(ndim))
    kw = dict(stride=stride, padding=pads, dilation=dilation, groups=groups)
    top = 14 if ndim < 3 else 7
    if transposed:
        kw["output_padding"] = tuple(draw(st.integers(0, max(s, d) - 1))
                                     for s, d in zip(stride, dilation))
        sizes = tuple(draw(st.integers(1, top)) for _ in range(ndim))
    else:
        mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
        kw["padding_mode"] = mode
        sizes = tuple(draw(st.integers(max(d * (k - 1) + 1, p + 1), top + d * (k - 1) + p))
                      for k, d, p in zip(kernel, dilation, pads))
    batch = draw(st.integers(1, 3))
    chunks = [draw(st.integers(1, batch))]
    chunks.append(draw(st.sampled_from([1, cin // groups, cin])) if draw(st.booleans())
                  else cin)
    chunks += [draw(st.integers(1, n)) for n in sizes]
    return ndim, transposed, (batch, cin) + sizes, cout, kernel, tuple(chunks), kw, \
        draw(st.integers(0, 2**32 - 1))


@settings(max_examples=DASK_FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(chunked_problems())
@example(problem=(1, False, (1, 2, 2), 1, (1,), (1, 2, 1),     # a 1-wide kernel, padded:
                  {"stride": (1,), "padding": (1,), "dilation": (1,), "groups": 1,  # other
                   "padding_mode": "zeros"}, 0))                    # orders in the blocks
def test_fuzz_chunkings_equal_one_machine(problem):
    """Forward layers in whole-channel chunks give direct's bits exactly, in
    channel chunks of whole groups too; channel chunks of a groups=1 layer
    (partial sums) and transposed layers agree within twice the
    single-machine bound."""
    ndim, transposed, shape, cout, kernel, chunks, kw, seed = problem
    rng = np.random.default_rng(seed)
    groups = kw["groups"]
    wshape = ((shape[1], cout // groups) if transposed else (cout, shape[1] // groups)) + kernel
    x, w, b = arrays(rng, shape, wshape, transposed=transposed, groups=groups)
    try:
        nc.spec.problem_spec(shape, wshape, transposed=transposed, **kw)
    except ValueError:
        return                                  # e.g. output_padding not below stride
    if groups > 1 and chunks[1] % (shape[1] // groups):
        with pytest.raises(ValueError, match="chunks"):
            run_both(x, w, b, chunks, kw, transposed=transposed)
        return
    _, got, expected = run_both(x, w, b, chunks, kw, transposed=transposed)
    if (chunks[1] == shape[1] or groups > 1) and not transposed and _blocks_run_whole_order(
            shape, wshape, kw):
        assert np.array_equal(got, expected)
    else:
        # a transposed block handles its own padding (the whole problem's
        # padding is cropped afterwards), and its kernel may then round an
        # output differently in the last bit (docs/dask.md); so may a block
        # that cannot take the whole problem's loop order
        within_tolerance(got, expected, x, w, b, kw, transposed)


def _blocks_run_whole_order(shape, wshape, kw):
    """Whether every block of the forward problem runs the whole problem's
    direct loop order.  The blocks convolve padded inputs without padding
    (Note [halo] in numbaconv/dask.py), so the unpadded problem of the
    padded input must take the whole's order: a 1-wide kernel with padding
    runs "planes" whole and "phase_planes" unpadded (found by the fuzzer).
    Phase planes with a column stride differ too (a block's width need not
    be a multiple of it; also found by the fuzzer)."""
    from numbaconv import rewrites
    from numbaconv.algorithms.direct import choose_loop_order
    spec = nc.spec.problem_spec(shape, wshape, **kw)
    whole = rewrites.cropped_spec(spec)
    if whole is None:
        return True
    unpadded = {k: v for k, v in kw.items() if k not in ("padding", "padding_mode")}
    blocks = nc.spec.problem_spec(shape[:2] + spec.padded_size, wshape, **unpadded)
    order = choose_loop_order(whole)
    return order == choose_loop_order(blocks) and (order != "phase_planes"
                                                   or whole.stride[-1] == 1)
