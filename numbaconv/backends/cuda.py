"""The CUDA backend: numba device arrays (and anything with
``__cuda_array_interface__``), computed by the GPU algorithms.

Importing this module does not import ``numba.cuda``: its methods import
:mod:`numbaconv.cuda.arrays` (which does) when a call with GPU arrays first
uses them, so ``choose_algorithm(..., device="cuda")`` answers on a machine
without a GPU.  The few operations that are not
convolutions -- the bias gradient's sum, a dtype promotion across
``conv_backward``'s three arrays, the crop or zero extension of a
transposed call with a large ``output_padding``, the transposed weight --
run on host copies of only the arrays they need, and are sent back in
their memory format: small next to the convolutions (a GPU kernel for each
would be the next step).  Channels-last arrays are packed on the device:
the algorithms run the contiguous spec on canonical arrays (Note [GPU memory
format] in :mod:`numbaconv.cuda.arrays`).
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from ..rewrites import transposed_weight
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
        """``array`` as a numba device array, C-contiguous or channels-last
        (Note [GPU memory format] in :mod:`numbaconv.cuda.arrays`), or raise."""
        dev = _arrays()
        return dev.as_device(op, name, array, allow_none=allow_none)

    def run_spec(self, spec):
        """The spec the algorithms run: the contiguous one, as the backend
        packs a channels-last call on the device (Note [GPU memory format]
        in :mod:`numbaconv.cuda.arrays`)."""
        return _contiguous(spec) if spec.channels_last else spec

    def run_array(self, spec, array, shape, stream=None, name="input"):
        """An input-like or output-like array of the call as the algorithms
        take it: canonical ``shape`` (the :meth:`run_spec`'s) in the compute
        dtype, a view where it already is, else a cast or packing copy of a
        channels-last array (either format, whatever the call's)."""
        dev = _arrays()
        return dev.canonical(array, shape, spec.compute_dtype, stream, spec.ndim,
                             f"{spec.op}: {name}")

    def canonical(self, array, shape, dtype, stream=None, ndim=None):
        dev = _arrays()
        return dev.canonical(array, shape, dtype, stream, ndim)

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
        return dev.canonical(weight, spec.weight_shape3, spec.compute_dtype, stream, spec.ndim,
                             f"{spec.op}: weight")

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
        return dev.to_device_in_format(HOST.cropped(dev.to_host(array, stream), shape), stream)

    def zero_extended(self, array, shape, stream=None):
        dev = _arrays()
        return dev.to_device_in_format(HOST.zero_extended(dev.to_host(array, stream), shape),
                                       stream)

    def astype(self, array, dtype, stream=None):
        dev = _arrays()
        if array is None or array.dtype == np.dtype(dtype):
            return array
        return dev.to_device_in_format(dev.to_host(array, stream).astype(dtype), stream)

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
        return (dev.to_device_in_format(folded, stream),
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


@functools.lru_cache(maxsize=256)
def _contiguous(spec):
    return replace(spec, memory_format="contiguous")


CUDA = CudaBackend()
