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

``"auto"`` resolves by walking :data:`AUTO_ORDER` and taking the first
algorithm that supports the spec (a cost model replaces this when there is
more than one algorithm to choose from).
"""

from __future__ import annotations

from .. import rewrites
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

    def run(self, spec, x, weight, bias, out):
        """Compute ``spec`` into ``out`` (module docstring); returns ``out``."""
        if spec.computation == "grad_weight":
            return self.run_grad_weight(spec, x, weight, out)
        if spec.has_input_dilation:
            return self.run_input_dilated(spec, x, weight, bias, out)
        spec, x = rewrites.crop_negative_padding(spec, x)
        if x is None:
            return rewrites._bias_fill(out, bias)
        return self.forward(spec, x, weight, bias, out)

    def forward(self, spec, x, weight, bias, out):  # pragma: no cover - interface
        """A forward problem without input dilation or negative padding."""
        raise NotImplementedError

    def run_input_dilated(self, spec, x, weight, bias, out):
        """A forward problem with input dilation (Note [phases])."""
        return rewrites.run_by_phases(spec, x, weight, bias, out, self.run)

    def run_grad_weight(self, spec, x, grad_output, out):
        """The weight gradient of ``spec`` (Note [weight gradient as a convolution])."""
        return rewrites.grad_weight_as_forward(spec, x, grad_output, out, self.run)


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
