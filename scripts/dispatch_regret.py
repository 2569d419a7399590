"""How good would the cost models' picks be?  Regret against measured times.

Reads the JSON of ``numbaconv bench --ops all --json FILE`` (every
algorithm timed on every shape and op), asks every algorithm's plan for
its estimate on the same problem, and prints per (shape, op): the model's
pick, the measured fastest, the regret (measured time of the pick / the
fastest) and the model's prediction error (estimate / measured) per
algorithm.  Usage::

    numbaconv bench --ops all --json bench.json
    python scripts/dispatch_regret.py bench.json
"""

from __future__ import annotations

import json
import math
import sys

from numbaconv.algorithms.registry import get_algorithm
from numbaconv.bench.suite import SUITE
from numbaconv.dispatch import problem_spec

GRADIENT = {"forward": None, "transposed": None, "grad_input": "input",
            "grad_weight": "weight"}


def spec_of(case, op):
    if op == "transposed" and not case.transposed:
        gradient = "input"
    else:
        gradient = GRADIENT[op]
    return problem_spec(case.input_shape, case.weight_shape, transposed=case.transposed,
                        gradient=gradient, **case.kwargs)


def main(path):
    rows = json.load(open(path))
    measured = {}
    for r in rows:
        if r["impl"].startswith("numbaconv:") and "->" not in r["impl"] and r.get("median_ms"):
            measured.setdefault((r["case"], r["op"]), {})[r["impl"].split(":")[1]] = r["median_ms"]
    regrets, errors = [], []
    print("| shape | op | pick | fastest | regret | estimate / measured per algorithm |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, op), times in measured.items():
        spec = spec_of(SUITE[name], op)
        estimates = {a: get_algorithm(a).plan(spec).seconds * 1e3 for a in times}
        pick = min(estimates, key=estimates.get)
        best = min(times, key=times.get)
        regret = times[pick] / times[best]
        regrets.append(regret)
        ratios = {a: estimates[a] / times[a] for a in times}
        errors += [abs(math.log(v)) for v in ratios.values()]
        print(f"| {name} | {op} | {pick} | {best} | {regret:.2f} | "
              + ", ".join(f"{a} {v:.2f}" for a, v in sorted(ratios.items())) + " |")
    geo = math.exp(sum(math.log(r) for r in regrets) / len(regrets))
    print(f"\nregret: geometric mean {geo:.3f}, worst {max(regrets):.2f}; "
          f"model error: median factor {math.exp(sorted(errors)[len(errors) // 2]):.2f}, "
          f"worst {math.exp(max(errors)):.1f}")


if __name__ == "__main__":
    main(sys.argv[1])
