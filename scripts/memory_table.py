"""Peak memory of every algorithm on the public shapes, against the arrays' own size.

For each public shape (its own op) and each algorithm that serves it, a
fresh process imports numbaconv, makes the arrays and runs the call once
(compiling or loading its kernels), and frees the workspaces that call
kept (``numbaconv.release_workspaces()``, where the commit has it: Note
[workspace arena] in numbaconv/workspaces.py), so that the measured call
allocates them again.  Then it resets the process's
high-water mark (``/proc/self/clear_refs``), runs the call again and reads
the peak resident set (``VmHWM``) against the resident set before the
call.  glibc's mmap threshold is fixed at 128 KiB
(``MALLOC_MMAP_THRESHOLD_``) so that every large block the first call
freed goes back to the system and the second call's allocations show.  The
table gives the extra peak (MiB) -- the output included -- and that extra
divided by input + output + weight bytes.

Usage: ``python scripts/memory_table.py [--shapes resnet3x3,...]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np
import numbaconv as nc
from numbaconv.bench.suite import SUITE

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

case = SUITE[sys.argv[1]]
algorithm = sys.argv[2]
x, w = case.make_arrays("float32")
call = getattr(nc, case.op)
try:
    y = call(x, w, algorithm=algorithm, **case.kwargs)
except (nc.UnsupportedAlgorithmError, MemoryError):
    print(json.dumps(None)); sys.exit()
del y
if hasattr(nc, "release_workspaces"):   # nothing kept from the first call (Note [workspace arena])
    nc.release_workspaces()
with open("/proc/self/clear_refs", "w") as f:      # reset the high-water mark
    f.write("5")
before = status("VmRSS")
y = call(x, w, algorithm=algorithm, **case.kwargs)
peak = status("VmHWM")
print(json.dumps({"extra": max(0, peak - before), "arrays": x.nbytes + w.nbytes + y.nbytes}))
"""


def main(argv=None):
    from numbaconv.algorithms import algorithm_names
    from numbaconv.bench.suite import PUBLIC_SHAPES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(c.name for c in PUBLIC_SHAPES))
    args = parser.parse_args(argv)
    algorithms = [a for a in algorithm_names() if a != "auto"] + ["auto"]
    print("| shape | " + " | ".join(algorithms) + " |")
    print("| --- |" + " --- |" * len(algorithms))
    worst = 0.0
    for shape in args.shapes.split(","):
        cells = []
        for algorithm in algorithms:
            done = subprocess.run([sys.executable, "-c", CHILD, shape, algorithm],
                                  capture_output=True, text=True, timeout=600,
                                  env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072"))
            result = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 \
                else "error"
            if result is None:
                cells.append("-")
            elif result == "error":
                cells.append("error")
            else:
                ratio = result["extra"] / result["arrays"]
                worst = max(worst, ratio)
                cells.append(f"{result['extra'] / 2**20:.0f} MiB ({ratio:.2f}x)")
        print(f"| {shape} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nlargest extra peak / (input + output + weight): {worst:.2f}x")


if __name__ == "__main__":
    main()
