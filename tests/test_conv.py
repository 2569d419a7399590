"""Forward convolution: named cases, hypothesis specs, PyTorch parity."""

from __future__ import annotations

import os

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv as nc
from numbaconv.epilogue import Epilogue
from numbaconv.algorithms.direct import (LOOP_ORDERS, choose_loop_order, direct_forward,
                                         serves_phase_planes, why_not_phase_planes)
from numbaconv.spec import make_conv_spec

from .cases import CASES
from .conftest import (CONV, assert_matches_reference, error_scale, spec_of, tolerance, torch,
                       torch_conv)

CASE_PARAMS = [pytest.param(shape, wshape, kw, id=name) for name, shape, wshape, kw in CASES]
DTYPES = [np.float32, np.float64]
#: Algorithms that serve every valid spec (docs/semantics.md): each runs every
#: named case and a share of the hypothesis specs.
GENERAL_ALGORITHMS = ["direct", "im2col", "fft"]


def loop_order_params():
    """Every named case with every direct loop order; the pairs a loop order
    does not serve by design are skipped with the reason."""
    params = []
    for name, shape, wshape, kw in CASES:
        why = why_not_phase_planes(spec_of(shape, wshape, **kw))
        for loop_order in LOOP_ORDERS:
            marks = ()
            if loop_order == "phase_planes" and why is not None:
                marks = pytest.mark.skip(reason=f"phase_planes does not serve {name}: {why}")
            cin_g = wshape[1]
            if loop_order == "thin_channels_last" and cin_g != 1:
                marks = pytest.mark.skip(
                    reason="thin_channels_last serves one input channel per group; "
                           f"{name} has {cin_g}")
            params.append(pytest.param(shape, wshape, kw, loop_order, id=f"{name}-{loop_order}",
                                       marks=marks))
    return params


def make_inputs(rng, shape, wshape, dtype, bias=True):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype) if bias else None
    return x, w, b


