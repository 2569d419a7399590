"""The GPU path, end to end, under numba's CUDA simulator.

tests/conftest.py sets ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported
and shrinks every block and tile (``numbaconv.cuda.launch.use_small_blocks``),
so these tiny problems span several blocks and cross every tile edge.  The
simulator runs each GPU thread as a Python thread: the cases are small, and
each is checked against the float64 reference with the CPU tests' bound
(``|y - ref| <= 16 eps * S``, S the sum of absolute products; Winograd's
and fft's normwise bounds as in tests/conftest.py).  What needs a real GPU
(interop with CuPy and PyTorch through ``__cuda_array_interface__``, speed)
is in scripts/gpu_check.py, run on a GPU machine.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from numba import cuda

import numbaconv as nc
from numbaconv.algorithms import algorithm_names, get_algorithm

from .conftest import needs_numba_cuda

# the cuda extra (numba-cuda), or skip saying why (tests/conftest.py)
pytestmark = needs_numba_cuda

GPU_ALGORITHMS = [a for a in algorithm_names("cuda")[1:]
                  if get_algorithm(a, "cuda").unsupported_reason(
                      nc.spec.problem_spec((1, 1, 4, 4), (1, 1, 3, 3))) is None]

CONV = {1: nc.conv1d, 2: nc.conv2d, 3: nc.conv3d}
TRANSPOSED = {1: nc.conv_transpose1d, 2: nc.conv_transpose2d, 3: nc.conv_transpose3d}
GRAD_INPUT = {1: nc.grad.conv1d_input, 2: nc.grad.conv2d_input, 3: nc.grad.conv3d_input}
GRAD_WEIGHT = {1: nc.grad.conv1d_weight, 2: nc.grad.conv2d_weight, 3: nc.grad.conv3d_weight}

#: (id, input shape, weight shape, kwargs): small, but several tiles wide
FORWARD_CASES = [
    ("1d", (2, 3, 9), (4, 3, 3), dict(padding=1)),
    ("1d_stride_dilation", (1, 2, 11), (3, 2, 3), dict(stride=2, dilation=2, padding=2)),
    ("2d", (2, 3, 6, 7), (5, 3, 3, 3), dict(padding=1)),
    ("2d_groups_stride", (1, 4, 7, 6), (6, 2, 3, 3), dict(stride=2, padding=1, groups=2)),
    ("2d_depthwise", (1, 3, 5, 5), (3, 1, 3, 3), dict(padding=1, groups=3)),
    ("2d_reflect", (1, 2, 5, 6), (3, 2, 3, 3), dict(padding=1, padding_mode="reflect")),
    ("2d_circular", (1, 2, 5, 5), (2, 2, 3, 3), dict(padding=2, padding_mode="circular")),
    ("2d_replicate_5x5", (1, 1, 6, 6), (2, 1, 5, 5), dict(padding=2,
                                                           padding_mode="replicate")),
    ("2d_large_kernel", (1, 1, 8, 8), (1, 1, 23, 23), dict(padding=11)),
    ("3d", (1, 2, 4, 5, 5), (3, 2, 3, 3, 3), dict(padding=1)),
]


def _dev(*arrays):
    return [None if a is None else cuda.to_device(a) for a in arrays]


def _arrays(xs, ws, dtype=np.float32, bias=True, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    return x, w, b


def _bound(algorithm, x, w, b, ref, **kw):
    """The CPU tests' bound for ``algorithm``: elementwise 16 eps * S, or the
    transforms' normwise bound (tests/conftest.py)."""
    from .conftest import error_scale
    eps = float(np.finfo(np.float32 if x.dtype != np.float64 else np.float64).eps)
    S = error_scale(x, w, b, **kw)
    if algorithm in ("fft", "winograd", "winograd_f2"):
        factor = {"fft": 16.0, "winograd_f2": 16.0, "winograd": 64.0}[algorithm]
        return factor * eps * S.max() * np.ones_like(S)
    return 16.0 * eps * S


@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS)
@pytest.mark.parametrize("case, xs, ws, kw", FORWARD_CASES, ids=[c[0] for c in FORWARD_CASES])
def test_forward_matches_reference(algorithm, case, xs, ws, kw):
    if get_algorithm(algorithm, "cuda").unsupported_reason(
            nc.spec.problem_spec(xs, ws, **kw)) is not None:
        pytest.skip(f"{algorithm} does not serve {case}")
    x, w, b = _arrays(xs, ws)
    ref = nc.conv_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                            **kw)
    y = CONV[len(xs) - 2](*_dev(x, w, b), algorithm=algorithm, **kw)
    assert type(y).__module__.startswith("numba")
    err = np.abs(y.copy_to_host().astype(np.float64) - ref)
    pads = {k: v for k, v in kw.items() if k != "padding_mode"}
    if kw.get("padding_mode", "zeros") != "zeros":
        bound = 1e-4 * (1 + np.abs(ref))          # S needs the padded input: loose bound
    else:
        bound = _bound(algorithm, x, w, b, ref, **pads)
    assert np.all(err <= bound), f"max error {err.max():.3g}"


