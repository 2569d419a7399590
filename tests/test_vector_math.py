"""The float32 exp, tanh and ``1 + erf`` of the fused epilogue
(Note [vector math] in numbaconv/kernels/vector_math.py).

Bounds, in float32 ulps of the float64 libm value rounded to float32,
measured on these grids (2-core AMD EPYC, AVX2) and rounded up: exp 0.93
(bound 1.5), tanh 1.46 (bound 2), ``1 + erf(z)`` 1.63 for ``z >= 0``
(bound 2), 2.50 on ``[-0.5, 0)`` (bound 3: ``1 - erf`` cancels) and 6.26
below, where it is ``erfc(-z)`` (bound 8).  PyTorch's own float32 erf is
within about 1 ulp; against a convolution's float32 error these are far
below the epilogue tests' ``4 eps |y|`` where ``|y|`` is not small.  The tests
also check that the loops vectorise (the reason the module exists) and that
a value gets the same bits in the vector body as in the scalar remainder.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import erf, erfc

from numbaconv.kernels.vector_math import exp_of, one_plus_erf_of, tanh_of, vector_loop

TINY = np.finfo(np.float32).tiny


@vector_loop
def _exp(a):
    for i in range(a.shape[0]):
        a[i] = exp_of(a[i])


@vector_loop
def _tanh(a):
    for i in range(a.shape[0]):
        a[i] = tanh_of(a[i])


@vector_loop
def _one_plus_erf(a):
    for i in range(a.shape[0]):
        a[i] = one_plus_erf_of(a[i])


def _one_plus_erf_reference(z):
    return np.where(z < 0, erfc(-z), 1 + erf(z))


def _ulps(got, want):
    """|got - want| in ulps of want rounded to float32."""
    spacing = np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


def _apply(loop, x):
    y = x.copy()
    loop(y)
    return y


CASES = [  # loop, reference, (low, high, bound in ulps) ...
    (_exp, np.exp, [(-87.3, 88.7, 1.5)]),
    (_tanh, np.tanh, [(-12.0, 12.0, 2.0)]),
    (_one_plus_erf, _one_plus_erf_reference,
     [(0.0, 10.0, 2.0), (-0.5, 0.0, 3.0), (-9.0, -0.5, 8.0)]),
]


@pytest.mark.parametrize("loop, reference, ranges", CASES, ids=["exp", "tanh", "one_plus_erf"])
def test_float32_error_against_float64_libm(loop, reference, ranges):
    for low, high, bound in ranges:
        x = np.linspace(low, high, 2_000_001, dtype=np.float64).astype(np.float32)
        x = np.concatenate([x, np.float32([0.0, -0.0, 1e-30, -1e-30, 1e-8])])
        want = reference(x.astype(np.float64))
        got = _apply(loop, x)
        normal = np.abs(want) >= TINY
        worst = _ulps(got[normal], want[normal]).max()
        assert worst <= bound, f"{loop.__name__} on [{low}, {high}]: {worst:.2f} ulps"
        # results below the normal range are flushed: an absolute error only
        assert np.all(np.abs(got[~normal] - want[~normal]) <= TINY)


@pytest.mark.parametrize("loop, reference", [(c[0], c[1]) for c in CASES],
                         ids=["exp", "tanh", "one_plus_erf"])
def test_special_values(loop, reference):
    x = np.float32([np.nan, np.inf, -np.inf, 100.0, -100.0, 88.8, -104.0, 0.0])
    got = _apply(loop, x)
    with np.errstate(over="ignore"):
        want = reference(x.astype(np.float64)).astype(np.float32)
    assert np.isnan(got[0])
    # exp(-100) is 3.8e-44 in float32's subnormals, flushed to 0 here
    np.testing.assert_allclose(got[1:], want[1:], rtol=0, atol=TINY)


def test_float64_keeps_libm():
    # numba's libm and NumPy's may differ in the last bit (tanh: 1 ulp)
    x = np.linspace(-30, 30, 10_001)
    np.testing.assert_allclose(_apply(_exp, x), np.exp(x), rtol=2.3e-16, atol=0)
    np.testing.assert_allclose(_apply(_tanh, x), np.tanh(x), rtol=4.5e-16, atol=0)
    np.testing.assert_allclose(_apply(_one_plus_erf, x), 1 + erf(x), rtol=0, atol=4.5e-16)


@pytest.mark.parametrize("loop", [_exp, _tanh, _one_plus_erf], ids=["exp", "tanh", "one_plus_erf"])
def test_loops_vectorise_to_the_same_bits_as_scalar_code(loop):
    x = np.random.default_rng(0).standard_normal(1003).astype(np.float32) * 4
    whole = _apply(loop, x)
    one_by_one = np.concatenate([_apply(loop, x[i:i + 1]) for i in range(x.size)])
    np.testing.assert_array_equal(whole, one_by_one)
    ir = loop.inspect_llvm(loop.signatures[0])
    assert re.search(r"<\d+ x float>", ir), "the float32 loop did not vectorise"
