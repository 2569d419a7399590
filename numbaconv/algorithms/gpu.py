"""The GPU algorithms: ``direct``, ``im2col``, ``winograd``, ``winograd_f2``
and ``fft`` registered for the ``"cuda"`` device in the same table as the
CPU ones.

Importing this module does not import ``numba.cuda``: the kernels are
imported when an algorithm first plans or runs, so ``algorithm_names("cuda")``
and ``choose_algorithm(..., device="cuda")`` answer on a machine without a
GPU.  Every GPU kernel reads the padded input through the padding maps
(:mod:`numbaconv.padding`), which already express input dilation and
negative padding: unlike the CPU algorithms (Note [phases]), the GPU ones
run a transposed problem or an input gradient as one forward problem over
the zero-dilated input, and the weight gradient with its own kernels.  That
multiplies the zeros a stride inserts; on a GPU the gather is cheap, the
launch count matters, and one kernel per algorithm keeps the backend small.
So the epilogue's residual, canonical ``(N, C_out, OD, OH, OW)`` like the
output, is read by the one kernel that writes the output, at the output's
own flat index: every GPU algorithm fuses the epilogue (Note [GPU
epilogue] in :mod:`numbaconv.kernels.epilogue_cuda`).

Channels-last calls are packed by the CUDA backend, on the device, around
the algorithm (Note [GPU memory format] in :mod:`numbaconv.cuda.arrays`):
the algorithms declare the contiguous format only and run contiguous specs;
a channels-last spec's plan is the contiguous plan (its ``detail`` the
same, as the backend runs the contiguous spec with it) plus the two
transposing copies.  The registry's host packing is never used here.

Cost models (Note [cost models] in :mod:`numbaconv.costs`): the GPU paths
(``cuda:*``, declared below) have constants in seconds per multiply-add on
the whole device.  They are *not* fitted: no development session had a
GPU to fit them on, so they are what an H200's numba kernels should reach
by their design (docs/gpu.md); with tuning on, ``"auto"`` measures instead.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

from .. import costs
from ..context import current_context
from ..padding import padding_maps
from .registry import ConvAlgorithm, Plan, costed_plan, packed_bytes, register
from .winograd import TRANSFORM_WEIGHT, WINOGRAD


def _paths(*pairs):
    """GPU paths: seconds per unit on the whole device, not fitted (no GPU
    has calibrated them yet: docs/gpu.md)."""
    return tuple(costs.PathModel(path, default, per_thread=False) for path, default in pairs)


#: Seconds per byte of a device packing copy (Note [GPU memory format] in
#: numbaconv/cuda/arrays.py): each byte read and written once, at about 2 TB/s
#: together; a guess from the design, not measured on a GPU (docs/gpu.md).
DEVICE_PACK_SECONDS_PER_BYTE = 1.0e-12


class GPUAlgorithm(ConvAlgorithm):
    """Base of the GPU algorithms: plan and run on canonical device arrays."""

    device = "cuda"
    #: the GPU kernels keep their scratch in device memory, whole-batch, and
    #: are not bounded by the workspace limit yet (docs/gpu.md)
    workspace_bounded = False

    def plan(self, spec, ctx=None):
        ctx = current_context("cuda") if ctx is None else ctx
        if spec.channels_last:
            inner = self.plan(replace(spec, memory_format="contiguous"), ctx)
            copied = packed_bytes(spec)
            return replace(inner, path=f"{inner.path}, packed on the device from channels-last",
                           seconds=inner.seconds + DEVICE_PACK_SECONDS_PER_BYTE * copied,
                           copies=inner.copies + copied)
        if spec.batch == 0 or math.prod(spec.output_size) == 0:
            return Plan(self.name, "nothing to compute", 0.0)
        if spec.computation == "grad_weight":
            return self.plan_grad_weight(spec, ctx)
        return self.plan_forward(spec, ctx)

    def run(self, spec, x, weight, epilogue, out, ctx=None, plan=None):
        """As :meth:`ConvAlgorithm.run`: the same ``forward`` and
        ``run_grad_weight`` methods, on device arrays, with the call's
        stream in ``ctx``; every problem is one forward (or weight-gradient)
        problem over the padding maps (module docstring).  An algorithm
        that does not declare ``fuses_epilogue`` gets the activation and
        residual as a separate device pass after ``forward``, as the CPU
        ones do (:mod:`numbaconv.algorithms.registry`)."""
        ctx = current_context("cuda") if ctx is None else ctx
        if spec.channels_last:
            raise ValueError(
                f"the GPU {self.name} runs canonical arrays of a contiguous spec; the CUDA "
                f"backend packs channels-last calls on the device "
                f"(Note [GPU memory format] in numbaconv/cuda/arrays.py), got {spec.describe()}")
        if out.size == 0:
            return out
        detail = (plan if plan is not None else self.plan(spec, ctx)).detail
        if spec.computation == "grad_weight":
            if spec.batch == 0 or math.prod(spec.output_size) == 0:
                from ..cuda import arrays
                arrays.fill_zero(out.reshape(-1), _stream(ctx))
                return out
            self.run_grad_weight(spec, x, weight, out, ctx, detail)
        elif epilogue.fused and not self.fuses_epilogue:
            self.forward(spec, x, weight, epilogue.bias_only(), out, ctx, detail)
            from ..kernels import epilogue_cuda
            epilogue_cuda.apply_epilogue(out, epilogue.residual, epilogue.activation_code,
                                         epilogue.negative_slope, _stream(ctx))
        else:
            self.forward(spec, x, weight, epilogue, out, ctx, detail)
        return out

    def run_grad_weight(self, spec, x, grad_output, out, ctx, detail=None):
        # by default the direct reduction kernel (Note [GPU direct tiles])
        from ..kernels import direct_cuda
        direct_cuda.grad_weight(x, device_maps(spec), grad_output, out, spec.groups,
                                spec.stride3, spec.dilation3, _stream(ctx))

    def plan_grad_weight(self, spec, ctx):
        return costed_plan(self.name, "cuda:grad_reduce", spec.flops / 2, ctx, 0,
                           "block reduction per weight element", per_thread=False)


def _stream(ctx):
    return ctx.stream or 0


def _epilogue(epilogue):
    """The fused epilogue's keyword arguments of every GPU forward entry point
    (Note [GPU epilogue] in :mod:`numbaconv.kernels.epilogue_cuda`)."""
    return dict(residual=epilogue.residual, activation=epilogue.activation_code,
                negative_slope=epilogue.negative_slope)


@functools.lru_cache(maxsize=64)
def device_maps(spec):
    """The spec's padding maps on the device (small; kept per spec)."""
    from numba import cuda
    return tuple(cuda.to_device(m) for m in padding_maps(spec))