TRANSPOSED_CASES = [
    ("1d_s2", (1, 3, 5), (3, 2, 3), dict(stride=2, padding=1, output_padding=1)),
    ("2d_s2_groups", (1, 4, 4, 3), (4, 1, 3, 3), dict(stride=2, padding=1, groups=2)),
    ("2d_s1", (2, 2, 4, 4), (2, 3, 3, 3), dict(padding=1)),
    ("2d_negative_padding", (1, 2, 4, 4), (2, 2, 2, 2), dict(stride=2, padding=2)),
    ("3d_s2", (1, 2, 3, 3, 2), (2, 2, 2, 2, 2), dict(stride=2)),
]


@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS)
@pytest.mark.parametrize("case, xs, ws, kw", TRANSPOSED_CASES,
                         ids=[c[0] for c in TRANSPOSED_CASES])
def test_transposed_and_grad_input_match_reference(algorithm, case, xs, ws, kw):
    spec = nc.spec.problem_spec(xs, ws, transposed=True, **kw)
    if get_algorithm(algorithm, "cuda").unsupported_reason(spec) is not None:
        pytest.skip(f"{algorithm} does not serve {case}")
    x, w, _ = _arrays(xs, ws, np.float64, bias=False)
    b = np.random.default_rng(4).standard_normal(ws[1] * kw.get("groups", 1))
    ref = nc.conv_transpose_reference(x, w, b, **kw)
    y = TRANSPOSED[len(xs) - 2](*_dev(x, w, b), algorithm=algorithm, **kw)
    np.testing.assert_allclose(y.copy_to_host(), ref, rtol=1e-10, atol=1e-10)
    # the same problem as the input gradient of the forward convolution
    fkw = {k: v for k, v in kw.items() if k != "output_padding"}
    gi = GRAD_INPUT[len(xs) - 2](ref.shape, *_dev(w, x), algorithm=algorithm, **fkw)
    ref_gi = nc.conv_grad_input_reference(ref.shape, w, x, **fkw)
    assert gi.shape == ref.shape
    np.testing.assert_allclose(gi.copy_to_host(), ref_gi, rtol=1e-10, atol=1e-10)


