"""The CUDA backend: numba device arrays (and anything with
``__cuda_array_interface__``), computed by the GPU algorithms.

Importing this module does not import ``numba.cuda``: its methods import
:mod:`numbaconv.cuda.arrays` (which does) when a call with GPU arrays first
uses them, so ``choose_algorithm(..., device="cuda")`` answers on a machine
without a GPU.  The few operations that are not
convolutions -- the bias gradient's sum, a dtype promotion across
``conv_backward``'s three arrays, the crop or zero extension of a
transposed call with a large ``output_padding``, the transposed weight --
run on host copies of only the arrays they need, and are sent back: small
next to the convolutions (a GPU kernel for each would be the next step).
"""

from __future__ import annotations

import numpy as np

from ..rewrites import transposed_weight
from ..spec import memory_format_of
from .host import HOST


def _arrays():
    from ..cuda import arrays
    return arrays


class CudaBackend:
    """GPU arrays in and out (:mod:`numbaconv.backends`)."""

    device = "cuda"

    def check_stream(self, op, stream):
        """Any stream (None: the default stream)."""

    def checked(self, op, name, array, allow_none=False):
        """``array`` as a C-contiguous numba device array, or raise: a
        channels-last GPU array (Note [memory format] in :mod:`numbaconv.spec`)
        is refused with a message that says so -- the GPU kernels index
        canonical arrays, and the GPU calls take the contiguous format only
        (docs/semantics.md, "Memory format")."""
        dev = _arrays()
        try:
            return dev.as_device(op, name, array, allow_none=allow_none)
        except ValueError as exc:
            shape = tuple(getattr(array, "shape", ()))
            if any(memory_format_of(_Strided(array, shape), n) == "channels_last"
                   for n in (len(shape) - 2, len(shape) - 1) if n in (1, 2, 3)):
                raise ValueError(f"{op}: {name} is a channels-last GPU array (strides "
                                 f"{_strides(array)} for shape {shape}); GPU calls take "
                                 f"C-contiguous arrays only: make a contiguous copy "
                                 f"(.contiguous() in PyTorch, cupy.ascontiguousarray)"
                                 ) from exc
            raise

    def canonical(self, array, shape, dtype, stream=None, ndim=None):
        if ndim is not None:       # refused in checked(); never reached
            raise ValueError("GPU calls take the contiguous memory format only")
        dev = _arrays()
        return dev.canonical(array, shape, dtype, stream)

    def run_view(self, spec, result):
        return result.reshape(spec.run_output_shape)

    def weight(self, spec, weight, stream=None, transposed=False):
        """As :meth:`HostBackend.weight`; the transposed form is made on a
        host copy (weights are small next to activations)."""
        dev = _arrays()
        if transposed:
            host = transposed_weight(dev.to_host(weight, stream).astype(spec.compute_dtype),
                                     spec.groups)
            return dev.to_device(host.reshape(spec.weight_shape3), stream)
        return dev.canonical(weight, spec.weight_shape3, spec.compute_dtype, stream)

    def empty(self, shape, dtype, stream=None):
        dev = _arrays()
        return dev.empty(shape, dtype, stream)

    def check_out(self, spec, out, arrays):
        dev = _arrays()
        return dev.check_out(spec, out, arrays)

    def result_buffer(self, spec, out, stream=None):
        dev = _arrays()
        return dev.result_buffer(spec, out, stream)

    def finish(self, spec, result, out, stream=None, unbatched=None):
        dev = _arrays()
        return dev.finish(spec, result, out, stream, unbatched=unbatched)

    def cropped(self, array, shape, stream=None):
        dev = _arrays()
        if tuple(array.shape) == tuple(shape):
            return array
        return dev.to_device(HOST.cropped(dev.to_host(array, stream), shape), stream)

    def zero_extended(self, array, shape, stream=None):
        dev = _arrays()
        return dev.to_device(HOST.zero_extended(dev.to_host(array, stream), shape), stream)

    def astype(self, array, dtype, stream=None):
        dev = _arrays()
        if array is None or array.dtype == np.dtype(dtype):
            return array
        return dev.to_device(dev.to_host(array, stream).astype(dtype), stream)

    def grad_bias(self, grad_output, ndim, dtype, stream=None):
        dev = _arrays()
        return dev.to_device(HOST.grad_bias(dev.to_host(grad_output, stream), ndim, dtype),
                             stream)

    def fold_activation(self, grad_output, output, ndim, code, slope, bias_dtype, stream=None):
        """As the host backend's, computed on the host (a round trip; the
        GPU's backward pass is not fused yet: docs/gpu.md)."""
        dev = _arrays()
        folded, bias_grad = HOST.fold_activation(dev.to_host(grad_output, stream),
                                                 dev.to_host(output, stream), ndim, code, slope,
                                                 bias_dtype)
        return (dev.to_device(np.ascontiguousarray(folded), stream),
                None if bias_grad is None else dev.to_device(bias_grad, stream))

    def resources(self, ctx):
        """The resources ``explain`` shows for a GPU call."""
        return "GPU cost models not fitted (docs/gpu.md)"

    def identity(self):
        """The GPU's name: measured choices are kept per GPU."""
        dev = _arrays()
        return {"gpu": dev.device_name()}

    def from_host(self, array, stream=None):
        dev = _arrays()
        return dev.to_device(array, stream)

    def synchronize(self):
        """Wait for the GPU: kernels run asynchronously."""
        from numba import cuda
        cuda.synchronize()


def _strides(array):
    """Byte strides of a GPU array (``__cuda_array_interface__``'s, None when
    C-contiguous), or None when it does not say."""
    strides = getattr(array, "strides", None)
    if strides is None:
        interface = getattr(array, "__cuda_array_interface__", None) or {}
        strides = interface.get("strides")
    return None if strides is None else tuple(int(v) for v in strides)


class _Strided:
    """What :func:`numbaconv.spec.memory_format_of` reads of a GPU array."""

    def __init__(self, array, shape):
        self.shape, self.strides = shape, _strides(array)
        interface = getattr(array, "__cuda_array_interface__", None) or {}
        self.dtype = np.dtype(interface.get("typestr", "<f4"))


CUDA = CudaBackend()
