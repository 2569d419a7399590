"""A picture of the speed: time per algorithm against kernel size.

For one input (4 channels of 256 x 256, batch 1, 4 output channels,
``padding="same"``) and square kernels from 3 to 31, the script times every
numbaconv algorithm that serves the size (median of a few calls), PyTorch
(in its own process, when installed) and ``scipy.signal.fftconvolve``,
marks the algorithm ``"auto"`` picks at each size, and saves a log-log plot,
``speed_picture.png`` (in the output directory: ``--out DIR``, by default
``examples/output/``): direct and im2col grow with the kernel's area, fft
barely moves, and the dispatcher should follow the lower envelope of
numbaconv's lines (this picture showed it did not at k = 5-9, where the
direct estimate was 3x too fast: fixed in the cost model, ``direct:channels_last``
in numbaconv/algorithms/direct.py).

``--asv PATTERN`` instead plots the recorded asv history (``.asv/results``,
see docs/asv.md) of the benchmarks matching PATTERN, one line per parameter
combination, across commits: ``asv_history.png`` (in the same directory).

Run: ``python examples/speed_picture.py`` (about a minute; ``--smoke``: three
kernel sizes, one repeat).  Needs the ``examples`` extra.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import numbaconv as nc

#: The examples' output directory, next to them (not the current directory,
#: which is the repository root when they are run as the README says).
OUT = Path(__file__).resolve().parent / "output"

TORCH_SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
sizes, repeats = json.loads(sys.argv[2]), int(sys.argv[3])
x = torch.randn(1, 4, 256, 256)
out = {}
for k in sizes:
    w = torch.randn(4, 4, k, k)
    torch.nn.functional.conv2d(x, w, padding="same")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.nn.functional.conv2d(x, w, padding="same")
        times.append(time.perf_counter() - start)
    out[k] = sorted(times)[len(times) // 2]
print(json.dumps(out))
"""


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def torch_times(sizes, repeats, threads):
    """PyTorch's times in its own process (two OpenMP runtimes spinning in one
    process distort both), or None without torch."""
    try:
        done = subprocess.run([sys.executable, "-c", TORCH_SCRIPT, str(threads),
                               json.dumps(sizes), str(repeats)],
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return {int(k): v for k, v in json.loads(done.stdout).items()}


def speed(args):
    import numba
    from scipy import signal

    sizes = [3, 7, 15] if args.smoke else [3, 5, 7, 9, 11, 15, 21, 31]
    repeats = 1 if args.smoke else 5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 256, 256)).astype(np.float32)
    algorithms = [a for a in nc.algorithm_names() if a != "auto"]
    times = {a: {} for a in algorithms}
    times["scipy fftconvolve"] = {}
    picks = {}
    for k in sizes:
        w = rng.standard_normal((4, 4, k, k)).astype(np.float32)
        picks[k] = nc.choose_algorithm(x.shape, w.shape, padding="same").algorithm
        for a in algorithms:
            try:
                times[a][k] = median_time(lambda: nc.conv2d(x, w, padding="same", algorithm=a),
                                          repeats)
            except (nc.UnsupportedAlgorithmError, MemoryError):
                pass                  # does not serve it, or needs more than the workspace limit
        flipped = w[:, :, ::-1, ::-1]
        times["scipy fftconvolve"][k] = median_time(
            lambda: signal.fftconvolve(x, flipped, mode="same", axes=(2, 3)).sum(axis=1),
            repeats)
        print(f"kernel {k:2d}: " + ", ".join(f"{a} {t[k] * 1e3:.2f} ms"
                                             for a, t in times.items() if k in t)
              + f"; auto picks {picks[k]}")
    torch = torch_times(sizes, repeats, numba.get_num_threads())
    if torch:
        times["PyTorch"] = torch
        print("PyTorch: " + ", ".join(f"k={k} {t * 1e3:.2f} ms" for k, t in torch.items()))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_size in times.items():
        ks = sorted(by_size)
        style = "--" if name in ("PyTorch", "scipy fftconvolve") else "-"
        ax.plot(ks, [by_size[k] * 1e3 for k in ks], style, marker="o", markersize=3, label=name)
    ax.plot(sizes, [times[picks[k]][k] * 1e3 for k in sizes], "k*", markersize=12,
            label='"auto" picks', zorder=5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(k) for k in sizes])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("kernel size k (k x k)")
    ax.set_ylabel("time per call (ms)")
    ax.set_title("conv2d of (1, 4, 256, 256) with (4, 4, k, k), padding 'same'")
    ax.legend(fontsize=8)
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "speed_picture.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"saved {args.out / 'speed_picture.png'}")


def asv_history(args):
    from numbaconv.history import collect

    runs, series, units = collect(args.results, args.machine, args.asv, commits=args.commits)
    if not runs or not series:
        print(f"no recorded asv results for {args.asv!r} on machine {args.machine!r} in "
              f"{args.results} (record some with `asv run`, docs/asv.md)")
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = [run.commit_hash[:8] for run in runs]
    for key, combos in series.items():
        for combo, by_commit in combos.items():
            values = [by_commit.get(run.commit_hash) for run in runs]
            if all(v is None or v != v for v in values):
                continue
            label = key.split(".")[-1] + (" " + ", ".join(str(c).strip("'") for c in combo)
                                          if combo else "")
            ax.plot(range(len(runs)), [np.nan if v is None else v * 1e3 for v in values],
                    marker="o", label=label[:60])
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(labels, rotation=45, fontsize=8)
    ax.set_ylabel("ms" if all(units.get(k) == "seconds" for k in series) else "value")
    ax.set_yscale("log")
    ax.set_title(f"asv history: {args.asv}")
    ax.legend(fontsize=7)
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "asv_history.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"saved {args.out / 'asv_history.png'} ({len(runs)} commits)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="three sizes, one repeat (CI)")
    parser.add_argument("--asv", metavar="PATTERN",
                        help="plot the asv history of the benchmarks matching PATTERN")
    parser.add_argument("--results", default=".asv/results", help="asv results directory")
    parser.add_argument("--machine", default=None, help="asv machine name (default: the only "
                        "one recorded)")
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR",
                        help="where the picture goes (default: examples/output/; "
                             "docs/images/ holds the README's copy)")
    args = parser.parse_args(argv)
    if args.asv is not None:
        if args.machine is None:
            import os
            machines = [m for m in os.listdir(args.results)
                        if os.path.isdir(os.path.join(args.results, m))] if os.path.isdir(
                args.results) else []
            args.machine = machines[0] if len(machines) == 1 else "ci"
        asv_history(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
