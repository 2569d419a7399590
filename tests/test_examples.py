"""The examples in examples/ run, in their smoke mode, and say what they should.

Each runs in its own process in a temporary directory with ``MPLBACKEND=Agg``
(no window) and ``--out`` a folder in it, and must leave its PNG in that
folder and nothing in the current directory (they wrote into it, the
repository root when run as the README says).  They need the ``examples``
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
    """Run ``name`` in ``tmp_path`` with ``--out tmp_path/out``; its stdout."""
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args, "--out",
                           str(tmp_path / "out")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} <= {"out", "no-results"}   # nothing in cwd
    return done.stdout


@pytest.mark.parametrize("name", ["train_cnn_digits.py", "filter_image.py",
                                  "speed_picture.py", "dask_filter.py"])
def test_examples_write_to_examples_output_by_default(name):
    import runpy
    example = runpy.run_path(str(EXAMPLES / name), run_name="example")   # main() not run
    assert example["OUT"] == EXAMPLES / "output"
    text = (EXAMPLES / name).read_text()
    assert "default=OUT" in text and "examples/output/" in text      # --out and its help
    assert "examples/output/" in (EXAMPLES.parent / ".gitignore").read_text().split()


def test_train_cnn_digits(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = run_example("train_cnn_digits.py", tmp_path, "--smoke")
    worst = float(re.search(r"worst relative error (\S+)", out).group(1))
    assert worst < 1e-5
    assert re.search(r"^test accuracy: 0\.\d{4}$", out, re.M)
    assert re.search(r"accuracy 0\.\d{4} before, 0\.\d{4} after", out)
    assert (tmp_path / "out" / "train_cnn_digits.png").stat().st_size > 10_000


def test_filter_image(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("matplotlib")
    out = run_example("filter_image.py", tmp_path, "--smoke")
    assert len(re.findall(r"auto picks \w+", out)) == 4
    assert len(re.findall(r"max relative difference from SciPy", out)) == 4
    assert "pick:" in out                                   # the nc.explain table
    assert (tmp_path / "out" / "filter_image.png").stat().st_size > 10_000


def test_speed_picture(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("speed_picture.py", tmp_path, "--smoke")
    assert len(re.findall(r"^kernel +\d+: .* auto picks \w+$", out, re.M)) == 3
    assert (tmp_path / "out" / "speed_picture.png").stat().st_size > 10_000
    # the asv history mode says where results would come from when there are none
    out = run_example("speed_picture.py", tmp_path, "--asv", "depthwise", "--results",
                      str(tmp_path / "no-results"))
    assert "no recorded asv results" in out
