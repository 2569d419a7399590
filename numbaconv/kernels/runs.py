"""Copies of contiguous runs inside numba kernels.

Note [short runs]
~~~~~~~~~~~~~~~~~
LLVM vectorises a copy loop 64 floats at a time (four AVX-512 vectors per
iteration) and leaves the rest to a scalar loop, so a row of 28 floats, the
common width of late network stages, is copied one float at a time.
:func:`copy_run` emits ``llvm.memcpy`` instead, which becomes a call to the
C library's ``memcpy`` (vector moves of any length).  Measured on row
copies into the row phases of Note [row pairs] (kernels/direct_cpu.py;
AMD EPYC, one thread, 2026-11-30), us per 28x28 plane: 0.096 with the loop
against 0.063; 14x14: 0.055 against 0.030; 56x56: 0.21 against 0.23, so
runs of more than 48 floats keep the loop (``SHORT_RUN``).
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Longest run (in elements) that :func:`copy_run` copies with ``memcpy``.
SHORT_RUN = 48


@intrinsic
def copy_run(typingctx, dst, dst_start, src, src_start, count):
    """``dst[dst_start : dst_start + count] = src[src_start : src_start + count]``
    on the arrays' flat data, with ``llvm.memcpy`` (Note [short runs]).

    The two ranges must not overlap and must lie inside the arrays, which
    are C-contiguous and of one dtype.  Like numba's indexing, the ranges
    are checked only when bounds checking is on (``boundscheck=True``, or
    ``NUMBA_BOUNDSCHECK=1`` as in the CI's rerun of the kernel tests): then a
    range outside its array raises ``IndexError``."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype):
        return None
    sig = types.void(dst, dst_start, src, src_start, count)

    def codegen(context, builder, signature, args):
        dst_array = context.make_array(signature.args[0])(context, builder, args[0])
        src_array = context.make_array(signature.args[2])(context, builder, args[2])
        itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        to = builder.gep(dst_array.data,
                         [context.cast(builder, args[1], signature.args[1], types.intp)])
        start = builder.gep(src_array.data,
                            [context.cast(builder, args[3], signature.args[3], types.intp)])
        length = context.cast(builder, args[4], signature.args[4], types.intp)
        if context.enable_boundscheck:
            first_dst = context.cast(builder, args[1], signature.args[1], types.intp)
            first_src = context.cast(builder, args[3], signature.args[3], types.intp)
            zero = cgutils.intp_t(0)
            outside = cgutils.false_bit
            for first, array in ((first_dst, dst_array), (first_src, src_array)):
                past = builder.icmp_signed(">", builder.add(first, length), array.nitems)
                below = builder.icmp_signed("<", first, zero)
                outside = builder.or_(outside, builder.or_(past, below))
            outside = builder.or_(outside, builder.icmp_signed("<", length, zero))
            with builder.if_then(outside, likely=False):
                context.call_conv.return_user_exc(builder, IndexError,
                                                  ("copy_run: range outside its array",))
        cgutils.raw_memcpy(builder, to, start, length, itemsize)
        return context.get_dummy_value()

    return sig, codegen
