"""Padding modes as index maps.

Every padding mode is a map from a position in the padded axis to a position
in the input axis, or -1 for "this is a zero".  Kernels gather through these
small int64 maps while packing the input, so one packing kernel serves all
four modes and the compute kernels never see padding at all.
"""

from __future__ import annotations

import numpy as np


def source_index_map(size: int, before: int, after: int, mode: str,
                     input_dilation: int = 1) -> np.ndarray:
    """Input index for each position of a padded axis (-1 means zero).

    Parameters
    ----------
    size : int
        Length of the unpadded axis.
    before, after : int
        Padding added before and after.
    mode : {"zeros", "reflect", "replicate", "circular"}
        PyTorch's ``padding_mode``; the caller has checked that ``size`` is
        large enough for the mode (see :func:`numbaconv.spec.make_conv_spec`).
    input_dilation : int
        ``L - 1`` zeros between neighbouring input elements (zeros mode
        only): position ``j`` of the dilated axis is input ``j / L`` when
        ``L`` divides it.  Either padding may then be negative (a crop).
    """
    if input_dilation != 1:
        if mode != "zeros":
            raise ValueError(f"input dilation needs zeros padding, got {mode!r}")
        j = np.arange(-before, (size - 1) * input_dilation + 1 + after, dtype=np.int64)
        inside = (j >= 0) & (j % input_dilation == 0) & (j // input_dilation < size)
        return np.where(inside, j // input_dilation, -1)
    # the inside is the identity whatever the mode: only the padded ends
    # are mapped, in place, so a long 1-D axis costs its 8 bytes per
    # position and no temporaries (an input of 2**26 samples peaked at 16
    # bytes per position with whole-axis masks)
    j = np.arange(-before, size + after, dtype=np.int64)
    left, right = j[:max(0, before)], j[max(0, before + size):]
    for edge in (left, right):
        if mode == "zeros":
            edge[:] = -1
        elif mode == "reflect":        # mirror without repeating the edge: -1 -> 1
            np.abs(edge, out=edge)
            over = edge >= size
            edge[over] = 2 * (size - 1) - edge[over]
        elif mode == "replicate":
            np.clip(edge, 0, size - 1, out=edge)
        elif mode == "circular":
            np.mod(edge, size, out=edge)
        else:
            raise ValueError(f"unknown padding mode {mode!r}")
    return j


#: Longest padded axis whose map :func:`padding_maps` remembers.
REMEMBERED_MAP_LENGTH = 4096
#: Remembered maps, by (size, before, after, mode, input dilation).
_maps: dict = {}


def padding_maps(spec):
    """The (D, H, W) index maps of a spec's canonical 3-D form (input dilation
    included: every map-based gather then reads the zero-dilated input).

    The maps of axes up to REMEMBERED_MAP_LENGTH long are remembered: building
    three of them took about 8 us of a 70 us call on a 4x4 map.  Callers
    only read them (kernels take them as writable arrays: a read-only flag
    would be another numba signature)."""
    return tuple(_axis_map(n, lo, hi, spec.padding_mode, v)
                 for n, (lo, hi), v in zip(spec.input_size3, spec.padding3,
                                           spec.input_dilation3))


def _axis_map(size, before, after, mode, input_dilation):
    key = (size, before, after, mode, input_dilation)
    index = _maps.get(key)
    if index is None:
        index = source_index_map(size, before, after, mode, input_dilation)
        if len(index) <= REMEMBERED_MAP_LENGTH:
            if len(_maps) >= 1024:          # a bound for programs of many shapes
                _maps.clear()
            _maps[key] = index
    return index
