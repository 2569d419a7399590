"""The GPU Winograd kernels (numbaconv/kernels/winograd_cuda.py) under numba's
CUDA simulator, and compiled for real hardware (sm_90 PTX) in a subprocess.

The pipeline is compared with ``conv_reference`` in float64.  Tolerance:
``|y - ref| <= RTOL * S`` elementwise, ``S = conv(|x|, |w|) + |b|`` (the
sum of absolute products, conftest.error_scale), with RTOL 1e-4 in float32
and 1e-10 in float64.  That is loose against the measured transform error
(F(4x4, 3x3) at most 29 eps * max S, conftest.NORMWISE; here 3-D corners
have S down to 8/27 of max S), and still far below the S / L (L <= 81) that
a dropped or doubled product would cost.

The simulator runs every GPU thread as a Python thread, so the problems are
tiny; conftest shrinks the blocks (launch.use_small_blocks), so that they
still span several blocks and the grid-stride loops wrap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from numba import cuda

import numbaconv as nc
from numbaconv.kernels.winograd_weights import axis_matrices, extended_maps, transformed_weight
from numbaconv.cuda import launch
from numbaconv.spec import problem_spec
from numbaconv.kernels import winograd_cuda as wc

from .conftest import error_scale, needs_numba_cuda

# the cuda extra (numba-cuda), or skip saying why (tests/conftest.py)
pytestmark = needs_numba_cuda

RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------
# a plain batched GEMM: one thread per output (the real one is
# im2col_cuda.batched_gemm, tested with the pipeline below where it exists)


@cuda.jit
def _naive_batched_gemm(a, b, c):
    B, rows, cols = c.shape
    K = a.shape[2]
    start, step = cuda.grid(1), cuda.gridsize(1)
    for i in range(start, B * rows * cols, step):
        batch = i // (rows * cols)
        rest = i - batch * rows * cols
        row = rest // cols
        col = rest - row * cols
        s = a[batch, row, 0] * b[batch, 0, col]
        for k in range(1, K):
            s += a[batch, row, k] * b[batch, k, col]
        c[batch, row, col] = s


def naive_gemm(a, b, c, stream):
    """c[i] = a[i] @ b[i]: the contract winograd_conv's ``gemm`` must keep."""
    assert a.shape[0] == b.shape[0] == c.shape[0]
    assert a.shape[2] == b.shape[1] and c.shape[1:] == (a.shape[1], b.shape[2])
    if c.size:
        _naive_batched_gemm[launch.blocks_for(c.size), launch.THREADS, stream](a, b, c)


# --------------------------------------------------------------------------
# helpers


