"""``numbaconv warmup``: compile every CPU kernel into numba's cache ahead of
the first call, in parallel processes (for cluster workers, CI and container
images).

Note [warmup table]
~~~~~~~~~~~~~~~~~~~
Which kernels a call compiles depends on its algorithm, its form (the
direct algorithm's loop orders and phase-plane passes, im2col's products
and fills, Winograd's F(m, 3)), its dtype and the argument types
of the parallel shell's launchers (Note [parallel shell]).  Rather than
list kernels and guess their argument types, the warmup runs a table of
tiny problems, :data:`LAYERS`, through the public functions: every layer
with each algorithm that serves it, forward, transposed and both
gradients, in float32 and float64.  So it compiles exactly what real calls
compile (the shells included), and a new kernel form is warmed when a layer
of the table reaches it; ``tests/test_warmup.py`` checks that the table
reaches every compiled kernel of the package in both dtypes (in-process,
with numba's dispatchers as the list), so a form the table misses fails
there.  A few forms the planners choose only for sizes the table avoids
(im2col's fills for tiles of part rows) are reached by :data:`KERNEL_JOBS`,
kernel calls with the tiles set.

A job is one layer (or kernel job) and one dtype; the jobs run in
``--jobs`` processes (default: the CPUs this process may use), in table
order.  A kernel that another process has already saved is loaded, not
compiled again.  numba's disk cache is not safe for two processes saving entries of one function at
once (each reads the function's index, picks the next free data file name
and writes the index back, so two processes can take the same name); the
workers hold one file lock around each save.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Dict
from dataclasses import dataclass, field

DTYPES = ("float32", "float64")
ALGORITHMS = ("direct", "im2col", "fft", "winograd", "winograd_f2")
OPS = ("forward", "transposed", "grad_input", "grad_weight")


@dataclass(frozen=True)
class Layer:
    """A tiny problem of the warmup table: ``conv{ndim}d(x, w, **kwargs)``
    of shapes ``input`` and ``weight``, run with each of ``algorithms`` that
    serves it, for each of ``ops``."""

    name: str
    input: tuple
    weight: tuple
    kwargs: dict = field(default_factory=dict)
    algorithms: tuple = ALGORITHMS
    ops: tuple = OPS

    @property
    def ndim(self):
        return len(self.input) - 2


_DEPTHWISE = ("direct", "im2col", "fft")

#: Note [warmup table]: the layers, and the forms they are there for.
LAYERS = (
    # direct: phase planes, row pairs (nine, five, per-column passes)
    Layer("row pairs 3x3", (1, 4, 12, 12), (4, 1, 3, 3), dict(padding=1, groups=4), _DEPTHWISE),
    Layer("row pairs 5x5", (1, 4, 12, 12), (4, 1, 5, 5), dict(padding=2, groups=4), ("direct",)),
    Layer("row pairs 7x7", (1, 4, 14, 14), (4, 1, 7, 7), dict(padding=3, groups=4), ("direct",)),
    # stride two (nine, five, per-column passes); their transposes and
    # gradients reach the single-row form and the planes
    Layer("stride two 3x3", (1, 4, 12, 12), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4),
          _DEPTHWISE),
    Layer("stride two 5x5", (1, 4, 12, 12), (4, 1, 5, 5), dict(stride=2, padding=2, groups=4),
          ("direct",)),
    Layer("stride two 7x7", (1, 4, 14, 14), (4, 1, 7, 7), dict(stride=2, padding=3, groups=4),
          ("direct",)),
    Layer("single rows", (1, 4, 12, 12), (4, 1, 3, 3), dict(padding=2, dilation=2, groups=4),
          ("direct",)),
    # channels-last, and every algorithm's 2-D path
    Layer("3x3", (1, 8, 8, 8), (8, 8, 3, 3), dict(padding=1)),
    Layer("3x3 unpadded", (1, 3, 10, 10), (8, 3, 3, 3)),
    Layer("thin channels-last", (1, 8, 9, 9), (8, 1, 3, 3),
          dict(padding=1, groups=8, padding_mode="reflect"), ("direct", "im2col")),
    Layer("strided 3x3", (1, 4, 9, 9), (6, 4, 3, 3), dict(stride=2, padding=1)),
    Layer("pointwise", (1, 8, 6, 6), (8, 8, 1, 1)),
    # a squeeze-excitation layer: im2col's one-pixel input gradient and the
    # weight gradient's loop for short reductions
    Layer("squeeze-excitation", (1, 8, 1, 1), (4, 8, 1, 1), {}, ("im2col",)),
    # im2col's transposed GEMM of a one-pixel input (the rows form; the
    # strided layers' transposes take the planes)
    Layer("one pixel", (2, 8, 1, 1), (8, 8, 3, 3), dict(padding=1), ("im2col",)),
    Layer("1-D", (1, 4, 16), (4, 4, 3), dict(padding=1)),
    Layer("3-D", (1, 4, 6, 6, 6), (4, 4, 3, 3, 3), dict(padding=1)),
    Layer("3-D depthwise", (1, 4, 6, 6, 6), (4, 1, 3, 3, 3), dict(padding=1, groups=4),
          _DEPTHWISE),
    # direct's thin gradients: the stride-two layers reach their de-interleaving
    # forms and the unit-stride ones the weight gradient's copying form; these
    # the strided forms and the transposed copying form
    Layer("thin gradients stride 3", (1, 4, 12, 12), (4, 1, 3, 3),
          dict(stride=3, padding=1, groups=4), ("direct",)),
    Layer("thin gradients stride 2x1", (1, 4, 12, 12), (4, 1, 3, 3),
          dict(stride=(2, 1), padding=1, groups=4), ("direct",)),
)


def _im2col_tiles(dtype, small, fills):
    """im2col's tile task for one product and fills (Note [tasks per
    product]), on tiles the planner would not choose."""
    import numpy as np

    from .kernels import blas, im2col_cpu

    cout = 1 if small else 4
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 1, 5, 6)).astype(dtype)
    w = rng.standard_normal((cout, 2, 1, 3, 3)).astype(dtype)
    if fills == "general":          # stride 2 along W: no same-width fill
        stride, out = (1, 1, 2), np.empty((1, cout, 1, 5, 3), dtype)
        tile = 4
    else:                           # same width; tiles of whole rows or not
        stride, out = (1, 1, 1), np.empty((1, cout, 1, 5, 6), dtype)
        tile = 12 if fills == "same_width" else 7
    # padding 1 on H and W: padded index -> input index, -1 for padding
    maps = (np.zeros(1, np.int64), np.array([-1, 0, 1, 2, 3, 4, -1], np.int64),
            np.array([-1, 0, 1, 2, 3, 4, 5, -1], np.int64))
    gemm = blas.find_gemm()
    with blas.single_threaded_blas():
        im2col_cpu.im2col_conv(gemm.address(out.dtype), gemm.int_witness, x, *maps,
                               w.reshape(1, cout, -1), np.zeros(cout, dtype), out, (1, 3, 3),
                               stride, (1, 1, 1), 1, 1, tile, 18, 1)


def _thin_channels_last(dtype):
    """direct's channels-last thin gradients (Note [channels-last thin
    gradients]), which the layers (contiguous) do not reach."""
    import numpy as np

    from .kernels import direct_layouts, direct_thin_grad

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 6, 6, 8)).astype(dtype)
    g = rng.standard_normal((1, 1, 3, 3, 8)).astype(dtype)
    direct_thin_grad.grad_weight_channels_last(x, g, np.empty((8, 1, 1, 3, 3), dtype), 1, 1,
                                               (1, 2, 2), (1, 1, 1), 8, 1, 1)
    axes = tuple(direct_layouts.transposed_axis_phases(3, 3, 1, 2, 1, 6) for _ in range(2))
    direct_thin_grad.transposed_channels_last(g, rng.standard_normal((9, 8)).astype(dtype),
                                              np.zeros(0, dtype), np.empty(x.shape, dtype),
                                              axes, 3, 1)


#: Note [warmup table]: kernel calls for the forms the layers do not reach
KERNEL_JOBS: Dict[str, Callable[[Any], Any]] = {
    f"im2col tiles {'small' if small else 'BLAS'} {fills}":
        functools.partial(_im2col_tiles, small=small, fills=fills)
    for small in (True, False) for fills in ("same_width", "both", "general")}
KERNEL_JOBS["thin gradients channels-last"] = _thin_channels_last


def _arrays(layer, dtype):
    import numpy as np

    from .spec import conv_output_size

    rng = np.random.default_rng(0)
    kw = {k: v for k, v in layer.kwargs.items() if k != "padding_mode"}
    x = rng.standard_normal(layer.input).astype(dtype)
    w = rng.standard_normal(layer.weight).astype(dtype)
    b = rng.standard_normal(layer.weight[0]).astype(dtype)
    size = conv_output_size(layer.input[2:], layer.weight[2:], stride=kw.get("stride", 1),
                            padding=kw.get("padding", 0), dilation=kw.get("dilation", 1))
    gy = rng.standard_normal(layer.input[:1] + layer.weight[:1] + tuple(size)).astype(dtype)
    return x, w, b, gy


def run_layer(layer, dtype, algorithms=None):
    """Run ``layer`` with every one of its algorithms (or ``algorithms``)
    that serves it, for each of its ops; return the results as a dict keyed
    by ``(algorithm, op)`` (so tests can compare them)."""
    import numbaconv as nc
    from numbaconv import grad

    x, w, b, gy = _arrays(layer, dtype)
    n = layer.ndim
    kw = dict(layer.kwargs)
    mode = kw.pop("padding_mode", "zeros")
    results = {}
    for algorithm in algorithms or layer.algorithms:
        calls = {
            "forward": lambda: getattr(nc, f"conv{n}d")(x, w, b, padding_mode=mode,
                                                          algorithm=algorithm, **kw),
            "transposed": lambda: getattr(nc, f"conv_transpose{n}d")(
                gy, w, None, algorithm=algorithm, output_padding=_output_padding(layer),
                **kw),
            "grad_input": lambda: getattr(grad, f"conv{n}d_input")(
                x.shape, w, gy, algorithm=algorithm, **kw),
            "grad_weight": lambda: getattr(grad, f"conv{n}d_weight")(
                x, w.shape, gy, algorithm=algorithm, **kw),
        }
        for op in layer.ops:
            if op != "forward" and mode != "zeros":
                continue                # the gradients and transposes are zero-padded
            try:
                results[algorithm, op] = calls[op]()
            except nc.UnsupportedAlgorithmError:
                pass
    return results


def _output_padding(layer):
    """The output padding that gives the transposed convolution of ``layer``'s
    output back its input's size."""
    from .spec import conv_output_size

    kw = layer.kwargs
    stride, padding, dilation = (kw.get("stride", 1), kw.get("padding", 0),
                                 kw.get("dilation", 1))
    size = conv_output_size(layer.input[2:], layer.weight[2:], stride=stride, padding=padding,
                            dilation=dilation)
    ndim = layer.ndim
    s, p, d = (t if isinstance(t, tuple) else (t,) * ndim for t in (stride, padding, dilation))
    return tuple(i - ((o - 1) * s_ - 2 * p_ + d_ * (k - 1) + 1)
                 for i, o, s_, p_, d_, k in zip(layer.input[2:], size, s, p, d,
                                                layer.weight[2:]))


