"""Winograd minimal-filtering transforms F(m, r), derived from their points.

F(m, r) computes ``m`` outputs of an ``r``-tap correlation from ``alpha =
m + r - 1`` inputs with ``alpha`` multiplications:

    y = AT @ ((G @ g) * (BT @ d))

for a kernel ``g`` (``r``), an input tile ``d`` (``alpha``) and the output
``y`` (``m``), ``y[i] = sum_k g[k] * d[i + k]``.  Nested along every axis
(``Y = AT (G g G^T * BT d BT^T) AT^T`` in 2-D) it gives F(m x m, r x r).

Derivation (Toom-Cook, as in Lavin & Gray 2016): evaluate at the finite
points ``a_0 ... a_{alpha-2}`` and at infinity.

* ``AT[i, j] = a_j ** i`` (and 1 in the infinity column of the last row):
  interpolation of the product polynomial's ``m`` needed coefficients;
* ``G[j, k] = a_j ** k / prod_{l != j} (a_j - a_l)`` (and ``[0 ... 0, 1]``
  for infinity): the kernel's evaluation, with the Lagrange denominators;
* ``BT`` is then the unique matrix that makes the algorithm exact for every
  ``g`` and ``d``: the linear system ``sum_j AT[i, j] G[j, k] BT[j, t] =
  [t == i + k]`` is solved in float64 and checked to be exact.

The points: F(2, 3) uses ``0, 1, -1`` (Lavin & Gray's).  For F(4, 3) Lavin
& Gray use ``0, +-1, +-2``; ``python scripts/winograd_points.py`` measured
the float32 error of one 6x6 tile with 20000 random tiles and kernels, as
``max|Y - ref| / (eps * max S)``: ``0, +-1, +-2`` median 3.3, max 54;
``0, +-1, +-1/2`` 3.5 and 48; ``0, +-1/2, +-2`` 2.6 and 24 (2026-11-29).  So
F(4, 3) here uses ``0, +-1/2, +-2``.  With Lavin & Gray's points the
derivation reproduces their published matrices (tests/test_winograd.py).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

#: finite evaluation points per output-tile size m (r = 3)
POINTS = {2: (0, 1, -1), 4: (0, 0.5, -0.5, 2, -2)}
#: Lavin & Gray's points for F(4, 3)
LAVIN_POINTS_F4 = (0, 1, -1, 2, -2)


@functools.lru_cache(maxsize=None)
def winograd_matrices(m, r=3, points=None):
    """``(AT, G, BT)`` of F(m, r) as float64 arrays (shapes ``(m, alpha)``,
    ``(alpha, r)``, ``(alpha, alpha)``)."""
    points = POINTS[m] if points is None else tuple(points)
    alpha = m + r - 1
    if len(points) != alpha - 1:
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} finite points, got {len(points)}")
    a = [Fraction(p) for p in points]
    AT = [[a[j] ** i for j in range(alpha - 1)] + [Fraction(int(i == m - 1))]
          for i in range(m)]
    G = []
    for j in range(alpha - 1):
        denominator = Fraction(1)
        for l in range(alpha - 1):
            if l != j:
                denominator *= a[j] - a[l]
        G.append([a[j] ** k / denominator for k in range(r)])
    G.append([Fraction(int(k == r - 1)) for k in range(r)])
    AT = np.array(AT, dtype=np.float64)
    G = np.array(G, dtype=np.float64)
    BT = _solve_input_transform(AT, G, m, r)
    return AT, G, BT


def _solve_input_transform(AT, G, m, r):
    """The BT that makes ``AT ((G g) * (BT d))`` the exact correlation."""
    alpha = m + r - 1
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for t in range(alpha):
                # coefficient of BT[j, t] in output i, kernel tap k, input t
                row = np.zeros((alpha, alpha))
                row[:, t] = AT[i, :] * G[:, k]
                rows.append(row.ravel())
                rhs.append(float(t == i + k))
    system = np.array(rows)
    solution, *_ = np.linalg.lstsq(system, np.array(rhs), rcond=None)
    BT = solution.reshape(alpha, alpha)
    BT[np.abs(BT - np.round(BT)) < 1e-9] = np.round(BT[np.abs(BT - np.round(BT)) < 1e-9])
    if not np.allclose(system @ BT.ravel(), rhs, atol=1e-12):
        raise ArithmeticError(f"no exact input transform for F({m}, {r})")
    return BT
