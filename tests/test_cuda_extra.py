"""The GPU backend needs the ``cuda`` extra (Note [numba-cuda] of
numbaconv/cuda/__init__.py), and says so.

Without numba-cuda, ``numba.cuda`` is numba's own deprecated CUDA target,
which cannot compile numbaconv's kernels; GPU arrays, simulated or real,
are then refused with the install command, ``numbaconv info`` says the
same, and the GPU tests skip (tests/conftest.py: ``needs_numba_cuda``).
These tests run in both environments: in one without the extra they see
the real thing (``pip install ".[test]"`` alone), in one with it they fake
its absence.  The simulated device arrays they pass come from whichever
``numba.cuda`` simulator is installed (tests/conftest.py switches it on).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import numbaconv as nc
import numbaconv.cuda as backend
from numbaconv.cli import main

from .conftest import NUMBA_CUDA_MISSING

INSTALL = 'pip install "numbaconv[cuda]"'


@pytest.fixture
def without_numba_cuda(monkeypatch):
    """numba-cuda absent as numbaconv sees it (really absent, or faked)."""
    monkeypatch.setattr(backend, "_numba_cuda_installed", lambda: False)


def test_the_one_check_sees_the_environment():
    installed = importlib.util.find_spec("numba_cuda") is not None
    assert (backend.numba_cuda_missing() is None) == installed
    assert (NUMBA_CUDA_MISSING is None) == installed
    if installed:
        from numba import cuda
        assert cuda.implementation == "NVIDIA"      # numba-cuda took over numba.cuda
    else:
        assert INSTALL in backend.numba_cuda_missing()


def test_numba_cuda_installed_but_not_in_charge_is_missing(monkeypatch):
    monkeypatch.setattr(backend, "_numba_cuda_installed", lambda: True)
    monkeypatch.setitem(sys.modules, "numba.cuda", types.SimpleNamespace(implementation="Built-in"))
    reason = backend.numba_cuda_missing()
    assert "numba's built-in CUDA target (Built-in)" in reason and INSTALL in reason


def _device(shape):
    from numba import cuda
    return cuda.to_device(np.ones(shape, np.float32))


def test_gpu_arrays_without_numba_cuda_get_the_install_command(without_numba_cuda):
    x, w = _device((1, 2, 5, 5)), _device((3, 2, 3, 3))
    calls = [
        ("conv2d", "input", lambda: nc.conv2d(x, w)),
        ("conv_transpose2d", "input", lambda: nc.conv_transpose2d(x, _device((2, 3, 3, 3)))),
        ("grad.conv2d_weight", "input",
         lambda: nc.grad.conv2d_weight(x, (3, 2, 3, 3), _device((1, 3, 3, 3)))),
        ("grad.conv2d_input", "weight",
         lambda: nc.grad.conv2d_input((1, 2, 5, 5), w, _device((1, 3, 3, 3)))),
    ]
    for op, name, call in calls:
        with pytest.raises(ImportError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"{op}: {name} is a GPU array, and numbaconv's GPU backend "
                                  f"needs numba-cuda"), message
        assert message.endswith(INSTALL), message
        assert caught.value.name == "numba_cuda"


def test_host_calls_do_not_need_numba_cuda(without_numba_cuda):
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    assert nc.conv2d(x, w).shape == (1, 3, 3, 3)
    # mixing devices is still the TypeError it was
    with pytest.raises(TypeError, match="all arrays must be on one device"):
        nc.conv2d(_device((1, 2, 5, 5)), w)


def test_info_says_the_gpu_backend_needs_the_extra(without_numba_cuda, capsys, monkeypatch):
    from numbaconv.cuda import info
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")   # even with the simulator on
    lines, usable = info.status()
    assert usable is False
    assert lines == [f"CUDA: {backend.numba_cuda_missing()}"]
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "needs numba-cuda, which is not installed" in text and INSTALL in text
    assert "GPU algorithms: none" in text


def test_import_does_not_load_numba_cuda():
    """``import numbaconv`` never imports numba.cuda, with or without the extra
    (the backend is imported by the first GPU call)."""
    code = "import sys, numbaconv; print('numba.cuda' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    assert out == "False"
