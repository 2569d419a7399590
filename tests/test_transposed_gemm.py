"""im2col's transposed GEMM (Note [transposed GEMM] in numbaconv/kernels/im2col_transposed.py).

Transposed convolutions (and strided layers' input gradients) multiplied by
the weight as the caller gave it (Note [transposed weight] in
numbaconv/rewrites.py), in the planes and the rows forms, with bands,
channel blocks and tiles of every kind: kernel equal to the stride (U-Net
up-convolutions), twice the stride (GAN and pix2pix decoders), 3 with
stride 2 and both output paddings, one-pixel inputs (a generator's
projection), paddings 0-2, dilation 2, groups, 1-D/2-D/3-D, batch 1 and 3,
float32 and float64, channels-first and channels-last input, the fused
epilogue, ``out=``, one and two threads.

Tolerances follow tests/conftest.py and tests/test_backward.py:
elementwise ``|y - ref| <= 16 eps * S`` with ``S = conv_transpose(|x|,
|w|) + |b|`` against the float64 reference (every output is one sum of
products, as in every other im2col path: measured at most 2.4 eps * S,
docs/results-backward.md), 32 eps against PyTorch (its own rounding adds
one more such sum).  With a fused epilogue, 1.5 times that (the
activations' Lipschitz constant, tests/test_epilogue.py) plus ``4 eps
|y|`` for the activation's own roundings, with ``|r|`` added to ``S``.
"""

from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import pytest

import numbaconv as nc
from numbaconv.algorithms import get_algorithm
from numbaconv.algorithms import im2col
from numbaconv.context import current_context
from numbaconv.epilogue import Epilogue, activate
from numbaconv.kernels.im2col_transposed import band_geometry
from numbaconv.reference import conv_grad_input_reference, conv_transpose_reference
from numbaconv.rewrites import TransposedWeight, transposed_weight
from numbaconv.spec import problem_spec

from .conftest import EPS, RTOL_FACTOR, torch
from .test_backward import check_grad_input, check_transposed

CONV_TRANSPOSE = {1: nc.conv_transpose1d, 2: nc.conv_transpose2d, 3: nc.conv_transpose3d}
GRAD_INPUT = {1: nc.grad.conv1d_input, 2: nc.grad.conv2d_input, 3: nc.grad.conv3d_input}

