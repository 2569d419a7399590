"""The implicit-GEMM GPU kernels (:mod:`numbaconv.kernels.im2col_cuda`).

They run under numba's CUDA simulator (tests/conftest.py switches it on and
shrinks the tiles with ``launch.use_small_blocks()``), so the cases are tiny
but still span several tiles along M, N and K, with ragged edges.  Results
are compared with float64 references: an error of at most ``RTOL[dtype]``
times the sum of the absolute products (``S``, the summation error scale of
tests/conftest.py) per element.  One test compiles every kernel to PTX for
compute capability 9.0 (the real-hardware build) in a subprocess without
the simulator.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba import cuda

import numbaconv as nc
from numbaconv.cuda import launch
from numbaconv.spec import problem_spec
from numbaconv.kernels import im2col_cuda as ic
from numbaconv.padding import padding_maps
from numbaconv.reference import conv_grad_weight_reference, conv_transpose_reference
from numbaconv.rewrites import transposed_weight

from .conftest import needs_numba_cuda

# the cuda extra (numba-cuda), or skip saying why (tests/conftest.py)
pytestmark = needs_numba_cuda

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
F32, F64 = np.float32, np.float64


def assert_close(y, ref, scale, dtype):
    """|y - ref| <= RTOL * S elementwise (S = 0 demands an exact zero)."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert not np.isnan(y).any(), "an output element was not written"
    err = np.abs(y.astype(np.float64) - ref)
    bound = RTOL[np.dtype(dtype)] * scale
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert np.all(err <= bound), (f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at "
                                  f"{worst}")


def to_device(array):
    return cuda.to_device(np.ascontiguousarray(array))


def device_maps(spec):
    return tuple(cuda.to_device(m) for m in padding_maps(spec))


def nan_array(shape, dtype):
    """A device array of NaNs: every element the kernel must write."""
    return cuda.to_device(np.full(shape, np.nan, dtype))


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------

def run_forward(spec, x, w_forward, bias, dtype):
    """implicit_gemm_forward on the canonical forms of ``x`` (the spec's
    input) and ``w_forward`` (the spec's weight); the user-shaped result."""
    x5 = x.reshape(spec.input_shape[:2] + spec.input_size3)
    w5 = w_forward.reshape(spec.weight_shape[:2] + spec.kernel_size3)
    out = nan_array(spec.output_shape[:2] + spec.output_size3, dtype)
    ic.implicit_gemm_forward(to_device(x5), device_maps(spec), to_device(w5),
                             None if bias is None else to_device(bias), out, spec.groups,
                             spec.stride3, spec.dilation3, 0)
    return out.copy_to_host().reshape(spec.output_shape)


FORWARD_CASES = {
    # name: (input shape, weight shape, bias, dtype, problem_spec arguments)
    "1d-pad": ((2, 3, 7), (5, 3, 3), True, F32, dict(padding=1)),
    "1d-stride-dilation-replicate": ((2, 2, 7), (3, 2, 3), False, F64,
                                     dict(stride=2, dilation=2, padding=2,
                                          padding_mode="replicate")),
    "2d-groups-stride-reflect": ((2, 4, 6, 7), (6, 2, 3, 3), True, F32,
                                 dict(stride=2, padding=1, groups=2, padding_mode="reflect")),
    "2d-dilation-circular": ((1, 3, 6, 6), (5, 3, 2, 3), False, F64,
                             dict(dilation=2, padding=2, padding_mode="circular")),
    "2d-same-asymmetric": ((1, 3, 5, 5), (4, 3, 2, 2), True, F64, dict(padding="same")),
    "2d-per-axis": ((2, 2, 5, 7), (3, 2, 3, 2), False, F32,
                    dict(stride=(1, 2), padding=(1, 2), dilation=(2, 1))),
    "3d-replicate": ((1, 2, 3, 4, 5), (3, 2, 2, 3, 3), True, F32,
                     dict(stride=(1, 2, 1), padding=1, padding_mode="replicate")),
    "3d-depthwise-circular": ((1, 4, 3, 3, 4), (4, 1, 2, 2, 2), False, F64,
                              dict(groups=4, dilation=(1, 2, 2), padding=1,
                                   padding_mode="circular")),
}


