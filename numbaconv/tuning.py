"""Measured autotuning that lasts: ``tune``, ``set_tuning`` and the tuning cache.

With tuning on (:func:`set_tuning` or ``NUMBACONV_TUNE=1``), ``algorithm="auto"``
looks the problem up in a persistent cache; a problem it has not seen is
measured once -- every algorithm ``"auto"`` may pick for it (it serves the
problem within the dtype's accuracy) runs on synthetic data of
the same shapes -- and the fastest is stored, so later calls and later
processes reuse the answer.  :func:`tune` does the same on request.

Note [tuning cache]
~~~~~~~~~~~~~~~~~~~
One JSON file, ``tuning-v1.json``, in the user cache directory
(``platformdirs.user_cache_dir("numbaconv")``; ``NUMBACONV_CACHE_DIR``
overrides).  The key of an entry holds everything that changes the answer:
the computation and every shape and parameter of the general problem the
call was rewritten into (Note [one general convolution]: a transposed
convolution and the input gradient it equals share an entry; not whether
there is a bias, one more pass over the output changes no ranking), the
dtype, the memory format (Note [memory format] in :mod:`numbaconv.spec`;
written only for channels-last, so the keys of contiguous problems are
those stored before formats existed), the device, the thread count, the
numbaconv version, the CPU model and, where one is set, the instruction
profile (:func:`numbaconv.storage.instruction_profile`: the AVX2 profile on
an AVX-512 part times other code).  Writes merge with what is on disk
under an advisory lock (POSIX ``flock`` on a lock file, where available)
and replace the file atomically (a temporary file and ``os.replace``), so
concurrent processes never see a half-written file and do not lose each
other's entries.  A missing file is an empty cache; an unreadable, corrupt
or other-version file is ignored with one warning, and a cache directory
that cannot be written is reported with one warning: tuning never breaks a
call, it only falls back to the untuned choice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import warnings

import numba
import numpy as np

from .backends import get_backend
from .epilogue import Epilogue
from .rewrites import TransposedWeight, transposed_weight
from .storage import cache_dir, cpu_model, file_lock, instruction_profile, write_json
from .workspaces import frame

CACHE_FILE = "tuning-v1.json"
CACHE_VERSION = 1
#: timed calls per candidate after one untimed (compiling, warming) call;
#: the median is kept
TUNE_REPEATS = 3

_enabled = None            # None: follow NUMBACONV_TUNE
_memory = {}               # key -> entry, this process's view of the cache
_loaded_from = None        # the path _memory was read from
_warned = set()
_lock = threading.Lock()


class TuningWarning(UserWarning):
    """The tuning cache could not be read or written (the call goes on)."""


def _warn_once(what, message):
    if what not in _warned:
        _warned.add(what)
        warnings.warn(message, TuningWarning, stacklevel=4)


# ---------------------------------------------------------------------------
# switch
# ---------------------------------------------------------------------------

def set_tuning(enabled: bool | None) -> None:
    """Switch measured autotuning of ``algorithm="auto"`` on or off.

    Parameters
    ----------
    enabled : bool or None
        ``True``: ``"auto"`` uses the tuning cache and measures problems it
        has not seen (Note [tuning cache] in :mod:`numbaconv.tuning`);
        ``False``: ``"auto"`` decides without measuring; ``None``: follow
        the ``NUMBACONV_TUNE`` environment variable (the default).

    Returns
    -------
    bool or None
        The previous setting.
    """
    global _enabled
    if enabled is not None and not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"set_tuning: enabled must be True, False or None, got {enabled!r}")
    previous, _enabled = _enabled, None if enabled is None else bool(enabled)
    return previous


def tuning_enabled() -> bool:
    """Whether ``"auto"`` consults the tuning cache now."""
    if _enabled is not None:
        return _enabled
    return os.environ.get("NUMBACONV_TUNE", "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------
# the cache file
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# the cache file (Note [tuning cache])
# ---------------------------------------------------------------------------

def cache_path():
    """The tuning cache file."""
    return os.path.join(cache_dir(), CACHE_FILE)


def read_entries(path):
    """Entries of the cache file at ``path`` ({} if missing, unreadable or corrupt)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        _warn_once(("read", path), f"numbaconv: ignoring the tuning cache {path}: "
                                   f"{type(exc).__name__}: {exc}")
        return {}
    if (not isinstance(data, dict) or data.get("version") != CACHE_VERSION
            or not isinstance(data.get("entries"), dict)):
        _warn_once(("read", path), f"numbaconv: ignoring the tuning cache {path}: not a "
                                   f"version-{CACHE_VERSION} numbaconv tuning cache")
        return {}
    return {k: v for k, v in data["entries"].items()
            if isinstance(v, dict) and isinstance(v.get("algorithm"), str)}


def _write_entry(key, entry):
    """Merge one entry into the cache file (locked read-modify-write, atomic
    replace).  Returns False, after one warning, if the file cannot be written."""
    directory = cache_dir()
    path = os.path.join(directory, CACHE_FILE)
    try:
        os.makedirs(directory, exist_ok=True)
        with file_lock(directory, CACHE_FILE):
            entries = read_entries(path)
            entries[key] = entry
            write_json(path, {"version": CACHE_VERSION, "entries": entries})
    except OSError as exc:
        _warn_once(("write", directory), f"numbaconv: cannot write the tuning cache in "
                                         f"{directory} ({type(exc).__name__}: {exc}); tuned "
                                         f"choices are kept for this process only")
        return False
    return True


def _entries():
    """This process's view of the cache, read from disk once per cache path."""
    global _memory, _loaded_from
    path = cache_path()
    if _loaded_from != path:
        _memory, _loaded_from = read_entries(path), path
    return _memory


