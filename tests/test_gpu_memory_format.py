"""Channels-last arrays on the GPU, under numba's CUDA simulator.

A channels-last GPU array (the logical ``(N, C, ...)`` view of dense
``(N, ..., C)`` device memory) is packed on the device by one transposing
kernel, the GPU algorithms run the contiguous problem, and the result is
transposed once into a channels-last array (Note [GPU memory format] in
numbaconv/cuda/arrays.py).  So every result here must be *bit-identical*
to the same call on C-contiguous device arrays -- the same kernels run on
the same canonical values, the copies only move them -- and in the
channels-last format (its strides are checked).  Each case is also
checked against the float64 reference with the bounds of
tests/test_gpu.py.  The cases are tiny: the simulator runs every GPU
thread as a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import numbaconv as nc
from numbaconv.algorithms import get_algorithm
from numbaconv.spec import memory_format_of, problem_spec

from .conftest import needs_numba_cuda
from .test_gpu import GPU_ALGORITHMS, _arrays, _bound

# the cuda extra (numba-cuda), or skip saying why (tests/conftest.py)
pytestmark = needs_numba_cuda


def _dev_cl(x, ndim=None):
    """``x`` (logical (N, C, ...) or unbatched (C, ...)) on the device as a
    channels-last array: C-contiguous (N, ..., C) memory viewed with the
    logical axes, as a PyTorch channels_last tensor arrives through
    ``__cuda_array_interface__``."""
    from numbaconv.cuda import arrays
    ndim = x.ndim - 2 if ndim is None else ndim
    axis = x.ndim - ndim - 1
    memory = cuda.to_device(np.ascontiguousarray(np.moveaxis(x, axis, -1)))
    strides = tuple(memory.strides)
    view = arrays.strided_view(memory, x.shape, strides[:axis] + strides[-1:] + strides[axis:-1])
    assert memory_format_of(view, ndim) == "channels_last"
    return view


def _dev(*arrays):
    return [None if a is None else cuda.to_device(a) for a in arrays]


def _cl_strides(shape, itemsize, ndim):
    """The strides of a dense channels-last array of the logical ``shape``."""
    axis = len(shape) - ndim - 1
    memory = shape[:axis] + shape[axis + 1:] + (shape[axis],)
    strides = np.empty(memory, dtype=np.dtype(f"V{itemsize}")).strides
    return strides[:axis] + strides[-1:] + strides[axis:-1]


def _check_cl(y, ndim):
    """``y`` is a numba device array laid out channels-last."""
    assert type(y).__module__.startswith("numba")
    assert tuple(y.strides) == _cl_strides(tuple(y.shape), y.dtype.itemsize, ndim), y.strides


def _serves(algorithm, spec, case=""):
    if get_algorithm(algorithm, "cuda").unsupported_reason(spec) is not None:
        pytest.skip(f"{algorithm} does not serve {case or spec.describe()}")


# ---------------------------------------------------------------------------
# the transposing copy itself
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("src_dtype, dst_dtype", [(np.float32, np.float32),
                                                  (np.float64, np.float64),
                                                  (np.float16, np.float32),
                                                  (np.float32, np.float16)])
def test_transpose_copy_moves_every_value_once(src_dtype, dst_dtype):
    """Sizes that are not multiples of the (shrunk, 4 x 4) tile, several
    tiles each way and several images: every value lands at its transposed
    place, converted to the destination dtype as NumPy's astype does (a
    float16 -> float32 widening is exact; float32 -> float16 rounds once);
    nothing outside the destination is written (its memory has a sentinel
    tail)."""
    from numbaconv.cuda import arrays
    src = np.random.default_rng(0).standard_normal((3, 7, 10)).astype(src_dtype)
    want = np.swapaxes(src, 1, 2).astype(dst_dtype)
    memory = cuda.to_device(np.full(3 * 10 * 7 + 5, 7.0, dtype=dst_dtype))
    dst = memory[:3 * 10 * 7].reshape(3, 10, 7)
    arrays.transpose_copy(cuda.to_device(src), dst, 0)
    got = memory.copy_to_host()
    assert np.array_equal(got[:-5].reshape(3, 10, 7), want)
    assert np.all(got[-5:] == 7.0)


# ---------------------------------------------------------------------------
# forward and transposed calls
# ---------------------------------------------------------------------------

#: (id, input shape, weight shape, kwargs)
FORWARD = [
    ("2d_groups", (2, 4, 5, 6), (6, 2, 3, 3), dict(padding=1, groups=2)),
    ("1d_stride", (2, 3, 9), (4, 3, 3), dict(stride=2, padding=1)),
    ("3d", (1, 2, 3, 4, 4), (3, 2, 3, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS)
@pytest.mark.parametrize("case, xs, ws, kw", FORWARD, ids=[c[0] for c in FORWARD])
def test_forward_channels_last_matches_contiguous(algorithm, case, xs, ws, kw):
    _serves(algorithm, problem_spec(xs, ws, **kw), case)
    ndim = len(xs) - 2
    conv = {1: nc.conv1d, 2: nc.conv2d, 3: nc.conv3d}[ndim]
    x, w, b = _arrays(xs, ws, seed=3)
    y = conv(_dev_cl(x), *_dev(w, b), algorithm=algorithm, **kw)
    _check_cl(y, ndim)
    plain = conv(*_dev(x, w, b), algorithm=algorithm, **kw).copy_to_host()
    got = y.copy_to_host()
    assert np.array_equal(got, plain)
    ref = nc.conv_reference(*(a.astype(np.float64) for a in (x, w, b)), **kw)
    assert np.all(np.abs(got - ref) <= _bound(algorithm, x, w, b, ref, **kw))


@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS)
def test_transposed_channels_last_matches_contiguous(algorithm):
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    xs, ws = (1, 4, 3, 4), (4, 1, 3, 3)
    _serves(algorithm, problem_spec(xs, ws, transposed=True, **kw))
    x, w, _ = _arrays(xs, ws, np.float64, bias=False, seed=4)
    b = np.random.default_rng(5).standard_normal(2)
    y = nc.conv_transpose2d(_dev_cl(x), *_dev(w, b), algorithm=algorithm, **kw)
    _check_cl(y, 2)
    got = y.copy_to_host()
    assert np.array_equal(got, nc.conv_transpose2d(*_dev(x, w, b), algorithm=algorithm,
                                                   **kw).copy_to_host())
    # float64 throughout: 1e-10 is some 10^5 ulps of these O(1) sums of 9 terms
    np.testing.assert_allclose(got, nc.conv_transpose_reference(x, w, b, **kw), rtol=1e-10,
                               atol=1e-10)


def test_channels_last_weight_is_packed_too():
    """PyTorch's channels_last models keep their weights channels-last: the
    weight is packed like an input (a transposed call's weight is rewritten
    on the host, whatever its strides)."""
    x, w, b = _arrays((1, 3, 5, 5), (4, 3, 3, 3), seed=6)
    plain = nc.conv2d(*_dev(x, w, b), padding=1).copy_to_host()
    assert np.array_equal(nc.conv2d(_dev_cl(x), _dev_cl(w), cuda.to_device(b),
                                    padding=1).copy_to_host(), plain)
    wt = np.random.default_rng(7).standard_normal((3, 2, 3, 3)).astype(np.float32)
    assert np.array_equal(nc.conv_transpose2d(_dev_cl(x), _dev_cl(wt), stride=2).copy_to_host(),
                          nc.conv_transpose2d(*_dev(x, wt), stride=2).copy_to_host())


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_gradients_channels_last(algorithm):
    """The input gradient in grad_output's format, the weight gradient
    canonical; grad_output in either format for the weight gradient."""
    kw = dict(stride=2, padding=1, groups=2)
    x, w, _ = _arrays((1, 4, 5, 5), (4, 2, 3, 3), np.float64, bias=False, seed=8)
    g = np.random.default_rng(9).standard_normal((1, 4, 3, 3))
    gi = nc.grad.conv2d_input(x.shape, cuda.to_device(w), _dev_cl(g), algorithm=algorithm, **kw)
    _check_cl(gi, 2)
    plain = nc.grad.conv2d_input(x.shape, *_dev(w, g), algorithm=algorithm, **kw)
    assert np.array_equal(gi.copy_to_host(), plain.copy_to_host())
    np.testing.assert_allclose(gi.copy_to_host(),
                               nc.conv_grad_input_reference(x.shape, w, g, **kw),
                               rtol=1e-10, atol=1e-10)
    plain_gw = nc.grad.conv2d_weight(*_dev(x), w.shape, *_dev(g), algorithm=algorithm,
                                     **kw).copy_to_host()
    np.testing.assert_allclose(plain_gw, nc.conv_grad_weight_reference(x, w.shape, g, **kw),
                               rtol=1e-10, atol=1e-10)
    for xd, gd in ((_dev_cl(x), _dev_cl(g)), (_dev_cl(x), cuda.to_device(g)),
                   (cuda.to_device(x), _dev_cl(g))):
        gw = nc.grad.conv2d_weight(xd, w.shape, gd, algorithm=algorithm, **kw)
        assert gw.is_c_contiguous() and gw.shape == w.shape
        assert np.array_equal(gw.copy_to_host(), plain_gw)


def test_conv_backward_channels_last():
    """Every gradient of conv_backward (with a fused activation's derivative
    folded in on a host copy; transposed, with the output_padding crop and
    zero extension that run on host copies) keeps the format, and equals
    the contiguous GPU call."""
    x, w, _ = _arrays((1, 4, 5, 5), (6, 2, 3, 3), np.float64, bias=False, seed=10)
    g = np.random.default_rng(11).standard_normal((1, 6, 3, 3))
    kw = dict(stride=2, padding=1, groups=2, activation="relu")
    y = nc.conv2d(x, w, **kw)
    got = nc.conv_backward(_dev_cl(x), cuda.to_device(w), _dev_cl(g), output=_dev_cl(y), **kw)
    want = nc.conv_backward(*_dev(x, w, g), output=cuda.to_device(y), **kw)
    _check_cl(got[0], 2)
    for a, b in zip(got[:2], want[:2]):
        assert np.array_equal(a.copy_to_host(), b.copy_to_host())
    # the bias gradient is summed in memory order, which the format changes:
    # the last bits differ (9 float64 terms of |g| < 5: 1e-12 is some 100 ulps)
    np.testing.assert_allclose(got[2].copy_to_host(), want[2].copy_to_host(), rtol=0,
                               atol=1e-12)
    for a, r in zip(got, nc.conv_backward(x, w, g, output=y, **kw)):
        np.testing.assert_allclose(a.copy_to_host(), r, rtol=1e-10, atol=1e-10)
    xt, wt, _ = _arrays((1, 2, 3, 3), (2, 2, 3, 3), np.float64, bias=False, seed=12)
    tk = dict(stride=2, dilation=3, output_padding=2, transposed=True)
    gt = np.random.default_rng(13).standard_normal(
        nc.conv_transpose_reference(xt, wt, stride=2, dilation=3, output_padding=2).shape)
    got = nc.conv_backward(_dev_cl(xt), cuda.to_device(wt), _dev_cl(gt), **tk)
    _check_cl(got[0], 2)
    for i, (a, b, r) in enumerate(zip(got, nc.conv_backward(*_dev(xt, wt, gt), **tk),
                                      nc.conv_backward(xt, wt, gt, **tk))):
        if i < 2:
            assert np.array_equal(a.copy_to_host(), b.copy_to_host())
        np.testing.assert_allclose(a.copy_to_host(), r, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# out=, unbatched, float16, residual
# ---------------------------------------------------------------------------

def test_out_unbatched_and_float16_channels_last():
    x, w, b = _arrays((3, 6, 5), (2, 3, 3, 3), np.float16, seed=14)
    y = nc.conv2d(_dev_cl(x, 2), *_dev(w, b), padding=1)
    assert y.dtype == np.float16 and y.shape == (2, 6, 5)
    _check_cl(y, 2)
    plain = nc.conv2d(*_dev(x, w, b), padding=1).copy_to_host()
    assert np.array_equal(y.copy_to_host(), plain)
    # float16 rounds the float32 result once: half an ulp; one ulp of float16
    # leaves the float32 sum's error (some 2^-20 relative) room enough
    ref = nc.conv_reference(*(a.astype(np.float64) for a in (x[None], w, b)), padding=1)[0]
    assert np.all(np.abs(y.copy_to_host() - ref) <= np.spacing(np.abs(ref).astype(np.float16)))
    for dtype in (np.float16, np.float32):       # a cast into out=, and the compute dtype
        out = _dev_cl(np.zeros((2, 6, 5), dtype), 2)
        xs = x.astype(dtype)
        got = nc.conv2d(_dev_cl(xs, 2), *_dev(w.astype(dtype), b.astype(dtype)), padding=1,
                        out=out)
        assert got is out
        _check_cl(out, 2)
        assert np.array_equal(out.copy_to_host(),
                              nc.conv2d(*_dev(xs, w.astype(dtype), b.astype(dtype)),
                                        padding=1).copy_to_host())
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    out = _dev_cl(np.zeros((1, 2, 6, 5)))
    assert nc.conv2d(_dev_cl(x64[None]), *_dev(w64, b64), padding=1, out=out) is out
    np.testing.assert_allclose(out.copy_to_host(),
                               nc.conv_reference(x64[None], w64, b64, padding=1), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("x_cl, r_cl", [(True, True), (True, False), (False, True)])
def test_residual_in_either_format(x_cl, r_cl):
    """The output follows the input; a residual in the other format is
    packed (or read in place) all the same: bit-identical to the call with
    contiguous arrays."""
    x, w, b = _arrays((2, 3, 5, 5), (4, 3, 3, 3), seed=16)
    r = np.random.default_rng(17).standard_normal((2, 4, 5, 5)).astype(np.float32)
    kw = dict(padding=1, activation="relu")
    y = nc.conv2d(_dev_cl(x) if x_cl else cuda.to_device(x), *_dev(w, b),
                  residual=_dev_cl(r) if r_cl else cuda.to_device(r), **kw)
    if x_cl:
        _check_cl(y, 2)
    else:
        assert y.is_c_contiguous()
    got = y.copy_to_host()
    assert np.array_equal(got, nc.conv2d(*_dev(x, w, b), residual=cuda.to_device(r),
                                         **kw).copy_to_host())
    ref = np.maximum(nc.conv_reference(*(a.astype(np.float64) for a in (x, w, b)), padding=1)
                     + r, 0)
    bound = (_bound("direct", x, w, b, ref, padding=1)
             + 16 * float(np.finfo(np.float32).eps) * np.abs(r))
    assert np.all(np.abs(got - ref) <= bound)


def test_out_in_the_other_format_is_refused():
    x, w, _ = _arrays((1, 3, 5, 5), (4, 3, 3, 3), seed=18)
    with pytest.raises(ValueError, match=r"conv2d: out must be channels-last contiguous, as "
                                         r"the call's input is channels_last.*out.strides="):
        nc.conv2d(_dev_cl(x), cuda.to_device(w), padding=1,
                  out=cuda.device_array((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d: out must be C-contiguous, as the call's "
                                         r"input is contiguous.*out.strides="):
        nc.conv2d(*_dev(x, w), padding=1, out=_dev_cl(np.zeros((1, 4, 5, 5), np.float32)))
    # strides that are neither format are still refused, naming the argument
    with pytest.raises(ValueError, match="residual must be a C-contiguous GPU array or a "
                                         "channels-last one"):
        nc.conv2d(*_dev(x, w), padding=1,
                  residual=cuda.to_device(np.zeros((1, 4, 5, 10), np.float32))[..., ::2])
    # channels-last only as an unbatched 3-D array (batch axis last in memory):
    # not conv2d's format, so refused when the call's rank is known
    from numbaconv.cuda import arrays
    xb = np.random.default_rng(19).standard_normal((2, 3, 5, 5)).astype(np.float32)
    memory = cuda.to_device(np.ascontiguousarray(np.moveaxis(xb, 0, -1)))
    s0, s1, s2, s3 = memory.strides
    odd = arrays.strided_view(memory, xb.shape, (s3, s0, s1, s2))
    with pytest.raises(ValueError, match="conv2d: input must be a C-contiguous GPU array or a "
                                         "channels-last one with 2 spatial axes"):
        nc.conv2d(odd, cuda.to_device(w), padding=1)


# ---------------------------------------------------------------------------
# choosing, and the algorithms' own interface
# ---------------------------------------------------------------------------

def test_gpu_plans_report_the_format_and_the_packing():
    from numbaconv.algorithms.gpu import DEVICE_PACK_SECONDS_PER_BYTE
    from numbaconv.algorithms.registry import packed_bytes
    shapes = ((2, 16, 12, 12), (8, 16, 3, 3))
    spec = problem_spec(*shapes, padding=1, memory_format="channels_last")
    plain = {c.algorithm: c for c in nc.choose_algorithm(*shapes, padding=1,
                                                         device="cuda").candidates}
    choice = nc.choose_algorithm(*shapes, padding=1, device="cuda",
                                 memory_format="channels_last")
    assert "memory_format='channels_last'" in choice.problem
    for c in choice.candidates:
        if c.seconds is None:
            continue
        assert c.path.endswith("packed on the device from channels-last")
        assert c.seconds == pytest.approx(plain[c.algorithm].seconds
                                          + DEVICE_PACK_SECONDS_PER_BYTE * packed_bytes(spec))
    # the same packing for every algorithm: the same pick as the contiguous problem
    assert choice.algorithm == nc.choose_algorithm(*shapes, padding=1, device="cuda").algorithm
    assert "memory_format='channels_last'" in nc.explain(
        *shapes, padding=1, device="cuda", memory_format="channels_last").splitlines()[0]


def test_a_gpu_algorithm_refuses_a_channels_last_spec():
    """Only the backend packs: an algorithm handed a channels-last spec
    directly says so rather than misread NDHWC arrays as canonical ones."""
    from numbaconv.epilogue import Epilogue
    spec = problem_spec((1, 2, 4, 4), (3, 2, 3, 3), memory_format="channels_last")
    x = cuda.to_device(np.zeros(spec.run_input_shape, np.float32))
    w = cuda.to_device(np.zeros((3, 2, 1, 3, 3), np.float32))
    out = cuda.device_array(spec.run_output_shape, np.float32)
    with pytest.raises(ValueError, match="the CUDA backend packs channels-last calls"):
        get_algorithm("direct", "cuda").run(spec, x, w, Epilogue.of(None, np.float32), out)


def test_tuning_times_the_contiguous_problem_on_the_gpu(tmp_path, monkeypatch):
    """The GPU algorithms run the contiguous spec (the backend packs around
    them), so tuning a channels-last GPU problem times that spec -- handing
    them the channels-last one would be refused -- and keeps the answer
    under the channels-last key."""
    from numbaconv import tuning
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    tuned = nc.tune((1, 2, 4, 4), (2, 2, 3, 3), padding=1, device="cuda",
                    memory_format="channels_last")
    assert "channels_last" in tuned.problem and tuned.algorithm in GPU_ALGORITHMS
    assert set(tuned.seconds) == set(GPU_ALGORITHMS)
    spec = problem_spec((1, 2, 4, 4), (2, 2, 3, 3), padding=1, memory_format="channels_last")
    assert '"memory_format":"channels_last"' in tuning.cache_key(spec, "cuda")
    assert tuning.cache_key(spec, "cuda") in tuning._entries()
