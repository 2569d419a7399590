"""Bit-identity across thread counts (README, docs/semantics.md "Bit for bit: what holds where").

Every explicit algorithm, forward and both gradients where it serves them, at 1 and 2 threads
(``numba.set_num_threads``) and again, on odd-sized problems: the results
must be equal bit for bit.  Before the fix of Note [GEMM shapes]
(numbaconv/kernels/blas.py) 17 of 79 such comparisons differed on an AVX2
CPU (OpenBLAS's Haswell kernels), and none on the AVX-512 machine CI had
run on; the plan tests below guard the mechanism on any CPU.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import numbaconv as nc
from numbaconv import grad
from numbaconv.algorithms import fft, get_algorithm, winograd
from numbaconv.context import ExecutionContext
from numbaconv.kernels import blas

from .conftest import spec_of

ALGORITHMS = ["direct", "im2col", "fft", "winograd", "winograd_f2"]
#: odd sizes, ragged tiles and blocks; the layers the first trial found
#: differing are marked
PROBLEMS = [
    pytest.param((2, 16, 13, 15), (10, 16, 3, 3), dict(padding=1), id="3x3-16ch"),
    pytest.param((1, 40, 9, 11), (40, 40, 3, 3), dict(padding=1), id="3x3-40ch"),  # im2col
    pytest.param((3, 12, 17, 19), (12, 1, 5, 5), dict(padding=2, groups=12),
                 id="dw5x5"),                                                  # fft: 86%
    pytest.param((1, 8, 13, 12), (6, 8, 3, 3), dict(padding=2, dilation=2), id="dilated"),
    pytest.param((2, 24, 7, 7), (72, 24, 1, 1), {}, id="pointwise"),
    pytest.param((1, 24, 7, 7), (72, 24, 1, 1), {}, id="pointwise-b1"),  # one-image GEMMs
    pytest.param((1, 96, 1, 1), (24, 96, 1, 1), {}, id="squeeze-excite"),  # one pixel
    pytest.param((1, 64, 7, 7), (96, 64, 3, 3), dict(padding=1), id="late3x3"),  # winograd
    pytest.param((2, 6, 23, 21), (5, 6, 7, 7), dict(padding=3), id="7x7"),
    pytest.param((2, 12, 14, 16), (12, 1, 3, 3), dict(stride=2, padding=1, groups=12),
                 id="dw-stride2"),                                     # direct's phase planes
    pytest.param((2, 6, 15, 16), (6, 1, 7, 7), dict(padding=3, groups=6), id="dw7x7"),  # pairs
    pytest.param((1, 4, 6, 7, 9), (5, 4, 3, 3, 3), dict(padding=1), id="3d"),
]
CONV = {1: nc.conv1d, 2: nc.conv2d, 3: nc.conv3d}
GRAD_INPUT = {1: grad.conv1d_input, 2: grad.conv2d_input, 3: grad.conv3d_input}
GRAD_WEIGHT = {1: grad.conv1d_weight, 2: grad.conv2d_weight, 3: grad.conv3d_weight}

needs_two_threads = pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2,
    reason="needs NUMBA_NUM_THREADS >= 2 to compare 1 and 2 threads, "
           f"got {numba.config.NUMBA_NUM_THREADS}")


def _cases():
    """(problem, algorithm, op) for every pair an algorithm serves: winograd's
    domain is stride 1, 3-wide kernels, forward and input gradient
    (docs/semantics.md); an unserved pair would raise, which test_errors.py tests."""
    for problem in PROBLEMS:
        _shape, wshape, kw = problem.values
        for algorithm in ALGORITHMS:
            for op in ("forward", "grad_input", "grad_weight"):
                if algorithm.startswith("winograd") and (
                        op == "grad_weight" or set(wshape[2:]) != {3}
                        or kw.get("stride", 1) != 1):
                    continue
                yield pytest.param(*problem.values, algorithm, op,
                                   id=f"{problem.id}-{algorithm}-{op}")


@needs_two_threads
@pytest.mark.parametrize("shape, wshape, kw, algorithm, op", list(_cases()))
def test_one_and_two_threads_agree_bitwise(shape, wshape, kw, algorithm, op):
    rng = np.random.default_rng(1)
    ndim = len(wshape) - 2
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    out_shape = nc.conv2d(x, w, **kw).shape if ndim == 2 else CONV[ndim](x, w, **kw).shape
    g = rng.standard_normal(out_shape).astype(np.float32)
    run = {"forward": lambda: CONV[ndim](x, w, **kw, algorithm=algorithm),
           "grad_input": lambda: GRAD_INPUT[ndim](x.shape, w, g, **kw, algorithm=algorithm),
           "grad_weight": lambda: GRAD_WEIGHT[ndim](x, w.shape, g, **kw,
                                                    algorithm=algorithm)}[op]
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1, 2):
            numba.set_num_threads(threads)
            results.append(run())
    finally:
        numba.set_num_threads(previous)
    for r in results[1:]:
        assert np.array_equal(r, results[0]), \
            f"{np.mean(r != results[0]):.1%} of the values differ"


PLAN_SPECS = [
    ((1, 40, 9, 11), (40, 40, 3, 3), dict(padding=1)),
    ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),      # row blocks on two threads
    ((3, 12, 17, 19), (12, 1, 5, 5), dict(padding=2, groups=12)),
    ((1, 64, 7, 7), (96, 64, 3, 3), dict(padding=1)),
    ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("pool", [2, 8])
@pytest.mark.parametrize("shape, wshape, kw", PLAN_SPECS)
def test_gemm_shapes_do_not_depend_on_the_call_threads(shape, wshape, kw, pool):
    """The mechanism, on any CPU: every plan that becomes a GEMM's shape or an
    FFT's length is the same for every ``threads`` under one pool."""
    spec = spec_of(shape, wshape, **kw)
    plans = []
    for threads in range(1, pool + 1):
        ctx = ExecutionContext(threads=threads, pool_threads=pool)
        plans.append((get_algorithm("im2col").plan(spec, ctx).detail,
                      winograd.plan_chunk(spec, 4, 4, ctx),
                      winograd.plan_winograd(spec, 4, 4, ctx)[0],     # staged or not
                      winograd.plan_winograd(spec, 2, 4, ctx)[0],
                      get_algorithm("fft").plan(spec, ctx).detail.lengths))
    assert all(p == plans[0] for p in plans), plans


@needs_two_threads
def test_fft_plans_default_to_the_pool():
    spec = spec_of((3, 12, 17, 19), (12, 1, 5, 5), padding=2, groups=12)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert fft.plan_fft(spec, 4) == fft.plan_fft(spec, 4,
                                                    threads=numba.config.NUMBA_NUM_THREADS)
    finally:
        numba.set_num_threads(previous)


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_blas_stays_single_threaded_until_the_last_caller_leaves():
    """Two Python threads in :func:`blas.single_threaded_blas` at once, the
    first leaving first: BLAS must stay at one thread for the second (a plain
    threadpoolctl limit restored the original count under its GEMMs)."""
    # a call in this thread first: threadpoolctl then ignores limits set in
    # any other thread, which the old limit relied on
    with blas.single_threaded_blas():
        pass
    if not _blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library")
    before = _blas_threads()
    inside = threading.Barrier(2)
    first_left = threading.Event()
    seen = []

    def first():
        with blas.single_threaded_blas():
            inside.wait()
        first_left.set()

    def second():
        with blas.single_threaded_blas():
            inside.wait()
            first_left.wait(10)
            seen.append(_blas_threads())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen and all(n == 1 for n in seen[0]), seen
    assert _blas_threads() == before
