"""The parallel shell that runs serial kernel tasks (numbaconv.kernels.parallel)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from numbaconv.kernels.jit import cpu_kernel
from numbaconv.kernels.parallel import run_in_chunks, task_address
from numbaconv.kernels.runs import copy_run, deinterleave_block, deinterleave_run


@cpu_kernel(parallel=False)
def _count_jobs(hits, scale, first_job, stop_job):
    for job in range(first_job, stop_job):
        hits[job] += scale


@cpu_kernel(parallel=False)
def _fail_on_job(hits, bad_job, first_job, stop_job):
    for job in range(first_job, stop_job):
        if job == bad_job:
            raise MemoryError("scratch")
        hits[job] += 1


@pytest.mark.parametrize("jobs", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("chunks", [1, 2, 5])
def test_every_job_runs_exactly_once(jobs, chunks):
    hits = np.zeros(jobs + 3, dtype=np.int64)       # 3 guard entries stay untouched
    run_in_chunks(_count_jobs, (hits, 2), jobs, chunks)
    np.testing.assert_array_equal(hits, [2] * jobs + [0, 0, 0])


def test_no_jobs_calls_nothing():
    hits = np.zeros(2, dtype=np.int64)
    run_in_chunks(_count_jobs, (hits, 1), 0, 2)
    assert not hits.any()


def test_task_failure_is_raised_after_all_chunks():
    hits = np.zeros(10, dtype=np.int64)
    with pytest.raises(MemoryError, match="_fail_on_job"):
        run_in_chunks(_fail_on_job, (hits, 2), 10, 2)
    # the chunk without the failing job completed
    np.testing.assert_array_equal(hits[5:], 1)


def test_task_compiled_once_per_argument_types():
    ints = np.zeros(4, dtype=np.int64)
    floats = np.zeros(4, dtype=np.float64)
    a = task_address(_count_jobs, (ints, 1))
    assert task_address(_count_jobs, (ints, 5)) == a
    assert task_address(_count_jobs, (floats, 1.0)) != a
    assert len(_count_jobs.overloads) == 2
    run_in_chunks(_count_jobs, (floats, 0.5), 4, numba.get_num_threads())
    np.testing.assert_array_equal(floats, 0.5)


# ---------------------------------------------------------------------------
# copy_run (numbaconv.kernels.runs): memcpy of short rows inside kernels
# ---------------------------------------------------------------------------

@numba.njit(boundscheck=True)
def _checked_copy(dst, at, src, start, count):
    copy_run(dst, at, src, start, count)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("at, start, count", [(0, 0, 0), (2, 0, 5), (0, 3, 7), (9, 9, 1)])
def test_copy_run_copies_exactly_the_range(dtype, at, start, count):
    src = np.arange(10, dtype=dtype) + 1
    dst = np.zeros(10, dtype=dtype)
    _checked_copy(dst, at, src, start, count)
    expected = np.zeros(10, dtype=dtype)
    expected[at:at + count] = src[start:start + count]
    assert np.array_equal(dst, expected)


@pytest.mark.parametrize("at, start, count", [(6, 0, 5), (0, 6, 5), (-1, 0, 3), (0, 0, 11),
                                              (0, 0, -1)])
def test_copy_run_checks_its_ranges_under_boundscheck(at, start, count):
    src = np.arange(10, dtype=np.float32)
    dst = np.zeros(10, dtype=np.float32)
    with pytest.raises(IndexError, match="copy_run: range outside its array"):
        _checked_copy(dst, at, src, start, count)
    assert not dst.any()


# ---------------------------------------------------------------------------
# deinterleave_run (numbaconv.kernels.runs): a run's even and odd elements
# ---------------------------------------------------------------------------

@numba.njit(boundscheck=True)
def _checked_deinterleave(dst, even_at, odd_at, src, src_at, count):
    deinterleave_run(dst, even_at, odd_at, src, src_at, count)


@numba.njit(boundscheck=True)
def _checked_block(dst, even_at, odd_at, src, src_at):
    deinterleave_block(dst, even_at, odd_at, src, src_at, 8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 60])
def test_deinterleave_run_writes_exactly_the_two_ranges(dtype, count):
    # the source run starts at an odd offset (unaligned loads) and the two
    # destination ranges are apart, with sentinels around each
    src = np.arange(2 * count + 3, dtype=dtype) + 1
    dst = np.full(2 * count + 10, -1, dtype=dtype)
    even_at, odd_at = 1, count + 5
    _checked_deinterleave(dst, even_at, odd_at, src, 3, count)
    expected = np.full_like(dst, -1)
    expected[even_at:even_at + count] = src[3:3 + 2 * count:2]
    expected[odd_at:odd_at + count] = src[4:4 + 2 * count:2]
    assert np.array_equal(dst, expected)


@pytest.mark.parametrize("even_at, odd_at, src_at", [(13, 0, 0), (0, -1, 0), (0, 12, 5),
                                                     (0, 12, -2)])
def test_deinterleave_block_checks_its_ranges_under_boundscheck(even_at, odd_at, src_at):
    # dst has 20 values (a block of 8 fits at 0..12), src 20 (16 fit at 0..4)
    src = np.arange(20, dtype=np.float32)
    dst = np.zeros(20, dtype=np.float32)
    with pytest.raises(IndexError, match="deinterleave_block: range outside its array"):
        _checked_block(dst, even_at, odd_at, src, src_at)
    assert not dst.any()
