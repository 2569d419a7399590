"""Copies of contiguous runs inside numba kernels: :func:`copy_run` (a run),
:func:`deinterleave_run` (a run's even and odd elements, apart) and
:func:`interleave_run` (two runs woven into one).

Note [short runs]
~~~~~~~~~~~~~~~~~
LLVM vectorises a copy loop 64 floats at a time (four AVX-512 vectors per
iteration) and leaves the rest to a scalar loop, so a row of 28 floats, the
common width of late network stages, is copied one float at a time.
:func:`copy_run` emits ``llvm.memcpy`` instead, which becomes a call to the
C library's ``memcpy`` (vector moves of any length).  Measured on row
copies into the row phases of Note [row pairs] (kernels/direct_row_phases.py;
AMD EPYC, one thread, 2026-11-30), us per 28x28 plane: 0.096 with the loop
against 0.063; 14x14: 0.055 against 0.030; 56x56: 0.21 against 0.23, so
runs of more than 48 floats keep the loop (``SHORT_RUN``).

Note [de-interleaved runs]
~~~~~~~~~~~~~~~~~~~~~~~~~~
The stride-two form of the phase-planes kernel (Note [stride-two phases] in
kernels/direct_row_phases.py) splits every input row into its even and odd
columns, each written into a row of its own phase plane.  Written as a
loop, LLVM vectorises that only over long flat runs (so the kernel split
bands of 16 rows into a scratch and then copied each row into place), and
the row copies cost more than the split.  :func:`deinterleave_block` says
it in LLVM's own terms instead: one unaligned vector load of ``2 * width``
values and two ``shufflevector`` s (AVX-512: ``vpermt2ps``), stored
straight into the two rows; :func:`deinterleave_run` covers a row of any
length with such blocks, the last one overlapping its neighbour (it
rewrites the same values).  Measured on MobileNet's dw_s2 (56x56 planes,
AMD EPYC with AVX-512, one thread, 2026-11-30), us per plane: the band
split and row copies 0.61, these blocks 0.25 (reading the 7.2 MB input is
most of it).
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from llvmlite import ir

from .jit import inline_helper

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
            outside = _check_ranges(context, builder, ((first_dst, length, dst_array),
                                                       (first_src, length, src_array)))
            with builder.if_then(outside, likely=False):
                context.call_conv.return_user_exc(builder, IndexError,
                                                  ("copy_run: range outside its array",))
        cgutils.raw_memcpy(builder, to, start, length, itemsize)
        return context.get_dummy_value()

    return sig, codegen


def _check_ranges(context, builder, ranges):
    """An LLVM ``i1``, true when some ``(first, count, array)`` of ``ranges``
    (``first`` and ``count`` intp values) does not lie inside its array: the
    condition on which the intrinsics here raise ``IndexError`` under bounds
    checking, as numba's indexing does."""
    zero = cgutils.intp_t(0)
    outside = cgutils.false_bit
    for first, count, array in ranges:
        past = builder.icmp_signed(">", builder.add(first, count), array.nitems)
        below = builder.icmp_signed("<", first, zero)
        negative = builder.icmp_signed("<", count, zero)
        outside = builder.or_(outside, builder.or_(builder.or_(past, below), negative))
    return outside


