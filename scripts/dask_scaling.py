"""numbaconv.dask from 1 to 2 workers: time and task counts.

Runs one spatially chunked convolution (a 3-channel 4096x4096 image, a 9x9
depthwise blur and a 3x3 dense layer to 16 channels, 1024x1024 chunks) on a
loopback ``dask.distributed.LocalCluster`` of 1 and then 2 single-threaded
workers (numba limited to one thread in each, so the workers do not
oversubscribe the cores), and on the threaded scheduler, alternating, and
prints the median times, the speed-up and the graph's task count.

Usage: ``python scripts/dask_scaling.py [--size 4096] [--chunk 1024] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    import numbaconv as nc
    import numbaconv.dask as ncd

    rng = np.random.default_rng(0)
    blur = rng.random((3, 1, 9, 9)).astype(np.float32)
    dense = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    image = da.random.default_rng(0).random((1, 3, args.size, args.size),
                                            chunks=(1, 3, args.chunk, args.chunk),
                                            dtype=np.float32)

    def pipeline():
        blurred = ncd.conv2d(image, blur, padding=4, groups=3, padding_mode="reflect",
                             algorithm="direct")
        return ncd.conv2d(blurred, dense, padding=1, algorithm="auto").mean()

    tasks = len(dict(pipeline().__dask_graph__()))
    blocks = (args.size // args.chunk) ** 2
    # warm the kernels' disk cache here, so that no worker compiles
    nc.conv2d(np.zeros((1, 3, 32, 32), np.float32), blur, padding=4, groups=3,
              padding_mode="reflect", algorithm="direct")
    nc.conv2d(np.zeros((1, 3, 32, 32), np.float32), dense, padding=1)

    env = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    clusters = {}
    for workers in (1, 2):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address="127.0.0.1:0", env=env)
        clusters[workers] = (cluster, Client(cluster, set_as_default=False))
    times = {"1 worker": [], "2 workers": [], "threads (2)": []}
    try:
        for workers, (_, client) in clusters.items():
            client.compute(pipeline()).result()                   # first run: imports
        for _ in range(args.repeats):
            for workers, (_, client) in clusters.items():
                start = time.perf_counter()
                client.compute(pipeline()).result()
                times[f"{workers} worker{'s' if workers > 1 else ''}"].append(
                    time.perf_counter() - start)
            with dask.config.set(scheduler="threads", num_workers=2):
                start = time.perf_counter()
                pipeline().compute()
                times["threads (2)"].append(time.perf_counter() - start)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    cpu = _cpu_name()
    print(f"{args.size}x{args.size}x3 image, {args.chunk}x{args.chunk} chunks ({blocks} blocks), "
          f"blur 9x9 depthwise (reflect) then 3x3 to 16 channels, mean; {cpu}, "
          f"{os.cpu_count()} CPUs")
    print(f"graph: {tasks} tasks ({tasks / blocks:.1f} per block)")
    one = statistics.median(times["1 worker"])
    for name, t in times.items():
        median = statistics.median(t)
        print(f"  {name:12s} median {median:7.3f} s  (range {min(t):.3f}-{max(t):.3f}, "
              f"{one / median:.2f}x one worker)")


def _cpu_name():
    from numbaconv.tuning import cpu_model
    return cpu_model()


if __name__ == "__main__":
    main()
