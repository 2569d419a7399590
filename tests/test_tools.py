"""The command line, the benchmark runner and the compiled-code cache."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import textwrap

import pytest

from numbaconv.bench.suite import OPS, PUBLIC_SHAPES, BenchCase, bench_points, get_cases, parse_ops
from numbaconv.cli import main

from .conftest import needs_numba_cuda, torch


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
    rows = {(r["case"], r["op"], r["impl"]): r for r in json.loads(out.read_text())}
    # default ops: each shape's own call (forward; transposed for up4x4)
    assert {(case, op) for case, op, _ in rows} == {("depthwise", "forward"),
                                                     ("up4x4", "transposed")}
    direct = rows[("depthwise", "forward", "numbaconv:direct")]
    assert len(direct["times_ms"]) == 2 and direct["gflops"] > 0
    assert direct["error"] < 1e-5                     # checked against the reference
    assert ("depthwise", "forward", "numbaconv:auto->direct") in rows
    up_auto = [r for (case, _, impl), r in rows.items()
               if case == "up4x4" and impl.startswith("numbaconv:auto")]
    assert len(up_auto) == 1 and len(up_auto[0]["times_ms"]) == 2
    assert up_auto[0]["error"] < 1e-5                 # against conv_transpose_reference
    if torch is not None:
        assert len(rows[("depthwise", "forward", "torch")]["times_ms"]) == 2
        assert len(rows[("up4x4", "transposed", "torch")]["times_ms"]) == 2
    # the table says which CPU and instructions it came from
    assert "machine: " in table and "numba compiles for" in table


# Tiny cases for the op dimension: groups, stride and a remainder that needs
# output_padding in the forward case; output_padding in the transposed one.
TINY_FORWARD = BenchCase("tiny2d", "conv2d", (2, 4, 8, 7), (6, 2, 3, 3),
                         dict(stride=2, padding=1, groups=2))
TINY_TRANSPOSED = BenchCase("tiny_up", "conv_transpose2d", (2, 4, 5, 4), (4, 3, 3, 3),
                            dict(stride=2, padding=1, output_padding=1))


def test_suite_ops_points_and_grad_output():
    assert OPS == ("forward", "transposed", "grad_input", "grad_weight")
    assert TINY_FORWARD.ops == OPS and TINY_TRANSPOSED.ops == ("transposed",)
    assert get_cases(["up4x4"])[0].output_shape == (4, 64, 56, 56)
    assert TINY_TRANSPOSED.output_shape == (2, 3, 10, 8)
    assert TINY_FORWARD.output_shape == (2, 6, 4, 4)
    gy = TINY_FORWARD.make_grad_output("float32", seed=3)
    assert gy.shape == (2, 6, 4, 4) and gy.dtype == "float32"
    assert (gy == TINY_FORWARD.make_grad_output("float32", seed=3)).all()      # seeded
    assert not (gy == TINY_FORWARD.make_grad_output("float32", seed=4)).all()
    cases = [TINY_FORWARD, TINY_TRANSPOSED]
    assert [(c.name, op) for c, op in bench_points(cases)] == [("tiny2d", "forward"),
                                                               ("tiny_up", "transposed")]
    assert [(c.name, op) for c, op in bench_points(cases, ("grad_weight", "forward"))] == [
        ("tiny2d", "forward"), ("tiny2d", "grad_weight")]
    assert len(bench_points(cases, OPS)) == 5
    # every op of a case does the forward's multiply-adds
    assert {TINY_FORWARD.op_flops(op) for op in OPS} == {TINY_FORWARD.flops}
    with pytest.raises(ValueError, match="has no op 'grad_input'"):
        TINY_TRANSPOSED.op_call("grad_input")
    # a case survives the trip to the PyTorch worker
    assert BenchCase.from_dict(json.loads(json.dumps(TINY_FORWARD.to_dict()))) == TINY_FORWARD


def test_transposed_op_on_a_forward_case_is_the_input_gradient():
    """The output_padding the suite picks gives back the input's shape."""
    from numbaconv import reference

    x, _ = TINY_FORWARD.make_arrays("float64")
    transposed = TINY_FORWARD.op_call("transposed", "float64")
    grad_input = TINY_FORWARD.op_call("grad_input", "float64")
    assert transposed.kwargs["output_padding"] == (1, 0)
    y_t = reference.conv_transpose_reference(*transposed.args, **transposed.kwargs)
    y_g = reference.conv_grad_input_reference(*grad_input.args, **grad_input.kwargs)
    assert y_t.shape == y_g.shape == x.shape
    assert abs(y_t - y_g).max() <= 1e-12 * abs(y_g).max()
    if torch is not None:
        gy, w = (torch.from_numpy(a) for a in transposed.args)
        tx = torch.nn.functional.conv_transpose2d(gy, w, **transposed.kwargs)
        assert abs(tx.numpy() - y_g).max() <= 1e-12 * abs(y_g).max()


