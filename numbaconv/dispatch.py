"""The dispatcher: ``choose_algorithm``, ``explain``, ``"auto"`` and ``tune``.

:func:`choose_spec` is the one ordered decision table behind all of them
(docs/choosing.md).  :func:`problem_spec` turns the arguments of the public
``choose_algorithm`` and ``tune`` -- the forward (or transposed) call's
input and weight shapes, its parameters, ``transposed``, ``gradient`` and
``dtype`` -- into the spec of the computation asked about, validated
exactly as the real call would be.  Arrays are accepted in place of shapes
(their shape and dtype are used).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from . import tuning
from .spec import (make_conv_spec, make_grad_input_spec, make_grad_weight_spec,
                   make_transposed_spec)

GRADIENTS = (None, "input", "weight")


def _shape_and_dtype(name, value, dtype):
    if isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
        array = np.asarray(value)
        return tuple(array.shape), array.dtype
    if (isinstance(value, (tuple, list)) and value
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        return tuple(int(v) for v in value), np.dtype(dtype)
    raise TypeError(f"{name} must be a tuple of ints or an array, got {value!r}")


def _placeholder(shape, dtype):
    """A zero-memory array of ``shape`` (validation reads shapes and dtypes only)."""
    return np.lib.stride_tricks.as_strided(np.empty(1, dtype), shape, (0,) * len(shape))


def problem_spec(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                 transposed=False, output_padding=0, gradient=None, padding_mode="zeros",
                 dtype="float32", op=None):
    """The spec of the computation a ``choose_algorithm``/``tune`` call asks about.

    ``input_shape`` and ``weight_shape`` are those of the forward call
    (``conv{N}d``, or ``conv_transpose{N}d`` when ``transposed``);
    ``gradient`` is None (the call itself), ``"input"`` or ``"weight"``.
    Raises the errors the real call would raise.
    """
    input_shape, in_dtype = _shape_and_dtype("input_shape", input_shape, dtype)
    weight_shape, w_dtype = _shape_and_dtype("weight_shape", weight_shape, dtype)
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be None, 'input' or 'weight', got {gradient!r}")
    dtype = np.result_type(in_dtype, w_dtype)
    ndim = len(weight_shape) - 2
    if ndim not in (1, 2, 3):
        raise ValueError(f"weight_shape must have 3, 4 or 5 entries, got {weight_shape}")
    x = _placeholder(input_shape, dtype)
    w = _placeholder(weight_shape, dtype)
    if not transposed:
        name = op or f"conv{ndim}d"
        forward = make_conv_spec(name, ndim, x, w, None, stride, padding, dilation, groups,
                                 padding_mode)
        if gradient is None:
            return forward
        if padding_mode != "zeros":
            raise ValueError(f"gradients are computed for padding_mode='zeros' only, got "
                             f"{padding_mode!r}")
        if any(lo != hi for lo, hi in forward.padding):
            raise ValueError(f"gradients take symmetric padding, got {forward.padding} from "
                             f"padding={padding!r}")
        g = _placeholder(forward.user_output_shape, dtype)
        pads = tuple(lo for lo, _ in forward.padding)
        if gradient == "input":
            return make_grad_input_spec(op or f"grad.conv{ndim}d_input", ndim, input_shape, w,
                                        g, stride, pads, dilation, groups)
        return make_grad_weight_spec(op or f"grad.conv{ndim}d_weight", ndim, x, weight_shape, g,
                                     stride, pads, dilation, groups)
    if padding_mode != "zeros":
        raise ValueError(f"transposed convolutions pad with zeros only, got "
                         f"padding_mode={padding_mode!r}")
    name = op or f"conv_transpose{ndim}d"
    spec = make_transposed_spec(name, ndim, x, w, None, stride, padding, output_padding, groups,
                                dilation)
    if gradient is None:
        return spec
    # y = conv_transpose(x, w): dL/dx is conv(dL/dy, w), dL/dw the weight
    # gradient of that convolution with dL/dy as its input
    g = _placeholder(spec.user_output_shape, dtype)
    if gradient == "input":
        return make_conv_spec(op or f"conv{ndim}d", ndim, g, w, None, stride, padding, dilation,
                              groups)
    forward = make_conv_spec(f"conv{ndim}d", ndim, g, w, None, stride, padding, dilation, groups)
    xg = _placeholder(forward.user_output_shape, dtype)
    return make_grad_weight_spec(op or f"grad.conv{ndim}d_weight", ndim, g, weight_shape, xg,
                                 stride, padding, dilation, groups)


@dataclass(frozen=True)
class Tuned:
    """What :func:`tune` measured for one problem."""

    algorithm: str          # the fastest, now in the tuning cache
    seconds: dict           # median seconds per candidate
    problem: str            # the problem, described

    def __str__(self):
        return f"{self.problem}: {self.algorithm} ({tuning.estimated_seconds(self.seconds)})"


def tune(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
         transposed=False, output_padding=0, gradient=None, padding_mode="zeros",
         dtype="float32", device="cpu", force=False):
    """Measure every algorithm ``"auto"`` may pick on one problem and store the fastest.

    Arguments as in ``choose_algorithm`` (docs/choosing.md): the forward (or,
    with ``transposed``, transposed) call's input and weight shapes or
    arrays, its parameters, and ``gradient`` (None, ``"input"`` or
    ``"weight"``) for a gradient of it.  The winner goes to the tuning
    cache (Note [tuning cache] in :mod:`numbaconv.tuning`), where
    ``algorithm="auto"`` finds it when tuning is on (:func:`set_tuning`,
    ``NUMBACONV_TUNE=1``), in this and every later process with the same
    thread count, numbaconv version and CPU.

    Parameters
    ----------
    force : bool, default False
        Measure again even if the cache holds an answer.

    Returns
    -------
    Tuned
        ``algorithm`` (the fastest), ``seconds`` (median seconds of each
        candidate; from the cache if it was there) and ``problem``.

    Examples
    --------
    >>> import numbaconv as nc
    >>> nc.tune((1, 4, 32, 32), (4, 4, 3, 3), padding=1).algorithm in nc.algorithm_names()
    True
    """
    _check_device("tune", device)
    spec = problem_spec(input_shape, weight_shape, stride=stride, padding=padding,
                        dilation=dilation, groups=groups, transposed=transposed,
                        output_padding=output_padding, gradient=gradient,
                        padding_mode=padding_mode, dtype=dtype)
    from .context import current_context
    return tune_spec(spec, current_context(device), force=force)


def tune_spec(spec, ctx=None, *, force=False):
    """:func:`tune` for a spec: the candidates are those ``"auto"`` may pick
    (:func:`usable_candidates`), so a tuned answer is one auto accepts."""
    from .context import current_context
    ctx = current_context() if ctx is None else ctx
    if force:
        tuning.forget(spec, ctx.device)
    _, usable = usable_candidates(spec, ctx)
    name, seconds, _ = tuning.tuned_choice(spec, usable, ctx.device)
    return Tuned(algorithm=name, seconds=dict(seconds), problem=spec.describe())


# ---------------------------------------------------------------------------
# the decision table
# ---------------------------------------------------------------------------

#: Largest error measured per algorithm, in units of ``eps * B`` of the
#: compute dtype (``B`` the largest magnitude an output can have), over the
#: named, hypothesis and scaled-input cases of the tests
#: (docs/semantics.md, "Accuracy"; tests/conftest.py).
MEASURED_ERROR_EPS = {"direct": 4.8, "im2col": 4.8, "fft": 1.9, "winograd_f2": 1.0,
                      "winograd": 29.0}
#: The most error ``"auto"`` accepts per result dtype, same units: float64
#: users get elementwise-class accuracy (so not F(4x4, 3x3)); float32 up to
#: 64 eps (7.6e-6 of B); float16 rounds to 2**13 float32 eps anyway.
TOLERANCE_EPS = {"float16": 4096.0, "float32": 64.0, "float64": 16.0}
#: Transform algorithms, which hand calls with NaN or infinity to direct.
TRANSFORMS = ("fft", "winograd", "winograd_f2")


@dataclass(frozen=True)
class Candidate:
    """One algorithm's answer for one problem."""

    algorithm: str
    path: str = ""
    seconds: float | None = None       # the cost model's estimate
    measured: float | None = None      # with measure=True: median seconds
    workspace: int = 0
    excluded: str | None = None        # why it cannot be picked (None: it can)


