"""Which formulation computes a transposed convolution (input gradient) fastest?

For input-dilated problems (strided transposed convolutions and input
gradients of strided layers) each algorithm can run:

* ``phases``: ``prod(stride)`` stride-1 problems of sub-kernels
  (Note [phases] in numbaconv/rewrites.py), each through the algorithm;
* ``transposed GEMM`` (im2col only): one GEMM with the weight as given,
  whose products are added into the output (Note [transposed GEMM] in
  numbaconv/kernels/im2col_transposed.py; it replaced GEMM + col2im);
* ``zero-dilated`` (direct only): the forward kernels reading the
  zero-dilated input through the padding maps, paying for the zeros.

And a weight gradient can run as the grouped forward problem over the batch
(``rewrite``, Note [weight gradient as a convolution]) or, for im2col, as
column tiles times the output gradient (``tiles``).

Usage::

    python scripts/backward_study.py [--repeats 7] [--threads 2]

prints one table per question: median ms of interleaved rounds (the
formulations of one case take turns, so a noisy neighbour slows them alike).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

TRANSPOSED = {
    # name: (input, weight (C_in, C_out/groups, k...), kwargs)
    "up4x4": ((4, 128, 28, 28), (128, 64, 4, 4), dict(stride=2, padding=1)),
    "s2_3x3 grad_input": ((4, 128, 28, 28), (128, 128, 3, 3),
                          dict(stride=2, padding=1, output_padding=1)),
    "depthwise s2 grad_input": ((4, 256, 14, 14), (256, 1, 3, 3),
                                dict(stride=2, padding=1, output_padding=1, groups=256)),
    "up2x2": ((4, 64, 56, 56), (64, 32, 2, 2), dict(stride=2)),
    "up1d k8 s4": ((8, 32, 4096), (32, 16, 8), dict(stride=4, padding=2)),
    "up3d 2x2x2": ((2, 32, 16, 16, 16), (32, 16, 2, 2, 2), dict(stride=2)),
}

GRAD_WEIGHT = {
    # name: (input, weight, kwargs) of the forward convolution
    "resnet3x3": ((4, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    "s2_3x3": ((4, 128, 56, 56), (128, 128, 3, 3), dict(stride=2, padding=1)),
    "depthwise": ((4, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256)),
    "pw1x1": ((4, 256, 28, 28), (128, 256, 1, 1), {}),
    "vol3x3": ((2, 16, 32, 32, 32), (32, 16, 3, 3, 3), dict(padding=1)),
}


def _interleaved(fns, repeats):
    """Median ms of each callable, the callables taking turns."""
    for fn in fns.values():
        fn()                                        # compile, warm
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def transposed_formulations(repeats):
    from numbaconv.algorithms.direct import DIRECT, direct_forward
    from numbaconv.algorithms.fft import FFT
    from numbaconv.algorithms.im2col import IM2COL, im2col_transposed_gemm
    from numbaconv.epilogue import Epilogue
    from numbaconv.rewrites import TransposedWeight, run_by_phases, transposed_weight
    from numbaconv.spec import make_transposed_spec

    rng = np.random.default_rng(0)
    rows = []
    for name, (xs, ws, kw) in TRANSPOSED.items():
        ndim = len(ws) - 2
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        spec = make_transposed_spec("conv_transpose", ndim, x, w, None, **kw)
        x5 = x.reshape(spec.input_shape[:2] + spec.input_size3)
        w5 = transposed_weight(w, spec.groups).reshape(spec.weight_shape[:2] + spec.kernel_size3)
        out = np.empty(spec.output_shape[:2] + spec.output_size3, np.float32)
        fns = {
            "im2col phases": lambda: run_by_phases(spec, x5, w5, None, out, IM2COL.run),
            "im2col transposed GEMM": lambda: im2col_transposed_gemm(
                spec, x5, TransposedWeight(w.reshape(w.shape[:2] + spec.kernel_size3),
                                           spec.groups), Epilogue.of(None, np.float32), out),
            "direct phases": lambda: run_by_phases(spec, x5, w5, None, out, DIRECT.run),
            "direct zero-dilated": lambda: direct_forward(spec, x5, w5, None, out),
            "fft phases": lambda: run_by_phases(spec, x5, w5, None, out, FFT.run),
        }
        rows.append((name, _interleaved(fns, repeats)))
    return rows


def grad_weight_formulations(repeats):
    import numbaconv as nc
    from numbaconv.algorithms.direct import DIRECT
    from numbaconv.algorithms.im2col import IM2COL, im2col_grad_weight
    from numbaconv.rewrites import grad_weight_as_forward
    from numbaconv.spec import make_grad_weight_spec

    rng = np.random.default_rng(0)
    rows = []
    for name, (xs, ws, kw) in GRAD_WEIGHT.items():
        ndim = len(ws) - 2
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        y = getattr(nc, f"conv{ndim}d")(x, w, **kw)
        g = rng.standard_normal(y.shape).astype(np.float32)
        spec = make_grad_weight_spec("grad", ndim, x, ws, g, **kw)
        x5 = x.reshape(spec.input_shape[:2] + spec.input_size3)
        g5 = g.reshape(spec.output_shape[:2] + spec.output_size3)
        out = np.empty(spec.weight_shape[:2] + spec.kernel_size3, np.float32)
        fns = {
            "im2col tiles": lambda: im2col_grad_weight(spec, x5, g5, out),
            "im2col rewrite": lambda: grad_weight_as_forward(spec, x5, g5, out, IM2COL.run),
            "direct rewrite": lambda: grad_weight_as_forward(spec, x5, g5, out, DIRECT.run),
        }
        rows.append((name, _interleaved(fns, repeats)))
    return rows


def _print(title, rows):
    columns = list(rows[0][1])
    print(f"\n{title} (median ms)\n")
    print("| case | " + " | ".join(columns) + " | fastest |")
    print("| --- " * (len(columns) + 2) + "|")
    for name, result in rows:
        best = min(result, key=result.get)
        cells = " | ".join(f"{result[c]:.2f}" for c in columns)
        print(f"| {name} | {cells} | {best} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    _print("Transposed convolution: formulations", transposed_formulations(args.repeats))
    _print("Weight gradient: formulations", grad_weight_formulations(args.repeats))


if __name__ == "__main__":
    main()