def job_names():
    """Every job's name, layers first (the slower, on the whole)."""
    return [layer.name for layer in LAYERS] + list(KERNEL_JOBS)


def select_jobs(only=None, dtypes=DTYPES):
    """``(name, dtype)`` of the jobs whose name matches one of the
    comma-separated shell patterns ``only`` (case-insensitive; all if None)."""
    patterns = [p.strip().lower() for p in (only or "*").split(",") if p.strip()]
    names = [name for name in job_names()
             if any(fnmatch.fnmatchcase(name.lower(), p) for p in patterns)]
    return [(name, dtype) for name in names for dtype in dtypes]


def run_job(name, dtype):
    """Run one job in this process."""
    layers = {layer.name: layer for layer in LAYERS}
    if name in layers:
        run_layer(layers[name], dtype)
    else:
        KERNEL_JOBS[name](dtype)


# ---------------------------------------------------------------------------
# worker processes
# ---------------------------------------------------------------------------

_compiles = []


def _init_worker(lock_path):
    """A worker: numba's cache saves under one file lock (Note [warmup
    table]); compiles of numbaconv's functions counted."""
    import numba
    from numba.core import caching, event

    if lock_path:
        save = caching.IndexDataCacheFile.save

        def locked_save(self, key, data):
            with _file_lock(lock_path):
                save(self, key, data)

        caching.IndexDataCacheFile.save = locked_save

    class Counter(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            if ev.data["dispatcher"].py_func.__module__.startswith("numbaconv."):
                _compiles.append(1)

    event.register("numba:compile", Counter())
    del numba


@contextlib.contextmanager
def _file_lock(path):
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _worker_job(name, dtype):
    """``(name, dtype, seconds, kernels compiled, error text or None)``."""
    before = len(_compiles)
    start = time.perf_counter()
    try:
        run_job(name, dtype)
        error = None
    except Exception:                   # noqa: BLE001 - reported by the parent
        error = traceback.format_exc()
    return name, dtype, time.perf_counter() - start, len(_compiles) - before, error


def cache_location():
    """Where numba writes numbaconv's compiled kernels."""
    import numba

    if numba.config.CACHE_DIR:
        return numba.config.CACHE_DIR
    kernels = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
    if os.access(kernels, os.W_OK):
        return os.path.join(kernels, "__pycache__")
    return "numba's user-wide cache directory (the package is read-only)"


def cpu_count():
    """The CPUs this process may run on (a container's or a job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def warmup(jobs=None, processes=None, out=sys.stdout):
    """Run ``jobs`` (``(name, dtype)`` pairs; default: all) in ``processes``
    worker processes (default: :func:`cpu_count`), printing a line per job and
    the total time to ``out``.  Returns the failed jobs' ``(name, dtype,
    error)``."""
    import concurrent.futures
    import multiprocessing

    jobs = select_jobs() if jobs is None else list(jobs)
    processes = max(1, min(processes or cpu_count(), len(jobs) or 1))
    try:
        import fcntl  # noqa: F401
    except ImportError:                 # no POSIX file locks: one process, no lock needed
        processes = 1
    print(f"numbaconv warmup: {len(jobs)} job(s) in {processes} process(es); cache: "
          f"{cache_location()}", file=out, flush=True)
    failed = []
    start = time.perf_counter()
    compiled = 0
    with tempfile.TemporaryDirectory(prefix="numbaconv-warmup-") as tmp:
        lock = os.path.join(tmp, "cache.lock") if processes > 1 else None
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context,
                                                    initializer=_init_worker,
                                                    initargs=(lock,)) as pool:
            futures = [pool.submit(_worker_job, name, dtype) for name, dtype in jobs]
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                name, dtype, seconds, count, error = future.result()
                compiled += count
                status = "FAILED" if error else f"{count} kernel(s) compiled"
                print(f"[{done:{len(str(len(jobs)))}d}/{len(jobs)}] {seconds:6.1f} s  "
                      f"{name}, {dtype}: {status}", file=out, flush=True)
                if error:
                    failed.append((name, dtype, error))
    total = time.perf_counter() - start
    print(f"numbaconv warmup: {compiled} kernel(s) compiled in {total:.1f} s with "
          f"{processes} process(es)" + (f"; {len(failed)} job(s) failed" if failed else ""),
          file=out, flush=True)
    for name, dtype, error in failed:
        print(f"--- {name}, {dtype}:\n{error}", file=out)
    return failed
