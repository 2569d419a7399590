"""``numbaconv calibrate``: time every registered CPU algorithm's paths on
this machine and fit the cost models' constants (Note [cost models] in
:mod:`numbaconv.costs`).

It knows no algorithm by name: it times each registered CPU algorithm on
the shared :data:`CALIBRATION_PROBLEMS` (and their gradients and
transposes, where the algorithm serves them) plus the problems the
algorithm declares itself (``calibration_problems``), and asks each for the
samples of its auxiliary paths (``auxiliary_samples``: im2col's column
fill, timed alone).
"""

from __future__ import annotations

import time

import numpy as np

from . import costs
from .algorithms.registry import algorithms, get_algorithm
from .context import current_context
from .spec import problem_spec
from .storage import cpu_model, instruction_profile, write_json
from .timing import time_turn
from .tuning import synthetic_arrays
from .workspaces import frame

#: The problems ``numbaconv calibrate`` times every algorithm on (forward
#: specs: input shape, weight shape, kwargs).  Each path is timed on those
#: it serves.
CALIBRATION_PROBLEMS: tuple[tuple[tuple[int, ...], tuple[int, ...], dict], ...] = (
    ((4, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ((4, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ((4, 256, 28, 28), (128, 256, 1, 1), {}),
    ((4, 128, 56, 56), (128, 128, 3, 3), dict(stride=2, padding=1)),
    ((4, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ((4, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256)),
    ((4, 128, 28, 28), (128, 1, 3, 3), dict(stride=2, padding=1, groups=128)),
    ((2, 8, 128, 128), (8, 8, 15, 15), dict(padding=7)),
    ((8, 16, 4096), (16, 16, 63), {}),
    ((2, 16, 24, 24, 24), (16, 16, 3, 3, 3), dict(padding=1)),
    ((4, 32, 56, 56), (32, 32, 3, 3), dict(padding=1)),
    ((4, 192, 14, 14), (192, 192, 3, 3), dict(padding=1)),
    ((2, 3, 192, 192), (48, 3, 4, 4), dict(stride=4)),
    ((1, 4, 256, 256), (4, 1, 9, 9), dict(padding=4, groups=4)),
    ((8, 64, 2048), (64, 64, 5), dict(padding=2)),
)


def timer(repeats):
    """``time(fn)``: the fastest of ``repeats`` calls after one untimed call
    (a shared machine only ever adds time)."""
    return lambda fn: min(time_turn(fn, repeats, warmup_s=0.0))


def _run_in_frame(algorithm, spec, arrays, ctx):
    """One run as a public call makes it: its scratch from the thread's
    workspace arena (Note [workspace arena] in numbaconv/workspaces.py)."""
    with frame():
        algorithm.run(spec, *arrays, ctx)


def _variants(problem):
    """The forward spec of ``problem``, its weight gradient and, when
    strided, its input gradient (a transposed problem)."""
    xs, ws, kw = problem
    variants = [problem_spec(xs, ws, **kw), problem_spec(xs, ws, gradient="weight", **kw)]
    if kw.get("stride", 1) != 1:
        variants.append(problem_spec(xs, ws, gradient="input", **kw))
    return variants


def measure_paths(repeats=5, progress=None, names=None):
    """Time the paths of the registered CPU algorithms (those in ``names``,
    all when None) on their calibration problems.  Returns a list of
    ``(path, spec, seconds, threads, units, aux_units, aux_path)``."""
    ctx = current_context()
    time_it = timer(repeats)
    rng = np.random.default_rng(0)
    selected = [a for a in algorithms("cpu") if names is None or a.name in names]
    problems = [(p, selected) for p in CALIBRATION_PROBLEMS]
    problems += [(p, [a]) for a in selected for p in a.calibration_problems]
    samples = []
    for problem, owners in problems:
        for k, spec in enumerate(_variants(problem)):
            arrays = synthetic_arrays(spec, rng)
            for algorithm in owners:
                if algorithm.unsupported_reason(spec) is not None:
                    continue
                if k == 0:                        # the forward problem itself
                    for sample in algorithm.auxiliary_samples(spec, arrays, ctx, time_it):
                        samples.append(sample)
                        if progress:
                            progress(f"{sample[0]}: {sample[2] * 1e3:.2f} ms on {sample[3]} "
                                     f"thread(s) {spec.describe()}")
                plan = algorithm.plan(spec, ctx)
                if plan.model is None:
                    continue
                t = time_it(lambda: _run_in_frame(algorithm, spec, arrays, ctx))
                if progress:
                    progress(f"{plan.model}: {t * 1e3:.2f} ms (model {plan.seconds * 1e3:.2f}) "
                             f"{spec.describe()}")
                samples.append((plan.model, spec, t, ctx.threads, plan.units, plan.fill,
                                plan.fill_model))
    return samples


def replanned_units(path, spec):
    """The units of the plan of ``path``'s algorithm (the part of the path
    before ``:``) for ``spec``, under the constants in force."""
    return get_algorithm(path.split(":")[0]).plan(spec).units


def calibrate(repeats=5, progress=None, write=True, rounds=3, names=None):
    """Time every path here, fit the constants and (with ``write``) store
    them in the user cache directory.  Returns ``(constants, samples per path)``.

    Every measurement is taken in ``rounds`` passes over all problems and
    the fastest kept: on a shared VM a slow spell lasting a few seconds
    moved single-pass constants by 20-150% between runs (docs/choosing.md).
    ``names`` restricts the timing to those algorithms; the other paths keep
    their constants in force."""
    samples = measure_paths(repeats, progress, names)
    for _ in range(rounds - 1):
        again = measure_paths(repeats, progress, names)
        samples = [s if s[2] <= a[2] else a for s, a in zip(samples, again)]
    fitted, counts = costs.fit(samples, replanned_units)
    if names is not None:
        timed = {s[0] for s in samples}
        fitted = {p: v if p in timed else costs.constants()[p] for p, v in fitted.items()}
    if write:
        write_json(costs.constants_path(), {"version": 1, "cpu": cpu_model(),
                                            "profile": instruction_profile(),
                                            "constants": fitted, "samples": counts,
                                            "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
        costs.forget_constants()
    return fitted, counts