@dataclass(frozen=True)
class Choice:
    """What ``choose_algorithm`` decided, and on what grounds."""

    algorithm: str
    path: str
    reason: str
    candidates: tuple
    problem: str
    context: str = ""

    def __str__(self):
        return explain_choice(self)


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3g} ms"


def explain_choice(choice):
    """A table a person can read (``nc.explain`` and ``numbaconv explain``)."""
    lines = [choice.problem, choice.context,
             f"pick: {choice.algorithm} ({choice.path}): {choice.reason}", ""]
    header = f"{'algorithm':<12} {'path':<42} {'estimate':>10} {'measured':>10} {'workspace':>10}"
    lines += [header, "-" * len(header)]
    for c in choice.candidates:
        if c.excluded and c.seconds is None:
            lines.append(f"{c.algorithm:<12} {c.excluded}")
            continue
        mark = "  <- pick" if c.algorithm == choice.algorithm else ""
        work = f"{c.workspace / 2**20:.1f} MiB"
        lines.append(f"{c.algorithm:<12} {c.path[:42]:<42} {_ms(c.seconds):>10} "
                     f"{_ms(c.measured):>10} {work:>10}{mark}")
        if c.excluded:
            lines.append(f"{'':<12} not picked: {c.excluded}")
    return "\n".join(lines)


