"""Time the native channels-last paths of im2col and direct against their
canonical (NCHW) paths, or PyTorch's channels_last against its contiguous
convolution (``--torch``, run in its own process), on the four layers of
docs/results-channels-last.md.  Medians over alternating runs.

    PYTHONPATH=. python scripts/channels_last_bench.py [--repeats 7] [--torch]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np

LAYERS = {
    "pointwise": ((8, 256, 14, 14), (1024, 256, 1, 1), {}),
    "resnet3x3": ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    "s2_3x3": ((1, 32, 112, 112), (64, 32, 3, 3), dict(stride=2, padding=1)),
    "depthwise": ((8, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144)),
}


def _alternating(fns, repeats):
    """Median seconds of each of ``fns``, called in turn ``repeats`` times
    (after one untimed call each)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_numbaconv(repeats):
    from numbaconv.algorithms.registry import get_algorithm
    from numbaconv.context import current_context
    from numbaconv.epilogue import Epilogue
    from numbaconv.spec import problem_spec
    ctx = current_context()
    rng = np.random.default_rng(0)
    for name, (xs, ws, kw) in LAYERS.items():
        spec = problem_spec(xs, ws, **kw)
        cl = dataclasses.replace(spec, memory_format="channels_last")
        x = rng.standard_normal(spec.input_shape[:2] + spec.input_size3).astype(np.float32)
        w = rng.standard_normal(spec.weight_shape3).astype(np.float32)
        b = Epilogue.of(rng.standard_normal(spec.out_channels).astype(np.float32), np.float32)
        x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 4, 1))
        out = np.empty(spec.output_shape[:2] + spec.output_size3, np.float32)
        out_cl = np.empty((spec.batch,) + spec.output_size3 + (spec.out_channels,), np.float32)
        for alg_name in ("im2col", "direct"):
            alg = get_algorithm(alg_name)
            plan, plan_cl = alg.plan(spec, ctx), alg.plan(cl, ctx)
            t = _alternating({"nchw": lambda: alg.run(spec, x, w, b, out, ctx, plan),
                              "nhwc": lambda: alg.run(cl, x_cl, w, b, out_cl, ctx, plan_cl)},
                             repeats)
            assert np.allclose(out.transpose(0, 2, 3, 4, 1), out_cl, rtol=1e-3, atol=1e-3)
            print(f"{name:10s} {alg_name:7s} NCHW {t['nchw'] * 1e3:8.2f} ms ({plan.path}; "
                  f"model {plan.seconds * 1e3:.2f})  NHWC {t['nhwc'] * 1e3:8.2f} ms "
                  f"({plan_cl.path}; model {plan_cl.seconds * 1e3:.2f})", flush=True)


def bench_torch(repeats):
    import torch
    torch.set_num_threads(2)
    for name, (xs, ws, kw) in LAYERS.items():
        x = torch.randn(xs)
        w = torch.randn(ws)
        b = torch.randn(ws[0])
        x_cl = x.to(memory_format=torch.channels_last)
        w_cl = w.to(memory_format=torch.channels_last)
        f = torch.nn.functional.conv2d
        with torch.no_grad():
            t = _alternating({"nchw": lambda: f(x, w, b, **kw),
                              "nhwc": lambda: f(x_cl, w_cl, b, **kw)}, repeats)
            assert f(x_cl, w_cl, b, **kw).is_contiguous(memory_format=torch.channels_last)
        print(f"{name:10s} torch   NCHW {t['nchw'] * 1e3:8.2f} ms  channels_last "
              f"{t['nhwc'] * 1e3:8.2f} ms", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--torch", action="store_true")
    args = parser.parse_args()
    (bench_torch if args.torch else bench_numbaconv)(args.repeats)
