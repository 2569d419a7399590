"""A fast 128-bit fingerprint of an array's bytes, for caches keyed by content.

Note [weight fingerprint]
~~~~~~~~~~~~~~~~~~~~~~~~~
Caches of transformed weights (Note [weight cache] of
:mod:`numbaconv.kernels.winograd_weights`) must notice a weight changed in place,
so they key on the weight's content, checked on every call.  BLAKE2b did
that at about 1 GB/s: 2.5 ms for late3x3's 2.4 MB weight, a quarter of the
convolution, and 10 ms for a 512-channel 3x3 layer.  This fingerprint mixes
each 64-bit word with its index (``m = mix(word + index * constant)``,
splitmix64's finaliser) and keeps two sums, of ``m`` and of ``m * (2 *
index + 1)``: position-dependent, vectorised, split over the threads, and
deterministic for any thread count (a sum modulo 2**64 does not depend on
the order).  A change anywhere changes some ``m`` to an unrelated value,
so both sums move independently.  It is not a cryptographic hash: two
different weights collide with probability about 2**-128 when nobody
crafts them, which is what a cache of one's own layers needs.  Mixing each
32-bit word twice (two sums of two finalisers) took 0.32 ms for ResNet-50's
2.4 MB 256-channel 3x3 weight on a 2-core Zen 4, a quarter of its staged
Winograd call; one mix per 64-bit word takes 0.17 ms
(docs/results-winograd.md, "Staged calls").
"""

from __future__ import annotations

import numba
import numpy as np

from .jit import cpu_kernel, inline_helper
from .parallel import run_in_chunks


@cpu_kernel(parallel=False, python_callable=False)
def _sums_chunk(words, sums, first_job, stop_job):
    """``sums[job]`` = the two sums over part ``job`` of ``len(sums)`` equal
    parts of ``words`` (64-bit), for ``first_job <= job < stop_job``."""
    n, parts = words.shape[0], sums.shape[0]
    for job in range(first_job, stop_job):
        first = np.uint64(0)
        second = np.uint64(0)
        for i in range(job * n // parts, (job + 1) * n // parts):
            index = np.uint64(i)
            m = _mix(words[i] + index * np.uint64(0x9E3779B97F4A7C15))
            first += m
            second += m * (index + index + np.uint64(1))
        sums[job, 0] = first
        sums[job, 1] = second


@inline_helper(fastmath=False)
def _mix(x):
    """splitmix64's finaliser: every input bit affects every output bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


#: Fewest 64-bit words split over the threads: below it, waking a pool thread
#: (10-20 us, a scheduler tick on a busy machine: Note [small calls] in
#: numbaconv/algorithms/registry.py) costs more than the sums (about 10 us).
PARALLEL_WORDS = 2**16


def _sums(words):
    """The two sums of Note [weight fingerprint], a part per thread (sums
    modulo 2**64: the same for any split)."""
    threads = numba.get_num_threads() if words.shape[0] >= PARALLEL_WORDS else 1
    parts = max(1, min(threads, words.shape[0]))
    sums = np.zeros((parts, 2), dtype=np.uint64)
    run_in_chunks(_sums_chunk, (words, sums), parts, parts)
    return sums[:, 0].sum(dtype=np.uint64), sums[:, 1].sum(dtype=np.uint64)


def fingerprint(array):
    """A 128-bit fingerprint of ``array``'s bytes (C order) and byte length,
    as a hex string (Note [weight fingerprint])."""
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    tail = data.shape[0] % 8
    words = data[:data.shape[0] - tail].view(np.uint64)
    first, second = _sums(words)
    rest = bytes(data[len(data) - tail:]).hex()
    return f"{int(first):016x}{int(second):016x}-{data.shape[0]}-{rest}"
