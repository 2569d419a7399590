"""Workspaces kept between calls: one arena per thread and device.

A call takes its scratch buffers (column tiles, transformed tiles, packed
copies of the input, FFT blocks ...) with :func:`scratch` (host arrays) or
:meth:`Arena.take` (device arrays, :mod:`numbaconv.cuda.arrays`) inside a
:class:`frame`; the public functions open one frame per call, and the
rewrites one per transposed phase and weight-gradient batch chunk (so
that those reuse each other's bytes).  The output is never taken from
here.  Outside any frame (an algorithm's ``run`` called directly)
:func:`scratch` is ``np.empty``.

Note [workspace arena]
~~~~~~~~~~~~~~~~~~~~~~
Each call allocated its workspaces afresh, and glibc returns large blocks
to the kernel (``munmap``, or a heap trim) as they are freed: the next call
page-faulted every page of them again.  A user's loop of ``conv2d(x, w,
padding=1)`` on resnet3x3 (Winograd) spent about half its time on those
faults on the development VM (7 ms a call against 3.6 ms with ``out=`` or
``MALLOC_MMAP_THRESHOLD_`` set; issue 27), and ``numbaconv bench`` hid it:
the other algorithms it times in the same process free large blocks
first, which raises glibc's threshold.

So every thread keeps, per device, one block of memory (an *arena*) and
hands out its scratch buffers as slices of it, by a bump pointer: a frame
remembers the pointer when it opens and puts it back when it closes, so
the buffers of one call never overlap (each is a distinct slice) and the
next call reuses the same bytes.  Frames nest (a transposed problem runs
its phases, each a run with a frame of its own, while the outer frame's
buffers stay live below them).  A buffer must not outlive its frame; no
result returned to a caller is a slice of an arena.

The block is sized at the end of a frame to the most the outermost frame
has taken so far (its high-water mark), at most the workspace limit
(:func:`numbaconv.set_workspace_limit`): the first call of a shape
allocates as before and sizes the block, every later one takes all its
scratch from the block and allocates only its output (and the later
phases of a transposed problem, or timed runs inside a tuning call, take
theirs from the block their first one sized).  What a call takes
past the block's end is a fresh array, as before (never more memory held
than the limit, per thread and device).  :func:`release_workspaces` frees
every thread's blocks (a buffer still in use by a running call stays
alive through its own reference, and that call allocates afresh); a
lowered limit frees the blocks over it.

Arenas are per thread (``threading.local``), so concurrent calls from
Python threads never share a buffer; numba's worker threads and fft's
workers only use buffers their calling thread took.  Scratch is not
zeroed (``zero=True`` asks for it).  Buffers under :data:`SMALL` bytes
are plain arrays: glibc serves them from its heap without faults, and
the bookkeeping would be most of their cost.

Measured (docs/results-workspaces.md): a user's loop of resnet3x3's
Winograd call faulted in 1204 pages (4.7 MiB) every call before, none
after (6.2 -> 4.9 ms a call on two threads, 8.9 -> 6.7 on one); under a
128 KiB mmap threshold 2078 before, 785 after (its output).  The
bookkeeping costs 4-13 us of Python a call.
"""

from __future__ import annotations

import threading
from math import prod as _prod
import weakref

import numpy as np

from . import config

#: Alignment of every buffer in an arena (a cache line, the widest vector).
ALIGN = 64
#: Buffers under this many bytes are plain ``np.empty``: glibc serves them
#: from its heap without a page fault, and the arena's bookkeeping (about a
#: microsecond) would be most of their cost in the small calls that take
#: them.
SMALL = 4096