def _finite(ctx, *arrays):
    from ..cuda import arrays as dev
    return all(dev.all_finite(a, _stream(ctx)) for a in arrays if a is not None)


def _direct_instead(spec, x, weight, epilogue, out, ctx):
    """Run a transform algorithm's call with NaN or infinity on direct: a
    transform spreads them over its whole tile, direct keeps them local."""
    GPU_DIRECT.forward(spec, x, weight, epilogue, out, ctx, GPU_DIRECT.plan(spec, ctx).detail)


class GPUDirect(GPUAlgorithm):
    """Direct convolution on the GPU: shared-memory tiles of input and weight,
    several outputs per thread (Note [GPU direct tiles]); one thread per
    output where the tiles do not fit."""

    name = "direct"
    paths = _paths(("cuda:direct", 4.0e-13), ("cuda:direct_naive", 2.0e-12),
                   ("cuda:grad_reduce", 1.0e-12))
    measured_error_eps = 4.8
    transforms_values = False
    fuses_epilogue = True           # both kernels (Note [GPU epilogue])

    def plan_forward(self, spec, ctx):
        from ..kernels import direct_cuda
        tiled = direct_cuda.tiled_fits(spec.kernel_size3, spec.stride3, spec.dilation3)
        model = "cuda:direct" if tiled else "cuda:direct_naive"
        return costed_plan(self.name, model, spec.flops / 2, ctx, 0,
                           "shared-memory tiles" if tiled else "one thread per output",
                           per_thread=False, detail=tiled)

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        from ..kernels import direct_cuda
        direct_cuda.conv_forward(x, device_maps(spec), weight, epilogue.bias_or_none(), out,
                                 spec.groups, spec.stride3, spec.dilation3, _stream(ctx),
                                 tiled=bool(detail), **_epilogue(epilogue))


class GPUIm2col(GPUAlgorithm):
    """Implicit GEMM: shared-memory tiles of weight and (gathered, never
    stored) column matrix, register-blocked (Note [implicit GEMM] in
    :mod:`numbaconv.kernels.im2col_cuda`)."""

    name = "im2col"
    paths = _paths(("cuda:implicit_gemm", 2.5e-13))
    measured_error_eps = 4.8
    transforms_values = False
    fuses_epilogue = True

    def plan_forward(self, spec, ctx):
        return costed_plan(self.name, "cuda:implicit_gemm", spec.flops / 2, ctx, 0,
                           "implicit GEMM", per_thread=False)

    def plan_grad_weight(self, spec, ctx):
        return costed_plan(self.name, "cuda:implicit_gemm", spec.flops / 2, ctx, 0,
                           "implicit GEMM (weight gradient)", per_thread=False)

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        from ..kernels import im2col_cuda
        im2col_cuda.implicit_gemm_forward(x, device_maps(spec), weight, epilogue.bias_or_none(),
                                          out, spec.groups, spec.stride3, spec.dilation3,
                                          _stream(ctx), **_epilogue(epilogue))

    def run_grad_weight(self, spec, x, grad_output, out, ctx, detail=None):
        from ..kernels import im2col_cuda
        im2col_cuda.implicit_gemm_grad_weight(x, device_maps(spec), grad_output, out,
                                              spec.groups, spec.stride3, spec.dilation3,
                                              _stream(ctx))


