"""Small calls run on the calling thread (issue 27; Note [small calls] in
numbaconv/algorithms/registry.py).

A call whose plan estimates less than ``SMALL_CALL_SECONDS`` must hand no
work to numba's pool: every parallel shell it enters (the compute kernels,
the packing and layout copies around them, the weight fingerprint) gets
one chunk.  On a busy
machine a pool worker that is not yet scheduled costs a scheduler tick, so
a copy that still split two ways made a 4x4 layer 4x slower (355 against
89 us, docs/results-networks.md, "Small calls: one thread").  A large call must still
split, or the test could not fail.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import numbaconv as nc
from numbaconv.reference import conv_reference
from numbaconv.kernels import parallel

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                reason="needs a thread pool of at least two")

#: fft splits its work over Python threads, ctx.threads of them (Note [fft
#: threads]), not through the shell
ALGORITHMS = ("direct", "im2col", "winograd")


@pytest.fixture
def chunk_counts(monkeypatch):
    """The chunk count of every parallel shell entered while it is active."""
    counts = []
    shell = parallel._chunks_shell

    def recording(address, args, jobs, chunks):
        counts.append(chunks)
        return shell(address, args, jobs, chunks)

    monkeypatch.setattr(parallel, "_chunks_shell", recording)
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    yield counts
    numba.set_num_threads(previous)


def _layer(size, channels, channels_last):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, channels, size, size)).astype(np.float32)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    return x, w


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_small_call_enters_the_pool_with_one_chunk(chunk_counts, algorithm, channels_last):
    x, w = _layer(4, 8, channels_last)
    y = nc.conv2d(x, w, padding=1, algorithm=algorithm, activation="relu")
    ref = np.maximum(conv_reference(x, w, padding=1), 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    assert chunk_counts, "the call entered no parallel shell"
    assert set(chunk_counts) == {1}, chunk_counts


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_large_call_still_splits(chunk_counts, algorithm, channels_last):
    x, w = _layer(56, 64, channels_last)
    nc.conv2d(x, w, padding=1, algorithm=algorithm)
    assert max(chunk_counts) == 2, chunk_counts