GRAD_WEIGHT_CASES = [
    ("1d", (2, 2, 9), (3, 2, 3), dict(stride=2, padding=1)),
    ("2d_groups_dilation", (2, 4, 6, 6), (4, 2, 3, 3), dict(padding=2, dilation=2, groups=2)),
    ("3d", (1, 2, 4, 4, 4), (2, 2, 3, 3, 3), dict(padding=1)),
    ("batch0", (0, 2, 5, 5), (3, 2, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
@pytest.mark.parametrize("case, xs, ws, kw", GRAD_WEIGHT_CASES,
                         ids=[c[0] for c in GRAD_WEIGHT_CASES])
def test_grad_weight_matches_reference(algorithm, case, xs, ws, kw):
    x, w, _ = _arrays(xs, ws, np.float64, bias=False)
    go_shape = nc.conv_reference(x, w, **kw).shape
    g = np.random.default_rng(1).standard_normal(go_shape)
    ref = nc.conv_grad_weight_reference(x, ws, g, **kw)
    gw = GRAD_WEIGHT[len(xs) - 2](cuda.to_device(x), ws, cuda.to_device(g), algorithm=algorithm,
                                  **kw)
    np.testing.assert_allclose(gw.copy_to_host(), ref, rtol=1e-10, atol=1e-10)


def test_conv_backward_on_the_gpu():
    x, w, _ = _arrays((2, 4, 5, 5), (6, 2, 3, 3), np.float64, bias=False)
    g = np.random.default_rng(2).standard_normal((2, 6, 3, 3))
    gi, gw, gb = nc.conv_backward(*_dev(x, w, g), stride=2, padding=1, groups=2)
    ref = nc.conv_backward(x, w, g, stride=2, padding=1, groups=2)
    for got, want in zip((gi, gw, gb), ref):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-10, atol=1e-10)
    # transposed, with an output_padding the host path crops and extends for
    xt, wt, _ = _arrays((1, 2, 3, 3), (2, 2, 3, 3), np.float64, bias=False)
    gt = np.random.default_rng(3).standard_normal(
        nc.conv_transpose_reference(xt, wt, stride=2, dilation=3, output_padding=2).shape)
    kw = dict(stride=2, dilation=3, output_padding=2, transposed=True)
    got = nc.conv_backward(*_dev(xt, wt, gt), **kw)
    for a, want in zip(got, nc.conv_backward(xt, wt, gt, **kw)):
        np.testing.assert_allclose(a.copy_to_host(), want, rtol=1e-10, atol=1e-10)


def test_dtypes_unbatched_and_out():
    x, w, b = _arrays((3, 6, 6), (2, 3, 3, 3), np.float16)
    y = nc.conv2d(*_dev(x, w, b), padding=1)
    assert y.dtype == np.float16 and y.shape == (2, 6, 6)
    np.testing.assert_allclose(y.copy_to_host(), nc.conv2d(x, w, b, padding=1), rtol=2e-3,
                               atol=2e-3)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    out = cuda.device_array((1, 2, 6, 6), dtype=np.float64)
    got = nc.conv2d(*_dev(x64[None], w64, b64), padding=1, out=out)
    assert got is out or got.shape == out.shape
    np.testing.assert_allclose(out.copy_to_host(), nc.conv_reference(x64[None], w64, b64,
                                                                     padding=1), rtol=1e-12)


def test_stream_keyword():
    x, w, b = _arrays((1, 2, 5, 5), (3, 2, 3, 3))
    stream = cuda.stream()
    y = nc.conv2d(*_dev(x, w, b), padding=1, stream=stream)
    stream.synchronize()
    np.testing.assert_allclose(y.copy_to_host(), nc.conv2d(x, w, b, padding=1), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="stream= is for GPU arrays"):
        nc.conv2d(x, w, b, padding=1, stream=stream)


def test_mixing_host_and_device_arrays_names_each():
    x, w, b = _arrays((1, 2, 5, 5), (3, 2, 3, 3))
    with pytest.raises(TypeError, match=r"input on the GPU, weight on the host \(NumPy\)"):
        nc.conv2d(cuda.to_device(x), w, padding=1)
    with pytest.raises(TypeError, match="bias on the host"):
        nc.conv2d(*_dev(x, w), b)


def test_non_contiguous_gpu_array_is_refused():
    x, w, _ = _arrays((1, 2, 6, 6), (3, 2, 3, 3))
    with pytest.raises(ValueError, match="input must be a C-contiguous GPU array"):
        nc.conv2d(cuda.to_device(x)[:, :, ::2], cuda.to_device(w))


def test_gpu_fft_without_cupy_says_how_to_get_it():
    pytest.importorskip("numba")
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    x, w, _ = _arrays((1, 1, 5, 5), (1, 1, 3, 3))
    with pytest.raises(nc.UnsupportedAlgorithmError, match=r"numbaconv\[gpu-fft\]"):
        nc.conv2d(*_dev(x, w), algorithm="fft")


def test_auto_on_the_gpu_uses_the_gpu_table():
    choice = nc.choose_algorithm((1, 3, 6, 6), (4, 3, 3, 3), padding=1, device="cuda")
    assert choice.algorithm in algorithm_names("cuda")
    assert "device cuda" in str(choice)
    x, w, b = _arrays((1, 3, 6, 6), (4, 3, 3, 3))
    y = nc.conv2d(*_dev(x, w, b), padding=1)          # auto
    np.testing.assert_allclose(y.copy_to_host(), nc.conv2d(x, w, b, padding=1), rtol=1e-4,
                               atol=1e-4)


def test_tiled_and_one_thread_per_output_direct_agree():
    from numbaconv.algorithms.gpu import GPU_DIRECT
    spec = nc.spec.problem_spec((1, 2, 6, 6), (3, 2, 3, 3), padding=1)
    assert GPU_DIRECT.plan(spec).path == "shared-memory tiles"
    big = nc.spec.problem_spec((1, 1, 26, 26), (1, 1, 23, 23), padding=11)
    assert GPU_DIRECT.plan(big).path == "one thread per output"


class _NumpyAsCupy:
    """Enough of CuPy's API, backed by NumPy and the simulator's host buffers,
    to run the GPU fft's arithmetic here (CuPy needs a real GPU)."""

    fft = np.fft

    def __init__(self):
        self.cuda = type("cuda", (), {"ExternalStream": staticmethod(
            lambda handle: __import__("contextlib").nullcontext())})

    @staticmethod
    def asarray(a):
        return a._ary if hasattr(a, "_ary") else np.asarray(a)

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.mark.parametrize("case, xs, ws, kw", [
    ("2d_groups_stride_dilation", (2, 4, 9, 8), (6, 2, 3, 3),
     dict(stride=2, dilation=2, padding=2, groups=2)),
    ("1d_reflect", (1, 2, 12), (3, 2, 5), dict(padding=2, padding_mode="reflect")),
    ("3d", (1, 2, 5, 5, 5), (2, 2, 3, 3, 3), dict(padding=1)),
])
def test_gpu_fft_arithmetic(monkeypatch, case, xs, ws, kw):
    """The cuFFT path's gather, spectra, contraction and strided crop, with
    NumPy standing in for CuPy (scripts/gpu_check.py runs the real one)."""
    monkeypatch.setitem(sys.modules, "cupy", _NumpyAsCupy())
    x, w, b = _arrays(xs, ws, np.float64)
    ref = nc.conv_reference(x, w, b, **kw)
    y = CONV[len(xs) - 2](*_dev(x, w, b), algorithm="fft", **kw)
    np.testing.assert_allclose(y.copy_to_host(), ref, rtol=1e-10, atol=1e-10)
    # transposed: one forward problem over the zero-dilated input
    if case.startswith("2d"):
        kt = dict(stride=2, padding=1, output_padding=1, groups=2)
        wt = np.random.default_rng(5).standard_normal((4, 3, 3, 3))
        ref_t = nc.conv_transpose_reference(x, wt, None, **kt)
        yt = nc.conv_transpose2d(*_dev(x, wt), algorithm="fft", **kt)
        np.testing.assert_allclose(yt.copy_to_host(), ref_t, rtol=1e-10, atol=1e-10)


def test_tuned_gpu_choices_are_keyed_by_the_gpu():
    from numbaconv import tuning
    spec = nc.spec.problem_spec((1, 2, 5, 5), (3, 2, 3, 3), padding=1)
    key = tuning.cache_key(spec, "cuda")
    assert '"device":"cuda"' in key and '"gpu":"numba CUDA simulator"' in key
    assert '"gpu"' not in tuning.cache_key(spec, "cpu")


@pytest.mark.parametrize("algorithm", ["winograd", "winograd_f2"])
def test_non_finite_input_stays_local_on_the_gpu(algorithm):
    # a transform would spread the NaN over its tile: the call runs on direct
    x, w, b = _arrays((1, 2, 8, 8), (3, 2, 3, 3))
    x[0, 1, 4, 4] = np.nan
    y = nc.conv2d(*_dev(x, w, b), padding=1, algorithm=algorithm).copy_to_host()
    expected = nc.conv2d(x, w, b, padding=1, algorithm="direct")
    assert np.array_equal(np.isnan(y), np.isnan(expected))
    assert np.isnan(y).sum() == 3 * 9
    np.testing.assert_allclose(y[~np.isnan(y)], expected[~np.isnan(expected)], rtol=1e-5,
                               atol=1e-5)


# ---------------------------------------------------------------------------
# the fused epilogue (Note [GPU epilogue] in kernels/epilogue_cuda.py)
# ---------------------------------------------------------------------------

from numbaconv.epilogue import ACTIVATIONS, activate  # noqa: E402

#: (id, input shape, weight shape, kwargs, activation, negative_slope),
#: float32: the direct kernel's tiled and one-thread-per-output forms (a
#: 13x13 kernel does not fit the small tiles), groups and stride, 1-D and
#: 3-D (each kernel's flat residual index over every axis).  leaky_relu
#: with a slope other than the default (a dropped slope fails), the erf
#: gelu and the tanh gelu (a swapped pair fails: they differ by up to 5e-4
#: near |v| = 2); every activation on every algorithm is
#: test_every_activation_on_every_gpu_algorithm's, in float64.
EPILOGUE_CASES = [
    ("2d", (2, 3, 5, 6), (4, 3, 3, 3), dict(padding=1), "leaky_relu", 0.2),
    ("2d_groups_stride", (1, 4, 7, 6), (6, 2, 3, 3), dict(stride=2, padding=1, groups=2),
     "gelu", 0.01),
    ("2d_naive_direct", (1, 1, 6, 6), (2, 1, 13, 13), dict(padding=6), "gelu_tanh", 0.01),
    ("1d", (2, 3, 9), (4, 3, 3), dict(padding=1), "tanh", 0.01),
    ("3d", (1, 2, 4, 5, 5), (3, 2, 3, 3, 3), dict(padding=1), "silu", 0.01),
]


def _epilogue_bound(algorithm, x, w, b, r, expected, **kw):
    """The error bound of ``activation(conv + b + r)`` in float32.  The conv
    part is the forward tests' bound with ``S + |r|`` for ``S`` (adding the
    residual is one more rounding of a term of that size); each activation
    here has a derivative of magnitude at most 1.13 (gelu's maximum; silu's
    is 1.10, tanh's 1), so
    errors before it grow by at most that; the activation's own rounding
    (libdevice's erf, tanh, exp are accurate to a few ulp, and gelu's ``1 +
    erf`` cancels for negative v, leaving an absolute error of a few eps *
    |v|) is covered by ``8 eps (|conv + b + r| + 1)``.  A wrong formula or a
    lost term is off by 1e-3 or more, two orders above this."""
    eps = float(np.finfo(np.float32).eps)
    conv_bound = _bound(algorithm, x, w, b, None, **kw)
    before = conv_bound + 16.0 * eps * np.abs(r.astype(np.float64))
    if algorithm in ("fft", "winograd", "winograd_f2"):
        before = before.max() * np.ones_like(before)
    ref = nc.conv_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                            **kw) + r
    return 1.2 * before + 8.0 * eps * (np.abs(ref) + 1.0)


@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS)
@pytest.mark.parametrize("case, xs, ws, kw, activation, slope", EPILOGUE_CASES,
                         ids=[c[0] for c in EPILOGUE_CASES])