class Arena:
    """The workspaces of one thread on one device: a block and a bump pointer.

    ``allocate(nbytes)`` makes a block (a 1-D ``uint8`` array of at least
    ``nbytes`` bytes, host or device); ``base(block)`` is the offset of its
    first :data:`ALIGN`-aligned byte."""

    __slots__ = ("device", "allocate", "base", "block", "first", "size", "offset", "high",
                 "owner", "__weakref__")

    def __init__(self, device, allocate, base=lambda block: 0):
        self.device = device
        self.allocate = allocate
        self.base = base
        self.block = None         # the kept block, or None
        self.first = 0            # its first aligned byte
        self.size = 0             # usable bytes of the block
        self.offset = 0           # the bump pointer
        self.high = 0             # the outermost frame's high-water mark
        self.owner = None         # the device's own record (the last CUDA stream)

    def take(self, nbytes):
        """``(block, start)``: ``nbytes`` at ``block[start:]``, or ``(None, 0)``
        when they do not fit the kept block (the caller allocates afresh)."""
        start = self.offset
        end = start + -(-nbytes // ALIGN) * ALIGN
        self.offset = end
        if end > self.high:
            self.high = end
        block = self.block
        if block is None or end > self.size:
            return None, 0
        return block, self.first + start

    def grow(self):
        """Grow the block to the high-water mark, within the workspace limit
        (at a frame's end, when a buffer did not fit).  Safe inside an outer
        frame: its live buffers keep the old block alive, and the new one's
        bytes below the bump pointer are left unused."""
        want = min(self.high, config.get_workspace_limit())
        if want > self.size:
            self.block = None               # free the old block before the new one
            self.size = 0
            block = self.allocate(want + ALIGN)
            self.first = self.base(block)
            self.block = block
            self.size = want

    def close(self):
        """At the end of an outermost frame: grow the block to the frame's
        high-water mark, and start the next call from its beginning."""
        self.offset = 0
        if self.high > self.size:
            self.grow()
        self.high = 0

    def release(self, limit=0):
        """Drop the block if it holds more than ``limit`` bytes; returns the
        bytes dropped."""
        size = self.size
        if self.block is None or size <= limit:
            return 0
        self.block = None
        self.size = 0
        return size


def _host_block(nbytes):
    return np.empty(nbytes, dtype=np.uint8)


def _host_base(block):
    return -block.ctypes.data % ALIGN


class _State:
    """One thread's arenas and frame depth (plain slots: a thread-local
    attribute costs several times a slot's, and a call reads these often)."""

    __slots__ = ("depth", "host", "arenas", "others")

    def __init__(self):
        self.depth = 0
        self.host = None          # this thread's host arena (made on first use)
        self.arenas = {}          # device key -> Arena (the host one included)
        self.others = ()          # the arenas of other devices, in order made


class _Local(threading.local):
    def __init__(self):
        self.state = _State()


_local = _Local()
#: every thread's arenas, for release_workspaces (a thread's arenas go with it)
_all: weakref.WeakSet = weakref.WeakSet()
_all_lock = threading.Lock()


def arena(device, allocate, base=lambda block: 0):
    """This thread's arena for ``device`` (a hashable key), made with
    ``allocate`` and ``base`` (see :class:`Arena`) on first use."""
    state = _local.state
    found = state.arenas.get(device)
    if found is None:
        found = state.arenas[device] = Arena(device, allocate, base)
        if device == "cpu":
            state.host = found
        else:
            state.others += (found,)
        with _all_lock:
            _all.add(found)
    return found


def _host_arena():
    return _local.state.host or arena("cpu", _host_block, _host_base)


class frame:
    """``with frame():`` -- the scratch taken inside is handed back when it
    closes (Note [workspace arena]); the outermost frame of a thread sizes
    its arenas for the next call.  (A few attribute reads and writes: the
    public functions open one or two per call.)"""

    __slots__ = ("host", "others")

    def __enter__(self):
        state = _local.state
        state.depth += 1
        host = state.host
        self.host = 0 if host is None else host.offset
        others = state.others
        self.others = [a.offset for a in others] if others else ()
        return self

    def __exit__(self, *exc):
        state = _local.state
        state.depth -= 1
        host, others = state.host, state.others
        if state.depth == 0:
            if host is not None:
                host.close()
            for a in others:
                a.close()
        else:
            if host is not None:
                host.offset = self.host     # 0 if the arena was made inside
                if host.high > host.size:   # the next frame at this level fits
                    host.grow()
            saved = self.others
            for i, a in enumerate(others):
                a.offset = saved[i] if i < len(saved) else 0
                if a.high > a.size:
                    a.grow()
        return False


def in_frame():
    """Whether this thread is inside a :class:`frame`."""
    return _local.state.depth > 0


#: dtype-like -> np.dtype (np.dtype() of a type costs several dict lookups)
_DTYPES: dict = {}


def _dtype(dtype):
    found = np.dtype(dtype)
    _DTYPES[dtype] = found
    return found


def scratch(shape, dtype, zero=False):
    """A host scratch array of ``shape`` and ``dtype`` (C-contiguous, not
    zeroed unless ``zero``): a slice of this thread's arena inside a
    :class:`frame`, else (or when the arena is full, or for fewer than
    :data:`SMALL` bytes) a fresh array."""
    dtype = _DTYPES.get(dtype) or _dtype(dtype)
    nbytes = (shape if shape.__class__ is int else
              _prod(shape) if shape.__class__ is tuple else _prod(np.atleast_1d(shape))
              ) * dtype.itemsize
    if nbytes >= SMALL:
        state = _local.state
        if state.depth:
            arena = state.host or _host_arena()
            start = arena.offset
            end = start + ((nbytes + ALIGN - 1) & -ALIGN)
            arena.offset = end
            if end > arena.high:
                arena.high = end
            block = arena.block
            if block is not None and end <= arena.size:
                array = np.ndarray(shape, dtype, block, arena.first + start)
                if zero:
                    array.fill(0)
                return array
    return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)


