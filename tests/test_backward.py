"""Transposed convolution and both convolution gradients, through every algorithm.

What is checked, on the named problems of :mod:`tests.backward_cases` and on
hypothesis-generated ones:

* ``nc.grad.conv{N}d_input`` / ``_weight`` and ``nc.conv_transpose{N}d``
  against the float64 references of :mod:`numbaconv.reference` (written as
  scatters and explicit sums, sharing none of the rewrites), for every
  algorithm; ``direct``, ``im2col`` and ``fft`` must serve every problem,
  ``winograd``/``winograd_f2`` exactly the stride-1, 3-wide ones (any dilation);
* the adjoint identity ``<conv(x, w), g> == <x, grad_input> == <w,
  grad_weight>`` with each algorithm computing all three;
* PyTorch autograd parity of ``nc.conv_backward`` (plain and transposed);
* the direct algorithm's second formulation of input dilation (gathering
  through zero-dilated padding maps) and the fast paths' refusal of it;
* thread-count independence and the workspace limit of the weight gradient;
* ``conv_backward``'s mask, bias gradient, unbatched and transposed paths,
  and ``out=`` of ``conv_transpose``.

Tolerances follow tests/conftest.py: elementwise ``|y - ref| <= 16 eps * S``
with ``S`` the same computation on absolute values (for the input gradient
``conv_grad_input_reference(|w|, |g|)``, for the weight gradient
``conv_grad_weight_reference(|x|, |g|)``, for the transposed convolution
``conv_transpose_reference(|x|, |w|) + |b|``), 32 eps against PyTorch; for
``fft`` and ``winograd*`` the normwise bound of :func:`conftest.tolerance`
with the scale the largest magnitude any output of the computation can have
(``largest_*`` below) and the factors of :data:`conftest.NORMWISE`.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv as nc
from numbaconv import UnsupportedAlgorithmError
from numbaconv.algorithms.direct import direct_forward, serves_phase_planes
from numbaconv.epilogue import Epilogue
from numbaconv.algorithms.fft import fft_forward
from numbaconv.algorithms.im2col import im2col_forward, plan_grad_weight, same_width_fill
from numbaconv.reference import (conv_grad_input_reference, conv_grad_weight_reference,
                                 conv_reference, conv_transpose_reference)
from numbaconv.rewrites import transposed_weight
from numbaconv.spec import (conv_input_size, conv_output_size, make_grad_weight_spec,
                            make_transposed_spec)

from .backward_cases import GRAD_CASES, TRANSPOSED_CASES
from .conftest import CONV, EPS, NORMWISE, RTOL_FACTOR, torch

GRAD_INPUT = {1: nc.grad.conv1d_input, 2: nc.grad.conv2d_input, 3: nc.grad.conv3d_input}
GRAD_WEIGHT = {1: nc.grad.conv1d_weight, 2: nc.grad.conv2d_weight, 3: nc.grad.conv3d_weight}
CONV_TRANSPOSE = {1: nc.conv_transpose1d, 2: nc.conv_transpose2d, 3: nc.conv_transpose3d}

#: serve every valid problem (the brief of the rewrites): never skipped
GENERAL_ALGORITHMS = ["direct", "im2col", "fft"]
#: serve only stride-1, dilation-1, 3-wide kernels (and no weight gradient)
WINOGRAD_ALGORITHMS = ["winograd", "winograd_f2"]
ALGORITHMS = GENERAL_ALGORITHMS + WINOGRAD_ALGORITHMS
DTYPES = [np.float32, np.float64]
F16_EPS = float(np.finfo(np.float16).eps)

#: test_conv.py runs 300 examples shared by the three general algorithms;
#: each hypothesis test here runs a third of that (100 by default), and
#: NUMBACONV_HYPOTHESIS_EXAMPLES=3000 deepens both files alike.
HYPOTHESIS_EXAMPLES = max(1, int(os.environ.get("NUMBACONV_HYPOTHESIS_EXAMPLES", "300")) // 3)
HYPOTHESIS_SETTINGS = settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


# ---------------------------------------------------------------------------
# problem helpers
# ---------------------------------------------------------------------------

def per_dim(value, ndim):
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def forward_params(kw, ndim):
    """stride, padding, dilation as tuples, and groups, of forward kwargs."""
    return (per_dim(kw.get("stride", 1), ndim), per_dim(kw.get("padding", 0), ndim),
            per_dim(kw.get("dilation", 1), ndim), kw.get("groups", 1))


def forward_output_shape(shape, wshape, kw):
    """Shape of ``conv(input of shape, weight of wshape, **kw)`` (= grad_output's)."""
    ndim = len(wshape) - 2
    stride, padding, dilation, _ = forward_params(kw, ndim)
    size = conv_output_size(tuple(shape[-ndim:]), tuple(wshape[2:]), stride, padding, dilation)
    return tuple(shape[:-ndim - 1]) + (wshape[0],) + size


def derived_output_padding(shape, wshape, kw):
    """The output_padding that brings a transposed convolution of the forward
    output back to the forward input size (the input rows no window reads)."""
    ndim = len(wshape) - 2
    stride, padding, dilation, _ = forward_params(kw, ndim)
    out = forward_output_shape(shape, wshape, kw)[-ndim:]
    base = conv_input_size(out, tuple(wshape[2:]), stride, padding, dilation, (0,) * ndim)
    return tuple(n - b for n, b in zip(shape[-ndim:], base))


def grad_case_as_transposed(name, shape, wshape, kw):
    """The input gradient of a forward case as a transposed case (no bias)."""
    tkw = dict(kw, output_padding=derived_output_padding(shape, wshape, kw), bias=False)
    return (f"grad_input-{name}", forward_output_shape(shape, wshape, kw), wshape, tkw)


def split_bias(kw):
    kw = dict(kw)
    return kw.pop("bias", True), kw


def transposed_output_shape(shape, wshape, kw):
    ndim = len(wshape) - 2
    kw = split_bias(kw)[1]
    size = conv_input_size(tuple(shape[-ndim:]), tuple(wshape[2:]),
                           per_dim(kw.get("stride", 1), ndim), per_dim(kw.get("padding", 0), ndim),
                           per_dim(kw.get("dilation", 1), ndim),
                           per_dim(kw.get("output_padding", 0), ndim))
    return tuple(shape[:-ndim - 1]) + (wshape[1] * kw.get("groups", 1),) + size


def grad_problem(rng, shape, wshape, kw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    g = rng.standard_normal(forward_output_shape(shape, wshape, kw)).astype(dtype)
    return x, w, g


def transposed_problem(rng, shape, wshape, kw, dtype):
    """(x, w, b or None, kwargs without 'bias')."""
    with_bias, kw = split_bias(kw)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(wshape).astype(dtype)
    b = rng.standard_normal(wshape[1] * kw.get("groups", 1)).astype(dtype) if with_bias else None
    return x, w, b, kw


def canonical(array, ndim):
    """(N, C, *spatial) -> (N, C, D, H, W), C-contiguous."""
    return np.ascontiguousarray(array.reshape(array.shape[:2] + (1,) * (3 - ndim)
                                              + array.shape[2:]))


def winograd_serves(wshape, kw):
    """Whether winograd serves the input gradient / transposed convolution of
    this problem: stride 1 and a 3-wide kernel on every axis (any dilation:
    Note [dilation phases])."""
    ndim = len(wshape) - 2
    return (all(s == 1 for s in per_dim(kw.get("stride", 1), ndim))
            and all(k == 3 for k in wshape[2:]))


def run_or_skip(algorithm, served, call):
    """``call()``; a winograd algorithm that refuses is skipped, after checking
    that it refuses exactly the problems outside its domain (``served``)."""
    if algorithm not in WINOGRAD_ALGORITHMS:
        return call()
    try:
        result = call()
    except UnsupportedAlgorithmError as exc:
        assert not served, f"{algorithm} refused a problem in its domain: {exc}"
        pytest.skip(f"{algorithm} does not serve this problem: {exc}")
    assert served, f"{algorithm} served a problem outside stride 1, 3-wide kernels"
    return result


# ---------------------------------------------------------------------------
# tolerances
# ---------------------------------------------------------------------------

def a64(a):
    return np.abs(np.asarray(a, np.float64))


def largest_grad_input(w, g, groups):
    """Largest magnitude an input-gradient element can have:
    ``max|g| * max_ci sum_{co in ci's group, k} |w[co, ci_local, k]|``."""
    if g.size == 0:
        return 0.0
    cout, cin_g = w.shape[:2]
    per_ci = a64(w).reshape(groups, cout // groups, cin_g, -1).sum(axis=(1, 3))
    return float(a64(g).max() * per_ci.max())


def largest_grad_weight(x, g, ndim):
    """``max|x| * max_co sum_{n, p} |g[n, co, p]|``."""
    if g.size == 0:
        return 0.0
    channel = g.ndim - ndim - 1
    per_co = a64(g).sum(axis=tuple(a for a in range(g.ndim) if a != channel))
    return float(a64(x).max() * per_co.max())


def largest_transposed(x, w, b, groups):
    """``max|x| * max_co sum_{ci in co's group, k} |w[ci, co_local, k]| + max|b|``."""
    extra = 0.0 if b is None else float(a64(b).max())
    if x.size == 0:
        return extra
    cin, cout_g = w.shape[:2]
    per_co = a64(w).reshape(groups, cin // groups, cout_g, -1).sum(axis=(1, 3))
    return float(a64(x).max() * per_co.max()) + extra


def bound(scale, dtype, algorithm=None, largest=0.0, factor=RTOL_FACTOR):
    """``factor * eps * S`` elementwise, or for a normwise algorithm the
    conftest bound ``factor * eps * max(max S, largest) * NORMWISE / 16``."""
    if algorithm in NORMWISE:
        scale = max(float(np.max(scale, initial=0.0)), largest) * NORMWISE[algorithm] / RTOL_FACTOR
    return factor * EPS[np.dtype(dtype)] * scale


def assert_close(y, ref, scale, dtype, algorithm=None, largest=0.0, factor=RTOL_FACTOR):
    """``y`` (of ``dtype``) matches the float64 ``ref`` within :func:`bound`."""
    dtype = np.dtype(dtype)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == dtype, (y.dtype, dtype)
    limit = bound(scale, dtype, algorithm, largest, factor)
    if dtype == np.float16:   # computed in float32, rounded once (conftest)
        limit = limit + np.abs(ref) * F16_EPS / 2 + 1e-7
    err = np.abs(y.astype(np.float64) - ref)
    limit = np.broadcast_to(limit, err.shape)
    if err.size:
        worst = np.unravel_index(np.argmax(err - limit), err.shape)
        assert np.all(err <= limit), (
            f"max error {err.max():.3g}; worst against the bound at {worst}: err="
            f"{err[worst]:.3g} bound={limit[worst]:.3g} ({algorithm}, {dtype})")


def check_grad_input(gi, shape, w, g, kw, dtype, algorithm=None, factor=RTOL_FACTOR):
    ref = conv_grad_input_reference(shape, w, g, **kw)
    scale = conv_grad_input_reference(shape, a64(w), a64(g), **kw)
    groups = kw.get("groups", 1)
    assert_close(gi, ref, scale, dtype, algorithm, largest_grad_input(w, g, groups), factor)
    return ref


def check_grad_weight(gw, x, w, g, kw, dtype, algorithm=None, factor=RTOL_FACTOR):
    ref = conv_grad_weight_reference(x, w.shape, g, **kw)
    scale = conv_grad_weight_reference(a64(x), w.shape, a64(g), **kw)
    assert_close(gw, ref, scale, dtype, algorithm, largest_grad_weight(x, g, w.ndim - 2), factor)
    return ref


def check_transposed(y, x, w, b, kw, dtype, algorithm=None, factor=RTOL_FACTOR):
    ref = conv_transpose_reference(x, w, b, **kw)
    scale = conv_transpose_reference(a64(x), a64(w), None, **kw)
    if b is not None:
        scale = scale + a64(b).reshape((-1,) + (1,) * (w.ndim - 2))
    assert_close(y, ref, scale, dtype, algorithm,
                 largest_transposed(x, w, b, kw.get("groups", 1)), factor)
    return ref


def check_grad_bias(gb, g, ndim, dtype, factor=RTOL_FACTOR):
    axes = ((0,) if g.ndim == ndim + 2 else ()) + tuple(range(g.ndim - ndim, g.ndim))
    ref = np.asarray(g, np.float64).sum(axis=axes)
    assert_close(gb, ref, a64(g).sum(axis=axes), dtype, factor=factor)


# ---------------------------------------------------------------------------
# the case tables
# ---------------------------------------------------------------------------

GRAD_PARAMS = [pytest.param(shape, wshape, kw, id=name) for name, shape, wshape, kw in GRAD_CASES]
TRANSPOSED_PARAMS = [pytest.param(shape, wshape, kw, id=name)
                     for name, shape, wshape, kw in TRANSPOSED_CASES]
#: transposed cases plus every forward case's input gradient as one
ALL_TRANSPOSED_PARAMS = TRANSPOSED_PARAMS + [
    pytest.param(*grad_case_as_transposed(*case)[1:], id=grad_case_as_transposed(*case)[0])
    for case in GRAD_CASES]
FLOAT16_GRAD = [p for p in GRAD_PARAMS if p.id in (
    "1d_dilated_groups_stride2", "2d_stride2_odd", "2d_padding_beyond_kernel",
    "3d_depthwise_stride2")]
FLOAT16_TRANSPOSED = [p for p in TRANSPOSED_PARAMS if p.id in (
    "t1d_op_below_dilation", "t2d_stride2_op1", "t3d_unbatched_groups")]


def _output_padding_at_least_stride(kw, ndim):
    return any(o >= s for o, s in zip(per_dim(kw.get("output_padding", 0), ndim),
                                      per_dim(kw.get("stride", 1), ndim)))


def transposed_backward_params():
    params = []
    for name, shape, wshape, kw in TRANSPOSED_CASES:
        params.append(pytest.param(shape, wshape, kw, id=name))
    return params


TRANSPOSED_BACKWARD_PARAMS = transposed_backward_params()


def test_case_tables_cover_the_edge_cases():
    """The tables reach every edge case backward_cases.py promises."""
    seen = set()
    for name, shape, wshape, kw in GRAD_CASES:
        ndim = len(wshape) - 2
        stride, padding, dilation, groups = forward_params(kw, ndim)
        kernel = wshape[2:]
        seen.add(f"{ndim}-D")
        seen.update(f"stride {s}" for s in stride)
        if any(d > 1 for d in dilation):
            seen.add("dilation")
        if any(p > d * (k - 1) for p, d, k in zip(padding, dilation, kernel)):
            seen.add("negative rewritten padding")
        if any(k < s for k, s in zip(kernel, stride)):
            seen.add("kernel smaller than stride")
        if any(o > 0 for o in derived_output_padding(shape, wshape, kw)):
            seen.add("untouched input rows")
        if len(shape) == ndim + 1:
            seen.add("unbatched")
        else:
            seen.add(f"batch {shape[0]}" if shape[0] < 2 else "batch > 1")
        cin = shape[-ndim - 1]
        if groups > 1 and cin // groups == 1:
            seen.add("depthwise multiplier" if wshape[0] > cin else "depthwise")
        elif groups > 1:
            seen.add("groups")
    assert seen >= {"1-D", "2-D", "3-D", "stride 1", "stride 2", "stride 3", "dilation",
                    "negative rewritten padding", "kernel smaller than stride",
                    "untouched input rows", "unbatched", "batch 0", "batch 1", "batch > 1",
                    "depthwise", "depthwise multiplier", "groups"}, seen
    seen = set()
    for name, shape, wshape, kw in TRANSPOSED_CASES:
        ndim = len(wshape) - 2
        with_bias, kw = split_bias(kw)
        seen.add("bias" if with_bias else "no bias")
        seen.add(f"{ndim}-D")
        for o, s, d in zip(per_dim(kw.get("output_padding", 0), ndim),
                           per_dim(kw.get("stride", 1), ndim),
                           per_dim(kw.get("dilation", 1), ndim)):
            if 0 < o < s:
                seen.add("output_padding < stride")
            elif o >= s and o < d:
                seen.add("output_padding < dilation only")
    assert seen >= {"bias", "no bias", "1-D", "2-D", "3-D", "output_padding < stride",
                    "output_padding < dilation only"}, seen
    assert len({c[0] for c in GRAD_CASES + TRANSPOSED_CASES}) == len(GRAD_CASES + TRANSPOSED_CASES)


# ---------------------------------------------------------------------------
# 2. every named case, every algorithm, against the references
# ---------------------------------------------------------------------------

class TestNamedCases:
    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape, wshape, kw", GRAD_PARAMS)
    def test_grad_input(self, rng, shape, wshape, kw, dtype, algorithm):
        x, w, g = grad_problem(rng, shape, wshape, kw, dtype)
        copies = (w.copy(), g.copy())
        gi = run_or_skip(algorithm, winograd_serves(wshape, kw), lambda: GRAD_INPUT[
            len(wshape) - 2](shape, w, g, **kw, algorithm=algorithm))
        check_grad_input(gi, shape, w, g, kw, dtype, algorithm)
        assert np.array_equal(copies[0], w) and np.array_equal(copies[1], g)

    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape, wshape, kw", GRAD_PARAMS)
    def test_grad_weight(self, rng, shape, wshape, kw, dtype, algorithm):
        x, w, g = grad_problem(rng, shape, wshape, kw, dtype)
        copies = (x.copy(), g.copy())
        gw = GRAD_WEIGHT[len(wshape) - 2](x, wshape, g, **kw, algorithm=algorithm)
        check_grad_weight(gw, x, w, g, kw, dtype, algorithm)
        assert np.array_equal(copies[0], x) and np.array_equal(copies[1], g)

    @pytest.mark.parametrize("algorithm", WINOGRAD_ALGORITHMS)
    @pytest.mark.parametrize("shape, wshape, kw", GRAD_PARAMS)
    def test_winograd_refuses_every_weight_gradient(self, rng, shape, wshape, kw, algorithm):
        x, w, g = grad_problem(rng, shape, wshape, kw, np.float32)
        with pytest.raises(UnsupportedAlgorithmError, match=r"weight gradient is a convolution"):
            GRAD_WEIGHT[len(wshape) - 2](x, wshape, g, **kw, algorithm=algorithm)

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape, wshape, kw", TRANSPOSED_PARAMS)
    def test_conv_transpose(self, rng, shape, wshape, kw, dtype, algorithm):
        x, w, b, kw = transposed_problem(rng, shape, wshape, kw, dtype)
        y = run_or_skip(algorithm, winograd_serves(wshape, kw), lambda: CONV_TRANSPOSE[
            len(wshape) - 2](x, w, b, **kw, algorithm=algorithm))
        assert y.shape == transposed_output_shape(shape, wshape, kw)
        check_transposed(y, x, w, b, kw, dtype, algorithm)

    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    @pytest.mark.parametrize("shape, wshape, kw", FLOAT16_GRAD)
    def test_float16_gradients(self, rng, shape, wshape, kw, algorithm):
        x, w, g = grad_problem(rng, shape, wshape, kw, np.float16)
        ndim = len(wshape) - 2
        gi = GRAD_INPUT[ndim](shape, w, g, **kw, algorithm=algorithm)
        check_grad_input(gi, shape, w, g, kw, np.float16, algorithm)
        gw = GRAD_WEIGHT[ndim](x, wshape, g, **kw, algorithm=algorithm)
        check_grad_weight(gw, x, w, g, kw, np.float16, algorithm)
        # computed in float32 and rounded once
        gi32 = GRAD_INPUT[ndim](shape, w.astype(np.float32), g.astype(np.float32), **kw,
                                algorithm=algorithm)
        assert np.array_equal(gi, gi32.astype(np.float16))

    @pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
    @pytest.mark.parametrize("shape, wshape, kw", FLOAT16_TRANSPOSED)
    def test_float16_conv_transpose(self, rng, shape, wshape, kw, algorithm):
        x, w, b, kw = transposed_problem(rng, shape, wshape, kw, np.float16)
        y = CONV_TRANSPOSE[len(wshape) - 2](x, w, b, **kw, algorithm=algorithm)
        check_transposed(y, x, w, b, kw, np.float16, algorithm)

    # not fft: its phases are computed by transforms, so a position after the
    # last window that falls in a phase with taps carries rounding from the
    # phase's tile (measured 6e-8 = 2 eps * max|gi| in float32), within its
    # normwise bound (test_grad_input); positions in tapless phases are exact
    @pytest.mark.parametrize("algorithm", ["auto", "direct", "im2col"])
    def test_untouched_input_rows_get_exact_zeros(self, rng, algorithm):
        """Stride 3 over a 2-tap kernel: rows between and after the windows."""
        x, w, g = grad_problem(rng, (1, 2, 10), (3, 2, 2), dict(stride=3), np.float32)
        gi = nc.grad.conv1d_input((1, 2, 10), w, g, stride=3, algorithm=algorithm)
        untouched = [2, 5, 8, 9]
        assert np.all(gi[..., untouched] == 0)
        assert np.all(np.delete(gi, untouched, axis=-1) != 0)


# ---------------------------------------------------------------------------
# 3. adjoint identities, float64, each algorithm computing every side
# ---------------------------------------------------------------------------

ADJOINT_RTOL = 1e-12


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("shape, wshape, kw", GRAD_PARAMS)
def test_adjoint_identity(rng, shape, wshape, kw, algorithm):
    """<conv(x, w), g> == <x, grad_input(g, w)> == <w, grad_weight(x, g)>."""
    x, w, g = grad_problem(rng, shape, wshape, kw, np.float64)
    ndim = len(wshape) - 2
    y = run_or_skip(algorithm, winograd_serves(wshape, kw),
                    lambda: CONV[ndim](x, w, **kw, algorithm=algorithm))
    gi = GRAD_INPUT[ndim](shape, w, g, **kw, algorithm=algorithm)
    # the sum of |every product| of the triple sum, the same for all three
    terms = np.vdot(conv_reference(a64(x), a64(w), None, **kw), a64(g))
    forward = np.vdot(y, g)
    assert abs(np.vdot(x, gi) - forward) <= ADJOINT_RTOL * terms
    if algorithm in WINOGRAD_ALGORITHMS:
        with pytest.raises(UnsupportedAlgorithmError):
            GRAD_WEIGHT[ndim](x, wshape, g, **kw, algorithm=algorithm)
    else:
        gw = GRAD_WEIGHT[ndim](x, wshape, g, **kw, algorithm=algorithm)
        assert abs(np.vdot(w, gw) - forward) <= ADJOINT_RTOL * terms
    if x.size:
        assert abs(forward) > 1e-6 * terms     # not a trivial identity


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("shape, wshape, kw", TRANSPOSED_PARAMS)
def test_transposed_adjoint_identity(rng, shape, wshape, kw, algorithm):
    """<conv_transpose(x, w), z> == <x, conv(z, w)> on x's positions (the
    convolution is longer when output_padding >= stride)."""
    x, w, _, kw = transposed_problem(rng, shape, wshape, kw, np.float64)
    ndim = len(wshape) - 2
    fkw = {k: v for k, v in kw.items() if k != "output_padding"}
    served = winograd_serves(wshape, kw)
    y = run_or_skip(algorithm, served,
                    lambda: CONV_TRANSPOSE[ndim](x, w, None, **kw, algorithm=algorithm))
    z = rng.standard_normal(y.shape)
    back = CONV[ndim](z, w, **fkw, algorithm=algorithm)
    back = back[(Ellipsis,) + tuple(slice(0, n) for n in shape[-ndim:])]
    terms = np.vdot(conv_transpose_reference(a64(x), a64(w), None, **kw), a64(z))
    assert abs(np.vdot(y, z) - np.vdot(x, back)) <= ADJOINT_RTOL * terms


# ---------------------------------------------------------------------------
# 4. PyTorch autograd parity of conv_backward
# ---------------------------------------------------------------------------

def _torch_functional(name):
    return getattr(torch.nn.functional, name)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
@pytest.mark.parametrize("shape, wshape, kw", GRAD_PARAMS)
def test_conv_backward_matches_torch_autograd(rng, shape, wshape, kw, algorithm):
    dtype = np.float32
    x, w, g = grad_problem(rng, shape, wshape, kw, dtype)
    b = rng.standard_normal(wshape[0]).astype(dtype)
    ndim = len(wshape) - 2
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
    ty = _torch_functional(f"conv{ndim}d")(tx, tw, tb, **kw)
    ty.backward(torch.from_numpy(g.copy()))
    gi, gw, gb = nc.conv_backward(x, w, g, **kw, algorithm=algorithm)
    check_grad_input(gi, shape, w, g, kw, dtype, algorithm)   # ours: the truth
    # and PyTorch within twice the tolerance of ours
    scale_i = conv_grad_input_reference(shape, a64(w), a64(g), **kw)
    assert_close(gi, tx.grad.numpy().astype(np.float64), scale_i, dtype, algorithm,
                 largest_grad_input(w, g, kw.get("groups", 1)), factor=32)
    scale_w = conv_grad_weight_reference(a64(x), wshape, a64(g), **kw)
    assert_close(gw, tw.grad.numpy().astype(np.float64), scale_w, dtype, algorithm,
                 largest_grad_weight(x, g, ndim), factor=32)
    axes = ((0,) if g.ndim == ndim + 2 else ()) + tuple(range(g.ndim - ndim, g.ndim))
    assert_close(gb, tb.grad.numpy().astype(np.float64), a64(g).sum(axis=axes), dtype,
                 factor=32)


def transposed_backward_reference(x, w, g, kw):
    """Float64 input and weight gradients of ``conv_transpose(x, w, b, **kw)``
    for output gradient ``g``, with their error scales (the same on absolute
    values): ``(gi, scale_i, gw, scale_w)``.  From the forward references:
    the input gradient is the convolution of ``g`` (its first ``x``
    positions: the convolution is longer when output_padding >= stride), the
    weight gradient that convolution's weight gradient with ``x``,
    zero-extended, as its output gradient."""
    ndim = w.ndim - 2
    fkw = {k: v for k, v in kw.items() if k != "output_padding"}
    full = conv_reference(g, w, None, **fkw)
    window = (Ellipsis,) + tuple(slice(0, n) for n in x.shape[-ndim:])
    gi = full[window]
    scale_i = conv_reference(a64(g), a64(w), None, **fkw)[window]
    xe = np.zeros(full.shape)
    xe[window] = x
    gw = conv_grad_weight_reference(g, w.shape, xe, **fkw)
    scale_w = conv_grad_weight_reference(a64(g), w.shape, np.abs(xe), **fkw)
    return gi, scale_i, gw, scale_w


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("shape, wshape, kw", TRANSPOSED_PARAMS)
def test_transposed_backward_reference_is_torch_autograd(rng, shape, wshape, kw):
    """The oracle of the transposed conv_backward tests, in float64, on every
    transposed case (output_padding >= stride included)."""
    x, w, _, kw = transposed_problem(rng, shape, wshape, kw, np.float64)
    ndim = len(wshape) - 2
    tx, tw = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w))
    ty = _torch_functional(f"conv_transpose{ndim}d")(tx, tw, None, **kw)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.from_numpy(g.copy()))
    gi, scale_i, gw, scale_w = transposed_backward_reference(x, w, g, kw)
    assert_close(tx.grad.numpy(), gi, scale_i, np.float64)
    assert_close(tw.grad.numpy(), gw, scale_w, np.float64)


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
@pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
@pytest.mark.parametrize("shape, wshape, kw", TRANSPOSED_BACKWARD_PARAMS)
def test_transposed_conv_backward_matches_torch_autograd(rng, shape, wshape, kw, algorithm):
    dtype = np.float32
    x, w, b, kw = transposed_problem(rng, shape, wshape, kw, dtype)
    ndim = len(wshape) - 2
    b = rng.standard_normal(wshape[1] * kw.get("groups", 1)).astype(dtype) if b is None else b
    tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
    ty = _torch_functional(f"conv_transpose{ndim}d")(tx, tw, tb, **kw)
    g = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(torch.from_numpy(g.copy()))
    fkw = {k: v for k, v in kw.items() if k != "output_padding"}
    gi, gw, gb = nc.conv_backward(x, w, g, **fkw, transposed=True,
                                  output_padding=kw.get("output_padding", 0), algorithm=algorithm)
    _, scale_i, _, scale_w = transposed_backward_reference(x, w, g, kw)
    # the input gradient is conv(g, w): the forward scale, as in conftest
    largest_i = float(a64(g).max(initial=0.0) * a64(w).reshape(w.shape[0], -1).sum(axis=1).max())
    assert_close(gi, tx.grad.numpy().astype(np.float64), scale_i, dtype, algorithm, largest_i,
                 factor=32)
    xe = np.zeros(forward_output_shape(g.shape, wshape, fkw))
    xe[(Ellipsis,) + tuple(slice(0, n) for n in shape[-ndim:])] = x
    assert_close(gw, tw.grad.numpy().astype(np.float64), scale_w, dtype, algorithm,
                 largest_grad_weight(g, xe, ndim), factor=32)
    axes = ((0,) if g.ndim == ndim + 2 else ()) + tuple(range(g.ndim - ndim, g.ndim))
    assert_close(gb, tb.grad.numpy().astype(np.float64), a64(g).sum(axis=axes), dtype, factor=32)


# ---------------------------------------------------------------------------
# 5. hypothesis-generated problems
# ---------------------------------------------------------------------------

@st.composite
def grad_problems(draw):
    """A forward convolution whose gradients are taken (zeros padding)."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin_g, cout_g = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    sizes = tuple(max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 10 if ndim < 3 else 5))
                  for k, d, p in zip(kernel, dilation, padding))
    batch = draw(st.sampled_from([0, 1, 2, 3]))
    unbatched = batch == 1 and draw(st.booleans())
    shape = (() if unbatched else (batch,)) + (cin_g * groups,) + sizes
    wshape = (cout_g * groups, cin_g) + kernel
    scalar = draw(st.booleans())
    kw = dict(stride=stride[0] if scalar and len(set(stride)) == 1 else stride,
              padding=padding[0] if scalar and len(set(padding)) == 1 else padding,
              dilation=dilation, groups=groups)
    return (shape, wshape, kw, draw(st.sampled_from(DTYPES)),
            draw(st.sampled_from(GENERAL_ALGORITHMS)), draw(st.integers(0, 2**32 - 1)))


@HYPOTHESIS_SETTINGS
@given(grad_problems())
def test_hypothesis_gradients(problem):
    shape, wshape, kw, dtype, algorithm, seed = problem
    rng = np.random.default_rng(seed)
    x, w, g = grad_problem(rng, shape, wshape, kw, dtype)
    ndim = len(wshape) - 2
    gi = GRAD_INPUT[ndim](shape, w, g, **kw, algorithm=algorithm)
    check_grad_input(gi, shape, w, g, kw, dtype, algorithm)
    gw = GRAD_WEIGHT[ndim](x, wshape, g, **kw, algorithm=algorithm)
    check_grad_weight(gw, x, w, g, kw, dtype, algorithm)
    if torch is not None and x.size:
        tx, tw = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w))
        _torch_functional(f"conv{ndim}d")(tx, tw, None, **kw).backward(torch.from_numpy(g.copy()))
        assert_close(gi, tx.grad.numpy().astype(np.float64),
                     conv_grad_input_reference(shape, a64(w), a64(g), **kw), dtype, algorithm,
                     largest_grad_input(w, g, kw["groups"]), factor=32)
        assert_close(gw, tw.grad.numpy().astype(np.float64),
                     conv_grad_weight_reference(a64(x), wshape, a64(g), **kw), dtype, algorithm,
                     largest_grad_weight(x, g, ndim), factor=32)


@st.composite
def transposed_problems(draw):
    ndim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin_g, cout_g = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    sizes = tuple(draw(st.integers(1, 7 if ndim < 3 else 4)) for _ in range(ndim))
    # the output (n - 1) s - 2 p + d (k - 1) + o + 1 must be positive
    padding = tuple(draw(st.integers(0, min(4, ((n - 1) * s + d * (k - 1) + o) // 2)))
                    for n, s, d, k, o in zip(sizes, stride, dilation, kernel, output_padding))
    batch = draw(st.sampled_from([0, 1, 2, 3]))
    unbatched = batch == 1 and draw(st.booleans())
    shape = (() if unbatched else (batch,)) + (cin_g * groups,) + sizes
    wshape = (cin_g * groups, cout_g) + kernel
    kw = dict(stride=stride, padding=padding, output_padding=output_padding,
              dilation=dilation, groups=groups, bias=draw(st.booleans()))
    return (shape, wshape, kw, draw(st.sampled_from(DTYPES)),
            draw(st.sampled_from(GENERAL_ALGORITHMS)), draw(st.integers(0, 2**32 - 1)))


@HYPOTHESIS_SETTINGS
@given(transposed_problems())
def test_hypothesis_conv_transpose(problem):
    shape, wshape, kw, dtype, algorithm, seed = problem
    x, w, b, kw = transposed_problem(np.random.default_rng(seed), shape, wshape, kw, dtype)
    ndim = len(wshape) - 2
    y = CONV_TRANSPOSE[ndim](x, w, b, **kw, algorithm=algorithm)
    check_transposed(y, x, w, b, kw, dtype, algorithm)
    if torch is not None and x.size:
        expected = _torch_functional(f"conv_transpose{ndim}d")(
            torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b),
            **kw).numpy().astype(np.float64)
        scale = conv_transpose_reference(a64(x), a64(w), None, **kw)
        if b is not None:
            scale = scale + a64(b).reshape((-1,) + (1,) * ndim)
        assert_close(y, expected, scale, dtype, algorithm,
                     largest_transposed(x, w, b, kw["groups"]), factor=32)


# ---------------------------------------------------------------------------
# 6. direct's zero-dilated map formulation; fast paths refuse input dilation
# ---------------------------------------------------------------------------

def transposed_canonical(x, w, b, kw):
    """The general spec of ``conv_transpose(x, w, b, **kw)`` and its canonical
    input and rewritten weight."""
    ndim = w.ndim - 2
    spec = make_transposed_spec(f"conv_transpose{ndim}d", ndim, x, w, b, kw.get("stride", 1),
                                kw.get("padding", 0), kw.get("output_padding", 0),
                                kw.get("groups", 1), kw.get("dilation", 1))
    x5 = np.ascontiguousarray(x.reshape(spec.input_shape[:2] + spec.input_size3))
    w5 = canonical(transposed_weight(w, spec.groups), ndim)
    return spec, x5, w5


@pytest.mark.parametrize("loop_order", ["channels_last", "planes"])
@pytest.mark.parametrize("shape, wshape, kw", ALL_TRANSPOSED_PARAMS)
def test_direct_maps_serve_input_dilation(rng, shape, wshape, kw, loop_order):
    """direct_forward on the rewritten spec, gathering through zero-dilated
    padding maps (paying for the zeros), agrees with the reference: a second
    formulation, independent of the phases the algorithms take."""
    x, w, b, kw = transposed_problem(rng, shape, wshape, kw, np.float64)
    spec, x5, w5 = transposed_canonical(x, w, b, kw)
    out = np.full(spec.output_shape[:2] + spec.output_size3, np.nan)
    assert direct_forward(spec, x5, w5, Epilogue.of(b, spec.compute_dtype), out,
                          loop_order=loop_order) is out
    check_transposed(out.reshape(spec.user_output_shape), x, w, b, kw, np.float64)


#: qualify for the fast paths in every respect but the input dilation: 3x3
#: depthwise, zero padding (1, 1) on W and an output as wide as the input;
#: stride 2 on both axes needs a 1-wide input, stride (2, 1) does not
FAST_PATH_SPECS = [
    pytest.param((1, 6, 5, 1), dict(stride=2, padding=1), id="stride2_width1"),
    pytest.param((2, 6, 5, 7), dict(stride=(2, 1), padding=1, output_padding=(1, 0)),
                 id="stride2x1"),
]


@pytest.mark.parametrize("shape, kw", FAST_PATH_SPECS)
def test_fast_paths_refuse_input_dilation(rng, shape, kw):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    spec, x5, w5 = transposed_canonical(x, w, None, dict(kw, groups=6))
    assert spec.has_input_dilation and spec.is_depthwise
    undilated = replace(spec, input_dilation=(1, 1))
    assert serves_phase_planes(undilated) and same_width_fill(undilated)
    assert not serves_phase_planes(spec)
    assert not same_width_fill(spec)
    out = np.full(spec.output_shape[:2] + spec.output_size3, np.nan, np.float32)
    none = Epilogue.of(None, np.float32)
    with pytest.raises(ValueError, match="phase_planes' does not serve"):
        direct_forward(spec, x5, w5, none, out, loop_order="phase_planes")
    with pytest.raises(ValueError, match="input dilation"):
        im2col_forward(spec, x5, w5, none, out)
    with pytest.raises(ValueError, match="input dilation"):
        fft_forward(spec, x5, w5, none, out)
    # and the public path still serves it
    for algorithm in ["auto"] + GENERAL_ALGORITHMS:
        y = nc.conv_transpose2d(x, w, **kw, groups=6, algorithm=algorithm)
        check_transposed(y, x, w, None, dict(kw, groups=6), np.float32, algorithm)


# ---------------------------------------------------------------------------
# 7. thread-count independence and the workspace limit of the weight gradient
# ---------------------------------------------------------------------------

@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                    reason="needs NUMBA_NUM_THREADS >= 2 to compare 1 and 2 threads, "
                           f"got {numba.config.NUMBA_NUM_THREADS}")
@pytest.mark.parametrize("algorithm", ["im2col", "direct", "fft"])
@pytest.mark.parametrize("shape, wshape, kw", [
    ((8, 8, 13, 15), (6, 8, 3, 3), dict(stride=2, padding=1)),
    ((5, 8, 11, 12), (8, 1, 3, 3), dict(padding=1, groups=8)),
    ((3, 4, 6, 7, 9), (5, 4, 3, 3, 3), dict(padding=1, stride=(1, 2, 1))),
    ((16, 3, 40), (4, 3, 5), dict(stride=2, dilation=2)),
    ((4, 32, 10, 10), (48, 32, 3, 3), dict(padding=1)),      # several row blocks
])
def test_grad_weight_same_bits_with_one_and_two_threads(rng, shape, wshape, kw, algorithm):
    x, w, g = grad_problem(rng, shape, wshape, kw, np.float32)
    fn = GRAD_WEIGHT[len(wshape) - 2]
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fn(x, wshape, g, **kw, algorithm=algorithm)
        numba.set_num_threads(2)
        two = fn(x, wshape, g, **kw, algorithm=algorithm)
    finally:
        numba.set_num_threads(previous)
    check_grad_weight(one, x, w, g, kw, np.float32, algorithm)
    assert np.array_equal(one, two)


@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("shape, wshape, kw", [
    ((64, 8, 12, 12), (16, 8, 3, 3), dict(padding=1)),
    ((2, 3, 500, 700), (16, 3, 3, 3), {}),                   # a large image
    ((1, 1024, 16, 16), (8, 1024, 5, 5), dict(padding=2)),   # K = 25600
    ((4, 64, 28, 28), (64, 1, 3, 3), dict(padding=1, groups=64)),
])
def test_grad_weight_plan_respects_the_workspace_limit(shape, wshape, kw, itemsize):
    ndim = len(wshape) - 2
    dtype = np.float32 if itemsize == 4 else np.float64
    x = np.empty(shape, dtype)
    g = np.empty(forward_output_shape(shape, wshape, kw), dtype)
    spec = make_grad_weight_spec(f"grad.conv{ndim}d_weight", ndim, x, wshape, g, **kw)
    plan = plan_grad_weight(spec, itemsize, limit=2**20)
    assert plan.rows >= 1 and plan.tile >= 1
    assert plan.rows * plan.tile * itemsize * numba.config.NUMBA_NUM_THREADS <= 2**20


def test_im2col_grad_weight_under_a_small_workspace_limit(rng):
    shape, wshape, kw = (64, 8, 12, 12), (16, 8, 3, 3), dict(padding=1)
    x, w, g = grad_problem(rng, shape, wshape, kw, np.float32)
    previous = nc.set_workspace_limit(2**20)
    try:
        assert nc.get_workspace_limit() == 2**20
        gw = nc.grad.conv2d_weight(x, wshape, g, **kw, algorithm="im2col")
    finally:
        nc.set_workspace_limit(previous)
    assert nc.get_workspace_limit() == previous
    check_grad_weight(gw, x, w, g, kw, np.float32, "im2col")


# ---------------------------------------------------------------------------
# 8. conv_backward
# ---------------------------------------------------------------------------

MASKS = [(a, b, c) for a in (True, False) for b in (True, False) for c in (True, False)]


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("1" if v else "0" for v in m))
def test_conv_backward_output_mask(rng, mask, transposed):
    if transposed:
        x, w, _, kw = transposed_problem(rng, (2, 4, 5, 6), (4, 3, 3, 3),
                                         dict(stride=2, padding=1, output_padding=1), np.float64)
        g = rng.standard_normal(transposed_output_shape(x.shape, w.shape, kw))
        extra = dict(transposed=True, output_padding=1)
    else:
        x, w, g = grad_problem(rng, (2, 8, 15, 13), (10, 8, 3, 3), dict(stride=2, padding=1),
                               np.float64)
        extra = {}
    full = nc.conv_backward(x, w, g, stride=2, padding=1, **extra)
    assert all(r is not None for r in full)
    part = nc.conv_backward(x, w, g, stride=2, padding=1, output_mask=mask, **extra)
    assert isinstance(part, tuple) and len(part) == 3
    for wanted, ours, reference in zip(mask, part, full):
        if wanted:
            assert np.array_equal(ours, reference)
        else:
            assert ours is None
    assert full[0].shape == x.shape and full[1].shape == w.shape
    assert full[2].shape == (g.shape[1],)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape, wshape, kw", [
    ((3, 5, 8, 9), (4, 5, 3, 3), dict(stride=2)),
    ((5, 9, 11), (3, 5, 3, 3), dict(padding=1)),             # unbatched
    ((2, 3, 4, 5, 6), (6, 1, 2, 2, 2), dict(groups=3)),
    ((0, 3, 7), (2, 3, 3), {}),
])
def test_conv_backward_grad_bias_is_the_sum_over_batch_and_space(rng, shape, wshape, kw, dtype):
    x, w, g = grad_problem(rng, shape, wshape, kw, dtype)
    gi, gw, gb = nc.conv_backward(x, w, g, **kw, output_mask=(False, False, True))
    assert gi is None and gw is None
    check_grad_bias(gb, g, len(wshape) - 2, dtype)


@pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
@pytest.mark.parametrize("shape, wshape, kw", [
    ((3, 9, 11), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ((4, 12), (6, 2, 3), dict(groups=2, dilation=2)),
    ((2, 5, 5, 6), (3, 2, 2, 2, 2), dict(stride=(1, 2, 3), padding=2)),
])
def test_conv_backward_unbatched(rng, shape, wshape, kw, algorithm):
    x, w, g = grad_problem(rng, shape, wshape, kw, np.float64)
    gi, gw, gb = nc.conv_backward(x, w, g, **kw, algorithm=algorithm)
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == (wshape[0],)
    check_grad_input(gi, shape, w, g, kw, np.float64, algorithm)
    check_grad_weight(gw, x, w, g, kw, np.float64, algorithm)
    check_grad_bias(gb, g, len(wshape) - 2, np.float64)
    bi, bw, bb = nc.conv_backward(x[None], w, g[None], **kw, algorithm=algorithm)
    np.testing.assert_allclose(gi, bi[0], rtol=0, atol=1e-13 * max(1.0, np.abs(bi).max()))
    np.testing.assert_allclose(gw, bw, rtol=0, atol=1e-13 * max(1.0, np.abs(bw).max()))
    np.testing.assert_array_equal(gb, bb)


@pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, wshape, kw", TRANSPOSED_BACKWARD_PARAMS)
def test_transposed_conv_backward(rng, shape, wshape, kw, dtype, algorithm):
    """conv_backward(transposed=True) against the forward references, and the
    adjoint identity with the float64 transposed reference."""
    x, w, _, kw = transposed_problem(rng, shape, wshape, kw, dtype)
    ndim = len(wshape) - 2
    g = rng.standard_normal(transposed_output_shape(shape, wshape, kw)).astype(dtype)
    fkw = {k: v for k, v in kw.items() if k != "output_padding"}
    gi, gw, gb = nc.conv_backward(x, w, g, **fkw, transposed=True,
                                  output_padding=kw.get("output_padding", 0), algorithm=algorithm)
    ref_i, scale_i, ref_w, scale_w = transposed_backward_reference(x, w, g, kw)
    largest_i = float(a64(g).max(initial=0.0) * a64(w).reshape(w.shape[0], -1).sum(axis=1).max())
    assert_close(gi, ref_i, scale_i, dtype, algorithm, largest_i)
    xe = np.zeros(forward_output_shape(g.shape, wshape, fkw))
    xe[(Ellipsis,) + tuple(slice(0, n) for n in shape[-ndim:])] = x
    assert_close(gw, ref_w, scale_w, dtype, algorithm, largest_grad_weight(g, xe, ndim))
    check_grad_bias(gb, g, ndim, dtype)
    # adjoint: <gi, x'> == <conv_transpose(x', w), g> and <gw, w'> ==
    # <conv_transpose(x, w'), g> with the float64 transposed reference; the
    # slack is the elementwise bound above summed against |x'| (|w'|) plus
    # float64 rounding of the inner products
    limit_i = np.broadcast_to(bound(scale_i, dtype, algorithm, largest_i), gi.shape)
    limit_w = np.broadcast_to(bound(scale_w, dtype, algorithm, largest_grad_weight(g, xe, ndim)),
                              gw.shape)
    x2, w2 = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    lhs = conv_transpose_reference(x2, w, None, **kw)
    terms = np.vdot(conv_transpose_reference(a64(x2), a64(w), None, **kw), a64(g))
    assert (abs(np.vdot(gi, x2) - np.vdot(lhs, g))
            <= np.vdot(limit_i, np.abs(x2)) + ADJOINT_RTOL * terms)
    lhs = conv_transpose_reference(x, w2, None, **kw)
    terms = np.vdot(conv_transpose_reference(a64(x), a64(w2), None, **kw), a64(g))
    assert (abs(np.vdot(gw, w2) - np.vdot(lhs, g))
            <= np.vdot(limit_w, np.abs(w2)) + ADJOINT_RTOL * terms)


@pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
def test_non_contiguous_arrays(rng, algorithm):
    """Views (negative strides, Fortran order, slices) give the results of
    their contiguous copies."""
    x = rng.standard_normal((2, 4, 9, 9))[:, :, ::-1, :]
    w = np.asfortranarray(rng.standard_normal((3, 4, 3, 3)))
    g = rng.standard_normal((2, 3, 4, 8))[..., ::2]
    assert not (x.flags.c_contiguous or w.flags.c_contiguous or g.flags.c_contiguous)
    kw = dict(stride=2)
    gi = nc.grad.conv2d_input(x.shape, w, g, **kw, algorithm=algorithm)
    check_grad_input(gi, x.shape, np.ascontiguousarray(w), np.ascontiguousarray(g), kw,
                     np.float64, algorithm)
    gw = nc.grad.conv2d_weight(x, w.shape, g, **kw, algorithm=algorithm)
    check_grad_weight(gw, np.ascontiguousarray(x), w, np.ascontiguousarray(g), kw, np.float64,
                      algorithm)
    tkw = dict(stride=2, output_padding=1)
    b = rng.standard_normal(8)[::2]
    y = nc.conv_transpose2d(g, w, b, **tkw, algorithm=algorithm)
    check_transposed(y, np.ascontiguousarray(g), np.ascontiguousarray(w), b, tkw, np.float64,
                     algorithm)


@pytest.mark.parametrize("shape, wshape, kw", [
    p for p in TRANSPOSED_PARAMS if _output_padding_at_least_stride(p.values[2],
                                                                    len(p.values[1]) - 2)])
def test_transposed_input_gradient_has_the_input_shape(rng, shape, wshape, kw):
    """With output_padding >= stride (allowed below the dilation) the
    convolution of grad_output is longer than the input: the input gradient
    must still have the input's shape (it was (1, 2, 8) for (1, 2, 6))."""
    x, w, _, kw = transposed_problem(rng, shape, wshape, kw, np.float64)
    g = rng.standard_normal(transposed_output_shape(shape, wshape, kw))
    fkw = {k: v for k, v in kw.items() if k != "output_padding"}
    gi, _, _ = nc.conv_backward(x, w, g, **fkw, transposed=True,
                                output_padding=kw["output_padding"],
                                output_mask=(True, False, False))
    assert gi.shape == x.shape, (gi.shape, x.shape)


# ---------------------------------------------------------------------------
# 10. out= of conv_transpose
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", GENERAL_ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape, wshape, kw", [
    p for p in TRANSPOSED_PARAMS if p.id in (
        "t1d_kernel2_stride3_op2",          # phases without taps: bias only
        "t1d_unbatched_groups", "t2d_asym", "t2d_padding_beyond_kernel", "t3d_stride2")])
def test_conv_transpose_out_is_filled_and_returned(rng, shape, wshape, kw, dtype, algorithm):
    x, w, b, kw = transposed_problem(rng, shape, wshape, kw, dtype)
    ndim = len(wshape) - 2
    out = np.full(transposed_output_shape(shape, wshape, kw), np.nan, dtype)
    y = CONV_TRANSPOSE[ndim](x, w, b, **kw, algorithm=algorithm, out=out)
    assert y is out
    assert not np.isnan(out).any()
    check_transposed(out, x, w, b, kw, dtype, algorithm)
    assert np.array_equal(out, CONV_TRANSPOSE[ndim](x, w, b, **kw, algorithm=algorithm))
