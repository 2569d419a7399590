"""Cost models: the machinery every algorithm's work models plug into.

This module names no algorithm.  Each algorithm declares its paths
(:class:`PathModel`: a name such as ``"direct:planes"``, a shipped constant
and what kind of term it is) when it joins the registry
(:func:`numbaconv.algorithms.registry.register`), and computes the units of
work of its plans itself; here are the constants in force (shipped or
calibrated), the estimate of a plan's seconds, the GEMM shape penalty that
several algorithms share, and the least-squares fit that
``numbaconv calibrate`` (:mod:`numbaconv.calibration`) feeds.

Note [cost models]
~~~~~~~~~~~~~~~~~~
Every path of every algorithm has a *work* function of the spec -- a count
of multiply-adds, weighted by how well its GEMM shape or loop order uses
the machine, plus the elements it copies, fills, scatters or transforms --
and one fitted machine constant, seconds per unit of work on one thread:

    seconds = (constant[path] * work(path, spec)
               + constant[aux] * aux_units) / threads + OVERHEAD

A path may be costed for the whole machine rather than per thread
(``per_thread=False``: fft's work is its planner's cost, already per
thread).  A plan may add one *auxiliary* term, a path timed alone (im2col's
column fill, Note [column fill cost] in :mod:`numbaconv.algorithms.im2col`,
runs at memory speed, not GEMM speed).  A plan made of several problems --
the phases of a transposed problem, the grouped forward rewrite of a weight
gradient -- is costed as its parts' estimates summed, times a fitted
*composite* factor per algorithm and kind (``direct:phases`` ...) for what
the parts' models do not see (copies, one pack per phase).  The relative
weights inside a work function are fixed by the algorithm's structure; only
the per-path constants are fitted, by ``numbaconv calibrate``, which times
every path on a fixed set of problems (the fastest of three passes) and
takes the median of ``(seconds - OVERHEAD - auxiliary seconds) * threads /
work`` (:func:`fit`).  The algorithms ship constants fitted on the
development machine (:func:`defaults`); a calibration writes its own to the
user cache directory, where :func:`constants` finds them.  How well the
models predict, on the fitted problems and on held-out ones, is in
docs/choosing.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Callable

from .storage import cache_dir, cpu_model, profile_suffix

#: Seconds of fixed cost per call (Python, thread-pool start).
OVERHEAD = 3e-5
#: GEMM shape penalty: a dimension of ``d`` runs at ``d / (d + GEMM_HALF)``
#: of the large-matrix rate.
GEMM_HALF = 8.0
#: Work units of one BLAS call's fixed cost (packing set-up, dispatch), in
#: multiply-adds: thousands of tiny GEMMs (Winograd on depthwise layers: one
#: 1x1 GEMM per group and position) cost far more than their arithmetic.
GEMM_CALL = 4000.0
#: Copy units (im2col's column fill, direct's patch rows) of one element
#: copied with a stride, and of starting one contiguous run (Note [column
#: fill cost] in :mod:`numbaconv.algorithms.im2col`); one unit-stride
#: element is 1.
STRIDED_FILL = 4.4
FILL_RUN = 176.0
CONSTANTS_FILE = "costs-v1.json"
#: The kinds of :class:`PathModel` (Note [cost models]).
KINDS = ("work", "composite", "auxiliary")


@dataclass(frozen=True)
class PathModel:
    """One cost-model path an algorithm declares (Note [cost models]).

    Attributes
    ----------
    path : str
        ``"<algorithm>:<path>"`` (or the algorithm's name alone); unique.
    default : float
        The shipped constant: seconds per unit of work on one thread (per
        unit on the whole machine when ``per_thread`` is False; a plain
        factor for a composite path).
    kind : {"work", "composite", "auxiliary"}
        A path of its own work, a factor on its parts' estimates, or a term
        other plans add (timed alone, fitted first).
    per_thread : bool
        Whether the work divides over the threads.
    work : callable or None
        ``work(spec) -> units`` where the units are a function of the spec
        alone (calibration and ``explain`` use the plan's units either way).
    """

    path: str
    default: float
    kind: str = "work"
    per_thread: bool = True
    work: Callable | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not (isinstance(self.default, (int, float)) and self.default > 0
                and math.isfinite(self.default)):
            raise ValueError(f"default must be a positive number, got {self.default!r}")
        if self.kind == "composite" and self.per_thread:
            object.__setattr__(self, "per_thread", False)


#: path -> PathModel, as the algorithms declared them
_MODELS: dict = {}
_cached = None


def declare(models):
    """Add ``models`` (PathModel objects) to the paths the constants cover.
    Declaring a path twice is an error unless it is the same model."""
    for model in models:
        known = _MODELS.get(model.path)
        if known is not None and known != model:
            raise ValueError(f"cost-model path {model.path!r} is already declared")
    for model in models:
        _MODELS[model.path] = model
    forget_constants()


def undeclare(paths):
    """Remove declared paths (an algorithm leaving the registry)."""
    for path in paths:
        _MODELS.pop(path, None)
    forget_constants()


def model(path):
    """The declared :class:`PathModel` of ``path``."""
    try:
        return _MODELS[path]
    except KeyError:
        raise ValueError(f"no cost model declares path {path!r}") from None


def paths():
    """Every declared path, in declaration order."""
    return tuple(_MODELS)


def defaults():
    """The shipped constant of every declared path."""
    return {path: m.default for path, m in _MODELS.items()}


def gemm_work(macs, *dims):
    """Multiply-adds weighted by the GEMM shape's efficiency: each short
    dimension ``d`` costs ``(d + GEMM_HALF) / d``."""
    for d in dims:
        macs *= (d + GEMM_HALF) / max(d, 1)
    return macs


def seconds(path, units, threads, per_thread=True, fill=0.0, fill_path=None):
    """Estimated seconds of ``units`` of ``path``'s work plus ``fill`` units
    of the auxiliary path ``fill_path``."""
    c = constants()
    total = c[path] * units
    if fill_path is not None:
        total += c[fill_path] * fill
    return total / (threads if per_thread else 1) + OVERHEAD

# ---------------------------------------------------------------------------
# constants: shipped defaults, or this machine's calibration
# ---------------------------------------------------------------------------

def constants_path():
    """The calibration file in the user cache directory: one per instruction
    profile (``costs-v1-numba-cpu-name-haswell-....json`` under the AVX2
    profile), and it names the CPU model it was fitted on."""
    stem, extension = os.path.splitext(CONSTANTS_FILE)
    return os.path.join(cache_dir(), stem + profile_suffix() + extension)


def constants():
    """The machine constants in force: the calibration file in the user
    cache directory where it has a valid value for a path, else the path's
    shipped constant (:func:`defaults`; a path declared after the
    calibration keeps its own)."""
    return _constants_and_key()[0]


class _ConstantsKey:
    """The constants' values as a cache key whose hash is computed once
    (hashing the (path, value) pairs took 0.5 us, on every lookup:
    docs/results-classes.md, "Python per call")."""

    __slots__ = ("values", "_hash")

    def __init__(self, values):
        self.values = tuple(sorted(values.items()))
        self._hash = hash(self.values)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return isinstance(other, _ConstantsKey) and self.values == other.values


def constants_key():
    """A hashable value of the constants in force, for caches of plans and
    picks made under them.

    Not ``id(constants())``: a dict freed when the cache directory changes
    lets the next one take its address, and caches keyed by that id then
    served plans made under other constants (a concurrency test saw a
    different ``"auto"`` pick, so different low bits, after a test that
    had calibrated into its own directory).
    """
    return _constants_and_key()[1]


def _constants_and_key():
    global _cached
    where = os.environ.get("NUMBACONV_CACHE_DIR")    # cheap: asked on every call
    cached = _cached                                 # one read: other threads may reset it
    if cached is not None and cached[0] == where:
        return cached[1], cached[2]
    path = constants_path()
    values = defaults()
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        fitted = data["constants"]
        if data.get("cpu", cpu_model()) != cpu_model():
            # a cache directory shared with another kind of machine (a home
            # directory on a cluster): its constants are not ours
            fitted = {}
        if not isinstance(fitted, dict) or not all(
                isinstance(v, (int, float)) and v > 0 and math.isfinite(v)
                for v in fitted.values()):
            raise ValueError("not a table of positive constants")
        values.update({p: v for p, v in fitted.items() if p in values})
    except (FileNotFoundError, NotADirectoryError):
        pass                              # not calibrated here: the shipped constants
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"numbaconv: ignoring the cost-model constants {path}: {exc}",
                      stacklevel=2)
    key = _ConstantsKey(values)
    _cached = (where, values, key)
    return values, key


def forget_constants():
    """Re-read the constants on next use (after a calibration)."""
    global _cached
    _cached = None



# ---------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def constants_in_force(values):
    """Make :func:`constants` answer ``values`` for the duration."""
    global _cached
    previous = _cached
    _cached = (os.environ.get("NUMBACONV_CACHE_DIR"), values, _ConstantsKey(values))
    try:
        yield
    finally:
        _cached = previous


def fit(samples, replan, parts=None):
    """Constants from calibration samples (median rate per path).

    ``samples`` are ``(path, spec, seconds, threads, units, aux_units,
    aux_path)``.  The auxiliary paths' constants first, then every work
    path's on its time less its auxiliary term's; then the composite factors
    (``direct:phases`` ...), whose work is their parts' estimates:
    ``replan(path, spec)`` plans the sample again under the constants just
    fitted (or under ``parts``, when given instead of fitting them: how the
    shipped factors were made to match the shipped part constants) and
    returns its units.
    """
    fitted = defaults()
    counts = {}

    def median_rates(selected, seconds_of):
        by_path = {}
        for path, spec, t, threads, units, fill, fill_path in selected:
            per_thread = model(path).per_thread
            rate = (max(seconds_of(t, fill, fill_path, threads), 1e-7)
                    * (threads if per_thread else 1))
            by_path.setdefault(path, []).append(rate / units)
        for path, rates in by_path.items():
            rates.sort()
            fitted[path] = rates[len(rates) // 2]
            counts[path] = len(rates)

    def kind(path):
        return model(path).kind

    if parts is None:
        median_rates([s for s in samples if kind(s[0]) == "auxiliary"],
                     lambda t, fill, fill_path, threads: t)
        median_rates([s for s in samples if kind(s[0]) == "work"],
                     lambda t, fill, fill_path, threads: t - OVERHEAD - (
                         0.0 if fill_path is None else fitted[fill_path] * fill / threads))
    else:
        fitted.update({p: v for p, v in parts.items() if kind(p) != "composite"})
    with constants_in_force(fitted):
        replanned = [(path, spec, t, threads, replan(path, spec), 0.0, None)
                     for path, spec, t, threads, *_ in samples if kind(path) == "composite"]
    median_rates(replanned, lambda t, fill, fill_path, threads: t - OVERHEAD)
    return fitted, counts
