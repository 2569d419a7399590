"""The dispatcher: plans, cost models, choose_algorithm, explain, `numbaconv explain`.

Like PyTorch's backend-selection tests, named problems assert which
algorithm "auto" picks and why; those picks use the shipped constants
(:func:`numbaconv.costs.defaults`), never a calibration file of the machine
the tests run on.  Whether the models predict well is a benchmark
(scripts/dispatch_regret.py, docs/choosing.md), not a timed test.
"""

from __future__ import annotations

import json
import math
import pathlib

import numba
import numpy as np
import pytest

import numbaconv as nc
from numbaconv import calibration, costs, dispatch, storage
from numbaconv.algorithms import algorithms, get_algorithm
from numbaconv.dispatch import resolve_algorithm
from numbaconv.cli import main
from numbaconv.context import ExecutionContext, current_context
from numbaconv.calibration import replanned_units
from numbaconv.spec import problem_spec


@pytest.fixture(autouse=True)
def shipped_constants(tmp_path, monkeypatch):
    """Decisions from the shipped constants, tuning off, in a private cache dir."""
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    costs.forget_constants()
    dispatch._auto_choice.cache_clear()
    previous = nc.set_tuning(False)
    yield tmp_path
    nc.set_tuning(previous)
    costs.forget_constants()
    dispatch._auto_choice.cache_clear()


RESNET = ((4, 64, 56, 56), (64, 64, 3, 3), dict(padding=1))
DEPTHWISE = ((4, 256, 28, 28), (256, 1, 3, 3), dict(padding=1, groups=256))
MC_BIGK = ((2, 8, 256, 256), (8, 8, 21, 21), dict(padding=10))
POINTWISE = ((4, 256, 28, 28), (128, 256, 1, 1), {})
UP4X4 = ((4, 128, 28, 28), (128, 64, 4, 4), dict(stride=2, padding=1, transposed=True))

#: (id, problem, extra arguments, expected pick, words of the reason or of a
#: candidate's exclusion)
NAMED_PICKS = [
    ("depthwise", DEPTHWISE, {}, "direct", "fastest estimate"),
    ("depthwise_grad_input", DEPTHWISE, dict(gradient="input"), "direct", "fastest estimate"),
    ("large_kernel", MC_BIGK, {}, "fft", "fastest estimate"),
    ("large_kernel_grad_input", MC_BIGK, dict(gradient="input"), "fft", "fastest estimate"),
    ("large_kernel_grad_weight", MC_BIGK, dict(gradient="weight"), "fft", "fastest estimate"),
    ("large_1d_kernel", ((8, 16, 16384), (16, 16, 255), {}), {}, "fft", "fastest estimate"),
    ("pointwise", POINTWISE, {}, "im2col", "fastest estimate"),
    ("transposed_4x4_stride_2", UP4X4, {}, "im2col", "fastest estimate"),
    ("resnet_grad_weight", RESNET, dict(gradient="weight"), "im2col", "fastest estimate"),
    ("resnet_float32", RESNET, {}, "winograd", "fastest estimate"),
    # Note [few-row GEMMs]: ResNeXt's groups of 4 channels run im2col's
    # GEMMs at cache speed (1.2-1.5 ms against direct's 1.8-2.3)
    ("resnext_groups_of_4", ((4, 128, 56, 56), (128, 4, 3, 3), dict(padding=1, groups=32)), {},
     "im2col", "fastest estimate"),
]


@pytest.mark.parametrize("problem, extra, expected, words",
                         [pytest.param(p, e, x, w, id=i) for i, p, e, x, w in NAMED_PICKS])
def test_named_picks(problem, extra, expected, words):
    xs, ws, kw = problem
    choice = nc.choose_algorithm(xs, ws, **kw, **extra)
    assert choice.algorithm == expected, str(choice)
    assert words in choice.reason
    spec = problem_spec(xs, ws, **kw, **extra)
    assert resolve_algorithm("auto", spec).name == expected        # auto is the table


