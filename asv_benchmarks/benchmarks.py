"""asv benchmarks: every algorithm (and ``auto``) on the public shapes.

The shapes and ops come from :mod:`numbaconv.bench.suite`, the same
definition that ``numbaconv bench`` uses.  ``Conv`` is the forward
convolution (its names and parameters stay as they were, so its history
stays comparable); ``Backward`` adds the op dimension for the transposed
convolution and the two gradients (``op`` = transposed, grad_input,
grad_weight; see the suite's docstring for what each means on a shape),
and ``TorchBackwardPeer`` is PyTorch's matching call.  Data is seeded.
``setup`` makes one call first, so compilation is never timed; compile
time has its own fresh-process benchmark (``Compile``).  An algorithm that
a commit does not have, or that cannot serve a shape, and an op a shape
does not offer, are skipped (``NotImplementedError`` in ``setup``).
PyTorch and SciPy are separate benchmarks, skipped when not installed; asv
runs every benchmark in its own process, so PyTorch's threads never share
one with numba's.

``Loop`` times a point as a user's loop would (each algorithm alone in a
fresh process, results allocated per call): ``numbaconv bench --loop``'s
column.

``NUMBACONV_ASV_ONLY`` shrinks the grid (asv starts a process per
parameter combination, about a second each, so the full grid costs minutes
before any timing), e.g.
``NUMBACONV_ASV_ONLY="shape=resnet3x3,depthwise;op=forward,grad_weight;algorithm=direct;dtype=float32"``
(``op=forward`` selects ``Conv`` and the forward peers; the other ops
select points of ``Backward`` and ``TorchBackwardPeer``; without ``op=``
every op runs; ``peer=none`` skips the PyTorch and SciPy peers).
Use the same selection for every commit you want to compare (docs/asv.md).

Note [recording settings]
~~~~~~~~~~~~~~~~~~~~~~~~~
A recorded time is the median of every sample of every round, and a round
is one process.  On the shared development VM a whole process can be slow
(another job's threads against numba's): a record made with
``-a rounds=1`` had the depthwise layer at 7.9 ms against 0.5-0.7 ms in
every other measurement, and asv kept it as that commit's history.  With
asv's default of 2 rounds, one slow round still moves the median halfway.
So the time benchmarks take :data:`ROUNDS` = 3 rounds (interleaved, asv
runs every benchmark's first round before any second one, so they are
minutes apart) of :data:`REPEAT` = at least 5 samples each (asv's default
is at least 1): one slow round is outvoted two to one.  ``number`` stays
automatic (about 10 ms a sample), and the 0.1 s warm-up of asv is longer
than the 20 ms Note [turn warm-up] in numbaconv/timing.py found
enough.  Recording with ``--quick`` or ``-a rounds=1`` overrides this:
docs/asv.md says not to.
"""

from __future__ import annotations

import os
import time

import numpy as np

import numbaconv as nc
from numbaconv.bench.suite import PUBLIC_SHAPES, get_cases

try:
    from numbaconv.bench.suite import OPS
except ImportError:   # a commit from before the op dimension: Backward skips all
    OPS = ("forward", "transposed", "grad_input", "grad_weight")

#: Rounds and samples per round of every time benchmark but ``Compile``
#: (Note [recording settings]); ``repeat`` as asv takes it: (at least, at
#: most, seconds after which to stop once at least is reached).
ROUNDS = 3
REPEAT = (5, 10, 20.0)


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
#: ``Backward``'s shapes and ops: every public shape (up4x4 offers only
#: ``transposed``; its other points are skipped).  An empty selection keeps
#: one value, whose points ``setup`` skips, so that asv still finds a valid
#: (if empty) grid.
BACKWARD_SHAPES = _chosen("shape", [case.name for case in PUBLIC_SHAPES]) or ["resnet3x3"]
BACKWARD_OPS = _chosen("op", [op for op in OPS if op != "forward"]) or ["grad_input"]


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
    except (nc.UnsupportedAlgorithmError, MemoryError) as exc:
        # MemoryError: the algorithm's workspace is over the limit here
        raise NotImplementedError(str(exc)) from None
    return call, case.flops


def _case_with_op(shape, op):
    """The suite's case ``shape``, if it offers ``op``; NotImplementedError if not."""
    case = get_cases([shape])[0]
    if not hasattr(case, "op_call"):
        # asv runs these benchmarks against older commits' numbaconv too
        raise NotImplementedError("this commit's benchmark suite has no ops")
    if op not in case.ops:
        raise NotImplementedError(f"{shape} ({case.op}) has no op {op!r}")
    return case


def _prepare_op(shape, op, algorithm, dtype):
    """(call, flops) for one ``Backward`` point; NotImplementedError to skip."""
    _skip_unselected(shape=shape, op=op, algorithm=algorithm, dtype=dtype)
    if algorithm not in nc.algorithm_names():
        raise NotImplementedError(f"this commit has no algorithm {algorithm!r}")
    case = _case_with_op(shape, op)
    spec = case.op_call(op, dtype)
    namespace = nc if spec.namespace == "functional" else getattr(nc, "grad", None)
    fn = getattr(namespace, spec.name, None)
    if fn is None:
        raise NotImplementedError(f"this commit has no numbaconv "
                                  f"{'grad.' if spec.namespace == 'grad' else ''}{spec.name}")

    def call():
        return fn(*spec.args, algorithm=algorithm, **spec.kwargs)

    try:
        call()                       # compile (or load) and check it serves the point
    except (nc.UnsupportedAlgorithmError, MemoryError) as exc:
        raise NotImplementedError(str(exc)) from None
    return call, case.op_flops(op)


