"""How numba's thread pool and the BLAS thread pool should share the cores.

Runs one im2col convolution (a public benchmark shape) under several
arrangements, each in a fresh process because threading layers and wait
policies are fixed at start-up, and prints the median time of each:

``one-pool``         numbaconv's arrangement: numba tasks build column tiles
                     and call BLAS (np.dot) themselves, BLAS limited to one
                     thread for the call (threadpoolctl).
``one-pool-nolimit`` the same without the limit: every numba thread's GEMM
                     may start BLAS threads of its own.
``two-pools``        per image: a numba parallel kernel builds the image's
                     whole column matrix, then NumPy's matmul multiplies it
                     with BLAS's own threads; the pools take turns.
``two-pools-passive`` the same with OMP_WAIT_POLICY=passive, so numba's
                     OpenMP workers sleep instead of spinning between kernels.
``two-pools-workqueue`` the same on numba's workqueue threading layer.
``alternating``      the direct algorithm on the shape, then im2col's pointwise
                     path on pw1x1 (GEMMs in numba's pool), in turn: the
                     pattern of a network's forward pass; time of one pair.
``alternating-passive`` the same with OMP_WAIT_POLICY=passive.
``alternating-blas-threads`` the same, but pw1x1 as one NumPy matmul on
                     BLAS's own threads.

Usage::

    python scripts/threadpool_study.py [--shape resnet3x3] [--repeats 15] [--cycles 3]

Results from this machine are in docs/results-im2col.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ARRANGEMENTS = {
    "one-pool": {},
    "one-pool-nolimit": {},
    "two-pools": {},
    "two-pools-passive": {"OMP_WAIT_POLICY": "passive"},
    "two-pools-workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "alternating": {},
    "alternating-passive": {"OMP_WAIT_POLICY": "passive"},
    "alternating-blas-threads": {},
}

_WORKER = r"""
import json, sys, time
import numpy as np, numba
from numbaconv.algorithms import im2col as im
from numbaconv.bench.suite import get_cases
from numbaconv.kernels import blas, im2col_cpu
from numbaconv.kernels.parallel import run_in_chunks
from numbaconv.padding import padding_maps
from numbaconv.spec import make_conv_spec
import numbaconv as nc

arrangement, shape, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
case = get_cases([shape])[0]
x, w = case.make_arrays("float32")
nd = case.ndim
spec = make_conv_spec(case.op, nd, x, w, None, **case.kwargs)
x5 = np.ascontiguousarray(x.reshape(spec.input_shape[:2] + spec.input_size3))
w5 = np.ascontiguousarray(w.reshape(w.shape[:2] + (1,) * (3 - nd) + w.shape[2:]))
out = np.empty(spec.output_shape[:2] + spec.output_size3, np.float32)
threads = numba.get_num_threads()
maps = padding_maps(spec)
K = w5[0].size
S = int(np.prod(spec.output_size3))
w2 = w5.reshape(w5.shape[0], K)
ks, st, dl = spec.kernel_size3, spec.stride3, spec.dilation3

@numba.njit
def fill_rows(x, md, mh, mw, n, KD, KH, KW, sd, sh, sw, dd, dh, dw, pad_w, OH, OW, S, col,
              first, stop):
    im2col_cpu.fill_columns(x, md, mh, mw, n, 0, first, stop - first, KD, KH, KW,
                             sd, sh, sw, dd, dh, dw, pad_w, OH, OW, 0, S,
                             col[first * S:])

col = np.empty((K, S), np.float32)

def two_pools():
    for n in range(x5.shape[0]):
        run_in_chunks(fill_rows, (x5, *maps, n, *ks, *st, *dl, spec.padding3[2][0],
                                  spec.output_size3[1], spec.output_size3[2], S, col.ravel()),
                      K, threads)
        np.matmul(w2, col, out=out[n].reshape(w2.shape[0], S))

def one_pool_nolimit():
    plan = im.plan_tiles(spec, 4, threads)
    gemm = blas.find_gemm()
    im2col_cpu.im2col_conv(gemm.address(np.float32), gemm.int_witness, x5, *maps,
                           w5.reshape(1, w5.shape[0], K), np.zeros(w5.shape[0], np.float32),
                           out, ks, st, dl, spec.padding3[1][0], spec.padding3[2][0],
                           plan.tile, plan.rows, threads)

pw = get_cases(["pw1x1"])[0]
px, pwt = pw.make_arrays("float32")

pxs = px.reshape(px.shape[0], px.shape[1], -1)
pws = pwt.reshape(pwt.shape[0], -1)
pout = np.empty((px.shape[0], pwt.shape[0], pxs.shape[2]), np.float32)

def alternating():
    nc.conv2d(x, w, algorithm="direct", **case.kwargs)
    nc.conv2d(px, pwt, algorithm="im2col")

def alternating_blas_threads():
    nc.conv2d(x, w, algorithm="direct", **case.kwargs)
    np.matmul(pws, pxs, out=pout)

run = {"one-pool": lambda: im.im2col_forward(spec, x5, w5, None, out),
       "one-pool-nolimit": one_pool_nolimit,
       "two-pools": two_pools, "two-pools-passive": two_pools,
       "two-pools-workqueue": two_pools,
       "alternating": alternating, "alternating-passive": alternating,
       "alternating-blas-threads": alternating_blas_threads}[arrangement]
run(); run()
times = []
for _ in range(repeats):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
ref = nc.conv_reference(x, w, None, **case.kwargs)
got = out.reshape(ref.shape) if not arrangement.startswith("alternating") else ref
err = float(np.abs(got - ref).max() / np.abs(ref).max())
print(json.dumps({"ms": 1e3 * float(np.median(times)), "err": err,
                  "layer": numba.threading_layer()}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="resnet3x3")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cycles", type=int, default=3,
                        help="run every arrangement this many times, interleaved")
    parser.add_argument("--arrangements", default=",".join(ARRANGEMENTS))
    args = parser.parse_args(argv)
    names = args.arrangements.split(",")
    results = {name: [] for name in names}
    for _ in range(args.cycles):
        for name in names:
            env = dict(os.environ, **ARRANGEMENTS[name])
            done = subprocess.run([sys.executable, "-c", _WORKER, name, args.shape,
                                   str(args.repeats)], env=env, capture_output=True,
                                  text=True, check=True)
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.shape}: median ms per call in each process ({args.cycles} processes each)")
    for name in names:
        runs = results[name]
        ms = ", ".join(f"{r['ms']:.2f}" for r in runs)
        print(f"  {name:22s} {ms}   (layer {runs[0]['layer']}, rel err {runs[0]['err']:.1e})")


if __name__ == "__main__":
    main()