def test_depthwise_never_goes_to_winograd():
    for shape in ((4, 256, 28, 28), (1, 32, 112, 112), (8, 64, 14, 14)):
        for gradient in (None, "input"):
            choice = nc.choose_algorithm(shape, (shape[1], 1, 3, 3), padding=1,
                                         groups=shape[1], gradient=gradient)
            assert not choice.algorithm.startswith("winograd"), str(choice)
            estimates = {c.algorithm: c.seconds for c in choice.candidates}
            assert estimates["winograd"] > 5 * estimates["direct"]


def test_float64_never_takes_the_less_accurate_winograd():
    choice = nc.choose_algorithm(*RESNET[:2], **RESNET[2], dtype="float64")
    assert choice.algorithm != "winograd"
    (candidate,) = [c for c in choice.candidates if c.algorithm == "winograd"]
    assert "above the float64 tolerance" in candidate.excluded
    # winograd_f2 (1 eps) stays a candidate
    (f2,) = [c for c in choice.candidates if c.algorithm == "winograd_f2"]
    assert f2.excluded is None


def test_refusals_and_non_finite_input_are_candidates_with_reasons():
    choice = nc.choose_algorithm(*UP4X4[:2], **UP4X4[2])
    refused = {c.algorithm: c.excluded for c in choice.candidates if c.seconds is None}
    assert set(refused) == {"winograd", "winograd_f2"}
    assert all("cannot serve" in r for r in refused.values())
    x = np.ones((1, 8, 64, 64), np.float32)
    x[0, 0, 3, 3] = np.nan
    w = np.ones((8, 8, 15, 15), np.float32)
    choice = nc.choose_algorithm(x, w, padding=7)
    assert not get_algorithm(choice.algorithm).transforms_values
    (fft,) = [c for c in choice.candidates if c.algorithm == "fft"]
    assert "NaN or infinity" in fft.excluded
    assert nc.choose_algorithm(np.ones((1, 8, 64, 64), np.float32), w,
                               padding=7).algorithm == "fft"


def test_measure_times_every_usable_candidate():
    choice = nc.choose_algorithm((1, 8, 16, 16), (8, 8, 3, 3), padding=1, measure=True)
    measured = {c.algorithm: c.measured for c in choice.candidates if c.excluded is None}
    assert all(t is not None and t > 0 for t in measured.values())
    assert choice.algorithm == min(measured, key=measured.get)
    assert choice.reason == "measured fastest"


def test_explain_shows_as_its_table_in_ipython_and_pickles():
    import pickle
    text = nc.explain((1, 4, 16, 16), (4, 4, 3, 3), padding=1)
    again = pickle.loads(pickle.dumps(text))
    assert again == text and repr(again) == text and again.choice == text.choice
    pretty = pytest.importorskip("IPython.lib.pretty")
    assert pretty.pretty(text) == text


def test_explain_is_a_readable_table(capsys):
    text = nc.explain(*RESNET[:2], **RESNET[2])
    # a str whose repr is the table itself, so the REPL shows the table (a
    # plain str showed as one escaped line)
    assert isinstance(text, str) and repr(text) == str(text) == text
    assert text.choice == nc.choose_algorithm(*RESNET[:2], **RESNET[2])
    lines = text.splitlines()
    assert lines[0].startswith("conv2d(input=(4, 64, 56, 56)")
    assert "thread(s), workspace limit" in lines[1]
    assert lines[2].startswith("pick: winograd")
    assert sum("<- pick" in line for line in lines) == 1
    for name in nc.algorithm_names()[1:]:
        assert any(line.startswith(name + " ") for line in lines)
    assert main(["explain", "conv2d", "--input", "4,64,56,56", "--weight", "64,64,3,3",
                 "--padding", "1"]) == 0
    assert capsys.readouterr().out.strip() == text
    assert main(["explain", "conv_transpose2d", "--input", "4,128,28,28", "--weight",
                 "128,64,4,4", "--stride", "2", "--padding", "1", "--gradient", "weight"]) == 0
    assert "grad_weight of" in capsys.readouterr().out
    assert main(["explain", "conv2d", "--input", "4,64", "--weight", "64,64,3,3"]) == 2
    assert "expected input of 3 (unbatched) or 4 (batched)" in capsys.readouterr().err


