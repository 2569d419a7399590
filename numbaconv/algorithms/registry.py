"""The algorithm registry: one interface every algorithm and device joins.

The algorithm is the unit of extension (docs/extending.md): an algorithm
object declares everything the dispatcher needs about it, and
:func:`register` is the one place it joins.  The registry knows no chooser:
``"auto"``, resolving a name and the decision table live in
:mod:`numbaconv.dispatch`, which iterates this table.

An algorithm is an object with

* ``name`` -- what users pass as ``algorithm=``;
* ``unsupported_reason(spec)`` -- ``None`` if it can run ``spec``, otherwise
  a sentence saying why not (shown in :class:`UnsupportedAlgorithmError`);
* its declarations, checked by :func:`register`: ``paths`` (its
  cost-model paths with their shipped constants,
  :class:`numbaconv.costs.PathModel`), ``measured_error_eps`` (its largest
  measured error, in units of ``eps * B`` of the compute dtype,
  docs/semantics.md "Accuracy"; :meth:`ConvAlgorithm.error_eps` gives it per
  dtype), ``transforms_values`` (whether a NaN or infinity would spread over
  a transform's tile: such calls go to another algorithm), ``formats``
  (the memory formats it serves without packing) and
  ``calibration_problems`` (problems of its own for ``numbaconv
  calibrate``, beyond the shared ones);
* ``plan(spec, ctx)`` -- a :class:`Plan` with its path, estimated seconds
  and workspace, before anything runs;
* ``run(spec, x, weight, epilogue, out, ctx=None, plan=None)`` -- compute
  into ``out`` (in ``ctx``, by ``plan`` when given).  The arrays are in
  the canonical 3-D form of :mod:`numbaconv.spec` (input
  ``(N, C, D, H, W)``, weight ``(C_out, C_in/groups, KD, KH, KW)``, output
  ``(N, C_out, OD, OH, OW)``; input and output channels-last, Note
  [packing], for an algorithm declaring that format), C-contiguous, in
  ``spec.compute_dtype``; a transposed problem's weight may come as a
  :class:`numbaconv.rewrites.TransposedWeight`, which ``run`` rewrites
  into that array unless the algorithm reads it as given
  (``reads_transposed_weight``, Note [transposed weight]);
  ``epilogue`` is the call's :class:`numbaconv.epilogue.Epilogue` (the
  bias today, a zero-length array for none).  For a spec whose
  ``computation`` is ``"grad_weight"``, ``weight`` is the output gradient
  ``(N, C_out, OD, OH, OW)``, the epilogue is empty and ``out`` receives the
  weight gradient ``(C_out, C_in/groups, KD, KH, KW)``.  The API layer owns
  validation, dtype conversion, unbatched input and ``out=``.

:class:`ConvAlgorithm` routes every spec (Note [one general convolution] in
:mod:`numbaconv.spec`) to three methods an algorithm implements or inherits:
``forward`` (a plain forward problem: no input dilation, no negative
padding), ``run_input_dilated`` (transposed convolutions and input
gradients; by default the phases of :func:`numbaconv.rewrites.run_by_phases`,
each through ``run``) and ``run_grad_weight`` (by default the forward
problem of :func:`numbaconv.rewrites.grad_weight_as_forward`, through
``run``).  An algorithm with a better formulation of its own overrides one.

The bias is the output's epilogue (Note [epilogue] in
:mod:`numbaconv.epilogue`): every algorithm applies it where its kernels
write the output.

Note [packing]
~~~~~~~~~~~~~~
A channels-last spec (Note [memory format] in :mod:`numbaconv.spec`) runs
natively on an algorithm whose ``formats`` include ``"channels_last"``:
``run`` and the methods it routes to receive the input as ``(N, D, H, W,
C)`` and the output (and a residual) as ``(N, OD, OH, OW, C_out)``, both
C-contiguous -- the input a view of the caller's memory, never a copy --
with the canonical weight; for ``computation == "grad_weight"`` the input
and the output gradient arrive that way and the weight gradient is
canonical.  The inherited crop, phase and weight-gradient rewrites keep the
format (:mod:`numbaconv.rewrites`); an algorithm overriding one of them
serves channels-last arrays there too, or calls :func:`run_packed` for it.
Every other algorithm is served by *packing*, here and nowhere else:
:meth:`ConvAlgorithm.run` copies the input (and output gradient, residual)
to the canonical layout, runs the contiguous spec into a scratch output
and writes the result back channels-last; its plan is the contiguous plan
plus the seconds of those copies (:data:`PACK_SECONDS_PER_BYTE`), so
``"auto"`` prefers an algorithm that reads the format natively when the
two are close.  The packing here is for host arrays (the blocked copies
of :mod:`numbaconv.kernels.layout`): the GPU
algorithms override ``plan`` and ``run`` and never reach it, as the CUDA
backend packs channels-last calls on the device and runs them with the
contiguous spec (Note [GPU memory format] in :mod:`numbaconv.cuda.arrays`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import functools


from .. import costs, rewrites
from ..context import current_context, on_one_thread
from ..kernels import layout
from ..spec import MEMORY_FORMATS
from ..workspaces import contiguous, scratch

#: (name, device) -> algorithm: the GPU backend registers its own under
#: the same names.
_REGISTRY: dict = {}


@dataclass(frozen=True)
class Plan:
    """How an algorithm would run a problem here, before anything runs.

    Attributes
    ----------
    algorithm : str
    path : str
        The internal path, for people (``"channels_last"``, ``"transposed planes"``,
        ``"phases(4) of im2col:tiles"`` ...).
    seconds : float
        The cost model's estimate (Note [cost models] in :mod:`numbaconv.costs`).
    workspace : int
        Scratch bytes the run allocates, all threads together: column
        tiles, spectra, transformed tiles.  Planners size it to the
        workspace limit; a plan whose smallest workspace is still over the
        limit is refused (:func:`check_workspace`).
    model : str or None
        The cost-model path whose constant the estimate uses (``"direct:phases"``
        and the like for a plan made of several problems; None when there is
        nothing to compute).
    units : float
        That path's work units (for calibration).
    fill : float
        Units of the auxiliary path ``fill_model`` also in the estimate
        (im2col's column fill, Note [column fill cost]; calibration
        subtracts their time).
    detail : object
        What the algorithm's run step takes from the plan (a loop order, a
        tile plan ...); ``run(..., plan=plan)`` then runs exactly this plan.
    copies : int
        Bytes of rearranged copies of the input, output gradient or weight
        (direct's channels-last input, the weight-gradient rewrite's
        transposed batch chunks): a multiple of the arrays' own size,
        not bounded by the workspace limit (docs/semantics.md, "Workspace
        limit").
    """

    algorithm: str
    path: str
    seconds: float
    workspace: int = 0
    model: str | None = None
    units: float = 0.0
    fill: float = 0.0
    detail: object = field(default=None, compare=False, repr=False)
    copies: int = 0
    fill_model: str | None = None


#: Seconds per byte of a packing copy (Note [packing]): about 1 ns per
#: float32 element, what NumPy's transposing copy took; the blocked copies
#: of kernels/layout.py that replaced it took 0.34-1.9 ns at 2 threads
#: (docs/results-memory-format.md), so the constant is kept, not divided
#: over the threads.
PACK_SECONDS_PER_BYTE = 2.5e-10


#: Estimated seconds (with the call's threads) under which a call runs on
#: the calling thread alone (Note [small calls]).
SMALL_CALL_SECONDS = 5e-5

# Note [small calls]
# ~~~~~~~~~~~~~~~~~~
# Handing work to numba's pool wakes a worker thread and waits for it; for
# a squeeze-and-excitation 1x1 on a 1x1 map that wait is most of the call,
# and on a busy machine a worker not yet scheduled costs a scheduler tick
# (a 1x1 conv took 80 us on one thread against 2.8-5.9 ms on two while
# another process ran).  So a call whose plan estimates less than
# SMALL_CALL_SECONDS runs on one thread: its context says threads=1 (the
# pool's size, which sizes every split that decides a summation order, is
# unchanged, so are the bits), and the parallel shell then runs its one
# chunk on the calling thread (Note [one chunk] in kernels/parallel.py).
# The figures are in docs/results-networks.md.


def weight_bytes(spec):
    """Bytes of ``spec``'s weight in its compute dtype."""
    return math.prod(spec.weight_shape) * spec.compute_dtype.itemsize


def weight_rewrite_plan(algorithm, spec, plan):
    """``plan`` plus the rewrite of a transposed problem's weight (a flipping
    copy, costed like a packing copy) when ``algorithm`` does not read the
    weight as given (Note [transposed weight] in :mod:`numbaconv.rewrites`)."""
    if (spec.origin not in ("transposed", "grad_input") or plan.seconds == 0
            or algorithm.reads_transposed_weight(spec)):
        return plan
    copied = weight_bytes(spec)
    return replace(plan, seconds=plan.seconds + PACK_SECONDS_PER_BYTE * copied,
                   copies=plan.copies + copied)


def packed_bytes(spec):
    """Bytes the packing of a channels-last ``spec`` copies (Note [packing]):
    the input and the output (a forward problem) or the input and the
    output gradient (a weight gradient), once each."""
    n = spec.batch
    elements = (n * spec.in_channels * math.prod(spec.input_size)
                + n * spec.out_channels * math.prod(spec.output_size))
    return elements * spec.compute_dtype.itemsize


def packed_plan(algorithm, spec, ctx):
    """The plan of ``algorithm`` (which does not declare channels-last) for a
    channels-last ``spec``: its contiguous plan (in ``detail``, for
    :func:`run_packed`) plus the packing copies."""
    inner = algorithm.plan(replace(spec, memory_format="contiguous"), ctx)
    copied = packed_bytes(spec)
    return replace(inner, path=f"{inner.path}, packed from channels-last",
                   seconds=inner.seconds + PACK_SECONDS_PER_BYTE * copied,
                   copies=inner.copies + copied, detail=inner)


def run_packed(algorithm, spec, x, weight, epilogue, out, ctx, plan=None):
    """Run a channels-last ``spec`` on ``algorithm``'s contiguous path
    (Note [packing]): the arrays are those of the channels-last interface;
    ``plan`` is a :func:`packed_plan` (or None)."""
    canonical = replace(spec, memory_format="contiguous")
    inner = plan.detail if plan is not None and isinstance(plan.detail, Plan) else None
    threads = ctx.threads           # Note [small calls]: the copies too
    xc = channels_first_copy(x, threads)
    if spec.computation == "grad_weight":       # the weight gradient is canonical already
        return algorithm.run(canonical, xc, channels_first_copy(weight, threads), epilogue,
                             out, ctx, inner)
    if epilogue.residual is not None:
        epilogue = replace(epilogue, residual=channels_first_copy(epilogue.residual, threads))
    result = scratch(canonical.run_output_shape, out.dtype)
    algorithm.run(canonical, xc, weight, epilogue, result, ctx, inner)
    return copy_to_channels_last(result, out, threads)


def channels_first_copy(array, threads=None):
    """A C-contiguous ``(N, C, D, H, W)`` scratch copy (Note [workspace arena]
    in :mod:`numbaconv.workspaces`) of a C-contiguous ``(N, D, H, W, C)``
    array, by the blocked transpose of :mod:`numbaconv.kernels.layout`
    (Note [blocked transposes] there: NumPy's copy thrashes the cache on
    power-of-two planes), over ``threads`` chunks (default: numba's threads)."""
    N, D, H, W, C = array.shape
    result = scratch((N, C, D, H, W), array.dtype)
    layout.to_channels_first(contiguous(array), result, threads)
    return result


def copy_to_channels_last(result, out, threads=None):
    """Write the canonical ``result`` into the C-contiguous ``(N, D, H, W, C)``
    array ``out`` (the blocked transpose, over ``threads`` chunks); returns ``out``."""
    layout.to_channels_last(contiguous(result), out, threads)
    return out


def costed_plan(algorithm, model, units, ctx, workspace=0, path=None, per_thread=True,
                detail=None, fill=0.0, copies=0, fill_model=None):
    """A plan of ``units`` of work of one cost-model path (:mod:`numbaconv.costs`),
    plus ``fill`` units of the auxiliary path ``fill_model``."""
    return Plan(algorithm, path or model,
                costs.seconds(model, units, ctx.threads, per_thread, fill, fill_model),
                int(workspace), model, float(units), float(fill), detail, int(copies),
                fill_model)


class ConvAlgorithm:
    """Base class of registered algorithms (see the module docstring).

    A subclass sets ``name`` and the declarations :func:`register` checks
    (``paths``, ``measured_error_eps``, ``transforms_values``), implements
    ``plan_forward`` and ``forward``, and may override ``unsupported_reason``
    and the input-dilated and weight-gradient methods.  An algorithm that
    inherits the phase and rewrite plans declares their factors among its
    ``paths`` (:func:`composite_paths`).
    """

    name: str = ""
    device: str = "cpu"
    #: cost-model paths (:class:`numbaconv.costs.PathModel`)
    paths: tuple = ()
    #: largest measured error, units of eps * B (None: undeclared, refused)
    measured_error_eps: float | None = None
    #: whether non-finite values spread over a transform's tile
    transforms_values: bool | None = None
    #: memory formats served without packing (Note [packing])
    formats: tuple = ("contiguous",)
    #: problems of its own for numbaconv calibrate: (input shape, weight shape, kwargs)
    calibration_problems: tuple = ()
    #: whether its plans' workspace obeys the workspace limit (refused when over)
    workspace_bounded: bool = True
    #: whether its kernels apply the activation and residual of the epilogue
    #: where they write (Note [epilogue]); if not, run() applies them after
    #: ``forward`` as a separate pass, so a new algorithm is right before it is fast
    fuses_epilogue: bool = False

    def error_eps(self, dtype):
        """The largest error measured for results of ``dtype``, in units of
        ``eps * B`` of its compute dtype (the same bound for every dtype
        unless an algorithm knows better)."""
        return self.measured_error_eps

    def auxiliary_samples(self, spec, arrays, ctx, time):
        """Calibration samples of this algorithm's auxiliary paths on the
        forward problem ``spec`` (``arrays``: its synthetic canonical
        arrays; ``time(fn)``: the calibration timer).  None by default."""
        return []

    def plan(self, spec, ctx=None):
        """How this algorithm would run ``spec`` with ``ctx``: a :class:`Plan`."""
        ctx = current_context() if ctx is None else ctx
        if not self.serves_natively(spec):
            return packed_plan(self, spec, ctx)
        if spec.batch == 0 or math.prod(spec.output_size) == 0 or (
                spec.computation == "forward" and math.prod(spec.input_size) == 0):
            return Plan(self.name, "nothing to compute", 0.0)
        if spec.computation == "grad_weight":
            return self.plan_grad_weight(spec, ctx)
        if self.takes_as_transposed(spec):
            return weight_rewrite_plan(self, spec, self.plan_input_dilated(spec, ctx))
        cropped = rewrites.cropped_spec(spec)
        if cropped is None:
            return Plan(self.name, "bias only", 0.0)
        return weight_rewrite_plan(self, spec, self.plan_forward(cropped, ctx))

    def plan_forward(self, spec, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def plan_input_dilated(self, spec, ctx):
        """The phases' plans, summed (Note [phases])."""
        problems = rewrites.phase_problems(spec)
        plans = [self.plan(sub, ctx) for _, _, sub in problems if sub is not None]
        if not plans:
            return Plan(self.name, "bias only", 0.0)
        paths = sorted({p.path for p in plans})
        plan = costed_plan(self.name, f"{self.name}:phases", sum(p.seconds for p in plans), ctx,
                           max(p.workspace for p in plans),
                           f"phases({len(problems)}) of {'/'.join(paths)}", per_thread=False,
                           copies=max(p.copies for p in plans))
        # the phases' sub-weights: one more copy of the weight in all
        copied = weight_bytes(spec)
        return replace(plan, seconds=plan.seconds + PACK_SECONDS_PER_BYTE * copied,
                       copies=plan.copies + copied)

    def plan_grad_weight(self, spec, ctx):
        """The grouped forward rewrite's plan, per batch chunk, summed
        (``plan`` has answered empty batches already)."""
        itemsize = spec.compute_dtype.itemsize
        chunk = rewrites.grad_weight_batch_chunk(spec, itemsize, ctx.workspace_limit)
        sub = self.plan(rewrites.grad_weight_problem(spec, chunk), ctx)
        count = -(-spec.batch // chunk)
        copies = chunk * (spec.in_channels * math.prod(spec.input_size)
                          + spec.out_channels * math.prod(spec.output_size)) * itemsize
        return costed_plan(self.name, f"{self.name}:rewrite", sub.seconds * count, ctx,
                           sub.workspace, f"rewrite of {sub.path}", per_thread=False,
                           copies=sub.copies + copies)

    def serves_natively(self, spec):
        """Whether ``spec`` runs in its own memory format (else it is packed:
        Note [packing]).  By default, whether ``formats`` holds the format;
        an algorithm whose native path is poor for some channels-last
        problems answers False for them."""
        return not spec.channels_last or "channels_last" in self.formats

    def unsupported_reason(self, spec):
        """``None`` if ``spec`` can be served, else a reason string."""
        return None

    def takes_as_transposed(self, spec):
        """Whether ``plan`` and ``run`` take ``spec`` to
        ``plan_input_dilated`` and ``run_input_dilated``: every spec with
        input dilation; an algorithm may take the other transposed problems
        there too (stride 1, ``spec.origin`` "transposed" or "grad_input")."""
        return spec.has_input_dilation

    def reads_transposed_weight(self, spec):
        """Whether this algorithm's ``run`` of ``spec`` takes a transposed
        convolution's weight as given (a
        :class:`~numbaconv.rewrites.TransposedWeight`) rather than rewritten
        (Note [transposed weight] in :mod:`numbaconv.rewrites`).  False by
        default: ``run`` then rewrites it first."""
        return False

    def run(self, spec, x, weight, epilogue, out, ctx=None, plan=None):
        """Compute ``spec`` into ``out`` (module docstring); returns ``out``.

        ``ctx`` is the call's :class:`~numbaconv.context.ExecutionContext`
        (a fresh snapshot when not given); ``plan`` a :class:`Plan` this
        algorithm made for ``spec`` and ``ctx`` (made again when not given;
        the parts of a composite plan always are).  A channels-last spec
        on an algorithm that does not declare the format is packed here
        (Note [packing])."""
        ctx = current_context() if ctx is None else ctx
        if plan is not None and plan.seconds < SMALL_CALL_SECONDS and ctx.device == "cpu":
            ctx = on_one_thread(ctx)            # Note [small calls]
        if not self.reads_transposed_weight(spec):
            weight = rewrites.rewritten_weight(weight)  # Note [transposed weight]
        if not self.serves_natively(spec):
            return run_packed(self, spec, x, weight, epilogue, out, ctx, plan)
        detail = None if plan is None else plan.detail
        if spec.computation == "grad_weight":
            return self.run_grad_weight(spec, x, weight, out, ctx, detail)
        if self.takes_as_transposed(spec):
            return self.run_input_dilated(spec, x, weight, epilogue, out, ctx, detail)
        spec, x = rewrites.crop_negative_padding(spec, x)
        if x is None:
            return rewrites.fill_epilogue(spec, epilogue, out)
        if epilogue.fused and not self.fuses_epilogue:
            self.forward(spec, x, weight, epilogue.bias_only(), out, ctx, detail)
            return epilogue.apply(out)
        return self.forward(spec, x, weight, epilogue, out, ctx, detail)

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):  # pragma: no cover
        """A forward problem without input dilation or negative padding."""
        raise NotImplementedError

    def run_input_dilated(self, spec, x, weight, epilogue, out, ctx, detail=None):
        """A forward problem with input dilation (Note [phases])."""
        return rewrites.run_by_phases(spec, x, weight, epilogue, out,
                                      functools.partial(self.run, ctx=ctx))

    def run_grad_weight(self, spec, x, grad_output, out, ctx, detail=None):
        """The weight gradient of ``spec`` (Note [weight gradient as a convolution])."""
        return rewrites.grad_weight_as_forward(spec, x, grad_output, out,
                                               functools.partial(self.run, ctx=ctx),
                                               limit=ctx.workspace_limit)


@functools.lru_cache(maxsize=1024)
def _cached_plan(algorithm, spec, ctx, constants_key):
    return algorithm.plan(spec, ctx)


def plan_of(algorithm, spec, ctx):
    """``algorithm.plan(spec, ctx)``, remembered per (algorithm, spec, context,
    cost constants): the public functions plan every call, and planning
    cost 30 us, half a small convolution (docs/results-classes.md, "Python
    per call")."""
    return _cached_plan(algorithm, spec, ctx, costs.constants_key())


def composite_paths(name, phases=1.0, rewrite=1.0):
    """The composite paths the default phase and weight-gradient plans of an
    algorithm called ``name`` use (``"<name>:phases"``, ``"<name>:rewrite"``),
    with their factors: for its ``paths`` when it inherits those plans."""
    return (costs.PathModel(f"{name}:phases", phases, "composite"),
            costs.PathModel(f"{name}:rewrite", rewrite, "composite"))


def _check_declarations(algorithm):
    name = getattr(algorithm, "name", None)
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"an algorithm's name must be a non-empty string without ':', "
                         f"got {name!r}")
    eps = algorithm.measured_error_eps
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise TypeError(f"algorithm {name!r} must declare measured_error_eps, its largest "
                        f"measured error in units of eps * B (a number >= 0), got {eps!r}")
    if not isinstance(algorithm.transforms_values, bool):
        raise TypeError(f"algorithm {name!r} must declare transforms_values (True or False), "
                        f"got {algorithm.transforms_values!r}")
    for m in algorithm.paths:
        if not isinstance(m, costs.PathModel):
            raise TypeError(f"algorithm {name!r}: paths must be costs.PathModel objects, "
                            f"got {m!r}")
    bad = [f for f in algorithm.formats if f not in MEMORY_FORMATS]
    if bad or "contiguous" not in algorithm.formats:
        raise ValueError(f"algorithm {name!r}: formats must include 'contiguous' and be "
                         f"among {MEMORY_FORMATS}, got {algorithm.formats!r}")


def register(algorithm):
    """Add ``algorithm`` to the registry under ``(algorithm.name, algorithm.device)``,
    after checking its declarations, and its cost-model paths to
    :mod:`numbaconv.costs`.  Returns it.

    Raises
    ------
    ValueError
        The name is taken on that device (or is ``"auto"``), or a
        declaration is malformed.
    TypeError
        A declaration is missing.
    """
    _check_declarations(algorithm)
    key = (algorithm.name, algorithm.device)
    if key in _REGISTRY or algorithm.name == "auto":
        raise ValueError(f"algorithm name {algorithm.name!r} is already taken on "
                         f"{algorithm.device}")
    costs.declare(tuple(algorithm.paths))
    _REGISTRY[key] = algorithm
    _changed()
    return algorithm


def unregister(name, device="cpu"):
    """Remove the algorithm registered as ``name`` on ``device`` (and the
    cost-model paths only it declared); returns it."""
    algorithm = _REGISTRY.pop((name, device))
    others = {m.path for a in _REGISTRY.values() for m in a.paths}
    costs.undeclare(m.path for m in algorithm.paths if m.path not in others)
    _changed()
    return algorithm


#: How many times the registry has changed: a key part of every cache of
#: picks made among its algorithms (:func:`generation`).
_generation = [0]


def _changed():
    _cached_plan.cache_clear()
    _generation[0] += 1


def generation():
    """A number that changes whenever an algorithm is registered or
    unregistered: remembered picks keyed by it are not served across such a
    change."""
    return _generation[0]


def algorithms(device="cpu"):
    """The registered algorithm objects of ``device``, in registration order."""
    return [a for (_, d), a in _REGISTRY.items() if d == device]


def algorithm_names(device: str = "cpu") -> tuple:
    """Names accepted by ``algorithm=``, ``"auto"`` first."""
    return ("auto",) + tuple(a.name for a in algorithms(device))


def get_algorithm(name, device="cpu"):
    """The registered algorithm called ``name`` on ``device`` (not ``"auto"``)."""
    if not isinstance(name, str):
        raise TypeError(f"algorithm must be a string, got {name!r}")
    try:
        return _REGISTRY[(name, device)]
    except KeyError:
        raise ValueError(
            f"algorithm must be one of {', '.join(map(repr, algorithm_names(device)))}, "
            f"got {name!r}") from None


def serving_algorithms(spec, ctx):
    """Names of ``ctx.device``'s algorithms that can run ``spec`` in ``ctx``:
    they serve it and their plan fits the workspace limit (what a refusal
    names as the alternatives; computed only when one is raised)."""
    return tuple(a.name for a in algorithms(ctx.device) if a.unsupported_reason(spec) is None
                 and over_workspace_limit(a, plan_of(a, spec, ctx), ctx) is None)


def over_workspace_limit(algorithm, plan, ctx):
    """Why ``algorithm``'s ``plan`` cannot run under ``ctx``'s workspace
    limit (a phrase), or None (always None for an algorithm whose
    ``workspace_bounded`` is False)."""
    if not algorithm.workspace_bounded or plan.workspace <= ctx.workspace_limit:
        return None
    return (f"its smallest workspace, {plan.workspace / 2**20:,.1f} MiB ({plan.path}), is over "
            f"the workspace limit of {ctx.workspace_limit / 2**20:,.1f} MiB")


def check_workspace(op, algorithm, plan, ctx):
    """Raise ``MemoryError`` if ``plan`` needs more scratch memory than the
    workspace limit allows, before anything is allocated: the limit is a
    promise to the caller, not a hint (the planners shrink every workspace
    to it where they can; fft's weight spectrum and one Winograd tile per
    thread cannot shrink)."""
    reason = over_workspace_limit(algorithm, plan, ctx)
    if reason is not None:
        raise MemoryError(f"{op}: algorithm={plan.algorithm!r} cannot run: {reason}; "
                          f"raise it with numbaconv.set_workspace_limit(...) or choose "
                          f"another algorithm")
