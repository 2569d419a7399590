"""Filter an image larger than a worker's memory across a local dask cluster.

A 3-channel 12288 x 12288 float32 image (1.8 GB) is generated lazily in
1024 x 1024 chunks; two workers with 600 MB each blur it with a 15x15
Gaussian (a depthwise convolution, reflect padding), take Sobel edges of the
blurred luminance, and reduce the result to statistics and a 96 x 96
preview, so no process ever holds the whole image.  dask's progress bar
shows the work; the preview is saved as ``dask_filter_preview.npy`` in the
output directory (``--out DIR``, by default ``examples/output/``), and the
script then checks one tile against the single-machine ``numbaconv.conv2d``.

Run with ``python examples/dask_filter.py`` (about a minute on 2 cores;
``--smoke`` for a small image, as CI runs it).  Needs the ``dask`` extra:
``pip install 'numbaconv[dask]'``.
"""

import argparse
import time
from pathlib import Path

import numpy as np

#: The examples' output directory, next to them (not the current directory,
#: which is the repository root when they are run as the README says).
OUT = Path(__file__).resolve().parent / "output"


def gaussian(size, sigma):
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small image (CI)")
    parser.add_argument("--out", type=Path, default=OUT, metavar="DIR",
                        help="where the preview goes (default: examples/output/)")
    args = parser.parse_args(argv)
    size, chunk, memory = (1536, 512, "600MB") if args.smoke else (12288, 1024, "600MB")

    import dask.array as da
    from distributed import Client, LocalCluster, progress

    import numbaconv as nc
    import numbaconv.dask as ncd

    blur = np.repeat(gaussian(15, 3.0)[None, None], 3, axis=0)          # (3, 1, 15, 15)
    sobel = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]],
                      [[[1, 2, 1], [0, 0, 0], [-1, -2, -1]]]], np.float32)  # (2, 1, 3, 3)
    luminance = np.array([[[[0.299]], [[0.587]], [[0.114]]]], np.float32)  # (1, 3, 1, 1)

    # the kernels compile once into numba's disk cache, which the workers load
    small = np.zeros((1, 3, 64, 64), np.float32)
    nc.conv2d(nc.conv2d(nc.conv2d(small, blur, padding=7, groups=3, padding_mode="reflect"),
                        luminance), sobel, padding=1)

    image = da.random.default_rng(0).random((1, 3, size, size), chunks=(1, 3, chunk, chunk),
                                            dtype=np.float32)
    blurred = ncd.conv2d(image, blur, padding=7, groups=3, padding_mode="reflect")
    gray = ncd.conv2d(blurred, luminance)
    edges = ncd.conv2d(gray, sobel, padding=1)
    magnitude = da.sqrt((edges ** 2).sum(axis=1))[0]
    factor = size // 96
    preview = da.coarsen(np.mean, magnitude, {0: factor, 1: factor})
    print(f"image {image.shape} float32 = {image.nbytes / 1e9:.1f} GB in {image.npartitions} "
          f"chunks; graph of {len(dict(preview.__dask_graph__()))} tasks")

    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=memory,
                      host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      env={"NUMBA_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        print(f"cluster: 2 workers, {memory} each")
        start = time.perf_counter()
        mean, high, small_preview = client.persist([magnitude.mean(), magnitude.max(), preview])
        progress([mean, high, small_preview])
        mean, high, small_preview = client.compute([mean, high, small_preview], sync=True)
        print(f"\nfiltered in {time.perf_counter() - start:.1f} s: mean edge magnitude "
              f"{mean:.4f}, max {high:.4f}, preview {small_preview.shape}")
        args.out.mkdir(parents=True, exist_ok=True)
        np.save(args.out / "dask_filter_preview.npy", small_preview)
        print(f"preview saved to {args.out / 'dask_filter_preview.npy'}")

        # one tile, checked against one machine (its halo comes from the
        # image around it: compare away from the tile's own edges)
        tile = image[:, :, :256, :256].compute()
        local = nc.conv2d(nc.conv2d(nc.conv2d(tile, blur, padding=7, groups=3,
                                              padding_mode="reflect"), luminance),
                          sobel, padding=1)
        inner = (slice(None), slice(None), slice(0, 200), slice(0, 200))
        distributed = edges[inner].compute()
        error = np.abs(distributed - local[inner]).max() / np.abs(local[inner]).max()
        print(f"tile check against numbaconv.conv2d on one machine: max relative "
              f"difference {error:.1e}")
        assert error < 1e-5


if __name__ == "__main__":
    main()
