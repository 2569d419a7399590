"""The examples in examples/ run, in their smoke mode, and say what they should.

Each runs in its own process in a temporary directory with ``MPLBACKEND=Agg``
(no window), and must leave its PNG there.  They need the ``examples``
extra; without it they are skipped.  (examples/dask_filter.py is run by
tests/test_dask.py, examples/quickstart.py by tests/test_tools.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, tmp_path, *args):
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_train_cnn_digits(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = run_example("train_cnn_digits.py", tmp_path, "--smoke")
    worst = float(re.search(r"worst relative error (\S+)", out).group(1))
    assert worst < 1e-5
    assert re.search(r"^test accuracy: 0\.\d{4}$", out, re.M)
    assert re.search(r"accuracy 0\.\d{4} before, 0\.\d{4} after", out)
    assert (tmp_path / "train_cnn_digits.png").stat().st_size > 10_000


def test_filter_image(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    out = run_example("filter_image.py", tmp_path, "--smoke")
    assert len(re.findall(r"auto picks \w+", out)) == 4
    assert len(re.findall(r"max relative difference from SciPy", out)) == 4
    assert "pick:" in out                                   # the nc.explain table
    assert (tmp_path / "filter_image.png").stat().st_size > 10_000


def test_speed_picture(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("speed_picture.py", tmp_path, "--smoke")
    assert len(re.findall(r"^kernel +\d+: .* auto picks \w+$", out, re.M)) == 3
    assert (tmp_path / "speed_picture.png").stat().st_size > 10_000
    # the asv history mode says where results would come from when there are none
    out = run_example("speed_picture.py", tmp_path, "--asv", "depthwise", "--results",
                      str(tmp_path / "no-results"))
    assert "no recorded asv results" in out
