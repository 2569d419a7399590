"""How good would the cost models' picks be?  Regret against measured times.

Reads the JSON of ``numbaconv bench --ops all --json FILE`` (every
algorithm timed on every shape and op), asks every algorithm's plan for
its estimate on the same problem, and prints per (shape, op): the model's
pick, the measured fastest, the regret (measured time of the pick / the
fastest) and the model's prediction error (estimate / measured) per
algorithm.  ``--held-out`` instead times every algorithm itself on
:data:`HELD_OUT`, layer shapes the constants were not fitted on;
``--tuned`` measures the pick tuning would make there and then the
candidates again, for the regret of tuned ``"auto"``.  ``--nets`` times
every algorithm on every distinct layer of the network suite
(:mod:`numbaconv.bench.networks`, the layers of ``numbaconv bench
--nets``), with ``--training`` their gradients too, for issue 27's
measure: the regret of ``"auto"`` on the network suite, per (layer, op)
and per network (the pick's total time over the fastest one's).  Usage::

    numbaconv bench --ops all --json bench.json
    python scripts/dispatch_regret.py bench.json
    python scripts/dispatch_regret.py --held-out
    python scripts/dispatch_regret.py --tuned
    python scripts/dispatch_regret.py --nets resnet50,mobilenet_v3_large --batch 1 [--training]
"""

from __future__ import annotations

import json
import math
import sys

from numbaconv.algorithms.registry import get_algorithm
from numbaconv.bench.suite import SUITE, point_spec
from numbaconv.spec import problem_spec



#: Layer shapes of common networks, not among the calibration problems or
#: the public benchmark shapes: (name, input, weight, kwargs, gradient).
HELD_OUT = [
    ("resnet50 1x1 reduce", (4, 256, 56, 56), (64, 256, 1, 1), {}, None),
    ("resnet50 3x3 stage3", (4, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), None),
    ("resnet50 1x1 expand", (4, 128, 28, 28), (512, 128, 1, 1), {}, None),
    ("resnet18 s2 downsample", (4, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1),
     None),
    ("resnet 3x3 stage4", (4, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), None),
    ("mobilenet dw s1", (4, 144, 56, 56), (144, 1, 3, 3), dict(padding=1, groups=144), None),
    ("mobilenet dw s2", (4, 96, 112, 112), (96, 1, 3, 3), dict(stride=2, padding=1,
                                                                 groups=96), None),
    ("mobilenet pw", (4, 32, 112, 112), (16, 32, 1, 1), {}, None),
    ("convnext dw 7x7", (2, 96, 56, 56), (96, 1, 7, 7), dict(padding=3, groups=96), None),
    ("convnext stem 4x4 s4", (2, 3, 224, 224), (96, 3, 4, 4), dict(stride=4), None),
    ("unet 3x3 64ch 128px", (1, 64, 128, 128), (64, 64, 3, 3), dict(padding=1), None),
    ("unet up 2x2 s2", (1, 128, 32, 32), (128, 64, 2, 2), dict(stride=2), "transposed"),
    ("unet 3x3 grad_weight", (1, 64, 128, 128), (64, 64, 3, 3), dict(padding=1), "weight"),
    ("audio 1d k3", (8, 64, 8000), (64, 64, 3), dict(padding=1), None),
    ("audio 1d k31", (4, 32, 16000), (32, 32, 31), dict(padding=15), None),
    ("audio 1d s4 k8", (8, 32, 16000), (64, 32, 8), dict(stride=4), None),
    ("medical 3d 3x3x3", (1, 32, 48, 48, 48), (32, 32, 3, 3, 3), dict(padding=1), None),
    ("medical 3d s2", (1, 16, 64, 64, 64), (32, 16, 3, 3, 3), dict(stride=2, padding=1), None),
    ("blur 15x15", (1, 3, 512, 512), (3, 1, 15, 15), dict(padding=7, groups=3), None),
    ("blur 41x41", (1, 1, 512, 512), (1, 1, 41, 41), dict(padding=20), None),
    ("dilated 3x3 d4", (2, 128, 32, 32), (128, 128, 3, 3), dict(padding=4, dilation=4), None),
    ("vgg 3x3 grad_input", (2, 128, 56, 56), (128, 128, 3, 3), dict(padding=1), "input"),
    ("resnet18 s2 grad_weight", (4, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1),
     "weight"),
]