#: (id, input shape, weight shape (C_in, C_out/groups, k...), kwargs)
CASES = [
    ("2x2s2", (3, 8, 5, 6), (8, 6, 2, 2), dict(stride=2)),
    ("2x2s2_b1", (1, 16, 4, 4), (16, 12, 2, 2), dict(stride=2)),
    ("2x2s2_pad1", (2, 8, 5, 6), (8, 6, 2, 2), dict(stride=2, padding=1)),
    ("2x2s2_op1", (2, 8, 5, 6), (8, 6, 2, 2), dict(stride=2, output_padding=1)),
    ("2x2s2_groups2", (3, 8, 5, 6), (8, 3, 2, 2), dict(stride=2, groups=2)),
    ("2x2x2s2", (3, 6, 3, 4, 5), (6, 4, 2, 2, 2), dict(stride=2)),
    ("1d_k4s4", (3, 5, 7), (5, 4, 4), dict(stride=4)),
    ("1x1s2_gaps", (2, 6, 4, 5), (6, 5, 1, 1), dict(stride=2)),
    ("4x4s2p1", (3, 8, 5, 6), (8, 6, 4, 4), dict(stride=2, padding=1)),
    ("4x4s2p1_b1", (1, 24, 4, 4), (24, 16, 4, 4), dict(stride=2, padding=1)),
    ("4x4s2p2", (2, 8, 5, 6), (8, 6, 4, 4), dict(stride=2, padding=2)),
    ("4x4s2p1_groups2", (3, 8, 4, 5), (8, 3, 4, 4), dict(stride=2, padding=1, groups=2)),
    ("3x3s2p1_op0", (3, 8, 5, 6), (8, 6, 3, 3), dict(stride=2, padding=1)),
    ("3x3s2p1_op1", (3, 8, 5, 6), (8, 6, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("3x3s2_dil2", (2, 8, 5, 6), (8, 6, 3, 3), dict(stride=2, padding=2, dilation=2)),
    ("3x3s2_dil2_op1", (2, 8, 5, 6), (8, 6, 3, 3),
     dict(stride=2, padding=1, dilation=2, output_padding=1)),
    ("3d_4x4x4s2p1", (2, 4, 3, 4, 3), (4, 5, 4, 4, 4), dict(stride=2, padding=1)),
    ("1d_k16s8", (2, 6, 9), (6, 1, 16), dict(stride=8, padding=4)),
    ("1x1_in_4x4s1", (3, 12, 1, 1), (12, 10, 4, 4), {}),
    ("1x1_in_4x4s2p1", (3, 12, 1, 1), (12, 10, 4, 4), dict(stride=2, padding=1)),
    ("1x1_in_b1", (1, 16, 1, 1), (16, 8, 4, 4), dict(stride=2, padding=1)),
    ("1x1_in_groups2", (3, 12, 1, 1), (12, 5, 4, 4), dict(groups=2)),
    ("1x1x1_in_3d", (3, 6, 1, 1, 1), (6, 4, 2, 2, 2), dict(stride=2)),
    ("3x3s1p1", (2, 6, 5, 6), (6, 7, 3, 3), dict(padding=1)),
    ("unbatched", (8, 5, 6), (8, 6, 4, 4), dict(stride=2, padding=1)),
]
PARAMS = [pytest.param(x, w, kw, id=name) for name, x, w, kw in CASES]


def _arrays(rng, xs, ws, kw, dtype, bias=True):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    groups = kw.get("groups", 1)
    b = rng.standard_normal(ws[1] * groups).astype(dtype) if bias else None
    return x, w, b


def _channels_last(x, ndim):
    """``x`` as a channels-last view (the logical axes unchanged)."""
    if x.ndim != ndim + 2:
        return x
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)


def _spec(x, w, b, kw, ndim):
    """The spec of ``conv_transpose{ndim}d(x, w, b, **kw)`` (``x``'s format)."""
    return replace(problem_spec(x, w, transposed=True, **kw), has_bias=b is not None)


def _plans(spec):
    """Every plan of the transposed GEMM worth testing on ``spec``: each form
    the planner would weigh, each with the most bands and channel blocks
    and one-row (or one-pixel) tiles, so that ragged edges are reached."""
    ctx = current_context()
    itemsize = spec.compute_dtype.itemsize
    # every form the kernels run on this layout, whether or not the planner weighs it
    forms = {("rows", False)} if spec.channels_last else {("planes", False), ("rows", True)}
    forms.update(im2col.transposed_forms(spec))
    if np.prod(spec.input_size) == 1:
        forms.discard(("rows", True))
    plans = []
    for form, pack in sorted(forms):
        plan = im2col.plan_transposed(spec, form, itemsize, ctx.workspace_limit,
                                      ctx.pool_threads, pack)
        plans.append(plan)
        units = plan.geometry[1] * (spec.batch if form == "rows" else 1)
        width = spec.input_size3[2] if form == "planes" else 1
        # the weight by tap (Note [taps by channel block]) both ways, where it applies
        by_tap = form == "rows" and spec.channels_last
        plans.append(im2col.TransposedPlan(form, plan.geometry, spec.out_channels_per_group,
                                           units, width, pack, by_tap))
        plans.append(im2col.TransposedPlan(form, plan.geometry, 3, 1, 3, pack,
                                           by_tap and not plan.by_tap))
    return plans


def _run_plan(spec, x, w, b, plan, epilogue=None):
    """Run ``plan`` on the public arrays by :func:`im2col.im2col_transposed_gemm`
    (on the canonical arrays of the spec's format: channels-last ones read
    in place, whether or not the registry would pack them)."""
    ndim = spec.ndim
    lead = (1,) * (3 - ndim)
    if spec.channels_last:
        xc = np.ascontiguousarray(np.moveaxis(x, 1, -1)).reshape(spec.run_input_shape)
    else:
        xc = np.ascontiguousarray(x).reshape(spec.run_input_shape)
    given = np.ascontiguousarray(w).reshape(w.shape[:2] + lead + w.shape[2:])
    weight = TransposedWeight(given, spec.groups)
    epilogue = Epilogue.of(b, x.dtype) if epilogue is None else epilogue
    out = np.empty(spec.run_output_shape, x.dtype)
    im2col.im2col_transposed_gemm(spec, xc, weight, epilogue, out, plan, current_context())
    assert weight._rewritten is None          # read as given: no rewrite was made
    if spec.channels_last:
        out = np.moveaxis(out, -1, 1)
    return out.reshape(spec.user_output_shape)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kw", PARAMS)
def test_every_plan_matches_the_reference(rng, xs, ws, kw, dtype, channels_last):
    ndim = len(ws) - 2
    x, w, b = _arrays(rng, xs, ws, kw, dtype)
    if channels_last:
        if len(xs) != ndim + 2 or ndim == 1:
            pytest.skip("channels-last needs a batched 2-D or 3-D input")
        x = _channels_last(x, ndim)
    spec = _spec(x, w, b, kw, ndim)
    # a one-pixel input's two layouts are one memory order, read as contiguous
    assert spec.channels_last == (channels_last and np.prod(xs[2:]) > 1)
    for plan in _plans(spec):
        y = _run_plan(spec, x, w, b, plan)
        check_transposed(y, x, w, b, kw, dtype, "im2col")


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "cl"])
@pytest.mark.parametrize("xs, ws, kw", PARAMS)
def test_public_call_and_torch_parity(rng, xs, ws, kw, channels_last):
    """The public call through ``algorithm="im2col"`` and ``"auto"``, against
    the reference and PyTorch."""
    ndim = len(ws) - 2
    x, w, b = _arrays(rng, xs, ws, kw, np.float32)
    if channels_last:
        if len(xs) != ndim + 2 or ndim == 1:
            pytest.skip("channels-last needs a batched 2-D or 3-D input")
        x = _channels_last(x, ndim)
    for algorithm in ("im2col", "auto"):
        y = CONV_TRANSPOSE[ndim](x, w, b, algorithm=algorithm, **kw)
        ref = check_transposed(y, x, w, b, kw, np.float32,
                               "im2col" if algorithm == "im2col" else None)
        if channels_last and np.prod(xs[2:]) > 1:      # channels-last output
            assert np.moveaxis(y, 1, -1).flags.c_contiguous
        if torch is not None:
            f = getattr(torch.nn.functional, f"conv_transpose{ndim}d")
            t = f(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(w),
                  torch.from_numpy(b), **kw).numpy()
            scale = conv_transpose_reference(np.abs(x.astype(np.float64)),
                                             np.abs(w.astype(np.float64)), None, **kw)
            scale = scale + np.abs(b.astype(np.float64)).reshape((-1,) + (1,) * ndim)
            assert np.all(np.abs(y - t) <= 2 * RTOL_FACTOR * EPS[np.dtype(np.float32)] * scale)
            assert ref.shape == t.shape


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("xs, ws, kw", [p for p in PARAMS if p.id in (
    "2x2s2", "2x2s2_op1", "4x4s2p1", "3x3s2p1_op1", "1x1_in_4x4s2p1", "2x2x2s2")])
