"""Host-side arithmetic of the Winograd kernels, shared by the CPU
algorithm (numbaconv.algorithms.winograd) and the GPU kernels
(kernels/winograd_cuda.py): the transform matrices of one axis, the padding
maps extended to whole tiles, and the transformed weight with its cache.

Note [weight cache]
~~~~~~~~~~~~~~~~~~~
The same layer runs many times with the same weight, so transformed weights
are kept in a small LRU cache keyed by the tile size, dtype, shape and a
fingerprint of the weight's bytes (Note [weight fingerprint] of
:mod:`numbaconv.kernels.fingerprint`): a weight changed in place gets a new
fingerprint and is transformed again, never served stale.  The fingerprint
takes 0.14 ms for a 2.4 MB weight (late3x3); the BLAKE2b digest it replaced
took 2.5 ms, a quarter of that layer's convolution.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..padding import padding_maps
from .fingerprint import fingerprint
from .winograd_matrices import winograd_matrices

#: transformed weights kept (Note [weight cache])
WEIGHT_CACHE_SIZE = 32
_weight_cache: OrderedDict = OrderedDict()
_weight_cache_lock = threading.Lock()


def clear_weight_cache():
    """Forget every transformed weight (Note [weight cache])."""
    with _weight_cache_lock:
        _weight_cache.clear()


def axis_matrices(m, used, dtype):
    """(AT, G, BT) for one canonical axis: F(m, 3) if used, else 1x1 identity."""
    if not used:
        one = np.ones((1, 1), dtype)
        return one, one, one
    AT, G, BT = winograd_matrices(m)
    return AT.astype(dtype), G, BT.astype(dtype)


def transformed_weight(weight, m, ndim, groups):
    """``U`` of shape ``(Q, groups, C_in/groups, C_out/groups)`` (cached)."""
    return transformed_weight_and_finiteness(weight, m, ndim, groups)[0]


def transformed_weight_and_finiteness(weight, m, ndim, groups):
    """``(U, finite)``: :func:`transformed_weight`, and whether every value
    of ``U`` is finite (false for a weight with a NaN or infinity, or one
    whose transform overflows), kept with it in the cache so that a call
    does not scan its weight a second time after the fingerprint."""
    digest = fingerprint(weight)
    key = (m, groups, weight.dtype.str, weight.shape, digest)
    with _weight_cache_lock:
        if key in _weight_cache:
            _weight_cache.move_to_end(key)
            return _weight_cache[key]
    used = [a >= 3 - ndim for a in range(3)]
    Gs = [axis_matrices(m, u, np.float64)[1] for u in used]
    # a non-finite or huge weight is found by the finiteness check below
    # (its call goes to the direct algorithm), not by NumPy's warnings
    with np.errstate(all="ignore"):
        U = np.einsum("ai,bj,ck,oxijk->abcox", Gs[0], Gs[1], Gs[2], weight.astype(np.float64),
                      optimize=True)
        cout, cin_g = weight.shape[:2]
        U = U.reshape(-1, groups, cout // groups, cin_g).transpose(0, 1, 3, 2)
        U = np.ascontiguousarray(U, weight.dtype)
    entry = (U, bool(np.isfinite(U).all()))
    with _weight_cache_lock:
        _weight_cache[key] = entry
        while len(_weight_cache) > WEIGHT_CACHE_SIZE:
            _weight_cache.popitem(last=False)
    return entry


def extended_maps(spec, grid, m, used, phase=(0, 0, 0)):
    """Padding maps of one dilation phase (every ``d``-th entry from ``phase``;
    Note [dilation phases] in algorithms/winograd.py) extended with zeros
    (-1) to whole tiles on every axis."""
    maps = []
    for axis, base in enumerate(padding_maps(spec)):
        base = base[phase[axis]::spec.dilation3[axis]]
        need = grid[axis] * (m if used[axis] else 1) + (2 if used[axis] else 0)
        maps.append(np.concatenate([base[:need], np.full(max(0, need - len(base)), -1,
                                                         np.int64)]))
    return maps