def test_fused_epilogue_matches_reference(algorithm, case, xs, ws, kw, activation, slope):
    """conv*d(..., activation=, residual=) on the GPU: activate(reference +
    residual), float32, with bias and a device residual."""
    if get_algorithm(algorithm, "cuda").unsupported_reason(
            nc.spec.problem_spec(xs, ws, **kw)) is not None:
        pytest.skip(f"{algorithm} does not serve {case}")
    x, w, b = _arrays(xs, ws, seed=7)
    ref = nc.conv_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                            **kw)
    r = np.random.default_rng(8).standard_normal(ref.shape).astype(np.float32)
    kw_epi = dict(activation=activation, residual=cuda.to_device(r))
    if activation == "leaky_relu":
        kw_epi["negative_slope"] = slope
    y = CONV[len(xs) - 2](*_dev(x, w, b), algorithm=algorithm, **kw, **kw_epi).copy_to_host()
    expected = activate(activation, ref + r, slope)
    err = np.abs(y.astype(np.float64) - expected)
    bound = _epilogue_bound(algorithm, x, w, b, r, expected, **kw)
    assert np.all(err <= bound), f"max error {err.max():.3g}, bound {bound.min():.3g}"
    # the activation did something here: both signs reach it
    assert (ref + r).min() < -1 and (ref + r).max() > 1


