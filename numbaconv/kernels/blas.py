"""GEMM from numba tasks through the CBLAS of an already loaded BLAS library.

Note [which BLAS]
~~~~~~~~~~~~~~~~~
numba's own ``np.dot`` calls SciPy's bundled OpenBLAS, and needs its
operands contiguous.  NumPy's wheels bundle a newer OpenBLAS whose
single-threaded SGEMM measured 7-28% faster on the shapes im2col produces
(M = 32...128, K = 256...576, N = 409...1024; 2026-11-29, OpenBLAS 0.3.31
against 0.3.30).  So the tasks call ``cblas_?gemm`` through its address,
found among the BLAS libraries that threadpoolctl sees (NumPy's first), and
with row strides, so that the product of a tile is written straight into
the output array (``beta = 1`` on a bias-filled output) and weight chunks
are plain views.  The call is made with numba's ``intrinsic``: the address
is an argument at run time, so the calling kernels stay cacheable.

Every call is made with BLAS limited to one thread
(:func:`single_threaded_blas`): the parallelism is numba's (Note [one thread
pool] in :mod:`numbaconv.kernels.im2col_cpu`).

Note [GEMM shapes]
~~~~~~~~~~~~~~~~~~
A GEMM's bits depend on its shape and on BLAS's own threads, not only on
the row and column an output sits in.  With OpenBLAS's Haswell kernels
(AVX2 CPUs; 0.3.31), ``(A @ B)[:m]`` differed from ``A[:m] @ B`` in the last
bits for nearly every ``m`` (8, 16, 32 and 64 included) and for every column
split, and one product on two BLAS threads differed from the same product
on one in 2-12% of its values.  The SkylakeX kernels of AVX-512 CPUs
happened to agree, which hid it.  So:

* every split that becomes a GEMM's shape (im2col's tiles and row blocks,
  Winograd's chunks, the weight gradient's blocks) is sized by numba's
  *pool* (``ExecutionContext.pool_threads``), never by the threads of one
  call, and results are the same for any ``numba.set_num_threads``;
* BLAS stays at one thread for as long as any call is inside
  :func:`single_threaded_blas`, however many Python threads call at once:
  a plain threadpoolctl limit is process-wide, so the first caller to
  leave restored two BLAS threads under the others' GEMMs, and it is
  ignored in every Python thread but the first that set one.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: CBLAS enum values (cblas.h)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

#: (symbol prefix, symbol suffix, integer bits) of the CBLAS builds we know:
#: NumPy's and SciPy's wheels (scipy-openblas, ILP64 and LP64), then plain
#: OpenBLAS / MKL / reference CBLAS.
_SYMBOL_STYLES = [("scipy_", "64_", 64), ("", "64_", 64), ("scipy_", "", 32), ("", "", 32)]

_found = None
_lock = threading.Lock()
_controller = None


class Gemm:
    """Addresses of one library's ``cblas_sgemm`` / ``cblas_dgemm``."""

    def __init__(self, path, sgemm, dgemm, int_bits):
        self.path = path
        self.int_bits = int_bits
        self._addresses = {np.dtype(np.float32): sgemm, np.dtype(np.float64): dgemm}
        #: a value of the library's integer type, passed to the kernels so
        #: that the intrinsic declares the call with the right integer width
        self.int_witness = np.int64(0) if int_bits == 64 else np.int32(0)

    def address(self, dtype):
        return self._addresses[np.dtype(dtype)]

    def __repr__(self):
        return f"Gemm({os.path.basename(self.path)}, {self.int_bits}-bit integers)"


def _blas_controller():
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS too, as numba does)
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller


def find_gemm():
    """The CBLAS GEMM the kernels call (cached), or ``None`` if no loaded BLAS
    library exports one.  NumPy's library is preferred (Note [which BLAS])."""
    global _found
    with _lock:
        if _found is None:
            _found = _search() or False
    return _found or None


def _search():
    libs = [lib for lib in _blas_controller().lib_controllers if lib.user_api == "blas"]
    # NumPy's own library first (its wheels put it in site-packages/numpy.libs)
    libs.sort(key=lambda lib: not os.path.basename(os.path.dirname(lib.filepath))
              .startswith("numpy"))
    for lib in libs:
        try:
            dll = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for prefix, suffix, bits in _SYMBOL_STYLES:
            try:
                s = getattr(dll, f"{prefix}cblas_sgemm{suffix}")
                d = getattr(dll, f"{prefix}cblas_dgemm{suffix}")
            except AttributeError:
                continue
            return Gemm(lib.filepath, ctypes.cast(s, ctypes.c_void_p).value,
                        ctypes.cast(d, ctypes.c_void_p).value, bits)
    return None


_limit_lock = threading.Lock()
_limit_users = 0
_restore = []
_limiters = None


