"""The fft algorithm's own machinery: plans, tiling, workspace, non-finite input.

(Every named case and a share of the hypothesis specs also run through fft in
tests/test_conv.py, with the normwise tolerance of tests/conftest.py.)
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import numbaconv as nc
from numbaconv.algorithms import fft
from numbaconv.bench.suite import PUBLIC_SHAPES

from .conftest import CONV, assert_matches_reference, run_canonical, spec_of


def run_with_lengths(x, w, b, lengths, **kw):
    """fft with forced FFT lengths per canonical axis (one block per step)."""
    spec = spec_of(x.shape, w.shape, x.dtype, **kw)
    spans = spec.effective_kernel_size3
    needed = [(o - 1) * s + 1 for o, s in zip(spec.output_size3, spec.stride3)]
    tiles = tuple(-(-n // (L - k + 1)) for n, L, k in zip(needed, lengths, spans))
    plan = fft.FFTPlan(tuple(lengths), tiles, 1, 1)
    return run_canonical(lambda *args: fft.fft_forward(*args, plan=plan), x, w, b, **kw)


PLAN_SPECS = [(c.input_shape, c.weight_shape, c.kwargs) for c in PUBLIC_SHAPES
              if not c.transposed] + [((1, 3, 2000, 3000), (16, 3, 3, 3), {})]


@pytest.mark.parametrize("shape, wshape, kw", PLAN_SPECS)
def test_plans_cover_the_output_within_the_limit(shape, wshape, kw):
    spec = spec_of(shape, wshape, **kw)
    plan = fft.plan_fft(spec, 4)
    spans = spec.effective_kernel_size3
    for a in range(3):
        tile = plan.lengths[a] - spans[a] + 1
        assert tile >= 1
        assert plan.tiles[a] * tile >= (spec.output_size3[a] - 1) * spec.stride3[a] + 1
    points = math.prod(plan.lengths)
    half = points // plan.lengths[2] * (plan.lengths[2] // 2 + 1)
    step = (plan.images_per_step * plan.tiles_per_step * (spec.in_channels + spec.out_channels)
            * (points * 4 + half * 8))
    # planned for numba's pool, not the current threads (Note [fft lengths
    # and threads])
    parallel = min(numba.config.NUMBA_NUM_THREADS, spec.batch * math.prod(plan.tiles))
    weights = spec.out_channels * spec.in_channels_per_group * half * 8
    assert plan.workspace == weights + parallel * step <= nc.get_workspace_limit()


def test_a_limit_too_small_for_the_weight_spectrum_still_plans():
    spec = spec_of((4, 256, 28, 28), (128, 256, 1, 1))      # 32768 spectra
    plan = fft.plan_fft(spec, 4, 2**20)
    assert plan.workspace > 2**20 and plan.tiles_per_step == 1 and plan.images_per_step == 1


def test_large_image_small_kernel_is_tiled():
    plan = fft.plan_fft(spec_of((1, 3, 2000, 3000), (16, 3, 3, 3)), 4)
    assert math.prod(plan.tiles) > 1 and max(plan.lengths) < 1000


TILE_CASES = [
    ((2, 3, 17, 19), (4, 3, 3, 3), dict(padding=1)),
    ((1, 4, 16, 13), (6, 2, 5, 3), dict(stride=(2, 3), padding=(2, 1), groups=2,
                                       padding_mode="reflect")),
    ((1, 2, 15, 14), (3, 2, 3, 4), dict(dilation=(2, 3), padding="same",
                                       padding_mode="circular")),
    ((2, 3, 40), (2, 3, 7), dict(stride=3, padding=4, padding_mode="replicate")),
    ((1, 2, 9, 8, 10), (3, 2, 3, 2, 3), dict(padding=1, stride=(1, 2, 1))),
]


@pytest.mark.parametrize("scale", [1, 2, 5])   # FFT length = scale x the kernel span
@pytest.mark.parametrize("shape, wshape, kw", TILE_CASES)
def test_forced_tiles_match_reference(rng, shape, wshape, kw, scale):
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[0])
    ndim = len(wshape) - 2
    spec = spec_of(shape, wshape, **kw)
    lengths = [scale * span + (1 if scale == 1 else 0) for span in spec.effective_kernel_size3]
    lengths = [1 if a < 3 - ndim else L for a, L in enumerate(lengths)]
    y = run_with_lengths(x, w, b, lengths, **kw)
    assert_matches_reference(y, x, w, b, algorithm="fft", **kw)


def test_one_block_per_step_under_a_tiny_limit(rng):
    x = rng.standard_normal((3, 4, 40, 44)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    try:
        nc.set_workspace_limit(2**20)
        spec = spec_of(x.shape, w.shape, padding=1)
        plan = fft.plan_fft(spec, 4)
        y = nc.conv2d(x, w, padding=1, algorithm="fft")
    finally:
        nc.set_workspace_limit(None)
    assert plan.images_per_step >= 1
    assert_matches_reference(y, x, w, None, algorithm="fft", padding=1)


@pytest.mark.parametrize("where", ["input", "weight"])
def test_non_finite_values_stay_local(rng, where):
    """A NaN must poison only its window, as in PyTorch, not the whole tile."""
    x = rng.standard_normal((1, 2, 16, 16)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    if where == "input":
        x[0, 1, 8, 8] = np.nan
    else:
        w[1, 0, 1, 1] = np.inf
    y = nc.conv2d(x, w, padding=1, algorithm="fft")
    expected = nc.conv2d(x, w, padding=1, algorithm="direct")
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(expected))
    assert np.isfinite(y).any() and not np.isfinite(y).all()


def test_float32_stays_single_precision(rng, monkeypatch):
    from numbaconv.algorithms import fft
    seen = []
    original = fft._rfftn
    # _rfftn(a, axes, inorm, out, workers): the transformed array and its spectrum
    monkeypatch.setattr(fft, "_rfftn", lambda a, *args: seen.append((a.dtype, args[2].dtype))
                        or original(a, *args))
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    y = nc.conv2d(x, w, algorithm="fft")
    assert y.dtype == np.float32 and set(seen) == {(np.dtype(np.float32),
                                                    np.dtype(np.complex64))}


def test_thread_count_does_not_change_the_result(rng):
    x = rng.standard_normal((2, 3, 30, 31)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = nc.conv2d(x, w, padding=2, algorithm="fft")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = nc.conv2d(x, w, padding=2, algorithm="fft")
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_every_rank(rng, ndim):
    shape = (2, 3) + (11, 9, 7)[:ndim]
    wshape = (4, 3) + (3, 2, 3)[:ndim]
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    y = CONV[ndim](x, w, padding=1, algorithm="fft")
    assert_matches_reference(y, x, w, None, algorithm="fft", padding=1)