def _median_gflops(call, flops):
    times = []
    for _ in range(5):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return flops / float(np.median(times)) / 1e9


class Conv:
    """Forward convolution, algorithm x public shape x dtype."""

    params = (SHAPES, ALGORITHMS, DTYPES)
    param_names = ["shape", "algorithm", "dtype"]
    timeout = 600
    rounds = ROUNDS
    repeat = REPEAT

    def setup(self, shape, algorithm, dtype):
        _skip_unselected(op="forward")
        self.call, self.flops = _prepare(shape, algorithm, dtype)

    def time_conv(self, shape, algorithm, dtype):
        self.call()

    def peakmem_conv(self, shape, algorithm, dtype):
        self.call()

    def track_gflops(self, shape, algorithm, dtype):
        return _median_gflops(self.call, self.flops)

    track_gflops.unit = "GFLOP/s"


class Backward:
    """Transposed convolution and the gradients: public shape x op x algorithm x dtype.

    ``op``: ``transposed`` (``nc.conv_transpose{N}d``; on a forward shape
    the adjoint of its convolution), ``grad_input`` and ``grad_weight``
    (``nc.grad.conv{N}d_input`` / ``conv{N}d_weight`` with a seeded
    ``grad_output``).  GFLOP/s count the forward's multiply-adds.  Points a
    shape does not offer, or an algorithm cannot serve, are skipped.
    """

    params = (BACKWARD_SHAPES, BACKWARD_OPS, ALGORITHMS, DTYPES)
    param_names = ["shape", "op", "algorithm", "dtype"]
    timeout = 600
    rounds = ROUNDS
    repeat = REPEAT

    def setup(self, shape, op, algorithm, dtype):
        self.call, self.flops = _prepare_op(shape, op, algorithm, dtype)

    def time_op(self, shape, op, algorithm, dtype):
        self.call()

    def peakmem_op(self, shape, op, algorithm, dtype):
        self.call()

    def track_gflops(self, shape, op, algorithm, dtype):
        return _median_gflops(self.call, self.flops)

    track_gflops.unit = "GFLOP/s"


#: ``Loop``'s ops: every op, forward included.
LOOP_OPS = _chosen("op", list(OPS)) or ["forward"]


class Loop:
    """A user's loop (Note [loop timing] in numbaconv/bench/loop.py): a point
    and algorithm alone in a fresh process, 15 calls allocating their
    results (no ``out=``), float32; the median call in ms.  ``Conv`` and
    ``Backward`` time every algorithm in one long-lived process, whose
    freed blocks leave glibc keeping large blocks on its heap; a user's
    process may pay a page fault per page of every block each call
    (issue 27).  Skipped for a commit without ``numbaconv.bench.loop``."""

    params = (BACKWARD_SHAPES, LOOP_OPS, ALGORITHMS)
    param_names = ["shape", "op", "algorithm"]
    timeout = 900
    rounds = ROUNDS
    repeat = 1
    number = 1

    def setup(self, shape, op, algorithm):
        try:
            from numbaconv.bench import loop
        except ImportError:
            raise NotImplementedError("this commit has no numbaconv.bench.loop") from None
        _prepare_op(shape, op, algorithm, "float32")     # skips what it cannot serve
        self.loop = loop
        self.recipe = loop.recipe(get_cases([shape])[0].op_call(op, "float32"), algorithm)

    def track_loop_ms(self, shape, op, algorithm):
        return self.loop.loop_ms(self.loop.run_loop(self.recipe, threads=2))

    track_loop_ms.unit = "ms"


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
    rounds = ROUNDS
    repeat = REPEAT

    def setup(self, shape):
        _skip_unselected(shape=shape, peer="torch", op="forward")
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


class TorchBackwardPeer:
    """PyTorch's match of ``Backward`` (float32): ``F.conv_transpose{N}d``,
    ``torch.nn.grad.conv{N}d_input`` / ``conv{N}d_weight``."""

    params = (BACKWARD_SHAPES, BACKWARD_OPS)
    param_names = ["shape", "op"]
    timeout = 300
    rounds = ROUNDS
    repeat = REPEAT

    def setup(self, shape, op):
        _skip_unselected(shape=shape, op=op, peer="torch")
        try:
            import torch
            import torch.nn.grad
        except ImportError:
            raise NotImplementedError("PyTorch is not installed") from None
        case = _case_with_op(shape, op)
        spec = case.op_call(op, "float32")
        namespace = torch.nn.functional if spec.namespace == "functional" else torch.nn.grad
        fn = getattr(namespace, spec.name)
        args = tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in spec.args)
        torch.set_num_threads(2)

        def call():
            with torch.no_grad():
                return fn(*args, **spec.kwargs)

        call()
        self.call = call

    def time_op(self, shape, op):
        self.call()


class SciPyPeer:
    """scipy.signal.fftconvolve / oaconvolve on bigk2d's single-channel problem."""

    params = ["fftconvolve", "oaconvolve"]
    param_names = ["function"]
    rounds = ROUNDS
    repeat = REPEAT

    def setup(self, function):
        _skip_unselected(peer="scipy", op="forward")
        try:
            from scipy import signal
        except ImportError:  # pragma: no cover
            raise NotImplementedError("SciPy is not installed") from None
        x, w = get_cases(["bigk2d"])[0].make_arrays("float32")
        image, kernel = x[0, 0], np.ascontiguousarray(w[0, 0][::-1, ::-1])
        self.call = lambda: getattr(signal, function)(image, kernel, mode="valid")

    def time_bigk2d(self, function):
        self.call()
