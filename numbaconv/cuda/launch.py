"""Launch geometry of every GPU kernel, in one place.

The tests run the kernels under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), where every thread is a Python thread: they
call :func:`use_small_blocks` so that tiny problems still span several
blocks and exercise the edges of every tile.  Kernels read these values when
they are *compiled* (tile sizes are compile-time constants of shared and
local arrays), so they are module globals, changed only before the first GPU
call of a process.
"""

from __future__ import annotations

#: Threads per block of the element-wise and one-thread-per-output kernels.
THREADS = 128

#: Tiled GEMM (implicit-GEMM im2col, Winograd's transform-domain products):
#: a block computes a TILE_M x TILE_N tile of C in steps of TILE_K; each of
#: its (TILE_M / THREAD_M) * (TILE_N / THREAD_N) threads a THREAD_M x
#: THREAD_N register block.
TILE_M = 64
TILE_N = 64
TILE_K = 16
THREAD_M = 4
THREAD_N = 4

#: Direct kernel: a block computes DIRECT_TILE_H x DIRECT_TILE_W output
#: pixels of one image and depth slice for DIRECT_CO output channels; each
#: thread DIRECT_THREAD_CO channels of DIRECT_THREAD_W neighbouring pixels.
#: The input window of the tile is staged in shared memory, at most
#: DIRECT_WINDOW values.
DIRECT_TILE_H = 8
DIRECT_TILE_W = 16
DIRECT_CO = 16
DIRECT_THREAD_CO = 4
DIRECT_THREAD_W = 2
DIRECT_WINDOW = 2048

#: Threads of the block that reduces one weight-gradient element group.
REDUCE_THREADS = 256

#: Transposing copy (channels-last packing, Note [GPU memory format] in
#: numbaconv/cuda/arrays.py): a block moves a TRANSPOSE_TILE x TRANSPOSE_TILE
#: tile through shared memory with TRANSPOSE_TILE x TRANSPOSE_ROWS threads,
#: so that both its reads and its writes are runs of TRANSPOSE_TILE values.
TRANSPOSE_TILE = 32
TRANSPOSE_ROWS = 8


def use_small_blocks():
    """Shrink every block and tile (for the simulator; module docstring)."""
    global THREADS, TILE_M, TILE_N, TILE_K, THREAD_M, THREAD_N
    global DIRECT_TILE_H, DIRECT_TILE_W, DIRECT_CO, DIRECT_THREAD_CO, DIRECT_THREAD_W
    global DIRECT_WINDOW, REDUCE_THREADS, TRANSPOSE_TILE, TRANSPOSE_ROWS
    THREADS = 8
    TILE_M, TILE_N, TILE_K, THREAD_M, THREAD_N = 4, 4, 2, 2, 2
    DIRECT_TILE_H, DIRECT_TILE_W, DIRECT_CO = 2, 4, 4
    DIRECT_THREAD_CO, DIRECT_THREAD_W = 2, 2
    DIRECT_WINDOW = 512
    REDUCE_THREADS = 8
    TRANSPOSE_TILE, TRANSPOSE_ROWS = 4, 2


def blocks_for(count, threads=None):
    """Blocks of ``threads`` (default :data:`THREADS`) covering ``count`` items."""
    threads = THREADS if threads is None else threads
    return max(1, -(-count // threads))
