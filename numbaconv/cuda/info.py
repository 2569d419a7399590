"""What ``numbaconv info`` says about GPUs."""

from __future__ import annotations

import os
import re

#: The most characters of a CUDA error ``numbaconv info`` shows: numba's
#: driver errors run to about 230 (and end with the next step, which must
#: show); a longer one is cut at a sentence or word (:func:`shorten`).
REASON_CHARS = 300


def shorten(text, limit=REASON_CHARS):
    """``text`` on one line, whole if it fits in ``limit`` characters, else
    cut after its last sentence that fits (or, if even the first does not,
    at a word boundary, with ``...``): never in the middle of a word."""
    text = " ".join(str(text).split()).rstrip(" :")
    if len(text) <= limit:
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text[:limit + 1])]
    if ends:
        return text[:ends[-1]]
    cut = text[:limit - 3].rsplit(" ", 1)[0]
    return cut + " ..."


def status():
    """``(lines, usable)``: lines describing the CUDA devices, or why there
    are none, and whether GPU calls can run here (a device, or numba's
    simulator)."""
    from . import numba_cuda_missing
    missing = numba_cuda_missing()
    if missing is not None:                    # Note [numba-cuda]: numba.cuda is not ours
        return [f"CUDA: {missing}"], False
    try:
        from numba import cuda
    except Exception as exc:                   # a broken CUDA install must not break info
        return [f"CUDA: numba.cuda cannot be imported ({shorten(exc)})"], False
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return ["CUDA: numba's simulator (NUMBA_ENABLE_CUDASIM=1): GPU calls run as "
                "Python"], True
    try:
        available = cuda.is_available()
    except Exception as exc:
        return [f"CUDA: not available ({shorten(exc)})"], False
    if not available:
        try:
            cuda.detect()                      # prints numba's own report on failure
        except Exception as exc:
            return [f"CUDA: no usable GPU ({shorten(exc) or type(exc).__name__})"], False
        return ["CUDA: no usable GPU (numba.cuda.is_available() is False: no driver or "
                "no device)"], False
    lines = []
    for device in cuda.list_devices():
        name = device.name.decode() if isinstance(device.name, bytes) else device.name
        lines.append(f"CUDA device {device.id}: {name}, compute capability "
                     f"{device.compute_capability[0]}.{device.compute_capability[1]}")
    return (lines, True) if lines else (["CUDA: no devices listed"], False)


def describe():
    """Lines describing the CUDA devices, or why there are none."""
    return status()[0]
