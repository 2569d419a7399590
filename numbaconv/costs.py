"""Cost models: how long each algorithm's path would take on this machine.

Note [cost models]
~~~~~~~~~~~~~~~~~~
Every path of every algorithm has a *work* function of the spec -- a count
of multiply-adds, weighted by how well its GEMM shape or loop order uses
the machine, plus the elements it copies, fills, scatters or transforms --
and one fitted machine constant, seconds per unit of work on one thread:

    seconds = constant[path] * work(path, spec) / threads + OVERHEAD

(fft's work is its planner's cost, already per thread).  A plan made of
several problems -- the phases of a transposed problem, the grouped forward
rewrite of a weight gradient -- is costed as its parts' estimates summed,
times a fitted factor per algorithm and kind (``direct:phases`` ...) for
what the parts' models do not see (copies, one pack per phase).  The relative
weights inside a work function are fixed by the algorithms' structure; only
the per-path constants are fitted, by ``numbaconv calibrate``
(:func:`calibrate`), which times every path on a fixed set of problems and
takes the median of ``(seconds - OVERHEAD) * threads / work``.  The package
ships constants fitted on the development machine (:data:`DEFAULTS`); a
calibration writes its own to the user cache directory, where
:func:`constants` finds them.  How well the models predict, on the fitted
problems and on held-out ones, is in docs/choosing.md.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

#: Seconds of fixed cost per call (Python, thread-pool start).
OVERHEAD = 3e-5
#: GEMM shape penalty: a dimension of ``d`` runs at ``d / (d + GEMM_HALF)``
#: of the large-matrix rate.
GEMM_HALF = 8.0
#: Work units of one BLAS call's fixed cost (packing set-up, dispatch), in
#: multiply-adds: thousands of tiny GEMMs (Winograd on depthwise layers: one
#: 1x1 GEMM per group and position) cost far more than their arithmetic.
GEMM_CALL = 4000.0

#: Seconds per unit of work on one thread, per path; fitted by
#: ``numbaconv calibrate`` on the development machine (AMD EPYC, 2 threads,
#: 2026-11-30, float32).
DEFAULTS = {
    "direct:channels_last": 2.713e-11,
    "direct:planes": 2.137e-10,
    "direct:same_width_planes": 6.214e-11,
    "im2col:pointwise": 1.882e-11,
    "im2col:tiles": 2.026e-11,
    "im2col:small": 5.893e-11,
    "im2col:col2im": 3.042e-11,
    "im2col:grad_tiles": 2.103e-11,
    "im2col:grad_small": 4.296e-11,
    "fft": 1.745e-10,
    "winograd:F4": 3.921e-11,
    "direct:phases": 2.953e+00,
    "direct:rewrite": 1.782e+00,
    "fft:phases": 1.720e+00,
    "fft:rewrite": 9.463e-01,
    "winograd:F2": 4.305e-11,
}
PATHS = tuple(DEFAULTS)
CONSTANTS_FILE = "costs-v1.json"

_cached = None


def _gemm(macs, *dims):
    """Multiply-adds weighted by the GEMM shape's efficiency."""
    for d in dims:
        macs *= (d + GEMM_HALF) / max(d, 1)
    return macs


