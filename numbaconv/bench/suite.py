"""The benchmark suite: one definition shared by ``numbaconv bench``, the
benchmark scripts and asv (asv_benchmarks/benchmarks.py).

The public shapes are those of docs/benchmarking.md's table (float32,
NCHW).  ``guide_torch_ms`` is PyTorch 2.13's time on the machine that table
was measured on; it is only a guide -- always measure PyTorch side by side.

A benchmark *point* is a case and an *op* (one of :data:`OPS`):

* ``"forward"`` -- a forward case's own call, ``conv{N}d(x, w, ...)``;
* ``"grad_input"`` / ``"grad_weight"`` -- the gradients of a forward case's
  convolution with respect to its input and its weight, given a seeded
  ``grad_output`` of the forward output's shape (``nc.grad.conv{N}d_input``
  and ``conv{N}d_weight``; PyTorch: ``torch.nn.grad.*``);
* ``"transposed"`` -- on a transposed case (``up4x4``) its own call,
  ``conv_transpose{N}d(x, w, ...)``; on a forward case the transposed
  convolution (the adjoint) of the forward: ``conv_transpose{N}d`` of the
  ``grad_output`` tensor with the case's weight, with the ``output_padding``
  that gives back the input's shape -- the same arithmetic as
  ``grad_input``, reached through the public ``conv_transpose`` API (so the
  1-D, 3-D, grouped, strided and dilated transposed convolutions are
  measured too, not only ``up4x4``).

Every op of a case does the same multiply-adds, so all share the case's
FLOP count.  Transposed cases have only the ``"transposed"`` op (PyTorch
has no ``torch.nn.grad`` function for them).

Naming: a case's ``op`` field is the *function* of the case
(``"conv2d"``, ``"conv_transpose2d"``); the benchmark dimension called op
(the ``op`` arguments below) is one of :data:`OPS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np

from ..spec import conv_input_size, make_conv_spec

#: The benchmark ops, in table order (see the module docstring).
OPS = ("forward", "transposed", "grad_input", "grad_weight")


@dataclass(frozen=True)
class OpCall:
    """One benchmark point as a library call.

    ``namespace.name(*args, **kwargs)``: namespace ``"functional"`` is
    ``numbaconv`` / ``torch.nn.functional``, ``"grad"`` is ``numbaconv.grad``
    / ``torch.nn.grad``.  ``args`` holds NumPy arrays and size tuples in call
    order.  ``reference`` names the float64 oracle in
    :mod:`numbaconv.reference`, called with the same arguments.
    """

    namespace: str
    name: str
    args: tuple
    kwargs: dict
    reference: str


@dataclass(frozen=True)
class BenchCase:
    """One benchmark problem."""

    name: str
    op: str                      # "conv1d" ... "conv3d", "conv_transpose2d"
    input_shape: tuple
    weight_shape: tuple
    kwargs: dict = field(default_factory=dict)
    guide_torch_ms: float | None = None

    @property
    def ndim(self) -> int:
        return len(self.weight_shape) - 2

    @property
    def transposed(self) -> bool:
        return self.op.startswith("conv_transpose")

    @property
    def flops(self) -> int:
        """2 * N * C_out * C_in/groups * prod(kernel) * prod(output)."""
        if self.transposed:
            # every input pixel scatters a C_out/groups x prod(kernel) patch
            n, c_in = self.input_shape[:2]
            return (2 * n * c_in * self.weight_shape[1] * int(np.prod(self.weight_shape[2:]))
                    * int(np.prod(self.input_shape[2:])))
        x = np.empty(self.input_shape, np.float32)
        w = np.empty(self.weight_shape, np.float32)
        spec = make_conv_spec(self.op, self.ndim, x, w, None, **self.kwargs)
        return spec.flops

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        described = f"{self.op} {self.input_shape} x {self.weight_shape}"
        return described + (f" {extra}" if extra else "")

    def make_arrays(self, dtype="float32", seed=0):
        """Seeded input and weight (the same in every process)."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.input_shape, dtype=np.float64).astype(dtype)
        w = rng.standard_normal(self.weight_shape, dtype=np.float64).astype(dtype)
        return x, w

    def make_grad_output(self, dtype="float32", seed=0):
        """Seeded standard normal array of the output's shape (the same in
        every process; a stream of its own, independent of ``make_arrays``)."""
        rng = np.random.default_rng([seed, 1])
        return rng.standard_normal(self.output_shape, dtype=np.float64).astype(dtype)

    # ---- ops ----------------------------------------------------------------
    def _forward_spec(self):
        x = np.empty(self.input_shape, np.float32)
        w = np.empty(self.weight_shape, np.float32)
        return make_conv_spec(self.op, self.ndim, x, w, None, **self.kwargs)

    @property
    def output_shape(self) -> tuple:
        """Shape of the case's own call's result (batched)."""
        if self.transposed:
            nd = self.ndim
            per_dim = {name: _tuple(self.kwargs.get(name, default), nd)
                       for name, default in (("stride", 1), ("padding", 0),
                                             ("output_padding", 0), ("dilation", 1))}
            size = conv_input_size(tuple(self.input_shape[2:]), tuple(self.weight_shape[2:]),
                                   per_dim["stride"], per_dim["padding"], per_dim["dilation"],
                                   per_dim["output_padding"])
            groups = self.kwargs.get("groups", 1)
            return (self.input_shape[0], self.weight_shape[1] * groups) + cast(tuple, size)
        return tuple(self._forward_spec().output_shape)

    def _adjoint_kwargs(self):
        """stride/padding/dilation/groups of a forward case as the gradient and
        transposed calls take them; ``None`` when they cannot express it
        (asymmetric ``padding="same"``, a padding_mode other than zeros)."""
        spec = self._forward_spec()
        if spec.padding_mode != "zeros" or any(lo != hi for lo, hi in spec.padding):
            return None
        return dict(stride=tuple(spec.stride), padding=tuple(lo for lo, _ in spec.padding),
                    dilation=tuple(spec.dilation), groups=spec.groups)

    @property
    def ops(self) -> tuple:
        """The ops this case offers, in :data:`OPS` order."""
        if self.transposed:
            return ("transposed",)
        if self._adjoint_kwargs() is None:
            return ("forward",)
        return OPS

    @property
    def default_op(self) -> str:
        """The case's own call: ``"forward"``, or ``"transposed"`` for a
        transposed case."""
        return "transposed" if self.transposed else "forward"

    def op_flops(self, op) -> int:
        """FLOPs of ``op``: every op of a case does the forward's multiply-adds."""
        self._check_op(op)
        return self.flops

    def _check_op(self, op):
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; known: {', '.join(OPS)}")
        if op not in self.ops:
            raise ValueError(f"{self.name} ({self.op}) has no op {op!r}; "
                             f"its ops: {', '.join(self.ops)}")

    def op_call(self, op, dtype="float32", seed=0) -> OpCall:
        """The call that ``op`` makes on this case, with seeded arrays."""
        self._check_op(op)
        x, w = self.make_arrays(dtype, seed)
        nd = self.ndim
        if op == "forward":
            return OpCall("functional", self.op, (x, w), dict(self.kwargs), "conv_reference")
        if self.transposed:                      # op == "transposed": the case's own call
            return OpCall("functional", self.op, (x, w), dict(self.kwargs),
                          "conv_transpose_reference")
        gy = self.make_grad_output(dtype, seed)
        kwargs = self._adjoint_kwargs()
        if op == "grad_input":
            return OpCall("grad", f"conv{nd}d_input", (tuple(x.shape), w, gy), kwargs,
                          "conv_grad_input_reference")
        if op == "grad_weight":
            return OpCall("grad", f"conv{nd}d_weight", (x, tuple(w.shape), gy), kwargs,
                          "conv_grad_weight_reference")
        # "transposed" on a forward case: the adjoint, back to the input's shape
        spec = self._forward_spec()
        output_padding = tuple(
            n + 2 * p - d * (k - 1) - 1 - s * (o - 1) for n, p, d, k, s, o in zip(
                spec.input_size, kwargs["padding"], spec.dilation, spec.kernel_size,
                spec.stride, spec.output_size))
        return OpCall("functional", f"conv_transpose{nd}d", (gy, w),
                      dict(kwargs, output_padding=output_padding), "conv_transpose_reference")

    # ---- passing a case to the PyTorch worker ---------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "input_shape": list(self.input_shape),
                "weight_shape": list(self.weight_shape), "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data) -> "BenchCase":
        kwargs = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in data.get("kwargs", {}).items()}
        return cls(data["name"], data["op"], tuple(data["input_shape"]),
                   tuple(data["weight_shape"]), kwargs)


