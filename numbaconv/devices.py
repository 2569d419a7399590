"""Whether an array lives in GPU memory (the backends decide a call's device by it).

This module never imports ``numba.cuda``: a CPU-only user pays nothing for
the GPU backend (``import numba.cuda`` takes about half a second and needs a
driver or the simulator).  An array is a GPU array when its *type* has
``__cuda_array_interface__`` (numba device arrays, CuPy arrays, PyTorch CUDA
tensors; looked up on the type so that a tensor that requires grad does not
raise here) or when it is one of numba's simulated device arrays
(``NUMBA_ENABLE_CUDASIM=1``), which lack the interface.
"""

from __future__ import annotations


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
