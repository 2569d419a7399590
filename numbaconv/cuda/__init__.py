"""The GPU backend: ``numba.cuda`` kernels behind the same algorithms table.

Imported only when a call gets a GPU array (:func:`numbaconv.backends.call_device`), so a
CPU-only ``import numbaconv`` never loads ``numba.cuda``.

* :mod:`.launch` -- block and tile sizes, in one place (the tests shrink
  them so that tiny inputs span several blocks);
* :mod:`.arrays` -- accepting device arrays, casting, results, streams;
* :mod:`.info` -- the devices ``numbaconv info`` lists.

The kernels are in ``numbaconv/kernels/*_cuda.py``, the algorithms that run
them in ``numbaconv/algorithms/gpu.py``.

Note [numba-cuda]
~~~~~~~~~~~~~~~~~
The backend runs on NVIDIA's numba-cuda (the ``cuda`` extra: ``pip install
"numbaconv[cuda]"``), which takes over ``numba.cuda`` when installed.
Without it ``numba.cuda`` is numba's own built-in CUDA target, deprecated
since numba 0.61, and numbaconv does not use it: it cannot compile our
kernels (numba 0.68's built-in target fails to type ``min(a, b)`` in a
kernel, "Signature mismatch: 2 argument types given, but function takes 1
arguments", and compiles device functions for the current GPU even in
``compile_ptx``), and nothing here is tested on it.  Its simulator
(``NUMBA_ENABLE_CUDASIM=1``) does run our kernels, but a backend that
works only in simulation would pass tests and fail on hardware; so GPU
arrays are refused, simulated or not, with the install command, whenever
numba-cuda is missing.  This module is the one place that decides it
(:func:`numba_cuda_missing`): the GPU path (:func:`require_numba_cuda`,
called by :func:`numbaconv.backends.call_device`), ``numbaconv info`` and
the tests' skips (tests/conftest.py) all ask it.
"""

from __future__ import annotations

import functools
import importlib.util
import sys

#: The command that installs the GPU backend.
INSTALL = 'pip install "numbaconv[cuda]"'


@functools.cache
def _numba_cuda_installed():
    return importlib.util.find_spec("numba_cuda") is not None


def numba_cuda_missing():
    """None when numba-cuda provides ``numba.cuda``; else why not, in a
    sentence ending with the install command (Note [numba-cuda]).  Imports
    nothing."""
    if not _numba_cuda_installed():
        return (f"numbaconv's GPU backend needs numba-cuda, which is not installed (numba's "
                f"own CUDA target is deprecated and not supported): {INSTALL}")
    loaded = sys.modules.get("numba.cuda")
    implementation = getattr(loaded, "implementation", "NVIDIA")
    if implementation != "NVIDIA":
        return (f"numba.cuda is numba's built-in CUDA target ({implementation}), although "
                f"numba-cuda is installed (its import hook did not run: was Python started "
                f"with -S?); numbaconv's GPU backend needs numba-cuda: {INSTALL}")
    return None


def require_numba_cuda(op, name="input"):
    """Raise ``ImportError`` (naming ``op``, the GPU array ``name`` and the
    install command) when numba-cuda is missing."""
    reason = numba_cuda_missing()
    if reason is not None:
        raise ImportError(f"{op}: {name} is a GPU array, and {reason}", name="numba_cuda")
