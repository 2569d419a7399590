"""Which device a call runs on, decided from its arrays.

This module never imports ``numba.cuda``: a CPU-only user pays nothing for
the GPU backend (``import numba.cuda`` takes about half a second and needs a
driver or the simulator).  An array is a GPU array when its *type* has
``__cuda_array_interface__`` (numba device arrays, CuPy arrays, PyTorch CUDA
tensors; looked up on the type so that a tensor that requires grad does not
raise here) or when it is one of numba's simulated device arrays
(``NUMBA_ENABLE_CUDASIM=1``), which lack the interface.
"""

from __future__ import annotations

import numpy as np


def is_device_array(obj):
    """Whether ``obj`` lives in GPU memory (module docstring).  A PyTorch
    tensor's type has the interface whatever its device, so a tensor is on
    the GPU when its ``device.type`` says ``"cuda"``: a CPU tensor is host
    memory, as NumPy reads it."""
    kind = type(obj)
    if kind.__module__.startswith("numba.cuda.simulator"):
        return True
    if not hasattr(kind, "__cuda_array_interface__"):
        return False
    device_type = getattr(getattr(obj, "device", None), "type", None)
    return device_type == "cuda" if isinstance(device_type, str) else True


def call_device(op, arrays):
    """``"cuda"`` or ``"cpu"``: where every non-None array of ``arrays`` (a
    name -> array dict) lives; a ``TypeError`` naming each argument's place
    when they are mixed, an ``ImportError`` with the install command for GPU
    arrays without numba-cuda (Note [numba-cuda] of :mod:`numbaconv.cuda`)."""
    if all(a is None or type(a) is np.ndarray for a in arrays.values()):
        return "cpu"                  # the common case, in 0.5 of the 2.2 us below
    where = {name: "cuda" if is_device_array(a) else "cpu"
             for name, a in arrays.items() if a is not None}
    if len(set(where.values())) > 1:
        places = ", ".join(f"{name} on the {'GPU' if d == 'cuda' else 'host (NumPy)'}"
                           for name, d in where.items())
        raise TypeError(f"{op}: all arrays must be on one device, got {places}; move them "
                        f"with numba.cuda.to_device(...) or .copy_to_host()")
    if "cuda" not in where.values():
        return "cpu"
    from .cuda import require_numba_cuda      # imports no numba.cuda
    require_numba_cuda(op, next(name for name, d in where.items() if d == "cuda"))
    return "cuda"
