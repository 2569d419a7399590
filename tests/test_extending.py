"""A new algorithm joins through one seam (docs/extending.md).

The toy algorithm below is defined here, in the test file, and registered
with :func:`numbaconv.algorithms.register`; with no edit to any package
file it then works through an explicit ``algorithm=``, ``"auto"``,
``explain``, ``tune``, ``numbaconv calibrate`` and ``numbaconv bench``, for
forward, transposed and gradient calls (the last two through the base
class's phase and rewrite formulations).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import numbaconv as nc
from numbaconv import calibration, costs
from numbaconv.algorithms import (ConvAlgorithm, algorithm_names, composite_paths, costed_plan,
                                  register, unregister)
from numbaconv.cli import main

from .conftest import assert_matches_reference

NAME = "toy_taps"


def _toy_work(spec):
    return spec.flops / 2                                  # one unit per multiply-add


class TapsAlgorithm(ConvAlgorithm):
    """Every kernel tap as one NumPy contraction over the channels of a
    strided window of the zero-padded input."""

    name = NAME
    # a tiny constant, so that "auto" takes it on the problems below
    paths = (costs.PathModel(f"{NAME}:taps", 1e-16, work=_toy_work),
             ) + composite_paths(NAME)
    measured_error_eps = 8.0
    transforms_values = False
    calibration_problems = (((1, 4, 12, 12), (4, 4, 3, 3), dict(padding=1)),)

    def unsupported_reason(self, spec):
        if spec.padding_mode != "zeros":
            return f"it pads with zeros only, got padding_mode={spec.padding_mode!r}"
        return None

    def plan_forward(self, spec, ctx):
        return costed_plan(self.name, f"{NAME}:taps", _toy_work(spec), ctx, 0, "taps")

    def forward(self, spec, x, weight, epilogue, out, ctx, detail=None):
        n, g = spec.batch, spec.groups
        cin_g, cout_g = spec.in_channels_per_group, spec.out_channels_per_group
        xp = np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in spec.padding3])
        xp = xp.reshape((n, g, cin_g) + xp.shape[2:])
        w = weight.reshape((g, cout_g, cin_g) + spec.kernel_size3)
        total = np.zeros((n, g, cout_g) + spec.output_size3, dtype=out.dtype)
        for taps in np.ndindex(*spec.kernel_size3):
            window = tuple(slice(t * d, t * d + s * (o - 1) + 1, s) for t, d, s, o in
                           zip(taps, spec.dilation3, spec.stride3, spec.output_size3))
            total += np.einsum("ngcdhw,goc->ngodhw", xp[(Ellipsis,) + window],
                               w[(Ellipsis,) + taps])
        out[...] = total.reshape(out.shape)
        if epilogue.has_bias:
            out += epilogue.bias.reshape(1, -1, 1, 1, 1)
        return out


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy registered (in a private cache directory), then removed."""
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    costs.forget_constants()
    algorithm = register(TapsAlgorithm())
    try:
        yield algorithm
    finally:
        unregister(NAME)
        costs.forget_constants()
    assert NAME not in algorithm_names() and f"{NAME}:taps" not in costs.paths()


def _problem(rng, dtype=np.float32):
    x = rng.standard_normal((2, 4, 9, 10)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    return x, w, b, dict(stride=(1, 2), padding=1, dilation=(2, 1), groups=2)


def test_an_explicit_choice_runs_the_toy(toy, rng):
    x, w, b, kw = _problem(rng)
    assert NAME in algorithm_names()
    y = nc.conv2d(x, w, b, algorithm=NAME, **kw)
    assert_matches_reference(y, x, w, b, algorithm=NAME, **kw)
    # transposed calls and both gradients come through the base class
    wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    t = nc.conv_transpose2d(x, wt, stride=2, padding=1, algorithm=NAME)
    np.testing.assert_allclose(t, nc.conv_transpose_reference(x, wt, stride=2, padding=1),
                               rtol=1e-4, atol=1e-4)
    g = rng.standard_normal(y.shape).astype(np.float32)
    gi, gw, gb = nc.conv_backward(x, w, g, algorithm=NAME, **kw)
    ri, rw, rb = nc.conv_backward(x, w, g, algorithm="direct", **kw)
    np.testing.assert_allclose(gi, ri, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, rw, rtol=1e-4, atol=1e-3)


def test_its_refusal_is_reported(toy, rng):
    x, _, _, _ = _problem(rng)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    with pytest.raises(nc.UnsupportedAlgorithmError, match="it pads with zeros only"):
        nc.conv2d(x, w, padding=1, padding_mode="reflect", algorithm=NAME)


def test_auto_and_explain_take_the_toy(toy, rng):
    x, w, b, kw = _problem(rng)
    assert nc.choose_algorithm(x.shape, w.shape, **kw).algorithm == NAME
    table = nc.explain(x.shape, w.shape, **kw)
    assert table.splitlines()[2].startswith(f"pick: {NAME} (taps)")
    y = nc.conv2d(x, w, b, **kw)
    assert_matches_reference(y, x, w, b, algorithm=NAME, **kw)
    # its declared error bound is honoured: above float64's tolerance, it is excluded
    toy.measured_error_eps = 100.0
    try:
        choice = nc.choose_algorithm(x.shape, w.shape, dtype="float64", **kw)
        assert choice.algorithm != NAME
        (row,) = [c for c in choice.candidates if c.algorithm == NAME]
        assert "above the float64 tolerance" in row.excluded
    finally:
        toy.measured_error_eps = 8.0


def test_tune_measures_the_toy(toy):
    tuned = nc.tune((1, 4, 12, 12), (4, 4, 3, 3), padding=1)
    assert NAME in tuned.seconds and tuned.algorithm in algorithm_names()


def test_calibrate_fits_the_toys_path(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "CALIBRATION_PROBLEMS", ())   # only its own problems
    fitted, counts = calibration.calibrate(repeats=1, rounds=1, names=(NAME,))
    assert counts[f"{NAME}:taps"] >= 1 and fitted[f"{NAME}:taps"] > 1e-16
    written = json.loads((tmp_path / costs.CONSTANTS_FILE).read_text())["constants"]
    assert written[f"{NAME}:taps"] == fitted[f"{NAME}:taps"]
    assert costs.constants()[f"{NAME}:taps"] == fitted[f"{NAME}:taps"]
    # the other paths kept the constants in force
    assert written["direct:planes"] == costs.defaults()["direct:planes"]


def test_bench_times_the_toy(toy, capsys):
    assert main(["bench", "--shapes", "pw1x1", "--algorithms", f"{NAME},direct",
                 "--no-torch", "--no-scipy", "--rounds", "1", "--repeats", "1",
                 "--warmup-ms", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"numbaconv:{NAME}" in out


def test_register_refuses_an_algorithm_without_its_declarations():
    class Undeclared(ConvAlgorithm):
        name = "undeclared"

    with pytest.raises(TypeError, match="must declare measured_error_eps"):
        register(Undeclared())

    class NoTransformRule(ConvAlgorithm):
        name = "no_rule"
        measured_error_eps = 1.0

    with pytest.raises(TypeError, match="must declare transforms_values"):
        register(NoTransformRule())
    assert "undeclared" not in algorithm_names() and "no_rule" not in algorithm_names()