def test_fused_epilogue_in_every_form(rng, xs, ws, kw, activation):
    """Bias, residual and activation applied by each form where it writes
    (overwrite mode included: kernel equal to the stride)."""
    ndim = len(ws) - 2
    x, w, b = _arrays(rng, xs, ws, kw, np.float32)
    z = conv_transpose_reference(x.astype(np.float64), w.astype(np.float64),
                                 b.astype(np.float64), **kw)
    r = rng.standard_normal(z.shape).astype(np.float32)
    slope = 0.2 if activation == "leaky_relu" else 0.01
    want = activate(activation, z + r, slope)
    scale = (conv_transpose_reference(np.abs(x.astype(np.float64)),
                                      np.abs(w.astype(np.float64)), None, **kw)
             + np.abs(b.astype(np.float64)).reshape((-1,) + (1,) * ndim) + np.abs(r))
    eps = EPS[np.dtype(np.float32)]
    bound = 1.5 * RTOL_FACTOR * eps * scale + 4 * eps * np.abs(want)
    for channels_last in (False, True):
        xx = _channels_last(x, ndim) if channels_last else x
        rr = _channels_last(r, ndim) if channels_last else r
        spec = _spec(xx, w, b, kw, ndim)
        if spec.channels_last:
            rc = np.ascontiguousarray(np.moveaxis(rr, 1, -1)).reshape(spec.run_output_shape)
        else:
            rc = rr.reshape(spec.run_output_shape)
        epilogue = Epilogue.of(b, np.float32, activation, slope, rc)
        for plan in _plans(spec):
            y = _run_plan(spec, xx, w, b, plan, epilogue)
            assert np.all(np.abs(y - want) <= bound), (plan, channels_last)
        y = CONV_TRANSPOSE[ndim](xx, w, b, activation=activation, negative_slope=slope,
                                 residual=rr, algorithm="im2col", **kw)
        assert np.all(np.abs(y - want) <= bound)


