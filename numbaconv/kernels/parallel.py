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

Constraints on a task: its arguments are arrays and scalars (no nested
tuples: numba's parfor lowering rejects a tuple inside the argument tuple),
followed by ``first_job, stop_job``; it returns nothing.  A task that raises
(only an allocation can: kernels are compiled without bounds checks and with
``error_model="numpy"``) makes :func:`run_in_chunks` raise ``MemoryError``
after all chunks have finished.
"""

from __future__ import annotations

import numba
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import cpu_kernel

try:    # numba's own fast type fingerprint, the key of its dispatch cache
    from numba._dispatcher import compute_fingerprint as _type_key
except ImportError:     # pragma: no cover - fall back to the public (slower) typeof
    _type_key = numba.typeof


@intrinsic
def _call_task(typingctx, address, args, first_job, stop_job):
    """Call the compiled task at ``address`` with ``*args, first_job, stop_job``;
    return 1 if it raised, else 0."""
    task_types = tuple(args.types) + (types.intp, types.intp)
    signature = types.uint8(address, args, first_job, stop_job)

    def codegen(context, builder, sig, llargs):
        fnty = context.call_conv.get_function_type(types.void, task_types)
        fnptr = builder.inttoptr(llargs[0], fnty.as_pointer())
        values = cgutils.unpack_tuple(builder, llargs[1])
        values.append(context.cast(builder, llargs[2], sig.args[2], types.intp))
        values.append(context.cast(builder, llargs[3], sig.args[3], types.intp))
        status, _ = context.call_conv.call_function(builder, fnptr, types.void, task_types,
                                                    values)
        return builder.zext(status.is_error, context.get_value_type(types.uint8))

    return signature, codegen


@cpu_kernel
def _chunks_shell(address, args, jobs, chunks):
    """The number of chunks whose task raised."""
    failed = 0
    for chunk in prange(chunks):
        failed += _call_task(address, args, chunk * jobs // chunks, (chunk + 1) * jobs // chunks)
    return failed


#: (task, argument-type key) -> address of the task compiled for those types
_task_addresses = {}


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
    if _chunks_shell(task_address(task, args), args, jobs, max(1, min(chunks, jobs))):
        raise MemoryError(f"numbaconv: kernel {task.__name__} raised inside the thread "
                          "pool; its only failure mode is allocating its scratch buffers")
