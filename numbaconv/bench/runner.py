"""Side-by-side timing of numbaconv, PyTorch and SciPy on the benchmark suite.

A point is a case and an op (forward, transposed, grad_input, grad_weight;
see :mod:`numbaconv.bench.suite`); PyTorch makes the matching call
(``torch.nn.functional.conv{N}d`` / ``conv_transpose{N}d``,
``torch.nn.grad.conv{N}d_input`` / ``conv{N}d_weight``).

Method (see docs/benchmarking.md):

* every implementation is warmed up first, so compile time is never timed;
* PyTorch runs in its own process (:mod:`numbaconv.bench.torch_worker`);
  while it runs, this process waits on a pipe, and the reverse;
* the implementations take turns in ``rounds`` rounds of ``repeats`` timed
  calls each (the order rotates every round), so slow drifts of a shared
  machine hit all of them alike; each turn starts with 20 ms of untimed
  calls, because the calls after the other process ran pay for cold caches
  and a woken thread pool for a few milliseconds (Note [turn warm-up] in
  :mod:`numbaconv.timing`); the figure reported is the median of all
  timed calls;
* each numbaconv result is checked against the matching float64 reference
  (:mod:`numbaconv.reference`);
* with ``loop=True`` each numbaconv algorithm is also timed as a user's
  loop, alone in a fresh process, allocating its results as a caller does
  (:mod:`numbaconv.bench.loop`, Note [loop timing]): the ``loop`` column.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from .. import reference as _reference
from ..algorithms import algorithm_names
from ..dispatch import resolve_algorithm
from ..errors import UnsupportedAlgorithmError
from ..spec import make_conv_spec
from ..timing import TURN_WARMUP_S, time_turn
from .loop import LOOP_CALLS, loop_ms, recipe, run_loop
from .suite import bench_points


@dataclass
class Measurement:
    """Times of one implementation on one case."""

    case: str
    impl: str
    times: list = field(default_factory=list)
    flops: int = 0
    error: float | None = None     # max |y - ref| / max |ref|
    note: str = ""
    op: str = "forward"            # forward, transposed, grad_input, grad_weight
    loop_times: list = field(default_factory=list)    # a user's loop (Note [loop timing])
    loop_faults: list = field(default_factory=list)   # its minor page faults per call

    @property
    def median_ms(self):
        return statistics.median(self.times) * 1e3 if self.times else None

    @property
    def loop_ms(self):
        """The median call of the user's loop (None if not run)."""
        return loop_ms({"times": self.loop_times}) if self.loop_times else None

    @property
    def gflops(self):
        return self.flops / statistics.median(self.times) / 1e9 if self.times else None

    def as_dict(self):
        found = {"case": self.case, "op": self.op, "impl": self.impl,
                 "median_ms": self.median_ms,
                 "gflops": self.gflops, "error": self.error, "note": self.note,
                 "times_ms": [t * 1e3 for t in self.times]}
        if self.loop_times:
            found.update(loop_ms=self.loop_ms, loop_times_ms=[t * 1e3 for t in self.loop_times],
                         loop_faults=list(self.loop_faults))
        return found


class Progress:
    """Progress on stderr: a one-line bar on a terminal, or, where stderr is
    a file or a pipe (CI logs, ``2> log``), where a bar's carriage returns
    only pile up, a line as each point starts (``lines``); silent when
    disabled."""

    def __init__(self, total, enabled, lines=False, points=0):
        self.total, self.done, self.enabled = max(total, 1), 0, enabled
        self.lines, self.points, self.started = lines, points, 0
        self.start = time.perf_counter()

    def begin(self, where):
        """A point starts (its warm-up compiles: the longest wait)."""
        self.started += 1
        if self.enabled and self.lines:
            sys.stderr.write(f"numbaconv bench: {self.started}/{self.points} {where} "
                             f"(after {time.perf_counter() - self.start:.0f} s)\n")
            sys.stderr.flush()

    def step(self, label, amount=1):
        self.done += amount
        if self.enabled and not self.lines:
            width = 30
            filled = int(width * self.done / self.total)
            elapsed = time.perf_counter() - self.start
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                             f"{self.done}/{self.total} {elapsed:5.0f}s {label[:40]:<40}")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n" if not self.lines else
                             f"numbaconv bench: {self.started} point(s) in "
                             f"{time.perf_counter() - self.start:.0f} s\n")
            sys.stderr.flush()