def test_bench_runner_measures_and_checks_every_op():
    from numbaconv.bench.runner import format_table, run_benchmarks

    results = run_benchmarks([TINY_FORWARD, TINY_TRANSPOSED], ops=OPS,
                             algorithms=["direct", "auto"], rounds=2, repeats=1,
                             use_torch=torch is not None, use_scipy=False)
    points = {(m.case, m.op) for m in results}
    assert points == {("tiny2d", op) for op in OPS} | {("tiny_up", "transposed")}
    for case, op in points:
        rows = [m for m in results if (m.case, m.op) == (case, op)]
        auto = [m for m in rows if m.impl.startswith("numbaconv:auto")]
        assert len(auto) == 1 and len(auto[0].times) == 2, (case, op, auto)
        for m in rows:
            if m.impl.startswith("numbaconv") and m.times:
                assert m.error is not None and m.error < 1e-5, (case, op, m)
            if case == "tiny2d":
                assert m.flops == TINY_FORWARD.flops
        if torch is not None:
            (peer,) = [m for m in rows if m.impl == "torch"]
            assert len(peer.times) == 2, (case, op, peer.note)
    header, _, first = format_table(results).splitlines()[:3]
    assert header.split()[:3] == ["shape", "op", "implementation"]
    assert first.split()[:2] == ["tiny2d", "forward"]


def test_bench_loop_times_each_algorithm_alone_in_a_fresh_process():
    """--loop (Note [loop timing] in numbaconv/bench/loop.py): every numbaconv
    row gets the counted calls of its own process and their page faults,
    and the table a loop column; the worker makes the call's arrays
    itself, in the call's dtype, from the recipe's shapes."""
    from numbaconv.bench.loop import recipe, run_loop
    from numbaconv.bench.runner import format_table, run_benchmarks

    call = TINY_FORWARD.op_call("grad_weight", "float32")
    rec = json.loads(json.dumps(recipe(call, "direct")))
    assert rec["args"][0] == {"array": [2, 4, 8, 7], "dtype": "float32"}
    assert rec["args"][1] == {"value": list(TINY_FORWARD.weight_shape)}
    found = run_loop(rec, threads=1, calls=4)
    assert len(found["times"]) == len(found["faults"]) == 3 and found["first"] > 0
    results = run_benchmarks([TINY_FORWARD], ops=("forward",), algorithms=["direct", "auto"],
                             rounds=1, repeats=1, use_torch=False, use_scipy=False, loop=True,
                             loop_calls=3)
    for m in results:
        assert len(m.loop_times) == len(m.loop_faults) == 2 and m.loop_ms > 0, m
        assert m.as_dict()["loop_ms"] == m.loop_ms
    table = format_table(results)
    header, _, first = table.splitlines()[:3]
    assert header.split()[3:5] == ["ms", "loop"] and len(first.split()) >= 6
    assert "loop = median call of a user's loop" in table
    # refused in its process: a note, no loop times
    with pytest.raises(RuntimeError, match="cannot serve"):
        run_loop(recipe(call, "winograd"), threads=1, calls=2)


def test_bench_parses_ops_and_rejects_unknown_ones(capsys):
    assert parse_ops(None) is None and parse_ops("") is None
    assert parse_ops("all") == OPS
    assert parse_ops("grad_weight,forward,grad_weight") == ("grad_weight", "forward")
    assert main(["bench", "--ops", "forward,backward", "--no-torch"]) == 2
    err = capsys.readouterr().err
    assert "unknown op(s) ['backward']" in err and "grad_input" in err and "all" in err
    # up4x4 is a transposed case: it offers only the transposed op
    assert main(["bench", "--shapes", "up4x4", "--ops", "grad_input", "--no-torch"]) == 2
    err = capsys.readouterr().err
    assert "up4x4 (conv_transpose2d) has none of the ops grad_input" in err
    assert "nothing to run" in err


def test_bench_rejects_unknown_shape(capsys):
    assert main(["bench", "--shapes", "nope", "--no-torch"]) == 2
    assert "unknown benchmark shape" in capsys.readouterr().err


def test_bench_rejects_unknown_algorithm_and_bad_counts(capsys):
    assert main(["bench", "--algorithms", "gpu", "--no-torch"]) == 2
    assert "unknown algorithm" in capsys.readouterr().err
    for option in ("--threads", "--rounds", "--repeats"):
        with pytest.raises(SystemExit):
            main(["bench", option, "0"])
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            main(["bench", "--warmup-ms", bad])
    assert "--warmup-ms: must be" in capsys.readouterr().err