def test_out_and_no_bias(rng):
    x, w, _ = _arrays(rng, (2, 8, 5, 6), (8, 6, 4, 4), {}, np.float32, bias=False)
    kw = dict(stride=2, padding=1)
    expected = nc.conv_transpose2d(x, w, algorithm="im2col", **kw)
    out = np.full(expected.shape, np.nan, np.float32)
    y = nc.conv_transpose2d(x, w, algorithm="im2col", out=out, **kw)
    assert y is out
    check_transposed(out, x, w, None, kw, np.float32, "im2col")
    for xs, ws, kw in (((3, 8, 1, 1), (8, 6, 4, 4), {}), ((3, 8, 5, 6), (8, 6, 2, 2),
                                                         dict(stride=2))):
        x, w, _ = _arrays(rng, xs, ws, kw, np.float32, bias=False)
        out = np.full(nc.conv_transpose2d(x, w, **kw).shape, np.nan, np.float32)
        nc.conv_transpose2d(x, w, algorithm="im2col", out=out, **kw)
        check_transposed(out, x, w, None, kw, np.float32, "im2col")


@pytest.mark.parametrize("xs, ws, kw", [p for p in PARAMS if p.id in (
    "2x2s2", "4x4s2p1", "3x3s2p1_op1", "1x1_in_4x4s1", "2x2x2s2", "1d_k16s8")])
def test_one_and_two_threads_agree_bitwise(rng, xs, ws, kw):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    ndim = len(ws) - 2
    x, w, b = _arrays(rng, xs, ws, kw, np.float32)
    cases = [(x, None)] + ([(_channels_last(x, ndim), None)] if ndim > 1 else [])
    previous = numba.get_num_threads()
    try:
        for xx, _ in cases:
            spec = _spec(xx, w, b, kw, ndim)
            for plan in _plans(spec):
                results = []
                for threads in (1, 2, 1, 2):
                    numba.set_num_threads(threads)
                    results.append(_run_plan(spec, xx, w, b, plan))
                assert all(np.array_equal(r, results[0]) for r in results[1:]), plan
            results = []
            for threads in (1, 2):
                numba.set_num_threads(threads)
                results.append(CONV_TRANSPOSE[ndim](xx, w, b, algorithm="im2col", **kw))
            assert np.array_equal(results[0], results[1])
    finally:
        numba.set_num_threads(previous)


@pytest.mark.parametrize("pool", [2, 8])
def test_plans_do_not_depend_on_the_call_threads(pool):
    """Which form runs, and its split, decide the bits: for one pool they are
    the same for every thread count of a call (stride-1 problems weigh the
    forward kernels too; tests/test_bits.py has the mechanism)."""
    from numbaconv.context import ExecutionContext
    for xs, ws, kw in (((1, 40, 9, 11), (40, 40, 3, 3), dict(padding=1)),
                       ((3, 12, 1, 1), (12, 10, 4, 4), {}),
                       ((4, 128, 28, 28), (128, 64, 4, 4), dict(stride=2, padding=1)),
                       ((8, 1024, 4, 4), (1024, 512, 4, 4), dict(stride=2, padding=1))):
        spec = problem_spec(xs, ws, transposed=True, **kw)
        details = {get_algorithm("im2col").plan(
            spec, ExecutionContext(threads=t, pool_threads=pool)).detail
            for t in range(1, pool + 1)}
        assert len(details) == 1, details


