"""``numbaconv warmup`` (numbaconv/warmup.py) and the compile-on-demand tasks
it fills the cache with (Note [warmup table], Note [tasks per kernel], Note
[tasks per transform], Note [tasks per product])."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from numbaconv import warmup
from numbaconv.cli import main

#: Tasks no numbaconv function runs: the unfused Winograd stages, for
#: scripts/winograd_split.py's timings only; the warmup leaves them out.
SCRIPT_ONLY = {"_input_chunk", "_output_chunk", "_products_chunk"}

_COUNT_COMPILES = textwrap.dedent("""
    import json, sys
    from numba.core import event
    compiled = []
    class Count(event.Listener):
        def on_start(self, ev):
            pass
        def on_end(self, ev):
            if ev.data["dispatcher"].py_func.__module__.startswith("numbaconv."):
                compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    event.register("numba:compile", Count())
    from numbaconv import warmup
    for dtype in ("float32", "float64"):
        warmup.run_job(sys.argv[1], dtype)
    print(json.dumps(compiled))
""")


def _compiled_in_fresh_process(job, env):
    done = subprocess.run([sys.executable, "-c", _COUNT_COMPILES, job], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_warmup_fills_the_cache_that_a_later_process_loads(tmp_path):
    job = "im2col tiles BLAS same_width"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "numbaconv.cli", "warmup", "--only", job,
                           "--jobs", "2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 job(s) in 2 process(es)" in done.stdout
    assert f"{job}, float32: " in done.stdout and f"{job}, float64: " in done.stdout
    assert "kernel(s) compiled in" in done.stdout and "failed" not in done.stdout
    # the next process loads every kernel of both jobs from the cache ...
    assert _compiled_in_fresh_process(job, env) == []
    # ... where a process with an empty cache compiles them
    env_cold = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cold"))
    assert len(_compiled_in_fresh_process(job, env_cold)) >= 4


def test_warmup_lists_selects_and_rejects_jobs(capsys):
    assert main(["warmup", "--list", "--only", "row pairs*", "--dtype", "float64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["row pairs 3x3, float64", "row pairs 5x5, float64",
                     "row pairs 7x7, float64"]
    assert main(["warmup", "--only", "no such job"]) == 2
    assert "no job matches" in capsys.readouterr().err
    assert len(warmup.select_jobs()) == 2 * len(warmup.job_names())


def test_warmup_reports_a_failing_job_and_exits_with_1(monkeypatch, capsys):
    def broken(dtype):
        raise RuntimeError("no kernel today")

    monkeypatch.setitem(warmup.KERNEL_JOBS, "broken", broken)
    # the worker processes import the table afresh: run the job in-process
    name, dtype, _, _, error = warmup._worker_job("broken", "float32")
    assert (name, dtype) == ("broken", "float32") and "no kernel today" in error
    monkeypatch.setattr(warmup, "warmup", lambda jobs, processes: [(name, dtype, error)])
    assert main(["warmup", "--only", "broken"]) == 1


def _task_dispatchers():
    """Every task (a kernel whose last parameters are the job range) of the
    CPU kernel modules, with the variants kept in module-level tables."""
    from numbaconv.kernels import (direct_channels_last, direct_pack, direct_phase_planes,
                                   direct_planes, direct_row_phases, direct_thin_grad,
                                   fingerprint, im2col_cpu, im2col_transposed, winograd_cpu)

    def found(value, depth=0):
        if isinstance(value, numba.core.registry.CPUDispatcher):
            code = value.py_func.__code__
            if code.co_varnames[code.co_argcount - 2:code.co_argcount] == ("first_job",
                                                                           "stop_job"):
                yield value
        elif depth < 2 and isinstance(value, dict):
            for item in value.values():
                yield from found(item, depth + 1)
        elif depth < 2 and isinstance(value, tuple):
            for item in value:
                yield from found(item, depth + 1)

    tasks = {}
    for module in (direct_pack, direct_channels_last, direct_planes, direct_phase_planes,
                   direct_row_phases, direct_thin_grad, im2col_cpu, im2col_transposed,
                   winograd_cpu, fingerprint):
        for value in vars(module).values():
            for task in found(value):
                tasks[id(task)] = task
    return [t for t in tasks.values() if t.py_func.__name__ not in SCRIPT_ONLY]


def test_the_warmup_table_reaches_every_task_in_both_dtypes(monkeypatch):
    """Note [warmup table]: each task, run (not compiled: the shell is
    stubbed) by a warmup job in float32 and in float64."""
    from numbaconv.kernels import (direct_channels_last, direct_pack, direct_phase_planes,
                                   direct_planes, direct_thin_grad, fingerprint, im2col_cpu,
                                   im2col_transposed,
                                   winograd_cpu)

    reached = set()

    def record(task, args, jobs, chunks):
        floats = [a.dtype.name for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        reached.add((id(task), floats[0] if floats else "any"))

    for module in (direct_pack, direct_channels_last, direct_planes, direct_phase_planes,
                   direct_thin_grad, im2col_cpu, im2col_transposed, winograd_cpu, fingerprint):
        monkeypatch.setattr(module, "run_in_chunks", record)
    with np.errstate(all="ignore"):         # the stubbed tasks leave garbage behind
        for name, dtype in warmup.select_jobs():
            warmup.run_job(name, dtype)
    tasks = _task_dispatchers()
    assert len(tasks) >= 20
    missed = [f"{t.py_func.__qualname__} {[c.cell_contents for c in t.py_func.__closure__ or ()]} "
              f"{dtype}"
              for t in tasks for dtype in ("float32", "float64")
              if (id(t), dtype) not in reached and (id(t), "any") not in reached]
    assert not missed, "tasks no warmup job reaches: " + "; ".join(missed)


@pytest.mark.parametrize("layer", [layer for layer in warmup.LAYERS
                                   if layer.name in ("row pairs 5x5", "stride two 7x7",
                                                     "1-D", "3-D")],
                         ids=lambda layer: layer.name)
def test_warmup_layers_compute_the_reference(layer):
    from numbaconv import conv_reference
    from numbaconv.warmup import _arrays

    x, w, b, _ = _arrays(layer, "float64")
    results = warmup.run_layer(layer, "float64")
    assert ("direct", "forward") in results
    kw = dict(layer.kwargs)
    expected = conv_reference(x, w, b, **kw)
    for (algorithm, op), result in results.items():
        if op == "forward":
            np.testing.assert_allclose(result, expected, rtol=1e-9, atol=1e-9,
                                       err_msg=algorithm)
