"""Shared test helpers: tolerances, the reference check and optional torch.

Tolerances
----------
A convolution output is a sum of ``L = C_in/groups * prod(kernel)`` products.
The forward error of any summation order is bounded by ``gamma_L * S`` where
``S`` is the same sum taken over absolute values (``conv(|x|, |w|) + |b|``);
so we check ``|y - ref| <= RTOL[dtype] * S`` elementwise, which holds for
inputs of any magnitude and sign and does not break down where outputs cancel
to near zero.  The factor was set from measurement (numbaconv 0.1, direct
algorithm): over the named cases with unit-normal data the largest observed
``|y - ref| / S`` was 2.1 eps; with the input scaled by 10**-3 ... 10**3
against a unit bias it was 4.8 eps (float32 and float64 alike); on larger
reductions (L = 576 ... 4080) it stayed below 1.2 eps, because vectorised
summation keeps 8 partial sums and grows far slower than the worst-case
``L * eps``.  We allow 16 eps: over 3x headroom, and still tight enough that
one dropped or doubled term (an error of about S / L, with L <= 320 in these
tests) fails by four orders of magnitude.

float16 results are computed in float32 and rounded once, so they get an
extra half unit in the last place of float16 relative to ``|ref|``.

The ``fft`` algorithm's error is not elementwise: every output of a
transformed tile carries rounding from the whole tile, so small outputs next
to large ones get errors of the large ones' size.  Its bound is normwise:
``|y - ref| <= 16 eps * B`` over the output, ``B`` the largest magnitude an
output can have (see :func:`tolerance`; ``B >= max(S)``).  Measured (2026-11-29) over
the named cases in float32 and float64, with the input scaled by 1e-3, 1
and 1e3: at most 1.7 eps * max(S) (elementwise, 17 eps * S once); the
growth with transform size is in docs/results-fft.md.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# The thread-count test compares 1 and 2 numba threads; ask for 2 even on a
# one-core machine (must be set before numba is imported).
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
# The GPU path runs under numba's CUDA simulator, in this same process: it
# must be switched on before numba is first imported.  It only replaces
# numba.cuda; the CPU kernels are unaffected.
os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numbaconv as nc  # noqa: E402
from numbaconv.cuda import launch, numba_cuda_missing  # noqa: E402  (no numba.cuda import)

# tiny blocks and tiles, so that the tiny GPU cases span several blocks
launch.use_small_blocks()

#: Why GPU calls cannot run here, or None.  The GPU backend needs the
#: ``cuda`` extra (numba-cuda, simulator included: Note [numba-cuda] of
#: numbaconv/cuda/__init__.py); ``pip install ".[test]"`` alone has numba's
#: own deprecated CUDA target, whose compiles fail on our kernels.
NUMBA_CUDA_MISSING = numba_cuda_missing()
#: For a test (or a module: ``pytestmark = needs_numba_cuda``) that needs the
#: ``cuda`` extra: skipped, saying why, without it.
needs_numba_cuda = pytest.mark.skipif(
    NUMBA_CUDA_MISSING is not None,
    reason=f"the GPU tests need the cuda extra: {NUMBA_CUDA_MISSING}")

# The tests check each algorithm against its own error bound; a developer's
# NUMBACONV_TUNE=1 must not turn "auto" into a measured (and machine-
# dependent) choice.  tests/test_tuning.py switches tuning on where it tests it.
nc.set_tuning(False)

EPS = {np.dtype(np.float16): float(np.finfo(np.float32).eps),
       np.dtype(np.float32): float(np.finfo(np.float32).eps),
       np.dtype(np.float64): float(np.finfo(np.float64).eps)}
RTOL_FACTOR = 16.0

try:  # torch is optional: parity tests skip without it
    import torch
except ImportError:  # pragma: no cover - exercised on machines without torch
    torch = None

CONV = {1: nc.conv1d, 2: nc.conv2d, 3: nc.conv3d}


def error_scale(x, w, b, **kwargs):
    """``conv(|x|, |w|) + |b|`` in float64: the summation error scale."""
    s = nc.conv_reference(np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(w, np.float64)),
                          None, **kwargs)
    if b is not None:
        s = s + np.abs(np.asarray(b, np.float64)).reshape((-1,) + (1,) * (w.ndim - 2))
    return s


#: algorithms whose error bound is normwise (module notes), with the factor
#: on ``eps * max(S)``.  Winograd F(4x4, 3x3)'s transforms amplify rounding:
#: measured at most 15 (float32) and 29 (float64) eps * max(S) over 1-D, 2-D
#: and 3-D layers with inputs scaled 1e-3 ... 1e3 (docs/results-winograd.md),
#: so it gets 256; F(2x2, 3x3) measured 1.0 and gets the usual 16.
NORMWISE = {"fft": RTOL_FACTOR, "winograd_f2": RTOL_FACTOR, "winograd": 256.0}


def tolerance(x, w, b, dtype, algorithm=None, factor=RTOL_FACTOR, **kwargs):
    """The error bound (array, or scalar for normwise algorithms); ``factor``
    scales the elementwise bound (e.g. 32 when comparing with PyTorch).

    The normwise scale is the largest magnitude any output can have,
    ``max|x| * max_co sum|w[co]| + max|b|`` (at least ``max S``): a
    transform's rounding comes from every value in its tile, even where no
    output window reaches them (a hypothesis example with all-zero ``S`` and
    nonzero input got 3e-9 from the FFT).  ``algorithm=None`` (or
    ``"auto"``) means the algorithm ``"auto"`` picks for this problem."""
    scale = error_scale(x, w, b, **kwargs)
    if algorithm in (None, "auto"):
        from numbaconv.dispatch import resolve_algorithm
        kw = {k: v for k, v in kwargs.items()}
        spec = spec_of(np.shape(x), np.shape(w), np.result_type(x, w), **kw)
        algorithm = resolve_algorithm("auto", spec).name
    if algorithm in NORMWISE:
        w64 = np.abs(np.asarray(w, np.float64))
        largest = (np.abs(np.asarray(x, np.float64)).max(initial=0.0)
                   * w64.reshape(w64.shape[0], -1).sum(axis=1).max(initial=0.0)
                   + (0.0 if b is None else np.abs(np.asarray(b, np.float64)).max(initial=0.0)))
        scale = max(scale.max(initial=0.0), largest) * NORMWISE[algorithm] / RTOL_FACTOR
    return factor * EPS[np.dtype(dtype)] * scale


def assert_matches_reference(y, x, w, b=None, algorithm=None, **kwargs):
    """Check ``y`` against the float64 reference within the stated tolerance."""
    ref = nc.conv_reference(x, w, b, **kwargs)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    dtype = np.result_type(x, w, *(() if b is None else (b,)))
    assert y.dtype == dtype, (y.dtype, dtype)
    bound = tolerance(x, w, b, dtype, algorithm, **kwargs)
    if dtype == np.float16:
        bound = bound + np.abs(ref) * float(np.finfo(np.float16).eps) / 2 + 1e-7
    err = np.abs(y.astype(np.float64) - ref)
    bound = np.broadcast_to(bound, err.shape)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert np.all(err <= bound), (
        f"max error {err.max():.3g} exceeds bound at {worst}: err={err[worst]:.3g} "
        f"bound={bound[worst]:.3g}")
    return ref


def spec_of(shape, wshape, dtype=np.float32, **kwargs):
    """The spec of a problem given by shapes (no data)."""
    from numbaconv.spec import make_conv_spec
    ndim = len(wshape) - 2
    return make_conv_spec(f"conv{ndim}d", ndim, np.empty(shape, dtype), np.empty(wshape, dtype),
                          None, **kwargs)


def run_canonical(forward, x, w, b, **kwargs):
    """Call an algorithm's ``forward(spec, x5, w5, epilogue, out)`` the way
    the API does (canonical 3-D arrays, NaN-filled ``out``); return the
    user-shaped result.  Lets tests force an algorithm's internal choices."""
    from numbaconv.epilogue import Epilogue
    from numbaconv.spec import make_conv_spec
    ndim = w.ndim - 2
    spec = make_conv_spec(f"conv{ndim}d", ndim, x, w, b, **kwargs)
    x5 = np.ascontiguousarray(x.reshape(spec.input_shape[:2] + spec.input_size3))
    w5 = np.ascontiguousarray(w.reshape(w.shape[:2] + (1,) * (3 - ndim) + w.shape[2:]))
    out = np.full(spec.output_shape[:2] + spec.output_size3, np.nan, x.dtype)
    forward(spec, x5, w5, Epilogue.of(b, spec.compute_dtype), out)
    return out.reshape(spec.user_output_shape)


def torch_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """PyTorch's result for the same arguments (same dtype), as NumPy."""
    ndim = w.ndim - 2
    tx = torch.from_numpy(np.ascontiguousarray(x))
    tw = torch.from_numpy(np.ascontiguousarray(w))
    tb = None if b is None else torch.from_numpy(np.ascontiguousarray(b))
    if padding_mode != "zeros":
        cls = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[ndim]
        module = cls(w.shape[1] * groups, w.shape[0], w.shape[2:], stride=stride,
                     padding=padding, dilation=dilation, groups=groups, bias=b is not None,
                     padding_mode=padding_mode).to(tw.dtype)
        with torch.no_grad():
            module.weight.copy_(tw)
            if b is not None:
                module.bias.copy_(tb)
            return module(tx).numpy()
    fn = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
          3: torch.nn.functional.conv3d}[ndim]
    return fn(tx, tw, tb, stride=stride, padding=padding, dilation=dilation,
              groups=groups).numpy()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
