"""Cost models: how long each algorithm's path would take on this machine.

Note [cost models]
~~~~~~~~~~~~~~~~~~
Every path of every algorithm has a *work* function of the spec -- a count
of multiply-adds, weighted by how well its GEMM shape or loop order uses
the machine, plus the elements it copies, fills, scatters or transforms --
and one fitted machine constant, seconds per unit of work on one thread:

    seconds = (constant[path] * work(path, spec)
               + constant["im2col:fill"] * fill_units(spec, ...)) / threads + OVERHEAD

(fft's work is its planner's cost, already per thread; only im2col's tile
paths have a fill term, Note [column fill cost]: the column fill runs at
memory speed, not GEMM speed, so it has its own constant, timed alone).  A plan made of
several problems -- the phases of a transposed problem, the grouped forward
rewrite of a weight gradient -- is costed as its parts' estimates summed,
times a fitted factor per algorithm and kind (``direct:phases`` ...) for
what the parts' models do not see (copies, one pack per phase).  The relative
weights inside a work function are fixed by the algorithms' structure; only
the per-path constants are fitted, by ``numbaconv calibrate``
(:func:`calibrate`), which times every path on a fixed set of problems
(the fastest of three passes) and takes the median of ``(seconds -
OVERHEAD - fill seconds) * threads / work``.  The package
ships constants fitted on the development machine (:data:`DEFAULTS`); a
calibration writes its own to the user cache directory, where
:func:`constants` finds them.  How well the models predict, on the fitted
problems and on held-out ones, is in docs/choosing.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings

from .bench.turns import time_turn
from .kernels.direct_layouts import default_phase_plane_form, row_pairs_layout, stride_two_layout

#: Seconds of fixed cost per call (Python, thread-pool start).
OVERHEAD = 3e-5
#: GEMM shape penalty: a dimension of ``d`` runs at ``d / (d + GEMM_HALF)``
#: of the large-matrix rate.
GEMM_HALF = 8.0
#: Most output channels per group of a GEMM whose column tiles im2col keeps
#: in the core's cache (``FEW_ROWS_TILE_BYTES`` in
#: :mod:`numbaconv.algorithms.im2col`), and which pays no row penalty here
#: (Note [few-row GEMMs]).
FEW_ROWS = 16
#: Work units of one BLAS call's fixed cost (packing set-up, dispatch), in
#: multiply-adds: thousands of tiny GEMMs (Winograd on depthwise layers: one
#: 1x1 GEMM per group and position) cost far more than their arithmetic.
GEMM_CALL = 4000.0
#: Work units per output of the direct channels-last kernel beyond its
#: multiply-adds: the horizontal sums of a 4x3 block's accumulators and the
#: scattered stores.  Least squares over 32 layers (AMD EPYC, 2 threads,
#: 2026-11-30; dot products of 27 to 4608 values): 142 units per output,
#: which brought the worst estimate / measured from 0.19-1.32 to 0.65-1.32;
#: without it the stem-like layers (3 input channels, dot products of 27-147)
#: were estimated 2-5x too fast and chosen over im2col at 2.4x its time.
DIRECT_OUTPUT = 140.0
#: Column-fill units of one element copied with a stride, and of starting
#: one contiguous run (Note [column fill cost]); one unit-stride element is 1.
STRIDED_FILL = 4.4
FILL_RUN = 176.0
#: A multiply-add of the row-pairs form of the phase-planes kernel (Note
#: [row pairs] in kernels/direct_cpu.py) in units of the single-row form's,
#: with one input channel per group, and with several (whose passes after
#: the first add into the accumulators).  Its seven-tap passes measured 0.65
#: of the single-row time per output in isolation.  On 12 layers (AMD EPYC,
#: 2 threads, 2026-11-30) 0.55 put the model at 0.72-1.26 of the measured
#: time of depthwise 3x3 and 7x7 layers of 14x14 to 112x112 planes, where
#: the single-row form's model is at 0.71-0.94; with 0.55 the grouped 3x3
#: layers (2, 4 and 8 channels per group, ResNeXt's included) measured
#: 1.02-1.32 of it, and 0.75 puts them at 0.86-1.05.  (7x7 planes are
#: underestimated about 1.5x: per-plane work the model does not count.)
ROW_PAIR_PASS = 0.55
ROW_PAIR_PASS_GROUPED = 0.75
#: A multiply-add of the stride-two form of the phase-planes kernel
#: (Note [stride-two phases]) in units of the single-row form's, plus its input
#: split.  Fitted on six stride-2 3x3 layers (AMD EPYC, 2 threads,
#: 2026-11-30) when the split was a de-interleave and a copy per row
#: (counted twice): 1.2 matched MobileNet's dw_s2 and put the rest at
#: 0.7-1.6 of the measured time.  With the split as vector shuffles (Note
#: [de-interleaved runs] in kernels/runs.py), counted once, the same six
#: layers measure 0.56-1.23 of the model over two runs (dw_s2 0.89-0.93;
#: the 112x112 one, bound by reading its 19 MB input, is the 0.56).  No
#: other algorithm is within 3x of direct on these layers, so the spread
#: does not change a pick.
STRIDE_TWO_PASS = 1.2

#: Seconds per unit of work on one thread, per path; fitted by
#: ``numbaconv calibrate`` on the development machine (AMD EPYC, 2 threads,
#: 2026-11-30, float32; per path the lowest of 6-12 three-round calibrations
#: over 40 minutes, the machine's quiet speed: single calibrations here
#: moved memory-bound paths by up to 1.7x when a neighbour was busy); the
#: composite factors fitted against those (``fit(samples, parts=...)``).
#: The Winograd constants were refitted after Note [constant transforms]
#: and the weight fingerprint (nine rounds, the fastest of each kept; the
#: other paths came out within 5% of the values below).
DEFAULTS = {
    "direct:channels_last": 2.077e-11,
    "direct:planes": 2.140e-10,
    "direct:phase_planes": 5.341e-11,
    "direct:thin_channels_last": 1.366e-10,
    "im2col:pointwise": 1.754e-11,
    "im2col:tiles": 1.856e-11,
    "im2col:small": 4.376e-11,
    "im2col:col2im": 2.958e-11,
    "im2col:grad_tiles": 1.966e-11,
    "im2col:grad_small": 3.169e-11,
    "im2col:fill": 7.106e-11,
    "fft": 1.501e-10,
    "winograd:F4": 1.252e-11,
    "winograd:F2": 1.431e-11,
    "direct:phases": 2.905e+00,
    "direct:rewrite": 2.159e+00,
    "fft:phases": 1.750e+00,
    "fft:rewrite": 9.833e-01,
    # GPU paths, seconds per multiply-add (per unit for fft and winograd),
    # whole device: not fitted (no GPU yet; numbaconv/algorithms/gpu.py)
    "cuda:direct": 4.0e-13,
    "cuda:direct_naive": 2.0e-12,
    "cuda:implicit_gemm": 2.5e-13,
    "cuda:grad_reduce": 1.0e-12,
    "cuda:winograd": 3.0e-13,
    "cuda:fft": 2.0e-13,
}
PATHS = tuple(DEFAULTS)
CONSTANTS_FILE = "costs-v1.json"

_cached = None


def _gemm(macs, *dims):
    """Multiply-adds weighted by the GEMM shape's efficiency.

    Note [few-row GEMMs]
    ~~~~~~~~~~~~~~~~~~~~
    Each short dimension ``d`` costs ``(d + GEMM_HALF) / d``.  The column
    tiles' GEMM (im2col's forward) does not pay it for its rows when there
    are at most :data:`FEW_ROWS` output channels
    per group: those tiles are kept in the core's cache
    (``FEW_ROWS_TILE_BYTES``), and GEMMs of 4 to 8 rows then measured 0.2-0.55
    of the estimate with it (ResNeXt's 32 groups of 4 channels, 4 -> 4 and
    8 -> 8 layers; it is 3x for 4 rows), within 1.1-1.35x without it, like
    the layers with many channels (2 threads, AMD EPYC, 2026-11-30).  Above
    ``FEW_ROWS`` nothing changed, so the fitted constant stands.  (Dropping
    the row term for every layer, with the constant raised 1.125x to keep
    64-row layers where they were, raised the estimates of 512-row layers
    11% and made ``"auto"`` take direct at 1.6x im2col's time on a held-out
    ResNet stage-4 layer.)
    """
    for d in dims:
        macs *= (d + GEMM_HALF) / max(d, 1)
    return macs


def work(path, spec):
    """Units of work of ``path`` on ``spec`` (Note [cost models]).  The im2col
    tile paths' column fill is costed apart (:func:`fill_units`)."""
    macs = spec.flops / 2
    n, g = spec.batch, spec.groups
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    K = cin_g * math.prod(spec.kernel_size)
    pixels = math.prod(spec.output_size)
    padded = math.prod(spec.padded_size)
    if path == "direct:channels_last":
        # packing, plus every output pixel's receptive field copied into a
        # patch row (Note [patch rows]) in runs of KW*C (one group, no W
        # dilation) or C values, each run costing like im2col's
        fill = n * g * K * pixels * (1.0 if all(v == 1 for v in spec.stride) else 4.0)
        taps = math.prod(spec.kernel_size)
        merged = spec.groups == 1 and spec.dilation[-1] == 1
        runs = n * g * pixels * (taps // spec.kernel_size[-1] if merged else taps)
        outputs = n * spec.out_channels * pixels
        return (macs + 4.0 * n * spec.in_channels * padded + 2.0 * fill + DIRECT_OUTPUT * outputs
                + FILL_RUN * runs)
    if path == "direct:planes":
        return macs + 4.0 * n * spec.in_channels * padded
    if path == "direct:thin_channels_last":
        # packing, and a pass over each output row's accumulators
        return macs + 4.0 * n * spec.in_channels * padded + 2.0 * n * spec.out_channels * pixels
    if path == "direct:phase_planes":
        # the split of each input plane, and with a stride the junk outputs
        # at the end of each accumulator row and the copy of the rest
        # (Note [phase planes])
        W, OW = spec.input_size3[2], spec.output_size3[2]
        OH, KH = spec.output_size3[1], spec.kernel_size3[1]
        outputs = n * spec.out_channels * pixels
        # one split of each input plane of the group per output plane
        splits = n * spec.out_channels * cin_g * padded
        form = default_phase_plane_form(spec.kernel_size3[1:], spec.stride3, spec.dilation3)
        KH, KW = spec.kernel_size3[1:]
        pad_w = spec.padding3[2][0]
        if form == "stride_two":
            # Note [stride-two phases]: one pass over accumulators at the phase
            # rows' pitch, and the copy out
            size = stride_two_layout(OH, W, KH, KW, pad_w)[2]
            return macs * STRIDE_TWO_PASS * size / (OH * OW) + splits + 2.0 * outputs
        if form == "row_pairs":
            # Note [row pairs]: the cheaper passes over both row phases'
            # accumulators (gap and rounding junk included), and the copy out
            size = row_pairs_layout(OH, W, KH, KW, pad_w)[2]
            rate = ROW_PAIR_PASS if cin_g == 1 else ROW_PAIR_PASS_GROUPED
            return macs * rate * 2 * size / (OH * OW) + splits + 2.0 * outputs
        pitch = spec.stride3[1] * (W // spec.stride3[2])
        copy = 0.0 if pitch == OW else 2.0 * outputs
        return macs * pitch / OW + splits + copy
    if path == "im2col:pointwise":
        return _gemm(macs, cout_g, cin_g)
    if path == "im2col:tiles":
        # Note [few-row GEMMs]: no penalty for few output channels per group
        calls = n * g * -(-pixels // 512)
        rows = () if cout_g <= FEW_ROWS else (cout_g,)
        return _gemm(macs, *rows, K) + GEMM_CALL * calls
    if path == "im2col:grad_tiles":
        calls = n * g * -(-pixels // 512)
        return _gemm(macs, cout_g, K) + GEMM_CALL * calls
    if path in ("im2col:small", "im2col:grad_small"):
        return macs                                     # the numba products
    if path == "im2col:col2im":
        taps = math.prod(spec.kernel_size)
        scatter = n * spec.out_channels * taps * math.prod(spec.input_size)
        return _gemm(macs, cin_g, cout_g * taps) + 2.0 * scatter
    raise ValueError(f"no work function for path {path!r}")


def fill_units(spec, tile, same_width):
    """Units of ``"im2col:fill"`` of filling the column tiles of ``tile``
    output pixels of ``spec`` (``same_width``: the one-copy fill of Note
    [same-width columns]).

    Note [column fill cost]
    ~~~~~~~~~~~~~~~~~~~~~~~
    The column fill copies ``N * groups * K * pixels`` elements, in runs of
    at most one output row per weight tap (one run per tap and tile with the
    same-width fill).  Timed alone on 15 layers (1-D, 2-D, 3-D; strides 1
    to 4; rows of 7 to 8000 pixels; AMD EPYC, one thread, 2026-11-30), a
    least-squares fit gave 0.082 ns per unit-stride element, 0.36 per
    strided element and 14 ns per run, each layer within 0.62-1.21x of the
    fit; hence the weights :data:`STRIDED_FILL` and :data:`FILL_RUN`.  The
    earlier model folded the fill into the GEMM's constant at 2 units per
    element and no run cost, about 5x too cheap; it did not show where the
    GEMM dominates, but on "medical 3d s2" (32 output channels, 32-pixel
    rows) it made im2col look faster than direct when it was 1.3x slower.
    ``numbaconv calibrate`` times the fill kernel alone for its constant.
    """
    n, g = spec.batch, spec.groups
    K = spec.in_channels_per_group * math.prod(spec.kernel_size)
    pixels = math.prod(spec.output_size)
    tiles = -(-pixels // max(1, tile))
    elements = n * g * K * pixels
    if same_width:
        runs = n * g * K * tiles
    else:
        runs = n * g * K * (-(-pixels // spec.output_size[-1]) + tiles)
    strided = any(v != 1 for v in spec.stride)
    return elements * (STRIDED_FILL if strided else 1.0) + FILL_RUN * runs


#: Work units of one transform step (one multiply-add of a channel vector
#: element in a 1-D transform pass), in GEMM multiply-adds, by the number of
#: spatial axes (Note [winograd cost]).
TRANSFORM_WEIGHT = {1: 3.9, 2: 3.9, 3: 6.9}


#: Units per transformed-weight element streamed by one chunk's GEMMs, by the
#: size of the whole transformed weight: ``(up to bytes, units)`` -- within
#: this machine's L2 (2 MiB), its L3 (32 MiB), beyond (Note [winograd cost]).
WEIGHT_STREAM = ((2 * 2**20, 8.0), (32 * 2**20, 24.0), (math.inf, 36.0))


def winograd_tiles(spec, m):
    """Tiles of F(m, 3) Winograd on ``spec``: a dilated layer is tiled one
    dilation phase at a time (Note [dilation phases] of
    :mod:`numbaconv.algorithms.winograd`), each phase ``ceil(O / d)`` long."""
    return spec.batch * math.prod(d * -(-(-(-o // d)) // m)
                                  for o, d in zip(spec.output_size, spec.dilation))


def winograd_work(spec, m, chunk):
    """Work of F(m, 3) Winograd on ``spec`` with ``chunk`` tiles per chunk.

    Note [winograd cost]
    ~~~~~~~~~~~~~~~~~~~~
    Per tile: the transforms, ``alpha`` multiply-adds per transform position,
    channel and axis, for the input's and the output's channels; and the
    transform-domain GEMMs, ``Q`` products of ``chunk x C_in/g`` by ``C_in/g
    x C_out/g`` per chunk and group.  Timed apart on one thread with
    ``scripts/winograd_split.py`` (AMD EPYC, 2026-11-30, after Note [constant
    transforms]), a transform step cost 3.35-4.0 GEMM multiply-adds on 2-D
    layers (resnet3x3, late3x3, dil3x3; 3.9 taken) and 5.9-7.9 on 3-D ones
    (vol3x3_32, vol3x3; 6.9 taken), where the output's scatter into NCDHW
    (four values per channel row and tile) weighs more:
    :data:`TRANSFORM_WEIGHT`.  Before the constant transforms the same
    measurement gave 6.0 on resnet3x3 and 13.8 on vol3x3; counted as one
    multiply-add each, as at first, the transforms were under-weighted 4x
    and 3-D estimates 2x too low.

    Layers with many channels and few tiles (late network stages) stream the
    transformed weight ``U`` (``alpha**2 * C_in * C_out`` values: 9 MiB for
    256 channels, 36 MiB for 512) through the GEMMs once per chunk.  With 8
    units per streamed element their estimates were 0.27-0.31 of the
    measured time where im2col's were 0.45-0.74 on the same layers (256 and
    512 channels on 14x14 and 7x7 planes, interleaved in one process), and
    ``"auto"`` picked F(4x4) at up to 1.8x im2col's time.  The elements
    still missing there came to 25-38 units each, against 18 for a 2.2 MiB
    ``U`` (128 channels) and a negligible share on smaller ones: so 8 units
    while ``U`` fits in this machine's 2 MiB L2, 24 while it fits in its 32
    MiB L3 (9 MiB: 25-32 measured), 36 beyond (36 MiB: 35-38 measured):
    :data:`WEIGHT_STREAM`.  A single step at 4 MiB made F(2x2)'s 4 MiB
    ``U`` of a 256-channel layer look cached next to F(4x4)'s 9 MiB and
    picked F(2x2) at 1.14x F(4x4)'s time.
    """
    alpha = m + 2
    tiles = winograd_tiles(spec, m)
    Q = alpha ** spec.ndim
    transforms = (TRANSFORM_WEIGHT[spec.ndim] * tiles * Q
                  * (spec.in_channels + spec.out_channels) * alpha * spec.ndim)
    gemm = _gemm(tiles * Q * spec.groups * spec.in_channels_per_group
                 * spec.out_channels_per_group, spec.in_channels_per_group,
                 spec.out_channels_per_group, min(chunk, tiles))
    # per chunk of tiles, one GEMM per position and group, each streaming
    # its C_in/g x C_out/g transformed weight: with few tiles per chunk
    # (many channels) that traffic, not the arithmetic, is the cost, and
    # more so once the transformed weight outgrows the cache
    chunks = -(-tiles // chunk)
    calls = Q * spec.groups * chunks
    elements = Q * spec.groups * spec.in_channels_per_group * spec.out_channels_per_group
    size = elements * spec.compute_dtype.itemsize
    per_element = next(units for limit, units in WEIGHT_STREAM if size <= limit)
    return transforms + gemm + GEMM_CALL * calls + per_element * elements * chunks


def seconds(path, units, threads, per_thread=True, fill=0.0):
    """Estimated seconds of ``units`` of ``path``'s work plus ``fill`` units
    of column fill (:func:`fill_units`)."""
    c = constants()
    total = c[path] * units + c["im2col:fill"] * fill
    return total / (threads if per_thread else 1) + OVERHEAD


# ---------------------------------------------------------------------------
# constants: shipped defaults, or this machine's calibration
# ---------------------------------------------------------------------------

def constants_path():
    from .tuning import cache_dir
    return os.path.join(cache_dir(), CONSTANTS_FILE)


def constants():
    """The machine constants in force: the calibration file in the user
    cache directory if there is a valid one, else :data:`DEFAULTS`."""
    return _constants_and_key()[0]


class _ConstantsKey:
    """The constants' values as a cache key whose hash is computed once
    (hashing the 24 (path, value) pairs took 0.5 us, on every lookup)."""

    __slots__ = ("values", "_hash")

    def __init__(self, values):
        self.values = tuple(sorted(values.items()))
        self._hash = hash(self.values)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return isinstance(other, _ConstantsKey) and self.values == other.values


def constants_key():
    """A hashable value of the constants in force, for caches of plans and
    picks made under them.

    Not ``id(constants())``: a dict freed when the cache directory changes
    lets the next one take its address, and caches keyed by that id then
    served plans made under other constants (a concurrency test saw a
    different ``"auto"`` pick, so different low bits, after a test that
    had calibrated into its own directory).
    """
    return _constants_and_key()[1]


def _constants_and_key():
    global _cached
    where = os.environ.get("NUMBACONV_CACHE_DIR")    # cheap: asked on every call
    cached = _cached                                 # one read: other threads may reset it
    if cached is not None and cached[0] == where:
        return cached[1], cached[2]
    path = constants_path()
    values = dict(DEFAULTS)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        fitted = data["constants"]
        if set(fitted) != set(DEFAULTS) or not all(
                isinstance(v, (int, float)) and v > 0 and math.isfinite(v)
                for v in fitted.values()):
            raise ValueError("not a complete set of positive constants")
        values.update(fitted)
    except (FileNotFoundError, NotADirectoryError):
        pass                              # not calibrated here: the shipped constants
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"numbaconv: ignoring the cost-model constants {path}: {exc}",
                      stacklevel=2)
    key = _ConstantsKey(values)
    _cached = (where, values, key)
    return values, key


def forget_constants():
    """Re-read the constants on next use (after a calibration)."""
    global _cached
    _cached = None


# ---------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------

#: The problems ``numbaconv calibrate`` times (forward specs: input shape,
#: weight shape, kwargs).  Each path is timed on those it serves.
CALIBRATION_PROBLEMS = (
    ((4, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ((4, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ((4, 256, 28, 28), (128, 256, 1, 1), {}),
    ((4, 128, 56, 56), (128, 128, 3, 3), dict(stride=2, padding=1)),
    ((4, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ((4, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256)),
    ((4, 128, 28, 28), (128, 1, 3, 3), dict(stride=2, padding=1, groups=128)),
    ((2, 8, 128, 128), (8, 8, 15, 15), dict(padding=7)),
    ((8, 16, 4096), (16, 16, 63), {}),
    ((2, 16, 24, 24, 24), (16, 16, 3, 3, 3), dict(padding=1)),
    ((4, 32, 56, 56), (32, 32, 3, 3), dict(padding=1)),
    ((4, 192, 14, 14), (192, 192, 3, 3), dict(padding=1)),
    ((2, 3, 192, 192), (48, 3, 4, 4), dict(stride=4)),
    ((1, 4, 256, 256), (4, 1, 9, 9), dict(padding=4, groups=4)),
    ((8, 64, 2048), (64, 64, 5), dict(padding=2)),
)


def _time(fn, repeats):
    """The fastest of ``repeats`` calls after one untimed call: a shared
    machine only ever adds time."""
    return min(time_turn(fn, repeats, warmup_s=0.0))


def measure_paths(repeats=5, progress=None):
    """Time every path on :data:`CALIBRATION_PROBLEMS` (and their gradients
    and transposes where a path serves those), and the im2col column fill
    alone on each forward problem's tiles.  Returns a list of ``(path, spec,
    seconds, threads, units, fill_units)``."""
    import numpy as np

    from .algorithms.im2col import fill_every_tile
    from .algorithms.registry import get_algorithm
    from .context import current_context
    from .dispatch import problem_spec
    from .tuning import _synthetic_arrays

    ctx = current_context()
    rng = np.random.default_rng(0)
    samples = []
    for xs, ws, kw in CALIBRATION_PROBLEMS:
        variants = [problem_spec(xs, ws, **kw), problem_spec(xs, ws, gradient="weight", **kw)]
        if kw.get("stride", 1) != 1:
            variants.append(problem_spec(xs, ws, gradient="input", **kw))
        for spec in variants:
            arrays = _synthetic_arrays(spec, rng)
            if spec is variants[0] and not spec.is_pointwise:
                plan = get_algorithm("im2col").plan(spec, ctx)
                t = _time(lambda: fill_every_tile(spec, arrays[0], plan.detail.tile), repeats)
                samples.append(("im2col:fill", spec, t, 1, plan.fill, 0.0))
                if progress:
                    progress(f"im2col:fill: {t * 1e3:.2f} ms on one thread {spec.describe()}")
            for name in ("direct", "im2col", "fft", "winograd", "winograd_f2"):
                algorithm = get_algorithm(name)
                if algorithm.unsupported_reason(spec) is not None:
                    continue
                plan = algorithm.plan(spec, ctx)
                if plan.model is None:
                    continue              # composite plans: fitted through their parts
                t = _time(lambda: algorithm.run(spec, *arrays, ctx), repeats)
                if progress:
                    progress(f"{plan.model}: {t * 1e3:.2f} ms (model {plan.seconds * 1e3:.2f}) "
                             f"{spec.describe()}")
                samples.append((plan.model, spec, t, ctx.threads, plan.units, plan.fill))
    return samples


def _composite(path):
    """Whether ``path`` is a plan made of several problems (Note [cost models])."""
    return path.endswith((":phases", ":rewrite"))


@contextlib.contextmanager
def _constants_in_force(values):
    """Make :func:`constants` answer ``values`` for the duration."""
    global _cached
    previous = _cached
    _cached = (os.environ.get("NUMBACONV_CACHE_DIR"), values, _ConstantsKey(values))
    try:
        yield
    finally:
        _cached = previous


def fit(samples, parts=None):
    """Constants from ``measure_paths``'s samples (median rate per path).

    The column fill's constant first, then every path's on its time less
    the fill's; then the composite factors (``direct:phases`` ...), whose
    work is their parts' estimates, planned again under the constants just
    fitted (or under ``parts``, when given instead of fitting them: how the
    shipped factors were made to match the shipped part constants).
    """
    from .algorithms.registry import get_algorithm

    fitted = dict(DEFAULTS)
    counts = {}

    def median_rates(selected, seconds_of):
        by_path = {}
        for path, spec, t, threads, units, fill in selected:
            per_thread = not (path == "fft" or _composite(path))
            rate = max(seconds_of(t, fill, threads), 1e-7) * (threads if per_thread else 1)
            by_path.setdefault(path, []).append(rate / units)
        for path, rates in by_path.items():
            rates.sort()
            fitted[path] = rates[len(rates) // 2]
            counts[path] = len(rates)

    if parts is None:
        median_rates([s for s in samples if s[0] == "im2col:fill"], lambda t, fill, threads: t)
        median_rates([s for s in samples if s[0] != "im2col:fill" and not _composite(s[0])],
                     lambda t, fill, threads: t - OVERHEAD
                     - fitted["im2col:fill"] * fill / threads)
    else:
        fitted.update({p: v for p, v in parts.items() if not _composite(p)})
    with _constants_in_force(fitted):
        replanned = [(path, spec, t, threads,
                      get_algorithm(path.split(":")[0]).plan(spec).units, 0.0)
                     for path, spec, t, threads, _units, _fill in samples if _composite(path)]
    median_rates(replanned, lambda t, fill, threads: t - OVERHEAD)
    return fitted, counts


def calibrate(repeats=5, progress=None, write=True, rounds=3):
    """Time every path here, fit the constants and (with ``write``) store
    them in the user cache directory.  Returns ``(constants, samples per path)``.

    Every measurement is taken in ``rounds`` passes over all problems and
    the fastest kept: on the shared development VM a slow spell lasting a
    few seconds moved single-pass constants by 20-150% between runs (the
    Winograd constant 3.9e-11 to 6.1e-11, im2col's numba products 4.1e-11 to
    1.0e-10), one pass taking about 13 s."""
    samples = measure_paths(repeats, progress)
    for _ in range(rounds - 1):
        again = measure_paths(repeats, progress)
        samples = [s if s[2] <= a[2] else a for s, a in zip(samples, again)]
    fitted, counts = fit(samples)
    if write:
        from .tuning import write_json
        write_json(constants_path(), {"version": 1, "constants": fitted, "samples": counts,
                                      "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
        forget_constants()
    return fitted, counts
