"""Exceptions raised by numbaconv."""


class UnsupportedAlgorithmError(ValueError):
    """An explicitly requested algorithm cannot serve the given parameters.

    Raised instead of silently falling back to another algorithm, so that a
    user who asks for ``algorithm="winograd"`` learns why it was refused, and
    which algorithms do serve the call (the message ends with them).  It
    subclasses :class:`ValueError`, so code that catches bad arguments in
    general still catches it.

    Parameters
    ----------
    message : str
        The whole message.
    algorithm : str, optional
        The algorithm that refused.
    reason : str, optional
        Its reason, the sentence of ``unsupported_reason`` (without the
        problem's description, so refusals of several problems can be
        grouped: ``numbaconv bench`` does).
    serving : tuple of str, optional
        The algorithms of the same device that serve the call.

    Attributes
    ----------
    algorithm, reason, serving
        As given (``None``, ``None`` and ``()`` when not).
    """

    def __init__(self, message, *, algorithm=None, reason=None, serving=()):
        super().__init__(message)
        self.algorithm = algorithm
        self.reason = reason
        self.serving = tuple(serving)

    def __reduce__(self):
        # keyword-only attributes survive pickling (dask workers raise this)
        return (_rebuild_unsupported, (type(self), self.args, self.algorithm, self.reason,
                                       self.serving))


def _rebuild_unsupported(cls, args, algorithm, reason, serving):
    error = cls(*args, algorithm=algorithm, reason=reason, serving=serving)
    return error