def torch_missing():
    """Why PyTorch cannot be timed here (a phrase), or None if ``torch`` can
    be imported (found without importing it: the worker process imports it)."""
    import importlib.util
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else "PyTorch is not installed"


class TorchWorker:
    """PyTorch in a child process; ``None``-like (``available=False``) without torch."""

    def __init__(self, threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "numbaconv.bench.torch_worker", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        hello = self._read()
        self.available = bool(hello.get("ready"))
        self.version = hello.get("torch")
        self.reason = hello.get("error", "")
        if not self.available:
            self.close()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            return {"error": "torch worker exited"}
        return json.loads(line)

    def request(self, **message):
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.request(cmd="quit")
            except (BrokenPipeError, ValueError, json.JSONDecodeError):
                pass
            self.proc.wait(timeout=30)


def _library_function(call):
    """numbaconv's function for ``call`` (an OpCall), or None if it has none."""
    import numbaconv

    namespace = numbaconv if call.namespace == "functional" else getattr(numbaconv, "grad", None)
    return getattr(namespace, call.name, None)


def _spec_of(case, call):
    """numbaconv's spec of ``call`` (to resolve algorithms up front), or None
    where this version has no spec builder for it."""
    from .. import spec as specs

    if call.namespace == "grad":
        kind = "input" if call.name.endswith("_input") else "weight"
        maker = getattr(specs, f"make_grad_{kind}_spec", None)
        return maker and maker(f"grad.{call.name}", case.ndim, *call.args, **call.kwargs)
    if call.name.startswith("conv_transpose"):
        maker = getattr(specs, "make_transposed_spec", None)
        return maker and maker(call.name, case.ndim, *call.args, None, **call.kwargs)
    return make_conv_spec(call.name, case.ndim, *call.args, None, **call.kwargs)


def _numbaconv_impls(case, call, algorithms):
    """(label, callable or None, note) for each requested numbaconv algorithm.

    The algorithm is resolved up front from numbaconv's spec of the call, so
    ``auto`` is labelled with its choice and an algorithm that cannot serve
    the point gets its reason as a note (without a spec builder, the warm-up
    call finds that out).
    """
    fn = _library_function(call)
    qualified = call.name if call.namespace == "functional" else f"grad.{call.name}"
    if fn is None:
        return [(f"numbaconv:{name}", None, f"{qualified} not implemented yet")
                for name in algorithms]
    spec = _spec_of(case, call)
    impls = []
    for name in algorithms:
        label = f"numbaconv:{name}"
        if spec is not None:
            try:
                chosen = resolve_algorithm(name, spec)
            except (UnsupportedAlgorithmError, MemoryError) as exc:
                # MemoryError: its smallest workspace is over the limit
                impls.append((label, None, _refusal_note(exc)))
                continue
            if name == "auto":
                label = f"numbaconv:auto->{chosen.name}"
        impls.append((label, lambda name=name: fn(*call.args, algorithm=name, **call.kwargs),
                      ""))
    return impls


def _refusal_note(exc):
    """A row's note for an algorithm that refused its point: the reason
    alone where the error has it (the row names the problem and the
    algorithm; the table shows the algorithms that serve it)."""
    reason = getattr(exc, "reason", None)
    return f"cannot serve: {reason}" if reason else (str(exc) or type(exc).__name__)


def _reference_result(call):
    """The float64 oracle's result for ``call``; None if the oracle is missing."""
    oracle = getattr(_reference, call.reference, None)
    return None if oracle is None else oracle(*call.args, **call.kwargs)


def _scipy_impls(case, x, w):
    """SciPy peers for single-channel, unpadded, unit-stride problems."""
    plain = all(case.kwargs.get(k, d) in (d, (d,) * case.ndim)
                for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)))
    if case.transposed or not plain or x.shape[:2] != (1, 1) or w.shape[:2] != (1, 1):
        return []
    try:
        from scipy import signal
    except ImportError:  # pragma: no cover
        return []
    image = x[0, 0]
    kernel = np.ascontiguousarray(w[0, 0][(slice(None, None, -1),) * case.ndim])  # correlate
    return [(f"scipy.{name}", lambda f=getattr(signal, name): f(image, kernel, mode="valid"), "")
            for name in ("fftconvolve", "oaconvolve")]


