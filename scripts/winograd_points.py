"""Float32 error of F(4x4, 3x3) with different interpolation points.

Evaluates ``Y = AT ((G g G^T) * (BT d BT^T)) AT^T`` in float32 for random
tiles and 3x3 kernels (one input channel; a convolution sums such tiles over
channels) against the float64 correlation, for each point set, and prints
the median and maximum of ``max|Y - ref| / (eps * max S)`` with ``S`` the
sum of absolute products.  Usage: ``python scripts/winograd_points.py``.
"""

from __future__ import annotations

import numpy as np

from numbaconv.kernels.winograd_matrices import winograd_matrices

POINT_SETS = {
    "0, +-1, +-2 (Lavin & Gray)": (0, 1, -1, 2, -2),
    "0, +-1, +-1/2": (0, 1, -1, 0.5, -0.5),
    "0, +-1/2, +-2 (numbaconv)": (0, 0.5, -0.5, 2, -2),
    "0, +-1, 2, 1/2": (0, 1, -1, 2, 0.5),
}


def main(tiles=20000, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((tiles, 6, 6))
    g = rng.standard_normal((tiles, 3, 3))
    ref = np.stack([np.einsum("tij,tij->t", d[:, i:i + 3, j:j + 3], g)
                    for i in range(4) for j in range(4)], axis=1)
    scale = np.stack([np.einsum("tij,tij->t", np.abs(d[:, i:i + 3, j:j + 3]), np.abs(g))
                      for i in range(4) for j in range(4)], axis=1).max(axis=1)
    eps = np.finfo(np.float32).eps
    print(f"F(4x4, 3x3) in float32, {tiles} random tiles: error / (eps * max S)")
    for name, points in POINT_SETS.items():
        AT, G, BT = (m.astype(np.float32) for m in winograd_matrices(4, points=points))
        d32, g32 = d.astype(np.float32), g.astype(np.float32)
        U = G @ g32 @ G.T
        V = BT @ d32 @ BT.T
        Y = (AT @ (U * V) @ AT.T).reshape(tiles, 16)
        ratio = np.abs(Y - ref).max(axis=1) / (eps * scale)
        print(f"  {name:40s} median {np.median(ratio):6.2f}  max {ratio.max():7.2f}")


if __name__ == "__main__":
    main()