@pytest.mark.parametrize("name", FORWARD_CASES)
def test_forward_matches_reference(name, rng):
    xs, wsh, with_bias, dtype, kwargs = FORWARD_CASES[name]
    spec = problem_spec(xs, wsh, dtype=np.dtype(dtype).name, **kwargs)
    x, w = random(rng, xs, dtype), random(rng, wsh, dtype)
    b = random(rng, wsh[0], dtype) if with_bias else None
    y = run_forward(spec, x, w, b, dtype)
    ref = nc.conv_reference(x, w, b, **kwargs).reshape(spec.output_shape)
    scale = nc.conv_reference(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                              **kwargs).reshape(spec.output_shape)
    assert_close(y, ref, scale, dtype)


def test_forward_cases_span_several_tiles():
    """The cases exercise ragged tile edges: more than one tile, not a
    multiple of the tile, along M (output channels of a group), N (output
    pixels) and K (weight taps of a group)."""
    sizes = []
    for xs, wsh, _, _, kwargs in FORWARD_CASES.values():
        spec = problem_spec(xs, wsh, **kwargs)
        sizes.append((spec.out_channels_per_group, int(np.prod(spec.output_size)),
                      spec.in_channels_per_group * int(np.prod(spec.kernel_size))))
    for axis, tile in enumerate((launch.TILE_M, launch.TILE_N, launch.TILE_K)):
        assert any(s[axis] > tile and s[axis] % tile for s in sizes), (axis, sizes)


TRANSPOSED_CASES = {
    # name: (input shape, transposed weight shape, bias, dtype, arguments)
    "1d-negative-padding": ((2, 3, 5), (3, 2, 3), True, F32, dict(stride=2, padding=3)),
    "2d-groups-output-padding": ((1, 4, 3, 4), (4, 3, 3, 3), False, F64,
                                 dict(stride=2, padding=1, output_padding=1, groups=2)),
    "3d-dilation": ((1, 2, 2, 2, 2), (2, 3, 2, 2, 2), True, F32,
                    dict(stride=2, dilation=(1, 1, 2))),
}


@pytest.mark.parametrize("name", TRANSPOSED_CASES)
def test_forward_of_transposed_spec(name, rng):
    """The input-dilated forward problem of a transposed convolution (maps
    with holes; negative padding crops), against the scatter reference."""
    xs, wsh, with_bias, dtype, kwargs = TRANSPOSED_CASES[name]
    spec = problem_spec(xs, wsh, transposed=True, dtype=np.dtype(dtype).name, **kwargs)
    assert spec.has_input_dilation
    if name == "1d-negative-padding":
        assert spec.padding[0][0] < 0
    x, w = random(rng, xs, dtype), random(rng, wsh, dtype)
    b = random(rng, spec.out_channels, dtype) if with_bias else None
    groups = kwargs.get("groups", 1)
    y = run_forward(spec, x, transposed_weight(w, groups), b, dtype)
    ref = conv_transpose_reference(x, w, b, **kwargs)
    scale = conv_transpose_reference(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                                     **kwargs)
    assert_close(y, ref.reshape(spec.output_shape), scale.reshape(spec.output_shape), dtype)


def test_forward_empty_batch_launches_nothing():
    spec = problem_spec((0, 2, 5), (3, 2, 3), padding=1)
    out = cuda.device_array(spec.output_shape[:2] + spec.output_size3, np.float32)
    ic.implicit_gemm_forward(cuda.device_array((0, 2, 1, 1, 5), np.float32), device_maps(spec),
                             to_device(np.ones((3, 2, 1, 1, 3), np.float32)), None, out, 1,
                             spec.stride3, spec.dilation3, 0)
    assert out.shape[0] == 0