def measure_held_out(repeats):
    import numbaconv as nc
    from numbaconv import tuning
    measured, specs = {}, {}
    for name, xs, ws, kw, gradient in HELD_OUT:
        transposed = gradient == "transposed"
        spec = problem_spec(xs, ws, transposed=transposed,
                            gradient=None if transposed else gradient, **kw)
        candidates = [get_algorithm(a) for a in nc.algorithm_names()[1:]
                      if get_algorithm(a).unsupported_reason(spec) is None]
        times = tuning.measure(spec, candidates, repeats=repeats)
        measured[(name, gradient or "forward")] = {a: t * 1e3 for a, t in times.items()}
        specs[(name, gradient or "forward")] = spec
        print(f"measured {name}", file=sys.stderr, flush=True)
    return measured, specs


def tuned_regret(repeats):
    """With tuning: the pick measured once (as ``"auto"`` with tuning on
    does), then every candidate measured again, independently; the regret of
    the tuned pick against that second measurement."""
    import numbaconv as nc
    from numbaconv import tuning
    regrets = []
    print("| shape | op | tuned pick | fastest on re-measurement | regret |")
    print("| --- | --- | --- | --- | --- |")
    for name, xs, ws, kw, gradient in HELD_OUT:
        transposed = gradient == "transposed"
        spec = problem_spec(xs, ws, transposed=transposed,
                            gradient=None if transposed else gradient, **kw)
        candidates = [get_algorithm(a) for a in nc.algorithm_names()[1:]
                      if get_algorithm(a).unsupported_reason(spec) is None]
        first = tuning.measure(spec, candidates, repeats=repeats)
        pick = min(first, key=first.get)
        again = tuning.measure(spec, candidates, repeats=repeats)
        best = min(again, key=again.get)
        regrets.append(again[pick] / again[best])
        print(f"| {name} | {gradient or 'forward'} | {pick} | {best} | {regrets[-1]:.2f} |",
              flush=True)
    geo = math.exp(sum(math.log(r) for r in regrets) / len(regrets))
    print(f"\ntuned regret: geometric mean {geo:.3f}, worst {max(regrets):.2f}")


