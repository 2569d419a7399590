"""Rewrites: transposed convolution and both gradients as forward problems.

Everything here turns one problem into other problems the algorithms
already serve (Note [one general convolution] in :mod:`numbaconv.spec`):

* :func:`transposed_weight` -- the weight of a transposed convolution (or of
  an input gradient) as the weight of the equivalent forward convolution over
  the input-dilated input: flipped along every spatial axis, with input and
  output channels swapped inside each group.  :class:`TransposedWeight`
  defers that copy to the algorithms that need it (Note [transposed
  weight]).
* :func:`run_by_phases` -- Note [phases]: a forward problem with input
  dilation ``L`` as ``prod(L)`` stride-1 problems without it.
* :func:`grad_weight_as_forward` -- Note [weight gradient as a
  convolution]: the weight gradient as one grouped forward convolution in
  which the batch is the reduction axis.
* :func:`crop_negative_padding` -- a negative padding (a crop, which the
  rewrites produce) as a slice of the input.

All functions work on the canonical 3-D arrays of
:mod:`numbaconv.algorithms.registry` and take the algorithm's own ``run`` to
compute the pieces, so each algorithm serves the new problems with its own
kernels and no kernel needs to know that it serves a transposed problem.
For a channels-last spec (Note [memory format] in :mod:`numbaconv.spec`:
an algorithm that declares the format) the input, output and residual are
``(N, D, H, W, C)`` arrays: the crops and phases slice their spatial axes
and keep the format, and the weight-gradient rewrite reads them into its
(contiguous) sub-problems' copies.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np

from .epilogue import Epilogue
from .spec import general_spec
from .workspaces import contiguous, frame, scratch


def spatial_index(spec, window):
    """``window`` (an index of the canonical ``(N, C, D, H, W)`` axes) as an
    index of the arrays ``spec`` runs on (``(N, D, H, W, C)`` channels-last)."""
    if not spec.channels_last:
        return window
    return (window[0],) + tuple(window[2:]) + (window[1],)


def fill_epilogue(spec, epilogue, out):
    """``epilogue.fill(out)`` on an output in ``spec``'s format: the fill
    broadcasts the bias along the channel axis of a canonical array, so a
    channels-last output (and its residual) is filled through its logical
    ``(N, C, ...)`` view."""
    if not spec.channels_last:
        return epilogue.fill(out)
    if epilogue.residual is not None:
        epilogue = replace(epilogue, residual=np.moveaxis(epilogue.residual, -1, 1))
    epilogue.fill(np.moveaxis(out, -1, 1))
    return out


def transposed_weight(weight, groups, transpose=None):
    """(C_in, C_out/groups, k...) of a transposed convolution -> the forward
    weight (C_out, C_in/groups, k...) flipped along every spatial axis.

    ``w'[g*cout_g + o, i, k] = w[g*cin_g + i, o, K - 1 - k]`` (a scratch
    copy, Note [workspace arena] in :mod:`numbaconv.workspaces`; the weight
    is small next to the data).  ``transpose``, when given, copies a 1x1
    weight: ``(B, R, C)`` matrices to a C-contiguous ``(B, C, R)``
    (the host backend's blocked transposes: NumPy's transposing copy of a
    512 x 1024 float32 weight took 3.8 ms, a power-of-two row pitch read
    through one cache set, against 0.24 ms; docs/results-im2col.md,
    "Transposed 1x1 weights")."""
    cin, cout_g = weight.shape[:2]
    kernel = weight.shape[2:]
    if transpose is not None and math.prod(kernel) == 1:
        matrices = transpose(weight.reshape(groups, cin // groups, cout_g))
        return matrices.reshape((groups * cout_g, cin // groups) + kernel)
    w = weight.reshape((groups, cin // groups, cout_g) + kernel).swapaxes(1, 2)
    w = w[(Ellipsis,) + (slice(None, None, -1),) * len(kernel)]
    return contiguous(w).reshape((groups * cout_g, cin // groups) + kernel)


# ---------------------------------------------------------------------------
# Note [transposed weight]
# ---------------------------------------------------------------------------
# The weight of a transposed convolution (or of a strided layer's input
# gradient) reaches the algorithms as a TransposedWeight: the weight as the
# caller gave it, (C_in, C_out/groups, KD, KH, KW) in the canonical 3-D form
# and the compute dtype, with the rewritten forward weight of
# transposed_weight made on first use.  ConvAlgorithm.run (the registry)
# hands an algorithm the rewritten array unless it says it reads the given
# one (reads_transposed_weight): im2col's transposed paths multiply by the
# given weight as it is stored, a GEMM with A transposed (Note [transposed
# GEMM] in numbaconv/kernels/im2col_transposed.py), so no copy of the
# weight is made at all.  The rewrite is a full, flipping copy of the
# weight, and for the small maps of generator and decoder layers the weight
# is most of the data: pix2pix's up8 (512 -> 512, 4x4, from a 1x1 map) has a
# 16 MiB weight and 512 input values; its rewrite took 5 ms, im2col's
# reordering copy 3 ms more, against PyTorch's 3.2 ms for the whole layer
# (docs/results-transposed.md).


class TransposedWeight:
    """A transposed convolution's weight as given, rewritten on first use
    (Note [transposed weight]).

    ``given`` is ``(C_in, C_out/groups, KD, KH, KW)``, C-contiguous, in the
    compute dtype; :meth:`rewritten` is :func:`transposed_weight` of it, the
    canonical forward weight ``(C_out, C_in/groups, KD, KH, KW)`` of the
    spec (made once, then kept)."""

    __slots__ = ("given", "groups", "transpose", "_rewritten")

    def __init__(self, given, groups, transpose=None):
        self.given = given
        self.groups = groups
        self.transpose = transpose      # for transposed_weight
        self._rewritten = None

    @property
    def shape(self):
        """The rewritten weight's shape (the spec's ``weight_shape3``)."""
        cin, cout_g = self.given.shape[:2]
        return (cout_g * self.groups, cin // self.groups) + self.given.shape[2:]

    def rewritten(self):
        if self._rewritten is None:
            self._rewritten = transposed_weight(self.given, self.groups, self.transpose)
        return self._rewritten


def rewritten_weight(weight):
    """The canonical forward weight: ``weight`` itself, or a
    :class:`TransposedWeight`'s rewritten one."""
    return weight.rewritten() if isinstance(weight, TransposedWeight) else weight