def _tuple(value, ndim):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * ndim


PUBLIC_SHAPES = (
    BenchCase("resnet3x3", "conv2d", (4, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), 4.7),
    BenchCase("pw1x1", "conv2d", (4, 256, 28, 28), (128, 256, 1, 1), {}, 1.1),
    BenchCase("s2_3x3", "conv2d", (4, 128, 56, 56), (128, 128, 3, 3),
              dict(stride=2, padding=1), 5.0),
    BenchCase("stem7x7", "conv2d", (4, 3, 224, 224), (64, 3, 7, 7),
              dict(stride=2, padding=3), 5.4),
    BenchCase("depthwise", "conv2d", (4, 256, 28, 28), (256, 1, 3, 3),
              dict(padding=1, groups=256), 0.33),
    BenchCase("dilated", "conv2d", (4, 64, 56, 56), (64, 64, 3, 3),
              dict(padding=2, dilation=2), 4.2),
    BenchCase("bigk2d", "conv2d", (1, 1, 1024, 1024), (1, 1, 31, 31), {}, 158.0),
    BenchCase("mc_bigk2d", "conv2d", (2, 8, 256, 256), (8, 8, 21, 21), dict(padding=10), 68.0),
    BenchCase("bigk1d", "conv1d", (8, 16, 16384), (16, 16, 255), {}, 98.0),
    BenchCase("vol3x3", "conv3d", (2, 16, 32, 32, 32), (32, 16, 3, 3, 3), dict(padding=1), 8.8),
    BenchCase("up4x4", "conv_transpose2d", (4, 128, 28, 28), (128, 64, 4, 4),
              dict(stride=2, padding=1), 4.5),
)