@pytest.mark.parametrize("warmup_s, fewest, most", [(0.0, 1, 1), (0.02, 5, 25)])
def test_a_turn_warms_up_for_its_time_then_times_its_calls(warmup_s, fewest, most):
    """Note [turn warm-up]: untimed calls for warmup_s (at least one), then
    the timed ones; each call here takes about 1 ms."""
    import time

    from numbaconv.timing import time_turn
    calls = []

    def call():
        calls.append(time.perf_counter())
        time.sleep(0.001)

    times = time_turn(call, 3, warmup_s)
    assert len(times) == 3 and all(t >= 0.001 for t in times)
    assert fewest <= len(calls) - 3 <= most


def test_info(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "numba threads" in text
    assert "algorithms: auto, direct, im2col, fft, winograd, winograd_f2" in text
    assert "workspace limit: 64 MiB" in text and "im2col GEMM: " in text


# numba's driver error without a driver (numba 0.6x); info cut it at 200
# characters, mid-word ("...CUDA driver sha)")
NO_DRIVER = ("Error at driver init: \n\nCUDA driver library cannot be found.\nIf you are sure "
             "that a CUDA driver is installed, try setting environment variable "
             "NUMBA_CUDA_DRIVER with the file path of the CUDA driver shared library.\n:")


@needs_numba_cuda      # fakes numba-cuda's driver errors (without it: test_cuda_extra.py)
def test_info_without_a_gpu_says_why_whole_and_lists_no_gpu_algorithms(capsys, monkeypatch):
    from numba import cuda

    from numbaconv.cuda import info

    def no_driver():
        raise RuntimeError(NO_DRIVER)

    import numbaconv.cuda
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    # numba.cuda is there (numba-cuda or numba's own target): its driver fails
    monkeypatch.setattr(numbaconv.cuda, "numba_cuda_missing", lambda: None, raising=False)
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    monkeypatch.setattr(cuda, "detect", no_driver)
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert ("CUDA: no usable GPU (Error at driver init: CUDA driver library cannot be found. "
            "If you are sure that a CUDA driver is installed, try setting environment "
            "variable NUMBA_CUDA_DRIVER with the file path of the CUDA driver shared "
            "library.)") in text
    assert "GPU algorithms: none (see the CUDA line above)" in text
    assert info.status()[1] is False
    # with the simulator, GPU calls run: the GPU algorithms are listed
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert main(["info"]) == 0
    assert "GPU algorithms: auto, direct" in capsys.readouterr().out


def test_long_reasons_are_cut_at_a_sentence_or_a_word():
    from numbaconv.cuda.info import shorten
    assert shorten("  one\n two :") == "one two"
    text = "First sentence here. " + "Second sentence is long " * 20 + "end."
    assert shorten(text, 60) == "First sentence here."
    cut = shorten("word " * 100, 40)
    assert cut.endswith(" ...") and len(cut) <= 40
    assert all(w == "word" for w in cut[:-4].split())


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


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="an x86-64 profile")
def test_avx2_profile_script_runs_the_command_under_the_profile(tmp_path):
    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "avx2_profile.py"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(script), sys.executable, "-c",
         "import os; print([os.environ[k] for k in ('NUMBA_CPU_NAME', 'OPENBLAS_CORETYPE', "
         "'ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'NUMBA_CACHE_DIR')])"],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "numba compiles for: haswell" in done.stdout          # checked before it ran
    assert (f"['haswell', 'Haswell', 'avx2', 'AVX2', '{tmp_path}/numbaconv-avx2-numba']"
            in done.stdout)


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
    # its checks print True (out= was compared with auto's winograd result)
    assert "out= filled in place: True" in done.stdout
    assert "agree within 1e-5 of the largest output: True" in done.stdout


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
    # the forward grid is unchanged; the op dimension lives in Backward
    assert full.Conv.param_names == ["shape", "algorithm", "dtype"]
    assert full.Backward.param_names == ["shape", "op", "algorithm", "dtype"]
    assert full.Backward.params[0] == [c.name for c in PUBLIC_SHAPES]
    assert full.Backward.params[1] == ["transposed", "grad_input", "grad_weight"]
    assert full.TorchBackwardPeer.param_names == ["shape", "op"]
    with pytest.raises(NotImplementedError, match="has no op 'grad_input'"):
        full.Backward().setup("up4x4", "grad_input", "direct", "float32")
    with monkeypatch.context() as old:      # asv also runs against older commits' suite
        old.delattr(BenchCase, "op_call")
        with pytest.raises(NotImplementedError, match="suite has no ops"):
            full.Backward().setup("resnet3x3", "grad_input", "direct", "float32")
    monkeypatch.setenv("NUMBACONV_ASV_ONLY", "shape=depthwise;dtype=float32;peer=none")
    _sys.modules.pop("asv_benchmarks.benchmarks", None)
    part = importlib.import_module("asv_benchmarks.benchmarks")
    assert part.SHAPES == ["depthwise"] and part.DTYPES == ["float32"]
    with pytest.raises(NotImplementedError):
        part.TorchPeer().setup("depthwise")
    with pytest.raises(NotImplementedError):
        part.TorchBackwardPeer().setup("depthwise", "grad_input")
    monkeypatch.setenv("NUMBACONV_ASV_ONLY", "shape=depthwise;op=grad_weight;dtype=float32")
    _sys.modules.pop("asv_benchmarks.benchmarks", None)
    ops = importlib.import_module("asv_benchmarks.benchmarks")
    assert ops.Backward.params[:2] == (["depthwise"], ["grad_weight"])
    with pytest.raises(NotImplementedError, match="op=forward"):
        ops.Conv().setup("depthwise", "direct", "float32")       # forward not selected
    bench = ops.Backward()
    bench.setup("depthwise", "grad_weight", "auto", "float32")
    assert bench.track_gflops("depthwise", "grad_weight", "auto", "float32") > 0
    _sys.modules.pop("asv_benchmarks.benchmarks", None)