def test_forward_rejects_mixed_dtypes():
    spec = problem_spec((1, 2, 5), (3, 2, 3))
    with pytest.raises(TypeError, match="float32 or all float64"):
        ic.implicit_gemm_forward(to_device(np.ones((1, 2, 1, 1, 5), np.float32)),
                                 device_maps(spec), to_device(np.ones((3, 2, 1, 1, 3))), None,
                                 cuda.device_array((1, 3, 1, 1, 3), np.float32), 1,
                                 spec.stride3, spec.dilation3, 0)


# ---------------------------------------------------------------------------
# weight gradient
# ---------------------------------------------------------------------------

def run_grad_weight(spec, x, go, dtype):
    x5 = x.reshape(spec.input_shape[:2] + spec.input_size3)
    go5 = go.reshape(spec.output_shape[:2] + spec.output_size3)
    out = nan_array(spec.weight_shape[:2] + spec.kernel_size3, dtype)
    ic.implicit_gemm_grad_weight(to_device(x5), device_maps(spec), to_device(go5), out,
                                 spec.groups, spec.stride3, spec.dilation3, 0)
    return out.copy_to_host().reshape(spec.weight_shape)


def splits_of(spec):
    cout_g = spec.out_channels_per_group
    K = spec.in_channels_per_group * int(np.prod(spec.kernel_size))
    tiles = spec.groups * -(-cout_g // launch.TILE_M) * -(-K // launch.TILE_N)
    return ic.split_reduction(spec.batch * int(np.prod(spec.output_size)), tiles)[0]


GRAD_WEIGHT_CASES = {
    # name: (input shape, weight shape, dtype, arguments, reduction split?)
    "1d-stride": ((2, 3, 7), (5, 3, 3), F64, dict(stride=2, padding=1), False),
    "1d-long": ((7, 2, 6), (3, 2, 2), F32, dict(padding=1), True),
    "2d-groups-dilation": ((2, 4, 6, 6), (6, 2, 2, 3), F32,
                           dict(groups=2, dilation=2, padding=1), True),
    "3d-stride": ((1, 2, 3, 4, 4), (3, 2, 2, 2, 3), F64,
                  dict(stride=(1, 2, 1), padding=1), True),
}


@pytest.mark.parametrize("name", GRAD_WEIGHT_CASES)
def test_grad_weight_matches_reference(name, rng):
    xs, wsh, dtype, kwargs, split = GRAD_WEIGHT_CASES[name]
    spec = problem_spec(xs, wsh, gradient="weight", dtype=np.dtype(dtype).name, **kwargs)
    assert (splits_of(spec) > 1) == split          # both paths are covered
    x, go = random(rng, xs, dtype), random(rng, spec.output_shape, dtype)
    y = run_grad_weight(spec, x, go, dtype)
    ref = conv_grad_weight_reference(x, wsh, go, **kwargs)
    scale = conv_grad_weight_reference(np.abs(x), wsh, np.abs(go), **kwargs)
    assert_close(y, ref, scale, dtype)


def padded_input(spec, x):
    """The padded, input-dilated canonical input, gathered through the maps
    in NumPy (-1 reads an appended zero)."""
    x5 = x.reshape(spec.input_shape[:2] + spec.input_size3).astype(np.float64)
    x5 = np.pad(x5, ((0, 0), (0, 0), (0, 1), (0, 1), (0, 1)))
    map_d, map_h, map_w = padding_maps(spec)
    return x5[:, :, map_d][:, :, :, map_h][:, :, :, :, map_w]


def grad_weight_through_maps(spec, x, go):
    """float64 weight gradient of any spec (every padding mode): per tap,
    the strided window of the padded input times grad_output."""
    xp = padded_input(spec, x)
    g, cin_g, cout_g = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    go = go.astype(np.float64).reshape((spec.batch, g, cout_g, -1))
    xp = xp.reshape((spec.batch, g, cin_g) + xp.shape[2:])
    grad = np.zeros((g, cout_g, cin_g) + spec.kernel_size3)
    for tap in itertools.product(*(range(k) for k in spec.kernel_size3)):
        window = tuple(slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o
                       in zip(tap, spec.dilation3, spec.stride3, spec.output_size3))
        patch = xp[(slice(None),) * 3 + window].reshape(spec.batch, g, cin_g, -1)
        grad[(slice(None),) * 3 + tap] = np.einsum("ngcp,ngop->goc", patch, go)
    return grad.reshape(spec.weight_shape)


@pytest.mark.parametrize("mode, dtype", [("reflect", F32), ("circular", F64),
                                         ("replicate", F32)])
def test_grad_weight_every_padding_mode(mode, dtype, rng):
    """The kernel reads through the maps, so it serves every padding mode
    (the public gradient API takes zeros only; the reference here pads
    through the same maps in NumPy)."""
    xs, wsh = (2, 2, 5, 6), (3, 2, 3, 2)
    spec = problem_spec(xs, wsh, stride=(2, 1), padding=1, padding_mode=mode,
                        dtype=np.dtype(dtype).name)
    x, go = random(rng, xs, dtype), random(rng, spec.output_shape, dtype)
    y = run_grad_weight(spec, x, go, dtype)
    ref = grad_weight_through_maps(spec, x, go)
    scale = grad_weight_through_maps(spec, np.abs(x), np.abs(go))
    assert_close(y, ref, scale, dtype)


def test_grad_weight_maps_reference_agrees_with_public_reference(rng):
    """The maps-based NumPy reference of the test above is right for zeros."""
    kwargs = dict(stride=2, padding=1, dilation=(1, 2), groups=2)
    spec = problem_spec((2, 4, 5, 6), (4, 2, 2, 2), gradient="weight", **kwargs)
    x, go = rng.standard_normal(spec.input_shape), rng.standard_normal(spec.output_shape)
    np.testing.assert_allclose(grad_weight_through_maps(spec, x, go),
                               conv_grad_weight_reference(x, spec.weight_shape, go, **kwargs),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_grad_weight_empty_batch_writes_zeros(dtype):
    spec = problem_spec((0, 3, 5, 5), (4, 3, 3, 3), padding=1, gradient="weight",
                        dtype=np.dtype(dtype).name)
    y = run_grad_weight(spec, np.zeros(spec.input_shape, dtype),
                        np.zeros(spec.output_shape, dtype), dtype)
    assert y.shape == spec.weight_shape and np.all(y == 0)


def test_grad_weight_is_deterministic(rng):
    """Same sizes, same bits (Note [deterministic split]), split or not."""
    xs, wsh, dtype, kwargs, _ = GRAD_WEIGHT_CASES["1d-long"]
    spec = problem_spec(xs, wsh, gradient="weight", **kwargs)
    x, go = random(rng, xs, dtype), random(rng, spec.output_shape, dtype)
    first = run_grad_weight(spec, x, go, dtype)
    assert np.array_equal(first, run_grad_weight(spec, x, go, dtype))


def test_split_reduction_depends_on_sizes_only():
    for reduction, tiles in [(0, 1), (1, 1), (50, 3), (10**6, 9), (10**6, 10**4)]:
        splits, steps = ic.split_reduction(reduction, tiles)
        total = -(-reduction // launch.TILE_K)
        assert 1 <= splits <= ic.MAX_SPLITS
        assert (splits - 1) * steps < max(total, 1) <= splits * steps  # no empty chunk
        assert (splits, steps) == ic.split_reduction(reduction, tiles)
    assert ic.split_reduction(10**6, 10**4)[0] == 1      # enough tiles: no split


# ---------------------------------------------------------------------------
# batched GEMM
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape, dtype", [((3, 5, 7, 9), F32), ((2, 7, 3, 5), F64),
                                          ((1, 1, 9, 3), F32), ((2, 3, 0, 4), F64)],
                         ids=["odd", "odd-f64", "one-row", "empty-k"])
def test_batched_gemm(shape, dtype, rng):
    count, M, K, N = shape
    a, b = random(rng, (count, M, K), dtype), random(rng, (count, K, N), dtype)
    c = nan_array((count, M, N), dtype)
    ic.batched_gemm(to_device(a), to_device(b), c, 0)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert_close(c.copy_to_host(), a64 @ b64, np.abs(a64) @ np.abs(b64), dtype)


def test_batched_gemm_on_a_stream(rng):
    stream = cuda.stream()
    a, b = random(rng, (2, 5, 3), F32), random(rng, (2, 3, 6), F32)
    c = cuda.device_array((2, 5, 6), F32, stream=stream)
    ic.batched_gemm(to_device(a), to_device(b), c, stream)
    stream.synchronize()
    assert_close(c.copy_to_host(), a.astype(F64) @ b, np.abs(a).astype(F64) @ np.abs(b), F32)


def test_batched_gemm_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        ic.batched_gemm(cuda.device_array((2, 3, 4), F32), cuda.device_array((2, 5, 6), F32),
                        cuda.device_array((2, 3, 6), F32), 0)


# ---------------------------------------------------------------------------
# compiling for real hardware
# ---------------------------------------------------------------------------

def test_ptx_kernels_lists_every_kernel():
    names = [name for name, _, _ in ic.ptx_kernels()]
    for kernel in ("implicit_gemm_forward", "implicit_gemm_grad_weight", "sum_splits",
                   "batched_gemm"):
        for dtype in ("float32", "float64"):
            assert f"{kernel}[{dtype}]" in names
    assert len(names) == len(set(names)) == 8


_PTX_SCRIPT = textwrap.dedent(r"""
    import re, sys, types
    from numba import cuda, types as nt

    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, (nt.float32[::1],), cc=(9, 0))
    except Exception as exc:
        print(f"NO-TOOLKIT {type(exc).__name__}: {exc}")
        sys.exit(0)

    # A kernel that calls @cuda.jit(device=True) functions compiles them for
    # the current device's compute capability (numba-cuda's
    # CUDADispatcher.compile_device), which needs a driver; without one, say
    # it is the target's, 9.0.
    import numba.cuda.dispatcher as dispatcher
    try:
        dispatcher.get_current_device()
    except Exception:
        dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))

    from numbaconv.cuda import launch
    if sys.argv[1] == "small":
        launch.use_small_blocks()
    from numbaconv.kernels import im2col_cuda
    for name, pyfunc, signature in im2col_cuda.ptx_kernels():
        ptx, _ = cuda.compile_ptx(pyfunc, signature, cc=(9, 0))
        # helpers inlined (no calls), register blocks kept in registers
        # (no local memory)
        print("KERNEL", name, ".target sm_90" in ptx, ".entry" in ptx,
              len(re.findall(r"\bcall(\.uni)?\s", ptx)),
              len(re.findall(r"\b(ld|st)\.local", ptx)))
""")


@pytest.mark.parametrize("sizes", ["default", "small"])
def test_kernels_compile_to_ptx_for_sm90(sizes):
    """Every kernel compiles for compute capability 9.0 (the simulator runs
    kernels as Python, where typing errors hide), with the hardware tiles
    and with the simulator's small ones."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", _PTX_SCRIPT, sizes], env=env, cwd=root,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    if result.stdout.startswith("NO-TOOLKIT"):
        pytest.skip(f"numba.cuda.compile_ptx cannot compile even a trivial kernel here "
                    f"(no CUDA toolkit?): {result.stdout.strip()}")
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("KERNEL")]
    assert len(lines) == 8, result.stdout + result.stderr
    for _, name, target, entry, calls, local in lines:
        assert (target, entry, calls, local) == ("True", "True", "0", "0"), name
