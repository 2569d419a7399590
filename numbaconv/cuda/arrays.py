"""Device arrays in and out of a GPU call.

The GPU path takes numba device arrays and anything with
``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors: wrapped by
``numba.cuda.as_cuda_array`` without a copy) and returns numba device
arrays, which CuPy (``cupy.asarray``) and PyTorch (``torch.as_tensor(...,
device="cuda")``) wrap without a copy.  Arrays must be C-contiguous or
channels-last (Note [GPU memory format]); other strides are refused (a
gather kernel per rank for a case the frameworks rarely produce: their
``.contiguous()`` / ``cupy.ascontiguousarray`` make one).

Note [GPU memory format]
~~~~~~~~~~~~~~~~~~~~~~~~
A channels-last GPU array (Note [memory format] in :mod:`numbaconv.spec`:
the logical ``(N, C, spatial...)`` view of dense ``(N, spatial..., C)``
memory, as PyTorch's ``channels_last`` tensors; unbatched too) is served by
packing on the device, here and in :mod:`numbaconv.backends.cuda`: the GPU
kernels index canonical arrays, and the GPU algorithms declare the
contiguous format only.  The call's spec keeps ``memory_format=
"channels_last"`` (``explain`` and ``choose_algorithm`` report it, and the
GPU plans add the two copies: :mod:`numbaconv.algorithms.gpu`), but the
backend runs the algorithm on the contiguous spec
(``CudaBackend.run_spec``) with canonical arrays: :func:`canonical` packs
a channels-last input, output gradient, residual or weight into a new
C-contiguous array with one transposing kernel (:func:`transpose_copy`,
casting a float16 input to float32 in the same pass), the algorithm writes
a canonical result, and :func:`finish` transposes it once into the
channels-last output (or ``out=``, which must be channels-last), so each
value crosses one extra time each way.  The registry's host packing
(:func:`numbaconv.algorithms.registry.run_packed`) is never reached: it
copies with NumPy, which cannot touch device memory, and a GPU algorithm
given a channels-last spec refuses it instead of misreading the arrays.
The weight gradient is canonical whatever the format.  numba-cuda copies
device to device only between contiguous arrays (``copy_to_device`` checks
it), so a strided view cannot be copied without a kernel; the kernel moves
tiles through shared memory so that both its reads and its writes are
contiguous runs.  The same kernels run on the same canonical values as
for a contiguous call: the results are bit-identical to it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from .. import workspaces
from ..spec import SUPPORTED_DTYPES, c_contiguous_strides, memory_format_of
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
    if not obj.is_c_contiguous() and not _channels_last_some_rank(obj):
        raise ValueError(f"{op}: {name} must be a C-contiguous GPU array or a channels-last "
                         f"one (a view of (N, spatial..., C) memory), got strides "
                         f"{_strides(obj)} for shape {tuple(obj.shape)}; make a contiguous "
                         f"copy (.contiguous() in PyTorch, cupy.ascontiguousarray)")
    return obj


def _channels_last_some_rank(array):
    """Whether ``array`` is channels-last as a batched or an unbatched array
    of 1 to 3 spatial axes (the call's rank is not known yet)."""
    return any(memory_format_of(array, n) == "channels_last"
               for n in (array.ndim - 2, array.ndim - 1) if 1 <= n <= 3)


def is_channels_last(array, ndim):
    """Whether ``array`` (``ndim`` spatial axes, batched or not) is laid out
    channels-last: its channel axis moved last makes it C-contiguous.  True
    for an array that is both layouts at once (one channel, or every spatial
    size 1), as the host's ``out=`` check accepts it."""
    axis = array.ndim - ndim - 1
    moved = lambda t: tuple(t[:axis]) + tuple(t[axis + 1:]) + (t[axis],)   # noqa: E731
    return c_contiguous_strides(moved(tuple(array.shape)), moved(tuple(array.strides)),
                  np.dtype(array.dtype).itemsize)


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


def _device_block(nbytes):
    return cuda.device_array(nbytes, dtype=np.uint8)


def workspace(shape, dtype, stream):
    """A C-contiguous device scratch array of ``shape`` and ``dtype`` (not
    zeroed) for work queued on ``stream``: a slice of this thread's arena for
    the current GPU inside a frame (Note [workspace arena] in
    :mod:`numbaconv.workspaces`), else, or when the arena is full, a new one.

    Note [device workspaces]
    ~~~~~~~~~~~~~~~~~~~~~~~~
    The GPU calls return before their kernels finish, so an arena's bytes
    may still be read by kernels queued on the stream of the last call that
    took them.  A later call on the same stream queues after them; a call
    on another stream first waits for that stream (its queued work only),
    so two streams never race on a workspace.  Each device of each thread
    has its own arena, of device memory (``cuda.device_array``), sized and
    bounded like the host's; ``numbaconv.release_workspaces()`` frees them
    too (numba's deferred deallocation frees the memory once no kernel
    needs it)."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    dtype = np.dtype(dtype)
    if not workspaces.in_frame():
        return empty(shape, dtype, stream)
    nbytes = math.prod(shape) * dtype.itemsize
    arena = workspaces.arena(("cuda", _device_id()), _device_block)
    block, start = arena.take(nbytes)
    if block is None:
        return empty(shape, dtype, stream)
    last, current = arena.owner, (stream or 0)
    if last is not None and last is not current:
        (cuda.default_stream() if isinstance(last, int) else last).synchronize()
    arena.owner = current
    return block[start:start + nbytes].view(dtype).reshape(shape)


def _device_id():
    """The current GPU's number (0 under the simulator)."""
    try:
        return cuda.get_current_device().id
    except AttributeError:
        return 0


def to_device(array, stream):
    """A host array copied to the device."""
    return cuda.to_device(np.ascontiguousarray(array), stream=stream)


def to_host(array, stream):
    """A device array copied to the host (waits for ``stream``)."""
    return array.copy_to_host(stream=stream)


def canonical(array, shape, dtype, stream, ndim=None, name="a GPU array"):
    """``array`` as a C-contiguous ``dtype`` array of ``shape``: a view when
    it is C-contiguous and of ``dtype``, else a copy: a cast (float16 input is
    computed in float32) or, for an array that is channels-last with ``ndim``
    spatial axes, a packing copy that casts too (Note [GPU memory format]).
    Other strides are a ValueError naming the array as ``name``."""
    if array.is_c_contiguous():
        if array.dtype == np.dtype(dtype):
            return array.reshape(shape)
        result = workspace(shape, dtype, stream)
        cast(array.reshape(-1), result.reshape(-1), stream)
        return result
    if ndim is None or not is_channels_last(array, ndim):
        raise ValueError(f"{name} must be a C-contiguous GPU array or a channels-last one "
                         f"with {ndim} spatial axes, got strides {_strides(array)} for shape "
                         f"{tuple(array.shape)}; make a contiguous copy")
    result = workspace(shape, dtype, stream)
    memory = channels_last_memory(array, ndim)
    n, s, c = memory.shape
    transpose_copy(memory, result.reshape(n, c, s), stream)
    return result


def strided_view(array, shape, strides):
    """A device array of ``shape`` and byte ``strides`` over the memory of the
    device array ``array``, from its first element (the caller keeps it within
    ``array``'s extent): numba's ``reshape`` views only contiguous arrays and
    its ``transpose`` only 2-D ones."""
    shape, strides = tuple(int(v) for v in shape), tuple(int(v) for v in strides)
    if hasattr(array, "_ary"):                  # the simulator: a NumPy array inside
        view = np.lib.stride_tricks.as_strided(array._ary, shape, strides)
        return type(array)(view, stream=array.stream)
    from numba.cuda.cudadrv.devicearray import DeviceNDArray
    return DeviceNDArray(shape, strides, array.dtype, stream=array.stream,
                         gpu_data=array.gpu_data)


def channels_last_memory(array, ndim):
    """The C-contiguous ``(N, S, C)`` view of the memory of a channels-last
    ``array`` of ``ndim`` spatial axes (``S`` their product; N = 1 unbatched)."""
    shape = tuple(array.shape)
    axis = len(shape) - ndim - 1
    n, c, s = (shape[0] if axis == 1 else 1), shape[axis], math.prod(shape[axis + 1:])
    item = array.dtype.itemsize
    return strided_view(array, (n, s, c), (s * c * item, c * item, item))


def empty_channels_last(shape, dtype, ndim, stream):
    """A new channels-last device array of the logical ``shape`` (``ndim``
    spatial axes, batched or not): a view of C-contiguous ``(N, spatial...,
    C)`` memory."""
    shape = tuple(shape)
    axis = len(shape) - ndim - 1
    strides, step = [0] * len(shape), np.dtype(dtype).itemsize
    for i in (axis,) + tuple(range(len(shape) - 1, axis, -1)) + tuple(range(axis - 1, -1, -1)):
        strides[i], step = step, step * shape[i]
    return cuda.device_array(shape, dtype=dtype, strides=tuple(strides), stream=stream)


def to_device_in_format(array, stream):
    """A host array copied to the device, channels-last when it is (as a
    batched or unbatched array of 1 to 3 spatial axes), else C-contiguous:
    the backend's host round trips keep the call's memory format."""
    if not array.flags.c_contiguous:
        for ndim in (array.ndim - 2, array.ndim - 1):
            if 1 <= ndim <= 3 and memory_format_of(array, ndim) == "channels_last":
                axis = array.ndim - ndim - 1
                memory = to_device(np.moveaxis(array, axis, -1), stream)
                strides = tuple(memory.strides)
                return strided_view(memory, array.shape,
                                    strides[:axis] + strides[-1:] + strides[axis:-1])
    return to_device(array, stream)


def transpose_copy(src, dst, stream):
    """``dst[n, b, a] = src[n, a, b]``, converted to ``dst``'s dtype: ``src``
    ``(N, A, B)`` and ``dst`` ``(N, B, A)``, C-contiguous device arrays; tiles
    through shared memory (Note [GPU memory format])."""
    n, a, b = src.shape
    if src.size == 0:
        return
    tile = launch.TRANSPOSE_TILE
    tiles = -(-a // tile) * -(-b // tile)
    kernel = _transpose_kernel(np.result_type(src.dtype, dst.dtype).name)
    kernel[(min(tiles, 2**31 - 1), 1, min(n, 65535)), (tile, launch.TRANSPOSE_ROWS),
           stream](src, dst)


@functools.cache
def _transpose_kernel(tile_dtype_name):
    T, R = launch.TRANSPOSE_TILE, launch.TRANSPOSE_ROWS
    SKEWED = T + 1            # a padding column: a tile column's values sit in distinct banks
    tile_type = np.dtype(tile_dtype_name)   # NumPy dtypes: numba-cuda's own type objects

    @cuda.jit
    def transpose_tiles(src, dst):
        """dst[n, b, a] = src[n, a, b]; block (T, R) threads, grid (tiles, 1,
        images), each stepping over the rest; a tile is read along b and
        written along a, both in runs of T."""
        tile = cuda.shared.array((T, SKEWED), tile_type)
        N, A, B = src.shape
        tiles_b = (B + T - 1) // T
        tiles = ((A + T - 1) // T) * tiles_b
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        for n in range(cuda.blockIdx.z, N, cuda.gridDim.z):
            for t in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
                a0 = (t // tiles_b) * T
                b0 = (t % tiles_b) * T
                for i in range(ty, T, R):
                    if a0 + i < A and b0 + tx < B:
                        tile[i, tx] = src[n, a0 + i, b0 + tx]
                cuda.syncthreads()
                for i in range(ty, T, R):
                    if b0 + i < B and a0 + tx < A:
                        dst[n, b0 + i, a0 + tx] = tile[tx, i]
                cuda.syncthreads()
    return transpose_tiles


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


def _channels_last_output(spec):
    """Whether ``spec``'s result is channels-last: a channels-last call that
    is not a weight gradient (always canonical)."""
    return spec.channels_last and spec.computation != "grad_weight"


def check_out(spec, out, arrays):
    """The GPU form of the ``out=`` checks: a device array of the exact shape
    and dtype, contiguous in the call's memory format, sharing no memory with
    the inputs."""
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
    if _channels_last_output(spec):
        if not is_channels_last(out, spec.ndim):
            raise ValueError(
                f"{spec.op}: out must be channels-last contiguous, as the call's input is "
                f"channels_last (the logical view of (N, spatial..., C) memory), got a GPU "
                f"array with out.strides={_strides(out)}")
    elif not out.is_c_contiguous():
        raise ValueError(f"{spec.op}: out must be C-contiguous, as the call's input is "
                         f"contiguous, got a GPU array with out.strides={_strides(out)}")
    lo, hi = _extent(out)
    for name, array in arrays.items():
        if array is not None:
            a_lo, a_hi = _extent(array)
            if a_lo < hi and lo < a_hi:
                raise ValueError(f"{spec.op}: out must not share memory with {name}")
    return out


def _extent(array):
    """(first, past-the-end) address of a dense device array (C-contiguous or
    channels-last: its first element is its lowest address)."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is not None:
        start = interface["data"][0]
    else:                                       # the simulator: a NumPy array inside
        start = array._ary.__array_interface__["data"][0]
    return start, start + array.size * array.dtype.itemsize


def result_buffer(spec, out, stream):
    """Where the algorithm writes: ``out`` itself, or a canonical compute-dtype
    array (always for a channels-last call: Note [GPU memory format]); one
    that :func:`finish` copies or casts is scratch (:func:`workspace`), the
    one it returns is new."""
    channels_last = _channels_last_output(spec)
    if out is not None and out.dtype == spec.compute_dtype and not channels_last:
        return as_device(spec.op, "out", out)
    if out is not None or channels_last or spec.dtype != spec.compute_dtype:
        return workspace(spec.output_shape, spec.compute_dtype, stream)
    return empty(spec.output_shape, spec.compute_dtype, stream)


def finish(spec, result, out, stream, unbatched=None):
    """Cast into a float16 ``out`` or result, transpose into a channels-last
    one (Note [GPU memory format]), drop the batch axis of unbatched calls;
    returns a numba device array."""
    unbatched = spec.unbatched if unbatched is None else unbatched
    if _channels_last_output(spec):
        target = (as_device(spec.op, "out", out) if out is not None else
                  empty_channels_last(spec.output_shape, spec.dtype, spec.ndim, stream))
        memory = channels_last_memory(target, spec.ndim)
        n, s, c = memory.shape
        transpose_copy(result.reshape(n, c, s), memory, stream)
        return target[0] if unbatched and out is None else target
    if out is not None:
        out = as_device(spec.op, "out", out)
        if result is not out:
            cast(result.reshape(-1), out.reshape(-1), stream)
        return out
    if spec.dtype != spec.compute_dtype:
        cast_to = empty(result.shape, spec.dtype, stream)
        cast(result.reshape(-1), cast_to.reshape(-1), stream)
        result = cast_to
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
    # the transposing copy: same dtype, and the casts of packing float16 input
    # and of unpacking into a float16 result (the tile in the wider dtype)
    cube = {name: types.Array(t, 3, "C") for name, t in
            (("float16", types.float16), ("float32", types.float32),
             ("float64", types.float64))}
    for a, b in (("float32", "float32"), ("float64", "float64"), ("float16", "float32"),
                 ("float32", "float16"), ("float32", "float64")):
        tile = np.result_type(a, b).name
        found.append((f"transpose_tiles_{a}_{b}", _transpose_kernel(tile).py_func,
                      (cube[a], cube[b])))
    return found