def main(path, held_out=False, repeats=5):
    torch_ms = {}
    if held_out:
        measured, specs = measure_held_out(repeats)
    else:
        rows = json.load(open(path))
        measured, specs = {}, {}
        for r in rows:
            if (r["impl"].startswith("numbaconv:") and "->" not in r["impl"]
                    and r.get("median_ms")):
                measured.setdefault((r["case"], r["op"]), {})[r["impl"].split(":")[1]] = \
                    r["median_ms"]
            elif r["impl"] == "torch" and r.get("median_ms"):
                torch_ms[(r["case"], r["op"])] = r["median_ms"]
        for name, op in measured:
            specs[(name, op)] = point_spec(SUITE[name], op)
    regrets, errors, torch_beaten, auto_loses = [], [], 0, []
    print("| shape | op | pick | fastest | regret | estimate / measured per algorithm |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, op), times in measured.items():
        spec = specs[(name, op)]
        estimates = {a: get_algorithm(a).plan(spec).seconds * 1e3 for a in times}
        pick = min(estimates, key=estimates.get)
        best = min(times, key=times.get)
        regret = times[pick] / times[best]
        regrets.append(regret)
        ratios = {a: estimates[a] / times[a] for a in times}
        if (name, op) in torch_ms and times[best] < torch_ms[(name, op)]:
            # one of ours beats PyTorch here: does the pick?
            torch_beaten += 1
            if times[pick] >= torch_ms[(name, op)]:
                auto_loses.append(f"{name} {op}")
        errors += [abs(math.log(v)) for v in ratios.values()]
        print(f"| {name} | {op} | {pick} | {best} | {regret:.2f} | "
              + ", ".join(f"{a} {v:.2f}" for a, v in sorted(ratios.items())) + " |")
    geo = math.exp(sum(math.log(r) for r in regrets) / len(regrets))
    print(f"\nregret: geometric mean {geo:.3f}, worst {max(regrets):.2f}; "
          f"model error: median factor {math.exp(sorted(errors)[len(errors) // 2]):.2f}, "
          f"worst {math.exp(max(errors)):.1f}")
    if torch_ms:
        print(f"PyTorch beaten by one of our algorithms on {torch_beaten} of {len(regrets)} "
              f"rows; the pick loses to PyTorch on {len(auto_loses)} of them"
              + (f": {', '.join(auto_loses)}" if auto_loses else ""))


def net_regret(names, batch, training, repeats=5, shown=1.10):
    """The regret of ``"auto"``'s pick on every distinct layer of the
    networks ``names`` at ``batch``: every algorithm that serves a (layer,
    op) timed by :func:`numbaconv.tuning.measure`, in turns."""
    import numbaconv as nc
    from numbaconv import tuning
    from numbaconv.bench.networks import layers_at_batch
    from numbaconv.context import current_context
    from numbaconv.dispatch import auto_algorithm_name
    ctx = current_context()
    regrets = []
    print("| network | layer | op | pick | fastest | regret | ms: per algorithm |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    totals = {}
    for net in names:
        pick_total = best_total = 0.0
        for layer in layers_at_batch(net, batch):
            for gradient in (None, "input", "weight") if training else (None,):
                try:
                    spec = problem_spec(layer.input_shape, layer.weight_shape,
                                        stride=layer.stride, padding=layer.padding,
                                        dilation=layer.dilation, groups=layer.groups,
                                        transposed=layer.transposed,
                                        output_padding=layer.output_padding, gradient=gradient)
                except (TypeError, ValueError) as exc:
                    print(f"skipped {net} {layer.name} {gradient}: {exc}", file=sys.stderr)
                    continue
                candidates = [get_algorithm(a) for a in nc.algorithm_names()[1:]
                              if get_algorithm(a).unsupported_reason(spec) is None]
                try:
                    pick = auto_algorithm_name(spec, ctx)
                except MemoryError:
                    continue
                times = tuning.measure(spec, candidates, repeats=repeats)
                best = min(times, key=times.get)
                regret = times[pick] / times[best]
                regrets.append(regret)
                pick_total += times[pick] * layer.count
                best_total += times[best] * layer.count
                op = {None: "forward", "input": "grad_input", "weight": "grad_weight"}[gradient]
                if regret > shown:
                    print(f"| {net} | {layer.name} | {op} | {pick} | {best} | {regret:.2f} | "
                          + ", ".join(f"{a} {t * 1e3:.3g}" for a, t in sorted(times.items()))
                          + " |", flush=True)
        totals[net] = (pick_total, best_total)
    geo = math.exp(sum(math.log(r) for r in regrets) / len(regrets))
    print(f"\nregret over {len(regrets)} (layer, op) rows: geometric mean {geo:.3f}, "
          f"worst {max(regrets):.2f}; rows over {shown}: "
          f"{sum(r > shown for r in regrets)}")
    for net, (pick_total, best_total) in totals.items():
        print(f"{net}: the picks' total {pick_total * 1e3:.1f} ms, the fastest's "
              f"{best_total * 1e3:.1f} ms, regret {pick_total / best_total:.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--nets"]:
        args = sys.argv[3:]
        net_regret(sys.argv[2].split(","),
                   int(args[args.index("--batch") + 1]) if "--batch" in args else 1,
                   "--training" in args)
    elif sys.argv[1:] == ["--held-out"]:
        main(None, held_out=True)
    elif sys.argv[1:] == ["--tuned"]:
        tuned_regret(5)
    else:
        main(sys.argv[1])