@pytest.mark.parametrize("problem, extra", [
    (RESNET, {}), (RESNET, dict(gradient="weight")), (RESNET, dict(gradient="input")),
    (DEPTHWISE, {}), (MC_BIGK, {}), (POINTWISE, {}), (UP4X4, {}),
    (((2, 16, 20, 20, 20), (16, 16, 3, 3, 3), dict(padding=1)), {}),
    (((0, 16, 20, 20), (16, 16, 3, 3), dict(padding=1)), {}),
])
def test_every_algorithm_plans_what_it_serves(problem, extra):
    xs, ws, kw = problem
    spec = problem_spec(xs, ws, **kw, **extra)
    ctx = current_context()
    for algorithm in algorithms():
        if algorithm.unsupported_reason(spec) is not None:
            continue
        plan = algorithm.plan(spec, ctx)
        assert plan.algorithm == algorithm.name and plan.path
        assert plan.seconds >= 0 and math.isfinite(plan.seconds) and plan.workspace >= 0
        if spec.batch == 0:
            assert plan.seconds == 0.0


def test_plans_follow_the_context():
    spec = problem_spec(*RESNET[:2], **RESNET[2])
    one = ExecutionContext(threads=1, pool_threads=2, workspace_limit=64 * 2**20)
    two = ExecutionContext(threads=2, pool_threads=2, workspace_limit=64 * 2**20)
    im2col = get_algorithm("im2col")
    assert im2col.plan(spec, one).seconds > 1.8 * im2col.plan(spec, two).seconds - 1e-3
    small = ExecutionContext(threads=2, pool_threads=2, workspace_limit=2**20)
    for computation in (spec, problem_spec(*RESNET[:2], **RESNET[2], gradient="weight"),
                        problem_spec(*UP4X4[:2], **UP4X4[2])):
        assert im2col.plan(computation, small).workspace <= 2**20


def test_calibration_file_is_used_and_a_bad_one_ignored(shipped_constants):
    path = pathlib.Path(costs.constants_path())
    doubled = {k: 2 * v for k, v in costs.defaults().items()}
    path.write_text(json.dumps({"version": 1, "constants": doubled}))
    costs.forget_constants()
    assert costs.constants() == doubled
    path.write_text(json.dumps({"version": 1, "constants": {"fft": -1}}))
    costs.forget_constants()
    with pytest.warns(UserWarning, match="ignoring the cost-model constants"):
        assert costs.constants() == costs.defaults()
    path.write_text("{broken")
    costs.forget_constants()
    with pytest.warns(UserWarning, match="ignoring the cost-model constants"):
        assert costs.constants() == costs.defaults()


def test_calibration_is_kept_apart_per_cpu_and_instruction_profile(shipped_constants,
                                                                   monkeypatch):
    doubled = {k: 2 * v for k, v in costs.defaults().items()}
    path = pathlib.Path(costs.constants_path())
    # fitted on another CPU model (a cache directory shared by two kinds of
    # machine): the shipped constants, not its
    path.write_text(json.dumps({"version": 1, "cpu": "another CPU", "constants": doubled}))
    costs.forget_constants()
    assert costs.constants() == costs.defaults()
    # the same model name on another core or vector width: cloud VMs name a
    # Zen 2 (AVX2) and a Zen 4 (AVX-512) both "AMD EPYC"
    model, _, core = storage.cpu_model().partition(" (")
    assert core, "cpu_model names the core LLVM detects and the widest vectors"
    for other in (model, f"{model} (another-core, avx2)"):
        path.write_text(json.dumps({"version": 1, "cpu": other, "constants": doubled}))
        costs.forget_constants()
        assert costs.constants() == costs.defaults()
    path.write_text(json.dumps({"version": 1, "cpu": storage.cpu_model(), "constants": doubled}))
    costs.forget_constants()
    assert costs.constants() == doubled
    # the AVX2 profile on the same CPU reads and writes a file of its own
    with monkeypatch.context() as m:
        m.setenv("NUMBA_CPU_NAME", "haswell")
        m.setenv("OPENBLAS_CORETYPE", "Haswell")
        storage.instruction_profile.cache_clear()
        try:
            profiled = costs.constants_path()
            assert profiled != str(path) and profiled.endswith(
                "costs-v1-numba-cpu-name-haswell-openblas-coretype-haswell.json")
            costs.forget_constants()
            assert costs.constants() == costs.defaults()
        finally:
            storage.instruction_profile.cache_clear()
            costs.forget_constants()


