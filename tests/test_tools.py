"""The command line, the benchmark runner and the compiled-code cache."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from numbaconv.bench.suite import PUBLIC_SHAPES, get_cases
from numbaconv.cli import main

from .conftest import torch


def test_suite_flops_match_bench_shapes_convention():
    # 2 * N * C_out * C_in/groups * prod(kernel) * prod(output)
    resnet = get_cases(["resnet3x3"])[0]
    assert resnet.flops == 2 * 4 * 64 * 64 * 9 * 56 * 56
    assert len({c.name for c in PUBLIC_SHAPES}) == len(PUBLIC_SHAPES) == 11


def test_bench_cli_runs_checks_and_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--shapes", "depthwise,up4x4", "--rounds", "2", "--repeats", "1",
                 "--no-progress", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "depthwise" in table and "numbaconv:direct" in table
    rows = {(r["case"], r["impl"]): r for r in json.loads(out.read_text())}
    direct = rows[("depthwise", "numbaconv:direct")]
    assert len(direct["times_ms"]) == 2 and direct["gflops"] > 0
    assert direct["error"] < 1e-5                     # checked against the reference
    assert ("depthwise", "numbaconv:auto->direct") in rows
    assert "not implemented yet" in rows[("up4x4", "numbaconv:direct")]["note"]
    if torch is not None:
        assert len(rows[("depthwise", "torch")]["times_ms"]) == 2
        assert len(rows[("up4x4", "torch")]["times_ms"]) == 2


def test_bench_rejects_unknown_shape(capsys):
    assert main(["bench", "--shapes", "nope", "--no-torch"]) == 2
    assert "unknown benchmark shape" in capsys.readouterr().err


def test_bench_rejects_unknown_algorithm_and_bad_counts(capsys):
    assert main(["bench", "--algorithms", "gpu", "--no-torch"]) == 2
    assert "unknown algorithm" in capsys.readouterr().err
    for option in ("--threads", "--rounds", "--repeats"):
        with pytest.raises(SystemExit):
            main(["bench", option, "0"])


def test_info(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "numba threads" in text
    assert "algorithms: auto, direct, im2col, fft, winograd, winograd_f2" in text
    assert "workspace limit: 64 MiB" in text and "im2col GEMM: " in text


def test_read_only_install_falls_back_to_in_memory_compilation():
    """No writable cache location: import warns, and calls still work.

    numba picks a cache directory by asking each of its locators to create
    and write into one (``ensure_cache_path``); on a read-only install with
    an unwritable home all of them fail and ``cache=True`` raises at import.
    Making that method fail reproduces the situation even when running as
    root, for whom file permissions would not.
    """
    script = textwrap.dedent("""
        import warnings
        import numba.core.caching as caching
        def refuse(self):
            raise OSError("read-only file system (simulated)")
        caching._CacheLocator.ensure_cache_path = refuse
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import numpy as np
            import numbaconv as nc
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert any("cannot cache compiled kernel" in m for m in messages), messages
        x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6)
        w = np.ones((4, 3, 3, 3), np.float32)
        y = nc.conv2d(x, w, padding=1)
        assert np.allclose(y, nc.conv_reference(x, w, padding=1), rtol=1e-5)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "numbaconv", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "bench" in done.stdout


def test_quickstart_example_runs():
    """The example in examples/ stays true to the API."""
    from pathlib import Path
    example = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "max relative error vs float64 reference" in done.stdout
    assert "ValueError: conv2d: groups=3 must divide" in done.stdout


def test_startup_measurement_reports_each_process():
    from numbaconv.bench.runner import measure_startup

    runs = measure_startup(threads=1)
    assert set(runs) == {"cold", "warm", "warm+"}
    for run in runs.values():
        assert {"import_s", "first_call_s", "first_channels_last_call_s"} <= set(run)
    assert "numba_start_s" in runs["warm+"] and "numba_start_s" not in runs["warm"]


def test_history_without_results_says_so(tmp_path, capsys):
    pytest.importorskip("asv")
    assert main(["history", "--results", str(tmp_path), "--machine", "nowhere"]) == 0
    assert "no results for machine 'nowhere'" in capsys.readouterr().out


def test_asv_benchmarks_share_the_suite_and_honour_the_selection(monkeypatch):
    import importlib
    import sys as _sys

    from numbaconv.bench.suite import PUBLIC_SHAPES
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parents[1]))
    monkeypatch.delenv("NUMBACONV_ASV_ONLY", raising=False)
    _sys.modules.pop("asv_benchmarks.benchmarks", None)
    full = importlib.import_module("asv_benchmarks.benchmarks")
    assert full.SHAPES == [c.name for c in PUBLIC_SHAPES if not c.transposed]
    assert "auto" in full.ALGORITHMS and full.DTYPES == ["float32", "float64"]
    monkeypatch.setenv("NUMBACONV_ASV_ONLY", "shape=depthwise;dtype=float32;peer=none")
    _sys.modules.pop("asv_benchmarks.benchmarks", None)
    part = importlib.import_module("asv_benchmarks.benchmarks")
    assert part.SHAPES == ["depthwise"] and part.DTYPES == ["float32"]
    with pytest.raises(NotImplementedError):
        part.TorchPeer().setup("depthwise")
    _sys.modules.pop("asv_benchmarks.benchmarks", None)
