"""``numbaconv history``: recorded asv results per benchmark, in the terminal.

Reads the results asv wrote (``.asv/results/<machine>/``) through asv's own
results API and prints, for every benchmark whose name matches a pattern,
one row per parameter combination and one column per recorded commit
(oldest first).  asv itself is needed (``pip install ".[bench]"``).
"""

from __future__ import annotations

import itertools
import json
import os
import re


def _format(value, unit):
    if value is None or value != value:          # not run, or skipped (NaN)
        return "n/a"
    if unit == "seconds":
        return f"{value * 1e3:.3g}ms" if value < 1 else f"{value:.3g}s"
    if unit == "bytes":
        return f"{value / 2**20:.3g}M"
    return f"{value:.3g}"


def collect(results_dir, machine, pattern="", commits=10):
    """The recorded results of the benchmarks matching ``pattern``: ``(runs,
    series, units)`` with ``runs`` the last ``commits`` asv runs (oldest
    first) and ``series[key][parameter combination][commit hash]`` the value."""
    from asv.results import iter_results_for_machine

    runs = sorted(iter_results_for_machine(results_dir, machine), key=lambda r: r.date)
    runs = runs[-commits:]
    units = {}
    benchmarks_file = os.path.join(results_dir, "benchmarks.json")
    if os.path.exists(benchmarks_file):
        with open(benchmarks_file) as fh:
            units = {name: info.get("unit") for name, info in json.load(fh).items()
                     if isinstance(info, dict)}
    keys = sorted({key for run in runs for key in run.get_all_result_keys()
                   if re.search(pattern, key)})
    series = {}
    for key in keys:
        combos = {}
        for run in runs:
            params = run.get_result_params(key)
            values = run.get_result_value(key, params) if params is not None else None
            if values is None:
                continue
            for combo, value in zip(itertools.product(*params) if params else [()], values):
                combos.setdefault(combo, {})[run.commit_hash] = value
        series[key] = combos
    return runs, series, units


def history(results_dir, machine, pattern="", commits=10, out=print):
    """Print the history of the matching benchmarks; return the number printed."""
    runs, series, units = collect(results_dir, machine, pattern, commits)
    if not runs:
        out(f"no results for machine {machine!r} in {results_dir}")
        return 0
    out("commits: " + "  ".join(run.commit_hash[:8] for run in runs) + "  (oldest first)")
    for key, combos in series.items():
        out(f"\n{key}")
        for combo, by_commit in combos.items():
            if all(v is None or v != v for v in by_commit.values()):
                continue
            label = ", ".join(str(c).strip("'") for c in combo) or "-"
            cells = [_format(by_commit.get(run.commit_hash), units.get(key)) for run in runs]
            out(f"  {label:32s} " + " ".join(f"{c:>9s}" for c in cells))
    return len(series)
