"""Exceptions raised by numbaconv."""


class UnsupportedAlgorithmError(ValueError):
    """An explicitly requested algorithm cannot serve the given parameters.

    Raised instead of silently falling back to another algorithm, so that a
    user who asks for ``algorithm="winograd"`` learns why it was refused.  It
    subclasses :class:`ValueError`, so code that catches bad arguments in
    general still catches it.
    """
