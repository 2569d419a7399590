"""The one place that decides how CPU kernels are compiled.

Why these options:

* ``parallel=True`` -- kernels split their outermost ``prange`` across numba's
  thread pool (``numba.set_num_threads`` controls it).
* ``fastmath={"reassoc", "contract"}`` -- reassociation lets LLVM vectorise
  the dot-product reductions and contraction gives FMAs.  We deliberately do
  *not* enable ``nnan``/``ninf``: NaN and Inf must propagate like PyTorch.
  A kernel with no reductions whose sums must keep their written order
  (``reassociate=False``) gets contraction only.
* ``boundscheck=False`` -- indices are computed from a validated spec.
* ``error_model="numpy"`` -- no ZeroDivisionError checks around the many
  integer ``//`` and ``%`` of index arithmetic (every divisor is a validated
  positive size).  The checks' branches cost 15-30% of compile time.
* ``cache=True`` -- compiled machine code is stored next to the module (or
  in ``NUMBA_CACHE_DIR``) so a new process does not recompile.  On a
  read-only install with no writable cache location numba refuses caching at
  decoration time; we then compile in memory instead of failing at import.
  For developers: numba invalidates a cached function only when *its own*
  source file changes.  After editing something a kernel inlines from
  another module -- an ``intrinsic`` in ``kernels/blas.py`` or
  ``kernels/parallel.py``, a helper in another kernel module -- delete the
  stale cache (``find numbaconv -name '*.nb[ic]' -delete``); a stale
  ``gemm`` once passed wrong leading dimensions here.  Installs are not
  affected (every file is rewritten).
* ``inline="always"`` (:func:`inline_helper`) -- a small helper that hot
  loops call is inlined into its caller at numba's IR level, so it costs no
  call and touches no reference counts (Note [reference counts] in
  kernels/direct_channels_last.py); it is then compiled with its caller's
  options, so the helper's own matter only if Python calls it directly.
* ``no_cfunc_wrapper=True`` -- numba adds a C-callable wrapper to every
  function, for passing it as a first-class function value; kernels are
  called directly (or, the tasks, by address: Note [parallel shell]), so it
  is left out.  ``python_callable=False`` leaves out the Python wrapper (the
  unboxing of every argument) too, for a task or helper that only compiled
  code calls: together 0.05-0.1 s of each cold compile (half a small
  function's).  Calling such a kernel from Python fails.
"""

from __future__ import annotations

import warnings

import numba

FASTMATH = frozenset({"reassoc", "contract"})


#: FASTMATH without ``reassoc``: LLVM keeps the written order of every sum.
ORDERED_FASTMATH = frozenset({"contract"})


def cpu_kernel(function=None, *, parallel=True, reassociate=True, python_callable=True):
    """Decorate ``function`` as a numbaconv CPU kernel (see module notes).

    ``reassociate=False`` compiles it with :data:`ORDERED_FASTMATH`, for a
    kernel whose loops are not reductions and whose sums must keep the order
    they are written in: with ``reassoc`` LLVM may sum two expressions of
    the same shape in different orders (Note [row pairs] in
    kernels/direct_row_phases.py).
    ``python_callable=False`` leaves out the wrappers that let Python call
    it (module notes)."""

    def decorate(fn):
        options = dict(parallel=parallel,
                       fastmath=set(FASTMATH if reassociate else ORDERED_FASTMATH),
                       boundscheck=False, nogil=True, error_model="numpy",
                       no_cfunc_wrapper=True, no_cpython_wrapper=not python_callable)
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError as exc:   # "cannot cache function ...: no locator available"
            warnings.warn(
                f"numbaconv: cannot cache compiled kernel {fn.__name__} ({exc}); "
                "compiling in memory for this process. Set NUMBA_CACHE_DIR to a "
                "writable directory to keep compiled kernels between runs.",
                RuntimeWarning, stacklevel=2)
            return numba.njit(cache=False, **options)(fn)

    return decorate(function) if function is not None else decorate


def inline_helper(function=None, *, fastmath=True):
    """Decorate ``function`` as a helper that numba inlines into every
    kernel that calls it (``inline="always"``; module notes), with the
    kernels' options: :data:`FASTMATH` (none with ``fastmath=False``), no
    bounds checks, ``error_model="numpy"``.  Not cached: it is compiled only
    as part of its callers (or on its own when Python calls it)."""

    def decorate(fn):
        options = dict(inline="always", boundscheck=False, error_model="numpy")
        if fastmath:
            options["fastmath"] = set(FASTMATH)
        return numba.njit(**options)(fn)

    return decorate(function) if function is not None else decorate