def usable_candidates(spec, ctx, finite=True):
    """Steps 1 and 2 of the decision table: a :class:`Candidate` per
    registered algorithm (with its plan, or why it cannot be picked), and the
    algorithms that may be picked."""
    from .algorithms.registry import algorithms, over_workspace_limit, plan_of
    from .errors import UnsupportedAlgorithmError
    tolerance = TOLERANCE_EPS[spec.dtype.name]
    candidates, usable = [], []
    for algorithm in algorithms(ctx.device):
        name = algorithm.name
        reason = algorithm.unsupported_reason(spec)
        if reason is not None:
            candidates.append(Candidate(name, excluded=f"cannot serve: {reason}"))
            continue
        plan = plan_of(algorithm, spec, ctx)     # the run will find it cached
        excluded = over_workspace_limit(plan, ctx)
        if excluded is None and MEASURED_ERROR_EPS.get(name, 0.0) > tolerance:
            excluded = (f"its error (up to {MEASURED_ERROR_EPS[name]:g} eps) is above the "
                        f"{spec.dtype.name} tolerance of {tolerance:g} eps")
        elif excluded is None and not finite and name in TRANSFORMS:
            excluded = ("the input has NaN or infinity, which a transform spreads over "
                        "its tile (the call would go to direct)")
        candidates.append(Candidate(name, plan.path, plan.seconds, None, plan.workspace,
                                    excluded))
        if excluded is None:
            usable.append(algorithm)
    if not usable:
        raise UnsupportedAlgorithmError(f"{spec.op}: no algorithm can serve {spec.describe()}: "
                         + "; ".join(f"{c.algorithm}: {c.excluded}" for c in candidates))
    return candidates, usable


def choose_spec(spec, ctx=None, *, measure=False, finite=True):
    """The decision table for one spec (``choose_algorithm``'s body; ``"auto"``
    calls it with ``measure=False``)."""
    from .context import current_context
    ctx = current_context() if ctx is None else ctx
    candidates, usable = usable_candidates(spec, ctx, finite)
    if measure:
        times = tuning.measure(spec, usable)
        candidates = [replace(c, measured=times.get(c.algorithm)) for c in candidates]
        pick = min(times, key=times.get)
        reason = "measured fastest"
    elif tuning.tuning_enabled():
        pick, times, now = tuning.tuned_choice(spec, usable, ctx.device)
        candidates = [replace(c, measured=times.get(c.algorithm)) for c in candidates]
        reason = ("measured fastest (now; stored in the tuning cache)" if now
                  else "measured fastest (from the tuning cache)")
    else:
        estimates = {c.algorithm: c.seconds for c in candidates
                     if c.excluded is None and c.seconds is not None}
        pick = min(estimates, key=estimates.get)
        others = sorted((s, a) for a, s in estimates.items() if a != pick)
        reason = ("fastest estimate of the cost models"
                  + (f" ({_ms(estimates[pick])} against {others[0][1]}'s {_ms(others[0][0])})"
                     if others else ""))
    chosen = next(c for c in candidates if c.algorithm == pick)
    order = sorted(candidates, key=lambda c: (c.seconds is None,
                                              c.measured if c.measured is not None
                                              else (c.seconds or 0.0)))
    resources = (f"{ctx.threads} thread(s), workspace limit {ctx.workspace_limit / 2**20:g} MiB"
                 if ctx.device == "cpu" else "GPU cost models not fitted (docs/gpu.md)")
    context = (f"{resources}, device {ctx.device}, "
               f"tuning {'on' if tuning.tuning_enabled() else 'off'}")
    return Choice(pick, chosen.path, reason, tuple(order), spec.describe(), context)


@functools.lru_cache(maxsize=1024)
def _auto_choice(spec, ctx, constants_key):
    return choose_spec(spec, ctx).algorithm


def auto_algorithm_name(spec, ctx):
    """The algorithm ``"auto"`` runs ``spec`` with in ``ctx``: the decision
    table of :func:`choose_spec`, remembered per (spec, context) while tuning
    is off (choosing costs about 0.15 ms, more than a small convolution)."""
    from . import costs
    if tuning.tuning_enabled():
        return choose_spec(spec, ctx).algorithm
    return _auto_choice(spec, ctx, costs.constants_key())


def _finite(*arrays):
    return all(not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.floating)
               or bool(np.isfinite(a).all()) for a in arrays)


