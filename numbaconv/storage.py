"""Files in the user cache directory: where they live, and how they are
written so that concurrent processes never see half of one.

Core layer: the tuning cache (:mod:`numbaconv.tuning`) and the cost-model
constants (:mod:`numbaconv.costs`) both live here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


def cache_dir():
    """The directory of numbaconv's cache files (``NUMBACONV_CACHE_DIR`` or the
    platform's user cache directory for numbaconv)."""
    override = os.environ.get("NUMBACONV_CACHE_DIR")
    if override:
        return override
    import platformdirs
    return platformdirs.user_cache_dir("numbaconv", appauthor=False)


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
