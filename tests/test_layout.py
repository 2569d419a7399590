"""The blocked copies of numbaconv/kernels/layout.py (Note [blocked
transposes]) against NumPy's transposes: exact, since a copy changes no
value, for channel counts that are and are not multiples of the block,
power-of-two planes (the case they exist for) and one chunk or several."""

from __future__ import annotations

import numpy as np
import pytest

from numbaconv.kernels import layout


@pytest.mark.parametrize("shape", [(2, 1, 5, 7, 3), (1, 2, 4, 4, 8), (2, 1, 16, 16, 13),
                                   (1, 1, 1, 1, 1), (3, 2, 3, 5, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_channels_first_and_last_are_numpys_transposes(shape, dtype, chunks):
    rng = np.random.default_rng(sum(shape))
    nhwc = rng.standard_normal(shape).astype(dtype)
    nchw = np.empty((shape[0], shape[4]) + shape[1:4], dtype)
    layout.to_channels_first(nhwc, nchw, chunks)
    np.testing.assert_array_equal(nchw, nhwc.transpose(0, 4, 1, 2, 3))
    back = np.full_like(nhwc, np.nan)
    layout.to_channels_last(nchw, back, chunks)
    np.testing.assert_array_equal(back, nhwc)


@pytest.mark.parametrize("shape", [(1, 3, 5), (2, 16, 16), (1, 9, 1), (3, 17, 8)])
@pytest.mark.parametrize("chunks", [1, 2])
def test_transpose_matrices(shape, chunks):
    src = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    dst = np.full((shape[0], shape[2], shape[1]), np.nan, np.float32)
    layout.transpose_matrices(src, dst, chunks)
    np.testing.assert_array_equal(dst, src.transpose(0, 2, 1))
