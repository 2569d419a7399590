"""The parallel shell that runs serial kernel tasks (numbaconv.kernels.parallel)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from numbaconv.kernels.jit import cpu_kernel
from numbaconv.kernels.parallel import run_in_chunks, task_address
from numbaconv.kernels.runs import copy_run


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
