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
  [t == i + k]`` is solved and checked to be exact.

Note [exact transforms]
~~~~~~~~~~~~~~~~~~~~~~~
Everything above is computed in rational arithmetic (``fractions.Fraction``,
:func:`winograd_fractions`), and the float matrices of
:func:`winograd_matrices` hold each exact entry rounded once
(``float(Fraction)``, correctly rounded).  The points are rationals, so the
matrices are too, and for the points used here every entry of ``AT`` and
``BT`` is a dyadic rational that float32 holds exactly (``-17/4``, ``1/2``,
``1/8``; ``G`` has thirds).  ``BT`` was once solved in float64 with
``numpy.linalg.lstsq``, whose last bits depend on the machine's LAPACK and
BLAS kernels (``-4.249999999999994`` for ``-4.25`` on one machine), so the
generated constant transforms (``scripts/gen_winograd_transforms.py`` ->
``numbaconv/kernels/winograd_transforms.py``) depended on the machine that
ran the generator, and disagreed with the runtime matrices of another.  Now
both are the exact values on every machine, and agree to the bit
(tests/test_winograd.py; docs/results-winograd.md, "Accuracy").

The points: F(2, 3) uses ``0, 1, -1`` (Lavin & Gray's).  For F(4, 3) Lavin
& Gray use ``0, +-1, +-2``; here ``0, +-1/2, +-2``, whose float32 error on
one 6x6 tile is at most 24 ``eps * max S`` against their 54 (``python
scripts/winograd_points.py``; docs/results-winograd.md, "Transform
matrices").  With Lavin & Gray's points the derivation reproduces their
published matrices exactly (tests/test_winograd.py).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

#: finite evaluation points per output-tile size m (r = 3)
POINTS = {2: (0, 1, -1), 4: (0, Fraction(1, 2), Fraction(-1, 2), 2, -2)}
#: Lavin & Gray's points for F(4, 3)
LAVIN_POINTS_F4 = (0, 1, -1, 2, -2)


@functools.lru_cache(maxsize=None)
def winograd_fractions(m, r=3, points=None):
    """``(AT, G, BT)`` of F(m, r) exactly: tuples of rows of
    :class:`~fractions.Fraction` (shapes ``(m, alpha)``, ``(alpha, r)``,
    ``(alpha, alpha)``).  ``points`` (``alpha - 1`` distinct finite points;
    default :data:`POINTS`) may be ints, Fractions, exact strings such as
    ``"1/2"`` or floats (taken at their exact binary value)."""
    points = POINTS[m] if points is None else tuple(points)
    alpha = m + r - 1
    if len(points) != alpha - 1:
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} finite points, got {len(points)}")
    a = [Fraction(p) for p in points]
    if len(set(a)) != len(a):
        raise ValueError(f"F({m}, {r}) needs distinct points, got {points}")
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
    BT = _solve_input_transform(AT, G, m, r)
    return _frozen(AT), _frozen(G), _frozen(BT)


@functools.lru_cache(maxsize=None)
def winograd_matrices(m, r=3, points=None):
    """``(AT, G, BT)`` of F(m, r) as float64 arrays: each entry the exact
    value of :func:`winograd_fractions` rounded once (Note [exact
    transforms]).  Cached and shared: do not modify them."""
    return tuple(np.array([[float(v) for v in row] for row in matrix], dtype=np.float64)
                 for matrix in winograd_fractions(m, r, points))


def _frozen(matrix):
    return tuple(tuple(row) for row in matrix)


def _solve_input_transform(AT, G, m, r):
    """The BT that makes ``AT ((G g) * (BT d))`` the exact correlation, by
    Gauss-Jordan elimination in Fractions; it must be unique and exact."""
    alpha = m + r - 1
    # one equation per output i and kernel tap k, in the unknowns BT[:, t];
    # a right-hand side per input t (every column of BT at once)
    rows = [[AT[i][j] * G[j][k] for j in range(alpha)] + [Fraction(int(t == i + k))
                                                         for t in range(alpha)]
            for i in range(m) for k in range(r)]
    pivot_row = 0
    for col in range(alpha):
        pivot = next((p for p in range(pivot_row, len(rows)) if rows[p][col] != 0), None)
        if pivot is None:
            raise ArithmeticError(f"the input transform of F({m}, {r}) is not unique "
                                  f"(its system has rank < {alpha})")
        rows[pivot_row], rows[pivot] = rows[pivot], rows[pivot_row]
        lead = rows[pivot_row][col]
        rows[pivot_row] = [v / lead for v in rows[pivot_row]]
        for p in range(len(rows)):
            if p != pivot_row and rows[p][col] != 0:
                factor = rows[p][col]
                rows[p] = [v - factor * u for v, u in zip(rows[p], rows[pivot_row])]
        pivot_row += 1
    if any(v != 0 for row in rows[alpha:] for v in row):
        raise ArithmeticError(f"no exact input transform for F({m}, {r})")
    BT = [rows[j][alpha:] for j in range(alpha)]
    for i in range(m):           # the identity, checked once more as stated
        for k in range(r):
            for t in range(alpha):
                if sum(AT[i][j] * G[j][k] * BT[j][t] for j in range(alpha)) != (t == i + k):
                    raise ArithmeticError(f"no exact input transform for F({m}, {r})")
    return BT
