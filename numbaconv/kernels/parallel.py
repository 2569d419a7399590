"""Run a serial numba task over numba's thread pool without recompiling it.

:func:`run_in_chunks` splits ``jobs`` into ``chunks`` runs of consecutive
jobs (one per thread) and calls ``task(*args, first_job, stop_job)`` for each
run, in parallel.  Every parallel kernel of numbaconv is a serial *task*
(``cpu_kernel(parallel=False)``) run through this one shell.

Note [parallel shell]
~~~~~~~~~~~~~~~~~~~~~
A ``prange`` loop in an ``@njit(parallel=True)`` function is compiled into
four nested libraries (the outlined loop body, its gufunc wrapper, the
thread-pool wrapper and the function itself), and numba *links* each callee
into its caller: the caller's module gets a copy of the callee's code and
runs LLVM's full optimisation and machine-code generation over it again.
A task called from the ``prange`` body was therefore optimised and
code-generated five times.  Measured for the same-width planes kernel: 0.7-0.9
s per layer, 4.6 s of LLVM time for a 6.4 s cold compile.

Here the shell calls the task through its address, with numba's own calling
convention, instead of linking it: the task is compiled once, on its own,
and the shell (a few lines) is compiled once per argument-type tuple and
shared by every task with that tuple.  The same kernel then compiled in
3.0 s cold (task plus shell), ran at the same speed (depthwise benchmark
layer, A/B in one process) and gave bit-identical results.  Both are cached
to disk like every other kernel; the task's address is looked up once per
process and argument types.

The shell was itself a ``prange`` loop, so each argument-type tuple (every
task and dtype has its own) still paid numba's parfor passes and its four
libraries: 0.8-0.9 s of CPU per tuple on the 2-core AVX2 EPYC, for a loop
of two lines, in every first call with an empty cache.  Now the shell is a
serial function whose one intrinsic (:func:`_run_chunks`) does what the
parfor lowering did, directly: it stores the arguments in a closure on the
stack, defines a small runner that calls the task for a range of chunks,
and hands it to numba's thread pool (``numba_parallel_for``, the entry point
the parfor code calls, with ``get_num_threads()`` threads).  The pool calls
the runner once per thread with its range: the runner reads its first chunk
from its one "array" argument, whose base is NULL and step 1, so the pool's
pointer arithmetic hands it the chunk number.  A shell now compiles in
0.1-0.3 s (Note [tasks per kernel] in kernels/direct_layouts.py has the first
call's figures), the thread pool, the chunks and the job ranges are the
same, and so are the results.  Its code calls the pool's symbols, which
numba registers when it starts the pool: :func:`run_in_chunks` starts it
before its first call, so the shell also loads from the cache.

Note [one chunk]
~~~~~~~~~~~~~~~~
One chunk (one job, one thread, or a caller's choice for work too small to
share) is run by the shell on the calling thread: handing it to the pool
would wake a worker to do it while the caller waits.  The runner, its
range and so the results are the same.

Note [chunk scratch]
~~~~~~~~~~~~~~~~~~~~
A task that needs scratch (a patch, a column tile, transformed tiles) used
to allocate it at its start, once per chunk: every call allocated it
afresh.  Now the entry point takes one row per chunk from the call's
workspace arena (:func:`chunk_scratch`; Note [workspace arena] in
:mod:`numbaconv.workspaces`) and the task finds its row with
:func:`chunk_of`, which inverts the shell's split (chunk ``c`` starts at
job ``c * jobs // chunks``).  Chunks run one at a time on a thread, and no
two chunks share a row, so the rows never alias; the arithmetic is the
same, and so are the results.

Not every task: LLVM knows that arrays a task allocates itself alias
nothing else, and may vectorise loops over them freely; it cannot know
that of slices of an argument, and a loop that reads one and writes
another (or the output) then runs scalar or behind checks.  Measured on
one thread, scratch rows against the task's own buffers: the phase-plane
forms of the direct algorithm (two to four buffers a thread) ran 1.7x
(depthwise 3x3, 256 channels, 28x28: 1.27 -> 2.2 ms) to 4.6x (5x5: 1.2
-> 5.5 ms) slower; im2col's col2im (its columns added into the output;
since replaced by the transposed GEMM, whose column tiles are added in
the same way) 6% (up4x4: 12.4 -> 13.1 ms); the planes kernel 3% and the
thin channels-last one 2%; Winograd's two transform buffers within
noise.  So those keep allocating their own (small: a band of a plane, at
most 2 MiB a thread, Note [plane bands]; a row of channels; the transform
of one tile; the transposed GEMM's column tiles, up to its plan's share
of the limit), and so do the thin gradients' kernels
(kernels/direct_thin_grad.py).  The
tasks that take a row -- the channels-last patch rows of the direct
algorithm, im2col's column tiles (forward, channels-last, weight
gradient) and Winograd's ``V`` and ``M`` -- only fill their buffer from
the input or hand it to BLAS, and lost nothing measurable (resnet3x3
through direct, im2col and Winograd, its weight gradient, the
channels-last kernels: within the 2-3% noise of alternating runs).

Constraints on a task: its arguments are arrays and scalars (the closure
holds them as one flat tuple), followed by ``first_job, stop_job``; it
returns nothing.  A task that raises (only an allocation can: kernels are
compiled without bounds checks and with ``error_model="numpy"``) makes
:func:`run_in_chunks` raise ``MemoryError`` after all chunks have finished.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.ufunc.parallel import _launch_threads

from ..workspaces import scratch
from .jit import cpu_kernel, inline_helper

try:    # numba's own fast type fingerprint, the key of its dispatch cache
    from numba._dispatcher import compute_fingerprint as _type_key
except ImportError:     # pragma: no cover - fall back to the public (slower) typeof
    _type_key = numba.typeof


def _chunk_runner(context, module, closure_type, task_types):
    """The function numba's thread pool calls for a range of chunks: in the
    ufunc-kernel form ``void(char **args, intp *dims, intp *steps, void
    *data)`` that ``numba_parallel_for`` hands each thread, with its first
    chunk number in ``args[0]`` (Note [parallel shell]), its chunk count in
    ``dims[0]`` and the closure ``{task address, args, jobs, chunks,
    failures}`` in ``data``."""
    intp_t = context.get_value_type(types.intp)
    byte_ptr = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [byte_ptr.as_pointer(), intp_t.as_pointer(),
                                           intp_t.as_pointer(), byte_ptr])
    runner = ir.Function(module, fnty, name=module.get_unique_name("numbaconv_chunk_runner"))
    runner.linkage = "internal"
    builder = ir.IRBuilder(runner.append_basic_block("entry"))
    gu_args, dims, _, data = runner.args
    closure = builder.bitcast(data, closure_type.as_pointer())

    def field(i):
        return builder.gep(closure, [ir.Constant(ir.IntType(32), 0),
                                     ir.Constant(ir.IntType(32), i)])

    address, packed = builder.load(field(0)), builder.load(field(1))
    jobs, chunks = builder.load(field(2)), builder.load(field(3))
    taskty = context.call_conv.get_function_type(types.void, task_types)
    task = builder.inttoptr(address, taskty.as_pointer())
    values = cgutils.unpack_tuple(builder, packed)
    first_chunk = builder.ptrtoint(builder.load(gu_args), intp_t)
    with cgutils.for_range(builder, builder.load(dims), intp=intp_t) as loop:
        chunk = builder.add(first_chunk, loop.index)
        first_job = builder.sdiv(builder.mul(chunk, jobs), chunks)
        stop_job = builder.sdiv(builder.mul(builder.add(chunk, intp_t(1)), jobs), chunks)
        status, _ = context.call_conv.call_function(builder, task, types.void, task_types,
                                                    values + [first_job, stop_job])
        with builder.if_then(status.is_error, likely=False):
            builder.atomic_rmw("add", field(4), intp_t(1), "monotonic")
    builder.ret_void()
    return runner


def _borrowed(context, builder, tuple_type, value):
    """``value`` (a tuple of ``tuple_type``) with its arrays' reference-count
    owners cleared, as numba's parfor code passes arrays to its threads.

    Note [borrowed arrays]
    ~~~~~~~~~~~~~~~~~~~~~~
    Every view a task takes (``x.ravel()``, an array passed to an inlined
    helper) increments and decrements its array's reference count, an atomic
    on the count's cache line (Note [reference counts] in direct_channels_last).  The
    parfor shell handed its threads each array as a data pointer, shape and
    strides, with no owner, so those counts were no-ops; with the owners
    passed along, the threads' counts on the shared input and output bounced
    one cache line between the cores: dw7x7 ran 0.55 against 0.40 ms on two
    threads (each thread's part 1.18M cycles against 0.88M), at equal speed
    on one.  The arrays outlive the call (the caller holds them) and tasks
    keep no views of them, so the threads borrow them without counting.
    """
    items = []
    for i, ty in enumerate(tuple_type.types):
        item = builder.extract_value(value, i)
        if isinstance(ty, types.Array):
            array = context.make_array(ty)(context, builder, item)
            array.meminfo = cgutils.get_null_value(array.meminfo.type)
            array.parent = cgutils.get_null_value(array.parent.type)
            item = array._getvalue()
        items.append(item)
    return _pack(builder, value.type, items)


def _pack(builder, struct_type, items):
    value = cgutils.get_null_value(struct_type)
    for i, item in enumerate(items):
        value = builder.insert_value(value, item, i)
    return value


@intrinsic
def _run_chunks(typingctx, address, args, jobs, chunks):
    """Call the compiled task at ``address`` with ``*args, first_job,
    stop_job`` for each of ``chunks`` ranges of ``range(jobs)``, on numba's
    thread pool; return how many of those calls raised."""
    _launch_threads()           # the thread pool's symbols, for the code below
    task_types = tuple(args.types) + (types.intp, types.intp)
    signature = types.intp(address, args, jobs, chunks)

    def codegen(context, builder, sig, llargs):
        intp_t = context.get_value_type(types.intp)
        byte_ptr = ir.IntType(8).as_pointer()
        module = builder.module
        casts = [context.cast(builder, value, ty, types.intp)
                 for value, ty in ((llargs[0], sig.args[0]), (llargs[2], sig.args[2]),
                                   (llargs[3], sig.args[3]))]
        address, jobs, chunks = casts
        packed = _borrowed(context, builder, sig.args[1], llargs[1])
        closure_type = ir.LiteralStructType([intp_t, packed.type, intp_t, intp_t, intp_t])
        closure = cgutils.alloca_once(builder, closure_type)
        value = cgutils.get_null_value(closure_type)
        for i, item in enumerate((address, packed, jobs, chunks, intp_t(0))):
            value = builder.insert_value(value, item, i)
        builder.store(value, closure)
        runner = _chunk_runner(context, module, closure_type, task_types)
        # one "array" argument whose base is NULL and step 1: the thread pool
        # hands each call args[0] = base + step * (its first chunk)
        gu_args = cgutils.alloca_once_value(builder, cgutils.get_null_value(byte_ptr))
        dims = cgutils.alloca_once_value(builder, chunks)
        steps = cgutils.alloca_once_value(builder, intp_t(1))
        get_threads = cgutils.get_or_insert_function(module, ir.FunctionType(intp_t, []),
                                                     "get_num_threads")
        threads = builder.call(get_threads, [])
        threads = builder.select(builder.icmp_signed("<", threads, intp_t(1)), intp_t(1), threads)
        parallel_for = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [byte_ptr] * 5 + [intp_t] * 3),
            "numba_parallel_for")
        # Note [one chunk]: a single chunk runs on the calling thread
        with builder.if_else(builder.icmp_signed("==", chunks, intp_t(1))) as (one, many):
            with one:
                builder.call(runner, [gu_args, dims, steps, builder.bitcast(closure, byte_ptr)])
            with many:
                builder.call(parallel_for, [builder.bitcast(runner, byte_ptr),
                                            builder.bitcast(gu_args, byte_ptr),
                                            builder.bitcast(dims, byte_ptr),
                                            builder.bitcast(steps, byte_ptr),
                                            builder.bitcast(closure, byte_ptr),
                                            intp_t(0), intp_t(1), threads])
        failures = builder.gep(closure, [ir.Constant(ir.IntType(32), 0),
                                         ir.Constant(ir.IntType(32), 4)])
        return builder.load(failures)

    return signature, codegen


@cpu_kernel(parallel=False)
def _chunks_shell(address, args, jobs, chunks):
    """The number of chunks whose task raised."""
    return _run_chunks(address, args, jobs, chunks)


#: (task, argument-type key) -> address of the task compiled for those types
_task_addresses: dict = {}
#: whether numba's thread pool (and so the symbols the shell calls) is up
_pool: list = []


def task_address(task, args):
    """Address of ``task`` compiled for ``args`` plus ``(first_job, stop_job)``.

    Compiles (or loads from the disk cache) on first use per argument types.
    """
    key = (task, _type_key(args))
    address = _task_addresses.get(key)
    if address is None:
        arg_types = tuple(numba.typeof(value) for value in args) + (types.intp, types.intp)
        task.compile(arg_types)
        compiled = task.overloads[arg_types]
        address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        _task_addresses[key] = address
    return address


def run_in_chunks(task, args, jobs, chunks):
    """Run ``task(*args, first_job, stop_job)`` over ``range(jobs)`` in parallel.

    Parameters
    ----------
    task : numba dispatcher
        A serial kernel (``cpu_kernel(parallel=False)``) whose last two
        parameters are the half-open job range it must do.
    args : tuple
        Its other arguments: arrays and scalars only.
    jobs : int
        Number of jobs; job ranges are contiguous and cover ``range(jobs)``.
    chunks : int
        Number of ranges, normally ``numba.get_num_threads()`` so that each
        thread allocates its scratch buffers once.
    """
    if jobs <= 0:
        return
    if not _pool:       # before the shell is loaded: its code calls the pool
        _launch_threads()
        _pool.append(True)
    if _chunks_shell(task_address(task, args), args, jobs, max(1, min(chunks, jobs))):
        raise MemoryError(f"numbaconv: kernel {task.__name__} raised inside the thread "
                          "pool; its only failure mode is allocating its scratch buffers")


#: Row pitch of :func:`chunk_scratch`, in bytes: rows a cache line apart.
_ROW_BYTES = 64


def chunk_scratch(jobs, chunks, size, dtype):
    """One scratch row of at least ``size`` elements of ``dtype`` per chunk
    :func:`run_in_chunks` makes of ``jobs`` jobs (``chunks`` asked for): a
    2-D array from the call's workspace arena (Note [chunk scratch]); row
    ``chunk_of(first_job, jobs, rows)`` is the task's.  Not zeroed.
    ``dtype`` is a NumPy float dtype (the output's)."""
    step = _ROW_BYTES // dtype.itemsize          # a float32 or float64 dtype
    # run_in_chunks's chunks, max(1, min(chunks, jobs)), in the fewest steps
    return scratch((chunks if 0 < chunks < jobs else jobs or 1,
                    step * (-(-size // step) or 1)), dtype)


@inline_helper
def chunk_of(first_job, jobs, chunks):
    """The chunk whose job range starts at ``first_job`` when
    :func:`run_in_chunks` splits ``jobs`` jobs into ``chunks`` chunks (the
    smallest ``c`` with ``c * jobs // chunks >= first_job``: Note [chunk
    scratch])."""
    return (first_job * chunks + jobs - 1) // jobs
