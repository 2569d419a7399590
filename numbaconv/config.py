"""Process-wide settings.

``workspace limit``: the most scratch memory, in bytes, that one call of an
algorithm may allocate for its intermediate buffers, all threads together
(direct's per-thread scratch by loop order: patch rows, a row of outputs,
a padded plane or a band of phase planes; im2col's column tiles and
weight-gradient segments; fft's weight spectrum and transformed blocks;
winograd's transformed tiles).
Default 64 MiB.  A plan whose smallest workspace is over it does not run
(``MemoryError`` for an explicit algorithm; ``"auto"`` passes it over).
Each thread keeps up to the limit of scratch between calls, per device
(Note [workspace arena] in :mod:`numbaconv.workspaces`;
``numbaconv.release_workspaces()`` frees it).
The inputs, the output and the rearranged copies of the input (direct's
and winograd's padded channels-last copy among them), weight and output
gradient do not count (docs/semantics.md, "Workspace limit").
"""

from __future__ import annotations

import numbers

DEFAULT_WORKSPACE_LIMIT = 64 * 2**20
#: Smallest accepted limit: below it the tiles are too small for BLAS to be
#: efficient, and every realistic layer still fits one-pixel tiles.
MIN_WORKSPACE_LIMIT = 2**20

_workspace_limit = DEFAULT_WORKSPACE_LIMIT
#: called with the new limit when it changes (the workspace arenas free
#: blocks over a lowered limit: Note [workspace arena] in numbaconv.workspaces)
_listeners: list = []


def on_limit_change(listener) -> None:
    """Call ``listener(new_limit)`` whenever the workspace limit changes."""
    _listeners.append(listener)


def get_workspace_limit() -> int:
    """The workspace limit in bytes (see :func:`set_workspace_limit`)."""
    return _workspace_limit


def set_workspace_limit(nbytes: int) -> None:
    """Cap the scratch memory one convolution call may allocate.

    Parameters
    ----------
    nbytes : int or None
        The limit in bytes, at least 1 MiB; ``None`` restores the default
        (64 MiB).  The algorithms size their scratch buffers to it; one
        whose smallest workspace is still over it (fft's weight spectrum,
        one Winograd tile per thread, direct's padded plane or two-row
        band per thread) raises ``MemoryError`` when named and is passed
        over by ``"auto"``.

    Returns
    -------
    int
        The previous limit, so that a caller can restore it.
    """
    global _workspace_limit
    if nbytes is None:
        nbytes = DEFAULT_WORKSPACE_LIMIT
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral):
        raise TypeError(f"set_workspace_limit: nbytes must be an int number of bytes or None, "
                        f"got {type(nbytes).__name__} {nbytes!r}")
    if nbytes < MIN_WORKSPACE_LIMIT:
        raise ValueError(f"set_workspace_limit: nbytes must be at least {MIN_WORKSPACE_LIMIT} "
                         f"(1 MiB), got {nbytes}")
    previous, _workspace_limit = _workspace_limit, int(nbytes)
    for listener in _listeners:
        listener(_workspace_limit)
    return previous