def test_weight_as_given_or_rewritten_gives_the_same_bits(rng):
    """A rewritten (canonical) weight, as tuning and calibration pass, is
    turned back into the given one: the same products in the same order."""
    x, w, b = _arrays(rng, (2, 8, 5, 6), (8, 6, 4, 4), {}, np.float32)
    spec = _spec(x, w, b, dict(stride=2, padding=1), 2)
    algorithm = get_algorithm("im2col")
    given = w.reshape(8, 6, 1, 4, 4)
    outs = []
    for weight in (TransposedWeight(given, 1), transposed_weight(given, 1)):
        out = np.empty(spec.run_output_shape, np.float32)
        algorithm.run(spec, x.reshape(spec.run_input_shape), weight, Epilogue.of(b, np.float32),
                      out)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize("shape, wshape, kw", [
    ((2, 6, 10, 12), (8, 6, 2, 2), dict(stride=2)),
    ((2, 6, 10, 12), (8, 6, 4, 4), dict(stride=2, padding=1)),
    ((2, 6, 9, 11), (8, 3, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((3, 4, 8), (6, 4, 4), dict(stride=4)),
    ((2, 4, 6, 7, 5), (6, 4, 2, 2, 2), dict(stride=2)),
    ((2, 6, 9, 11), (8, 6, 3, 3), dict(stride=2, padding=2, dilation=2)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_input_gradient(rng, shape, wshape, kw, dtype):
    """The same kernels serve a strided layer's input gradient (the other
    direction): ``grad.conv{N}d_input`` against its float64 reference."""
    ndim = len(wshape) - 2
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    y = nc.conv_reference(x, w, None, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    for algorithm in ("im2col", "auto"):
        gi = GRAD_INPUT[ndim](x.shape, w, g, algorithm=algorithm, **kw)
        check_grad_input(gi, x.shape, w, g, kw, dtype,
                         "im2col" if algorithm == "im2col" else None)
    assert np.allclose(conv_grad_input_reference(x.shape, w, g, **kw),
                       GRAD_INPUT[ndim](x.shape, w, g, algorithm="im2col", **kw),
                       rtol=1e-4, atol=1e-4)


def test_band_geometry():
    # 2x2 stride 2 on 5x6: bands of input rows, no halo, every value stored once
    assert band_geometry((1, 5, 6), (1, 10, 12), (1, 2, 2), (1, 2, 2), (1, 1, 1),
                         (0, 0, 0)) == (1, 5, 6, 12, 2, 0, 10, 0, True)
    # output_padding 1: the last row and column get the bias alone: no overwrite
    assert band_geometry((1, 5, 6), (1, 11, 13), (1, 2, 2), (1, 2, 2), (1, 1, 1),
                         (0, 0, 0)) == (1, 5, 6, 13, 2, 0, 11, 0, False)
    # 3-D: bands of depth slices
    assert band_geometry((3, 4, 5), (6, 8, 10), (2, 2, 2), (2, 2, 2), (1, 1, 1),
                         (0, 0, 0)) == (0, 3, 20, 80, 2, 0, 6, 0, True)
    # 4x4 stride 2: the taps overlap, each band recomputes one input row before it
    assert band_geometry((1, 5, 6), (1, 10, 12), (1, 4, 4), (1, 2, 2), (1, 1, 1),
                         (0, 1, 1)) == (1, 5, 6, 12, 2, 1, 10, 1, False)
    # 1-D: bands along the width; 16 taps at stride 8: a halo of one
    assert band_geometry((1, 1, 9), (1, 1, 72), (1, 1, 16), (1, 1, 8), (1, 1, 1),
                         (0, 0, 4)) == (2, 9, 1, 1, 8, 4, 72, 1, False)
    # a one-pixel input is one unit
    assert band_geometry((1, 1, 1), (1, 4, 4), (1, 4, 4), (1, 1, 1), (1, 1, 1),
                         (0, 0, 0))[1] == 1


@pytest.mark.parametrize("xs, ws, kw, path", [
    # pix2pix's up8 and a DCGAN projection: one GEMM over the images
    ((1, 512, 1, 1), (512, 512, 4, 4), dict(stride=2, padding=1), "transposed rows"),
    ((8, 100, 1, 1), (100, 1024, 4, 4), {}, "transposed rows"),
    # U-Net's up-convolutions: bands of rows
    ((1, 128, 128, 128), (128, 64, 2, 2), dict(stride=2), "transposed planes"),
    ((1, 1024, 16, 16), (1024, 512, 2, 2), dict(stride=2), "transposed planes"),
    # the public up4x4 shape
    ((4, 128, 28, 28), (128, 64, 4, 4), dict(stride=2, padding=1), "transposed planes"),
])
def test_auto_picks_the_transposed_gemm(xs, ws, kw, path):
    choice = nc.choose_algorithm(xs, ws, transposed=True, **kw)
    assert choice.algorithm == "im2col", str(choice)
    assert choice.path.startswith(path), str(choice)


def test_other_algorithms_pay_for_the_weight_rewrite():
    """Their plans include the rewrite of the weight (Note [transposed
    weight]); im2col's does not copy it."""
    weight = 512 * 512 * 16 * 4
    spec = _spec(np.empty((1, 512, 1, 1), np.float32), np.empty((512, 512, 4, 4), np.float32),
                 None, dict(stride=2, padding=1), 2)
    direct = get_algorithm("direct").plan(spec)
    assert direct.copies >= 2 * weight
    assert get_algorithm("im2col").plan(spec).copies == 0
