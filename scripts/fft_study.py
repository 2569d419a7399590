"""Where the fft algorithm pays off, and how accurate it is.

``crossover``: time of fft, direct and im2col at a fixed input as the kernel
grows (3 to 63), so the points where FFT starts to win are known.  Medians
of interleaved calls in one process, float32, numba's default thread count.

``accuracy``: the fft algorithm's error against the float64 reference over
kernel sizes, input magnitudes and dtypes, as the normwise ratio
``max|y - ref| / (eps * max S)`` with ``S = conv(|x|, |w|) + |b|`` (the bound
tests/conftest.py checks with 16) and as ``max|y - ref| / max|ref|``.

Usage::

    python scripts/fft_study.py crossover [--input 1,8,256,256] [--repeats 3]
    python scripts/fft_study.py accuracy

Results from this machine are in docs/results-fft.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import numbaconv as nc

KERNELS = (3, 5, 7, 9, 11, 15, 21, 31, 41, 51, 63)


def crossover(shape, repeats):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    channels = shape[1]
    print(f"input {shape}, {channels} -> {channels} channels, padding k//2, float32 (ms)")
    print(f"{'kernel':>6s} {'fft':>9s} {'direct':>9s} {'im2col':>9s}   fastest")
    for k in KERNELS:
        w = rng.standard_normal((channels, channels, k, k)).astype(np.float32)
        calls = {name: (lambda name=name: nc.conv2d(x, w, padding=k // 2, algorithm=name))
                 for name in ("fft", "direct", "im2col")}
        for call in calls.values():
            call()
        times = {name: [] for name in calls}
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
        best = min(ms, key=ms.get)
        print(f"{k:6d} {ms['fft']:9.2f} {ms['direct']:9.2f} {ms['im2col']:9.2f}   {best}")


def accuracy():
    rng = np.random.default_rng(1)
    print("normwise ratio max|y-ref| / (eps max S)  [relative max|y-ref| / max|ref|]")
    print(f"{'dtype':8s} {'kernel':>6s} " + " ".join(f"{'x' + format(m, 'g'):>22s}"
                                                   for m in (1e-3, 1.0, 1e3)))
    for dtype in (np.float32, np.float64):
        eps = np.finfo(dtype).eps
        for k in (3, 7, 15, 31, 63):
            cells = []
            for magnitude in (1e-3, 1.0, 1e3):
                x = (rng.standard_normal((2, 4, 96, 96)) * magnitude).astype(dtype)
                w = rng.standard_normal((4, 4, k, k)).astype(dtype)
                b = rng.standard_normal(4).astype(dtype)
                y = nc.conv2d(x, w, b, padding=k // 2, algorithm="fft")
                ref = nc.conv_reference(x, w, b, padding=k // 2)
                scale = (nc.conv_reference(np.abs(x.astype(np.float64)),
                                           np.abs(w.astype(np.float64)), None, padding=k // 2)
                         + np.abs(b.astype(np.float64))[:, None, None])
                err = np.abs(y - ref).max()
                cells.append(f"{err / (eps * scale.max()):6.2f} [{err / np.abs(ref).max():.1e}]")
            print(f"{np.dtype(dtype).name:8s} {k:6d} " + " ".join(f"{c:>22s}" for c in cells))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=("crossover", "accuracy"))
    parser.add_argument("--input", default="1,8,256,256",
                        help="input shape N,C,H,W for the crossover (default 1,8,256,256)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.study == "crossover":
        crossover(tuple(int(v) for v in args.input.split(",")), args.repeats)
    else:
        accuracy()


if __name__ == "__main__":
    main()
