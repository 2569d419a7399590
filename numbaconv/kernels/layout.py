"""Copies between the canonical layout ``(N, C, D, H, W)`` and channels-last
memory ``(N, D, H, W, C)``: the packing of Note [packing] in
:mod:`numbaconv.algorithms.registry`.

Note [blocked transposes]
~~~~~~~~~~~~~~~~~~~~~~~~~
One side of such a copy is C streams a plane apart.  When the plane is a
power of two (64 x 64, 128 x 128 floats...) every stream maps to the same
cache sets, and the 8 ways of L1 and L2 hold 8 of them: NumPy's
``out[...] = x.transpose(0, 2, 3, 4, 1)`` took 19 ns per float32 element
at 128 x 128 x 64 against 0.8 ns at 136 x 136 (docs/results-networks.md).
These kernels walk each row of pixels :data:`CHANNEL_BLOCK` channels at a
time, so at most that many streams are live, and split the rows over the
threads.  A copy changes no value: the bits are the input's.
"""

from __future__ import annotations

import numba
import numpy as np

from .jit import cpu_kernel
from .parallel import run_in_chunks

#: channels one pass over a row of pixels moves (Note [blocked transposes])
CHANNEL_BLOCK = 8
#: side of the square blocks of :func:`transpose_matrices`
MATRIX_BLOCK = 8


def to_channels_first(src, dst, chunks=None):
    """``dst[n, c, d, h, w] = src[n, d, h, w, c]``; both C-contiguous 5-D arrays."""
    N, D, H = src.shape[0], src.shape[1], src.shape[2]
    run_in_chunks(_rows_chunk, (src, dst, src, False), N * D * H,
                  numba.get_num_threads() if chunks is None else chunks)


def to_channels_last(src, dst, chunks=None):
    """``dst[n, d, h, w, c] = src[n, c, d, h, w]``; both C-contiguous 5-D arrays."""
    N, D, H = dst.shape[0], dst.shape[1], dst.shape[2]
    run_in_chunks(_rows_chunk, (src, dst, dst, True), N * D * H,
                  numba.get_num_threads() if chunks is None else chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _rows_chunk(src, dst, nhwc, to_last, first_job, stop_job):
    """Rows ``first_job <= (n, d, h) < stop_job`` of both copies: ``nhwc``
    is whichever of the two is ``(N, D, H, W, C)``; ``to_last`` says which
    way the values go."""
    N, D, H, W, C = nhwc.shape
    plane = D * H * W
    s = src.ravel()
    t = dst.ravel()
    for job in range(first_job, stop_job):
        n = job // (D * H)
        pixel = (job % (D * H)) * W            # the row's first pixel in its plane
        row = job * W * C
        base = n * C * plane + pixel
        for c0 in range(0, C, CHANNEL_BLOCK):
            c1 = min(C, c0 + CHANNEL_BLOCK)
            for w in range(W):
                for c in range(c0, c1):
                    last = np.uint64(row + w * C + c)
                    first = np.uint64(base + c * plane + w)
                    if to_last:
                        t[last] = s[first]
                    else:
                        t[first] = s[last]


def transpose_matrices(src, dst, chunks=None):
    """``dst[i] = src[i].T`` for C-contiguous ``(B, R, C)`` ``src`` and
    ``(B, C, R)`` ``dst``, in MATRIX_BLOCK-square blocks (Note [blocked
    transposes]: a 1024 x 2048 float32 matrix has rows 8 KiB apart, and
    NumPy's transposing copy of it read every column through one cache
    set)."""
    B, R, C = src.shape
    run_in_chunks(_matrices_chunk, (src, dst), B * ((R + MATRIX_BLOCK - 1) // MATRIX_BLOCK),
                  numba.get_num_threads() if chunks is None else chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _matrices_chunk(src, dst, first_job, stop_job):
    """Row bands ``first_job <= (b, band) < stop_job`` of :func:`transpose_matrices`."""
    B, R, C = src.shape
    bands = (R + MATRIX_BLOCK - 1) // MATRIX_BLOCK
    s = src.ravel()
    t = dst.ravel()
    for job in range(first_job, stop_job):
        b = job // bands
        r0 = (job % bands) * MATRIX_BLOCK
        r1 = min(R, r0 + MATRIX_BLOCK)
        base = b * R * C
        for c in range(C):
            for r in range(r0, r1):
                t[np.uint64(base + c * R + r)] = s[np.uint64(base + r * C + c)]

