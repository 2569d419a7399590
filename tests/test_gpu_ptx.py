"""Every GPU kernel compiles for a real GPU (compute capability 9.0).

The simulator runs kernels as Python, where type errors hide; so each
kernel module's ``ptx_kernels()`` is compiled with
``numba.cuda.compile_ptx(..., cc=(9, 0))`` in a child process without
``NUMBA_ENABLE_CUDASIM`` (the toolkit wheels of the ``cuda`` extra make that
work without a GPU).  Skipped, with the reason, without the ``cuda`` extra
(numba's own deprecated CUDA target cannot compile these kernels: Note
[numba-cuda] of numbaconv/cuda/__init__.py) or where no CUDA toolkit is
installed.

The float32 kernels must contain no float64 arithmetic: a Python float
literal in a kernel or a device helper (e.g. the epilogue's activation
constants, Note [GPU epilogue] in kernels/epilogue_cuda.py) silently
promotes a float32 kernel to float64, a fraction of its speed on most GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import needs_numba_cuda

# the cuda extra (numba-cuda), or skip saying why (tests/conftest.py)
pytestmark = needs_numba_cuda

#: im2col_cuda and winograd_cuda have their own PTX tests (with their
#: register and float64 checks) in tests/test_gpu_im2col_kernels.py and
#: tests/test_gpu_winograd_kernels.py.
MODULES = ["numbaconv.cuda.arrays", "numbaconv.kernels.direct_cuda",
           "numbaconv.kernels.epilogue_cuda", "numbaconv.kernels.fft_cuda"]

SCRIPT = r"""
import importlib, re, sys, types
from numba import cuda
# a kernel that calls a device helper (the epilogue's finish) compiles it
# for the current device even in compile_ptx (numba-cuda 0.30); without a
# driver, say it is the target's, 9.0 (as tests/test_gpu_im2col_kernels.py)
import numba.cuda.dispatcher as dispatcher
try:
    dispatcher.get_current_device()
except Exception:
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
from numbaconv.cuda import launch
launch.use_small_blocks() if sys.argv[2] == "small" else None
module = importlib.import_module(sys.argv[1])
for name, fn, sig in module.ptx_kernels():
    ptx, _ = cuda.compile_ptx(fn, sig, cc=(9, 0))
    f64 = sorted(set(re.findall(r"\b(?:add|sub|mul|fma|div)(?:\.rn)?\.f64\b"
                                r"|\bcvt\.f64\.f32\b", ptx)))
    print("compiled", name, ".target sm_90" in ptx, ",".join(f64) or "-")
"""


def _env():
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


@pytest.fixture(scope="module")
def toolkit():
    probe = ("from numba import cuda, float32\n"
             "def f(x):\n    x[0] = 1\n"
             "cuda.compile_ptx(f, (float32[::1],), cc=(9, 0))\n")
    done = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip("no CUDA toolkit for compile_ptx (pip install '.[cuda]'): "
                    + done.stderr.strip().splitlines()[-1][:200])


@pytest.mark.parametrize("sizes", ["default", "small"])
@pytest.mark.parametrize("module", MODULES)
def test_every_kernel_compiles_for_sm90(toolkit, module, sizes):
    done = subprocess.run([sys.executable, "-c", SCRIPT, module, sizes], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("compiled")]
    assert lines, done.stdout
    for _, name, sm90, f64 in lines:
        assert sm90 == "True", name
        if "float32" in name and "float64" not in name:
            assert f64 == "-", f"{name} has float64 arithmetic: {f64}"
    # the pattern does find float64 arithmetic where there is some
    assert any(f64 != "-" for _, name, _, f64 in lines if "float64" in name), done.stdout
    if module == "numbaconv.cuda.arrays":
        # channels-last packing's transposing copy (Note [GPU memory format] in
        # numbaconv/cuda/arrays.py), float32 and float64, and the float16 casts
        names = {name for _, name, _, _ in lines}
        assert {"transpose_tiles_float32_float32", "transpose_tiles_float64_float64",
                "transpose_tiles_float16_float32", "transpose_tiles_float32_float16"} <= names