def run_benchmarks(cases, *, ops=None, algorithms=None, dtype="float32", threads=2, rounds=5,
                   repeats=3, use_torch=True, use_scipy=True, check=True, seed=0,
                   progress=False, warmup_s=TURN_WARMUP_S, status=None, loop=False,
                   loop_calls=LOOP_CALLS):
    """Measure every implementation on every (case, op) point; return Measurements.

    Parameters
    ----------
    cases : list of BenchCase
    ops : sequence of str, optional
        Ops to run on each case that offers them (see
        :func:`numbaconv.bench.suite.bench_points`); default: each case's
        own call (forward, or transposed for a transposed case).
    algorithms : list of str, optional
        numbaconv algorithms to time (default: every registered one and
        ``"auto"``).
    dtype : str
    threads : int
        Threads for numba and for PyTorch.
    rounds, repeats : int
        The implementations take turns ``rounds`` times, ``repeats`` calls
        each; the median of all ``rounds * repeats`` calls is reported.
    warmup_s : float
        Seconds of untimed calls at the start of each turn (at least one
        call): Note [turn warm-up] in :mod:`numbaconv.timing`.
    use_torch, use_scipy, check : bool
        Include the peers; compare each numbaconv result with the float64
        reference.
    progress : bool or {"bar", "lines"}
        Progress on stderr: a bar (True or ``"bar"``, for a terminal) or a
        line per point (``"lines"``, for a log).
    status : dict, optional
        Filled with ``"torch"``: ``None`` if PyTorch was timed, else why not
        (``"skipped"``, :func:`torch_missing`'s phrase or the worker's error),
        for the table's note on its empty ``vs torch`` column.
    loop, loop_calls : bool, int
        Also time every numbaconv algorithm that ran as a user's loop of
        ``loop_calls`` calls, alone in a fresh process (Note [loop timing]
        in :mod:`numbaconv.bench.loop`): ``Measurement.loop_times``.
    """
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    algorithms = list(algorithms or [a for a in algorithm_names() if a != "auto"] + ["auto"])
    status = {} if status is None else status
    missing = torch_missing() if use_torch else "skipped"
    worker = TorchWorker(threads) if missing is None else None
    if worker is not None and not worker.available:
        missing = f"the PyTorch worker did not start ({worker.reason})"
    status["torch"] = missing
    points = bench_points(cases, ops)
    bar = Progress(len(points) * (rounds + 2), bool(progress), lines=progress == "lines",
                   points=len(points))
    results = []
    try:
        for case, op in points:
            where = f"{case.name} {op}"
            bar.begin(where)
            call = case.op_call(op, dtype, seed)
            impls = _numbaconv_impls(case, call, algorithms)
            if use_scipy and op == "forward":
                impls += _scipy_impls(case, *call.args)
            flops = case.op_flops(op)
            rows = {label: Measurement(case.name, label, flops=flops, note=note, op=op)
                    for label, _, note in impls}
            runnable = []

            bar.step(f"{where}: warm-up")
            reference = None
            for label, fn, _ in impls:
                if fn is None:
                    continue
                try:
                    y = fn()                               # compiles; never timed
                except (UnsupportedAlgorithmError, NotImplementedError, MemoryError) as exc:
                    rows[label].note = _refusal_note(exc)
                    continue
                runnable.append((label, fn))
                if check and label.startswith("numbaconv"):
                    if reference is None:
                        reference = _reference_result(call)
                    if reference is None:
                        rows[label].note = f"no reference {call.reference} to check against"
                        continue
                    scale = float(np.abs(reference).max()) or 1.0
                    rows[label].error = float(np.abs(y - reference).max()) / scale
            torch_ok = False
            if worker is not None and worker.available:
                reply = worker.request(cmd="prepare", case=case.to_dict(), op=op, dtype=dtype,
                                       seed=seed)
                torch_ok = bool(reply.get("ok"))
                rows["torch"] = Measurement(case.name, "torch", flops=flops, op=op,
                                            note="" if torch_ok else reply.get("error", ""))
            bar.step(f"{where}: timing", 0)
            players = runnable + ([("torch", None)] if torch_ok else [])
            for r in range(rounds):
                k = r % len(players) if players else 0
                for label, fn in players[k:] + players[:k]:      # rotate the order
                    if fn is None:
                        rows[label].times += worker.request(
                            cmd="time", repeats=repeats, warmup_s=warmup_s)["times"]
                    else:
                        rows[label].times += time_turn(fn, repeats, warmup_s)
                bar.step(f"{where}: round {r + 1}/{rounds}")
            if loop:
                for label, fn in runnable:
                    if not label.startswith("numbaconv:"):
                        continue
                    bar.step(f"{where}: loop {label}", 0)
                    name = label.split(":", 1)[1].split("->")[0]
                    try:
                        found = run_loop(recipe(call, name), threads, loop_calls)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        rows[label].note = (rows[label].note + "; " if rows[label].note
                                            else "") + f"loop: {exc}"
                        continue
                    rows[label].loop_times, rows[label].loop_faults = (found["times"],
                                                                       found["faults"])
            bar.step(f"{where}: done")
            results.extend(rows.values())
    finally:
        bar.close()
        if worker is not None:
            worker.close()
    return results


