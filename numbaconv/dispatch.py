"""The dispatcher: resolving ``algorithm=``, ``"auto"``, ``choose_algorithm``,
``explain`` and ``tune``.

:func:`choose_spec` is the one ordered decision table behind all of them
(docs/choosing.md).  It iterates the registry
(:mod:`numbaconv.algorithms.registry`) and reads only what each algorithm
declares -- whether it serves, its plan, its error bound, whether it
transforms values -- so a new algorithm joins without an edit here.
:func:`numbaconv.spec.problem_spec` turns the arguments ``choose_algorithm``
and ``tune`` take into the spec of the computation asked about.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Tuple, Union

import numba
import numpy as np

from . import config, costs, tuning
from .backends import get_backend
from .algorithms.registry import (algorithms, check_workspace, generation as registry_generation,
                                  get_algorithm, over_workspace_limit, plan_of,
                                  serving_algorithms)
from .context import call_threads, current_context
from .errors import UnsupportedAlgorithmError
from .spec import IntOrTuple, PaddingArg, problem_spec

#: A problem's shape, or an array whose shape and dtype are used.
ShapeOrArray = Union[Tuple[int, ...], np.ndarray]
DTypeLike = Union[str, np.dtype, type]


# ---------------------------------------------------------------------------
# resolving algorithm=
# ---------------------------------------------------------------------------

def resolve_algorithm(name, spec, ctx=None):
    """The algorithm object that will run ``spec`` for ``algorithm=name``
    (``ctx``: the call's context, a fresh snapshot when not given).

    Raises
    ------
    TypeError, ValueError
        ``name`` is not a string or not a known algorithm.
    UnsupportedAlgorithmError
        ``name`` is known but cannot serve ``spec``.
    """
    ctx = current_context() if ctx is None else ctx
    if name == "auto":
        return get_algorithm(auto_algorithm_name(spec, ctx), ctx.device)
    try:
        algorithm = get_algorithm(name, ctx.device)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{spec.op}: {exc}") from None
    reason = algorithm.unsupported_reason(spec)
    if reason is not None:
        serving = serving_algorithms(spec, ctx)
        raise UnsupportedAlgorithmError(
            f"{spec.op}: algorithm={name!r} cannot serve {spec.describe()}: {reason}; "
            + (f"algorithms that serve this call: {', '.join(serving)}" if serving else
               "no algorithm serves this call"), algorithm=name, reason=reason, serving=serving)
    check_workspace(spec.op, algorithm, plan_of(algorithm, spec, ctx), ctx)
    return algorithm


#: (name, spec, context, constants key) -> (algorithm, plan) of the calls
#: :func:`resolve_planned` has served; cleared when it reaches
#: :data:`_CALL_PLANS_MAX` entries.
_CALL_PLANS: dict[tuple, tuple] = {}
_CALL_PLANS_MAX = 4096


def resolve_planned(name, spec, ctx):
    """``(algorithm, plan)``: :func:`resolve_algorithm` and :func:`plan_of`
    in one remembered lookup: the public functions ask both on every call,
    which with a context snapshot built each time too cost a small
    convolution about 5 us of Python (docs/results-classes.md, "Python per
    call").  ``"auto"`` with tuning on is not remembered: it reads the
    tuning cache every call.  Errors are not remembered either, so a lowered
    workspace limit still refuses a plan (tested).

    Raises what :func:`resolve_algorithm` raises."""
    if name == "auto" and tuning.tuning_enabled():   # asked first: it may have just been
        algorithm = resolve_algorithm(name, spec, ctx)  # switched on (tested)
        return algorithm, plan_of(algorithm, spec, ctx)
    key = (name, spec, ctx, costs.constants_key(), registry_generation())
    hit = _CALL_PLANS.get(key)
    if hit is None:
        algorithm = resolve_algorithm(name, spec, ctx)
        hit = (algorithm, plan_of(algorithm, spec, ctx))
        if len(_CALL_PLANS) >= _CALL_PLANS_MAX:
            _CALL_PLANS.clear()
        _CALL_PLANS[key] = hit
    return hit


def pick_settings(name):
    """What a remembered ``(algorithm, plan)`` of a host call with
    ``algorithm=name`` depends on besides its spec: the thread counts, the
    workspace limit, the cost-model constants and the registry's algorithms;
    None when a pick must not be remembered (``"auto"`` with tuning on
    reads the tuning cache every call).  The key part of
    :mod:`numbaconv.functional`'s prepared calls."""
    if name == "auto" and tuning.tuning_enabled():
        return None
    return (call_threads(), numba.config.NUMBA_NUM_THREADS,
            config.get_workspace_limit(), costs.constants_key(), registry_generation())


@dataclass(frozen=True)
class Tuned:
    """What :func:`tune` measured for one problem."""

    algorithm: str          # the fastest, now in the tuning cache
    seconds: dict           # median seconds per candidate
    problem: str            # the problem, described

    def __str__(self):
        return f"{self.problem}: {self.algorithm} ({tuning.estimated_seconds(self.seconds)})"


def tune(input_shape: ShapeOrArray, weight_shape: ShapeOrArray, *, stride: IntOrTuple = 1,
         padding: PaddingArg = 0, dilation: IntOrTuple = 1, groups: int = 1,
         transposed: bool = False, output_padding: IntOrTuple = 0,
         gradient: str | None = None, padding_mode: str = "zeros",
         dtype: DTypeLike = "float32", device: str = "cpu", force: bool = False,
         memory_format: str | None = None) -> Tuned:
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
    memory_format : {None, "contiguous", "channels_last"}
        As for ``choose_algorithm``: the formats are tuned apart.

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
    spec = _problem("tune", input_shape, weight_shape, stride=stride, padding=padding,
                    dilation=dilation, groups=groups, transposed=transposed,
                    output_padding=output_padding, gradient=gradient,
                    padding_mode=padding_mode, dtype=dtype, memory_format=memory_format)
    return tune_spec(spec, current_context(device), force=force)


def tune_spec(spec, ctx=None, *, force=False):
    """:func:`tune` for a spec: the candidates are those ``"auto"`` may pick
    (:func:`usable_candidates`), so a tuned answer is one auto accepts."""
    ctx = current_context() if ctx is None else ctx
    if force:
        tuning.forget(spec, ctx.device)
    _, usable = usable_candidates(spec, ctx)
    name, seconds, _ = tuning.tuned_choice(spec, usable, ctx.device)
    return Tuned(algorithm=name, seconds=dict(seconds), problem=spec.describe())


# ---------------------------------------------------------------------------
# the decision table
# ---------------------------------------------------------------------------

#: The most error ``"auto"`` accepts per result dtype, in units of ``eps *
#: B`` of the compute dtype (``B`` the largest magnitude an output can
#: have), the units of each algorithm's ``measured_error_eps`` (over the
#: named, hypothesis and scaled-input cases of the tests: docs/semantics.md,
#: "Accuracy"; tests/conftest.py): float64
#: users get elementwise-class accuracy (so not F(4x4, 3x3)); float32 up to
#: 64 eps (7.6e-6 of B); float16 rounds to 2**13 float32 eps anyway.
TOLERANCE_EPS = {"float16": 4096.0, "float32": 64.0, "float64": 16.0}


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
    tolerance = TOLERANCE_EPS[spec.dtype.name]
    candidates, usable = [], []
    for algorithm in algorithms(ctx.device):
        name = algorithm.name
        reason = algorithm.unsupported_reason(spec)
        if reason is not None:
            candidates.append(Candidate(name, excluded=f"cannot serve: {reason}"))
            continue
        plan = plan_of(algorithm, spec, ctx)     # the run will find it cached
        excluded = over_workspace_limit(algorithm, plan, ctx)
        error = algorithm.error_eps(spec.dtype)
        if excluded is None and error > tolerance:
            excluded = (f"its error (up to {error:g} eps) is above the "
                        f"{spec.dtype.name} tolerance of {tolerance:g} eps")
        elif excluded is None and not finite and algorithm.transforms_values:
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
    resources = get_backend(ctx.device).resources(ctx)
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
    if tuning.tuning_enabled():
        return choose_spec(spec, ctx).algorithm
    return _auto_choice(spec, ctx, costs.constants_key())


def _finite(*arrays):
    return all(not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.floating)
               or bool(np.isfinite(a).all()) for a in arrays)


def choose_algorithm(input_shape: ShapeOrArray, weight_shape: ShapeOrArray, *,
                     stride: IntOrTuple = 1, padding: PaddingArg = 0, dilation: IntOrTuple = 1,
                     groups: int = 1, transposed: bool = False, output_padding: IntOrTuple = 0,
                     gradient: str | None = None, padding_mode: str = "zeros",
                     dtype: DTypeLike = "float32", device: str = "cpu",
                     measure: bool = False, memory_format: str | None = None) -> Choice:
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
    memory_format : {None, "contiguous", "channels_last"}
        The memory format of the call's input (and so of its output and
        output gradient; docs/semantics.md, "Memory format"): an algorithm
        that does not read channels-last natively is costed with its packing
        copies (on the GPU every algorithm is packed on the device: Note
        [GPU memory format] in :mod:`numbaconv.cuda.arrays`).  None: the
        input array's format when an array is given, else ``"contiguous"``.

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
    package ships the constants fitted on the development machine, where
    the pick's measured time was on average 1.003x the fastest algorithm's
    over the public benchmark shapes and their gradients; the regret on
    held-out layers and the estimates' errors are in docs/choosing.md, "The
    cost models".

    Examples
    --------
    >>> import numbaconv as nc
    >>> nc.choose_algorithm((4, 256, 28, 28), (256, 1, 3, 3), padding=1, groups=256).algorithm
    'direct'
    """
    _check_device("choose_algorithm", device)
    spec = _problem("choose_algorithm", input_shape, weight_shape, stride=stride,
                    padding=padding, dilation=dilation, groups=groups, transposed=transposed,
                    output_padding=output_padding, gradient=gradient,
                    padding_mode=padding_mode, dtype=dtype, memory_format=memory_format)
    return choose_spec(spec, current_context(device), measure=measure,
                       finite=_finite(input_shape, weight_shape))


def _problem(op, input_shape, weight_shape, **kwargs):
    """:func:`numbaconv.spec.problem_spec`, with its errors about the memory
    format named after ``op``."""
    try:
        return problem_spec(input_shape, weight_shape, **kwargs)
    except (TypeError, ValueError) as exc:
        if "memory_format" in str(exc):
            raise type(exc)(f"{op}: {exc}") from None
        raise


def _check_device(op, device):
    try:
        get_backend(device)
    except ValueError as exc:
        raise ValueError(f"{op}: {exc}") from None


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


def explain(input_shape: ShapeOrArray, weight_shape: ShapeOrArray, **kwargs: Any) -> Explanation:
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
