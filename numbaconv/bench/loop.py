"""A user's loop: one benchmark point and algorithm, alone in a fresh process.

``numbaconv bench --loop`` and asv's ``Loop`` benchmark time a point the
way a user's script runs it: a new Python process imports numbaconv,
makes the call's arrays, and calls the function :data:`LOOP_CALLS` times
in a plain loop, without ``out=``, keeping each result until the next one
replaces it.  The first call (it loads or compiles the kernels) is not
counted; the figure is the median of the others.

Note [loop timing]
~~~~~~~~~~~~~~~~~~
The side-by-side timing (:mod:`numbaconv.bench.runner`) runs every
algorithm in one process, and its warm-up turns allocate and free large
blocks: glibc then raises its ``mmap`` threshold (up to 32 MiB) and keeps
later blocks of those sizes on its heap.  A user's process that calls one
algorithm never gets there: each call's fresh blocks were mapped, and
every page faulted in again (issue 27: resnet3x3's Winograd call 3.6 ms in
the bench, 6.9-7.5 ms in a user's loop, on the development VM).  So the
loop runs alone, and its arrays are made the way a user makes them:
directly in the call's dtype (NumPy's ``standard_normal(dtype=...)``),
never through a float64 temporary, which would itself raise the
threshold.  The worker reports each call's minor page faults and CPU
seconds (all threads, and the system part, where page faults are paid)
too: on a shared machine the wall time includes waiting for a core.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

#: Calls per loop (the first is not counted).
LOOP_CALLS = 15


def recipe(call, algorithm):
    """A JSON-able description of ``call`` (a
    :class:`numbaconv.bench.suite.OpCall`) with ``algorithm=``: the
    function's name, its arguments with every array given as its shape and
    dtype (the worker makes it), and its keyword arguments."""
    import numpy as np

    def item(value):
        if isinstance(value, np.ndarray):
            return {"array": list(value.shape), "dtype": value.dtype.name}
        return {"value": _plain(value)}

    return {"namespace": call.namespace, "name": call.name,
            "args": [item(a) for a in call.args],
            "kwargs": {k: _plain(v) for k, v in call.kwargs.items()},
            "algorithm": algorithm}


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def run_loop(recipe_, threads=2, calls=LOOP_CALLS, timeout=600):
    """Run :func:`main` on ``recipe_`` in a fresh Python process; returns
    ``{"times": [seconds per counted call], "faults": [minor faults per
    counted call], "cpu": [CPU seconds, all threads], "system": [system CPU
    seconds]}``, or raises ``RuntimeError`` with the worker's error."""
    env = dict(os.environ, NUMBA_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS",
                                                            str(max(threads, 1))))
    done = subprocess.run([sys.executable, "-m", "numbaconv.bench.loop", str(threads),
                           str(calls), json.dumps(recipe_)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"loop worker failed: {done.stderr.strip()[-500:]}")
    found = json.loads(lines[-1])
    if "error" in found:
        raise RuntimeError(found["error"])
    return found


def loop_ms(found):
    """The median counted call of :func:`run_loop`'s result, in ms."""
    return statistics.median(found["times"]) * 1e3


def main(argv=None):
    """``python -m numbaconv.bench.loop THREADS CALLS RECIPE``: the loop
    (module notes); prints one JSON line."""
    import resource
    import time

    argv = sys.argv[1:] if argv is None else argv
    threads, calls, spec = int(argv[0]), int(argv[1]), json.loads(argv[2])
    import numba
    import numpy as np

    import numbaconv as nc

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(tuple(a["array"]), dtype=np.dtype(a["dtype"]))
            if "array" in a else _tuples(a["value"]) for a in spec["args"]]
    kwargs = {k: _tuples(v) for k, v in spec["kwargs"].items()}
    fn = getattr(nc if spec["namespace"] == "functional" else nc.grad, spec["name"])
    algorithm = spec["algorithm"]
    times, faults, cpu, system = [], [], [], []
    result = None
    try:
        for _ in range(calls):
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            result = fn(*args, algorithm=algorithm, **kwargs)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_SELF)
            faults.append(after.ru_minflt - before.ru_minflt)
            system.append(after.ru_stime - before.ru_stime)
            cpu.append(after.ru_utime - before.ru_utime + system[-1])
    except (nc.UnsupportedAlgorithmError, MemoryError, NotImplementedError) as exc:
        print(json.dumps({"error": str(exc) or type(exc).__name__}))
        return 0
    del result
    # the CPU seconds of all threads (user + system) and the system part
    # alone (page faults are system time) tell the cost of faults apart
    # from waiting for a core on a shared machine
    print(json.dumps({"times": times[1:], "faults": faults[1:], "cpu": cpu[1:],
                      "system": system[1:], "first": times[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