#: Sizes in a note (``(1, 1)``, ``(255,)``): what differs between points
#: refused for one reason (Note [grouped notes]).
_SIZES = re.compile(r"\((?:-?\d+, )*-?\d+,?\)")

#: How to fill an empty ``vs torch`` column: the PyTorch the parity tests
#: and CI compare with.
TORCH_INSTALL = "pip install torch==2.13.0"


def torch_column_note(why):
    """The table's line on an empty ``vs torch`` column (``why``: the
    ``status["torch"]`` of :func:`run_benchmarks`), or None if it is filled."""
    if why is None:
        return None
    if why == "skipped":
        return "vs torch is empty: PyTorch was skipped (--no-torch)."
    return f"vs torch is empty: {why}; to fill it: {TORCH_INSTALL}"


def format_table(results, torch_note=None):
    """The results as a text table, with the speed ratio against PyTorch.

    A note longer than the column goes below the table, once per distinct
    reason (Note [grouped notes]); ``torch_note`` (:func:`torch_column_note`)
    says why the ``vs torch`` column is empty and how to fill it.

    Note [grouped notes]
    ~~~~~~~~~~~~~~~~~~~~
    The same refusal repeats down a table: winograd and winograd_f2 refuse
    every layer that is not a stride-1 3x3, with "it serves kernels of 3
    along every axis, got kernel_size=(1, 1)" on one and "(31, 31)" on the
    next (14 footnotes on the public shapes, 28 with every op).  A reason
    is its note with the sizes in it (tuples of ints) written ``...``; each
    reason gets one footnote, naming the implementations and, per set of
    sizes, the points.
    """
    torch_ms = {(m.case, m.op): m.median_ms for m in results if m.impl == "torch" and m.times}
    # the user's-loop column (Note [loop timing] in numbaconv.bench.loop), when measured
    looped = any(m.loop_times for m in results)
    header = (f"{'shape':<10} {'op':<11} {'implementation':<24} {'ms':>9} "
              + (f"{'loop':>9} " if looped else "")
              + f"{'GFLOP/s':>8} {'vs torch':>8} {'rel err':>8}  note")
    lines = [header, "-" * len(header)]
    groups = {}                       # reason -> (implementations, {detail: [points]})
    for m in results:
        ms = f"{m.median_ms:9.3f}" if m.times else f"{'-':>9}"
        if looped:
            ms += f" {m.loop_ms:9.3f}" if m.loop_times else f" {'':>9}"
        gf = f"{m.gflops:8.1f}" if m.times else f"{'-':>8}"
        key = (m.case, m.op)
        ratio = (f"{torch_ms[key] / m.median_ms:7.2f}x"
                 if m.times and key in torch_ms and m.impl != "torch" else f"{'':>8}")
        err = f"{m.error:8.1e}" if m.error is not None else f"{'':>8}"
        note = m.note
        if len(note) > 60:            # the whole reason goes below the table
            reason = _SIZES.sub("...", note)
            detail = ", ".join(_SIZES.findall(note))
            impls, details = groups.setdefault(reason, ({}, {}))
            impls[m.impl] = None
            details.setdefault(detail, {})[f"{m.case} {m.op}"] = None
            note = f"see [{list(groups).index(reason) + 1}]"
        lines.append(f"{m.case:<10} {m.op:<11} {m.impl:<24} {ms} {gf} {ratio} {err}  {note}")
    lines.append("vs torch = PyTorch median time / this median time (above 1: faster than "
                 "PyTorch); rel err = max|y - ref| / max|ref| against the float64 reference "
                 "of the op.")
    if looped:
        lines.append("loop = median call of a user's loop: the algorithm alone in a fresh "
                     "process, its results allocated per call (no out=); ms times every "
                     "algorithm in one process (docs/benchmarking.md, \"A user's loop\").")
    if torch_note:
        lines.append(torch_note)
    for n, (reason, (impls, details)) in enumerate(groups.items(), 1):
        where = "; ".join((f"{detail} on " if detail else "") + ", ".join(points)
                          for detail, points in details.items())
        lines.append(f"[{n}] {', '.join(impls)}: {reason} ({where})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# start-up cost: cold compile and first call with a warm cache
# ---------------------------------------------------------------------------

_STARTUP_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import numbaconv as nc
out = {"import_s": time.perf_counter() - t0}
if "--start-numba-first" in sys.argv:
    import numba
    t = time.perf_counter(); numba.njit(lambda v: v + 1)(1)
    out["numba_start_s"] = time.perf_counter() - t
x = np.ones((1, 8, 12, 12), np.float32); w = np.ones((8, 1, 3, 3), np.float32)
for key in ("first_call_s", "second_call_s"):
    t = time.perf_counter(); nc.conv2d(x, w, padding=1, groups=8)
    out[key] = time.perf_counter() - t
x = np.ones((1, 16, 12, 12), np.float32); w = np.ones((8, 16, 3, 3), np.float32)
t = time.perf_counter(); nc.conv2d(x, w, padding=1)
out["first_channels_last_call_s"] = time.perf_counter() - t
print(json.dumps(out))
"""


def measure_startup(threads=2):
    """Run the start-up script in fresh processes sharing an empty cache.

    Returns ``{"cold": {...}, "warm": {...}, "warm+": {...}}``: the first
    process compiles every kernel it needs (cold cache), the second loads
    them from the cache, and the third (also warm) first runs a trivial
    numba function (``numba_start_s``: numba's own one-off start-up, which
    every numba program pays on its first compiled call) so that its
    ``first_call_s`` is numbaconv's own part.  ``first_call_s`` is the
    process's first convolution (a depthwise layer: the plane kernel,
    compiled or loaded); ``first_channels_last_call_s`` the first ordinary
    3x3 layer after it (the packing kernel plus the channels-last kernel).
    """
    with tempfile.TemporaryDirectory(prefix="numbaconv-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMBA_NUM_THREADS=str(threads))
        runs = {}
        for label, flags in (("cold", []), ("warm", []), ("warm+", ["--start-numba-first"])):
            done = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT, *flags], env=env,
                                  capture_output=True, text=True, check=True)
            runs[label] = json.loads(done.stdout.strip().splitlines()[-1])
    return runs