@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS)
@pytest.mark.parametrize("case, xs, ws, kw", [
    ("s2_groups", (1, 4, 4, 3), (4, 1, 3, 3),
     dict(stride=2, padding=1, output_padding=1, groups=2)),
    ("s1", (1, 2, 5, 4), (2, 3, 3, 3), dict(padding=1)),      # Winograd serves this one
], ids=["s2_groups", "s1"])
def test_fused_epilogue_of_a_transposed_convolution(algorithm, case, xs, ws, kw):
    """conv_transpose2d runs as one forward problem over the zero-dilated
    input on the GPU (module docstring of algorithms/gpu.py): the residual
    is read at the transposed output's indices.  float64, against the
    reference to 1e-10 (errors are near 1e-15)."""
    if get_algorithm(algorithm, "cuda").unsupported_reason(
            nc.spec.problem_spec(xs, ws, transposed=True, **kw)) is not None:
        pytest.skip(f"{algorithm} does not serve this transposed problem")
    x, w, _ = _arrays(xs, ws, np.float64, bias=False, seed=9)
    b = np.random.default_rng(10).standard_normal(ws[1] * kw.get("groups", 1))
    ref = nc.conv_transpose_reference(x, w, b, **kw)
    r = np.random.default_rng(11).standard_normal(ref.shape)
    for activation, slope in [("leaky_relu", 0.3), ("gelu", 0.01)]:
        kw_epi = dict(negative_slope=slope) if activation == "leaky_relu" else {}
        y = nc.conv_transpose2d(*_dev(x, w, b), algorithm=algorithm, activation=activation,
                                residual=cuda.to_device(r), **kw, **kw_epi)
        np.testing.assert_allclose(y.copy_to_host(), activate(activation, ref + r, slope),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm", GPU_ALGORITHMS + ["fft"])
def test_every_activation_on_every_gpu_algorithm(monkeypatch, algorithm):
    """Each of SPEC 1c's activations, with a residual, through each GPU
    algorithm's own store (``code`` is a kernel argument, so one activation
    passing says nothing of another's branch), and one without a residual
    (the zero-length residual); fft with NumPy standing in for CuPy, as
    test_gpu_fft_arithmetic.  float64 against activate(reference + r) to
    1e-10 relative and absolute: the sums are of 18 products of values of
    order 1 (errors near 1e-15, Winograd's transforms near 1e-13) and the
    activations are accurate to a few ulp; a wrong formula or a dropped
    residual is off by 1e-3 or more."""
    if algorithm == "fft":
        monkeypatch.setitem(sys.modules, "cupy", _NumpyAsCupy())
    x, w, b = _arrays((1, 2, 5, 6), (3, 2, 3, 3), np.float64, seed=20)
    ref = nc.conv_reference(x, w, b, padding=1)
    r = np.random.default_rng(21).standard_normal(ref.shape)
    # relu6's and hardswish's upper and lower knees are all reached
    assert (ref + r).max() > 6 and (ref + r).min() < -3
    dx, dw, db = _dev(x, w, b)
    dr = cuda.to_device(r)
    calls = [(activation, dr) for activation in ACTIVATIONS] + [("gelu", None)]
    for activation, residual in calls:
        slope = 0.3 if activation == "leaky_relu" else 0.01
        y = nc.conv2d(dx, dw, db, padding=1, algorithm=algorithm, activation=activation,
                      negative_slope=slope, residual=residual).copy_to_host()
        want = activate(activation, ref + (0.0 if residual is None else r), slope)
        np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-10,
                                   err_msg=f"{algorithm} {activation}")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # inf * 0 -> NaN
