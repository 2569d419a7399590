"""The algorithm registry: one interface every algorithm and device joins.

An algorithm is an object with

* ``name`` -- what users pass as ``algorithm=``;
* ``unsupported_reason(spec)`` -- ``None`` if it can run ``spec``, otherwise
  a sentence saying why not (shown in :class:`UnsupportedAlgorithmError`);
* ``run(spec, x, weight, bias, out)`` -- compute into ``out``.  The arrays
  are in the canonical 3-D form of :mod:`numbaconv.spec` (input
  ``(N, C, D, H, W)``, weight ``(C_out, C_in/groups, KD, KH, KW)``, output
  ``(N, C_out, OD, OH, OW)``), C-contiguous, in ``spec.compute_dtype``;
  ``bias`` is a ``(C_out,)`` array or ``None``.  For a spec whose
  ``computation`` is ``"grad_weight"``, ``weight`` is the output gradient
  ``(N, C_out, OD, OH, OW)``, ``bias`` is None and ``out`` receives the
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

With tuning on (:mod:`numbaconv.tuning`), ``"auto"`` takes the measured
fastest algorithm from the tuning cache (measuring a new problem once).
Otherwise it resolves plain forward convolutions by walking
:data:`AUTO_ORDER` and taking the first algorithm that supports the spec;
transposed convolutions and gradients by the short rule table of
:func:`auto_backward` (Note [interim auto]).  The cost-model dispatcher
replaces both.
"""

from __future__ import annotations

import math

import functools

from .. import rewrites
from ..context import current_context
from ..errors import UnsupportedAlgorithmError

_REGISTRY: dict = {}

#: Preference order used by ``algorithm="auto"``.
AUTO_ORDER: list = []


class ConvAlgorithm:
    """Base class of registered algorithms (see the module docstring)."""

    name: str = ""

    def unsupported_reason(self, spec):
        """``None`` if ``spec`` can be served, else a reason string."""
        return None

    def run(self, spec, x, weight, bias, out, ctx=None):
        """Compute ``spec`` into ``out`` (module docstring); returns ``out``.

        ``ctx`` is the call's :class:`~numbaconv.context.ExecutionContext`
        (a fresh snapshot when not given)."""
        ctx = current_context() if ctx is None else ctx
        if spec.computation == "grad_weight":
            return self.run_grad_weight(spec, x, weight, out, ctx)
        if spec.has_input_dilation:
            return self.run_input_dilated(spec, x, weight, bias, out, ctx)
        spec, x = rewrites.crop_negative_padding(spec, x)
        if x is None:
            return rewrites._bias_fill(out, bias)
        return self.forward(spec, x, weight, bias, out, ctx)

    def forward(self, spec, x, weight, bias, out, ctx):  # pragma: no cover - interface
        """A forward problem without input dilation or negative padding."""
        raise NotImplementedError

    def run_input_dilated(self, spec, x, weight, bias, out, ctx):
        """A forward problem with input dilation (Note [phases])."""
        return rewrites.run_by_phases(spec, x, weight, bias, out,
                                      functools.partial(self.run, ctx=ctx))

    def run_grad_weight(self, spec, x, grad_output, out, ctx):
        """The weight gradient of ``spec`` (Note [weight gradient as a convolution])."""
        return rewrites.grad_weight_as_forward(spec, x, grad_output, out,
                                               functools.partial(self.run, ctx=ctx),
                                               limit=ctx.workspace_limit)


def register(algorithm, *, auto_rank=None):
    """Add ``algorithm`` to the registry (and to the ``"auto"`` order)."""
    if algorithm.name in _REGISTRY or algorithm.name == "auto":
        raise ValueError(f"algorithm name {algorithm.name!r} is already taken")
    _REGISTRY[algorithm.name] = algorithm
    if auto_rank is not None:
        AUTO_ORDER.insert(auto_rank, algorithm.name)
    return algorithm


def algorithm_names():
    """Names accepted by ``algorithm=``, ``"auto"`` first."""
    return ("auto",) + tuple(_REGISTRY)


def get_algorithm(name):
    """The registered algorithm called ``name`` (not ``"auto"``)."""
    if not isinstance(name, str):
        raise TypeError(f"algorithm must be a string, got {name!r}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"algorithm must be one of {', '.join(map(repr, algorithm_names()))}, "
            f"got {name!r}") from None


