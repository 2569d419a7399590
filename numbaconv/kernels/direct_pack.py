"""Packing for the direct kernels: gather the (padded) input into the
layout a compute kernel wants, through the padding index maps of
:mod:`numbaconv.padding` (-1: a zero of the padding).

``pack_channels_last`` feeds the channels-last loop orders (and Winograd's
input transform); ``gather_plane`` gathers one channel plane for the planes loop order.
"""

from __future__ import annotations

import numba
import numpy as np

from .jit import cpu_kernel
from .parallel import run_in_chunks


#: Input channels one pass over a packed row reads together (Note [pack
#: channel blocks]).
PACK_CHANNEL_BLOCK = 8


def pack_channels_last(x, map_d, map_h, map_w, xp, chunks=None):
    """xp[n, d, h, w, c] = x[n, c, map_d[d], map_h[h], map_w[w]] (0 where a map is -1).

    Channels inner: each packed pixel's channels are written as a
    contiguous run while the reads stride over the input planes of one row.
    The other order (contiguous reads, writes strided by C) took 1.4x as
    long on resnet3x3's input.

    Note [pack channel blocks]
    ~~~~~~~~~~~~~~~~~~~~~~~~~~
    A row is packed PACK_CHANNEL_BLOCK channels at a time.  Reading all C
    planes of a row at once keeps C read streams a plane apart, and when the
    plane is a power of two (128 x 128 floats: 64 KiB) every stream maps to
    the same cache sets of L1 and L2, whose 8 ways hold 8 of them: the
    pack, and so direct and winograd, ran 4x slower per FLOP at 128 x 128
    than at 136 x 136 (docs/results-networks.md).  Eight streams fit the
    ways; the packed row (tens of KiB) stays in L2 between its blocks.

    Flat views and unsigned indices: Note [reference counts] in
    kernels/direct_channels_last.py.  A job is one packed row,
    split over ``chunks`` runs (default: numba's thread count) by
    :func:`~numbaconv.kernels.parallel.run_in_chunks`.
    """
    N, Dp, Hp = x.shape[0], map_d.shape[0], map_h.shape[0]
    run_in_chunks(_pack_chunk, (x, map_d, map_h, map_w, xp), N * Dp * Hp,
                  numba.get_num_threads() if chunks is None else chunks)


@cpu_kernel(parallel=False, python_callable=False)
def _pack_chunk(x, map_d, map_h, map_w, xp, first_job, stop_job):
    """Packed rows ``first_job <= job < stop_job`` of :func:`pack_channels_last`."""
    N, C, D, H, W = x.shape
    Dp, Hp, Wp = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    zero = xp.dtype.type(0)
    plane = D * H * W
    src = x.ravel()
    dst = xp.ravel()
    for job in range(first_job, stop_job):
        n = job // (Dp * Hp)
        sd = map_d[(job // Hp) % Dp]
        sh = map_h[job % Hp]
        row = job * Wp * C
        if sd < 0 or sh < 0:
            for i in range(Wp * C):
                dst[np.uint64(row + i)] = zero
            continue
        first = (n * C * D + sd) * H * W + sh * W
        for c0 in range(0, C, PACK_CHANNEL_BLOCK):      # Note [pack channel blocks]
            c1 = min(C, c0 + PACK_CHANNEL_BLOCK)
            for wp in range(Wp):
                sw = map_w[wp]
                at = row + wp * C
                if sw < 0:
                    for c in range(c0, c1):
                        dst[np.uint64(at + c)] = zero
                else:
                    for c in range(c0, c1):
                        dst[np.uint64(at + c)] = src[np.uint64(first + sw + c * plane)]


@cpu_kernel(parallel=False, python_callable=False)
def gather_plane(src, map_d, map_h, map_w, dst):
    """dst[d, h, w] = src[map_d[d], map_h[h], map_w[w]] for one channel plane."""
    zero = dst.dtype.type(0)
    for dp in range(map_d.shape[0]):
        sd = map_d[dp]
        for hp in range(map_h.shape[0]):
            sh = map_h[hp]
            row = dst[dp, hp]
            for wp in range(map_w.shape[0]):
                sw = map_w[wp]
                row[wp] = src[sd, sh, sw] if sd >= 0 and sh >= 0 and sw >= 0 else zero
