"""Files in the user cache directory: where they live, and how they are
written so that concurrent processes never see half of one.

Core layer: the tuning cache (:mod:`numbaconv.tuning`) and the cost-model
constants (:mod:`numbaconv.costs`) both live here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import tempfile

#: Environment variables that change which instructions run on the same CPU:
#: numba's target, and OpenBLAS's kernels (docs/ci.md, "The AVX2 profile")
PROFILE_VARIABLES = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "OPENBLAS_CORETYPE")


def cache_dir():
    """The directory of numbaconv's cache files (``NUMBACONV_CACHE_DIR`` or the
    platform's user cache directory for numbaconv)."""
    override = os.environ.get("NUMBACONV_CACHE_DIR")
    if override:
        return override
    import platformdirs
    return platformdirs.user_cache_dir("numbaconv", appauthor=False)


@functools.cache
def cpu_model():
    """This machine's CPU: the ``model name`` of /proc/cpuinfo, with the core
    LLVM detects and the widest vector instructions it has, e.g. ``"AMD EPYC
    (znver4, avx512f)"``.

    The model name alone does not tell CPU kinds apart: cloud VMs report
    "AMD EPYC" for a Zen 2 with AVX2 and for a Zen 4 with AVX-512, whose
    kernels and cost constants differ (the same winograd call ran 2x apart).
    The tuning cache and the calibration file are keyed by this name.
    """
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown"
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features()
        widest = next((name for name in ("avx512f", "avx2", "avx")
                       if features.get(name)), "sse")
        return f"{model} ({llvm.get_host_cpu_name()}, {widest})"
    except (ImportError, RuntimeError):      # pragma: no cover - llvmlite comes with numba
        return model


@functools.cache
def instruction_profile():
    """The instruction-set overrides in force (``NUMBA_CPU_NAME=haswell;
    OPENBLAS_CORETYPE=Haswell``), empty for the host's own.  Measurements
    made under one do not hold under another on the same CPU, so the tuning
    cache and the cost-model constants are keyed by it as well as by
    :func:`cpu_model`.  Read once: numba reads its variables at import."""
    return ";".join(f"{name}={os.environ[name]}" for name in PROFILE_VARIABLES
                    if os.environ.get(name))


def profile_suffix():
    """A file-name suffix for :func:`instruction_profile` (empty for the host's own)."""
    profile = instruction_profile()
    return "-" + re.sub(r"[^A-Za-z0-9]+", "-", profile).strip("-").lower() if profile else ""


@contextlib.contextmanager
def file_lock(directory, name):
    """An advisory lock on the file ``name + ".lock"`` in ``directory`` (a no-op where POSIX
    ``flock`` is not available)."""
    try:
        import fcntl
    except ImportError:          # pragma: no cover - Windows
        yield
        return
    path = os.path.join(directory, name + ".lock")
    while True:
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                # clear_cache deletes the lock file while holding it: a lock
                # taken on the deleted file excludes no one who opens the
                # path afresh, so take it again on the file now there
                if _same_file(fh, path):
                    yield
                    return
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _same_file(fh, path):
    """Whether the open file ``fh`` is still the file at ``path``."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fh.fileno())
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def write_json(path, data):
    """Write ``data`` to ``path`` as JSON atomically: a temporary file in the
    same directory, then ``os.replace``, so no reader ever sees half a file."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
