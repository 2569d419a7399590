"""The benchmark suite: one definition shared by ``numbaconv bench``, the
benchmark scripts and (later) asv.

The public shapes are copied from the project's BENCH_SHAPES table (float32,
NCHW).  ``guide_torch_ms`` is PyTorch 2.13's time on the machine that table
was measured on; it is only a guide -- always measure PyTorch side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..spec import make_conv_spec


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
        return f"{self.op} {self.input_shape} x {self.weight_shape}" + (f" {extra}" if extra else "")

    def make_arrays(self, dtype="float32", seed=0):
        """Seeded input and weight (the same in every process)."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.input_shape, dtype=np.float64).astype(dtype)
        w = rng.standard_normal(self.weight_shape, dtype=np.float64).astype(dtype)
        return x, w


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

SUITE = {case.name: case for case in PUBLIC_SHAPES}


def get_cases(names=None):
    """Cases by name (all public shapes when ``names`` is empty)."""
    if not names:
        return list(PUBLIC_SHAPES)
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        raise ValueError(f"unknown benchmark shape(s) {unknown}; known: {', '.join(SUITE)}")
    return [SUITE[n] for n in names]
