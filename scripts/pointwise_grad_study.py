"""Pointwise weight gradients at batch 1: the column tiles against Note
[pointwise weight gradient]'s GEMMs (docs/results-im2col.md, "Pointwise
weight gradients").

Every distinct pointwise layer of four networks of the suite
(:mod:`numbaconv.bench.networks`) at batch 1 (or the batch given); the two
kernels are called alternately on the same arrays, and the better of two
medians is printed, in ms.  Usage::

    python scripts/pointwise_grad_study.py [BATCH]
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from numbaconv.algorithms import im2col
from numbaconv.bench.networks import layers_at_batch
from numbaconv.context import current_context
from numbaconv.spec import make_grad_weight_spec

NETWORKS = ("resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny")


def median_ms(fn, rounds=5, turn_seconds=0.02):
    """Median ms per call over ``rounds`` turns of about ``turn_seconds``."""
    fn()
    start = time.perf_counter()
    fn()
    calls = max(1, int(turn_seconds / (time.perf_counter() - start)))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e3)
    return sorted(times)[rounds // 2]


def main(batch=1):
    rng = np.random.default_rng(0)
    ctx = current_context()
    seen = set()
    for net in NETWORKS:
        for layer in layers_at_batch(net, batch):
            forward = layer.spec()
            key = (layer.input_shape, layer.weight_shape, layer.groups)
            if not forward.is_pointwise or layer.transposed or key in seen:
                continue
            seen.add(key)
            x = rng.standard_normal(layer.input_shape, dtype=np.float32)
            g = rng.standard_normal(forward.output_shape, dtype=np.float32)
            spec = make_grad_weight_spec("study", 2, x, layer.weight_shape, g,
                                         groups=layer.groups)
            out = np.empty(spec.weight_shape3, np.float32)
            x3 = x.reshape(spec.input_shape[:2] + spec.input_size3)
            g3 = g.reshape(spec.output_shape[:2] + spec.output_size3)
            tiles, pointwise = [], []
            for _ in range(2):
                tiles.append(median_ms(
                    lambda: im2col.im2col_grad_weight(spec, x3, g3, out, ctx=ctx)))
                pointwise.append(median_ms(
                    lambda: im2col.im2col_pointwise_grad_weight(spec, x3, g3, out, ctx=ctx)))
            print(f"{net:18s} {layer.name:26s} C_in {spec.in_channels_per_group:5d} "
                  f"C_out {spec.out_channels_per_group:5d} pixels "
                  f"{math.prod(spec.output_size):6d} x{layer.count}  tiles {min(tiles):.3f}  "
                  f"pointwise {min(pointwise):.3f}  ratio {min(pointwise) / min(tiles):.2f}",
                  flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
