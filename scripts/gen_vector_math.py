"""Derive the polynomial coefficients of numbaconv/kernels/vector_math.py.

Each is a weighted least-squares fit in float64 (relative error, on
Chebyshev points of the interval), rounded to float32; the script prints
them in the module's form and the fit's own largest relative error on a
dense grid.  tests/test_vector_math.py bounds the float32 functions built
from them against libm, so a refit is checked by the tests, not here.

    python scripts/gen_vector_math.py
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial
from scipy.special import erf, erfc

POINTS = 4000


def fit(function, low, high, degree):
    """Coefficients (lowest first) and the largest relative error."""
    u = (np.cos(np.pi * (np.arange(POINTS) + 0.5) / POINTS) + 1) / 2 * (high - low) + low
    y = function(u)
    c = polynomial.polyfit(u, y, degree, w=1 / np.abs(y))
    grid = np.linspace(low, high, 100_001)
    error = np.max(np.abs(polynomial.polyval(grid, c) / function(grid) - 1))
    return [float(np.float32(v)) for v in c], error


def main():
    erfc_scale = 0.5            # t = 1 / (1 + erfc_scale * z)
    fits = {
        # erf(z) / z in u = z^2, |z| <= 0.5
        "ERF_SMALL": fit(lambda u: erf(np.sqrt(u)) / np.sqrt(u), 1e-14, 0.25, 4),
        # erfc(z) exp(z^2) in t, 0.5 <= z <= 10
        "ERFC_SCALED": fit(lambda t: (lambda z: erfc(z) * np.exp(z * z))((1 / t - 1) / erfc_scale),
                           1 / (1 + erfc_scale * 10), 1 / (1 + erfc_scale * 0.5), 9),
        # tanh(x) / x in u = x^2, |x| <= 0.55
        "TANH_SMALL": fit(lambda u: np.tanh(np.sqrt(u)) / np.sqrt(u), 1e-14, 0.55 ** 2, 5),
    }
    for name, (coefficients, error) in fits.items():
        print(f"# fit's relative error {error:.2g}")
        print(f"{name} = {tuple(coefficients)!r}")


if __name__ == "__main__":
    main()
