"""The workspace arena (issue 27; Note [workspace arena] in numbaconv/workspaces.py).

* A repeated call allocates nothing but its output: for every CPU
  algorithm and ``"auto"``, the forward convolution, the transposed one
  (stride 1 and 2), both gradients, NCHW and channels-last, the traced
  peak of the third identical call (``tracemalloc`` sees NumPy's arrays
  and numba's, whose runtime allocates through Python's raw allocator)
  is at most the output plus :data:`SLACK` for Python objects.  (A few
  kernels keep allocating their per-thread buffers, which LLVM vectorises
  only as their own: the direct algorithm's phase-plane, planes and thin
  channels-last kernels, and the column tiles of im2col's transposed
  GEMM -- Note [chunk scratch] in numbaconv/kernels/parallel.py.  Their
  buffers are small on these problems; the fault test leaves the
  transposed GEMM out.)
* The same in a fresh process whose glibc maps every block over 128 KiB
  on its own (``MALLOC_MMAP_THRESHOLD_``), where a fresh workspace costs a
  page fault per page: the minor faults of later calls are at most the
  output's pages plus a few.
* The arena itself: buffers of one frame never overlap, a closed frame's
  bytes are the next one's, results are never in an arena, the bytes held
  stay under the workspace limit (and a lowered limit or
  ``release_workspaces`` frees them), and threads have arenas of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import numbaconv as nc
from numbaconv import workspaces

from .conftest import needs_numba_cuda

#: Bytes a repeated call may trace besides its output: the Python objects of
#: a call (specs' views, epilogues, job tables, fft's step list and
#: futures), and fft's 4 KiB contraction accumulators.  The workspaces of
#: these problems are 0.1-1 MiB; before the arena a call traced 3-11x its
#: output (e.g. winograd's 50 KiB output: 179 KiB more).
SLACK = 32 * 1024

ALGORITHMS = ("direct", "im2col", "fft", "winograd", "auto")


def _channels_last(a):
    """The channels-last view (as PyTorch's channels_last) of NCHW ``a``."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)).transpose(0, 3, 1, 2)


def _problems(fmt):
    rng = np.random.default_rng(27)

    def r(*shape):
        a = rng.standard_normal(shape).astype(np.float32)
        return _channels_last(a) if fmt == "channels_last" and a.ndim == 4 else a

    x, g = r(2, 16, 20, 20), r(2, 16, 20, 20)
    xs = r(2, 16, 10, 10)
    w, wt, b = r(16, 16, 3, 3), r(16, 8, 4, 4), r(16)
    return {
        "forward": lambda a: nc.conv2d(x, w, b, padding=1, algorithm=a),
        "forward_strided": lambda a: nc.conv2d(x, w, padding=1, stride=2, algorithm=a),
        "conv_transpose": lambda a: nc.conv_transpose2d(x, w, padding=1, algorithm=a),
        "conv_transpose_s2": lambda a: nc.conv_transpose2d(xs, wt, stride=2, padding=1,
                                                           algorithm=a),
        "grad_input": lambda a: nc.grad.conv2d_input(x.shape, w, g, padding=1, algorithm=a),
        "grad_weight": lambda a: nc.grad.conv2d_weight(x, w.shape, g, padding=1, algorithm=a),
    }


PROBLEMS = {fmt: _problems(fmt) for fmt in ("contiguous", "channels_last")}


def _traced_extra(call):
    """Bytes traced at the peak of ``call()`` (its third run) beyond the
    result it returns."""
    call()
    call()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        y = call()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return peak - y.nbytes


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("op", list(PROBLEMS["contiguous"]))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_repeated_call_allocates_only_its_output(algorithm, op, fmt):
    call = PROBLEMS[fmt][op]
    try:
        call(algorithm)
    except nc.UnsupportedAlgorithmError:
        pytest.skip(f"{algorithm} does not serve {op}")
    extra = _traced_extra(lambda: call(algorithm))
    assert extra <= SLACK, f"{extra / 1024:.1f} KiB traced besides the output"


FAULTS_CHILD = r"""
import json, resource, sys
import numpy as np
import numbaconv as nc
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 32, 40, 40), dtype=np.float32)
w = rng.standard_normal((32, 32, 3, 3), dtype=np.float32)
calls = {
    "forward": lambda a: nc.conv2d(x, w, padding=1, algorithm=a),
    "grad_input": lambda a: nc.grad.conv2d_input(x.shape, w, x, padding=1, algorithm=a),
    "grad_weight": lambda a: nc.grad.conv2d_weight(x, w.shape, x, padding=1, algorithm=a),
    "conv_transpose_s2": lambda a: nc.conv_transpose2d(x, w, stride=2, padding=1,
                                                       output_padding=1, algorithm=a),
}
found = {}
for name in sys.argv[1:]:
    op, algorithm = name.split(":")
    f = calls[op]
    y = f(algorithm); y = f(algorithm)
    faults = []
    for _ in range(4):
        del y
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = f(algorithm)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    found[name] = [min(faults), -(-y.nbytes // 4096)]
print(json.dumps(found))
"""


def test_repeated_calls_fault_in_only_their_output():
    """With glibc mapping every block over 128 KiB afresh (and unmapping it
    when freed), a workspace allocated per call faults in every page, every
    call (the issue's case: about 4.5 MiB a call for resnet3x3's
    workspaces); kept in the arena it faults once."""
    names = [f"{op}:{a}" for op, algorithms in (
        ("forward", ("direct", "im2col", "fft", "winograd")), ("grad_input", ("winograd",)),
        ("grad_weight", ("im2col", "direct")), ("conv_transpose_s2", ("direct",)))
        for a in algorithms]
    done = subprocess.run([sys.executable, "-c", FAULTS_CHILD, *names], capture_output=True,
                          text=True, timeout=900,
                          env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072"))
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    over = {name: (faults, pages) for name, (faults, pages) in found.items()
            if faults > pages + 32}
    assert not over, f"minor faults per call (fewest of 4) against the output's pages: {over}"


def test_buffers_of_a_frame_are_distinct_and_reused_by_the_next():
    with workspaces.frame():
        warm = [workspaces.scratch((100, 70), np.float32) for _ in range(3)]   # sizes the arena
        del warm
    with workspaces.frame():
        a = workspaces.scratch((100, 17), np.float32)
        b = workspaces.scratch(1000, np.float64)
        with workspaces.frame():
            c = workspaces.scratch((30, 50), np.int64)
            assert not np.shares_memory(c, a) and not np.shares_memory(c, b)
            inner = c.__array_interface__["data"][0]
        d = workspaces.scratch((30, 50), np.int64)        # the inner frame's bytes again
        assert d.__array_interface__["data"][0] == inner
        small = workspaces.scratch(workspaces.SMALL // 8 - 1, np.float64)      # a plain array
        assert small.base is None
        assert not np.shares_memory(a, b)
        for buf in (a, b, d):
            assert buf.flags.c_contiguous and buf.__array_interface__["data"][0] % 64 == 0
        arena = workspaces._host_arena()
        assert all(np.shares_memory(buf, arena.block) for buf in (a, b, d))
    zeroed = None
    with workspaces.frame():
        workspaces.scratch(2000, np.float32)[:] = 1
    with workspaces.frame():
        zeroed = workspaces.scratch(2000, np.float32, zero=True)
        assert not zeroed.any()
    # outside a frame: a plain new array
    loose = workspaces.scratch(2000, np.float32)
    assert not np.shares_memory(loose, workspaces._host_arena().block)


def test_a_frame_inside_a_call_sizes_the_block_for_the_next():
    """A nested frame's end grows the block (the outer frame's live buffers
    keep the old one): a transposed problem's later phases, or the timed
    runs of a tuning call, reuse what the first one sized."""
    nc.release_workspaces()
    with workspaces.frame():
        outer = workspaces.scratch(5000, np.float32)            # no block yet: fresh
        with workspaces.frame():
            first = workspaces.scratch(20000, np.float32)       # fresh too
        arena = workspaces._host_arena()
        assert arena.size >= outer.nbytes + first.nbytes
        with workspaces.frame():
            second = workspaces.scratch(20000, np.float32)
            assert np.shares_memory(second, arena.block)
            assert not np.shares_memory(second, outer) and not np.shares_memory(second, first)
        outer[:] = 1                                            # still its own memory
        assert (outer == 1).all()


def test_results_are_never_in_an_arena(rng):
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    for algorithm in ("direct", "im2col", "fft", "winograd"):
        y1 = nc.conv2d(x, w, padding=1, algorithm=algorithm)
        y2 = nc.conv2d(x, w, padding=1, algorithm=algorithm)
        block = workspaces._host_arena().block
        assert block is not None and not np.shares_memory(y1, y2)
        assert not np.shares_memory(y1, block) and not np.shares_memory(y2, block)
        np.testing.assert_array_equal(y1, y2)


def test_the_arena_stays_under_the_limit_and_is_released(rng):
    x = rng.standard_normal((1, 64, 48, 48)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    expected = nc.conv2d(x, w, padding=1, algorithm="im2col")
    assert 0 < workspaces.held_bytes("cpu") <= nc.get_workspace_limit()
    previous = nc.set_workspace_limit(2**20)
    try:
        assert workspaces._host_arena().size <= 2**20          # freed when lowered
        small = nc.conv2d(x, w, padding=1, algorithm="im2col")  # smaller tiles: other bits
        for _ in range(2):
            assert 0 < workspaces._host_arena().size <= 2**20
            np.testing.assert_array_equal(nc.conv2d(x, w, padding=1, algorithm="im2col"),
                                          small)
    finally:
        nc.set_workspace_limit(previous)
    held = workspaces.held_bytes()
    assert nc.release_workspaces() == held > 0
    assert workspaces.held_bytes() == 0 and workspaces._host_arena().block is None
    np.testing.assert_array_equal(nc.conv2d(x, w, padding=1, algorithm="im2col"), expected)
    assert workspaces.held_bytes() > 0


def test_each_thread_has_its_own_arena(rng):
    x = rng.standard_normal((2, 16, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    expected = nc.conv2d(x, w, padding=1, algorithm="winograd")
    blocks, results, arenas = {}, {}, {}

    def work(name):
        results[name] = [nc.conv2d(x, w, padding=1, algorithm="winograd") for _ in range(3)]
        blocks[name] = workspaces._host_arena().block
        arenas[name] = weakref.ref(workspaces._host_arena())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ys in results.values():
        for y in ys:
            np.testing.assert_array_equal(y, expected)
    mine = workspaces._host_arena().block
    for i, block in blocks.items():
        assert block is not None and not np.shares_memory(block, mine)
        assert all(not np.shares_memory(block, other) for j, other in blocks.items() if j != i)
    # a finished thread's arena goes with it
    assert all(arena() is None for arena in arenas.values())


def test_release_while_a_call_runs_elsewhere_is_safe(rng):
    """release_workspaces from one thread while others compute: the running
    calls keep their buffers (and allocate afresh); the results are exact."""
    x = rng.standard_normal((2, 16, 24, 24)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    expected = {a: nc.conv2d(x, w, padding=1, algorithm=a) for a in ("im2col", "winograd")}
    stop, bad = threading.Event(), []

    def work(algorithm):
        while not stop.is_set():
            if not np.array_equal(nc.conv2d(x, w, padding=1, algorithm=algorithm),
                                  expected[algorithm]):
                bad.append(algorithm)

    threads = [threading.Thread(target=work, args=(a,)) for a in expected]
    for t in threads:
        t.start()
    try:
        for _ in range(50):
            nc.release_workspaces()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not bad


@needs_numba_cuda
def test_gpu_calls_keep_their_device_scratch():
    """Under the CUDA simulator: Winograd's transformed tiles, im2col's
    partial sums and a channels-last call's packing copies come from the
    thread's arena for the device, the results are the same bits every
    call, and release_workspaces frees the device's block too."""
    from numba import cuda

    from numbaconv.cuda import arrays

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    dx, dw = cuda.to_device(x), cuda.to_device(w)
    nc.release_workspaces()
    first = nc.conv2d(dx, dw, padding=1, algorithm="winograd").copy_to_host()
    held = workspaces.held_bytes(("cuda", arrays._device_id()))
    assert held > 0
    for _ in range(2):
        again = nc.conv2d(dx, dw, padding=1, algorithm="winograd").copy_to_host()
        np.testing.assert_array_equal(again, first)
        assert workspaces.held_bytes(("cuda", arrays._device_id())) == held
    gw = [nc.grad.conv2d_weight(dx, w.shape, dx, padding=1, algorithm="im2col").copy_to_host()
          for _ in range(2)]
    np.testing.assert_array_equal(gw[0], gw[1])
    # outside a call: a plain device array; inside, a view of the arena's block
    assert arrays.workspace((3, 4), np.float32, 0).shape == (3, 4)
    with workspaces.frame():
        view = arrays.workspace((64, 64), np.float32, 0)
        assert view.shape == (64, 64) and view.dtype == np.float32
    assert nc.release_workspaces() >= held
    assert workspaces.held_bytes(("cuda", arrays._device_id())) == 0