def work(path, spec):
    """Units of work of ``path`` on ``spec`` (Note [cost models])."""
    macs = spec.flops / 2
    n, g = spec.batch, spec.groups
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    K = cin_g * math.prod(spec.kernel_size)
    pixels = math.prod(spec.output_size)
    padded = math.prod(spec.padded_size)
    # strided fills copy element by element, unit-stride ones whole runs
    fill = n * g * K * pixels * (1.0 if all(v == 1 for v in spec.stride) else 4.0)
    if path == "direct:channels_last":
        # packing, plus every output pixel's receptive field copied into a
        # patch row (Note [patch rows])
        return macs + 4.0 * n * spec.in_channels * padded + 2.0 * fill
    if path == "direct:planes":
        return macs + 4.0 * n * spec.in_channels * padded
    if path == "direct:same_width_planes":
        return macs + n * spec.in_channels * padded
    if path == "im2col:pointwise":
        return _gemm(macs, cout_g, cin_g)
    if path in ("im2col:tiles", "im2col:grad_tiles"):
        calls = n * g * -(-pixels // 512)
        return _gemm(macs, cout_g, K) + 2.0 * fill + GEMM_CALL * calls
    if path in ("im2col:small", "im2col:grad_small"):
        # the numba products; the strided fills read every input row
        return macs + 2.0 * fill + 4.0 * n * spec.in_channels * math.prod(spec.input_size)
    if path == "im2col:col2im":
        taps = math.prod(spec.kernel_size)
        scatter = n * spec.out_channels * taps * math.prod(spec.input_size)
        return _gemm(macs, cin_g, cout_g * taps) + 2.0 * scatter
    raise ValueError(f"no work function for path {path!r}")


def winograd_work(spec, m):
    """Work of F(m, 3) Winograd: transforms of every tile, and the
    transform-domain GEMMs (Q positions, C_in/g x C_out/g per tile)."""
    alpha = m + 2
    tiles = spec.batch * math.prod(-(-o // m) for o in spec.output_size)
    Q = alpha ** spec.ndim
    # one pass per axis over the tile's values, each a weighted sum of alpha
    transforms = tiles * Q * (spec.in_channels + spec.out_channels) * alpha * spec.ndim
    gemm = _gemm(tiles * Q * spec.groups * spec.in_channels_per_group
                 * spec.out_channels_per_group, spec.in_channels_per_group,
                 spec.out_channels_per_group)
    # per chunk of tiles, one GEMM per position and group, each streaming
    # its C_in/g x C_out/g transformed weight: with few tiles per chunk
    # (many channels) that traffic, not the arithmetic, is the cost
    per_tile = Q * (spec.in_channels + spec.out_channels) * 4
    chunk = max(1, min(-(-tiles // 2), (2**20) // per_tile))
    chunks = -(-tiles // chunk)
    calls = Q * spec.groups * chunks
    weights = 8.0 * Q * spec.groups * spec.in_channels_per_group * spec.out_channels_per_group
    return transforms + gemm + GEMM_CALL * calls + weights * chunks


def seconds(path, units, threads, per_thread=True):
    """Estimated seconds of ``units`` of ``path``'s work."""
    rate = constants()[path]
    return rate * units / (threads if per_thread else 1) + OVERHEAD


# ---------------------------------------------------------------------------
# constants: shipped defaults, or this machine's calibration
# ---------------------------------------------------------------------------

def constants_path():
    from .tuning import cache_dir
    return os.path.join(cache_dir(), CONSTANTS_FILE)


def constants():
    """The machine constants in force: the calibration file in the user
    cache directory if there is a valid one, else :data:`DEFAULTS`."""
    global _cached
    where = os.environ.get("NUMBACONV_CACHE_DIR")    # cheap: asked on every call
    if _cached is not None and _cached[0] == where:
        return _cached[1]
    path = constants_path()
    values = dict(DEFAULTS)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        fitted = data["constants"]
        if set(fitted) != set(DEFAULTS) or not all(
                isinstance(v, (int, float)) and v > 0 and math.isfinite(v)
                for v in fitted.values()):
            raise ValueError("not a complete set of positive constants")
        values.update(fitted)
    except (FileNotFoundError, NotADirectoryError):
        pass                              # not calibrated here: the shipped constants
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"numbaconv: ignoring the cost-model constants {path}: {exc}",
                      stacklevel=2)
    _cached = (where, values)
    return values


def forget_constants():
    """Re-read the constants on next use (after a calibration)."""
    global _cached
    _cached = None


# ---------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------

#: The problems ``numbaconv calibrate`` times (forward specs: input shape,
#: weight shape, kwargs).  Each path is timed on those it serves.
CALIBRATION_PROBLEMS = (
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


def _time(fn, repeats):
    """The fastest of ``repeats`` calls: a shared machine only ever adds time."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_paths(repeats=5, progress=None):
    """Time every path on :data:`CALIBRATION_PROBLEMS` (and their gradients
    and transposes where a path serves those).  Returns a list of ``(path,
    spec, seconds, threads)``."""
    import numpy as np

    from .algorithms.registry import get_algorithm
    from .context import current_context
    from .dispatch import problem_spec
    from .tuning import _synthetic_arrays

    ctx = current_context()
    rng = np.random.default_rng(0)
    samples = []
    for xs, ws, kw in CALIBRATION_PROBLEMS:
        variants = [problem_spec(xs, ws, **kw), problem_spec(xs, ws, gradient="weight", **kw)]
        if kw.get("stride", 1) != 1:
            variants.append(problem_spec(xs, ws, gradient="input", **kw))
        for spec in variants:
            arrays = _synthetic_arrays(spec, rng)
            for name in ("direct", "im2col", "fft", "winograd", "winograd_f2"):
                algorithm = get_algorithm(name)
                if algorithm.unsupported_reason(spec) is not None:
                    continue
                plan = algorithm.plan(spec, ctx)
                if plan.model is None:
                    continue              # composite plans: fitted through their parts
                t = _time(lambda: algorithm.run(spec, *arrays, ctx), repeats)
                if progress:
                    progress(f"{plan.model}: {t * 1e3:.2f} ms (model {plan.seconds * 1e3:.2f}) "
                             f"{spec.describe()}")
                samples.append((plan.model, spec, t, ctx.threads, plan.units))
    return samples


def fit(samples):
    """Per-path constants from ``measure_paths``'s samples (median rate)."""
    fitted = dict(DEFAULTS)
    by_path = {}
    for path, _spec, t, threads, units in samples:
        if path == "fft" or path.endswith((":phases", ":rewrite")):
            rate = max(t - OVERHEAD, 1e-7) / units
        else:
            rate = max(t - OVERHEAD, 1e-7) * threads / units
        by_path.setdefault(path, []).append(rate)
    for path, rates in by_path.items():
        rates.sort()
        fitted[path] = rates[len(rates) // 2]
    return fitted, {p: len(r) for p, r in by_path.items()}


def calibrate(repeats=5, progress=None, write=True):
    """Time every path here, fit the constants and (with ``write``) store
    them in the user cache directory.  Returns ``(constants, samples per path)``."""
    samples = measure_paths(repeats, progress)
    fitted, counts = fit(samples)
    if write:
        from .tuning import write_json
        write_json(constants_path(), {"version": 1, "constants": fitted, "samples": counts,
                                      "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
        forget_constants()
    return fitted, counts