def test_bare_command_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: numbaconv" in out and "bench" in out and "info" in out


def test_bench_help_lists_the_shape_names(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for case in PUBLIC_SHAPES:
        assert case.name in out


def test_bench_table_keeps_a_long_refusal_reason_whole():
    from numbaconv.bench.runner import Measurement, format_table
    reason = "algorithm='winograd' cannot serve this problem: " + "x" * 80 + " END"
    table = format_table([Measurement(case="up4x4", op="transposed",
                                      impl="numbaconv:winograd", note=reason)])
    assert "see [1]" in table
    assert f"[1] numbaconv:winograd: {reason} (up4x4 transposed)" in table


def test_bench_without_torch_says_why_once_groups_refusals_and_logs_progress(monkeypatch,
                                                                           capsys):
    from numbaconv.bench import runner, suite

    cases = [BenchCase("tiny1x1", "conv2d", (1, 4, 6, 6), (4, 4, 1, 1), {}),
             BenchCase("tiny5x5", "conv2d", (1, 4, 8, 8), (4, 4, 5, 5), dict(padding=2))]
    monkeypatch.setattr(suite, "get_cases", lambda names: cases)
    monkeypatch.setattr(runner, "torch_missing", lambda: "PyTorch is not installed")

    def no_worker(threads):
        raise AssertionError("no PyTorch worker is started without PyTorch")

    monkeypatch.setattr(runner, "TorchWorker", no_worker)
    assert main(["bench", "--algorithms", "direct,winograd,winograd_f2", "--rounds", "1",
                 "--repeats", "1", "--warmup-ms", "0", "--no-scipy"]) == 0
    out, err = capsys.readouterr()
    # why the vs torch column is empty, and how to fill it: once
    assert out.count("pip install torch==2.13.0") == 1
    assert ("vs torch is empty: PyTorch is not installed; to fill it: "
            "pip install torch==2.13.0") in out
    # one footnote for the reason both Winograd algorithms refuse both shapes
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        "[1] numbaconv:winograd, numbaconv:winograd_f2: cannot serve: it serves kernels of 3 "
        "along every axis, got kernel_size=... ((1, 1) on tiny1x1 forward; (5, 5) on tiny5x5 "
        "forward)"]
    assert out.count("see [1]") == 4 and "see [2]" not in out
    # stderr is not a terminal here: a line per point instead of a bar
    assert "\r" not in err
    assert "numbaconv bench: 1/2 tiny1x1 forward" in err
    assert "numbaconv bench: 2/2 tiny5x5 forward" in err
    assert main(["bench", "--no-torch", "--no-progress", "--algorithms", "direct",
                 "--rounds", "1", "--repeats", "1", "--warmup-ms", "0", "--no-scipy"]) == 0
    out, err = capsys.readouterr()
    assert "vs torch is empty: PyTorch was skipped (--no-torch)." in out and err == ""


def test_bench_shape_groups():
    from numbaconv.bench.suite import CLASS_SHAPES
    assert get_cases(["classes"]) == list(CLASS_SHAPES)
    assert get_cases(["public", "resnet3x3"]) == list(PUBLIC_SHAPES)
    assert [c.name for c in get_cases(["dw_s2", "resnet3x3"])] == ["dw_s2", "resnet3x3"]
    with pytest.raises(ValueError, match="and the groups public, classes"):
        get_cases(["nope"])