def test_auto_follows_the_constants_in_force_when_the_cache_directory_changes(
        tmp_path, monkeypatch):
    # Regression: the plan and pick caches were keyed by id(constants()); a
    # constants dict freed on a directory change let the next one take its
    # address, and the caches then served picks made under other constants
    # (46 wrong picks in 400 switches with the old key; a concurrency test
    # once saw different low bits from it).
    import random
    fast_fft_dir, shipped_dir = tmp_path / "fast_fft", tmp_path / "shipped"
    fast_fft_dir.mkdir()
    shipped_dir.mkdir()
    fast_fft = {k: v * 1e-3 if k.startswith("fft") else v for k, v in costs.defaults().items()}
    (fast_fft_dir / costs.CONSTANTS_FILE).write_text(
        json.dumps({"version": 1, "constants": fast_fft}))
    spec = problem_spec((1, 8, 32, 32), (8, 8, 3, 3), padding=1)
    ctx = current_context()
    draw = random.Random(1)
    wrong = 0
    for _ in range(400):
        calibrated = draw.randrange(2) == 1
        monkeypatch.setenv("NUMBACONV_CACHE_DIR",
                           str(fast_fft_dir if calibrated else shipped_dir))
        allocations = [dict(n=i) for i in range(draw.randrange(4))]   # stir the freelist
        wrong += (dispatch.auto_algorithm_name(spec, ctx) == "fft") != calibrated
        del allocations
    assert wrong == 0

def test_fit_takes_the_median_rate_per_path():
    spec = problem_spec(*RESNET[:2], **RESNET[2])
    samples = [("im2col:tiles", spec, costs.OVERHEAD + r * 1e9 / 2, 2, 1e9, 0.0, None)
               for r in (1e-11, 2e-11, 9e-11)]
    fitted, counts = costs.fit(samples, replanned_units)
    assert fitted["im2col:tiles"] == pytest.approx(2e-11)
    assert counts == {"im2col:tiles": 3}
    assert fitted["direct:planes"] == costs.defaults()["direct:planes"]


def test_fit_takes_the_fill_time_out_of_the_path_rate():
    # the fill's constant from its own samples (one thread), then the tile
    # path's rate from what is left of each time after the fill's share
    spec = problem_spec(*RESNET[:2], **RESNET[2])
    samples = [("im2col:fill", spec, 1e-3 * f, 1, 1e7 * f, 0.0, None) for f in (1, 2, 3)]
    samples += [("im2col:tiles", spec, costs.OVERHEAD + (3e-11 * 1e9 + 1e-10 * 4e7) / 2,
                 2, 1e9, 4e7, "im2col:fill")]
    fitted, counts = costs.fit(samples, replanned_units)
    assert fitted["im2col:fill"] == pytest.approx(1e-10)
    assert fitted["im2col:tiles"] == pytest.approx(3e-11)
    assert counts == {"im2col:fill": 3, "im2col:tiles": 1}


def test_fit_plans_the_composites_again_under_the_fitted_constants():
    # a phases factor is measured time over its parts' estimates: made
    # under the new part constants, not whatever was in force when timed
    spec = problem_spec(*UP4X4[:2], **UP4X4[2])
    samples = [("direct:phases", spec, 0.05, 2, 123.0, 0.0, None)]
    slower = {p: 2 * v for p, v in costs.defaults().items()}
    as_shipped, counts = costs.fit(samples, replanned_units, parts=costs.defaults())
    twice_as_slow, _ = costs.fit(samples, replanned_units, parts=slower)
    assert counts == {"direct:phases": 1}
    # not exactly 2x: the parts' estimates include their weight copies, which
    # the constants do not scale (direct.with_weight_copy: 2.1% here); a
    # factor not replanned would be 1x
    assert as_shipped["direct:phases"] == pytest.approx(2 * twice_as_slow["direct:phases"],
                                                        rel=0.05)


