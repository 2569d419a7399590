"""Device arrays in and out of a GPU call.

The GPU path takes numba device arrays and anything with
``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors: wrapped by
``numba.cuda.as_cuda_array`` without a copy) and returns numba device
arrays, which CuPy (``cupy.asarray``) and PyTorch (``torch.as_tensor(...,
device="cuda")``) wrap without a copy.  Arrays must be C-contiguous: the
kernels index flat canonical views, and a strided device array would need
a gather kernel per rank for a case the frameworks rarely produce (their
``.contiguous()`` / ``cupy.ascontiguousarray`` make one).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from ..spec import SUPPORTED_DTYPES
from . import launch


def as_device(op, name, obj, *, allow_none=False):
    """``obj`` (a GPU array, :func:`numbaconv.devices.is_device_array`) as a
    numba device array of a supported dtype, or raise."""
    if obj is None:
        if allow_none:
            return None
        raise TypeError(f"{op}: {name} must be an array, got None")
    if not _is_numba_device_array(obj):
        try:
            obj = cuda.as_cuda_array(obj)
        except RuntimeError as exc:     # a PyTorch tensor that requires grad
            raise TypeError(f"{op}: {name} cannot be read as a GPU array ({exc}); for a "
                            f"PyTorch tensor that requires grad call .detach() first") from None
    if obj.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {name} dtype must be float16, float32 or float64, "
                        f"got {obj.dtype}")
    if not obj.is_c_contiguous():
        raise ValueError(f"{op}: {name} must be a C-contiguous GPU array, got strides "
                         f"{_strides(obj)} for shape {obj.shape}; make a contiguous copy "
                         f"(.contiguous() in PyTorch, cupy.ascontiguousarray)")
    return obj


def _is_numba_device_array(obj):
    return type(obj).__module__.startswith(("numba.cuda", "numba_cuda"))


def _strides(obj):
    try:
        return tuple(obj.strides)
    except AttributeError:
        return "?"


def empty(shape, dtype, stream):
    """A new C-contiguous device array."""
    return cuda.device_array(shape, dtype=dtype, stream=stream)


def to_device(array, stream):
    """A host array copied to the device."""
    return cuda.to_device(np.ascontiguousarray(array), stream=stream)


def to_host(array, stream):
    """A device array copied to the host (waits for ``stream``)."""
    return array.copy_to_host(stream=stream)


def canonical(array, shape, dtype, stream):
    """``array`` reshaped to ``shape`` in ``dtype``: a view when the dtype
    matches, else a cast copy (float16 input is computed in float32)."""
    if array.dtype == np.dtype(dtype):
        return array.reshape(shape)
    result = empty(shape, dtype, stream)
    cast(array.reshape(-1), result.reshape(-1), stream)
    return result


def cast(src, dst, stream):
    """dst[i] = src[i] converted to dst's dtype (flat arrays of one size)."""
    kernel = _cast_kernel()
    kernel[launch.blocks_for(src.size), launch.THREADS, stream](src, dst)


@functools.cache
def _cast_kernel():
    @cuda.jit
    def cast_flat(src, dst):
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, src.shape[0], step):
            dst[i] = src[i]
    return cast_flat


def fill_zero(flat, stream):
    """flat[:] = 0 on the device."""
    _zero_kernel()[launch.blocks_for(flat.size), launch.THREADS, stream](flat)


@functools.cache
def _zero_kernel():
    @cuda.jit
    def zero_flat(values):
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, values.shape[0], step):
            values[i] = 0
    return zero_flat


def all_finite(array, stream):
    """Whether every value of the flat-viewable ``array`` is finite (one flag
    reduced on the device, then copied to the host)."""
    flag = cuda.to_device(np.zeros(1, dtype=np.int32), stream=stream)
    flat = array.reshape(-1)
    _finite_kernel()[launch.blocks_for(flat.size), launch.THREADS, stream](flat, flag)
    return flag.copy_to_host(stream=stream)[0] == 0


@functools.cache
def _finite_kernel():
    @cuda.jit
    def any_non_finite(values, flag):
        start, step = cuda.grid(1), cuda.gridsize(1)
        for i in range(start, values.shape[0], step):
            v = values[i]
            if v != v or v - v != 0:          # NaN, or +-inf (inf - inf is NaN)
                flag[0] = 1
    return any_non_finite


def device_name():
    """The current GPU's name (the tuning cache keys measured GPU choices by it)."""
    try:
        name = cuda.get_current_device().name
    except AttributeError:                     # the simulator's device has none
        return "numba CUDA simulator"
    return name.decode() if isinstance(name, bytes) else str(name)


def check_out(spec, out, arrays):
    """The GPU form of the ``out=`` checks: a C-contiguous device array of the
    exact shape and dtype, sharing no memory with the inputs."""
    from ..devices import is_device_array
    if not is_device_array(out):
        raise TypeError(f"{spec.op}: out must be a GPU array for a GPU call, got "
                        f"{type(out).__name__}")
    out = as_device(spec.op, "out", out)
    if tuple(out.shape) != spec.user_output_shape:
        raise ValueError(f"{spec.op}: out must have shape {spec.user_output_shape}, got "
                         f"out.shape={tuple(out.shape)}")
    if out.dtype != spec.dtype:
        raise ValueError(f"{spec.op}: out must have dtype {spec.dtype}, got "
                         f"out.dtype={out.dtype}")
    lo, hi = _extent(out)
    for name, array in arrays.items():
        if array is not None:
            a_lo, a_hi = _extent(array)
            if a_lo < hi and lo < a_hi:
                raise ValueError(f"{spec.op}: out must not share memory with {name}")
    return out


def _extent(array):
    """(first, past-the-end) address of a C-contiguous device array."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        start = interface["data"][0]
    else:                                       # the simulator: a NumPy array inside
        start = array._ary.__array_interface__["data"][0]
    return start, start + array.size * array.dtype.itemsize


def result_buffer(spec, out, stream):
    """Where the algorithm writes: ``out`` itself, or a compute-dtype array."""
    if out is not None and out.dtype == spec.compute_dtype:
        return as_device(spec.op, "out", out)
    return empty(spec.output_shape, spec.compute_dtype, stream)


def finish(spec, result, out, stream, unbatched=None):
    """Cast into a float16 ``out`` or result, drop the batch axis of
    unbatched calls; returns a numba device array."""
    if out is not None:
        out = as_device(spec.op, "out", out)
        if result is not out:
            cast(result.reshape(-1), out.reshape(-1), stream)
        return out
    if spec.dtype != spec.compute_dtype:
        cast_to = empty(result.shape, spec.dtype, stream)
        cast(result.reshape(-1), cast_to.reshape(-1), stream)
        result = cast_to
    unbatched = spec.unbatched if unbatched is None else unbatched
    return result.reshape(result.shape[1:]) if unbatched else result


def ptx_kernels():
    """``(name, python function, signature)`` of this module's kernels for
    ``numba.cuda.compile_ptx``."""
    from numba import types
    flat = {name: types.Array(t, 1, "C") for name, t in
            (("float16", types.float16), ("float32", types.float32),
             ("float64", types.float64))}
    found = [(f"cast_{a}_{b}", _cast_kernel().py_func, (flat[a], flat[b]))
             for a, b in (("float16", "float32"), ("float32", "float16"),
                          ("float32", "float64"), ("float64", "float32"))]
    for name in ("float32", "float64"):
        found.append((f"any_non_finite_{name}", _finite_kernel().py_func,
                      (flat[name], types.Array(types.int32, 1, "C"))))
        found.append((f"zero_flat_{name}", _zero_kernel().py_func, (flat[name],)))
    return found