def choose_algorithm(input_shape, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                     transposed=False, output_padding=0, gradient=None, padding_mode="zeros",
                     dtype="float32", device="cpu", measure=False):
    """Which algorithm ``"auto"`` runs a problem with, and why.

    One ordered decision table: (1) the algorithms that serve the problem;
    (2) of those, the ones whose measured error is within the result
    dtype's tolerance (:data:`TOLERANCE_EPS`; F(4x4, 3x3) Winograd is not
    picked for float64) and, when arrays with NaN or infinity are given, no
    transform algorithm; (3) the fastest of the rest by the cost models
    (:mod:`numbaconv.costs`), or, with tuning on, by the tuning cache, or,
    with ``measure=True``, by timing them now.

    Parameters
    ----------
    input_shape, weight_shape : tuple of int or ndarray
        The forward (or, with ``transposed``, transposed) call's input and
        weight; arrays are accepted (their shape and dtype are used).
    stride, padding, dilation, groups, output_padding, padding_mode
        As the call takes them.
    transposed : bool
        The call is ``conv_transpose{N}d``.
    gradient : {None, "input", "weight"}
        Ask about that gradient of the call instead of the call.
    dtype : str or numpy.dtype
        Used when shapes are given.
    device : {"cpu", "cuda"}
        ``"cuda"`` asks about the GPU algorithms (their cost models are not
        fitted yet: docs/gpu.md; ``measure=True`` needs a GPU or the
        simulator).
    measure : bool
        Time every usable algorithm (on synthetic data of these shapes)
        instead of trusting the cost models.

    Returns
    -------
    Choice
        ``algorithm``, ``path``, ``reason``, and ``candidates``: every
        algorithm with its plan's path, estimated seconds, measured seconds
        (with ``measure``), workspace and, if it cannot be picked, why.
        ``str(choice)`` is the table :func:`explain` returns.

    Notes
    -----
    The cost models are fitted per machine (``numbaconv calibrate``); the
    shipped constants come from a 2-core AMD EPYC.  There the estimates were
    within a factor of 1.26-1.44 of measured times in the median, and the
    pick's measured time was on average 1.003x the fastest algorithm's over
    the public benchmark shapes and their gradients (worst 1.15x) and
    1.02x over 23 held-out layer shapes (worst 1.21-1.29x: a 256-channel
    14x14 layer where Winograd's many-channel GEMMs cost more than modelled,
    and a stride-2 depthwise layer); docs/choosing.md has the tables.

    Examples
    --------
    >>> import numbaconv as nc
    >>> nc.choose_algorithm((4, 256, 28, 28), (256, 1, 3, 3), padding=1, groups=256).algorithm
    'direct'
    """
    from .context import current_context
    _check_device("choose_algorithm", device)
    spec = problem_spec(input_shape, weight_shape, stride=stride, padding=padding,
                        dilation=dilation, groups=groups, transposed=transposed,
                        output_padding=output_padding, gradient=gradient,
                        padding_mode=padding_mode, dtype=dtype)
    return choose_spec(spec, current_context(device), measure=measure,
                       finite=_finite(input_shape, weight_shape))


def _check_device(op, device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"{op}: device must be 'cpu' or 'cuda', got {device!r}")


class Explanation(str):
    """The table :func:`explain` returns: a ``str`` whose ``repr`` is the text.

    A plain string would show in the REPL (and in Jupyter) as one escaped
    line with ``\\n`` in it; this one shows as the table, and works wherever
    a string does (``print``, ``splitlines``, ``in``, comparison).
    ``choice`` is the :class:`Choice` it was made from.
    """

    def __new__(cls, text, choice=None):
        self = super().__new__(cls, text)
        self.choice = choice
        return self

    def __repr__(self):
        return str.__str__(self)

    def _repr_pretty_(self, printer, cycle):
        """IPython's display: the table, line by line."""
        for i, line in enumerate(self.splitlines()):
            if i:
                printer.break_()
            printer.text(line)


def explain(input_shape, weight_shape, **kwargs):
    """:func:`choose_algorithm`'s decision as a table a person can read.

    Parameters
    ----------
    input_shape, weight_shape : tuple of int or ndarray
        As :func:`choose_algorithm` takes them.
    **kwargs
        :func:`choose_algorithm`'s other arguments (``stride``, ``padding``,
        ``transposed``, ``gradient``, ``dtype``, ``measure`` ...).

    Returns
    -------
    Explanation
        A ``str`` (a subclass of it) holding the table: the problem, the
        context, the pick with its reason and one row per algorithm
        (docs/choosing.md, "Reading explain").  Its ``repr`` is the table
        too, so the REPL shows it as printed; ``.choice`` is the
        :class:`Choice` behind it.

    Examples
    --------
    >>> import numbaconv as nc
    >>> table = nc.explain((4, 256, 28, 28), (256, 1, 3, 3), padding=1, groups=256)
    >>> table.splitlines()[2].startswith("pick: direct")
    True
    >>> repr(table) == str(table)
    True
    """
    choice = choose_algorithm(input_shape, weight_shape, **kwargs)
    return Explanation(explain_choice(choice), choice)