def _problem(rng, ndim, n, cin, cout, size, groups, dtype, bias):
    x = rng.standard_normal((n, cin) + size).astype(dtype)
    w = rng.standard_normal((cout, cin // groups) + (3,) * ndim).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    return x, w, b


def _gpu_winograd(x, w, b, m, padding, groups, padding_mode, gemm=naive_gemm):
    """winograd_conv on device copies of the canonical 3-D arrays, built the
    way the brief's caller does: spec from problem_spec, U from
    transformed_weight, maps from extended_maps."""
    ndim = w.ndim - 2
    dtype = x.dtype
    spec = problem_spec(x.shape, w.shape, padding=padding, groups=groups,
                        padding_mode=padding_mode, dtype=dtype)
    used = [a >= 3 - ndim for a in range(3)]
    grid = tuple(-(-o // (m if u else 1)) for o, u in zip(spec.output_size3, used))
    assert grid == wc.tile_grid(spec.output_size3, ndim, m)
    maps = tuple(cuda.to_device(mp) for mp in extended_maps(spec, grid, m, used))
    w5 = w.reshape(w.shape[:2] + (1,) * (3 - ndim) + w.shape[2:])
    U = cuda.to_device(transformed_weight(w5, m, ndim, groups))
    mats = tuple((cuda.to_device(AT), cuda.to_device(BT))
                 for AT, _, BT in (axis_matrices(m, u, dtype) for u in used))
    x5 = cuda.to_device(np.ascontiguousarray(x.reshape(spec.input_shape[:2] + spec.input_size3)))
    out = cuda.to_device(np.full(spec.output_shape[:2] + spec.output_size3, np.nan, dtype))
    bias = None if b is None else cuda.to_device(b)
    stream = cuda.stream()
    result = wc.winograd_conv(x5, maps, U, mats, bias, out, m, groups, gemm, stream)
    assert result is out
    stream.synchronize()
    return out.copy_to_host().reshape(spec.user_output_shape)


def _check(y, x, w, b, **kwargs):
    ref = nc.conv_reference(x, w, b, **kwargs)
    assert y.shape == ref.shape and y.dtype == x.dtype
    assert np.isfinite(y).all(), "an output was never written (NaN-filled out)"
    bound = RTOL[y.dtype] * error_scale(x, w, b, **kwargs)
    err = np.abs(y.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (f"max error {err.max():.3g}; at {worst} err {err[worst]:.3g} "
                                  f"> bound {bound[worst]:.3g}")


# --------------------------------------------------------------------------
# the pipeline against the reference

# (ndim, m, batch, C_in, C_out, groups, input size, padding, padding_mode, bias)
CASES = [
    (1, 2, 2, 1, 1, 1, (7,), 0, "zeros", False),
    (1, 2, 1, 2, 2, 2, (5,), 1, "reflect", True),
    (1, 4, 1, 2, 3, 1, (9,), 1, "zeros", True),
    (1, 4, 2, 3, 3, 3, (6,), 1, "circular", False),
    (1, 4, 1, 1, 2, 1, (4,), 1, "replicate", True),       # one partial tile
    (2, 2, 1, 2, 3, 1, (5, 6), 1, "zeros", True),
    (2, 2, 1, 3, 3, 3, (4, 5), 1, "reflect", True),        # depthwise
    (2, 2, 2, 1, 2, 1, (3, 4), 0, "zeros", False),
    (2, 4, 2, 1, 2, 1, (6, 7), 0, "zeros", False),
    (2, 4, 1, 2, 2, 2, (5, 5), 1, "replicate", True),
    (2, 4, 1, 2, 1, 1, (7, 5), 1, "circular", False),      # cropped edge tiles
    (2, 4, 1, 2, 4, 2, (9, 6), 1, "zeros", True),          # 2 in, 2 out per group
    (3, 2, 1, 2, 2, 1, (4, 4, 5), 1, "zeros", True),
    (3, 2, 2, 2, 2, 2, (3, 4, 3), 1, "circular", False),
    (3, 4, 1, 1, 2, 1, (5, 4, 6), 0, "zeros", False),
    (3, 4, 1, 2, 2, 2, (4, 3, 5), 1, "reflect", True),
    (3, 4, 1, 3, 3, 1, (3, 3, 4), 1, "replicate", True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: (f"{c[0]}d-F{c[1]}-n{c[2]}-c{c[3]}x{c[4]}"
                                                       f"-g{c[5]}-p{c[7]}-{c[8]}"
                                                       f"{'-bias' if c[9] else ''}"))
def test_winograd_conv_matches_reference(case, dtype):
    ndim, m, n, cin, cout, groups, size, padding, mode, bias = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, b = _problem(rng, ndim, n, cin, cout, size, groups, dtype, bias)
    y = _gpu_winograd(x, w, b, m, padding, groups, mode)
    _check(y, x, w, b, padding=padding, groups=groups, padding_mode=mode)


def test_with_im2col_batched_gemm():
    """The pipeline with the GPU backend's own batched GEMM, where it exists."""
    try:
        from numbaconv.kernels import im2col_cuda
    except ModuleNotFoundError as exc:
        if exc.name != "numbaconv.kernels.im2col_cuda":
            raise
        pytest.skip("numbaconv/kernels/im2col_cuda.py does not exist yet")
    if not hasattr(im2col_cuda, "batched_gemm"):
        pytest.skip("numbaconv.kernels.im2col_cuda has no batched_gemm yet")
    rng = np.random.default_rng(7)
    for dtype, (ndim, m, size, groups) in [(np.float32, (2, 2, (4, 3), 2)),
                                           (np.float64, (1, 4, (7,), 1))]:
        x, w, b = _problem(rng, ndim, 1, 2, 4, size, groups, dtype, True)
        y = _gpu_winograd(x, w, b, m, 1, groups, "zeros", gemm=im2col_cuda.batched_gemm)
        _check(y, x, w, b, padding=1, groups=groups)


def test_device_helpers_match_the_cpu_pieces():
    """device_maps / device_weight / device_matrices build what the test
    builds by hand, and the pipeline runs on them (UT given, no transpose)."""
    rng = np.random.default_rng(3)
    x, w, b = _problem(rng, 2, 1, 2, 2, (5, 6), 2, np.float32, True)
    spec = problem_spec(x.shape, w.shape, padding=1, groups=2, dtype=np.float32)
    m = 4
    maps = wc.device_maps(spec, m, 0)
    grid = wc.tile_grid(spec.output_size3, 2, m)
    assert grid == (1, 2, 2)
    used = [False, True, True]
    for got, want in zip(maps, extended_maps(spec, grid, m, used)):
        np.testing.assert_array_equal(got.copy_to_host(), want)
    w5 = w.reshape(w.shape[:2] + (1,) + w.shape[2:])
    UT = wc.device_weight(w5, m, 2, 2, 0)
    np.testing.assert_array_equal(UT.copy_to_host(),
                                  transformed_weight(w5, m, 2, 2).transpose(0, 1, 3, 2))
    mats = wc.device_matrices(m, 2, np.float32, 0)
    assert [(AT.shape, BT.shape) for AT, BT in mats] == [((1, 1), (1, 1)), ((4, 6), (6, 6)),
                                                         ((4, 6), (6, 6))]
    for (AT, BT), u in zip(mats, used):
        want_AT, _, want_BT = axis_matrices(m, u, np.float32)
        np.testing.assert_array_equal(AT.copy_to_host(), want_AT)
        np.testing.assert_array_equal(BT.copy_to_host(), want_BT)
    out = cuda.device_array(spec.output_shape[:2] + spec.output_size3, np.float32)
    wc.winograd_conv(cuda.to_device(x.reshape(1, 2, 1, 5, 6)), maps, UT, mats,
                     cuda.to_device(b), out, m, 2, naive_gemm, 0, weight_transposed=True)
    _check(out.copy_to_host().reshape(spec.user_output_shape), x, w, b, padding=1, groups=2)


# --------------------------------------------------------------------------
# the transforms alone (localise a failure of the pipeline)


def test_input_transform_matches_numpy():
    """V[:, c, p] against the Kronecker transform of the padded, extended
    input in NumPy (2-D F(4x4, 3x3), two images, reflect padding)."""
    rng = np.random.default_rng(11)
    m, N, C = 4, 2, 3
    x = rng.standard_normal((N, C, 5, 7))
    spec = problem_spec(x.shape, (2, C, 3, 3), padding=1, padding_mode="reflect",
                        dtype=np.float64)
    used = [False, True, True]
    grid = wc.tile_grid(spec.output_size3, 2, m)
    maps = extended_maps(spec, grid, m, used)
    BT = [axis_matrices(m, u, np.float64)[2] for u in used]
    x5 = x.reshape(N, C, 1, 5, 7)
    # the padded input, extended with zeros to whole tiles
    idx = np.ix_(*[np.maximum(mp, 0) for mp in maps])
    xp = x5[(slice(None), slice(None)) + idx]
    xp = xp * ((maps[0] >= 0)[:, None, None] & (maps[1] >= 0)[:, None] & (maps[2] >= 0))
    P = N * int(np.prod(grid))
    want = np.empty((36, C, P))
    for n in range(N):
        for th in range(grid[1]):
            for tw in range(grid[2]):
                p = (n * grid[1] + th) * grid[2] + tw
                patch = xp[n, :, :1, th * m:th * m + 6, tw * m:tw * m + 6]
                want[:, :, p] = np.einsum("ai,bj,ck,xijk->abcx", *BT, patch).reshape(36, C)
    V = cuda.device_array((36, C, P), np.float64)
    wc.input_transform(cuda.to_device(x5), *(cuda.to_device(mp) for mp in maps),
                       *(cuda.to_device(t) for t in BT), grid, V, 0)
    np.testing.assert_allclose(V.copy_to_host(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("with_bias", [False, True])
def test_output_transform_crops_and_adds_bias(with_bias):
    """out against NumPy's AT M AT^T per tile, cropped to a 3-D output that
    the tiles overhang on every axis; elements outside out stay untouched."""
    rng = np.random.default_rng(5)
    m, N, Co = 2, 1, 2
    osize = (3, 5, 3)
    grid = tuple(-(-o // m) for o in osize)
    P = N * int(np.prod(grid))
    AT = axis_matrices(m, True, np.float64)[0]
    M = rng.standard_normal((64, Co, P))
    bias = rng.standard_normal(Co) if with_bias else None
    want = np.empty((N, Co) + tuple(g * m for g in grid))
    for p in range(P):
        td, th, tw = np.unravel_index(p, grid)
        tile = np.einsum("ai,bj,ck,ijkx->xabc", AT, AT, AT, M[:, :, p].reshape(4, 4, 4, Co))
        want[0, :, td * m:td * m + m, th * m:th * m + m, tw * m:tw * m + m] = tile
    if with_bias:
        want += bias.reshape(-1, 1, 1, 1)
    want = want[:, :, :osize[0], :osize[1], :osize[2]]
    # out is a view into a larger NaN-filled buffer's first image: the
    # second image must stay NaN (no write past the cropped edges)
    buf = cuda.to_device(np.full((2, Co) + osize, np.nan))
    out = buf[:1]
    wc.output_transform(cuda.to_device(M), *(cuda.to_device(AT) for _ in range(3)),
                        None if bias is None else cuda.to_device(bias), grid, out, 0)
    got = buf.copy_to_host()
    np.testing.assert_allclose(got[:1], want, rtol=1e-12, atol=1e-12)
    assert np.isnan(got[1:]).all()


# --------------------------------------------------------------------------
# argument checks and empty problems


def test_rejects_mismatched_weight_layout_and_matrices():
    """U in the other layout than weight_transposed says (detectable where
    C_in/g != C_out/g), and matrices of another tile size: clear errors."""
    rng = np.random.default_rng(2)
    x, w, _ = _problem(rng, 1, 1, 2, 3, (6,), 1, np.float64, False)
    spec = problem_spec(x.shape, w.shape, padding=1, dtype=np.float64)
    w5 = w.reshape(3, 2, 1, 1, 3)
    x5 = cuda.to_device(x.reshape(1, 2, 1, 1, 6))
    maps = wc.device_maps(spec, 2, 0)
    U = cuda.to_device(transformed_weight(w5, 2, 1, 1))
    UT = wc.device_weight(w5, 2, 1, 1, 0)
    mats = wc.device_matrices(2, 1, np.float64, 0)
    out = cuda.device_array(spec.output_shape[:2] + spec.output_size3, np.float64)
    with pytest.raises(ValueError, match=r"UT has shape \(4, 1, 2, 3\), expected \(4, 1, 3, 2\)"):
        wc.winograd_conv(x5, maps, U, mats, None, out, 2, 1, naive_gemm, 0,
                         weight_transposed=True)
    with pytest.raises(ValueError, match=r"U has shape \(4, 1, 3, 2\), expected \(4, 1, 2, 3\)"):
        wc.winograd_conv(x5, maps, UT, mats, None, out, 2, 1, naive_gemm, 0)
    with pytest.raises(ValueError, match=r"not F\(4, 3\)"):
        wc.winograd_conv(x5, maps, U, mats, None, out, 4, 1, naive_gemm, 0)


def test_empty_batch_launches_nothing():
    def no_gemm(*args):
        raise AssertionError("gemm called for an empty problem")

    spec = problem_spec((0, 2, 6), (3, 2, 3), padding=1, dtype=np.float32)
    out = cuda.device_array((0, 3, 1, 1, 6), np.float32)
    w5 = np.ones((3, 2, 1, 1, 3), np.float32)
    result = wc.winograd_conv(cuda.device_array((0, 2, 1, 1, 6), np.float32),
                              wc.device_maps(spec, 2, 0),
                              cuda.to_device(transformed_weight(w5, 2, 1, 1)),
                              wc.device_matrices(2, 1, np.float32, 0), None, out, 2, 1,
                              no_gemm, 0)
    assert result is out


# --------------------------------------------------------------------------
# real-hardware compilation


_PTX_SCRIPT = textwrap.dedent("""
    import json, re, sys
    from numba import cuda, types

    def trivial(a):
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] = 1.0
    try:
        cuda.compile_ptx(trivial, (types.float32[::1],), cc=(9, 0))
    except Exception as exc:
        print(json.dumps({"no_toolkit": f"{type(exc).__name__}: {exc}"}))
        sys.exit(0)

    # the kernels call a device helper (numbaconv.cuda.device.unravel), which
    # numba-cuda compiles for the current device even here; without a driver,
    # say it is the target's, 9.0 (as tests/test_gpu_im2col_kernels.py does)
    import types as pytypes
    import numba.cuda.dispatcher as dispatcher
    try:
        dispatcher.get_current_device()
    except Exception:
        dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))

    from numbaconv.kernels import winograd_cuda
    results = []
    for name, func, signature in winograd_cuda.ptx_kernels():
        ptx, restype = cuda.compile_ptx(func, signature, cc=(9, 0))
        f64 = sorted(set(re.findall(r"\\b(?:add|sub|mul|fma|div)(?:\\.rn)?\\.f64\\b"
                                    r"|\\bcvt\\.f64\\.f32\\b", ptx)))
        results.append({"name": name, "sm_90": ".target sm_90" in ptx,
                        "entry": ".entry" in ptx, "restype": str(restype), "f64_ops": f64})
    print(json.dumps({"kernels": results}))
""")


def test_kernels_compile_to_sm90_ptx():
    """Every kernel, float32 and float64, through NVVM for sm_90, in a
    process without the simulator (the simulator replaces numba.cuda
    process-wide).  The float32 kernels must not contain float64 arithmetic
    (a literal 0.0 accumulator would silently promote them)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", _PTX_SCRIPT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "no_toolkit" in report:
        pytest.skip(f"numba.cuda.compile_ptx cannot compile even a trivial kernel here "
                    f"(no usable CUDA toolkit / NVVM): {report['no_toolkit']}")
    kernels = report["kernels"]
    names = sorted(k["name"] for k in kernels)
    assert names == sorted(f"winograd_{part}[{dt}]" for dt in ("float32", "float64")
                           for part in ("transpose_matrices", "input_transform",
                                        "output_transform"))
    for k in kernels:
        assert k["sm_90"] and k["entry"] and k["restype"] == "none", k
        if "float32" in k["name"]:
            assert k["f64_ops"] == [], k
        elif "transpose" not in k["name"]:
            assert "fma.rn.f64" in k["f64_ops"], k
