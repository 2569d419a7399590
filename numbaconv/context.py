"""The execution context: what a call may use, read once per call.

Algorithms plan and run against an :class:`ExecutionContext` instead of
reading numba's thread count, the workspace limit or the device from
wherever they happen to be: the API layer takes one snapshot per call
(:func:`current_context`) and hands it down, so a plan and the run that
follows it agree, and a dispatcher can ask "what would you do with this
context" without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba

from . import config


@dataclass(frozen=True)
class ExecutionContext:
    """Resources of one call.

    Attributes
    ----------
    device : str
        ``"cpu"`` (the GPU backend adds its own).
    threads : int
        Threads the call runs on (``numba.get_num_threads()`` at the call).
    pool_threads : int
        Size of numba's thread pool (``numba.config.NUMBA_NUM_THREADS``).
        Partitions that decide a summation order are sized by it, never by
        ``threads``, so results do not depend on ``numba.set_num_threads``.
    workspace_limit : int
        Bytes of scratch memory the call may allocate, all threads together.
    stream : object
        The CUDA stream of a GPU call (``None``: the default stream).  Not
        part of the context's identity: plans do not depend on it.
    """

    device: str = "cpu"
    threads: int = 1
    pool_threads: int = 1
    workspace_limit: int = config.DEFAULT_WORKSPACE_LIMIT
    stream: object = field(default=None, compare=False, hash=False)


#: (device, threads, pool threads, workspace limit) -> ExecutionContext
#: without a stream: a frozen dataclass takes 1.5 us to build, and every
#: call takes a snapshot (docs/results-classes.md, "Python per call").  A
#: few entries at most (one per setting used).
_SNAPSHOTS: dict[tuple, ExecutionContext] = {}


def call_threads():
    """``numba.get_num_threads()``: the calling thread's setting.  numba's
    function takes two locks to see that its pool is up (1.5 us, and every
    call asks); once it is, the pool's own C getter answers (0.2 us)."""
    if _threads_getter:
        return _threads_getter[0]()
    threads = numba.get_num_threads()       # starts the pool
    from numba.np.ufunc import parallel
    _threads_getter.append(getattr(parallel, "_get_num_threads", numba.get_num_threads))
    return threads


_threads_getter: list = []


def current_context(device="cpu", stream=None):
    """A snapshot of the process's settings for one call."""
    return _snapshot((device, call_threads(), numba.config.NUMBA_NUM_THREADS,
                      config.get_workspace_limit()), stream)


def on_one_thread(ctx):
    """``ctx`` with ``threads`` 1 (the pool's size, and so every summation
    order, unchanged): for work smaller than waking a pool thread costs
    (Note [small calls] in :mod:`numbaconv.algorithms.registry`)."""
    if ctx.threads == 1:
        return ctx
    return _snapshot((ctx.device, 1, ctx.pool_threads, ctx.workspace_limit), ctx.stream)


def _snapshot(settings, stream):
    """The context of ``settings`` (device, threads, pool threads, workspace
    limit): a remembered one without a stream, else a new one."""
    if stream is not None:
        return ExecutionContext(*settings, stream=stream)
    ctx = _SNAPSHOTS.get(settings)
    if ctx is None:
        ctx = _SNAPSHOTS.setdefault(settings, ExecutionContext(*settings))
    return ctx
