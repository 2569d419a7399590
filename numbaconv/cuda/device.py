"""How the GPU kernels' device helpers are compiled, in one place, and the
small helpers every GPU kernel module shares.

Imports ``numba.cuda``: only the GPU kernel modules import this one.
"""

from __future__ import annotations

from numba import cuda

#: Whether ``numba.cuda`` is the simulator (``NUMBA_ENABLE_CUDASIM=1``).
SIMULATED = cuda.jit.__module__.startswith("numba.cuda.simulator")


def device_function(function):
    """``function`` as a device helper, force-inlined on hardware.

    The simulator's ``cuda.jit`` takes no ``forceinline``.  On hardware the
    helpers must be inlined: a register block (a local array) lives in
    registers only if every index into it is a constant after inlining and
    unrolling.  A kernel that calls a device helper is compiled for the
    current device even inside ``compile_ptx`` (numba-cuda 0.30); see
    ``ptx_kernels`` in kernels/im2col_cuda.py."""
    return cuda.jit(device=True, **({} if SIMULATED else {"forceinline": True}))(function)


@device_function
def unravel(i, d1, d2, d3):
    """``(i0, i1, i2, i3)`` of the flat index ``i`` over ``(*, d1, d2, d3)``,
    the last fastest (``d1 = 1`` for three indices: then ``i1`` is 0)."""
    i3 = i % d3
    rest = i // d3
    i2 = rest % d2
    rest = rest // d2
    return rest // d1, rest % d1, i2, i3
