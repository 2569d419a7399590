"""Peak memory of the im2col algorithm against its output size.

For each case, a fresh process creates the inputs, loads the kernels on a
tiny problem, then runs the case once and reports how much its peak
resident set grew during the call (``ru_maxrss``), next to the output size
and to the size the whole column matrix would have had.  The growth is what
the call allocated: the output, the canonical copies it needs, and the
column tiles (at most the workspace limit).

Usage::

    python scripts/im2col_memory.py                 # the public shapes
    python scripts/im2col_memory.py --big           # plus a 2 GiB input

Results from this machine are in docs/results-im2col.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_WORKER = r"""
import json, math, resource, sys
import numpy as np
import numbaconv as nc
from numbaconv.bench.suite import get_cases

name = sys.argv[1]
if name == "big2GiB":
    # 2 GiB float32 input: 8 x 64 x 1024 x 1024, a 3x3 layer to 16 channels
    op, kwargs = "conv2d", dict(padding=1)
    x = np.ones((8, 64, 1024, 1024), np.float32)
    w = np.full((16, 64, 3, 3), 0.01, np.float32)
else:
    case = get_cases([name])[0]
    op, kwargs = case.op, case.kwargs
    x, w = case.make_arrays("float32")
conv = getattr(nc, op)
# load the kernels on a small problem first, so that its peak stays below
# the measured call's (ru_maxrss is a high-water mark)
dilation = kwargs.get("dilation", 1)
small = tuple(dilation * (k - 1) + 9 for k in w.shape[2:])
conv(np.ones(x.shape[:2] + small, np.float32), w, algorithm="im2col", **kwargs)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y = conv(x, w, algorithm="im2col", **kwargs)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
groups = x.shape[1] // w.shape[1]
print(json.dumps({"case": name, "input_mib": x.nbytes / 2**20, "output_mib": y.nbytes / 2**20,
                  "growth_mib": (after - before) / 1024,
                  "whole_columns_mib": w[0].size * groups * math.prod(y.shape[2:]) * y.shape[0] * 4
                                     / 2**20,
                  "limit_mib": nc.get_workspace_limit() / 2**20}))
"""

SHAPES = ["resnet3x3", "pw1x1", "s2_3x3", "stem7x7", "depthwise", "dilated", "bigk2d",
          "mc_bigk2d", "bigk1d", "vol3x3"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", action="store_true", help="also run a 2 GiB input")
    args = parser.parse_args(argv)
    names = SHAPES + (["big2GiB"] if args.big else [])
    print(f"{'case':10s} {'input MiB':>10s} {'output MiB':>11s} {'peak growth MiB':>16s} "
          f"{'whole columns MiB':>18s}")
    for name in names:
        done = subprocess.run([sys.executable, "-c", _WORKER, name], capture_output=True,
                              text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['case']:10s} {r['input_mib']:10.1f} {r['output_mib']:11.1f} "
              f"{r['growth_mib']:16.1f} {r['whole_columns_mib']:18.1f}")


if __name__ == "__main__":
    main()
