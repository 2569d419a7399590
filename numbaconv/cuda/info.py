"""What ``numbaconv info`` says about GPUs."""

from __future__ import annotations

import os


def describe():
    """Lines describing the CUDA devices, or why there are none."""
    try:
        from numba import cuda
    except Exception as exc:                   # a broken CUDA install must not break info
        return [f"CUDA: numba.cuda cannot be imported ({exc})"]
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return ["CUDA: numba's simulator (NUMBA_ENABLE_CUDASIM=1): GPU calls run as Python"]
    try:
        available = cuda.is_available()
    except Exception as exc:
        return [f"CUDA: not available ({exc})"]
    if not available:
        try:
            cuda.detect()                      # prints numba's own report on failure
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            return [f"CUDA: no usable GPU ({reason})"]
        return ["CUDA: no usable GPU (numba.cuda.is_available() is False: no driver or "
                "no device)"]
    lines = []
    for device in cuda.list_devices():
        name = device.name.decode() if isinstance(device.name, bytes) else device.name
        lines.append(f"CUDA device {device.id}: {name}, compute capability "
                     f"{device.compute_capability[0]}.{device.compute_capability[1]}")
    return lines or ["CUDA: no devices listed"]