def _own_pool_openblas():
    """``(get, set)`` thread-count functions of every loaded OpenBLAS with its
    own (pthreads) pool, and a controller of the other BLAS libraries.

    threadpoolctl (3.8) lets only one Python thread, the first to set a
    limit, change such an OpenBLAS; a limit set from any other thread (a
    dask worker, a user's thread pool) is silently ignored, and that
    thread's GEMMs ran on every BLAS thread (Note [GEMM shapes]).  So these
    are called directly; MKL, BLIS and OpenMP-backed OpenBLAS limit the
    calling thread only, through threadpoolctl."""
    own, others = [], []
    for lib in _blas_controller().lib_controllers:
        if lib.user_api != "blas":
            continue
        pair = None
        if lib.internal_api == "openblas" and lib.threading_layer != "openmp":
            dll = ctypes.CDLL(lib.filepath)
            for prefix, suffix, _bits in _SYMBOL_STYLES:
                get = getattr(dll, f"{prefix}openblas_get_num_threads{suffix}", None)
                set_ = getattr(dll, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    pair = (get, set_)
                    break
        if pair is None:
            others.append(lib.filepath)
        else:
            own.append(pair)
    return own, _blas_controller().select(filepath=others)


class _SingleThreadedBlas:
    """The context manager :func:`single_threaded_blas` returns: a class,
    not a generator, because it is entered on every im2col and Winograd
    call (a generator-based one cost 6 us a call)."""

    __slots__ = ()

    def __enter__(self):
        global _limit_users, _limiters
        with _limit_lock:
            if _limit_users == 0:
                if _limiters is None:       # the controller's libraries, found once
                    _limiters = _own_pool_openblas()
                own, others = _limiters
                for get, set_ in own:
                    previous = get()
                    if previous != 1:
                        set_(1)
                        _restore.append((set_, previous))
                if others.lib_controllers:
                    _restore.append((others.limit(limits=1).restore_original_limits, None))
            _limit_users += 1

    def __exit__(self, *exc):
        global _limit_users
        with _limit_lock:
            _limit_users -= 1
            if _limit_users == 0:
                while _restore:
                    undo, previous = _restore.pop()
                    if previous is None:
                        undo()
                    else:
                        undo(previous)
        return False


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


def single_threaded_blas():
    """Context manager limiting every loaded BLAS library to one thread.

    Reference-counted across Python threads (Note [GEMM shapes]): the limit
    is set by the first caller in, from whichever thread, and lifted by the
    last one out."""
    return _SINGLE_THREADED_BLAS


def _gemm_intrinsic(trans_b, trans_a=False):
    """The ``gemm`` / ``gemm_nt`` / ``gemm_tn`` intrinsic: A and B as given or
    transposed."""

    def typer(typingctx, address, int_witness, a, b, c, beta):
        if not all(isinstance(t, types.Array) and t.ndim == 2 for t in (a, b, c)):
            return None
        dtype = c.dtype
        if dtype not in (types.float32, types.float64) or a.dtype != dtype or b.dtype != dtype:
            return None
        sig = types.void(address, int_witness, a, b, c, beta)

        def codegen(context, builder, signature, args):
            addr, _, a_val, b_val, c_val, beta_val = args
            a_ty, b_ty, c_ty = signature.args[2:5]
            A = context.make_array(a_ty)(context, builder, a_val)
            B = context.make_array(b_ty)(context, builder, b_val)
            C = context.make_array(c_ty)(context, builder, c_val)
            fp = context.get_value_type(dtype)
            int_t = ir.IntType(int_witness.bitwidth)
            enum_t = ir.IntType(32)
            ptr_t = fp.as_pointer()
            itemsize = context.get_constant(types.intp, context.get_abi_sizeof(fp))

            def dim(array, axis):
                return builder.trunc(builder.extract_value(array.shape, axis), int_t) \
                    if int_t.width < 64 else builder.extract_value(array.shape, axis)

            def lead(array):
                # row stride in elements; a one-row view may carry any stride
                # (NumPy keeps a size-1 axis's stride arbitrary), and BLAS wants
                # at least the row length
                stride = builder.sdiv(builder.extract_value(array.strides, 0), itemsize)
                cols = builder.extract_value(array.shape, 1)
                one = context.get_constant(types.intp, 1)
                cols = builder.select(builder.icmp_signed(">", cols, one), cols, one)
                stride = builder.select(builder.icmp_signed(">", stride, cols), stride, cols)
                return builder.trunc(stride, int_t) if int_t.width < 64 else stride

            fnty = ir.FunctionType(ir.VoidType(), [enum_t, enum_t, enum_t, int_t, int_t, int_t,
                                                   fp, ptr_t, int_t, ptr_t, int_t, fp, ptr_t,
                                                   int_t])
            fn = builder.inttoptr(addr, fnty.as_pointer())
            beta_fp = context.cast(builder, beta_val, signature.args[5], dtype)
            builder.call(fn, [ir.Constant(enum_t, _ROW_MAJOR),
                              ir.Constant(enum_t, _TRANS if trans_a else _NO_TRANS),
                              ir.Constant(enum_t, _TRANS if trans_b else _NO_TRANS),
                              dim(C, 0), dim(C, 1), dim(A, 0 if trans_a else 1),
                              ir.Constant(fp, 1.0), A.data,
                              lead(A), B.data, lead(B), beta_fp, C.data, lead(C)])
            return context.get_dummy_value()

        return sig, codegen

    return typer


#: ``gemm(address, int_witness, a, b, c, beta)``: ``c = a @ b + beta * c``
#: through the CBLAS gemm at ``address``.  ``a`` (M, K), ``b`` (K, N) and
#: ``c`` (M, N) are 2-D arrays of one float dtype whose rows are contiguous
#: (unit inner stride); their row strides are passed as leading dimensions,
#: so they may be views into larger arrays.  ``int_witness`` is a scalar of
#: the library's integer type.
gemm = intrinsic(_gemm_intrinsic(False))
#: ``gemm_nt(...)``: ``c = a @ b.T + beta * c``, as ``gemm`` with ``b`` of
#: shape (N, K).
gemm_nt = intrinsic(_gemm_intrinsic(True))
#: ``gemm_tn(...)``: ``c = a.T @ b + beta * c``, as ``gemm`` with ``a`` of
#: shape (K, M) (a transposed convolution's weight read as it is stored:
#: Note [transposed weight] in :mod:`numbaconv.rewrites`).
gemm_tn = intrinsic(_gemm_intrinsic(False, trans_a=True))
