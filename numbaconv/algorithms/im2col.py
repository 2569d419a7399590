"""The ``im2col`` algorithm: column matrices multiplied by BLAS.

Serves every valid forward spec, through one of two paths:

* **pointwise** -- a 1x1(x1) kernel with stride 1 and no padding: the input
  already *is* the column matrix, so each (image, group) is one GEMM
  ``out[n, g] = weight[g] @ x[n, g]`` over reshaped views, done by one
  batched ``numpy.matmul`` with no copy and no workspace (BLAS uses its own
  threads; numba's pool is idle).
* **tiles** -- everything else: numba tasks build the column matrix a tile of
  output pixels at a time and multiply each tile with BLAS on the same
  thread (Notes [column tiles] and [one thread pool] in
  :mod:`numbaconv.kernels.im2col_cpu`).  The tile buffers stay near the
  core's cache and under :func:`numbaconv.get_workspace_limit`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numba
import numpy as np

from .. import config
from ..kernels import im2col_cpu
from ..padding import padding_maps
from .registry import ConvAlgorithm, register

#: Target size of one thread's tile buffers (columns plus GEMM result).
#: Measured on resnet3x3, s2_3x3 and stem7x7 (2 threads, see
#: docs/results-im2col.md): 0.5-2 MiB were equally fast, smaller tiles made
#: the GEMMs inefficient and larger ones fell out of the 512 KiB-per-core L2.
TILE_BYTES = 2**20
#: Fewest output pixels per tile worth a GEMM call.  Tiles are also at
#: least one output row, so that same-width layers take the fast column
#: fill (mc_bigk2d: 193 ms with one-row tiles, 287 ms with 64 pixels); such
#: tiles may exceed TILE_BYTES, never the workspace limit.
MIN_TILE_PIXELS = 64


@dataclass(frozen=True)
class TilePlan:
    """How the tiles path splits one call (see :func:`plan_tiles`)."""

    tile: int           # output pixels per tile
    chunks_k: int       # the K axis is cut into this many equal chunks
    rows: int           # K / chunks_k: column-buffer rows
    threads: int

    def workspace_bytes(self, spec, itemsize):
        """Scratch bytes the kernel allocates, all threads together: the column
        tile, plus result tiles when the product goes through BLAS."""
        cout_g = spec.out_channels_per_group
        per_pixel = self.rows
        if cout_g > im2col_cpu.SMALL_GEMM_ROWS:
            per_pixel += cout_g * (2 if self.chunks_k > 1 else 1)
        return self.threads * per_pixel * self.tile * itemsize


def _largest_divisor_at_most(n, bound):
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for candidate in (d, n // d):
                if best < candidate <= bound:
                    best = candidate
    return best


def plan_tiles(spec, itemsize, threads, limit=None):
    """Choose tile size and K split so all threads' buffers fit ``limit`` bytes.

    The tile aims at :data:`TILE_BYTES` per thread, takes at least
    :data:`MIN_TILE_PIXELS` pixels and one output row when the limit allows,
    is shrunk so that there are at least ``threads`` jobs, and is rounded
    down to whole output rows when longer than one.  ``K`` is split only when a
    one-pixel tile would not fit the limit.  A one-pixel, one-row tile is
    the floor: only a layer with about ``limit / (2 * itemsize * threads)``
    output channels per group could need more than the limit.
    """
    if limit is None:
        limit = config.get_workspace_limit()
    K = spec.in_channels_per_group * math.prod(spec.kernel_size3)
    cout_g = spec.out_channels_per_group
    pixels = math.prod(spec.output_size3)
    jobs_per_tile = spec.batch * spec.groups
    hard = limit // (threads * itemsize)           # elements per thread
    soft = TILE_BYTES // itemsize
    per_pixel = K + cout_g
    row = spec.output_size3[2]
    if per_pixel <= hard:
        # at least MIN_TILE_PIXELS and one whole output row (Note [same-width
        # columns]) when the limit allows, even beyond TILE_BYTES
        tile = max(soft // per_pixel, MIN_TILE_PIXELS, row)
        tile = min(tile, hard // per_pixel)
        chunks_k, rows = 1, K
    else:
        # even one pixel of columns is over the limit: cut K
        tile = 1
        rows = _largest_divisor_at_most(K, max(1, hard - 2 * cout_g))
        chunks_k = K // rows
    # enough jobs for every thread
    tiles_wanted = -(-threads // max(1, jobs_per_tile))
    tile = max(1, min(tile, -(-pixels // tiles_wanted), pixels))
    if tile > row:
        tile -= tile % row          # whole output rows
    return TilePlan(tile=tile, chunks_k=chunks_k, rows=rows, threads=threads)


_blas_controller = None
_blas_controller_lock = threading.Lock()


def single_threaded_blas():
    """Context manager limiting every loaded BLAS to one thread (threadpoolctl).

    The numba tasks call BLAS (scipy's OpenBLAS, through ``np.dot``) from
    each numba thread; with BLAS's own threads as well, both pools would
    compete for the cores (see docs/results-im2col.md).
    """
    global _blas_controller
    if _blas_controller is None:
        with _blas_controller_lock:
            if _blas_controller is None:
                import scipy.linalg.cython_blas  # noqa: F401  (the BLAS numba's np.dot calls)
                from threadpoolctl import ThreadpoolController
                _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def im2col_forward(spec, x, weight, bias, out, plan=None):
    """Run the im2col algorithm on canonical 3-D arrays (see the registry)."""
    if out.size == 0:
        return out
    n, groups = spec.batch, spec.groups
    cout_g = spec.out_channels_per_group
    if spec.is_pointwise:
        cin_g = spec.in_channels_per_group
        pixels = math.prod(spec.output_size3)
        result = out.reshape(n, groups, cout_g, pixels)
        np.matmul(weight.reshape(groups, cout_g, cin_g), x.reshape(n, groups, cin_g, pixels),
                  out=result)
        if bias is not None:
            result += bias.reshape(groups, cout_g, 1)
        return out
    threads = numba.get_num_threads()
    if plan is None:
        plan = plan_tiles(spec, out.dtype.itemsize, threads)
    if bias is None:
        bias = np.zeros(spec.out_channels, dtype=out.dtype)
    # (C_out, K) -> (chunks_k, groups, C_out/groups, K/chunks_k); a view when unsplit
    wsplit = weight.reshape(groups, cout_g, plan.chunks_k, plan.rows)
    wsplit = np.ascontiguousarray(wsplit.transpose(2, 0, 1, 3))
    map_d, map_h, map_w = padding_maps(spec)
    with single_threaded_blas():
        im2col_cpu.im2col_conv(x, map_d, map_h, map_w, wsplit, bias, out, spec.kernel_size3,
                               spec.stride3, spec.dilation3, spec.padding3[1][0],
                               spec.padding3[2][0], plan.tile, threads)
    return out


class Im2colAlgorithm(ConvAlgorithm):
    """im2col + GEMM; serves every valid forward spec on the CPU."""

    name = "im2col"

    def run(self, spec, x, weight, bias, out):
        return im2col_forward(spec, x, weight, bias, out)


IM2COL = register(Im2colAlgorithm())