#: The layer classes issue 13 found slower than PyTorch (docs/results-classes.md):
#: our own shapes, apart from the public ones and from those the dispatcher's
#: constants were fitted on (calibration.CALIBRATION_PROBLEMS) or checked on
#: (scripts/dispatch_regret.py HELD_OUT); ``--shapes classes`` runs them.
CLASS_SHAPES = (
    BenchCase("dw_s2", "conv2d", (4, 144, 56, 56), (144, 1, 3, 3),
              dict(stride=2, padding=1, groups=144)),
    BenchCase("dw7x7", "conv2d", (2, 192, 28, 28), (192, 1, 7, 7),
              dict(padding=3, groups=192)),
    # EfficientNet-B0's 5x5 depthwise layers (issue 13's "any stride and
    # kernel size"; added in its sixth session)
    BenchCase("dw5x5", "conv2d", (4, 240, 28, 28), (240, 1, 5, 5),
              dict(padding=2, groups=240)),
    BenchCase("dw5x5_s2", "conv2d", (4, 144, 56, 56), (144, 1, 5, 5),
              dict(stride=2, padding=2, groups=144)),
    BenchCase("late3x3", "conv2d", (8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    BenchCase("dil3x3", "conv2d", (4, 128, 28, 28), (128, 128, 3, 3),
              dict(padding=2, dilation=2)),
    BenchCase("vol3x3_32", "conv3d", (1, 32, 32, 32, 32), (32, 32, 3, 3, 3), dict(padding=1)),
    # few channels per group (Note [few channels] in numbaconv/algorithms/direct.py)
    BenchCase("few3x3", "conv2d", (1, 4, 256, 256), (4, 4, 3, 3), dict(padding=1)),
    BenchCase("resnext3x3", "conv2d", (4, 128, 56, 56), (128, 4, 3, 3),
              dict(padding=1, groups=32)),
)

SUITE = {case.name: case for case in PUBLIC_SHAPES + CLASS_SHAPES}
GROUPS = {"public": PUBLIC_SHAPES, "classes": CLASS_SHAPES}


def get_cases(names=None):
    """Cases by name or group name (:data:`GROUPS`); the public shapes when
    ``names`` is empty."""
    if not names:
        return list(PUBLIC_SHAPES)
    unknown = [n for n in names if n not in SUITE and n not in GROUPS]
    if unknown:
        raise ValueError(f"unknown benchmark shape(s) {unknown}; known: {', '.join(SUITE)}, "
                         f"and the groups {', '.join(GROUPS)}")
    cases = []
    for n in names:
        cases += [c for c in (GROUPS[n] if n in GROUPS else [SUITE[n]])
                  if all(c is not seen for seen in cases)]
    return cases


def parse_ops(text):
    """``"forward,grad_input"`` / ``"all"`` -> a tuple of ops; ``None`` or empty
    -> ``None`` (each case's own call, see :func:`bench_points`)."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        return None
    if "all" in names:
        return OPS
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise ValueError(f"unknown op(s) {unknown}; known: {', '.join(OPS)}, all")
    return tuple(dict.fromkeys(names))


def bench_points(cases, ops=None):
    """The (case, op) points to run, case by case, ops in :data:`OPS` order.

    ``ops=None``: each case's own call only (forward; transposed for a
    transposed case).  Otherwise the requested ops each case offers (a
    transposed case offers only ``"transposed"``).
    """
    points = []
    for case in cases:
        wanted = (case.default_op,) if ops is None else ops
        points += [(case, op) for op in OPS if op in wanted and op in case.ops]
    return points


def point_spec(case, op, dtype="float32"):
    """The general problem (:func:`numbaconv.spec.problem_spec`) a
    benchmark point computes; ``transposed`` on a forward case is its input
    gradient's problem."""
    from ..spec import problem_spec
    gradient = {"forward": None, "transposed": None, "grad_input": "input",
                "grad_weight": "weight"}[op]
    if op == "transposed" and not case.transposed:
        gradient = "input"
    return problem_spec(case.input_shape, case.weight_shape, transposed=case.transposed,
                        gradient=gradient, dtype=dtype, **case.kwargs)