class GPUWinograd(GPUAlgorithm):
    """F(m x m, 3 x 3) Winograd on the GPU (and its 1-D / 3-D forms):
    transform kernels and one batched transform-domain GEMM (Note [GPU
    Winograd] in :mod:`numbaconv.kernels.winograd_cuda`).  Serves what the
    CPU Winograd serves, except dilation."""

    transforms_values = True
    fuses_epilogue = True           # the output transform's store; direct for non-finite

    def __init__(self, name, m):
        self.name = name
        self.m = m
        # one shared GPU path for both tile sizes
        self.paths = _paths(("cuda:winograd", 3.0e-13), ("cuda:grad_reduce", 1.0e-12))
        self.measured_error_eps = WINOGRAD.MEASURED_ERROR_EPS[m]

    def unsupported_reason(self, spec):
        reason = WINOGRAD.unsupported_reason(spec)
        if reason is not None and reason.startswith("no loaded BLAS"):
            reason = None                          # the GPU path does not use BLAS
        if reason is None and any(d != 1 for d in spec.dilation):
            # the CPU kernels' dilation phases are not in the GPU kernels
            return f"it needs dilation 1 on the GPU, got dilation={spec.dilation}"
        return reason

    def plan_forward(self, spec, ctx):
        tiles = spec.batch * math.prod(-(-o // self.m) for o in spec.output_size)
        alpha = self.m + 2
        Q = alpha ** spec.ndim
        units = (tiles * Q * spec.groups * spec.in_channels_per_group
                 * spec.out_channels_per_group
                 + TRANSFORM_WEIGHT[spec.ndim] * tiles * Q
                 * (spec.in_channels + spec.out_channels) * alpha * spec.ndim)
        workspace = tiles * Q * (spec.in_channels + spec.out_channels) * \
            spec.compute_dtype.itemsize
        return costed_plan(self.name, "cuda:winograd", units, ctx, workspace,
                           f"F({self.m},3) transforms + batched GEMM", per_thread=False)

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        if not _finite(ctx, x, weight):
            _direct_instead(spec, x, weight, epilogue, out, ctx)
            return
        from ..cuda import arrays as dev
        from ..kernels import im2col_cuda, winograd_cuda as wc
        m, stream = self.m, _stream(ctx)
        winograd_weight = wc.device_weight(dev.to_host(weight, stream), m, spec.ndim,
                                           spec.groups, stream)
        wc.winograd_conv(x, wc.device_maps(spec, m, stream), winograd_weight,
                         wc.device_matrices(m, spec.ndim, out.dtype, stream),
                         epilogue.bias_or_none(), out, m, spec.groups, im2col_cuda.batched_gemm,
                         stream, weight_transposed=True, **_epilogue(epilogue))


class GPUFFT(GPUAlgorithm):
    """FFT convolution through CuPy's cuFFT (the ``gpu-fft`` extra)."""

    name = "fft"
    paths = _paths(("cuda:fft", 2.0e-13), ("cuda:grad_reduce", 1.0e-12))
    measured_error_eps = 1.9
    transforms_values = True
    fuses_epilogue = True           # fft_store (kernels/fft_cuda.py); direct for non-finite

    def unsupported_reason(self, spec):
        if spec.computation == "grad_weight":
            return ("the GPU fft serves forward and transposed problems and input "
                    "gradients; weight gradients run on direct or im2col")
        try:
            import cupy  # noqa: F401
        except ImportError:
            return ("the GPU fft uses CuPy's cuFFT, and CuPy is not installed "
                    "(pip install 'numbaconv[gpu-fft]')")
        return None

    def plan_forward(self, spec, ctx):
        padded = math.prod(spec.padded_size)
        transforms = spec.batch * (spec.in_channels + spec.out_channels) + \
            spec.out_channels * spec.in_channels_per_group
        units = (transforms * padded * math.log2(max(padded, 2))
                 + spec.batch * spec.out_channels * spec.in_channels_per_group * padded)
        return costed_plan(self.name, "cuda:fft", units, ctx, 0, "cuFFT of whole planes",
                           per_thread=False)

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        from ..kernels import fft_cuda
        if not _finite(ctx, x, weight):
            _direct_instead(spec, x, weight, epilogue, out, ctx)
            return
        fft_cuda.fft_forward(spec, x, weight, epilogue.bias_or_none(), out, device_maps(spec),
                             _stream(ctx), **_epilogue(epilogue))


GPU_DIRECT = register(GPUDirect())
GPU_IM2COL = register(GPUIm2col())
GPU_FFT = register(GPUFFT())
GPU_WINOGRAD = register(GPUWinograd("winograd", 4))
GPU_WINOGRAD_F2 = register(GPUWinograd("winograd_f2", 2))