#: Kernel taps from which ``auto`` sends a stride-1 backward problem to
#: ``fft`` (docs/results-fft.md: the forward crossover is 9x9 = 81 taps
#: with 8 channels; ``auto_backward``'s note).
FFT_MIN_TAPS = 64
#: Input channels per group below which a backward problem goes to direct:
#: depthwise stride-2 input gradient (4, 256, 14, 14) 1.22 ms with direct's
#: phases against 1.57 ms with im2col's col2im (scripts/backward_study.py,
#: docs/results-backward.md).
THIN_GROUP_CHANNELS = 8
#: Channels per group from which a 3x3 stride-1 problem goes to winograd.
WINOGRAD_MIN_CHANNELS = 16


def _is_plain_forward(spec):
    return spec.op in ("conv1d", "conv2d", "conv3d")


def auto_backward(spec):
    """The algorithm ``auto`` runs a transposed convolution or a gradient with.

    Note [interim auto]
    ~~~~~~~~~~~~~~~~~~~
    Until the dispatcher's cost models arrive, ``auto`` picks for the
    problems of transposed convolutions and gradients by five rules,
    measured on the public shapes with ``numbaconv bench --ops all``
    (docs/results-backward.md):

    1. a stride-1, undilated problem with a kernel of at least
       :data:`FFT_MIN_TAPS` taps: ``fft`` (mc_bigk2d's gradients, 20x and
       7x PyTorch);
    2. a weight gradient: ``im2col``, whose column tiles multiply the
       output gradient straight into the weight gradient (the fastest on
       every public shape);
    3. a 3x3 stride-1 2-D problem with at least
       :data:`WINOGRAD_MIN_CHANNELS` input and output channels per group:
       ``winograd`` (resnet3x3's input gradient: 3.6-4.1 ms against 6.2-6.5
       for direct and im2col);
    4. thin groups (fewer than :data:`THIN_GROUP_CHANNELS` input channels
       per group, e.g. depthwise) or 3-D: ``direct`` (depthwise input
       gradient 0.58-0.63 ms against 0.83 for im2col; vol3x3's 20.7 against
       34.8);
    5. otherwise ``im2col``: its GEMM + col2im for strided transposed
       problems (up4x4 6.2 ms against direct's 8.7), its tiles for the rest
       (pw1x1's input gradient 1.37 ms against 2.73, stem7x7's 8.4 against
       21).

    Plain forward calls keep ``direct``, so that this release changes no
    forward result.
    """
    taps = math.prod(spec.kernel_size)
    undilated = all(d == 1 for d in spec.dilation)
    if (taps >= FFT_MIN_TAPS and undilated and all(s == 1 for s in spec.stride)
            and not spec.has_input_dilation):
        choice = "fft"
    elif spec.computation == "grad_weight":
        choice = "im2col"
    elif (spec.kernel_size == (3,) * spec.ndim and spec.ndim == 2
          and not spec.has_input_dilation and all(s == 1 for s in spec.stride) and undilated
          and min(spec.in_channels_per_group, spec.out_channels_per_group)
          >= WINOGRAD_MIN_CHANNELS):
        choice = "winograd"
    elif spec.in_channels_per_group < THIN_GROUP_CHANNELS or spec.ndim == 3:
        choice = "direct"
    else:
        choice = "im2col"
    algorithm = _REGISTRY.get(choice)
    if algorithm is None or algorithm.unsupported_reason(spec) is not None:
        algorithm = _REGISTRY["direct"]
    return algorithm


def resolve_algorithm(name, spec):
    """The algorithm object that will run ``spec`` for ``algorithm=name``.

    Raises
    ------
    TypeError, ValueError
        ``name`` is not a string or not a known algorithm.
    UnsupportedAlgorithmError
        ``name`` is known but cannot serve ``spec``.
    """
    if name == "auto":
        from .. import tuning
        if tuning.tuning_enabled():
            candidates = tuning.serving_candidates(spec)
            if candidates:
                best, _, _ = tuning.tuned_choice(spec, candidates)
                return _REGISTRY[best]
    if name == "auto" and not _is_plain_forward(spec):
        return auto_backward(spec)
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            algorithm = _REGISTRY[candidate]
            reason = algorithm.unsupported_reason(spec)
            if reason is None:
                return algorithm
            reasons.append(f"{candidate}: {reason}")
        raise UnsupportedAlgorithmError(
            f"{spec.op}: no algorithm can serve {spec.describe()} ({'; '.join(reasons)})")
    try:
        algorithm = get_algorithm(name)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{spec.op}: {exc}") from None
    reason = algorithm.unsupported_reason(spec)
    if reason is not None:
        raise UnsupportedAlgorithmError(f"{spec.op}: algorithm={name!r} cannot serve "
                                        f"{spec.describe()}: {reason}")
    return algorithm
