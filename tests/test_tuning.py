"""Measured autotuning: nc.tune, nc.set_tuning, the tuning cache and `numbaconv tune`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numba
import numpy as np
import pytest

import numbaconv as nc
from numbaconv import storage, tuning
from numbaconv.dispatch import resolve_algorithm
from numbaconv.cli import main
from numbaconv.dispatch import choose_spec
from numbaconv.spec import problem_spec

SMALL = dict(input_shape=(1, 4, 12, 12), weight_shape=(4, 4, 3, 3), padding=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, private cache directory; tuning state restored afterwards."""
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_memory", {})
    monkeypatch.setattr(tuning, "_loaded_from", None)
    monkeypatch.setattr(tuning, "_warned", set())
    previous = nc.set_tuning(None)
    yield tmp_path
    nc.set_tuning(previous)


def _entries(path):
    with open(path / tuning.CACHE_FILE) as fh:
        return json.load(fh)["entries"]


def test_set_tuning_and_the_environment(cache, monkeypatch):
    monkeypatch.delenv("NUMBACONV_TUNE", raising=False)
    assert not nc.tuning_enabled()
    monkeypatch.setenv("NUMBACONV_TUNE", "1")
    assert nc.tuning_enabled()
    assert nc.set_tuning(False) is None
    assert not nc.tuning_enabled()              # the explicit setting wins
    assert nc.set_tuning(None) is False
    assert nc.tuning_enabled()
    with pytest.raises(TypeError, match="enabled must be True, False or None"):
        nc.set_tuning("yes")


def test_cache_dir_follows_the_override_and_platformdirs(cache, monkeypatch):
    assert tuning.cache_dir() == str(cache)
    monkeypatch.delenv("NUMBACONV_CACHE_DIR")
    import platformdirs
    assert tuning.cache_dir() == platformdirs.user_cache_dir("numbaconv", appauthor=False)


def test_tune_measures_every_serving_algorithm_and_stores_the_fastest(cache):
    result = nc.tune(**SMALL)
    assert set(result.seconds) == {"direct", "im2col", "fft", "winograd", "winograd_f2"}
    assert result.algorithm == min(result.seconds, key=result.seconds.get)
    (entry,) = _entries(cache).values()
    assert entry["algorithm"] == result.algorithm
    assert entry["seconds"] == result.seconds
    # float64: F(4x4, 3x3)'s error is above the tolerance, so auto would
    # refuse a tuned winograd; tune does not measure it either
    assert "winograd" not in nc.tune(**SMALL, dtype="float64").seconds
    # strided: winograd does not serve it, so it is no candidate
    strided = nc.tune((1, 4, 12, 12), (4, 4, 3, 3), stride=2, padding=1)
    assert set(strided.seconds) == {"direct", "im2col", "fft"}
    # every computation
    for kwargs in (dict(gradient="input"), dict(gradient="weight")):
        assert nc.tune(**SMALL, **kwargs).algorithm in nc.algorithm_names()
    up = nc.tune((1, 4, 6, 6), (4, 2, 4, 4), stride=2, padding=1, transposed=True)
    assert "winograd" not in up.seconds
    # SMALL's input gradient (stride 1, C_in == C_out) is the same general
    # problem as its forward convolution: one entry serves both
    assert len(_entries(cache)) == 5


def test_auto_uses_the_cached_answer_without_measuring(cache, monkeypatch):
    spec = problem_spec(**SMALL)
    key = tuning.cache_key(spec)
    # an answer no untuned rule would give: the cache must be what decides
    tuning._write_entry(key, {"algorithm": "fft", "seconds": {"fft": 1e-3}})
    monkeypatch.setattr(tuning, "measure", lambda *a, **k: pytest.fail("measured again"))
    nc.set_tuning(True)
    assert resolve_algorithm("auto", spec).name == "fft"
    nc.set_tuning(False)
    # untuned, the cost models decide again (SMALL is a near-tie of direct
    # and im2col, so no fixed name here)
    untuned = resolve_algorithm("auto", spec).name
    assert untuned == choose_spec(spec).algorithm and untuned != "fft"


def test_switching_tuning_on_takes_effect_for_a_problem_already_called(cache, monkeypatch):
    # the per-call plan memo (dispatch.resolve_planned) remembers untuned
    # "auto" picks; once tuning is on, the same problem must be measured
    x = np.random.default_rng(0).standard_normal(SMALL["input_shape"]).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(SMALL["weight_shape"]).astype(np.float32)
    nc.set_tuning(False)
    nc.conv2d(x, w, padding=1)
    measured = []
    real_measure = tuning.measure
    monkeypatch.setattr(tuning, "measure",
                        lambda *a, **k: measured.append(1) or real_measure(*a, **k))
    nc.set_tuning(True)
    nc.conv2d(x, w, padding=1)
    assert measured
    assert os.path.exists(cache / tuning.CACHE_FILE)


