"""A float64 NumPy reference for forward convolution.

Deliberately short and independent of every kernel in the package: padding
through :func:`numpy.pad`, then one strided slice and one ``einsum`` per
kernel offset.  It is the oracle of the tests and of ``numbaconv bench``'s
result checks, so it favours being obviously right over being fast.
"""

from __future__ import annotations

import itertools

import numpy as np

from .spec import check_float_array, make_conv_spec

# numbaconv / PyTorch padding_mode -> numpy.pad mode.
_NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect",
                   "replicate": "edge", "circular": "wrap"}


def conv_reference(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                   padding_mode="zeros"):
    """Forward N-d convolution (cross-correlation) in float64.

    Same arguments and semantics as ``numbaconv.conv{1,2,3}d``; the rank is
    taken from ``weight``.  Always returns float64.
    """
    ndim = np.ndim(weight) - 2
    op = f"conv{ndim}d" if ndim in (1, 2, 3) else "conv_reference"
    if ndim not in (1, 2, 3):
        raise ValueError(f"conv_reference: weight must have 3 to 5 dimensions, got {np.shape(weight)}")
    input = check_float_array(op, "input", input)
    weight = check_float_array(op, "weight", weight)
    bias = check_float_array(op, "bias", bias, allow_none=True)
    spec = make_conv_spec(op, ndim, input, weight, bias, stride, padding, dilation, groups,
                          padding_mode)

    x = np.asarray(input, dtype=np.float64).reshape(spec.input_shape)
    w = np.asarray(weight, dtype=np.float64)
    x = np.pad(x, ((0, 0), (0, 0)) + spec.padding, mode=_NUMPY_PAD_MODE[spec.padding_mode])

    g, cin_g, cout_g = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    x = x.reshape((spec.batch, g, cin_g) + x.shape[2:])
    w = w.reshape((g, cout_g, cin_g) + spec.kernel_size)
    out = np.zeros((spec.batch, g, cout_g) + spec.output_size)
    for offset in itertools.product(*(range(k) for k in spec.kernel_size)):
        window = tuple(
            slice(o * d, o * d + s * (n - 1) + 1, s)
            for o, d, s, n in zip(offset, spec.dilation, spec.stride, spec.output_size))
        patch = x[(slice(None),) * 3 + window]              # (N, G, Cin_g, *out)
        taps = w[(slice(None),) * 3 + offset]               # (G, Cout_g, Cin_g)
        out += np.einsum("ngc...,goc->ngo...", patch, taps)
    out = out.reshape(spec.output_shape)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * ndim)
    return out[0] if spec.unbatched else out
