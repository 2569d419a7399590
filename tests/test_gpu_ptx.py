"""Every GPU kernel compiles for a real GPU (compute capability 9.0).

The simulator runs kernels as Python, where type errors hide; so each
kernel module's ``ptx_kernels()`` is compiled with
``numba.cuda.compile_ptx(..., cc=(9, 0))`` in a child process without
``NUMBA_ENABLE_CUDASIM`` (the toolkit wheels of the ``cuda`` extra make that
work without a GPU).  Skipped, with the reason, without the ``cuda`` extra
(numba's own deprecated CUDA target cannot compile these kernels: Note
[numba-cuda] of numbaconv/cuda/__init__.py) or where no CUDA toolkit is
installed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import needs_numba_cuda

# the cuda extra (numba-cuda), or skip saying why (tests/conftest.py)
pytestmark = needs_numba_cuda

MODULES = ["numbaconv.cuda.arrays", "numbaconv.kernels.direct_cuda"]

SCRIPT = """
import importlib, sys
from numba import cuda
from numbaconv.cuda import launch
launch.use_small_blocks() if sys.argv[2] == "small" else None
module = importlib.import_module(sys.argv[1])
for name, fn, sig in module.ptx_kernels():
    cuda.compile_ptx(fn, sig, cc=(9, 0))
    print("compiled", name)
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
    assert "compiled" in done.stdout