def clear_cache():
    """Delete the tuning cache file and its lock file, and forget this
    process's entries.

    Both files go under the lock, so a writer waiting for it takes it again
    on a fresh lock file (:func:`numbaconv.storage.file_lock`) and no write is half-cleared.
    Returns the paths removed.
    """
    global _memory, _loaded_from
    directory = cache_dir()
    path = os.path.join(directory, CACHE_FILE)
    lock = path + ".lock"
    removed = []
    with _lock:
        _memory, _loaded_from = {}, None
        if not os.path.isdir(directory):
            return removed
        had_lock = os.path.exists(lock)       # taking the lock creates the file
        with file_lock(directory, CACHE_FILE):
            for name in (path, lock):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
                    if name == path or had_lock:
                        removed.append(name)
    return removed


# ---------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------

def cache_key(spec, device="cpu", threads=None):
    """The tuning cache key of ``spec`` (Note [tuning cache])."""
    from ._version import __version__
    threads = numba.get_num_threads() if threads is None else threads
    problem = dict(
        computation=spec.computation, ndim=spec.ndim, batch=spec.batch,
        in_channels=spec.in_channels, out_channels=spec.out_channels, groups=spec.groups,
        input=list(spec.input_size), kernel=list(spec.kernel_size), stride=list(spec.stride),
        padding=[list(p) for p in spec.padding], dilation=list(spec.dilation),
        input_dilation=list(spec.input_dilation), padding_mode=spec.padding_mode,
        dtype=spec.dtype.name)
    if spec.channels_last:        # absent for contiguous: the keys stored before it stay valid
        problem["memory_format"] = spec.memory_format
    context = dict(device=device, threads=threads, version=__version__, cpu=cpu_model())
    if instruction_profile():     # absent for the host's own: older keys stay valid
        context["profile"] = instruction_profile()
    context.update(get_backend(device).identity())    # which GPU measured it
    return json.dumps([problem, context], sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------

def synthetic_arrays(spec, rng, backend=None):
    """Canonical arrays of ``spec``'s shapes on ``backend``'s device (the
    host by default): ``(x, weight, epilogue, out)``, the arguments of an
    algorithm's ``run`` after the spec (input, output and output gradient
    channels-last for a channels-last spec)."""
    backend = get_backend("cpu") if backend is None else backend
    x, w, b, out = _host_arrays(spec, rng)
    weight = backend.from_host(w)
    if (backend.device == "cpu" and spec.computation == "forward"
            and spec.origin in ("transposed", "grad_input")):
        # as a transposed call passes it (Note [transposed weight]): im2col
        # reads it in place, the others rewrite it once, as before
        weight = TransposedWeight(transposed_weight(w, spec.groups), spec.groups)
    return (backend.from_host(x), weight,
            Epilogue.of(None if b is None else backend.from_host(b), spec.compute_dtype),
            backend.from_host(out))


def _host_arrays(spec, rng):
    cdtype = spec.compute_dtype
    lead = (1,) * (3 - spec.ndim)
    x = rng.standard_normal(spec.run_input_shape).astype(cdtype)
    if spec.computation == "grad_weight":
        g = rng.standard_normal(spec.run_output_shape).astype(cdtype)
        out = np.empty(spec.weight_shape[:2] + lead + spec.kernel_size, cdtype)
        return x, g, None, out
    w = rng.standard_normal(spec.weight_shape[:2] + lead + spec.kernel_size).astype(cdtype)
    b = rng.standard_normal(spec.out_channels).astype(cdtype) if spec.has_bias else None
    out = np.empty(spec.run_output_shape, cdtype)
    return x, w, b, out


def measure(spec, candidates, repeats=TUNE_REPEATS):
    """Median seconds of ``algorithm.run`` on synthetic data, per candidate.

    Each candidate makes one untimed call (compilation, caches), then
    ``repeats`` timed calls; the candidates take turns so that a noisy
    neighbour slows them alike.
    """
    backend = get_backend(candidates[0].device if candidates else "cpu")
    # the GPU times a channels-last problem as the contiguous one its
    # algorithms run: the backend's two packing copies are the same for every
    # candidate (Note [GPU memory format] in numbaconv/cuda/arrays.py)
    spec = backend.run_spec(spec)
    arrays = synthetic_arrays(spec, np.random.default_rng(0), backend)
    wait = backend.synchronize                  # GPU kernels run asynchronously
    for algorithm in candidates:
        with frame():       # each run's scratch is the next one's (Note [workspace arena])
            algorithm.run(spec, *arrays)
    times = {algorithm.name: [] for algorithm in candidates}
    for _ in range(repeats):
        for algorithm in candidates:
            wait()
            start = time.perf_counter()
            with frame():
                algorithm.run(spec, *arrays)
            wait()
            times[algorithm.name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def tuned_choice(spec, candidates, device="cpu"):
    """The cached (or, for a new problem, measured and stored) fastest of
    ``candidates`` for ``spec``: ``(name, times, measured_now)``."""
    key = cache_key(spec, device)
    names = {a.name for a in candidates}
    with _lock:
        entry = _entries().get(key)
    if entry is not None and entry["algorithm"] in names:
        return entry["algorithm"], entry.get("seconds", {}), False
    times = measure(spec, candidates)
    best = min(times, key=times.get)
    entry = {"algorithm": best, "seconds": times, "problem": spec.describe(),
             "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with _lock:
        _entries()[key] = entry
        _write_entry(key, entry)
    return best, times, True


def forget(spec, device="cpu"):
    """Drop this process's entry for ``spec`` so that it is measured again."""
    with _lock:
        _entries().pop(cache_key(spec, device), None)


def estimated_seconds(times):
    """Seconds as a short string, for messages."""
    return ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in sorted(times.items(),
                                                                 key=lambda kv: kv[1])
                     if math.isfinite(v))
