"""asv benchmarks: every algorithm (and ``auto``) on the public shapes.

The shapes come from :mod:`numbaconv.bench.suite`, the same definition that
``numbaconv bench`` uses.  Data is seeded.  ``setup`` makes one call first,
so compilation is never timed; compile time has its own fresh-process
benchmark (``Compile``).  An algorithm that a commit does not have, or that
cannot serve a shape, is skipped (``NotImplementedError`` in ``setup``).
PyTorch and SciPy are separate benchmarks, skipped when not installed; asv
runs every benchmark in its own process, so PyTorch's threads never share
one with numba's.

``NUMBACONV_ASV_ONLY`` shrinks the grid (asv starts a process per
parameter combination, about a second each, so the full grid costs minutes
before any timing), e.g.
``NUMBACONV_ASV_ONLY="shape=resnet3x3,depthwise;algorithm=direct;dtype=float32;peer=none"``.
Use the same selection for every commit you want to compare (docs/asv.md).
"""

from __future__ import annotations

import os
import time

import numpy as np

import numbaconv as nc
from numbaconv.bench.suite import PUBLIC_SHAPES, get_cases

def _selection():
    """{parameter name: allowed values} from NUMBACONV_ASV_ONLY."""
    chosen = {}
    for part in filter(None, os.environ.get("NUMBACONV_ASV_ONLY", "").split(";")):
        name, _, values = part.partition("=")
        chosen[name.strip()] = {v.strip() for v in values.split(",")}
    return chosen


def _chosen(name, values):
    allowed = _selection().get(name)
    return [v for v in values if allowed is None or v in allowed]


def _skip_unselected(**point):
    for name, allowed in _selection().items():
        if name in point and point[name] not in allowed:
            raise NotImplementedError(f"{name}={point[name]} not in NUMBACONV_ASV_ONLY")


SHAPES = _chosen("shape", [case.name for case in PUBLIC_SHAPES if not case.transposed])
ALGORITHMS = _chosen("algorithm", ["auto", "direct", "im2col", "fft", "winograd"])
DTYPES = _chosen("dtype", ["float32", "float64"])


def _prepare(shape, algorithm, dtype):
    """(call, flops) for one benchmark point; NotImplementedError to skip."""
    if algorithm not in nc.algorithm_names():
        raise NotImplementedError(f"this commit has no algorithm {algorithm!r}")
    case = get_cases([shape])[0]
    x, w = case.make_arrays(dtype)
    conv = getattr(nc, case.op)

    def call():
        return conv(x, w, algorithm=algorithm, **case.kwargs)

    try:
        call()                       # compile (or load) and check it serves the shape
    except nc.UnsupportedAlgorithmError as exc:
        raise NotImplementedError(str(exc)) from None
    return call, case.flops


class Conv:
    """Forward convolution, algorithm x public shape x dtype."""

    params = (SHAPES, ALGORITHMS, DTYPES)
    param_names = ["shape", "algorithm", "dtype"]
    timeout = 600

    def setup(self, shape, algorithm, dtype):
        self.call, self.flops = _prepare(shape, algorithm, dtype)

    def time_conv(self, shape, algorithm, dtype):
        self.call()

    def peakmem_conv(self, shape, algorithm, dtype):
        self.call()

    def track_gflops(self, shape, algorithm, dtype):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            self.call()
            times.append(time.perf_counter() - start)
        return self.flops / float(np.median(times)) / 1e9

    track_gflops.unit = "GFLOP/s"


class Compile:
    """First call in a fresh process with an empty numba cache: numba's start-up
    plus compiling the algorithm's kernels (a small 2-D layer)."""

    params = _chosen("algorithm", ["direct", "im2col", "fft", "winograd"]) or ["direct"]
    param_names = ["algorithm"]
    timeout = 600
    repeat = 3
    number = 1

    def setup(self, algorithm):
        if algorithm not in nc.algorithm_names():
            raise NotImplementedError(f"this commit has no algorithm {algorithm!r}")

    def timeraw_first_call(self, algorithm):
        setup = "\n".join([
            "import os, tempfile",
            "os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(prefix='numbaconv-asv-')",
            "import numpy as np",
            "import numbaconv as nc",
            f"assert {algorithm!r} in nc.algorithm_names()",
            "x = np.ones((1, 16, 12, 12), np.float32)",
            "w = np.ones((8, 16, 3, 3), np.float32)",
        ])
        return f"nc.conv2d(x, w, padding=1, algorithm={algorithm!r})", setup


class TorchPeer:
    """PyTorch on the same shapes (float32), for side-by-side history."""

    params = SHAPES
    param_names = ["shape"]
    timeout = 300

    def setup(self, shape):
        _skip_unselected(shape=shape, peer="torch")
        try:
            import torch
        except ImportError:
            raise NotImplementedError("PyTorch is not installed") from None
        case = get_cases([shape])[0]
        x, w = case.make_arrays("float32")
        fn = getattr(torch.nn.functional, case.op)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        torch.set_num_threads(2)

        def call():
            with torch.no_grad():
                return fn(tx, tw, **case.kwargs)

        call()
        self.call = call

    def time_conv(self, shape):
        self.call()


class SciPyPeer:
    """scipy.signal.fftconvolve / oaconvolve on bigk2d's single-channel problem."""

    params = ["fftconvolve", "oaconvolve"]
    param_names = ["function"]

    def setup(self, function):
        _skip_unselected(peer="scipy")
        try:
            from scipy import signal
        except ImportError:  # pragma: no cover
            raise NotImplementedError("SciPy is not installed") from None
        x, w = get_cases(["bigk2d"])[0].make_arrays("float32")
        image, kernel = x[0, 0], np.ascontiguousarray(w[0, 0][::-1, ::-1])
        self.call = lambda: getattr(signal, function)(image, kernel, mode="valid")

    def time_bigk2d(self, function):
        self.call()
