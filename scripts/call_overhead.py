"""Per-call time of tiny numbaconv calls: the Python a call spends around its kernel.

A tiny call's time is almost all Python (validation, spec, dispatch, the
canonical copies, ``out=`` checks) plus numba's dispatch and thread-pool
launch; the kernel's own arithmetic is a few hundred multiply-adds.  This
script times, through the public API only (so that it runs unchanged on
any internal structure), these calls, all float32:

* ``dw8``: ``conv2d(x (1, 8, 8, 8), w (8, 1, 3, 3), padding=1, groups=8)``
  with ``algorithm="direct"`` and ``"auto"``, each also with a
  preallocated ``out=``;
* ``1x1``: a near-empty call, ``conv2d(x (1, 1, 1, 1), w (1, 1, 1, 1))``,
  ``"direct"`` and ``"auto"``: one multiply, so nearly all of it is the
  fixed cost of a call;
* ``N=0``: ``dw8`` with an empty batch, ``x (0, 8, 8, 8)`` (nothing to
  compute; how much of the path still runs depends on the internals);
* the other public entry points on ``dw8``: ``conv_transpose2d``,
  ``grad.conv2d_input`` and ``grad.conv2d_weight`` (``"auto"``).

Subtracting the kernel's own time would need the internals (which a
restructuring moves), so the figures are raw per-call times; the fixed cost
shows as the near-empty call.  Compare before / after on the same machine,
same settings, ideally in the same session (the JSON keeps the machine
and settings): absolute microseconds move with the CPU and the load.

Method: every call is made once untimed (compiling or loading its kernels)
and warmed with ``--calls`` more; then ``--rounds`` rounds, and in each
round every call in turn (the order rotates from round to round, so slow
drifts of a shared machine hit all of them alike) times ``--calls``
back-to-back calls, the garbage collector off.  A round's per-call time is
its elapsed time / ``--calls``; the table gives the median over the rounds
of the wall time (``time.perf_counter``; also the lowest and highest
round) and of the calling thread's CPU time (``time.thread_time``).
Measured autotuning is off (``NUMBACONV_TUNE=0``) and
``NUMBACONV_CACHE_DIR`` is a fresh empty directory, as in
scripts/output_hashes.py, so "auto" takes the same, cost-model path in
every run.  If the warm-up says the rounds would take more than
``--max-seconds`` (default 120), ``--calls`` is lowered to fit (said in the
output and the JSON: a shared machine stays usable).

Threads and load: numba's thread count is left at its default unless
``--threads N`` is given.  With more than one thread, every call launches
numba's thread pool (the OpenMP layer: the caller spins until the workers
finish), so on a machine that other processes load, wall times of tiny
calls swing by 10-100x with the scheduler (seen: 45 us to 11 ms per call,
medians 160 us to 2 ms, on the 2-core EPYC with test suites running
beside; the lowest round stays near the quiet figure).  ``--threads 1`` runs
the kernels on the calling thread, and then its CPU-time column is
nearly immune to the load (the same 46.2 us in three runs while the wall
time went 80-130 us): use that column to compare before / after on a
shared machine, and the default-thread wall times only on a quiet one.
The load average at the start and the end is printed and stored.

Usage::

    PYTHONPATH=/path/to/checkout python scripts/call_overhead.py [--rounds 20] [--calls 2000]
        [--threads N] [--max-seconds S] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time


def cpu_model():
    """numbaconv's CPU model reader (c82a764 and older name it _cpu_model)."""
    from numbaconv import tuning
    return (getattr(tuning, "cpu_model", None) or tuning._cpu_model)()