def test_a_new_problem_is_measured_once_then_reused_in_a_new_process(cache):
    x = np.random.default_rng(0).standard_normal(SMALL["input_shape"]).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(SMALL["weight_shape"]).astype(np.float32)
    nc.set_tuning(True)
    y = nc.conv2d(x, w, padding=1)
    np.testing.assert_allclose(y, nc.conv_reference(x, w, padding=1), rtol=1e-4, atol=1e-4)
    (entry,) = _entries(cache).values()
    script = textwrap.dedent("""
        import numbaconv as nc
        from numbaconv import tuning
        from numbaconv.dispatch import resolve_algorithm
        from numbaconv.spec import problem_spec
        def fail(*a, **k):
            raise SystemExit("measured again")
        tuning.measure = fail
        spec = problem_spec((1, 4, 12, 12), (4, 4, 3, 3), padding=1)
        print(resolve_algorithm("auto", spec).name)
    """)
    env = dict(os.environ, NUMBACONV_CACHE_DIR=str(cache), NUMBACONV_TUNE="1",
               NUMBA_NUM_THREADS=str(numba.config.NUMBA_NUM_THREADS))
    # the key holds the thread count: the child runs with the same one
    env["NUMBACONV_TEST_THREADS"] = str(numba.get_num_threads())
    script = script.replace("import numbaconv as nc",
                            "import numba, os\nnumba.set_num_threads("
                            "int(os.environ['NUMBACONV_TEST_THREADS']))\nimport numbaconv as nc")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == entry["algorithm"]


def test_key_holds_what_changes_the_answer(cache):
    spec = problem_spec(**SMALL)
    problem, context = json.loads(tuning.cache_key(spec))
    assert context["threads"] == numba.get_num_threads()
    assert context["version"] == nc.__version__ and context["cpu"] and context["device"] == "cpu"
    assert problem["dtype"] == "float32" and problem["kernel"] == [3, 3]
    others = [problem_spec(**SMALL, dtype="float64"), problem_spec(**SMALL, gradient="weight"),
              problem_spec((1, 4, 12, 12), (4, 4, 3, 3), padding=1, dilation=2),
              problem_spec((2, 4, 12, 12), (4, 4, 3, 3), padding=1)]
    keys = {tuning.cache_key(s) for s in others} | {tuning.cache_key(spec)}
    assert len(keys) == 5
    assert tuning.cache_key(spec, threads=1) != tuning.cache_key(spec, threads=2)
    # a transposed convolution and the input gradient it equals share an entry
    t = problem_spec((1, 4, 6, 6), (4, 2, 3, 3), stride=2, padding=1, output_padding=1,
                     transposed=True)
    g = problem_spec((1, 2, 12, 12), (4, 2, 3, 3), stride=2, padding=1, gradient="input")
    assert tuning.cache_key(t) == tuning.cache_key(g)


def test_key_holds_the_instruction_profile(cache, monkeypatch):
    spec = problem_spec(**SMALL)
    native = tuning.cache_key(spec)
    assert "profile" not in json.loads(native)[1]    # the keys stored before it stay valid
    with monkeypatch.context() as m:
        m.setenv("NUMBA_CPU_NAME", "haswell")
        storage.instruction_profile.cache_clear()
        try:
            profiled = json.loads(tuning.cache_key(spec))[1]
            assert profiled["profile"] == "NUMBA_CPU_NAME=haswell"
        finally:
            storage.instruction_profile.cache_clear()
    assert tuning.cache_key(spec) == native


@pytest.mark.parametrize("content", ["{not json", json.dumps({"version": 0, "entries": {}}),
                                     json.dumps([1, 2, 3])])
def test_a_corrupt_or_stale_cache_is_ignored_with_a_warning(cache, content):
    (cache / tuning.CACHE_FILE).write_text(content)
    nc.set_tuning(True)
    spec = problem_spec(**SMALL)
    with pytest.warns(tuning.TuningWarning, match="ignoring the tuning cache"):
        algorithm = resolve_algorithm("auto", spec)
    assert algorithm.name in nc.algorithm_names()
    # the measured answer replaced the bad file with a valid one
    assert _entries(cache)[tuning.cache_key(spec)]["algorithm"] == algorithm.name