def given_weight(weight, groups):
    """The transposed convolution's weight as given, ``(C_in, C_out/groups,
    KD, KH, KW)``: a :class:`TransposedWeight`'s (no copy), or recovered from
    a rewritten canonical ``weight`` by :func:`transposed_weight`, which is
    its own inverse (a copy: callers that time or calibrate an algorithm on
    synthetic arrays pass the rewritten form)."""
    if isinstance(weight, TransposedWeight):
        return weight.given
    return transposed_weight(weight, groups)


def _crop(spec):
    """``(cropped spec, input window)`` of a spec with negative padding, or
    ``(None, None)`` when the crop leaves no input element."""
    lead = 3 - spec.ndim
    sizes, pads, window = [], [], [slice(None)] * 2 + [slice(None)] * lead
    for n, (lo, hi) in zip(spec.input_size, spec.padding):
        start, stop = max(0, -lo), n - max(0, -hi)
        if stop <= start:
            return None, None
        sizes.append(stop - start)
        pads.append((max(lo, 0), max(hi, 0)))
        window.append(slice(start, stop))
    return replace(spec, input_size=tuple(sizes), padding=tuple(pads)), tuple(window)


def cropped_spec(spec):
    """The spec :func:`crop_negative_padding` runs (``None``: bias only)."""
    if all(lo >= 0 and hi >= 0 for lo, hi in spec.padding):
        return spec
    return _crop(spec)[0]


def crop_negative_padding(spec, x):
    """``(spec, x)`` with negative paddings of a spec without input dilation
    turned into a slice of the input (a C-contiguous scratch copy), or ``(spec,
    None)`` when the crop leaves no input element (the output is the bias)."""
    if all(lo >= 0 and hi >= 0 for lo, hi in spec.padding):
        return spec, x
    assert not spec.has_input_dilation
    cropped, window = _crop(spec)
    if cropped is None:
        return spec, None
    return cropped, contiguous(x[spatial_index(spec, window)])


