"""The channels-last memory format (SPEC 1b; docs/semantics.md, "Memory format").

A logical (N, C, spatial...) array with the strides of (N, spatial..., C)
memory is read without a copy by the algorithms that declare the format
and packed for the others (Note [packing] in numbaconv.algorithms.registry);
every result comes back in the input's format.  Tolerances: against PyTorch
the conftest bound with factor 32 (both results within 16 eps * the error
scale of the truth); a packed call runs exactly the contiguous computation,
so there results are compared bit for bit.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import numbaconv as nc
from numbaconv import costs, tuning
from numbaconv.algorithms import (ConvAlgorithm, algorithms, composite_paths, costed_plan,
                                  register, unregister)
from numbaconv.algorithms.registry import PACK_SECONDS_PER_BYTE, packed_bytes
from numbaconv.spec import memory_format_of, problem_spec

from .conftest import CONV, EPS, NORMWISE, tolerance, torch, torch_conv

CPU = [a for a in nc.algorithm_names() if a != "auto"]
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def cl(a, unbatched=False):
    """``a`` (logical (N, C, ...) or unbatched (C, ...)) as a channels-last view."""
    axis = 0 if unbatched else 1
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, axis, -1)), -1, axis)


def is_cl(y, unbatched=False):
    return (not y.flags.c_contiguous
            and np.moveaxis(y, 0 if unbatched else 1, -1).flags.c_contiguous)


def native(name):
    return "channels_last" in nc.algorithms.get_algorithm(name).formats


def run_or_skip(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except nc.UnsupportedAlgorithmError as exc:
        pytest.skip(f"unsupported: {exc.reason}")


# ---------------------------------------------------------------------------
# the detection rule
# ---------------------------------------------------------------------------

class TestDetection:
    def test_views_of_channels_last_memory(self, rng):
        for ndim, shape in ((1, (2, 9, 3)), (2, (2, 5, 6, 3)), (3, (2, 4, 5, 6, 3))):
            nhwc = rng.standard_normal(shape).astype(np.float32)
            x = np.moveaxis(nhwc, -1, 1)
            assert memory_format_of(x, ndim) == "channels_last"
            assert memory_format_of(np.ascontiguousarray(x), ndim) == "contiguous"
            # unbatched: (C, spatial...) of (spatial..., C) memory
            assert memory_format_of(np.moveaxis(nhwc[0], -1, 0), ndim) == "channels_last"

    def test_ambiguous_and_other_strides_are_contiguous(self, rng):
        one_channel = np.moveaxis(np.zeros((2, 5, 6, 1), np.float32), -1, 1)
        one_pixel = np.moveaxis(np.zeros((2, 1, 1, 4), np.float32), -1, 1)
        sliced = np.zeros((2, 4, 10, 6), np.float32)[:, :, ::2]
        fortran = np.asfortranarray(np.zeros((2, 4, 5, 6), np.float32))
        cl_sliced = cl(np.zeros((2, 4, 10, 6), np.float32))[:, :, ::2]
        for x in (one_channel, one_pixel, sliced, fortran, cl_sliced):
            assert memory_format_of(x, 2) == "contiguous", x.strides
        # an empty array is contiguous too
        assert memory_format_of(cl(np.zeros((0, 3, 4, 4), np.float32)), 2) == "contiguous"

    def test_the_spec_records_the_format_and_remembered_specs_tell_them_apart(self, rng):
        x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
        w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        # the same shapes, one after the other: the remembered spec must differ
        assert nc.conv2d(x, w).flags.c_contiguous
        assert is_cl(nc.conv2d(cl(x), w))
        assert nc.conv2d(x, w).flags.c_contiguous
        spec = problem_spec(cl(x), w)
        assert spec.memory_format == "channels_last"
        assert "memory_format='channels_last'" in spec.describe()
        assert "memory_format" not in problem_spec(x, w).describe()


# ---------------------------------------------------------------------------
# results against PyTorch, every algorithm, both formats
# ---------------------------------------------------------------------------

FORWARD_CASES = [
    ((2, 4, 11), (6, 2, 3), dict(stride=2, padding=1, groups=2)),
    ((2, 3, 9, 8), (5, 3, 3, 3), dict(padding=1)),
    ((1, 4, 10, 9), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4)),
    ((2, 2, 5, 6, 5), (3, 2, 3, 3, 3), dict(padding=(1, 0, 1))),
]


@needs_torch
@pytest.mark.parametrize("algorithm", CPU)
@pytest.mark.parametrize("shape, wshape, kw", FORWARD_CASES)
def test_forward_matches_pytorch_in_both_formats(rng, shape, wshape, kw, algorithm):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    b = rng.standard_normal(wshape[0]).astype(np.float32)
    conv = CONV[len(wshape) - 2]
    expected = torch_conv(x, w, b, **kw)
    bound = tolerance(x, w, b, np.float32, algorithm, factor=32, **kw)
    y = run_or_skip(conv, x, w, b, algorithm=algorithm, **kw)
    y_cl = conv(cl(x), w, b, algorithm=algorithm, **kw)
    assert y.flags.c_contiguous and is_cl(y_cl)
    for result in (y, y_cl):
        assert np.all(np.abs(result.astype(np.float64) - expected) <= bound)
    if not native(algorithm):       # packed: exactly the contiguous computation
        np.testing.assert_array_equal(y_cl, y)
    # a channels-last weight is read as any other strides: the same result
    np.testing.assert_array_equal(conv(cl(x), cl(w), b, algorithm=algorithm, **kw), y_cl)


def _scale_bound(scale, algorithm):
    """32 eps of the float64 error scale, normwise for the transform algorithms."""
    if algorithm in NORMWISE:
        return 32 * EPS[np.dtype(np.float32)] * scale.max() * NORMWISE[algorithm] / 16
    return 32 * EPS[np.dtype(np.float32)] * scale


@needs_torch
@pytest.mark.parametrize("algorithm", CPU)
def test_transposed_and_gradients_match_pytorch_in_both_formats(rng, algorithm):
    F = torch.nn.functional
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    kw = dict(stride=2, padding=1)
    t64 = lambda a: torch.from_numpy(np.abs(a).astype(np.float64))   # noqa: E731
    # transposed convolution
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(wt), **kw).numpy()
    scale = F.conv_transpose2d(t64(x), t64(wt), **kw).numpy()
    y = run_or_skip(nc.conv_transpose2d, x, wt, algorithm=algorithm, **kw)
    y_cl = nc.conv_transpose2d(cl(x), wt, algorithm=algorithm, **kw)
    assert is_cl(y_cl)
    for result in (y, y_cl):
        assert np.all(np.abs(result - expected) <= _scale_bound(scale, algorithm))
    # both gradients, through torch's autograd on a channels-last tensor
    xt = torch.from_numpy(x).to(memory_format=torch.channels_last).requires_grad_()
    wt_ = torch.from_numpy(w).requires_grad_()
    out = F.conv2d(xt, wt_, **kw)
    g = rng.standard_normal(tuple(out.shape)).astype(np.float32)
    out.backward(torch.from_numpy(g))
    gi_scale = torch.nn.grad.conv2d_input(x.shape, t64(w), t64(g), **kw).numpy()
    gw_scale = torch.nn.grad.conv2d_weight(t64(x), w.shape, t64(g), **kw).numpy()
    for xx, gg in ((x, g), (cl(x), cl(g))):
        gi = run_or_skip(nc.grad.conv2d_input, x.shape, w, gg, algorithm=algorithm, **kw)
        gw = nc.grad.conv2d_weight(xx, w.shape, gg, algorithm=algorithm, **kw)
        bi, bw, bb = nc.conv_backward(xx, w, gg, algorithm=algorithm, **kw)
        assert is_cl(gi) == is_cl(bi) == is_cl(xx)       # the input's format
        assert gw.flags.c_contiguous and bw.flags.c_contiguous
        for a, b in ((gi, bi), (gw, bw)):
            np.testing.assert_array_equal(a, b)
        assert np.all(np.abs(gi - xt.grad.numpy()) <= _scale_bound(gi_scale, algorithm))
        assert np.all(np.abs(gw - wt_.grad.numpy()) <= _scale_bound(gw_scale, algorithm))
        np.testing.assert_allclose(bb, g.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["direct", "fft"])
def test_transposed_backward_keeps_the_format(rng, algorithm):
    # output_padding >= stride (allowed below the dilation): conv_backward crops
    # the input gradient and zero-extends x, both in the input's format
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    kw = dict(stride=1, padding=1, output_padding=1, dilation=2)
    y = nc.conv_transpose2d(cl(x), w, **kw, algorithm=algorithm)
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = nc.conv_backward(cl(x), w, cl(g), transposed=True, algorithm=algorithm, **kw)
    ref = nc.conv_backward(x, w, g, transposed=True, algorithm=algorithm, **kw)
    assert is_cl(got[0])
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# out=, unbatched, float16, residual
# ---------------------------------------------------------------------------

class TestOutAndFriends:
    def test_out_in_each_format_and_the_error(self, rng):
        x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
        w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        # a native channels-last kernel sums in its own order: the same call
        # without out= is bit-identical, the contiguous one within the bound
        expected = nc.conv2d(cl(x), w)
        out = cl(np.empty((2, 4, 5, 5), np.float32))
        assert nc.conv2d(cl(x), w, out=out) is out
        np.testing.assert_array_equal(out, expected)
        assert np.all(np.abs(out - nc.conv2d(x, w)) <= tolerance(x, w, None, np.float32))
        out16 = cl(np.empty((2, 4, 5, 5), np.float16))
        x16, w16 = x.astype(np.float16), w.astype(np.float16)
        np.testing.assert_array_equal(nc.conv2d(cl(x16), w16, out=out16), nc.conv2d(cl(x16), w16))
        with pytest.raises(ValueError, match=r"out must be channels-last contiguous.*"
                                             r"out\.strides=\(400, 100, 20, 4\)"):
            nc.conv2d(cl(x), w, out=np.empty((2, 4, 5, 5), np.float32))
        with pytest.raises(ValueError, match="out must be C-contiguous, as the call's input is "
                                             "contiguous"):
            nc.conv2d(x, w, out=out)

    def test_unbatched(self, rng):
        x = rng.standard_normal((3, 8, 7)).astype(np.float32)
        w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
        y = nc.conv2d(cl(x, unbatched=True), w, padding=1)
        assert y.shape == (5, 8, 7) and is_cl(y, unbatched=True)
        assert np.all(np.abs(y - nc.conv2d(x, w, padding=1))
                      <= tolerance(x[None], w, None, np.float32, padding=1)[0])
        out = cl(np.empty((5, 8, 7), np.float32), unbatched=True)
        assert nc.conv2d(cl(x, unbatched=True), w, padding=1, out=out) is out
        np.testing.assert_array_equal(out, y)

    def test_float16_comes_back_float16_channels_last(self, rng):
        x = rng.standard_normal((2, 3, 6, 6)).astype(np.float16)
        w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
        y = nc.conv2d(cl(x), w, padding=1, algorithm="direct")
        assert y.dtype == np.float16 and is_cl(y)
        # float16 computes in float32 and rounds once: the formats' float32
        # results differ in the last bits, so the float16 ones by one ulp at most
        z = nc.conv2d(x, w, padding=1, algorithm="direct")
        assert np.all(np.abs(y.astype(np.float32) - z) <= np.spacing(np.abs(z)))

    @needs_torch
    @pytest.mark.parametrize("algorithm", CPU)
    @pytest.mark.parametrize("x_cl, r_cl", [(True, True), (True, False), (False, True)])
    def test_residual_in_either_format(self, rng, algorithm, x_cl, r_cl):
        x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
        w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        r = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
        expected = np.maximum(torch_conv(x, w, b, padding=1) + r, 0)
        bound = tolerance(x, w, b, np.float32, algorithm, factor=32, padding=1) + 32 * EPS[
            np.dtype(np.float32)] * np.abs(r)
        y = run_or_skip(nc.conv2d, cl(x) if x_cl else x, w, b, padding=1, algorithm=algorithm,
                        activation="relu", residual=cl(r) if r_cl else r)
        assert is_cl(y) == x_cl
        assert np.all(np.abs(y - expected) <= bound)


# ---------------------------------------------------------------------------
# dispatch and tuning
# ---------------------------------------------------------------------------

class TestDispatch:
    def test_choose_algorithm_validates_memory_format(self):
        with pytest.raises(ValueError, match="choose_algorithm: memory_format must be one of "
                                             "'contiguous', 'channels_last', got 'nhwc'"):
            nc.choose_algorithm((1, 4, 8, 8), (4, 4, 3, 3), memory_format="nhwc")
        with pytest.raises(TypeError, match="memory_format must be a string, got int"):
            nc.choose_algorithm((1, 4, 8, 8), (4, 4, 3, 3), memory_format=3)
        x = cl(np.zeros((1, 4, 8, 8), np.float32))
        with pytest.raises(ValueError, match="contradicts the input array"):
            nc.choose_algorithm(x, (4, 4, 3, 3), memory_format="contiguous")
        # GPU problems take both formats (tests/test_gpu_memory_format.py)

    def test_arrays_imply_the_format_and_packing_is_costed(self):
        shapes = ((2, 16, 12, 12), (8, 16, 3, 3))
        x = cl(np.zeros(shapes[0], np.float32))
        assert nc.choose_algorithm(x, shapes[1], padding=1).problem == nc.choose_algorithm(
            *shapes, padding=1, memory_format="channels_last").problem
        table = nc.explain(*shapes, padding=1, memory_format="channels_last")
        assert "memory_format='channels_last'" in table.splitlines()[0]
        contiguous = {c.algorithm: c for c in nc.choose_algorithm(*shapes, padding=1).candidates}
        spec = problem_spec(*shapes, padding=1, memory_format="channels_last")
        for c in nc.choose_algorithm(*shapes, padding=1,
                                     memory_format="channels_last").candidates:
            if c.seconds is None or native(c.algorithm):
                continue
            assert "packed" in c.path
            assert c.seconds == pytest.approx(contiguous[c.algorithm].seconds
                                              + PACK_SECONDS_PER_BYTE * packed_bytes(spec))

    def test_the_tuning_key_holds_the_format(self):
        shapes = ((2, 16, 12, 12), (8, 16, 3, 3))
        plain = problem_spec(*shapes, padding=1)
        last = problem_spec(*shapes, padding=1, memory_format="channels_last")
        assert tuning.cache_key(plain) != tuning.cache_key(last)
        assert "memory_format" not in tuning.cache_key(plain)   # older keys stay valid
        assert '"memory_format":"channels_last"' in tuning.cache_key(last)
        # gradients of a channels-last call are channels-last problems too
        for gradient in ("input", "weight"):
            assert problem_spec(*shapes, padding=1, gradient=gradient,
                                memory_format="channels_last").channels_last

    def test_tune_measures_the_channels_last_problem(self, tmp_path, monkeypatch):
        monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
        tuned = nc.tune((1, 4, 8, 8), (4, 4, 3, 3), padding=1, memory_format="channels_last")
        assert "channels_last" in tuned.problem and tuned.algorithm in CPU


# ---------------------------------------------------------------------------
# no copy on the native paths
# ---------------------------------------------------------------------------

TOY = "toy_channels_last"


class ChannelsLastToy(ConvAlgorithm):
    """A native channels-last algorithm for the plumbing: each kernel tap is
    one einsum over a strided window of the (N, D, H, W, C) input, which it
    reads in place (no copy without padding)."""

    name = TOY
    formats = ("contiguous", "channels_last")
    paths = (costs.PathModel(f"{TOY}:taps", 1e-16, work=lambda spec: spec.flops / 2),
             ) + composite_paths(TOY)
    measured_error_eps = 8.0
    transforms_values = False
    last_input = None

    def unsupported_reason(self, spec):
        return None if spec.padding_mode == "zeros" else "zeros only"

    def plan_forward(self, spec, ctx):
        return costed_plan(self.name, f"{TOY}:taps", spec.flops / 2, ctx, 0, "taps")

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        assert x.shape == spec.run_input_shape and out.shape == spec.run_output_shape
        assert x.flags.c_contiguous and out.flags.c_contiguous
        type(self).last_input = x
        xv = x if spec.channels_last else np.moveaxis(x, 1, -1)
        ov = out if spec.channels_last else np.moveaxis(out, 1, -1)
        if any(p != (0, 0) for p in spec.padding3):
            xv = np.pad(xv, [(0, 0)] + list(spec.padding3) + [(0, 0)])
        g, cin_g, cout_g = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
        xv = xv.reshape(xv.shape[:4] + (g, cin_g))
        w = weight.reshape((g, cout_g, cin_g) + spec.kernel_size3)
        acc = np.zeros(ov.shape[:4] + (g, cout_g), out.dtype)
        for taps in np.ndindex(*spec.kernel_size3):
            window = tuple(slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in
                           zip(taps, spec.dilation3, spec.stride3, spec.output_size3))
            acc += np.einsum("ndhwgc,goc->ndhwgo", xv[(slice(None),) + window],
                             w[(Ellipsis,) + taps])
        ov[...] = acc.reshape(ov.shape)
        if epilogue.has_bias:
            ov += epilogue.bias
        return out


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    costs.forget_constants()
    algorithm = register(ChannelsLastToy())
    try:
        yield algorithm
    finally:
        unregister(TOY)
        costs.forget_constants()


def test_the_native_toy_gets_views_and_serves_every_rewrite(toy, rng):
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    r = rng.standard_normal((2, 6, 4, 2)).astype(np.float32)
    kw = dict(stride=2, dilation=(1, 2), groups=2)
    xc = cl(x)
    y = nc.conv2d(xc, w, b, algorithm=TOY, **kw)
    assert is_cl(y) and np.shares_memory(ChannelsLastToy.last_input, xc)   # read in place
    np.testing.assert_allclose(y, nc.conv2d(x, w, b, **kw), rtol=1e-5, atol=1e-5)
    # fused epilogue (a separate pass for the toy) with a residual in either format
    for res in (r, cl(r)):
        np.testing.assert_allclose(
            nc.conv2d(xc, w, b, algorithm=TOY, activation="relu", residual=res, **kw),
            np.maximum(nc.conv2d(x, w, b, **kw) + r, 0), rtol=1e-5, atol=1e-5)
    # phases (transposed, input gradient), crops (negative padding) and the
    # weight-gradient rewrite, channels-last all the way
    wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    for padding in (1, 3):
        t = nc.conv_transpose2d(xc, wt, b[:3], stride=2, padding=padding, algorithm=TOY)
        assert is_cl(t)
        np.testing.assert_allclose(t, nc.conv_transpose2d(x, wt, b[:3], stride=2,
                                                          padding=padding),
                                   rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    got = nc.conv_backward(xc, w, cl(g), algorithm=TOY, **kw)
    ref = nc.conv_backward(x, w, g, algorithm="direct", **kw)
    assert is_cl(got[0])
    for a, b_ in zip(got, ref):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-4)


def _peak_allocation(call):
    call()                                   # compile, plan, fill the caches
    # what a call allocates when nothing is kept from the last one (a
    # repeated call takes its copies and scratch from the arena kept
    # between calls: tests/test_workspaces.py)
    nc.release_workspaces()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _allocation_problem(rng):
    # the output is under 1/16 of the input: a copy of the input would dominate
    x = cl(rng.standard_normal((2, 32, 40, 40)).astype(np.float32))
    w = rng.standard_normal((2, 32, 3, 3)).astype(np.float32)
    return x, w, {}


def test_a_native_algorithm_does_not_copy_the_input(toy, rng):
    x, w, kw = _allocation_problem(rng)
    names = [a.name for a in algorithms() if "channels_last" in a.formats]
    assert TOY in names
    spec = problem_spec(x, w, **kw)
    for algorithm in algorithms():
        if not algorithm.serves_natively(spec):
            continue
        try:
            peak = _peak_allocation(lambda: nc.conv2d(x, w, algorithm=algorithm.name, **kw))
        except nc.UnsupportedAlgorithmError:
            continue
        # what it allocates beyond its declared workspace (im2col's column
        # tiles: 0.5 MiB here) is under one copy of the input
        workspace = algorithm.plan(spec).workspace
        assert peak - workspace < x.nbytes, (algorithm.name, peak, workspace, x.nbytes)


@pytest.mark.parametrize("algorithm", CPU)
def test_a_packing_algorithm_copies_the_input(rng, algorithm):
    if native(algorithm):
        pytest.skip(f"{algorithm} reads channels-last natively")
    x, w, kw = _allocation_problem(rng)
    peak = _peak_allocation(lambda: run_or_skip(nc.conv2d, x, w, algorithm=algorithm, **kw))
    assert peak >= x.nbytes


BUILTIN_NATIVE = [a.name for a in algorithms() if "channels_last" in a.formats]


def test_builtin_algorithms_read_channels_last_natively():
    assert {"direct", "im2col"} <= set(BUILTIN_NATIVE)


# ---------------------------------------------------------------------------
# numbaconv.dask
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("chunks, wshape", [((1, 8, 9, 3), (4, 3, 3, 3)),
                                            ((2, 4, 5, 3), (4, 3, 3, 3)),
                                            ((2, 4, 5, 3), (4, 3, 1, 1))])
def test_dask_channels_last(rng, chunks, wshape):
    da = pytest.importorskip("dask.array")
    import numbaconv.dask as ncd
    nhwc = rng.standard_normal((2, 8, 9, 3)).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    x = da.from_array(nhwc, chunks=chunks).transpose(0, 3, 1, 2)
    pad = wshape[-1] // 2
    y = ncd.conv2d(x, w, padding=pad)
    formats = []

    def probe(block):
        if block.size > 1:                  # dask also calls it on tiny meta arrays
            formats.append(is_cl(block))
        return block
    np.testing.assert_allclose(y.map_blocks(probe).compute(),
                               nc.conv2d(np.moveaxis(nhwc, -1, 1), w, padding=pad),
                               rtol=1e-5, atol=1e-5)
    # the blocks keep the format where no halo exchange joins them (dask joins
    # blocks C-contiguous: module docstring of numbaconv.dask)
    if chunks[1:3] == (8, 9) or wshape[-1] == 1:
        assert formats and all(formats)
    wt = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    z = ncd.conv_transpose2d(x, wt, stride=2, padding=1)
    np.testing.assert_allclose(z.compute(), nc.conv_transpose2d(np.moveaxis(nhwc, -1, 1), wt,
                                                                stride=2, padding=1),
                               rtol=1e-5, atol=1e-5)