def test_every_activation_on_the_device_matches_numpy():
    """The device function of every activation (the separate-pass kernel
    runs the same ``finish`` the forward kernels call), NaN and infinities
    included, against numbaconv.epilogue.activate, float64: the non-finite
    values exactly where NumPy has them, the others within 1e-12 relative
    plus ``4 eps (|v| + 1)`` absolute (gelu's ``1 + erf`` and ``1 + tanh``
    cancel for negative v, leaving about ``eps |v| / 2`` either way; a
    wrong formula is off by 1e-4 or more).  Finite values stay below 80:
    the simulator runs math.exp in Python, which raises OverflowError where
    the device returns inf."""
    from numbaconv.kernels import epilogue_cuda
    v = np.concatenate([np.linspace(-8, 8, 33), [-80.0, 80.0, 0.0, -0.0, np.nan, np.inf,
                                                 -np.inf]])
    r = np.random.default_rng(12).standard_normal(v.shape)
    r[-3:] = 0.0
    for code, activation in enumerate(ACTIVATIONS):
        for residual in (None, r):
            slope = 0.05 if activation == "leaky_relu" else 0.01
            out = cuda.to_device(v)
            epilogue_cuda.apply_epilogue(out, None if residual is None else
                                         cuda.to_device(residual), code, slope, 0)
            pre = v if residual is None else v + residual
            with np.errstate(invalid="ignore"):
                want = activate(activation, pre, slope)
            got = out.copy_to_host()
            finite = np.isfinite(want)
            assert np.array_equal(got[~finite], want[~finite], equal_nan=True), activation
            bound = 1e-12 * np.abs(want) + 4 * np.finfo(np.float64).eps * (np.abs(pre) + 1)
            err = np.abs(got - want)[finite]
            assert np.all(err <= bound[finite]), (activation, err.max())


def test_a_gpu_algorithm_that_does_not_fuse_gets_a_separate_pass(monkeypatch):
    """fuses_epilogue false: forward gets the bias alone and the activation
    and residual follow as a device pass (the registry's contract)."""
    from numbaconv.algorithms.gpu import GPU_DIRECT
    seen = []
    forward = GPU_DIRECT.forward
    monkeypatch.setattr(GPU_DIRECT, "fuses_epilogue", False)
    monkeypatch.setattr(GPU_DIRECT, "forward",
                        lambda spec, x, w, epi, *a, **k: (seen.append(epi.fused),
                                                           forward(spec, x, w, epi, *a, **k)))
    x, w, b = _arrays((1, 2, 5, 5), (3, 2, 3, 3), np.float64)
    ref = nc.conv_reference(x, w, b, padding=1)
    r = np.random.default_rng(13).standard_normal(ref.shape)
    y = nc.conv2d(*_dev(x, w, b), padding=1, algorithm="direct", activation="silu",
                  residual=cuda.to_device(r))
    assert seen == [False]
    np.testing.assert_allclose(y.copy_to_host(), activate("silu", ref + r), rtol=1e-10,
                               atol=1e-10)


def test_fused_epilogue_float16_unbatched_and_out():
    """float16 residual (cast to float32 with the input), unbatched input,
    out=: the same as the CPU call with the same epilogue."""
    x, w, b = _arrays((3, 6, 6), (2, 3, 3, 3), np.float16, seed=14)
    r = np.random.default_rng(15).standard_normal((2, 6, 6)).astype(np.float16)
    want = nc.conv2d(x, w, b, padding=1, activation="hardswish", residual=r)
    y = nc.conv2d(*_dev(x, w, b), padding=1, activation="hardswish", residual=cuda.to_device(r))
    assert y.dtype == np.float16 and y.shape == (2, 6, 6)
    np.testing.assert_allclose(y.copy_to_host(), want, rtol=2e-3, atol=2e-3)
    out = cuda.device_array((2, 6, 6), dtype=np.float16)
    nc.conv2d(*_dev(x, w, b), padding=1, activation="hardswish", residual=cuda.to_device(r),
              out=out)
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=2e-3, atol=2e-3)


