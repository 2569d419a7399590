"""Where the time of a winograd call goes.

For one public shape, times (median of interleaved repeats, ms): the weight
transform without the cache, the packing of the input, and the three stages
run one after another over all tiles (input transform, per-position GEMMs,
output transform), next to the real call, which runs the same stages fused
a chunk of tiles at a time per thread.

Usage: ``python scripts/winograd_split.py [resnet3x3] [--tile 4]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numba
import numpy as np

import numbaconv as nc
from numbaconv import costs
from numbaconv.bench.suite import get_cases
from numbaconv.kernels import blas, direct_pack, winograd_cpu, winograd_weights
from numbaconv.spec import make_conv_spec


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", nargs="?", default="resnet3x3")
    parser.add_argument("--tile", type=int, default=4, choices=(2, 4))
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    case = get_cases([args.shape])[0]
    x, w = case.make_arrays("float32")
    spec = make_conv_spec(case.op, case.ndim, x, w, None, **case.kwargs)
    nd, m, dtype = spec.ndim, args.tile, np.dtype(np.float32)
    x5 = np.ascontiguousarray(x.reshape(spec.input_shape[:2] + spec.input_size3))
    w5 = np.ascontiguousarray(w.reshape(w.shape[:2] + (1,) * (3 - nd) + w.shape[2:]))
    used = [a >= 3 - nd for a in range(3)]
    mats = [winograd_weights.axis_matrices(m, u, dtype) for u in used]
    AT, BT = [t[0] for t in mats], [t[2] for t in mats]
    grid = tuple(-(-o // (m if u else 1)) for o, u in zip(spec.output_size3, used))
    total = spec.batch * math.prod(grid)
    maps = winograd_weights.extended_maps(spec, grid, m, used)
    xp = np.empty((spec.batch,) + tuple(len(mp) for mp in maps) + (spec.in_channels,), dtype)
    U = winograd_weights.transformed_weight(w5, m, nd, spec.groups)
    Q = U.shape[0]
    V = np.empty((Q, total, spec.in_channels), dtype)
    M = np.empty((Q, total, spec.out_channels), dtype)
    out = np.empty(spec.output_shape[:2] + spec.output_size3, dtype)
    gemm = blas.find_gemm()
    threads = numba.get_num_threads()
    bias = np.empty(0, dtype)
    algorithm = "winograd" if m == 4 else "winograd_f2"

    def weight():
        winograd_weights.clear_weight_cache()
        winograd_weights.transformed_weight(w5, m, nd, spec.groups)

    def products():
        with blas.single_threaded_blas():
            winograd_cpu.transform_products(gemm.address(dtype), gemm.int_witness, U, V, M,
                                            threads)

    stages = {
        "weight transform (uncached)": weight,
        "pack input": lambda: direct_pack.pack_channels_last(x5, *maps, xp),
        "input transform": lambda: winograd_cpu.input_transform(xp, *BT, grid, 0, V, threads),
        "GEMMs": products,
        "output transform": lambda: winograd_cpu.output_transform(M, *AT, bias, grid, 0, out,
                                                                  threads),
        "whole call (fused, weight cached)": lambda: getattr(nc, case.op)(
            x, w, algorithm=algorithm, **case.kwargs),
    }
    for stage in stages.values():
        stage()
    times = {name: [] for name in stages}
    for _ in range(args.repeats):
        for name, stage in stages.items():
            start = time.perf_counter()
            stage()
            times[name].append(time.perf_counter() - start)
    print(f"{args.shape}, F({m}x{m}, 3x3), {total} tiles, {Q} positions, float32, "
          f"{threads} threads (median ms)")
    for name, t in times.items():
        print(f"  {name:36s} {1e3 * np.median(t):7.2f}")
    # the cost model's weight of one transform step against one GEMM
    # multiply-add (Note [winograd cost] in numbaconv/algorithms/winograd.py)
    alpha = m + 2
    steps = total * Q * (spec.in_channels + spec.out_channels) * alpha * nd
    macs = costs.gemm_work(total * Q * spec.groups * spec.in_channels_per_group
                           * spec.out_channels_per_group, spec.in_channels_per_group,
                           spec.out_channels_per_group, total)
    transforms = np.median(times["input transform"]) + np.median(times["output transform"])
    print(f"  transform step / GEMM multiply-add   "
          f"{(transforms / steps) / (np.median(times['GEMMs']) / macs):7.2f}")


if __name__ == "__main__":
    main()