def make_calls(nc, np):
    """``[(name, description, zero-argument callable)]``."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    x = rng.standard_normal((1, 8, 8, 8)).astype(f32)
    w = rng.standard_normal((8, 1, 3, 3)).astype(f32)
    out = np.empty((1, 8, 8, 8), f32)
    x1 = rng.standard_normal((1, 1, 1, 1)).astype(f32)
    w1 = rng.standard_normal((1, 1, 1, 1)).astype(f32)
    x0 = np.empty((0, 8, 8, 8), f32)
    gy = rng.standard_normal((1, 8, 8, 8)).astype(f32)
    dw = {"padding": 1, "groups": 8}
    conv2d, ct2d, grad = nc.conv2d, nc.conv_transpose2d, nc.grad
    return [
        ("dw8 direct", "conv2d (1,8,8,8)x(8,1,3,3) pad 1 groups 8",
         lambda: conv2d(x, w, padding=1, groups=8, algorithm="direct")),
        ("dw8 auto", "same, algorithm='auto'",
         lambda: conv2d(x, w, padding=1, groups=8, algorithm="auto")),
        ("dw8 direct out=", "same, direct, out= preallocated",
         lambda: conv2d(x, w, padding=1, groups=8, algorithm="direct", out=out)),
        ("dw8 auto out=", "same, auto, out= preallocated",
         lambda: conv2d(x, w, padding=1, groups=8, algorithm="auto", out=out)),
        ("1x1 direct", "conv2d (1,1,1,1)x(1,1,1,1): near-empty",
         lambda: conv2d(x1, w1, algorithm="direct")),
        ("1x1 auto", "same, algorithm='auto'",
         lambda: conv2d(x1, w1, algorithm="auto")),
        ("N=0 direct", "dw8 with batch 0 (nothing to compute)",
         lambda: conv2d(x0, w, algorithm="direct", **dw)),
        ("dw8 transpose auto", "conv_transpose2d (1,8,8,8)x(8,1,3,3) pad 1 groups 8",
         lambda: ct2d(x, w, padding=1, groups=8, algorithm="auto")),
        ("dw8 grad_input auto", "grad.conv2d_input of dw8",
         lambda: grad.conv2d_input((1, 8, 8, 8), w, gy, padding=1, groups=8, algorithm="auto")),
        ("dw8 grad_weight auto", "grad.conv2d_weight of dw8",
         lambda: grad.conv2d_weight(x, (8, 1, 3, 3), gy, padding=1, groups=8,
                                    algorithm="auto")),
    ]


def time_calls(fn, calls):
    """``(wall, thread CPU)`` seconds per call over ``calls`` back-to-back calls."""
    loop = range(calls)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        c0 = time.thread_time()
        t0 = time.perf_counter()
        for _ in loop:
            fn()
        elapsed = time.perf_counter() - t0
        cpu = time.thread_time() - c0
    finally:
        if enabled:
            gc.enable()
    return elapsed / calls, cpu / calls


def loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--calls", type=int, default=2000,
                        help="back-to-back calls per round and call (default 2000)")
    parser.add_argument("--threads", type=int, default=None,
                        help="numba.set_num_threads(N) first (default: numba's default)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="lower --calls so that the timed rounds take about this long "
                             "at most (default 120)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to OUT (JSON)")
    parser.add_argument("--user-cache", action="store_true",
                        help="keep the user's numbaconv cache directory (default: a fresh "
                             "empty one)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")

    os.environ["NUMBACONV_TUNE"] = "0"
    if not args.user_cache:
        where = tempfile.mkdtemp(prefix="numbaconv-overhead-")
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        os.environ["NUMBACONV_CACHE_DIR"] = where
    import numba
    import numpy as np

    import numbaconv as nc
    if hasattr(nc, "set_tuning"):
        nc.set_tuning(False)
    if args.threads is not None:
        numba.set_num_threads(args.threads)
    load_start = loadavg()
    print(f"numbaconv from {nc.__file__}; numba {numba.__version__}, NumPy {np.__version__}, "
          f"{numba.get_num_threads()} threads, {cpu_model()}", file=sys.stderr)

    calls = make_calls(nc, np)
    usable, skipped, estimate = [], {}, 0.0
    warm_calls = min(args.calls, 200)
    for name, desc, fn in calls:
        try:
            fn()                                 # compile / load the kernels
            estimate += time_calls(fn, warm_calls)[0]    # warm
            usable.append((name, desc, fn))
        except Exception as exc:                 # noqa: BLE001 - reported, not timed
            skipped[name] = f"{type(exc).__name__}: {exc}"
    if not usable:
        print("no call could be made: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
        return 1
    calls_per_round = args.calls
    if estimate * args.rounds * calls_per_round > args.max_seconds:
        calls_per_round = max(20, int(args.max_seconds / (estimate * args.rounds)))
        print(f"note: --calls lowered from {args.calls} to {calls_per_round} to fit "
              f"--max-seconds {args.max_seconds:g} (warm-up: {estimate * 1e6:.0f} us for one "
              f"call of each)", file=sys.stderr)
    for _, _, fn in usable:
        time_calls(fn, calls_per_round)          # warm at the timed length
    walls = {name: [] for name, _, _ in usable}
    cpus = {name: [] for name, _, _ in usable}
    start = time.perf_counter()
    for r in range(args.rounds):
        k = r % len(usable)
        for name, _, fn in usable[k:] + usable[:k]:
            wall, cpu = time_calls(fn, calls_per_round)
            walls[name].append(wall)
            cpus[name].append(cpu)
    seconds = time.perf_counter() - start
    load_end = loadavg()

    rows = []
    for name, desc, _ in usable:
        t, c = walls[name], cpus[name]
        rows.append({"name": name, "call": desc, "median_us": statistics.median(t) * 1e6,
                     "min_us": min(t) * 1e6, "max_us": max(t) * 1e6,
                     "cpu_median_us": statistics.median(c) * 1e6,
                     "rounds_us": [round(v * 1e6, 3) for v in t],
                     "rounds_cpu_us": [round(v * 1e6, 3) for v in c]})
    width = max(len(r["name"]) for r in rows)
    print(f"per-call time in us, median of {args.rounds} rounds of {calls_per_round} calls; "
          f"{numba.get_num_threads()} numba thread(s); load average {load_start} -> {load_end}")
    print(f"{'call':{width}s}  {'wall':>8s}  {'min':>8s}  {'max':>8s}  {'cpu':>8s}  what")
    for r in rows:
        print(f"{r['name']:{width}s}  {r['median_us']:8.2f}  {r['min_us']:8.2f}  "
              f"{r['max_us']:8.2f}  {r['cpu_median_us']:8.2f}  {r['call']}")
    for name, why in skipped.items():
        print(f"{name:{width}s}  {'n/a':>8s}  not timed: {why}")
    print(f"(wall: median per call, with the lowest and highest round; cpu: the calling "
          f"thread's CPU time, median; {seconds:.1f} s timed)")
    if args.json:
        header = {"numbaconv_file": nc.__file__,
                  "numbaconv_version": getattr(nc, "__version__", None),
                  "numba": numba.__version__, "numpy": np.__version__,
                  "python": platform.python_version(), "cpu": cpu_model(),
                  "threads": numba.get_num_threads(),
                  "pool_threads": numba.config.NUMBA_NUM_THREADS,
                  "threads_option": args.threads,
                  "rounds": args.rounds, "calls": calls_per_round,
                  "calls_asked": args.calls, "seconds": round(seconds, 1),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "loadavg_start": load_start, "loadavg_end": load_end}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"header": header, "rows": rows, "skipped": skipped}, fh, indent=1)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