def test_an_unwritable_cache_warns_and_the_call_goes_on(tmp_path, monkeypatch, cache):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(blocker / "cache"))   # cannot be created
    nc.set_tuning(True)
    x = np.ones(SMALL["input_shape"], np.float32)
    w = np.ones(SMALL["weight_shape"], np.float32)
    with pytest.warns(tuning.TuningWarning) as record:
        y = nc.conv2d(x, w, padding=1)
    messages = [str(r.message) for r in record]
    assert any("cannot write the tuning cache" in m for m in messages), messages
    assert y[0, 0, 5, 5] == pytest.approx(36.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # warned once; kept in memory after that
        nc.conv2d(x, w, padding=1)


_WRITER = """
import sys
from numbaconv import tuning
worker = int(sys.argv[1])
for i in range(40):
    tuning._write_entry(f"key-{worker}-{i}", {"algorithm": "direct", "seconds": {}})
"""


def test_concurrent_writers_never_corrupt_or_lose_entries(cache):
    env = dict(os.environ, NUMBACONV_CACHE_DIR=str(cache))
    workers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(k)], env=env)
               for k in range(4)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    entries = _entries(cache)
    assert set(entries) == {f"key-{k}-{i}" for k in range(4) for i in range(40)}
    assert not [p for p in os.listdir(cache) if p.endswith(".tmp")]


def test_clear_and_cli(cache, capsys):
    assert main(["tune", "--shapes", "depthwise", "--ops", "forward", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "depthwise" in out and str(cache) in out
    header, rule, row = out.splitlines()[:3]                  # a header row names the columns
    assert header.split()[:3] == ["shape", "op", "fastest"] and set(rule) == {"-"}
    assert row.split()[:2] == ["depthwise", "forward"]
    assert main(["tune", "--show"]) == 0
    assert "1 problem(s)" in capsys.readouterr().out
    assert (cache / (tuning.CACHE_FILE + ".lock")).exists()
    assert main(["tune", "--clear"]) == 0
    assert "tuning-v1.json.lock" in capsys.readouterr().out
    # the lock file goes too (it was left behind)
    assert not (cache / tuning.CACHE_FILE).exists()
    assert os.listdir(cache) == []
    assert main(["tune", "--clear"]) == 0
    assert "no tuning cache in" in capsys.readouterr().out
    assert main(["tune", "--shapes", "nope"]) == 2
    assert "unknown benchmark shape" in capsys.readouterr().err


def test_a_writer_waiting_on_the_lock_while_the_cache_is_cleared_locks_the_new_file(cache):
    # clear_cache deletes the lock file under the lock; a writer that opened
    # the old file must not take its lock on the deleted inode
    import threading
    tuning._write_entry("before", {"algorithm": "direct", "seconds": {}})
    lock = cache / (tuning.CACHE_FILE + ".lock")
    held, release, inodes = threading.Event(), threading.Event(), []

    def clearer():
        with tuning.file_lock(str(cache), tuning.CACHE_FILE):
            held.set()
            release.wait(30)
            os.unlink(lock)                   # what clear_cache does under the lock

    def writer():
        with tuning.file_lock(str(cache), tuning.CACHE_FILE):
            inodes.append(os.stat(lock).st_ino)

    first = threading.Thread(target=clearer)
    first.start()
    assert held.wait(30)
    second = threading.Thread(target=writer)
    second.start()
    time.sleep(0.3)                           # the writer opens the old file and waits
    release.set()
    first.join(30)
    second.join(30)
    assert inodes and lock.exists() and inodes[0] == os.stat(lock).st_ino


def test_a_closed_pipe_ends_the_listing_quietly(cache):
    # `numbaconv tune --show | head` ended in a BrokenPipeError traceback
    tuning._write_entry("k0", {"algorithm": "direct", "seconds": {"direct": 1e-3},
                               "problem": "p0"})
    entries = _entries(cache)
    entries.update({f"k{i}": dict(entries["k0"], problem=f"problem number {i} " + "x" * 40)
                    for i in range(1, 4000)})           # more than a pipe's buffer
    tuning.write_json(str(cache / tuning.CACHE_FILE), {"version": tuning.CACHE_VERSION,
                                                        "entries": entries})
    env = dict(os.environ, NUMBACONV_CACHE_DIR=str(cache))
    proc = subprocess.Popen([sys.executable, "-m", "numbaconv", "tune", "--show"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "4000 problem(s)" in proc.stdout.readline()
    proc.stdout.close()                                   # what head does
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_problem_spec_validates_like_the_call():
    with pytest.raises(ValueError, match="gradient must be None, 'input' or 'weight'"):
        problem_spec(**SMALL, gradient="bias")
    with pytest.raises(ValueError, match="groups=3 must divide"):
        problem_spec((1, 4, 12, 12), (4, 4, 3, 3), groups=3)
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints or an array"):
        problem_spec("1,4,12,12", (4, 4, 3, 3))
    spec = problem_spec(np.zeros((1, 4, 12, 12), np.float64), (4, 4, 3, 3))
    assert spec.dtype == np.float64
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'tpu'"):
        nc.tune(**SMALL, device="tpu")