@intrinsic
def deinterleave_block(typingctx, dst, even_at, odd_at, src, src_at, width):
    """``dst[even_at + i] = src[src_at + 2*i]`` and ``dst[odd_at + i] =
    src[src_at + 2*i + 1]`` for ``i < width``, a literal int: one vector load
    and two shuffles (Note [de-interleaved runs]).  The two destination
    ranges must not overlap the source; arrays are C-contiguous, of one
    dtype, and checked as in :func:`copy_run`."""
    if not isinstance(width, types.IntegerLiteral):
        return None
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype):
        return None
    lanes = width.literal_value
    sig = types.void(dst, even_at, odd_at, src, src_at, width)

    def codegen(context, builder, signature, args):
        dst_array = context.make_array(signature.args[0])(context, builder, args[0])
        src_array = context.make_array(signature.args[3])(context, builder, args[3])
        at = [context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2, 4)]
        even, odd, start = at
        if context.enable_boundscheck:
            outside = _check_ranges(context, builder, (
                (even, cgutils.intp_t(lanes), dst_array),
                (odd, cgutils.intp_t(lanes), dst_array),
                (start, cgutils.intp_t(2 * lanes), src_array)))
            with builder.if_then(outside, likely=False):
                context.call_conv.return_user_exc(
                    builder, IndexError, ("deinterleave_block: range outside its array",))
        element = context.get_data_type(signature.args[0].dtype)
        wide = ir.VectorType(element, 2 * lanes)
        narrow = ir.VectorType(element, lanes)
        values = builder.load(builder.bitcast(builder.gep(src_array.data, [start]),
                                              wide.as_pointer()), align=1)
        for first, to in ((0, even), (1, odd)):
            picks = ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                [2 * i + first for i in range(lanes)])
            half = builder.shuffle_vector(values, values, picks)
            builder.store(half, builder.bitcast(builder.gep(dst_array.data, [to]),
                                                narrow.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@inline_helper(fastmath=False)
def deinterleave_run(dst, even_at, odd_at, src, src_at, count):
    """``dst[even_at + i] = src[src_at + 2*i]`` and ``dst[odd_at + i] =
    src[src_at + 2*i + 1]`` for ``i < count``: blocks of 16, 8 or 4 by
    :func:`deinterleave_block`, the last one overlapping the one before so
    that no element is read or written outside the ranges (Note
    [de-interleaved runs]); fewer than 4 one by one."""
    if count >= 16:
        i = 0
        while i + 16 < count:
            deinterleave_block(dst, even_at + i, odd_at + i, src, src_at + 2 * i, 16)
            i += 16
        last = count - 16
        deinterleave_block(dst, even_at + last, odd_at + last, src, src_at + 2 * last, 16)
    elif count >= 8:
        deinterleave_block(dst, even_at, odd_at, src, src_at, 8)
        last = count - 8
        deinterleave_block(dst, even_at + last, odd_at + last, src, src_at + 2 * last, 8)
    elif count >= 4:
        deinterleave_block(dst, even_at, odd_at, src, src_at, 4)
        last = count - 4
        deinterleave_block(dst, even_at + last, odd_at + last, src, src_at + 2 * last, 4)
    else:
        for i in range(count):
            dst[even_at + i] = src[src_at + 2 * i]
            dst[odd_at + i] = src[src_at + 2 * i + 1]


@intrinsic
def interleave_block(typingctx, dst, dst_at, src, even_at, odd_at, width):
    """``dst[dst_at + 2*i] = src[even_at + i]`` and ``dst[dst_at + 2*i + 1] =
    src[odd_at + i]`` for ``i < width``, a literal int: two vector loads and
    one shuffle, the inverse of :func:`deinterleave_block` (Note
    [de-interleaved runs]).  The destination range must not overlap the
    sources; arrays are C-contiguous, of one dtype, and checked as in
    :func:`copy_run`."""
    if not isinstance(width, types.IntegerLiteral):
        return None
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype):
        return None
    lanes = width.literal_value
    sig = types.void(dst, dst_at, src, even_at, odd_at, width)

    def codegen(context, builder, signature, args):
        dst_array = context.make_array(signature.args[0])(context, builder, args[0])
        src_array = context.make_array(signature.args[2])(context, builder, args[2])
        at = [context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 3, 4)]
        to, even, odd = at
        if context.enable_boundscheck:
            outside = _check_ranges(context, builder, (
                (to, cgutils.intp_t(2 * lanes), dst_array),
                (even, cgutils.intp_t(lanes), src_array),
                (odd, cgutils.intp_t(lanes), src_array)))
            with builder.if_then(outside, likely=False):
                context.call_conv.return_user_exc(
                    builder, IndexError, ("interleave_block: range outside its array",))
        element = context.get_data_type(signature.args[0].dtype)
        wide = ir.VectorType(element, 2 * lanes)
        narrow = ir.VectorType(element, lanes)
        halves = [builder.load(builder.bitcast(builder.gep(src_array.data, [start]),
                                               narrow.as_pointer()), align=1)
                  for start in (even, odd)]
        picks = ir.Constant(ir.VectorType(ir.IntType(32), 2 * lanes),
                            [i // 2 + (lanes if i % 2 else 0) for i in range(2 * lanes)])
        values = builder.shuffle_vector(halves[0], halves[1], picks)
        builder.store(values, builder.bitcast(builder.gep(dst_array.data, [to]),
                                              wide.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@inline_helper(fastmath=False)
def interleave_run(dst, dst_at, src, even_at, odd_at, count):
    """``dst[dst_at + 2*i] = src[even_at + i]`` and ``dst[dst_at + 2*i + 1] =
    src[odd_at + i]`` for ``i < count``: blocks of 16, 8 or 4 by
    :func:`interleave_block`, the last one overlapping the one before (it
    rewrites the same values); fewer than 4 one by one."""
    if count >= 16:
        i = 0
        while i + 16 < count:
            interleave_block(dst, dst_at + 2 * i, src, even_at + i, odd_at + i, 16)
            i += 16
        last = count - 16
        interleave_block(dst, dst_at + 2 * last, src, even_at + last, odd_at + last, 16)
    elif count >= 8:
        interleave_block(dst, dst_at, src, even_at, odd_at, 8)
        last = count - 8
        interleave_block(dst, dst_at + 2 * last, src, even_at + last, odd_at + last, 8)
    elif count >= 4:
        interleave_block(dst, dst_at, src, even_at, odd_at, 4)
        last = count - 4
        interleave_block(dst, dst_at + 2 * last, src, even_at + last, odd_at + last, 4)
    else:
        for i in range(count):
            dst[dst_at + 2 * i] = src[even_at + i]
            dst[dst_at + 2 * i + 1] = src[odd_at + i]
