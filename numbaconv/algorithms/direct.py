"""The ``direct`` algorithm: nested-loop convolution, no transforms.

Serves every valid forward spec.  It picks one of four loop orders from
:mod:`numbaconv.kernels.direct_channels_last` and its neighbours (see their notes):

* ``"channels_last"`` for ordinary layers: at least 8 input channels per
  group, or a dot product of at least :data:`MIN_CHANNELS_LAST_REDUCTION`
  values (``C_in/groups * prod(kernel)``) with at least CHANNEL_BLOCK (3)
  output channels per group (the stem, long 1-D kernels);
* ``"phase_planes"`` for the remaining (thin-group, e.g. depthwise) layers
  when they are zero-padded and 1-D/2-D, of any stride and dilation, with an
  input width that is a multiple of the stride (Note [phase planes]; with
  unit stride and a 7-row kernel, two output rows per pass: Note [row
  pairs]), and for the layers both serve when its cost model says it is
  cheaper (few channels: Note [few channels]);
* ``"thin_channels_last"`` for the other 2-D layers with one input channel
  per group, at least 8 groups and planes of at most :data:`THIN_MAX_PLANE`
  (depthwise layers with another padding mode or an odd width): vectorised
  over channels (Note [thin channels-last]);
* ``"planes"`` for everything else.

The weight gradients and input-dilated (transposed) problems of thin
groups, zero-padded and 1-D/2-D, have kernels of their own (Note [thin
gradients]); everything else reaches the loop orders through the registry's
rewrites.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace


from ..context import current_context
from ..kernels import (direct_channels_last, direct_channels_last_native, direct_layouts,
                       direct_pack, direct_phase_planes, direct_planes, direct_thin_grad)
from ..padding import padding_maps
from ..workspaces import contiguous, scratch
from .. import costs
from .registry import (PACK_SECONDS_PER_BYTE, ConvAlgorithm, channels_first_copy,
                       composite_paths, copy_to_channels_last, costed_plan, register,
                       weight_bytes)

#: Shortest dot product for which the channels-last kernel is used when there
#: are few input channels per group: below it the patch copy and the 4x3
#: block's horizontal sums dominate (depthwise 3x3x3: 44 ms channels-last
#: against 4.7 ms planes; docs/results-direct.md, "Loop-order thresholds").
MIN_CHANNELS_LAST_REDUCTION = 16

#: Largest padded plane (elements) of a 2-D layer with one input channel per
#: group that goes to Note [thin channels-last] rather than planes: on larger
#: planes the channels-last pack costs more than the planes' per-plane gather
#: (stride-2 depthwise 3x3 on 112x112: 4.3 against 3.5 ms;
#: docs/results-direct.md, "Loop-order thresholds").
THIN_MAX_PLANE = 64 * 64

#: Work units per output of the direct channels-last kernel beyond its
#: multiply-adds: the horizontal sums of a 4x3 block's accumulators and the
#: scattered stores, fitted by least squares.  Without it the stem-like
#: layers (3 input channels) were estimated 2-5x too fast and chosen over
#: im2col (docs/results-direct.md, "Cost-model constants").
DIRECT_OUTPUT = 140.0
#: A multiply-add of the row-pairs form of the phase-planes kernel (Note
#: [row pairs] in kernels/direct_row_phases.py) in units of the single-row form's,
#: with one input channel per group, and with several (whose passes after
#: the first add into the accumulators).  Fitted on depthwise and grouped
#: 3x3 and 7x7 layers: with 0.55 for both, the grouped ones measured up to
#: 1.32x the estimate (docs/results-direct.md, "Cost-model constants").
ROW_PAIR_PASS = 0.55
ROW_PAIR_PASS_GROUPED = 0.75
#: A multiply-add of the stride-two form of the phase-planes kernel
#: (Note [stride-two phases]) in units of the single-row form's, plus its input
#: split (counted once).  Fitted on six stride-2 3x3 layers; no other
#: algorithm is within 3x of direct on them, so the model's spread there
#: changes no pick (docs/results-direct.md, "Cost-model constants").
STRIDE_TWO_PASS = 1.2
#: Bytes of the channels-last kernel's 4x3 block -- four patch rows and three
#: weight rows, each of the dot product's length K -- beyond which the block
#: no longer stays in a core's L2 (512 KiB on the AMD EPYC development
#: machines), and the multiply-adds cost DIRECT_OUT_OF_CACHE times as much:
#: 3-D U-Net's 768 -> 256 3x3x3 layer (K = 20736) took 4.4x its estimate,
#: against 1.3-1.8x for K up to 10368 (docs/results-direct.md, "Long dot
#: products"), and direct was picked at 2.6x im2col's time.
DIRECT_BLOCK_CACHE = 512 * 1024
DIRECT_OUT_OF_CACHE = 2.5



def _channels_last_work(spec):
    # packing, plus every output pixel's receptive field copied into a
    # patch row (Note [patch rows]) in runs of KW*C (one group, no W
    # dilation) or C values, each run costing like im2col's
    macs = spec.flops / 2
    n, g = spec.batch, spec.groups
    K = spec.in_channels_per_group * math.prod(spec.kernel_size)
    block = (direct_layouts.PIXEL_BLOCK + direct_layouts.CHANNEL_BLOCK) * K
    if block * spec.compute_dtype.itemsize > DIRECT_BLOCK_CACHE:
        macs *= DIRECT_OUT_OF_CACHE
    pixels = math.prod(spec.output_size)
    padded = math.prod(spec.padded_size)
    fill = n * g * K * pixels * (1.0 if all(v == 1 for v in spec.stride) else 4.0)
    taps = math.prod(spec.kernel_size)
    merged = spec.groups == 1 and spec.dilation[-1] == 1
    runs = n * g * pixels * (taps // spec.kernel_size[-1] if merged else taps)
    outputs = n * spec.out_channels * pixels
    return (macs + 4.0 * n * spec.in_channels * padded + 2.0 * fill + DIRECT_OUTPUT * outputs
            + costs.FILL_RUN * runs)


def _planes_work(spec):
    return spec.flops / 2 + 4.0 * spec.batch * spec.in_channels * math.prod(spec.padded_size)


def _thin_channels_last_work(spec):
    # packing, and a pass over each output row's accumulators
    n = spec.batch
    return (spec.flops / 2 + 4.0 * n * spec.in_channels * math.prod(spec.padded_size)
            + 2.0 * n * spec.out_channels * math.prod(spec.output_size))


def _phase_planes_work(spec):
    # the split of each input plane, and with a stride the junk outputs
    # at the end of each accumulator row and the copy of the rest
    # (Note [phase planes])
    macs = spec.flops / 2
    n = spec.batch
    cin_g = spec.in_channels_per_group
    pixels = math.prod(spec.output_size)
    padded = math.prod(spec.padded_size)
    W, OW = spec.input_size3[2], spec.output_size3[2]
    OH = spec.output_size3[1]
    outputs = n * spec.out_channels * pixels
    # one split of each input plane of the group per output plane
    splits = n * spec.out_channels * cin_g * padded
    form = direct_layouts.default_phase_plane_form(spec.kernel_size3[1:], spec.stride3,
                                                   spec.dilation3)
    KH, KW = spec.kernel_size3[1:]
    pad_w = spec.padding3[2][0]
    if form == "stride_two":
        # Note [stride-two phases]: one pass over accumulators at the phase
        # rows' pitch, and the copy out
        size = direct_layouts.stride_two_layout(OH, W, KH, KW, pad_w)[2]
        return macs * STRIDE_TWO_PASS * size / (OH * OW) + splits + 2.0 * outputs
    if form == "row_pairs":
        # Note [row pairs]: the cheaper passes over both row phases'
        # accumulators (gap and rounding junk included), and the copy out
        size = direct_layouts.row_pairs_layout(OH, W, KH, KW, pad_w)[2]
        rate = ROW_PAIR_PASS if cin_g == 1 else ROW_PAIR_PASS_GROUPED
        return macs * rate * 2 * size / (OH * OW) + splits + 2.0 * outputs
    pitch = spec.stride3[1] * (W // spec.stride3[2])
    copy = 0.0 if pitch == OW else 2.0 * outputs
    return macs * pitch / OW + splits + copy


# Note [thin gradients]
# ~~~~~~~~~~~~~~~~~~~~~
# The gradients of depthwise and few-channel layers went to im2col (weight
# gradients: column tiles times one output channel at a time, Note [small
# products] in kernels/im2col_cpu.py) and to direct's phases or im2col's
# col2im (strided input gradients: four forward problems, each reading the
# whole output gradient, or GEMMs of one input channel).  So direct serves
# them with kernels of their own (Note [thin weight gradient], Note [thin
# transposed phases] in kernels/direct_thin_grad.py), and its plans for
# them are these paths' rather than the rewrite's or the phases' (for
# channels-last arrays the cheapest of those, the kernels on canonical
# copies and, for depthwise layers, Note [channels-last thin gradients]).
# EfficientNet-B0's features.2.0 (96 channels, 112x112, 3x3 stride 2,
# batch 1) took 2.7 ms in im2col's weight gradient and 0.42 ms here, on one
# thread of a loaded machine; over MobileNetV3's and EfficientNet-B0's
# depthwise layers the thin kernels ran 1.3-15x faster than what "auto"
# picked before (4x geometric mean;
# docs/results-backward.md, "Depthwise gradients").

#: Most input channels per group of the thin gradients (Note [thin
#: gradients]): depthwise layers, their depth multipliers' input gradients
#: and few-channel groups.  Each input plane of a group is one buffer of a
#: thread's scratch.
THIN_GRAD_CHANNELS = 4


@functools.lru_cache(maxsize=1024)
def why_not_thin_gradient(spec):
    """Why the thin gradients (Note [thin gradients]) do not serve ``spec``,
    or ``None`` if they do: a weight gradient or an input-dilated (transposed)
    problem, zero-padded, 1-D or 2-D, with at most :data:`THIN_GRAD_CHANNELS`
    input channels per group."""
    reasons = []
    if spec.computation != "grad_weight" and not spec.has_input_dilation:
        reasons.append("neither a weight gradient nor input-dilated")
    if spec.padding_mode != "zeros":
        reasons.append(f"padding_mode={spec.padding_mode!r}")
    if spec.ndim >= 3:
        reasons.append(f"{spec.ndim}-D")
    if spec.in_channels_per_group > THIN_GRAD_CHANNELS:
        reasons.append(f"{spec.in_channels_per_group} input channels per group")
    if spec.computation == "grad_weight" and any(lo < 0 for lo, _ in spec.padding):
        reasons.append(f"negative padding {spec.padding}")
    return ", ".join(reasons) or None


def transposed_axes(spec):
    """The H and W :func:`~numbaconv.kernels.direct_layouts.transposed_axis_phases`
    of an input-dilated ``spec``."""
    return tuple(direct_layouts.transposed_axis_phases(n, K, d, L, lo, O)
                 for n, K, d, L, (lo, _), O in zip(
                     spec.input_size3[1:], spec.kernel_size3[1:], spec.dilation3[1:],
                     spec.input_dilation3[1:], spec.padding3[1:], spec.output_size3[1:]))


def _scratch_budget(spec, ctx):
    """Values of scratch a thread of the thin gradients may take: its share
    of the workspace limit, at most ``direct_layouts.BAND_BYTES`` (Note
    [plane bands]).  Shared by the pool's threads, not the call's: the
    weight gradient's bands decide a summation order."""
    budget = min(ctx.workspace_limit // max(ctx.pool_threads, 1), direct_layouts.BAND_BYTES)
    return budget // spec.compute_dtype.itemsize


@functools.lru_cache(maxsize=1024)
def thin_grad_weight_layout(spec, ctx):
    """The layout of the thin weight gradient of ``spec`` under ``ctx``
    (:func:`~numbaconv.kernels.direct_layouts.thin_grad_weight_layout`),
    its bands at most ``direct_layouts.THIN_GRAD_BAND_BYTES`` a thread."""
    (_, OH, OW), (_, KH, KW) = spec.output_size3, spec.kernel_size3
    budget = min(_scratch_budget(spec, ctx),
                 direct_layouts.THIN_GRAD_BAND_BYTES // spec.compute_dtype.itemsize)
    return direct_layouts.thin_grad_weight_layout(
        spec.batch, spec.groups, spec.in_channels_per_group, spec.out_channels_per_group, OH,
        OW, KH, KW, *spec.stride3[1:], *spec.dilation3[1:], budget)


@functools.lru_cache(maxsize=1024)
def thin_transposed_band_rows(spec, ctx):
    """Phase rows per band of the thin transposed kernel for ``spec`` under ``ctx``."""
    return direct_layouts.thin_transposed_band_rows(
        spec.in_channels_per_group, spec.input_dilation3[2], transposed_axes(spec),
        _scratch_budget(spec, ctx))


def _thin_grad_weight_work(spec):
    # every tap's dot product over the padded-pitch output, the input
    # planes split once per group, the output gradient copied per input
    # channel of its group (Note [thin weight gradient])
    (_, OH, OW), (_, KH, KW) = spec.output_size3, spec.kernel_size3
    sh, sw = spec.stride3[1:]
    pitch, rows, _, _ = direct_layouts.thin_grad_weight_geometry(
        OW, KH, KW, sh, sw, *spec.dilation3[1:], OH)
    n = spec.batch
    planes = n * spec.out_channels * spec.in_channels_per_group
    macs = planes * KH * KW * OH * pitch
    passes = planes * direct_layouts.thin_grad_weight_passes(KH, KW) * OH * pitch
    split = n * spec.in_channels * sh * sw * rows * pitch
    copied = n * spec.out_channels * OH * pitch
    return macs + THIN_PASS * passes + THIN_COPY * (split + copied) + THIN_PLANE * planes


def _thin_transposed_work(spec):
    # per output plane and phase, the passes of its taps (four per pass)
    # over the padded-pitch phase, the input band copied once per group and
    # the phases woven into the output (Note [thin transposed phases])
    axes = transposed_axes(spec)
    pitch, rows, _, _ = direct_layouts.thin_transposed_geometry(axes, max(
        Q for Q, _ in axes[0][0]))
    cin_g = spec.in_channels_per_group
    per_plane = 0.0
    for Qh, taps_h in axes[0][0]:
        for Qw, taps_w in axes[1][0]:
            if Qh and Qw:
                taps = cin_g * len(taps_h) * len(taps_w)
                per_plane += Qh * pitch * (taps + THIN_PASS * max(1, -(-taps // 4)))
    n = spec.batch
    copied = n * spec.groups * cin_g * rows * pitch
    written = n * spec.out_channels * math.prod(spec.output_size)
    return (n * spec.out_channels * (per_plane + THIN_PLANE)
            + THIN_COPY * (copied + written))


def _native_depthwise(spec):
    """Whether a channels-last thin ``spec`` is depthwise with multiplier 1,
    which the channels-last kernels serve in place (Note [channels-last thin
    gradients] in kernels/direct_thin_grad.py)."""
    return (spec.channels_last and spec.in_channels_per_group == 1
            and spec.out_channels_per_group == 1)


def _thin_grad_weight_channels_last_work(spec):
    # a loop along a block of channels per (output pixel, tap, block)
    (_, OH, OW), (_, KH, KW) = spec.output_size3, spec.kernel_size3
    block, _ = direct_layouts.channels_last_grad_weight_split(spec.batch, spec.in_channels, OH)
    loops = spec.batch * OH * OW * KH * KW * -(-spec.in_channels // block)
    return loops * block + THIN_LOOP * loops


def _thin_transposed_channels_last_work(spec):
    # per output pixel, its phase's taps along the channels, and each tap
    # looked up (Note [channels-last thin gradients])
    axes = transposed_axes(spec)
    taps = sum(Qh * Qw * len(th) * len(tw) for Qh, th in axes[0][0] for Qw, tw in axes[1][0])
    return spec.batch * taps * (spec.in_channels + THIN_TAP)


#: Work units of the thin gradients beyond their multiply-adds: an element
#: copied (a split or copy into their buffers, an output woven into
#: place), one pass over a band per output (the weight gradient reading its
#: output gradient again, the transposed kernel loading and storing its
#: accumulators) beyond its taps, and the fixed cost of a plane (an
#: (image, output channel, input channel) triple: loop set-up, the short
#: loops' remainders, the sums' checks).  Least squares over 30 weight and
#: 13 input gradients of depthwise and grouped layers (one thread) gave 4.1
#: (input gradients: 2.7) and 4.9 (4.7) thousand; a pass of the weight
#: gradient 1.0, taken as 2 with a set of large and wide kernels added
#: (31x31 on 512x512, 63 taps in 1-D: 1.0-1.3x their time rather than
#: 0.95-1.0x, so that fft keeps the large kernels it runs faster than this
#: on two threads); with these, the path constants estimate those layers
#: within 0.36-1.3x, the farthest the batch-8 112x112 layers, which wait on
#: memory (docs/results-backward.md, "Depthwise gradients").
THIN_COPY = 4.0
THIN_PASS = 2.0
THIN_PLANE = 5000.0
#: The same for the channels-last kernels (Note [channels-last thin
#: gradients]): a weight-gradient loop along a block of channels, and an
#: input-gradient tap looked up for one output pixel.  Least squares over
#: 21 and 10 depthwise layers (one thread) gave 62 and 93; with 64 and 96
#: the path constants estimate them within 0.5-1.2x and 0.7-1.4x
#: (docs/results-backward.md, "Depthwise gradients").
THIN_LOOP = 64.0
THIN_TAP = 96.0


#: The cost-model paths of the four loop orders, of the thin gradients and
#: of the phase and weight-gradient plans, with the constants shipped
#: (fitted by ``numbaconv calibrate`` on the development machine:
#: docs/choosing.md).
PATHS = (
    costs.PathModel("direct:channels_last", 2.077e-11, work=_channels_last_work),
    costs.PathModel("direct:planes", 2.140e-10, work=_planes_work),
    costs.PathModel("direct:phase_planes", 5.341e-11, work=_phase_planes_work),
    costs.PathModel("direct:thin_channels_last", 1.366e-10, work=_thin_channels_last_work),
    costs.PathModel("direct:thin_grad_weight", 2.86e-11, work=_thin_grad_weight_work),
    costs.PathModel("direct:thin_transposed", 3.24e-11, work=_thin_transposed_work),
    costs.PathModel("direct:thin_grad_weight_cl", 1.017e-10,
                    work=_thin_grad_weight_channels_last_work),
    costs.PathModel("direct:thin_transposed_cl", 8.49e-11,
                    work=_thin_transposed_channels_last_work),
) + composite_paths("direct", phases=2.905e+00, rewrite=2.159e+00)


def _work(path, spec):
    """Units of work of one of this algorithm's paths on ``spec``."""
    return _WORK[path](spec)


_WORK = {m.path: m.work for m in PATHS if m.work is not None}


LOOP_ORDERS = ("channels_last", "planes", "phase_planes", "thin_channels_last")


@functools.lru_cache(maxsize=1024)
def why_not_phase_planes(spec):
    """Why Note [phase planes] does not serve ``spec``, or ``None`` if it does:
    it needs a zero-padded 1-D or 2-D problem (no input dilation: the phases
    are those of the input itself) with non-negative padding, an input width
    ``W`` that is a multiple of the stride ``sw`` and an output at most ``W /
    sw`` wide, and no column shift of a tap beyond a whole phase row."""
    reasons = []
    if spec.padding_mode != "zeros":
        reasons.append(f"padding_mode={spec.padding_mode!r}")
    if spec.ndim >= 3:
        reasons.append(f"{spec.ndim}-D")
    if spec.has_input_dilation:
        reasons.append("input dilation")
    (pad_h, _), (pad_w, _) = spec.padding3[1], spec.padding3[2]
    if pad_h < 0 or pad_w < 0:
        reasons.append(f"negative padding {spec.padding}")
    W, OW, sw = spec.input_size3[2], spec.output_size3[2], spec.stride3[2]
    if W % sw:
        reasons.append(f"input width {W} not a multiple of the stride {sw}")
    elif OW > W // sw:
        reasons.append(f"output width {OW} over input width / stride {W // sw}")
    elif max(pad_w, spec.dilation3[2] * (spec.kernel_size3[2] - 1) - pad_w) > W:
        reasons.append(f"padding {spec.padding} wider than the input")
    return ", ".join(reasons) or None


def serves_phase_planes(spec):
    """Whether the ``phase_planes`` loop order serves ``spec`` (:func:`why_not_phase_planes`)."""
    return why_not_phase_planes(spec) is None


def choose_loop_order(spec):
    """The loop order of the direct algorithm for ``spec`` (module docstring)."""
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    reduction = cin_g * math.prod(spec.kernel_size)
    channels_last = cin_g >= 8 or (reduction >= MIN_CHANNELS_LAST_REDUCTION
                                   and cout_g >= direct_layouts.CHANNEL_BLOCK)
    if channels_last and serves_phase_planes(spec):
        # Note [few channels]: the cheaper of the two by the cost models
        return min(("channels_last", "phase_planes"), key=lambda order: _model_cost(order, spec))
    if channels_last:
        return "channels_last"
    if serves_phase_planes(spec):
        return "phase_planes"
    thin = (cin_g == 1 and spec.groups >= 8 and spec.ndim == 2
            and math.prod(spec.padded_size) <= THIN_MAX_PLANE)
    return "thin_channels_last" if thin else "planes"


def _model_cost(loop_order, spec):
    """The cost model's time of ``loop_order`` on ``spec``, on any one thread
    count (both loop orders split the same jobs, so the thread count, which
    must not change a result's bits, does not enter the choice).

    Note [few channels]
    ~~~~~~~~~~~~~~~~~~~
    With few channels the channels-last kernel's patch rows are short and
    its packing and horizontal sums dominate, while the phase-planes kernel
    (one long multiply-add pass per tap, Note [phase planes]) runs as fast as
    on a depthwise layer: 4 -> 4 channels, 3x3 on 256x256, took 2.4 ms
    channels-last against 0.34 ms.  With many channels (the stem included)
    it is the other way round, so where both serve, the two cost models
    decide (docs/results-direct.md, "Few channels").
    """
    path = f"direct:{loop_order}"
    return costs.constants()[path] * _work(path, spec)


def _phase_plane_geometry(spec):
    """The arguments of the phase-planes layout functions for ``spec``:
    ``(form, H, W, OH, OW, KH, KW, pad_h, pad_w, sh, sw, dh, dw)``."""
    (_, H, W), (_, OH, OW) = spec.input_size3, spec.output_size3
    _, KH, KW = spec.kernel_size3
    form = direct_layouts.default_phase_plane_form((KH, KW), spec.stride3, spec.dilation3)
    return (form, H, W, OH, OW, KH, KW, spec.padding3[1][0], spec.padding3[2][0],
            *spec.stride3[1:], *spec.dilation3[1:])


@functools.lru_cache(maxsize=1024)
def plane_band_rows(spec, ctx):
    """Output rows per band of the phase-planes kernel: a thread's scratch
    at most ``direct_layouts.BAND_BYTES`` and its share of ``ctx``'s workspace
    limit (Note [plane bands] in kernels/direct_layouts.py).  Remembered: every
    call asks, and working it out took 3-4 of a small call's 25 us
    (docs/results-classes.md, "Python per call")."""
    budget = min(ctx.workspace_limit // max(ctx.threads, 1), direct_layouts.BAND_BYTES)
    return direct_layouts.phase_plane_band_rows(*_phase_plane_geometry(spec),
                                                budget // spec.compute_dtype.itemsize)


def scratch_values(spec, loop_order, band_rows=None):
    """Values of scratch one thread of the direct kernels allocates for
    ``spec`` in ``loop_order`` (the phase planes in bands of ``band_rows``
    output rows): its plan's workspace per thread, which the workspace limit
    bounds as it does every algorithm's.  Every chunk of jobs allocates it
    once."""
    _, _, OW = spec.output_size3
    KD, KH, KW = spec.kernel_size3
    cin_g = spec.in_channels_per_group
    if loop_order == "phase_planes":
        return direct_layouts.phase_planes_scratch(*_phase_plane_geometry(spec), band_rows)
    if loop_order == "planes":
        return cin_g * math.prod(spec.padded_size3)
    if loop_order == "thin_channels_last":
        return OW * spec.in_channels
    return direct_layouts.PATCH_PIXELS * KD * KH * KW * cin_g


def direct_forward(spec, x, weight, epilogue, out, loop_order=None, ctx=None):
    """Run the direct algorithm on canonical 3-D arrays (see the registry).

    ``loop_order`` forces one of :data:`LOOP_ORDERS` (the tests run every
    case through each); by default :func:`choose_loop_order` decides.  The
    channels-last and planes loop orders gather through the padding maps and
    so also serve an input-dilated spec directly, paying for its zeros (the
    algorithm's ``run`` takes the phases instead; the tests use this as a
    second formulation).
    """
    if loop_order is None:
        loop_order = choose_loop_order(spec)
    elif loop_order not in LOOP_ORDERS:
        raise ValueError(f"loop_order must be one of {LOOP_ORDERS}, got {loop_order!r}")
    elif loop_order == "phase_planes" and not serves_phase_planes(spec):
        raise ValueError(f"loop_order='phase_planes' does not serve this spec: "
                         f"{why_not_phase_planes(spec)}")
    if out.size == 0:
        return out
    ctx = current_context() if ctx is None else ctx
    threads = ctx.threads
    bias = epilogue.bias            # zero-length: none (Note [no bias] in kernels/__init__.py)
    finish = epilogue.kernel_args(out.dtype)    # the rest, applied per block: Note [epilogue]
    stride, dilation = spec.stride3, spec.dilation3

    if loop_order == "phase_planes":
        direct_phase_planes.conv_phase_planes(x, weight, bias, out, spec.groups,
                                              spec.padding3[1][0], spec.padding3[2][0], stride,
                                              dilation, threads,
                                              band_rows=plane_band_rows(spec, ctx),
                                              finish=finish)
        return out
    map_d, map_h, map_w = padding_maps(spec)
    if loop_order == "planes":
        direct_planes.conv_planes(x, map_d, map_h, map_w, weight, bias, out, spec.groups, stride,
                                  dilation, threads, finish)
        return out
    if loop_order == "thin_channels_last" and spec.in_channels_per_group != 1:
        raise ValueError("loop_order='thin_channels_last' serves one input channel per group")

    n, c = x.shape[:2]
    packed = scratch((n,) + spec.padded_size3 + (c,), x.dtype)
    direct_pack.pack_channels_last(x, map_d, map_h, map_w, packed, threads)
    if loop_order == "thin_channels_last":
        # (C * m, 1, KD, KH, KW) -> (m, KD, KH, KW, C): output channel c*m + j
        m = spec.out_channels_per_group
        wt = contiguous(weight.reshape((c, m) + weight.shape[2:])
                                  .transpose(1, 2, 3, 4, 0))
        direct_channels_last.conv_thin_channels_last(packed, wt, bias, out, m, spec.kernel_size3,
                                                     stride, dilation, threads, finish)
        return out
    # (C_out, C_in_g, KD, KH, KW) -> (C_out, KD * KH * KW * C_in_g), the order
    # of the patch rows built by the kernel
    weight_cl = contiguous(weight.transpose(0, 2, 3, 4, 1)).reshape(weight.shape[0], -1)
    direct_channels_last.conv_channels_last(packed, weight_cl, bias, out, spec.kernel_size3,
                                            spec.groups, stride, dilation, threads, finish)
    return out


def with_weight_copy(plan, spec, loop_order):
    """``plan`` with the price of the weight copy its loop order makes.

    The channels-last loop order multiplies a copy of the weight with the
    input channels moved last, made on every call (1 ns per float32 value,
    as a packing copy: PACK_SECONDS_PER_BYTE).  The kernels' models did not
    see it, which made ``"auto"`` pick direct for layers whose weight
    outweighs the work: pix2pix's 512-channel 4x4 layer on a 4x4 map took
    4.2 ms against im2col's 1.3 (docs/results-direct.md, "Heavy weights")."""
    taps = math.prod(spec.kernel_size)
    if loop_order != "channels_last" or taps == 1 or spec.in_channels_per_group == 1:
        return plan                     # a view of the weight, or no copy
    return replace(plan, seconds=plan.seconds + PACK_SECONDS_PER_BYTE * weight_bytes(spec))


#: The loop orders of a channels-last spec (Note [native channels-last] in
#: kernels/direct_channels_last_native.py).
CHANNELS_LAST_LOOP_ORDERS = ("channels_last", "thin_channels_last")


def choose_loop_order_channels_last(spec):
    """The loop order of a channels-last spec: ``"thin_channels_last"`` for one
    input channel per group and at least 8 groups (depthwise: vectorised over
    channels, Note [thin channels-last]), else ``"channels_last"``."""
    thin = spec.in_channels_per_group == 1 and spec.groups >= 8
    return "thin_channels_last" if thin else "channels_last"


def _channels_last_native_work(spec):
    # the canonical patch-row work less the pack (the rows are read from the
    # unpadded input: Note [native channels-last])
    n = spec.batch
    return _channels_last_work(spec) - 4.0 * n * spec.in_channels * math.prod(spec.padded_size)


def _thin_channels_last_native_work(spec):
    # the canonical thin work less the pack
    n = spec.batch
    return (_thin_channels_last_work(spec)
            - 4.0 * n * spec.in_channels * math.prod(spec.padded_size))


#: loop order -> (cost-model path, work of a channels-last spec)
_NATIVE_WORK = {"channels_last": ("direct:channels_last", _channels_last_native_work),
                "thin_channels_last": ("direct:thin_channels_last",
                                       _thin_channels_last_native_work)}


def direct_forward_channels_last(spec, x, weight, epilogue, out, loop_order=None, ctx=None):
    """Run the direct algorithm on channels-last arrays: ``x`` ``(N, D, H, W,
    C)`` and ``out`` ``(N, OD, OH, OW, C_out)``, C-contiguous, read and
    written in place; ``weight`` canonical (Note [native channels-last] in
    kernels/direct_channels_last_native.py).  ``loop_order``: one of
    :data:`CHANNELS_LAST_LOOP_ORDERS` (default
    :func:`choose_loop_order_channels_last`).  The kernels apply the whole
    epilogue."""
    if loop_order is None:
        loop_order = choose_loop_order_channels_last(spec)
    elif loop_order not in CHANNELS_LAST_LOOP_ORDERS:
        raise ValueError(f"loop_order of a channels_last spec must be one of "
                         f"{CHANNELS_LAST_LOOP_ORDERS}, got {loop_order!r}")
    if loop_order == "thin_channels_last" and spec.in_channels_per_group != 1:
        raise ValueError("loop_order='thin_channels_last' serves one input channel per group")
    if out.size == 0:
        return out
    ctx = current_context() if ctx is None else ctx
    code, slope, residual = epilogue.kernel_args(out.dtype)
    maps = padding_maps(spec)
    if loop_order == "thin_channels_last":
        # (C * m, 1, KD, KH, KW) -> (m, KD, KH, KW, C): output channel c*m + j
        c, m = spec.in_channels, spec.out_channels_per_group
        wt = contiguous(weight.reshape((c, m) + weight.shape[2:])
                                  .transpose(1, 2, 3, 4, 0))
        direct_channels_last_native.conv_thin_channels_last_native(
            x, *maps, wt, epilogue.bias, out, m, spec.kernel_size3, spec.stride3,
            spec.dilation3, code, slope, residual, ctx.threads)
        return out
    weight_cl = contiguous(weight.transpose(0, 2, 3, 4, 1)).reshape(weight.shape[0], -1)
    direct_channels_last_native.conv_channels_last_native(
        x, *maps, weight_cl, epilogue.bias, out, spec.kernel_size3, spec.groups, spec.stride3,
        spec.dilation3, spec.padding3[2][0], code, slope, residual, ctx.threads)
    return out


class DirectAlgorithm(ConvAlgorithm):
    """Direct convolution; serves every valid forward spec on the CPU."""

    name = "direct"
    paths = PATHS
    #: docs/semantics.md, "Accuracy"
    measured_error_eps = 4.8
    transforms_values = False
    fuses_epilogue = True
    #: channels-last problems run in place (Note [native channels-last]);
    #: transposed ones by the phases and weight gradients by the rewrite,
    #: both format-aware (numbaconv.rewrites), or for thin groups on
    #: canonical copies (Note [thin gradients])
    formats = ("contiguous", "channels_last")

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        if spec.memory_format == "channels_last":
            return direct_forward_channels_last(spec, x, weight, epilogue, out,
                                                loop_order=detail, ctx=ctx)
        return direct_forward(spec, x, weight, epilogue, out, loop_order=detail, ctx=ctx)

    def plan_forward(self, spec, ctx):
        if spec.memory_format == "channels_last":
            loop_order = choose_loop_order_channels_last(spec)
            model, work = _NATIVE_WORK[loop_order]
            itemsize = spec.compute_dtype.itemsize
            scratch = (spec.in_channels if loop_order == "thin_channels_last"
                       else scratch_values(spec, loop_order))
            return with_weight_copy(
                costed_plan(self.name, model, work(spec), ctx, ctx.threads * scratch * itemsize,
                            f"native {loop_order}", detail=loop_order,
                            copies=weight_bytes(spec)), spec, loop_order)
        loop_order = choose_loop_order(spec)
        model = f"direct:{loop_order}"
        itemsize = spec.compute_dtype.itemsize
        packed = (spec.batch * spec.in_channels * math.prod(spec.padded_size3) * itemsize
                  if loop_order in ("channels_last", "thin_channels_last") else 0)
        band_rows = plane_band_rows(spec, ctx) if loop_order == "phase_planes" else None
        workspace = ctx.threads * scratch_values(spec, loop_order, band_rows) * itemsize
        path = loop_order
        if band_rows is not None and band_rows < spec.output_size3[1]:
            path = f"{loop_order} in bands of {band_rows} rows"
        return with_weight_copy(costed_plan(self.name, model, _work(model, spec), ctx, workspace,
                                            path, detail=loop_order, copies=packed),
                                spec, loop_order)

    def plan_grad_weight(self, spec, ctx):
        if why_not_thin_gradient(spec) is not None:
            return super().plan_grad_weight(spec, ctx)
        plans = [self._thin_grad_weight_plan(spec, ctx)]
        if spec.channels_last:
            plans.append(_tagged(super().plan_grad_weight(spec, ctx), "default"))
        if _native_depthwise(spec):
            block, segments = direct_layouts.channels_last_grad_weight_split(
                spec.batch, spec.in_channels, spec.output_size3[1])
            T = math.prod(spec.kernel_size)
            workspace = (ctx.threads * (T + 1) * block
                         + (segments if segments > 1 else 0) * spec.in_channels * T) \
                * spec.compute_dtype.itemsize
            path = "native thin weight gradient" + (f", {segments} segments"
                                                    if segments > 1 else "")
            plans.append(costed_plan(self.name, "direct:thin_grad_weight_cl",
                                     _thin_grad_weight_channels_last_work(spec), ctx, workspace,
                                     path, detail=("native", (block, segments))))
        # the cheapest by the cost models (Note [thin gradients]); the choice
        # depends on the constants only, not on the thread count
        return min(plans, key=lambda plan: plan.seconds)

    def _thin_grad_weight_plan(self, spec, ctx):
        layout = thin_grad_weight_layout(spec, ctx)
        band_rows, segments = layout[:2]
        (_, _, OW), (_, KH, KW) = spec.output_size3, spec.kernel_size3
        itemsize = spec.compute_dtype.itemsize
        scratch = direct_layouts.thin_grad_weight_scratch(
            spec.in_channels_per_group, spec.out_channels_per_group, OW, KH, KW,
            *spec.stride3[1:], *spec.dilation3[1:], band_rows)
        workspace = (ctx.threads * scratch + (segments if segments > 1 else 0)
                     * math.prod(spec.weight_shape)) * itemsize
        path = "thin weight gradient"
        if band_rows < spec.output_size3[1]:
            path += f" in bands of {band_rows} rows"
        if segments > 1:
            path += f", {segments} segments"
        return _thin_plan(self.name, "direct:thin_grad_weight", spec, ctx, workspace, path,
                          ("thin", layout))

    def run_grad_weight(self, spec, x, grad_output, out, ctx, detail=None):
        if why_not_thin_gradient(spec) is not None:
            return super().run_grad_weight(spec, x, grad_output, out, ctx, detail)
        if detail is None:
            detail = self.plan_grad_weight(spec, ctx).detail
        kind, parameters = detail
        if kind == "default":
            return super().run_grad_weight(spec, x, grad_output, out, ctx, parameters)
        pads = (spec.padding3[1][0], spec.padding3[2][0])
        if kind == "native":
            return direct_thin_grad.grad_weight_channels_last(
                x.reshape(spec.run_input_shape), grad_output.reshape(spec.run_output_shape), out,
                *pads, spec.stride3, spec.dilation3, *parameters, ctx.threads)
        if spec.channels_last:                  # the kernel reads planes: canonical copies
            x, grad_output = (channels_first_copy(a, ctx.threads) for a in (x, grad_output))
        return direct_thin_grad.grad_weight_thin(x, grad_output, out, spec.groups, *pads,
                                                 spec.stride3, spec.dilation3, parameters,
                                                 ctx.threads)

    def plan_input_dilated(self, spec, ctx):
        if why_not_thin_gradient(spec) is not None:
            return super().plan_input_dilated(spec, ctx)
        band_rows = thin_transposed_band_rows(spec, ctx)
        axes = transposed_axes(spec)
        scratch = direct_layouts.thin_transposed_scratch(
            spec.in_channels_per_group, spec.input_dilation3[2], axes, band_rows)
        workspace = ctx.threads * scratch * spec.compute_dtype.itemsize
        path = "thin transposed phases"
        if band_rows < max(Q for Q, _ in axes[0][0]):
            path += f" in bands of {band_rows} phase rows"
        plans = [_thin_plan(self.name, "direct:thin_transposed", spec, ctx, workspace, path,
                            ("thin", band_rows))]
        if spec.channels_last:
            plans.append(_tagged(super().plan_input_dilated(spec, ctx), "default"))
        if _native_depthwise(spec):
            plans.append(costed_plan(
                self.name, "direct:thin_transposed_cl", _thin_transposed_channels_last_work(spec),
                ctx, ctx.threads * 2 * math.prod(spec.kernel_size) * 8,
                "native thin transposed phases", detail=("native", None)))
        return min(plans, key=lambda plan: plan.seconds)

    def run_input_dilated(self, spec, x, weight, epilogue, out, ctx, detail=None):
        if why_not_thin_gradient(spec) is not None:
            return super().run_input_dilated(spec, x, weight, epilogue, out, ctx, detail)
        if detail is None:
            detail = self.plan_input_dilated(spec, ctx).detail
        kind, parameters = detail
        if kind == "default":
            return super().run_input_dilated(spec, x, weight, epilogue, out, ctx, parameters)
        axes = transposed_axes(spec)
        finish = epilogue.kernel_args(out.dtype)
        if kind == "native":
            # (C, 1, 1, KH, KW) -> (KH * KW, C): each tap's row along the channels
            wt = contiguous(weight.reshape(spec.out_channels, -1).T)
            return direct_thin_grad.transposed_channels_last(
                x.reshape(spec.run_input_shape), wt, epilogue.bias,
                out.reshape(spec.run_output_shape), axes, spec.kernel_size3[2], ctx.threads,
                finish)
        if not spec.channels_last:
            return direct_thin_grad.transposed_thin(x, weight, epilogue.bias, out, spec.groups,
                                                    axes, parameters, ctx.threads, finish)
        # the kernel reads planes: canonical copies, the residual with them
        # so that the kernel applies the whole epilogue
        result = scratch((spec.batch, spec.out_channels) + spec.output_size3, out.dtype)
        if epilogue.residual is not None:
            epilogue = replace(epilogue, residual=channels_first_copy(epilogue.residual,
                                                                      ctx.threads))
        direct_thin_grad.transposed_thin(channels_first_copy(x, ctx.threads), weight,
                                         epilogue.bias, result, spec.groups, axes, parameters,
                                         ctx.threads, epilogue.kernel_args(out.dtype))
        return copy_to_channels_last(result, out, ctx.threads)


def _tagged(plan, kind):
    """``plan`` with its detail tagged by ``kind`` (the thin gradients' run
    methods read which of their plans won)."""
    return replace(plan, detail=(kind, plan.detail))


def _thin_plan(name, model, spec, ctx, workspace, path, detail):
    """The plan of a thin gradient: its path's estimate, plus the canonical
    copies of a channels-last spec's arrays (the input and output, or input
    and output gradient), costed as packing is (Note [packing])."""
    copies = 0
    if spec.channels_last:
        copies = spec.batch * (spec.in_channels * math.prod(spec.input_size)
                               + spec.out_channels * math.prod(spec.output_size)) \
            * spec.compute_dtype.itemsize
        path += ", on canonical copies"
    plan = costed_plan(name, model, _work(model, spec), ctx, workspace, path, detail=detail,
                       copies=copies)
    return replace(plan, seconds=plan.seconds + PACK_SECONDS_PER_BYTE * copies)


DIRECT = register(DirectAlgorithm())
