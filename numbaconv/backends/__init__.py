"""Device backends: where a call's arrays live, and everything that depends on it.

A backend owns, for its device, the validation of the arrays a call is
given, their canonical form (:mod:`numbaconv.spec`: 3-D, C-contiguous, in
the compute dtype), allocation, the ``out=`` checks, the finished result
(the cast of a float16 result, the batch axis of an unbatched call) and the
few array operations :func:`numbaconv.grad.conv_backward` needs around its
convolutions.  The public functions hold no ``if device == ...``: they ask
:func:`checked_arrays` for the backend of the call and use it.

* ``"cpu"``: :class:`numbaconv.backends.host.HostBackend` (NumPy arrays);
* ``"cuda"``: :class:`numbaconv.backends.cuda.CudaBackend` (numba device
  arrays and anything with ``__cuda_array_interface__``), imported only when
  a call has GPU arrays: a CPU-only user never imports ``numba.cuda``.

A new device adds a module here with a backend class of the same methods,
one entry in :func:`get_backend`, and its algorithms registered under its
name (:mod:`numbaconv.algorithms.registry`).
"""

from __future__ import annotations

import numpy as np

from ..devices import is_device_array
from .host import HOST

DEVICES = ("cpu", "cuda")


def get_backend(device):
    """The backend of ``device`` (``"cpu"`` or ``"cuda"``)."""
    if device == "cpu":
        return HOST
    if device == "cuda":
        from .cuda import CUDA
        return CUDA
    raise ValueError(f"device must be {' or '.join(map(repr, DEVICES))}, got {device!r}")


def call_device(op, arrays):
    """``"cuda"`` or ``"cpu"``: where every non-None array of ``arrays`` (a
    name -> array dict) lives; a ``TypeError`` naming each argument's place
    when they are mixed, an ``ImportError`` with the install command for GPU
    arrays without numba-cuda (Note [numba-cuda] of :mod:`numbaconv.cuda`)."""
    if all(a is None or type(a) is np.ndarray for a in arrays.values()):
        return "cpu"                  # the common case: 0.5 us, the probe below 2.2
    where = {name: "cuda" if is_device_array(a) else "cpu"
             for name, a in arrays.items() if a is not None}
    if len(set(where.values())) > 1:
        places = ", ".join(f"{name} on the {'GPU' if d == 'cuda' else 'host (NumPy)'}"
                           for name, d in where.items())
        raise TypeError(f"{op}: all arrays must be on one device, got {places}; move them "
                        f"with numba.cuda.to_device(...) or .copy_to_host()")
    if "cuda" not in where.values():
        return "cpu"
    from ..cuda import require_numba_cuda     # imports no numba.cuda
    require_numba_cuda(op, next(name for name, d in where.items() if d == "cuda"))
    return "cuda"


def checked_arrays(op, stream, **arrays):
    """``(backend, arrays)``: the backend of the device the call's arrays live
    on (mixing devices is a TypeError, :func:`call_device`)
    and the arrays validated for it.  A ``None`` array (an absent bias)
    stays ``None``, as does an absent residual."""
    backend = get_backend(call_device(op, arrays))
    backend.check_stream(op, stream)
    return backend, {name: backend.checked(op, name, a,
                                           allow_none=name in ("bias", "residual", "output"))
                     for name, a in arrays.items()}
