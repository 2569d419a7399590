"""Depthwise gradients: the thin kernels against what ``"auto"`` ran before, and PyTorch.

For MobileNetV3-Large's and EfficientNet-B0's depthwise layers
(numbaconv/bench/networks.py) at batch 1 and 8, times ``grad.conv2d_input``
and ``grad.conv2d_weight``:

* ``before``: ``"auto"`` with the thin kernels switched off (Note [thin
  weight gradient], Note [thin transposed phases] in
  numbaconv/kernels/direct_thin_grad.py): what the dispatcher picked before
  them (im2col's weight-gradient tiles, direct's phases or im2col's col2im);
* ``after``: ``"auto"`` now;
* ``torch``: ``torch.nn.grad.conv2d_input`` / ``conv2d_weight`` in a
  process of its own (two OpenMP runtimes spinning in one process distort
  both), with the same thread count.

``before`` and ``after`` take turns in one process, call by call; PyTorch's
rounds run between ours (never at the same time).  Each figure is the
median over ``--rounds`` rounds of the mean of ``--calls`` calls, with the
fastest round beside it (on a shared machine a slow spell only adds time).

With ``--channels-last`` the input and output gradient are channels-last
arrays (and PyTorch's tensors ``torch.channels_last``).

Usage::

    python scripts/depthwise_grad_study.py [--rounds 7] [--calls 5] [--threads 2]
        [--channels-last] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

#: (name, channels, input size, kernel, stride): depthwise layers of
#: bench/networks.py (padding kernel // 2)
LAYERS = [
    ("mnv3 features.2.block.1.0", 64, 112, 3, 2),
    ("effb0 features.2.0.block.1.0", 96, 112, 3, 2),
    ("effb0 features.2.1.block.1.0", 144, 56, 3, 1),
    ("mnv3 features.4.block.1.0", 72, 56, 5, 2),
    ("effb0 features.3.1.block.1.0", 240, 28, 5, 1),
    ("mnv3 features.7.block.1.0", 240, 28, 3, 2),
    ("effb0 features.4.1.block.1.0", 480, 14, 3, 1),
    ("effb0 features.6.0.block.1.0", 672, 14, 5, 2),
    ("effb0 features.6.1.block.1.0", 1152, 7, 5, 1),
]
BATCHES = (1, 8)

TORCH_ROUND = r"""
import json, sys, time
import numpy as np, torch
import torch.nn.grad
torch.set_num_threads({threads})
layers, calls = json.loads(sys.argv[1]), {calls}
out = {{}}
for key, (n, c, h, k, s) in layers.items():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((n, c, h, h)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((c, 1, k, k)).astype(np.float32))
    oh = (h + 2 * (k // 2) - k) // s + 1
    g = torch.from_numpy(rng.standard_normal((n, c, oh, oh)).astype(np.float32))
    if {channels_last}:
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    kw = dict(stride=s, padding=k // 2, groups=c)
    fns = {{"input": lambda: torch.nn.grad.conv2d_input(x.shape, w, g, **kw),
            "weight": lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, **kw)}}
    for op, fn in fns.items():
        fn(); fn()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        out[key + "|" + op] = (time.perf_counter() - start) / calls
print(json.dumps(out))
"""


def _switch(thin):
    """Switch the thin kernels on or off, and forget every plan and pick
    made under the other setting."""
    from numbaconv import dispatch
    from numbaconv.algorithms import direct, registry

    if not hasattr(direct, "_served_thin"):
        direct._served_thin = direct.why_not_thin_gradient
    direct.why_not_thin_gradient = (direct._served_thin if thin
                                    else (lambda spec: "switched off"))
    registry._cached_plan.cache_clear()
    dispatch._CALL_PLANS.clear()
    dispatch._auto_choice.cache_clear()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true",
                        help="input and output gradient channels-last (PyTorch's too)")
    parser.add_argument("--json", help="write the medians here")
    args = parser.parse_args(argv)

    import numba

    import numbaconv as nc

    numba.set_num_threads(args.threads)
    problems = {}
    for name, c, h, k, s in LAYERS:
        for n in BATCHES:
            problems[f"{name} b{n}"] = (n, c, h, k, s)
    arrays = {}
    for key, (n, c, h, k, s) in problems.items():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((c, 1, k, k)).astype(np.float32)
        oh = (h + 2 * (k // 2) - k) // s + 1
        g = rng.standard_normal((n, c, oh, oh)).astype(np.float32)
        if args.channels_last:
            x, g = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
                    for a in (x, g))
        arrays[key] = (x, w, g, dict(stride=s, padding=k // 2, groups=c))

    def call(key, op):
        x, w, g, kw = arrays[key]
        if op == "input":
            return nc.grad.conv2d_input(x.shape, w, g, **kw)
        return nc.grad.conv2d_weight(x, w.shape, g, **kw)

    picks, times = {}, {}
    for variant in ("before", "after"):
        _switch(variant == "after")
        for key, (x, w, g, kw) in arrays.items():
            for op in ("input", "weight"):
                choice = nc.choose_algorithm(x, w.shape, gradient=op, **kw)
                picks[key, op, variant] = f"{choice.algorithm}: {choice.path}"
                call(key, op)                       # compile, warm
    torch_script = TORCH_ROUND.format(threads=args.threads, calls=args.calls,
                                      channels_last=args.channels_last)
    for r in range(args.rounds):
        for key in arrays:
            for op in ("input", "weight"):
                for variant in ("before", "after"):
                    _switch(variant == "after")
                    call(key, op)
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        call(key, op)
                    times.setdefault((key, op, variant), []).append(
                        (time.perf_counter() - start) / args.calls)
        try:
            done = subprocess.run([sys.executable, "-c", torch_script, json.dumps(problems)],
                                  capture_output=True, text=True, check=True)
            for k, t in json.loads(done.stdout).items():
                key, op = k.split("|")
                times.setdefault((key, op, "torch"), []).append(t)
        except (subprocess.CalledProcessError, ValueError) as exc:
            print(f"PyTorch round failed: {exc}", file=sys.stderr)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    _switch(True)

    medians = {"|".join(k): float(np.median(v)) for k, v in times.items()}
    fastest = {"|".join(k): float(np.min(v)) for k, v in times.items()}
    print("median ms (fastest round in brackets)\n")
    print("| layer | batch | gradient | before (auto) | after (auto) | speed-up | torch | "
          "after / torch | before's pick | after's pick |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, (n, c, h, k, s) in problems.items():
        name = key.rsplit(" b", 1)[0]
        for op in ("input", "weight"):
            cells = []
            for variant in ("before", "after", "torch"):
                k_ = f"{key}|{op}|{variant}"
                cells.append("-" if k_ not in medians else
                             f"{medians[k_] * 1e3:.3f} ({fastest[k_] * 1e3:.3f})")
            before, after = medians[f"{key}|{op}|before"], medians[f"{key}|{op}|after"]
            torch_t = medians.get(f"{key}|{op}|torch")
            ratio = "-" if torch_t is None else f"{after / torch_t:.2f}"
            print(f"| {name} ({c}, {h}x{h}, {k}x{k} s{s}) | {n} | {op} | {cells[0]} | "
                  f"{cells[1]} | {before / after:.2f}x | {cells[2]} | {ratio} | "
                  f"{picks[key, op, 'before']} | {picks[key, op, 'after']} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"medians": medians, "fastest": fastest, "threads": args.threads,
                       "rounds": args.rounds, "calls": args.calls,
                       "picks": {"|".join(k): v for k, v in picks.items()}}, fh, indent=1)


if __name__ == "__main__":
    main()