class TestNamedCases:
    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape, wshape, kw", CASE_PARAMS)
    def test_matches_reference(self, rng, shape, wshape, kw, dtype, algorithm):
        x, w, b = make_inputs(rng, shape, wshape, dtype)
        copies = [a.copy() for a in (x, w, b)]
        y = CONV[len(wshape) - 2](x, w, b, **kw, algorithm=algorithm)
        assert_matches_reference(y, x, w, b, algorithm=algorithm, **kw)
        for before, after in zip(copies, (x, w, b)):      # inputs never modified
            assert np.array_equal(before, after)

    @pytest.mark.parametrize("shape, wshape, kw, loop_order", loop_order_params())
    def test_every_direct_loop_order(self, rng, shape, wshape, kw, loop_order):
        """Each loop order serves every case it claims, not only those it is picked for."""
        x, w, b = make_inputs(rng, shape, wshape, np.float32)
        ndim = len(wshape) - 2
        spec = make_conv_spec(f"conv{ndim}d", ndim, x, w, b, **kw)
        lead = (1,) * (3 - ndim)
        x5 = np.ascontiguousarray(x.reshape(spec.input_shape[:2] + spec.input_size3))
        w5 = np.ascontiguousarray(w.reshape(w.shape[:2] + lead + w.shape[2:]))
        # NaN-filled, so an output element the kernel does not write fails the check
        out = np.full(spec.output_shape[:2] + spec.output_size3, np.nan, np.float32)
        assert direct_forward(spec, x5, w5, Epilogue.of(b, spec.compute_dtype), out,
                              loop_order=loop_order) is out
        y = out.reshape(spec.user_output_shape)
        assert_matches_reference(y, x, w, b, **kw)

    def test_thin_channels_last_refuses_thick_groups(self, rng):
        x, w, b = make_inputs(rng, (1, 4, 5, 5), (2, 2, 3, 3), np.float32)
        spec = make_conv_spec("conv2d", 2, x, w, b, groups=2)
        out = np.empty((1, 2, 1, 3, 3), np.float32)
        with pytest.raises(ValueError, match="one input channel per group"):
            direct_forward(spec, x.reshape(1, 4, 1, 5, 5), w.reshape(2, 2, 1, 3, 3),
                           Epilogue.of(b, spec.compute_dtype), out,
                           loop_order="thin_channels_last")

    def test_phase_planes_has_named_cases(self):
        """The skipped pairs above leave phase_planes cases in 1-D and 2-D, with
        and without a stride, and with junk outputs past the row (pitch > OW)."""
        served = [spec_of(shape, wshape, **kw) for _, shape, wshape, kw in CASES]
        served = [s for s in served if serves_phase_planes(s)]
        assert {s.ndim for s in served} == {1, 2}
        assert any(s.stride3[2] > 1 for s in served)
        assert any(s.stride3[1] > 1 for s in served)
        assert any(s.output_size3[2] < s.input_size3[2] // s.stride3[2] for s in served)

    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    @pytest.mark.parametrize("shape, wshape, kw", CASE_PARAMS)
    def test_without_bias(self, rng, shape, wshape, kw, algorithm):
        x, w, _ = make_inputs(rng, shape, wshape, np.float32, bias=False)
        y = CONV[len(wshape) - 2](x, w, **kw, algorithm=algorithm)
        assert_matches_reference(y, x, w, None, algorithm=algorithm, **kw)

    @pytest.mark.skipif(torch is None, reason="PyTorch not installed")
    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape, wshape, kw", CASE_PARAMS)
    def test_pytorch_parity(self, rng, shape, wshape, kw, dtype, algorithm):
        x, w, b = make_inputs(rng, shape, wshape, dtype)
        y = CONV[len(wshape) - 2](x, w, b, **kw, algorithm=algorithm)
        expected = torch_conv(x, w, b, **kw)
        assert y.shape == expected.shape
        # both results are within the tolerance of the truth, so of each
        # other within twice that.
        bound = tolerance(x, w, b, dtype, algorithm, factor=32, **kw)
        assert np.all(np.abs(y.astype(np.float64) - expected) <= bound)

    @pytest.mark.skipif(torch is None, reason="PyTorch not installed")
    @pytest.mark.parametrize("shape, wshape, kw", CASE_PARAMS)
    def test_reference_is_pytorch_in_float64(self, rng, shape, wshape, kw):
        """The oracle itself agrees with PyTorch to float64 rounding."""
        x, w, b = make_inputs(rng, shape, wshape, np.float64)
        ref = nc.conv_reference(x, w, b, **kw)
        expected = torch_conv(x, w, b, **kw)
        bound = 16 * np.finfo(np.float64).eps * error_scale(x, w, b, **kw)
        assert np.all(np.abs(ref - expected) <= bound)


@pytest.mark.parametrize("shape, wshape, kw, expected", [
    ((4, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "channels_last"),
    ((4, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), "channels_last"),
    ((8, 16, 1000), (16, 16, 255), {}, "channels_last"),
    ((4, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256), "phase_planes"),
    ((1, 8, 30), (8, 1, 4), dict(padding="same", groups=8), "phase_planes"),
    ((4, 256, 28, 28), (256, 1, 3, 3), dict(stride=2, padding=1, groups=256), "phase_planes"),
    ((4, 96, 112, 112), (96, 1, 3, 3), dict(stride=2, padding=1, groups=96), "phase_planes"),
    ((4, 32, 27, 27), (32, 1, 3, 3), dict(stride=2, padding=1, groups=32),
     "thin_channels_last"),
    ((4, 32, 28, 28), (32, 1, 3, 3),
     dict(padding=1, groups=32, padding_mode="reflect"), "thin_channels_last"),
    ((2, 16, 129, 129), (16, 1, 3, 3), dict(stride=2, groups=16), "planes"),
    ((1, 8, 6, 6, 6), (8, 1, 3, 3, 3), dict(padding=1, groups=8), "planes"),
    ((2, 32, 56, 56), (32, 2, 3, 3), dict(padding=1, groups=16), "phase_planes"),
    ((1, 1, 64, 64), (1, 1, 9, 9), {}, "phase_planes"),
])
def test_direct_picks_the_documented_loop_order(shape, wshape, kw, expected):
    ndim = len(wshape) - 2
    spec = make_conv_spec(f"conv{ndim}d", ndim, np.empty(shape, np.float32),
                          np.empty(wshape, np.float32), None, **kw)
    assert choose_loop_order(spec) == expected


class TestPhasePlaneForms:
    """The row-pairs and stride-two forms of the phase-planes kernel (Note
    [row pairs], Note [stride-two phases] in kernels/direct_row_phases.py) against the
    single-row form: row pairs give the same bits (except 3x3, whose nine
    taps are summed in one pass, and under bounds checking); every form
    gives the same bits on any thread count and in either half of a row
    pair, within the reference's tolerance.

    The equal bits hold for any compiler target, not by luck of one CPU:
    the forms are compiled without ``reassoc`` (``ORDERED_FASTMATH`` in
    kernels/jit.py) and take their sums from the same helpers, so each sum
    is the same expression in the same order in every form.  CI runs this
    class under the AVX2 profile as well (.ci/run, stage 4)."""

    # (N, C, groups, H, W, KH, KW, pad_h, pad_w): odd and even output
    # heights, a single output row, kernels of 1-13 rows (groups of 7, 3 and
    # single taps, starting at odd rows), shifts only left or right,
    # several input channels per group, outputs narrower than the input
    PROBLEMS = [
        (2, 8, 8, 28, 28, 7, 7, 3, 3),
        (1, 5, 5, 7, 7, 7, 7, 3, 3),
        (1, 3, 3, 9, 12, 7, 5, 0, 2),
        (1, 2, 2, 20, 9, 13, 3, 6, 1),
        (2, 4, 2, 15, 16, 10, 4, 2, 1),
        (1, 2, 2, 5, 5, 1, 1, 0, 0),
        (1, 6, 2, 6, 7, 2, 3, 1, 1),
        (1, 4, 4, 11, 11, 5, 5, 2, 2),
        (1, 1, 1, 2, 9, 3, 3, 1, 1),
        (1, 6, 3, 8, 8, 7, 7, 3, 3),
        (1, 2, 2, 13, 13, 6, 7, 0, 3),
        (1, 2, 2, 12, 5, 9, 2, 4, 0),
        (3, 4, 4, 3, 40, 7, 7, 3, 0),
        (1, 3, 3, 7, 9, 7, 7, 0, 3),       # one output row
        (2, 8, 8, 28, 28, 3, 3, 1, 1),     # 3x3: one fused pass
        (1, 8, 2, 9, 12, 3, 3, 1, 1),
        (1, 2, 2, 3, 9, 3, 3, 0, 1),
        (1, 4, 4, 6, 5, 3, 3, 2, 0),
        (2, 6, 6, 28, 28, 5, 5, 2, 2),     # EfficientNet's 5x5: one five-tap pass a column
        (1, 4, 2, 9, 10, 5, 3, 1, 0),
        (1, 2, 2, 14, 9, 8, 3, 3, 1),      # 8 rows: a three-tap and a five-tap group
    ]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: "x".join(map(str, p)))
    def test_against_single_rows_and_the_reference(self, rng, problem, dtype):
        from numbaconv.kernels import direct_phase_planes as dpp
        n, c, groups, h, w_, kh, kw, pad_h, pad_w = problem
        assert why_not_phase_planes(spec_of((n, c, h, w_), (c, c // groups, kh, kw),
                                            padding=(pad_h, pad_w), groups=groups)) is None
        x, w, b = make_inputs(rng, (n, c, h, w_), (c, c // groups, kh, kw), dtype)
        oh, ow = h + 2 * pad_h - kh + 1, w_ + 2 * pad_w - kw + 1
        results = {}
        for form in ("single_rows", "row_pairs"):
            for chunks in (1, 3):
                out = np.full((n, c, 1, oh, ow), np.nan, dtype)
                dpp.conv_phase_planes(x[:, :, None], w[:, :, None], b, out, groups,
                                             pad_h, pad_w, (1, 1, 1), (1, 1, 1), chunks,
                                             form=form)
                results[form, chunks] = out[:, :, 0]
        for form in ("single_rows", "row_pairs"):
            assert np.array_equal(results[form, 1], results[form, 3])
            assert_matches_reference(results[form, 1], x, w, b, padding=(pad_h, pad_w),
                                     groups=groups, algorithm="direct")
        if (kh, kw) != (3, 3) and not numba.config.BOUNDSCHECK:
            # the same products in the same written order; compiled with
            # bounds checks (scalar loops) LLVM may contract them into FMAs
            # differently in the two kernels, so there only the tolerance holds
            assert np.array_equal(results["row_pairs", 1], results["single_rows", 1])

    # (N, C, groups, H, W, KH, KW, pad_h, pad_w): stride 2, odd and even
    # sizes, paddings 0-3, several input channels per group, kernels whose
    # columns take every tap group (_tap_group: 7, 5, 3, and one by one), and
    # half-widths (W/2) that take every path of the row de-interleave
    # (kernels.runs.deinterleave_run): under 4, 4-8, 8-16, 16 and over,
    # multiples of the block and not
    STRIDE_TWO = [
        (2, 6, 6, 14, 14, 3, 3, 1, 1),
        (1, 4, 4, 15, 16, 3, 3, 1, 1),
        (1, 3, 3, 9, 10, 3, 3, 0, 0),
        (1, 4, 2, 12, 12, 3, 3, 2, 1),
        (2, 8, 2, 11, 8, 3, 3, 1, 0),
        (1, 2, 2, 3, 4, 3, 3, 1, 1),
        (1, 2, 2, 37, 38, 3, 3, 1, 1),     # half-width 19: one block of 16 and an overlap
        (1, 2, 2, 6, 70, 3, 3, 1, 1),      # 35: two blocks and an overlap
        (1, 2, 2, 5, 64, 3, 3, 0, 1),      # 32: two blocks exactly
        (2, 6, 6, 28, 28, 5, 5, 2, 2),     # EfficientNet's 5x5 stride 2
        (1, 4, 2, 17, 22, 5, 3, 1, 1),
        (1, 3, 3, 30, 30, 7, 7, 3, 3),     # 7x7 stride 2
        (1, 2, 2, 21, 24, 7, 7, 3, 0),
        (1, 2, 2, 16, 16, 4, 4, 1, 1),     # 4 rows: a three-tap group and one tap
        (1, 2, 1, 12, 12, 2, 2, 0, 0),
        (1, 2, 2, 9, 10, 1, 1, 0, 0),
        (1, 2, 2, 24, 20, 8, 6, 3, 2),     # 8 rows: a three- and a five-tap group
    ]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("problem", STRIDE_TWO, ids=lambda p: "x".join(map(str, p)))
    def test_stride_two_against_the_reference(self, rng, problem, dtype):
        from numbaconv.kernels import direct_phase_planes as dpp
        n, c, groups, h, w_, kh, kw, pad_h, pad_w = problem
        weight_shape = (c, c // groups, kh, kw)
        assert why_not_phase_planes(spec_of((n, c, h, w_), weight_shape, stride=2,
                                            padding=(pad_h, pad_w), groups=groups)) is None
        x, w, b = make_inputs(rng, (n, c, h, w_), weight_shape, dtype)
        oh, ow = (h + 2 * pad_h - kh) // 2 + 1, (w_ + 2 * pad_w - kw) // 2 + 1
        results = []
        for chunks in (1, 3):
            out = np.full((n, c, 1, oh, ow), np.nan, dtype)
            dpp.conv_phase_planes(x[:, :, None], w[:, :, None], b, out, groups, pad_h,
                                         pad_w, (1, 2, 2), (1, 1, 1), chunks, form="stride_two")
            results.append(out[:, :, 0])
        assert np.array_equal(results[0], results[1])
        assert_matches_reference(results[0], x, w, b, stride=2, padding=(pad_h, pad_w),
                                 groups=groups, algorithm="direct")

    @pytest.mark.parametrize("kernel, cin_g", [((3, 3), 1), ((3, 3), 8), ((7, 7), 1),
                                               ((7, 3), 2), ((5, 7), 1), ((5, 5), 1),
                                               ((5, 3), 3)])
    def test_an_output_row_has_the_same_bits_in_either_half_of_a_pair(self, rng, kernel,
                                                                       cin_g):
        """The problem started one padded row lower (as a Dask block may be)
        computes every output row in the other half of its pair: same bits.
        (With ``reassoc`` LLVM summed the 3x3 pass's even and odd rows in
        different orders.)"""
        from numbaconv.kernels import direct_phase_planes as dpp
        kh, kw = kernel
        groups, c = 4, 4 * cin_g
        x, w, b = make_inputs(rng, (1, c, 1, 20, 21), (c, cin_g, 1, kh, kw), np.float32)
        pad_h, pad_w = kh // 2, kw // 2
        oh, ow = 20 + 2 * pad_h - kh + 1, 21 + 2 * pad_w - kw + 1
        whole = np.empty((1, c, 1, oh, ow), np.float32)
        dpp.conv_phase_planes(x, w, b, whole, groups, pad_h, pad_w, (1, 1, 1),
                                     (1, 1, 1), 2, form="row_pairs")
        lower = np.ascontiguousarray(np.pad(x, [(0, 0)] * 3 + [(pad_h, pad_h), (0, 0)])[..., 1:, :])
        shifted = np.empty((1, c, 1, oh - 1, ow), np.float32)
        dpp.conv_phase_planes(lower, w, b, shifted, groups, 0, pad_w, (1, 1, 1),
                                     (1, 1, 1), 2, form="row_pairs")
        assert np.array_equal(whole[..., 1:, :], shifted)

    @pytest.mark.parametrize("form, stride", [("row_pairs", 1), ("stride_two", 2)])
    @pytest.mark.parametrize("cin_g", [1, 3])
    def test_the_fused_5x5_pass_sums_as_the_pass_per_column(self, rng, form, stride, cin_g):
        """A 5x5 kernel is one pass in both forms (Note [five-tap columns]);
        a 5x6 kernel whose first column is zero, with one more column of
        padding, takes the pass per column over the same taps, and adding
        its zero column first changes no bit: equal outputs."""
        from numbaconv.kernels import direct_phase_planes as dpp
        groups, c = 2, 2 * cin_g
        x, w, b = make_inputs(rng, (2, c, 1, 18, 22), (c, cin_g, 1, 5, 5), np.float32)
        wide = np.concatenate([np.zeros_like(w[..., :1]), w], axis=-1)
        oh, ow = (18 + 4 - 5) // stride + 1, (22 + 4 - 5) // stride + 1
        fused = np.empty((2, c, 1, oh, ow), np.float32)
        per_column = np.empty_like(fused)
        s3 = (1, stride, stride)
        dpp.conv_phase_planes(x, w, b, fused, groups, 2, 2, s3, (1, 1, 1), 2, form=form)
        dpp.conv_phase_planes(x, wide, b, per_column, groups, 2, 3, s3, (1, 1, 1), 2,
                                     form=form)
        assert np.array_equal(fused, per_column)

    @pytest.mark.parametrize("kernel, stride, dilation, expected", [
        ((7, 7), 1, 1, "row_pairs"),
        ((7, 3), 1, 1, "row_pairs"),
        ((3, 3), 1, 1, "row_pairs"),
        ((5, 5), 1, 1, "row_pairs"),        # Note [five-tap columns]
        ((5, 3), 1, 1, "row_pairs"),
        ((3, 5), 1, 1, "single_rows"),
        ((7, 7), 2, 1, "stride_two"),
        ((5, 5), 2, 1, "stride_two"),
        ((3, 3), 2, 1, "stride_two"),
        ((2, 2), 2, 1, "single_rows"),      # Note [stride-two phases]: slower there
        ((3, 3), 3, 1, "single_rows"),
        ((3, 3), 1, 2, "single_rows"),
        ((3, 3), 2, 2, "single_rows"),
    ])
    def test_default_form(self, kernel, stride, dilation, expected):
        from numbaconv.kernels.direct_layouts import default_phase_plane_form
        assert default_phase_plane_form(kernel, (1, stride, stride),
                                        (1, dilation, dilation)) == expected

    # (N, C, groups, H, W, KH, KW, pad_h, pad_w, stride, dilation): every form
    BANDED = [
        (2, 4, 4, 29, 30, 7, 7, 3, 3, 1, 1),       # row pairs
        (1, 4, 2, 21, 22, 3, 3, 1, 1, 1, 1),       # row pairs, one nine-tap pass, grouped
        (1, 3, 3, 17, 18, 5, 5, 2, 2, 1, 1),       # row pairs, one 25-tap pass
        (1, 2, 2, 30, 30, 5, 5, 2, 2, 2, 1),       # stride two, one 25-tap pass
        (1, 4, 2, 25, 26, 3, 3, 1, 1, 2, 1),       # stride two, 3x3
        (1, 2, 2, 26, 28, 7, 7, 3, 3, 2, 1),       # stride two, per column
        (1, 3, 3, 17, 18, 9, 9, 4, 4, 1, 1),       # single rows, straight into out
        (1, 4, 2, 21, 22, 3, 3, 2, 2, 1, 2),       # single rows, dilated
        (1, 2, 2, 31, 33, 5, 5, 2, 2, 3, 1),       # single rows, stride 3
        (1, 2, 2, 20, 20, 2, 2, 0, 0, 2, 1),       # single rows, 2x2 stride 2
    ]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("problem", BANDED, ids=lambda p: "x".join(map(str, p)))
    def test_bands_give_the_bits_of_whole_planes(self, rng, problem, dtype):
        """Note [plane bands]: a plane computed in bands of 2, 4 or 6 output
        rows (rows outside the input zeroed per band), on 1 and 3 chunks."""
        from numbaconv.kernels import direct_phase_planes as dpp
        n, c, groups, h, w_, kh, kw, pad_h, pad_w, stride, dilation = problem
        x, w, b = make_inputs(rng, (n, c, 1, h, w_), (c, c // groups, 1, kh, kw), dtype)
        oh = (h + 2 * pad_h - dilation * (kh - 1) - 1) // stride + 1
        ow = (w_ + 2 * pad_w - dilation * (kw - 1) - 1) // stride + 1
        args = (groups, pad_h, pad_w, (1, stride, stride), (1, dilation, dilation))
        whole = np.full((n, c, 1, oh, ow), np.nan, dtype)
        dpp.conv_phase_planes(x, w, b, whole, *args, 2)
        assert_matches_reference(whole[:, :, 0], x[:, :, 0], w[:, :, 0], b,
                                 stride=stride, padding=(pad_h, pad_w), dilation=dilation,
                                 groups=groups, algorithm="direct")
        for band_rows in (2, 4, 6):
            for chunks in (1, 3):
                banded = np.full_like(whole, np.nan)
                dpp.conv_phase_planes(x, w, b, banded, *args, chunks,
                                             band_rows=band_rows)
                assert np.array_equal(banded, whole), (band_rows, chunks)

    @pytest.mark.parametrize("band_rows", [1, 3, 0, -2])
    def test_bands_must_be_an_even_number_of_rows(self, rng, band_rows):
        from numbaconv.kernels import direct_phase_planes as dpp
        x, w, b = make_inputs(rng, (1, 2, 1, 12, 12), (2, 1, 1, 3, 3), np.float32)
        out = np.empty((1, 2, 1, 12, 12), np.float32)
        with pytest.raises(ValueError, match="band_rows must be an even number"):
            dpp.conv_phase_planes(x, w, b, out, 2, 1, 1, (1, 1, 1), (1, 1, 1), 1,
                                         band_rows=band_rows)

    def test_forcing_a_form_that_does_not_serve_is_refused(self, rng):
        from numbaconv.kernels import direct_phase_planes as dpp
        x, w, b = make_inputs(rng, (1, 2, 1, 8, 8), (2, 1, 1, 7, 7), np.float32)
        out = np.empty((1, 2, 1, 4, 4), np.float32)
        for form in ("row_pairs", "stride_two", "columns"):
            with pytest.raises(ValueError, match=f"form={form!r} does not serve kernel"):
                dpp.conv_phase_planes(x, w, b, out, 2, 3, 3, (1, 2, 2), (1, 2, 2), 1,
                                             form=form)


class TestArrayHandling:
    def test_float16_computed_in_float32(self, rng):
        x, w, b = make_inputs(rng, (2, 8, 9, 9), (4, 8, 3, 3), np.float16)
        y = nc.conv2d(x, w, b, padding=1)
        assert y.dtype == np.float16
        assert_matches_reference(y, x, w, b, padding=1)
        # computed in float32 and rounded once: equals rounding the float32 result
        y32 = nc.conv2d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32),
                        padding=1)
        assert np.array_equal(y, y32.astype(np.float16))

    @pytest.mark.parametrize("dtypes, expected", [
        ((np.float16, np.float32, None), np.float32),
        ((np.float32, np.float64, None), np.float64),
        ((np.float32, np.float32, np.float64), np.float64),
        ((np.float16, np.float16, np.float32), np.float32),
    ])
    def test_mixed_dtypes_promote_like_numpy(self, rng, dtypes, expected):
        xd, wd, bd = dtypes
        x = rng.standard_normal((1, 4, 6, 6)).astype(xd)
        w = rng.standard_normal((3, 4, 3, 3)).astype(wd)
        b = None if bd is None else rng.standard_normal(3).astype(bd)
        y = nc.conv2d(x, w, b)
        assert y.dtype == expected
        assert_matches_reference(y, x, w, b)

    @pytest.mark.parametrize("view", ["transposed", "negative_strides", "sliced", "fortran"])
    def test_non_contiguous_views(self, rng, view):
        base = rng.standard_normal((2, 6, 12, 14)).astype(np.float32)
        w = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)[:, :, ::-1, :]  # flipped view
        x = {"transposed": base.transpose(0, 1, 3, 2),
             "negative_strides": base[::-1, :, ::-1, ::-1],
             "sliced": base[:, ::2, 1::2, ::3],
             "fortran": np.asfortranarray(base)}[view]
        w = w[:, : x.shape[1]]
        assert not (x.flags.c_contiguous and w.flags.c_contiguous)
        y = nc.conv2d(x, w, padding=1, stride=(1, 2))
        assert_matches_reference(y, np.ascontiguousarray(x), np.ascontiguousarray(w),
                                 padding=1, stride=(1, 2))

    def test_out_is_filled_and_returned(self, rng):
        x, w, b = make_inputs(rng, (2, 4, 8, 8), (6, 4, 3, 3), np.float32)
        out = np.full((2, 6, 8, 8), np.nan, np.float32)
        y = nc.conv2d(x, w, b, padding=1, out=out)
        assert y is out
        assert_matches_reference(out, x, w, b, padding=1)

    def test_out_unbatched_and_float16(self, rng):
        x, w, b = make_inputs(rng, (4, 8, 8), (6, 4, 3, 3), np.float16)
        out = np.full((6, 6, 6), np.nan, np.float16)
        y = nc.conv2d(x, w, b, out=out)
        assert y is out
        assert_matches_reference(out, x, w, b)

    def test_unbatched_equals_batch_of_one(self, rng):
        x, w, b = make_inputs(rng, (3, 9, 9), (5, 3, 3, 3), np.float64)
        y = nc.conv2d(x, w, b, stride=2)
        assert y.shape == (5, 4, 4)
        assert np.array_equal(y, nc.conv2d(x[None], w, b, stride=2)[0])

    def test_empty_batch_shape(self):
        y = nc.conv3d(np.zeros((0, 2, 4, 4, 4), np.float32), np.zeros((3, 2, 2, 2, 2), np.float32))
        assert y.shape == (0, 3, 3, 3, 3) and y.dtype == np.float32

    def test_lists_are_accepted(self):
        y = nc.conv1d([[[1.0, 2.0, 3.0]]], [[[1.0, 1.0]]])
        assert y.tolist() == [[[3.0, 5.0]]]

    def test_algorithm_names(self):
        assert nc.algorithm_names()[:2] == ("auto", "direct")
        x = np.ones((1, 2, 5, 5), np.float32)
        w = np.ones((1, 2, 3, 3), np.float32)
        assert np.array_equal(nc.conv2d(x, w, algorithm="direct"), nc.conv2d(x, w))


class TestThreadsAndSpecialValues:
    # bit-identity across thread counts: tests/test_bits.py

    @pytest.mark.skipif(torch is None, reason="PyTorch not installed")
    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    @pytest.mark.parametrize("shape, wshape, kw", [
        ((1, 8, 9, 9), (4, 8, 3, 3), dict(padding=1)),            # channels-last order
        ((1, 4, 9, 9), (4, 1, 3, 3), dict(padding=1, groups=4)),  # planes order
        ((1, 4, 9, 9), (4, 4, 3, 3), dict(padding=2, padding_mode="reflect")),
        ((1, 4, 9, 9), (3, 4, 1, 1), {}),                         # im2col's pointwise GEMM
    ])
    def test_nan_and_inf_propagate_like_pytorch(self, rng, shape, wshape, kw, algorithm):
        x, w, b = make_inputs(rng, shape, wshape, np.float32)
        x[0, 0, 2, 3] = np.nan
        x[0, 1, 6, 6] = np.inf
        x[0, 2, 0, 8] = -np.inf
        y = nc.conv2d(x, w, b, **kw, algorithm=algorithm)
        expected = torch_conv(x, w, b, **kw)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_array_equal(np.isposinf(y), np.isposinf(expected))
        np.testing.assert_array_equal(np.isneginf(y), np.isneginf(expected))
        assert np.isnan(y).any() and np.isinf(y).any()

    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    def test_nan_weight_poisons_its_output_channel(self, rng, algorithm):
        x, w, b = make_inputs(rng, (1, 4, 7, 7), (3, 4, 3, 3), np.float32)
        w[1, 2, 1, 1] = np.nan
        y = nc.conv2d(x, w, b, padding=1, algorithm=algorithm)
        assert np.isnan(y[:, 1]).all()
        assert np.isfinite(y[:, [0, 2]]).all()


# ---------------------------------------------------------------------------
# hypothesis-generated specs
# ---------------------------------------------------------------------------

#: 300 (shared by the general algorithms) keeps CI quick; set
#: NUMBACONV_HYPOTHESIS_EXAMPLES=3000 for a deeper run.
HYPOTHESIS_EXAMPLES = int(os.environ.get("NUMBACONV_HYPOTHESIS_EXAMPLES", "300"))


@st.composite
def conv_problems(draw):
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin_g = draw(st.integers(1, 5))
    cout_g = draw(st.integers(1, 5))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding_mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    padding_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if padding_kind == "same" and any(s != 1 for s in stride):
        padding_kind = "tuple"
    pads = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    padding = {"int": pads[0], "tuple": pads, "same": "same", "valid": "valid"}[padding_kind]
    per_dim_pad = ((pads[0],) * ndim if padding_kind == "int" else pads
                   if padding_kind == "tuple" else
                   tuple(d * (k - 1) for d, k in zip(dilation, kernel))
                   if padding_kind == "same" else (0,) * ndim)
    sizes = []
    for k, d, p in zip(kernel, dilation, per_dim_pad):
        effective = d * (k - 1) + 1
        smallest = max(1, effective - (2 * p if padding_kind != "same" else p))
        if padding_mode == "reflect":
            smallest = max(smallest, p + 1)
        elif padding_mode == "circular":
            smallest = max(smallest, p)
        sizes.append(draw(st.integers(smallest, smallest + 12)))
    batch = draw(st.sampled_from([0, 1, 2, 3]))
    unbatched = draw(st.booleans()) and batch == 1
    shape = (() if unbatched else (batch,)) + (cin_g * groups,) + tuple(sizes)
    wshape = (cout_g * groups, cin_g) + kernel
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
              padding_mode=padding_mode)
    dtype = draw(st.sampled_from(DTYPES))
    bias = draw(st.booleans())
    kw["algorithm"] = draw(st.sampled_from(GENERAL_ALGORITHMS))
    return shape, wshape, kw, dtype, bias, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(conv_problems())
def test_hypothesis_specs_match_reference(problem):
    shape, wshape, kw, dtype, bias, seed = problem
    x, w, b = make_inputs(np.random.default_rng(seed), shape, wshape, dtype, bias)
    y = CONV[len(wshape) - 2](x, w, b, **kw)
    algorithm = kw.pop("algorithm")
    assert_matches_reference(y, x, w, b, algorithm=algorithm, **kw)
    if torch is not None and x.size:
        expected = torch_conv(x, w, b, **kw)
        bound = tolerance(x, w, b, dtype, algorithm, factor=32, **kw)
        assert np.all(np.abs(y.astype(np.float64) - expected) <= bound)