def test_estimates_see_the_column_fill():
    # "medical 3d s2": 32 output channels, 32-pixel strided rows; the fill,
    # not the GEMM, decides, and direct was measured 1.3x faster
    spec = problem_spec((1, 16, 64, 64, 64), (32, 16, 3, 3, 3), stride=2, padding=1)
    plan = get_algorithm("im2col").plan(spec)
    c = costs.constants()
    assert c["im2col:fill"] * plan.fill > 0.5 * c["im2col:tiles"] * plan.units
    assert nc.choose_algorithm((1, 16, 64, 64, 64), (32, 16, 3, 3, 3), stride=2,
                               padding=1).algorithm == "direct"


def test_calibrate_cli_writes_constants(shipped_constants, monkeypatch, capsys):
    spec_args = (((1, 16, 16, 16), (16, 16, 3, 3), dict(padding=1)),)
    monkeypatch.setattr(calibration, "CALIBRATION_PROBLEMS", spec_args)
    previous = numba.get_num_threads()
    try:        # the command sets the process's threads, as a CLI may
        assert main(["calibrate", "--repeats", "1", "--rounds", "2", "--threads", "1"]) == 0
    finally:
        numba.set_num_threads(previous)
    out = capsys.readouterr().out
    assert "im2col:tiles" in out and "wrote" in out
    data = json.loads((shipped_constants / costs.CONSTANTS_FILE).read_text())
    assert set(data["constants"]) == set(costs.defaults())
    assert data["samples"]["direct:channels_last"] >= 1


def test_run_takes_the_plan_it_is_given():
    from dataclasses import replace

    from numbaconv.tuning import synthetic_arrays
    spec = problem_spec((1, 8, 10, 11), (6, 8, 3, 3), padding=1)
    ctx = current_context()
    x, w, b, out = synthetic_arrays(spec, np.random.default_rng(0))
    ref = nc.conv_reference(x.reshape(1, 8, 10, 11), w.reshape(6, 8, 3, 3), padding=1)
    direct = get_algorithm("direct")
    plan = direct.plan(spec, ctx)
    assert plan.detail == "phase_planes"          # Note [few channels]
    for loop_order in ("planes", "channels_last"):
        out[...] = np.nan
        direct.run(spec, x, w, b, out, ctx, replace(plan, detail=loop_order))
        np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)
    bogus = replace(plan, detail="no such loop order")
    with pytest.raises(ValueError, match="loop_order must be one of"):
        direct.run(spec, x, w, b, out, ctx, bogus)
    im2col = get_algorithm("im2col")
    tiles = im2col.plan(spec, ctx).detail
    small = replace(tiles, tile=7)
    out[...] = np.nan
    im2col.run(spec, x, w, b, out, ctx, replace(im2col.plan(spec, ctx), detail=small))
    np.testing.assert_allclose(out.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("problem, loop_order", [
    # Note [few channels]: the cheaper of channels-last and phase planes
    (((1, 4, 256, 256), (4, 4, 3, 3), dict(padding=1)), "phase_planes"),
    (((4, 128, 56, 56), (128, 4, 3, 3), dict(padding=1, groups=32)), "phase_planes"),
    (((1, 8, 128, 128), (8, 8, 3, 3), dict(padding=1)), "phase_planes"),
    (((4, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)), "channels_last"),
    (RESNET, "channels_last"),
    (((4, 128, 56, 56), (128, 128, 3, 3), dict(stride=2, padding=1)), "channels_last"),
])
def test_direct_takes_phase_planes_for_few_channels(problem, loop_order):
    xs, ws, kw = problem
    assert get_algorithm("direct").plan(problem_spec(xs, ws, **kw)).path == loop_order
