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
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..context import current_context
from ..kernels import (direct_channels_last, direct_layouts, direct_pack, direct_phase_planes,
                       direct_planes)
from ..padding import padding_maps
from .. import costs
from .registry import ConvAlgorithm, costed_plan, register

#: Shortest dot product for which the channels-last kernel is used when there
#: are few input channels per group.  Below it the patch copy and the 4x3
#: block's horizontal sums dominate.  Measured (2 threads): depthwise
#: 3x3x3 (groups=16) 44 ms channels-last vs 4.7 ms planes; groups=16 with 2
#: channels per group, 3x3: 4.7 ms channels-last, 2.0 ms planes, 0.22 ms
#: same-width planes.
MIN_CHANNELS_LAST_REDUCTION = 16

#: Largest padded plane (elements) of a 2-D layer with one input channel per
#: group that goes to Note [thin channels-last] rather than planes.  Measured
#: (2 threads, AVX-512 EPYC, 2026-11-30, interleaved medians of 15), thin
#: channels-last / planes: stride-2 depthwise 3x3 on 28x28 0.44 / 0.90 ms,
#: on 56x56 0.83 / 1.17 ms, on 112x112 4.3 / 3.5 ms (the channels-last pack
#: of a large input costs more than the planes' per-plane gather); 3-D
#: depthwise 32^3 8.7 / 5.1 ms; reflect-padded stride-1 28x28 0.15 / 0.14.
THIN_MAX_PLANE = 64 * 64

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
    on a depthwise layer.  Measured on 2 threads (AMD EPYC, 2026-11-30),
    channels-last against phase planes: 4 -> 4 channels, 3x3, 256x256: 2.4
    against 0.34 ms (PyTorch 0.46); 3 -> 8: 2.7 against 0.46; 8 -> 8 on
    128x128: 0.75 against 0.30; groups=16 with 2 -> 4 channels per group,
    56x56: 1.31 against 0.13; 3 -> 32 stride 2 on 224x224: 0.91 against
    0.70.  The stem (3 -> 64, 7x7, stride 2) is the other way round, 3.4
    against 5.3 ms, and so is every layer with many channels: the two cost
    models (their estimates were within 0.6-1.3x of those times for phase
    planes) decide between them.
    """
    path = f"direct:{loop_order}"
    return costs.constants()[path] * costs.work(path, spec)


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
    call asks, and working it out took 3-4 of a small call's 25 us."""
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


def direct_forward(spec, x, weight, bias, out, loop_order=None, ctx=None):
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
    if bias is None:
        bias = np.empty(0, dtype=out.dtype)          # Note [no bias] in kernels/__init__.py
    stride, dilation = spec.stride3, spec.dilation3

    if loop_order == "phase_planes":
        direct_phase_planes.conv_phase_planes(x, weight, bias, out, spec.groups,
                                              spec.padding3[1][0], spec.padding3[2][0], stride,
                                              dilation, threads,
                                              band_rows=plane_band_rows(spec, ctx))
        return out
    map_d, map_h, map_w = padding_maps(spec)
    if loop_order == "planes":
        direct_planes.conv_planes(x, map_d, map_h, map_w, weight, bias, out, spec.groups, stride,
                                  dilation, threads)
        return out
    if loop_order == "thin_channels_last" and spec.in_channels_per_group != 1:
        raise ValueError("loop_order='thin_channels_last' serves one input channel per group")

    n, c = x.shape[:2]
    packed = np.empty((n,) + spec.padded_size3 + (c,), dtype=x.dtype)
    direct_pack.pack_channels_last(x, map_d, map_h, map_w, packed)
    if loop_order == "thin_channels_last":
        # (C * m, 1, KD, KH, KW) -> (m, KD, KH, KW, C): output channel c*m + j
        m = spec.out_channels_per_group
        wt = np.ascontiguousarray(weight.reshape((c, m) + weight.shape[2:])
                                  .transpose(1, 2, 3, 4, 0))
        direct_channels_last.conv_thin_channels_last(packed, wt, bias, out, m, spec.kernel_size3,
                                                     stride, dilation, threads)
        return out
    # (C_out, C_in_g, KD, KH, KW) -> (C_out, KD * KH * KW * C_in_g), the order
    # of the patch rows built by the kernel
    weight_cl = np.ascontiguousarray(weight.transpose(0, 2, 3, 4, 1)).reshape(weight.shape[0], -1)
    direct_channels_last.conv_channels_last(packed, weight_cl, bias, out, spec.kernel_size3,
                                            spec.groups, stride, dilation, threads)
    return out


class DirectAlgorithm(ConvAlgorithm):
    """Direct convolution; serves every valid forward spec on the CPU."""

    name = "direct"

    def forward(self, spec, x, weight, bias, out, ctx, detail=None):
        return direct_forward(spec, x, weight, bias, out, loop_order=detail, ctx=ctx)

    def plan_forward(self, spec, ctx):
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
        return costed_plan(self.name, model, costs.work(model, spec), ctx, workspace, path,
                           detail=loop_order, copies=packed)


DIRECT = register(DirectAlgorithm())
