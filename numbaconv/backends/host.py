"""The host backend: NumPy arrays, computed by the CPU algorithms."""

from __future__ import annotations

import numba
import numpy as np

from ..kernels.epilogue_block import fold_activation_derivative
from ..kernels.fingerprint import PARALLEL_WORDS
from ..kernels.layout import transpose_matrices
from ..rewrites import TransposedWeight
from ..spec import channels_last_view, check_float_array
from ..workspaces import contiguous, scratch


class HostBackend:
    """NumPy arrays in and out (:mod:`numbaconv.backends`)."""

    device = "cpu"

    def check_stream(self, op, stream):
        if stream is not None:
            raise ValueError(f"{op}: stream= is for GPU arrays, got host (NumPy) arrays")

    def checked(self, op, name, array, allow_none=False):
        """``array`` as an ndarray of a supported float dtype, or raise."""
        return check_float_array(op, name, array, allow_none=allow_none)

    def canonical(self, array, shape, dtype, stream=None, ndim=None):
        """A C-contiguous ``dtype`` copy-or-view of ``array`` reshaped to ``shape``.

        With ``ndim`` (the call's spatial axes; a channels-last call, Note
        [memory format] in :mod:`numbaconv.spec`), ``shape`` is the
        channels-last ``(N, D, H, W, C)`` and the result is the channels-last
        view of the logical ``(N, C, ...)`` ``array``: a view of its memory
        when it is channels-last and of ``dtype``, else a copy (scratch of
        the call: Note [workspace arena] in :mod:`numbaconv.workspaces`)."""
        if ndim is not None:
            array = channels_last_view(array, ndim)
        return contiguous(array, dtype).reshape(shape)

    def run_spec(self, spec):
        """The spec the algorithms run: ``spec`` itself (a channels-last call
        runs natively or is packed by the algorithm: Note [packing] in
        :mod:`numbaconv.algorithms.registry`)."""
        return spec

    def run_array(self, spec, array, shape, stream=None, name="input"):
        """An input-like or output-like array of the call (input, residual,
        output gradient) as the algorithms take it: ``shape`` (the spec's
        ``run_input_shape`` or ``run_output_shape``) in the call's memory
        format and compute dtype (Note [memory format] in
        :mod:`numbaconv.spec`): a view where the array already is, else a copy
        (``name`` is for the GPU backend's errors: any strides are copied here)."""
        return self.canonical(array, shape, spec.compute_dtype, stream,
                              spec.ndim if spec.channels_last else None)

    def weight(self, spec, weight, stream=None, transposed=False):
        """The canonical forward weight of ``spec``: a view or cast copy of
        ``weight``, or (``transposed``) a
        :class:`~numbaconv.rewrites.TransposedWeight` of it, whose flipped,
        in/out swapped form is made only for the algorithms that need it
        (Note [transposed weight] in :mod:`numbaconv.rewrites`)."""
        if transposed:
            given = (spec.in_channels, spec.out_channels_per_group) + spec.kernel_size3
            return TransposedWeight(self.canonical(weight, given, spec.compute_dtype),
                                    spec.groups, transpose=_transposed_matrices)
        return self.canonical(weight, spec.weight_shape3, spec.compute_dtype)

    def empty(self, shape, dtype, stream=None):
        return np.empty(shape, dtype=dtype)

    def check_out(self, spec, out, arrays):
        """``out`` if it can receive the result of ``spec``, else raise."""
        if not isinstance(out, np.ndarray):
            raise ValueError(f"{spec.op}: out must be a NumPy array, got {type(out).__name__}")
        expected = spec.user_output_shape
        if out.shape != expected:
            raise ValueError(f"{spec.op}: out must have shape {expected}, got "
                             f"out.shape={out.shape}")
        if out.dtype != spec.dtype:
            raise ValueError(f"{spec.op}: out must have dtype {spec.dtype}, got "
                             f"out.dtype={out.dtype}")
        if spec.channels_last:
            if not channels_last_view(out, spec.ndim).flags.c_contiguous:
                raise ValueError(
                    f"{spec.op}: out must be channels-last contiguous, as the call's input "
                    f"is channels_last (the logical view of (N, spatial..., C) memory, e.g. "
                    f"np.moveaxis(np.empty((N, ..., C)), -1, 1)), got an array with "
                    f"out.strides={out.strides}")
        elif not out.flags.c_contiguous:
            raise ValueError(f"{spec.op}: out must be C-contiguous, as the call's input is "
                             f"contiguous, got an array with out.strides={out.strides}")
        if not out.flags.writeable:
            raise ValueError(f"{spec.op}: out must be writeable, got a read-only array")
        for name, array in arrays.items():
            if array is not None and _overlaps(out, array):
                raise ValueError(f"{spec.op}: out must not share memory with {name}")
        return out

    def result_buffer(self, spec, out, stream=None):
        """Where the algorithm writes: ``out`` itself, or a compute-dtype
        buffer of the output's shape in the call's memory format (a
        channels-last call: the logical view of ``(N, spatial..., C)``
        memory).  A buffer that :meth:`finish` copies or casts (into ``out``,
        or a result of another dtype) is scratch of the call (Note [workspace
        arena] in :mod:`numbaconv.workspaces`); one it returns is new."""
        if out is not None and out.dtype == spec.compute_dtype:
            return out
        new = scratch if out is not None or spec.dtype != spec.compute_dtype else np.empty
        if spec.channels_last:
            memory = new(spec.output_shape[:1] + spec.output_size + spec.output_shape[1:2],
                         spec.compute_dtype)
            return np.moveaxis(memory, -1, 1)
        return new(spec.output_shape, spec.compute_dtype)

    def run_view(self, spec, result):
        """The array an algorithm writes of ``result`` (:meth:`result_buffer`):
        ``spec.run_output_shape``, a view."""
        if spec.channels_last:
            return channels_last_view(result, spec.ndim).reshape(spec.run_output_shape)
        return result.reshape(spec.run_output_shape)

    def finish(self, spec, result, out, stream=None, unbatched=None):
        """Copy into a float16 ``out``, cast, drop the batch axis of unbatched calls."""
        if out is not None:
            if result is not out:
                with np.errstate(over="ignore"):   # float16 overflow is inf, as in PyTorch
                    out[...] = result.reshape(out.shape)
            return out
        if spec.dtype != spec.compute_dtype:
            with np.errstate(over="ignore"):
                result = result.astype(spec.dtype)
        unbatched = spec.unbatched if unbatched is None else unbatched
        return result[0] if unbatched else result

    # ---- around conv_backward's convolutions ---------------------------

    def cropped(self, array, shape, stream=None):
        """The leading ``shape`` corner of ``array``, contiguous in its
        memory format (a channels-last array stays channels-last)."""
        if tuple(array.shape) == tuple(shape):
            return array
        part = array[tuple(slice(0, n) for n in shape)]
        return part if part.flags.c_contiguous else np.copy(part, order="K")

    def zero_extended(self, array, shape, stream=None):
        """``array`` in the leading corner of zeros of ``shape``, laid out as
        ``array`` (a channels-last array stays channels-last)."""
        extended = np.zeros_like(array, shape=shape, order="K")
        extended[tuple(slice(0, n) for n in array.shape)] = array
        return extended

    def astype(self, array, dtype, stream=None):
        return None if array is None else array.astype(dtype, copy=False)

    def grad_bias(self, grad_output, ndim, dtype, stream=None):
        """The bias gradient: ``grad_output`` summed over the batch and
        spatial axes (float16 summed in float32), in ``dtype``."""
        batched = grad_output.ndim == ndim + 2
        axes = ((0,) if batched else ()) + tuple(range(grad_output.ndim - ndim, grad_output.ndim))
        compute = np.float32 if dtype == np.float16 else dtype
        return grad_output.sum(axis=axes, dtype=compute).astype(dtype)

    def fold_activation(self, grad_output, output, ndim, code, slope, bias_dtype, stream=None):
        """``(grad_output * activation'(output), bias gradient or None)`` in
        one pass (:func:`numbaconv.kernels.epilogue_block.fold_activation_derivative`);
        the folded gradient keeps ``grad_output``'s shape and memory layout
        (compute dtype), the bias gradient (when ``bias_dtype`` is given) is
        in ``bias_dtype``."""
        cdtype = np.dtype(np.float32) if grad_output.dtype == np.float16 else grad_output.dtype
        batched = grad_output.ndim == ndim + 2
        shape3 = ((grad_output.shape[0] if batched else 1), grad_output.shape[-ndim - 1], -1)
        g = np.asarray(grad_output, dtype=cdtype)
        y = np.asarray(output, dtype=cdtype)
        if y.strides != g.strides:
            y = np.empty_like(g, order="K")
            y[...] = output
        folded = np.empty_like(g, order="K")
        bias_grad = np.zeros(g.shape[-ndim - 1] if bias_dtype is not None else 0, dtype=cdtype)
        g3, y3, f3 = (a.reshape(shape3) for a in (g, y, folded))
        if not np.shares_memory(f3, folded):            # a layout reshape cannot view
            g3, y3 = (np.ascontiguousarray(a).reshape(shape3) for a in (g, y))
            f3 = np.empty(g3.shape, dtype=cdtype)
            folded = f3.reshape(g.shape)
        fold_activation_derivative(g3, y3, code, cdtype.type(slope), f3, bias_grad,
                                   numba.get_num_threads())
        return folded, (bias_grad.astype(bias_dtype) if bias_dtype is not None else None)

    # ---- synthetic data and timing (tuning) ----------------------------

    def resources(self, ctx):
        """The resources ``explain`` shows for a call in ``ctx``."""
        return (f"{ctx.threads} thread(s), workspace limit "
                f"{ctx.workspace_limit / 2**20:g} MiB")

    def identity(self):
        """What, besides the CPU model, tells this device's measurements
        apart (the tuning cache's key): nothing on the host."""
        return {}

    def from_host(self, array, stream=None):
        return array

    def synchronize(self):
        """Wait for the device's work (nothing to wait for on the host)."""


def _transposed_matrices(matrices):
    """A C-contiguous ``(B, C, R)`` scratch copy of ``(B, R, C)``
    ``matrices`` transposed, by blocked transposes (Note [blocked
    transposes] in :mod:`numbaconv.kernels.layout`; a 1x1 transposed
    weight's rewrite, :func:`numbaconv.rewrites.transposed_weight`), on one
    thread below :data:`~numbaconv.kernels.fingerprint.PARALLEL_WORDS`
    values (Note [small calls] in :mod:`numbaconv.algorithms.registry`)."""
    B, R, C = matrices.shape
    result = scratch((B, C, R), matrices.dtype)
    transpose_matrices(np.ascontiguousarray(matrices), result,
                       numba.get_num_threads() if matrices.size >= PARALLEL_WORDS else 1)
    return result


def _overlaps(a, b):
    """Exact overlap test, bounded in work; assume overlap if undecided."""
    try:
        return np.shares_memory(a, b, max_work=10_000)
    except np.exceptions.TooHardError:
        return True


HOST = HostBackend()