# ---------------------------------------------------------------------------
# Note [phases]
# ---------------------------------------------------------------------------
# Along an axis with input dilation L (kernel dilation d, padding ``lo``
# before), output j reads the dilated, padded input at j + k*d, which is an
# input element only when (j + k*d - lo) is a multiple of L.  So the outputs
# j = rho + q*L of one *phase* rho (0 <= rho < L) use only the taps k with
# (rho + k*d - lo) % L == 0, reading input q + c_k with c_k = (rho + k*d - lo)
# / L.  Those taps are every L/gcd(L, d)-th, and c_k grows by d/gcd(L, d)
# between them: each phase is an ordinary stride-1 convolution of the
# undilated input with a sub-kernel of the taps, kernel dilation d/gcd(L, d)
# and padding -c_first (negative: a crop), written to every L-th output.
# prod(L) phases together do exactly the products with input elements: none
# of the zeros are paid for.  A phase without taps (kernel smaller than L)
# is the bias alone.


def _axis_phases(n, K, d, L, lo, O):
    """Per phase rho of one axis: (rho, Q, taps, sub_dilation, (lo', hi'))
    with ``taps`` None when the phase reads no input element."""
    phases = []
    for rho in range(min(L, O)):
        Q = -(-(O - rho) // L)
        taps = [k for k in range(K) if (rho + k * d - lo) % L == 0]
        if not taps:
            phases.append((rho, Q, None, 1, None))
            continue
        c0 = (rho + taps[0] * d - lo) // L
        sub_d = d // math.gcd(L, d)
        lo_sub = -c0
        hi_sub = Q - n + c0 + sub_d * (len(taps) - 1)
        phases.append((rho, Q, taps, sub_d, (lo_sub, hi_sub)))
    return phases


def phase_problems(spec):
    """The phases of an input-dilated spec (Note [phases]): a list of
    ``(window, taps, sub_spec)`` with ``window`` the output slice of the
    phase, ``taps`` the kernel taps per canonical axis and ``sub_spec`` the
    stride-1 problem (``None`` when the phase reads no input: bias only)."""
    axes = [_axis_phases(n, K, d, L, lo, O) for n, K, d, L, (lo, _), O in zip(
        spec.input_size3, spec.kernel_size3, spec.dilation3, spec.input_dilation3,
        spec.padding3, spec.output_size3)]
    lead = 3 - spec.ndim
    problems = []
    for combo in itertools.product(*axes):
        window = (slice(None), slice(None)) + tuple(slice(p[0], None, L) for p, L in
                                                    zip(combo, spec.input_dilation3))
        if any(p[2] is None for p in combo):
            problems.append((window, None, None))
            continue
        taps = tuple(p[2] for p in combo)
        sub = general_spec(
            spec.op, spec.ndim, spec.batch, spec.in_channels, spec.out_channels, spec.groups,
            spec.input_size, tuple(len(t) for t in taps[lead:]),
            dilation=tuple(p[3] for p in combo[lead:]),
            padding=tuple(p[4] for p in combo[lead:]), dtype=spec.dtype,
            has_bias=spec.has_bias, memory_format=spec.memory_format)
        problems.append((window, taps, sub))
    return problems


def _tap_slice(taps):
    """The slice of an axis's taps (an arithmetic progression)."""
    step = taps[1] - taps[0] if len(taps) > 1 else 1
    assert list(taps) == list(range(taps[0], taps[-1] + 1, step)), taps
    return slice(taps[0], taps[-1] + 1, step)


def run_by_phases(spec, x, weight, epilogue, out, run):
    """Compute an input-dilated forward problem as its stride-1 phases
    (Note [phases]), each by ``run(sub_spec, x, sub_weight, epilogue,
    sub_out)``; a phase that reads no input gets ``epilogue.fill``.

    Each phase's result is computed into a buffer of its size (at most the
    output over ``prod(L)``) and copied into every L-th output element.
    """
    assert spec.computation == "forward" and all(s == 1 for s in spec.stride)
    for window, taps, sub in phase_problems(spec):
        window = spatial_index(spec, window)
        target = out[window]
        part = epilogue.window(window)
        if sub is None:
            fill_epilogue(spec, part, target)
            continue
        with frame():       # each phase's scratch is the next one's
            # the taps are every L/gcd(L, d)-th: a strided slice (NumPy's ix_
            # gather took 100 ms of a 16 MiB weight, the slice's copy 2 ms)
            sub_weight = contiguous(weight[(slice(None), slice(None))
                                           + tuple(_tap_slice(t) for t in taps)])
            assert sub.run_output_shape == target.shape, (sub, target.shape)
            if target.flags.c_contiguous:
                run(sub, x, sub_weight, part, target)
            else:
                result = scratch(target.shape, out.dtype)
                run(sub, x, sub_weight, part, result)
                target[...] = result
    return out


# ---------------------------------------------------------------------------
# Note [weight gradient as a convolution]
# ---------------------------------------------------------------------------
# grad_w[g, o, i, k] = sum_{n, p} grad_out[n, g, o, p] * xpad[n, g, i, p*s + k*d]
# (g the group, o / i the channel inside it, p an output position).  Read
# with the input channel i as the batch, (g, n) as the input channels, (g, o)
# as the output channels and the output gradient as a kernel spanning the
# output, this is one grouped forward convolution: groups G, kernel
# dilation s, stride d, the same padding, output size k.  The batch is the
# reduction axis, so the result does not depend on how threads split it.


def grad_weight_batch_chunk(spec, itemsize, limit):
    """Images per forward problem of :func:`grad_weight_as_forward`: the
    transposed copies of one chunk of input and output gradient take at most
    half the workspace limit (the algorithm's own workspace, e.g. fft's
    spectra of the output gradient, grows with the chunk too), so memory
    stays bounded however large the batch.  Depends on sizes only, never on
    the thread count."""
    per_image = (spec.in_channels * math.prod(spec.input_size)
                 + spec.out_channels * math.prod(spec.output_size)) * itemsize
    return max(1, min(spec.batch, (limit // 2) // max(1, per_image)))


def grad_weight_problem(spec, images):
    """The forward problem that computes the weight gradient of ``spec`` for
    a chunk of ``images`` images (Note [weight gradient as a convolution])."""
    G = spec.groups
    # trim the padding after each axis so that the output is exactly the
    # kernel size (input rows past the last window would add outputs)
    pads = []
    for n, o, k, s, d, (lo, hi) in zip(spec.input_size, spec.output_size, spec.kernel_size,
                                      spec.stride, spec.dilation, spec.padding):
        natural = (n + lo + hi - s * (o - 1) - 1) // d + 1
        pads.append((lo, hi - (natural - k) * d))
    sub = general_spec(spec.op, spec.ndim, spec.in_channels_per_group, G * images,
                       spec.out_channels, G, spec.input_size, spec.output_size,
                       stride=spec.dilation, dilation=spec.stride, padding=pads,
                       padding_mode=spec.padding_mode, dtype=spec.dtype)
    assert sub.output_size == spec.kernel_size, (sub, spec)
    return sub


def grad_weight_as_forward(spec, x, grad_output, out, run, limit):
    """The weight gradient of ``spec`` as forward problems (Note [weight
    gradient as a convolution]) computed by ``run``.

    ``x`` is the canonical input, ``grad_output`` the canonical output
    gradient (both ``(N, D, H, W, C)`` for a channels-last spec: the
    transposed copies read them in place of the canonical arrays, and the
    sub-problems are contiguous) and ``out`` the canonical weight gradient
    ``(C_out, C_in/groups, KD, KH, KW)``.  The batch is cut into chunks of
    :func:`grad_weight_batch_chunk` images (``limit``: the workspace limit)
    whose results are summed in order.
    """
    N, G = spec.batch, spec.groups
    cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
    out[...] = 0
    if N == 0:
        return out
    S, O = spec.input_size3, spec.output_size3
    chunk = grad_weight_batch_chunk(spec, out.dtype.itemsize, limit)
    result = scratch((cin_g, G * cout_g) + spec.kernel_size3, out.dtype)
    # the chunks' sum, in order from zero, laid out as the results (NumPy's
    # add of a transposed view into out allocated a buffer every chunk)
    total = scratch(result.shape, out.dtype, zero=True)
    if spec.channels_last:        # the logical (N, C, ...) views of the NDHWC arrays
        x, grad_output = np.moveaxis(x, -1, 1), np.moveaxis(grad_output, -1, 1)
    for n0 in range(0, N, chunk):
        nb = min(chunk, N - n0)
        with frame():       # each chunk's copies are the next one's
            xt = contiguous(x[n0:n0 + nb].reshape((nb, G, cin_g) + S)
                            .transpose(2, 1, 0, 3, 4, 5)).reshape((cin_g, G * nb) + S)
            gt = contiguous(grad_output[n0:n0 + nb].reshape((nb, G, cout_g) + O)
                            .transpose(1, 2, 0, 3, 4, 5)).reshape((G * cout_g, nb) + O)
            run(grad_weight_problem(spec, nb), xt, gt, Epilogue.of(None, out.dtype), result)
        total += result
    np.copyto(out, total.transpose(1, 0, 2, 3, 4))
    return out
