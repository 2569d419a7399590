"""FFT convolution on the GPU through CuPy's cuFFT (the ``gpu-fft`` extra).

CuPy wraps the numba device arrays without a copy (``__cuda_array_interface__``).
One call: the padded input is gathered through the padding maps (a
trailing zero slot per axis stands for every -1), whole planes are
transformed (``rfftn`` over the spatial axes at the padded size), the
channels contracted per group in the frequency domain against the
conjugated spectrum of the dilated weight (a correlation), transformed
back, and the strided outputs of the wrap-free part written with the bias.
No tiling: on a GPU the planes of ordinary layers fit, and cuFFT's batched
plans want whole planes.  Verified only on a GPU machine
(scripts/gpu_check.py): neither CuPy nor a GPU exists in CI.
"""

from __future__ import annotations


def _cupy_stream(stream):
    import cupy
    handle = getattr(stream, "handle", 0) if stream else 0
    handle = getattr(handle, "value", handle)
    return cupy.cuda.ExternalStream(int(handle or 0))


def fft_forward(spec, x, weight, bias, out, maps, stream):
    """``out = conv(x, weight) + bias`` for a forward spec (any padding mode,
    input dilation or negative padding: through ``maps``), on canonical
    device arrays."""
    import cupy as cp

    with _cupy_stream(stream):
        xs = cp.asarray(x)
        N, C, D, H, W = xs.shape
        zero_slotted = cp.zeros((N, C, D + 1, H + 1, W + 1), dtype=xs.dtype)
        zero_slotted[:, :, :D, :H, :W] = xs
        index = [cp.where(cp.asarray(m) < 0, size, cp.asarray(m))
                 for m, size in zip(maps, (D, H, W))]
        padded = zero_slotted[:, :, index[0]][:, :, :, index[1]][:, :, :, :, index[2]]
        lengths = padded.shape[2:]
        w = cp.asarray(weight)
        dd, dh, dw = spec.dilation3
        KD, KH, KW = w.shape[2:]
        dilated = cp.zeros(w.shape[:2] + ((KD - 1) * dd + 1, (KH - 1) * dh + 1,
                                          (KW - 1) * dw + 1), dtype=w.dtype)
        dilated[:, :, ::dd, ::dh, ::dw] = w
        axes = (2, 3, 4)
        xf = cp.fft.rfftn(padded, s=lengths, axes=axes)
        wf = cp.conj(cp.fft.rfftn(dilated, s=lengths, axes=axes))
        g, cin_g, cout_g = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
        xf = xf.reshape((N, g, cin_g) + xf.shape[2:])
        wf = wf.reshape((g, cout_g, cin_g) + wf.shape[2:])
        yf = cp.einsum("ngcdhw,gocdhw->ngodhw", xf, wf).reshape((N, g * cout_g) + xf.shape[3:])
        y = cp.fft.irfftn(yf, s=lengths, axes=axes)
        sd, sh, sw = spec.stride3
        OD, OH, OW = spec.output_size3
        result = y[:, :, :(OD - 1) * sd + 1:sd, :(OH - 1) * sh + 1:sh, :(OW - 1) * sw + 1:sw]
        if bias is not None and bias.shape[0]:   # None or empty: no bias (Note [no bias])
            result = result + cp.asarray(bias).reshape(1, -1, 1, 1, 1)
        cp.asarray(out)[...] = result.astype(out.dtype)