def test_fused_epilogue_errors_on_the_gpu():
    x, w, b = _arrays((1, 2, 5, 5), (3, 2, 3, 3))
    r = np.zeros((1, 3, 5, 5), np.float32)
    dx, dw, db = _dev(x, w, b)
    with pytest.raises(TypeError, match=r"residual on the host \(NumPy\)"):
        nc.conv2d(dx, dw, db, padding=1, residual=r)
    with pytest.raises(ValueError, match=r"residual must have the output's shape"):
        nc.conv2d(dx, dw, db, padding=1, residual=cuda.to_device(r[:, :, 1:].copy()))
    with pytest.raises(ValueError, match="residual must have the output's dtype"):
        nc.conv2d(dx, dw, db, padding=1, residual=cuda.to_device(r.astype(np.float64)))
    dr = cuda.to_device(r)
    with pytest.raises(ValueError, match="out must not share memory with residual"):
        nc.conv2d(dx, dw, db, padding=1, residual=dr, out=dr)
    with pytest.raises(ValueError, match="activation must be one of"):
        nc.conv2d(dx, dw, db, padding=1, activation="swish")


def test_gpu_epilogue_arguments_are_checked_at_the_kernels():
    """The kernels read ``residual[i]`` at every flat output index without a
    bounds check: their entry points refuse a residual of another size,
    dtype or layout, and an unknown activation code, before any launch."""
    from numbaconv.algorithms.gpu import device_maps
    from numbaconv.kernels import direct_cuda, epilogue_cuda
    out = cuda.device_array((1, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="residual must have the output's size 75, got 74"):
        epilogue_cuda.apply_epilogue(out, cuda.device_array(74, np.float32), 1, 0.01, 0)
    with pytest.raises(TypeError, match="residual dtype must be float32"):
        epilogue_cuda.apply_epilogue(out, cuda.device_array(75, np.float64), 1, 0.01, 0)
    strided = cuda.to_device(np.zeros((1, 3, 5, 10), np.float32))[:, :, :, ::2]
    with pytest.raises(ValueError, match="residual must be C-contiguous"):
        epilogue_cuda.apply_epilogue(out, strided, 1, 0.01, 0)
    with pytest.raises(ValueError, match=r"activation must be a code in \[0, 10\)"):
        epilogue_cuda.apply_epilogue(out, None, 10, 0.01, 0)
    x, w, _ = _arrays((1, 2, 5, 5, 1), (3, 2, 3, 3, 1), bias=False)
    spec = nc.spec.problem_spec((1, 2, 5, 5), (3, 2, 3, 3), padding=1)
    with pytest.raises(ValueError, match="residual must have the output's size"):
        direct_cuda.conv_forward(*_dev(x.reshape(1, 2, 1, 5, 5)), device_maps(spec),
                                 cuda.to_device(w.reshape(3, 2, 1, 3, 3)), None,
                                 out.reshape(1, 3, 1, 5, 5), 1, (1, 1, 1), (1, 1, 1), 0,
                                 residual=cuda.device_array(74, np.float32), activation=1)


def test_gpu_fft_fused_epilogue(monkeypatch):
    """fft_store (kernels/fft_cuda.py) applies the bias, residual and
    activation, with NumPy standing in for CuPy (as test_gpu_fft_arithmetic)."""
    monkeypatch.setitem(sys.modules, "cupy", _NumpyAsCupy())
    x, w, b = _arrays((1, 4, 7, 6), (6, 2, 3, 3), np.float64, seed=16)
    kw = dict(stride=2, padding=1, groups=2)
    ref = nc.conv_reference(x, w, b, **kw)
    r = np.random.default_rng(17).standard_normal(ref.shape)
    y = nc.conv2d(*_dev(x, w, b), algorithm="fft", activation="leaky_relu", negative_slope=0.2,
                  residual=cuda.to_device(r), **kw)
    np.testing.assert_allclose(y.copy_to_host(), activate("leaky_relu", ref + r, 0.2),
                               rtol=1e-10, atol=1e-10)
    kt = dict(stride=2, padding=1, output_padding=1, groups=2)
    wt = np.random.default_rng(18).standard_normal((4, 3, 3, 3))
    ref_t = nc.conv_transpose_reference(x, wt, None, **kt)
    rt = np.random.default_rng(19).standard_normal(ref_t.shape)
    yt = nc.conv_transpose2d(*_dev(x, wt), algorithm="fft", activation="gelu",
                             residual=cuda.to_device(rt), **kt)
    np.testing.assert_allclose(yt.copy_to_host(), activate("gelu", ref_t + rt), rtol=1e-10,
                               atol=1e-10)


# ---------------------------------------------------------------------------
# differential fuzzing under the simulator (issue 16)
# ---------------------------------------------------------------------------

import os  # noqa: E402

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: The simulator runs every GPU thread as a Python thread, so the CI profile
#: is small; NUMBACONV_FUZZ_EXAMPLES (docs/hardening.md) scales it with the
#: CPU fuzzers: 20 in CI, a hundredth of theirs in the long profile (200 in
#: about 5 minutes).
GPU_FUZZ_EXAMPLES = max(20, int(os.environ.get("NUMBACONV_FUZZ_EXAMPLES", "200")) // 100)


@st.composite
def tiny_gpu_problems(draw):
    """A small random problem of any computation, rank and layout the GPU
    path takes: float64 (so that every algorithm's error is far below the
    1e-9 checked), zeros or another padding mode, batch 0-2, unbatched."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    cin_g, cout_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(ndim))
    computation = draw(st.sampled_from(["forward", "transposed", "grad_input", "grad_weight"]))
    mode = (draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
            if computation == "forward" else "zeros")
    sizes = []
    for k, d, p in zip(kernel, dilation, pads):
        smallest = max(d * (k - 1) + 1, p + 1)
        sizes.append(draw(st.integers(smallest, smallest + (3 if ndim < 3 else 1))))
    sizes = tuple(sizes)
    batch = draw(st.sampled_from([0, 1, 2]))
    unbatched = computation in ("forward", "transposed") and batch == 1 and draw(st.booleans())
    kw = dict(stride=stride, padding=pads, dilation=dilation, groups=groups)
    if mode != "zeros":
        kw["padding_mode"] = mode
    if computation == "transposed":
        kw["output_padding"] = tuple(draw(st.integers(0, max(0, max(s, d) - 1)))
                                     for s, d in zip(stride, dilation))
    algorithm = draw(st.sampled_from(["auto"] + list(algorithm_names("cuda")[1:])))
    return (computation, ndim, batch, unbatched, groups * cin_g, groups * cout_g, kernel,
            sizes, kw, algorithm, draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=GPU_FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tiny_gpu_problems())
def test_fuzz_every_computation_on_the_simulated_gpu(problem):
    (computation, ndim, batch, unbatched, cin, cout, kernel, sizes, kw, algorithm,
     seed) = problem
    rng = np.random.default_rng(seed)
    groups = kw["groups"]
    if computation == "transposed":
        x = rng.standard_normal((batch, cin) + sizes)
        w = rng.standard_normal((cin, cout // groups) + kernel)
        b = rng.standard_normal(cout)
        if unbatched:
            x = x[0]
        spec_kw = dict(transposed=True)
    else:
        x = rng.standard_normal((batch, cin) + sizes)
        w = rng.standard_normal((cout, cin // groups) + kernel)
        b = rng.standard_normal(cout)
        spec_kw = {"forward": {}, "grad_input": dict(gradient="input"),
                   "grad_weight": dict(gradient="weight")}[computation]
    if computation == "forward" and unbatched:
        x = x[0]
    try:
        spec = nc.spec.problem_spec(x.shape, w.shape, **kw, **spec_kw)
    except ValueError:
        assume(False)                            # e.g. output_padding not below stride
    if algorithm != "auto":
        assume(get_algorithm(algorithm, "cuda").unsupported_reason(spec) is None)
    if computation == "forward":
        got = CONV[ndim](*_dev(x, w, b), algorithm=algorithm, **kw)
        want = nc.conv_reference(x, w, b, **kw)
    elif computation == "transposed":
        got = TRANSPOSED[ndim](*_dev(x, w, b), algorithm=algorithm, **kw)
        want = nc.conv_transpose_reference(x, w, b, **kw)
    else:
        y_shape = nc.conv_reference(x, w, **kw).shape
        g = rng.standard_normal(y_shape)
        if computation == "grad_input":
            got = GRAD_INPUT[ndim](x.shape, *_dev(w, g), algorithm=algorithm, **kw)
            want = nc.conv_grad_input_reference(x.shape, w, g, **kw)
        else:
            got = GRAD_WEIGHT[ndim](cuda.to_device(x), w.shape, cuda.to_device(g),
                                    algorithm=algorithm, **kw)
            want = nc.conv_grad_weight_reference(x, w.shape, g, **kw)
    got = got.copy_to_host()
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
