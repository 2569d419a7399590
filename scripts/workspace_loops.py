"""A user's loop against two (or more) checkouts, A/B: docs/results-workspaces.md.

Each point (``shape:op:algorithm``) is run as ``numbaconv bench --loop``
runs it (numbaconv/bench/loop.py, Note [loop timing]: a fresh process, the
arrays made in the call's dtype, 15 calls without ``out=``, the first not
counted), once per checkout per round, the checkouts alternating and their
order swapped every round, under each glibc setting asked for:

* ``default`` -- ``MALLOC_MMAP_THRESHOLD_`` unset (glibc's dynamic
  threshold: what a user gets);
* ``mmap128k`` -- ``MALLOC_MMAP_THRESHOLD_=131072``: every block over 128
  KiB mapped afresh and unmapped when freed (the worst case);
* ``heap64m`` -- ``MALLOC_MMAP_THRESHOLD_=67108864``: large blocks kept on
  the heap (issue 27's workaround).

The worker is this checkout's ``numbaconv/bench/loop.py`` run as a script
with ``PYTHONPATH`` set to the checkout timed, so a checkout without that
module (before the arena) is timed the same way.  Prints a Markdown table:
per point and setting, each checkout's median call (the median over the
rounds of each round's median, with the rounds' range), its fastest call
(the median over the rounds: a loaded machine's waits are in every median
but not in every call; a page fault is in every call), its mean CPU time
per call (all threads; a shared machine's waits for a core left out), the
system part of that (where page faults are paid) and its minor page faults
per call.

Usage::

    python scripts/workspace_loops.py --checkouts before=/work/main,after=. \\
        [--points resnet3x3:forward:auto,...] [--rounds 3] [--glibc default,mmap128k]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "numbaconv" / "bench" / "loop.py"

POINTS = ("resnet3x3:forward:auto", "dilated:forward:auto", "pw1x1:forward:auto",
          "s2_3x3:forward:auto", "depthwise:forward:auto", "up4x4:transposed:auto",
          "resnet3x3:grad_input:auto", "resnet3x3:grad_weight:auto")
GLIBC = {"default": None, "mmap128k": "131072", "heap64m": "67108864"}


def run_point(checkout, recipe, threads, calls, glibc):
    env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()),
               NUMBA_NUM_THREADS=str(threads))
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if GLIBC[glibc] is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = GLIBC[glibc]
    done = subprocess.run([sys.executable, str(WORKER), str(threads), str(calls),
                           json.dumps(recipe)], capture_output=True, text=True, env=env,
                          timeout=900)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{checkout}: {done.stderr.strip()[-800:]}")
    found = json.loads(lines[-1])
    if "error" in found:
        raise RuntimeError(f"{checkout}: {found['error']}")
    # CPU times are means: Linux splits a thread's (exact) run time into user
    # and system time by where its clock ticks fell, so one call's system
    # time is 0 or a tick, and only an average over the calls says how much
    return {"times": statistics.median(found["times"]) * 1e3,
            "best": min(found["times"]) * 1e3,
            "cpu": statistics.mean(found["cpu"]) * 1e3,
            "system": statistics.mean(found["system"]) * 1e3,
            "faults": statistics.median(found["faults"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", required=True,
                        help="label=path,label=path (PYTHONPATH of each)")
    parser.add_argument("--points", default=",".join(POINTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--glibc", default="default,mmap128k,heap64m")
    parser.add_argument("--json", help="also write every measurement as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from numbaconv.bench.loop import recipe
    from numbaconv.bench.suite import get_cases

    checkouts = [tuple(part.split("=", 1)) for part in args.checkouts.split(",")]
    found = {}          # (point, glibc, label) -> [medians per round]
    for r in range(args.rounds):
        order = checkouts if r % 2 == 0 else checkouts[::-1]
        for point in args.points.split(","):
            shape, op, algorithm = point.split(":")
            rec = recipe(get_cases([shape])[0].op_call(op, "float32"), algorithm)
            for glibc in args.glibc.split(","):
                for label, path in order:
                    got = run_point(path, rec, args.threads, args.calls, glibc)
                    found.setdefault((point, glibc, label), []).append(got)
                    print(f"round {r + 1} {point} {glibc} {label}: {got['times']:.2f} ms "
                          f"(CPU {got['cpu']:.2f}, system {got['system']:.2f}), "
                          f"{got['faults']:.0f} faults/call", file=sys.stderr, flush=True)
    labels = [label for label, _ in checkouts]
    columns = [("times", "ms (range)", "{:.2f}"), ("best", "best ms", "{:.2f}"),
               ("cpu", "CPU ms", "{:.2f}"),
               ("system", "system ms", "{:.2f}"), ("faults", "faults", "{:.0f}")]
    print("| point | glibc | " + " | ".join(f"{label} {title}" for _, title, _ in columns
                                             for label in labels) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in columns for _ in labels) + " |")
    for point in args.points.split(","):
        for glibc in args.glibc.split(","):
            cells = []
            for key, _, form in columns:
                for label in labels:
                    values = [got[key] for got in found[(point, glibc, label)]]
                    cell = form.format(statistics.median(values))
                    if key == "times":
                        cell += f" ({min(values):.2f}-{max(values):.2f})"
                    cells.append(cell)
            print(f"| {point} | {glibc} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{"point": p, "glibc": g, "checkout": c, "rounds": v}
                       for (p, g, c), v in found.items()], fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