def scratch_like(array):
    """A scratch array of ``array``'s shape and dtype (C-contiguous)."""
    return scratch(array.shape, array.dtype)


def contiguous(array, dtype=None):
    """``array`` itself when it is C-contiguous (and of ``dtype``), else a
    C-contiguous scratch copy: :func:`numpy.ascontiguousarray` for
    workspaces (the same values, copied the same way)."""
    if array.nbytes < SMALL or not _local.state.depth:
        return np.ascontiguousarray(array, dtype)
    if array.flags.c_contiguous and (dtype is None or array.dtype == dtype):
        return array
    result = scratch(array.shape, array.dtype if dtype is None else dtype)
    result[...] = array             # NumPy's casting copy, as ascontiguousarray's
    return result


def release_workspaces() -> int:
    """Free the workspaces numbaconv keeps between calls, on every thread and
    device (Note [workspace arena] in :mod:`numbaconv.workspaces`).

    Each thread keeps the scratch memory of its calls (at most the
    workspace limit per device) so that a repeated call allocates only its
    output; this hands it back.  A call running meanwhile keeps the buffers
    it holds and allocates afresh.  The next call allocates again.

    Returns
    -------
    int
        The bytes released.
    """
    with _all_lock:
        arenas = list(_all)
    return sum(a.release() for a in arenas)


def held_bytes(device=None):
    """Bytes the arenas of every thread hold (of ``device`` only, when given)."""
    with _all_lock:
        arenas = list(_all)
    return sum(a.size for a in arenas if device is None or a.device == device)


def _limit_changed(limit):
    """A new workspace limit: blocks over it are freed."""
    with _all_lock:
        arenas = list(_all)
    for a in arenas:
        a.release(limit)


config.on_limit_change(_limit_changed)


def all_finite(*arrays):
    """Whether every value of every array is finite (``np.isfinite(a).all()``,
    a large array's mask in scratch)."""
    for a in arrays:
        if a.size < SMALL or not _local.state.depth:
            if not np.isfinite(a).all():
                return False
            continue
        with frame():
            if not np.isfinite(a, out=scratch(a.shape, np.bool_)).all():
                return False
    return True
