"""The network benchmark (numbaconv/bench/nets.py, ``numbaconv bench --nets``)
and its asv module: what it runs is what the suite says, checked against
the float64 reference, on both sides (ours and the PyTorch worker's calls).

All runs here are tiny (a few layers of at most a few MMACs, one round):
no timing is asserted, only that each variant was timed.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from numbaconv.bench import nets, runner
from numbaconv.bench.networks import NETWORKS, NetLayer, Network
from numbaconv.cli import main

from .conftest import torch

#: Small layers covering each kind of call the suite makes: a residual add
#: before ReLU (ResNet), a depthwise conv with hardswish, a transposed conv
#: with its own bias and tanh (pix2pix's last), a dilated grouped 1-D conv
#: with a bias (Conv-TasNet), a leaky ReLU with its slope, and a 3-D conv.
TINY = Network("tiny", "tiny layers of each kind", "tests", (
    NetLayer("stem", (1, 3, 12, 12), (8, 3, 3, 3), stride=2, padding=1, activation="relu"),
    NetLayer("res", (1, 8, 6, 6), (8, 8, 1, 1), activation="relu", residual=True, count=3),
    NetLayer("dw", (1, 8, 6, 6), (8, 1, 3, 3), padding=1, groups=8, activation="hardswish"),
    NetLayer("up", (1, 8, 6, 6), (8, 3, 4, 4), stride=2, padding=1, transposed=True, bias=True,
             activation="tanh"),
    NetLayer("tcn", (1, 8, 20), (8, 1, 3), padding=2, dilation=2, groups=8, bias=True,
             activation="leaky_relu", negative_slope=0.2, count=2),
    NetLayer("vol", (1, 2, 5, 5, 5), (4, 2, 3, 3, 3), padding=1, activation="silu"),
))


def _no_torch(monkeypatch):
    """PyTorch absent, as runner.torch_missing reports it (the layer bench's pattern)."""
    monkeypatch.setattr(runner, "torch_missing", lambda: "PyTorch is not installed")

    def no_worker(threads):
        raise AssertionError("no PyTorch worker is started without PyTorch")

    monkeypatch.setattr(runner, "TorchWorker", no_worker)


#: Published multiply-adds per image at 224x224 (billions) and their
#: sources.  The figures count the classifiers' Linear layers too, which
#: the suite leaves out (at most 2.5 M, MobileNetV3's), and are rounded:
#: hence 3 % (tests/test_networks.py, MACS_TOLERANCE, says how far each is).
PUBLISHED_GMACS = {
    # torchvision's model table for resnet50 (v1.5, "GFLOPS" 4.09, which are
    # multiply-adds); He et al. 2016, Table 1, give 3.8 for v1
    "resnet50": 4.09,
    # Howard et al. 2019 (Searching for MobileNetV3), Table 3: 219 M MAdds
    "mobilenet_v3_large": 0.219,
    # Tan and Le 2019 (EfficientNet), Table 2: 0.39 B FLOPs (multiply-adds)
    "efficientnet_b0": 0.39,
    # Liu et al. 2022 (A ConvNet for the 2020s), Table 1: 4.5 G FLOPs
    "convnext_tiny": 4.5,
}


@pytest.mark.parametrize("name", list(PUBLISHED_GMACS))
def test_the_benchmarked_layers_add_up_to_the_published_figures(name):
    """What the runner times at batch 8 is 8 images of the network: the
    layers at that batch, each counted ``count`` times."""
    layers = nets.layers_at_batch(NETWORKS[name], 8)
    assert all(layer.input_shape[0] == 8 for layer in layers)
    macs = sum(layer.macs * layer.count for layer in layers) / 8 / 1e9
    assert macs == pytest.approx(PUBLISHED_GMACS[name], rel=0.03)


def test_the_suite_has_the_networks_the_benchmark_promises():
    """Issue 26's eight: the four torchvision classifiers, a 2-D U-Net, a
    pix2pix generator with transposed layers, a 1-D audio network and a
    3-D U-Net, with the epilogues the runner applies."""
    assert list(NETWORKS) == ["resnet50", "mobilenet_v3_large", "efficientnet_b0",
                              "convnext_tiny", "unet2d", "pix2pix", "conv_tasnet", "unet3d"]
    ndims = {name: {layer.ndim for layer in net.layers} for name, net in NETWORKS.items()}
    assert ndims["conv_tasnet"] == {1} and ndims["unet3d"] == {3}
    assert sum(layer.transposed for layer in NETWORKS["pix2pix"].layers) == 8
    assert sum(layer.residual * layer.count for layer in NETWORKS["resnet50"].layers) == 16
    # ResNet-50's first layer: 7x7 stride 2 on 3x224x224, the one without an input gradient
    stem = NETWORKS["resnet50"].layers[0]
    assert (stem.input_shape, stem.weight_shape, stem.stride) == ((1, 3, 224, 224),
                                                                  (64, 3, 7, 7), 2)


def test_quick_cli_prints_the_tables_and_writes_the_json(tmp_path, capsys, monkeypatch):
    _no_torch(monkeypatch)
    path = tmp_path / "nets.json"
    assert main(["bench", "--nets", "--quick", "--net", "mobilenet_v3_large", "--no-progress",
                 "--json", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("network  "))
    assert header.split() == ["network", "batch", "mode", "ours", "nchw", "unfused", "ours",
                              "cl", "unfused", "torch", "nchw", "torch", "cl", "ours/torch",
                              "check"]
    totals = [line for line in lines if line.startswith("mobilenet_v3_large+ ")]
    assert [line.split()[1:3] for line in totals] == [["1", "inference"], ["1", "training"]]
    for line in totals:      # four totals of ours, none of PyTorch's; checked
        assert len([v for v in line.split()[3:7] if v != "-"]) == 4
        assert line.split()[7:10] == ["-", "-", "-"] and line.endswith("ok")
    assert "+ only the network's first layers (--quick)" in out
    assert ("torch columns are empty: PyTorch is not installed; to fill them: "
            "pip install torch==2.13.0") in out
    layer_header = next(line for line in lines if line.startswith("layer "))
    assert layer_header.split() == ["layer", "count", "pick", "ours", "fmt", "unfused", "torch",
                                    "fmt", "ratio", "rel", "err", "note"]
    rows = [line.split() for line in lines if line.startswith("features.")]
    assert [r[0] for r in rows] == ["features.0.0", "features.1.block.0.0"] * 2
    assert rows[2][2].count("/") == 2 and rows[2][2].split("/")[1] == "-"   # first layer: no gi

    doc = json.loads(path.read_text())
    assert doc["settings"]["networks"] == ["mobilenet_v3_large"]
    assert doc["settings"]["batches"] == [1] and doc["settings"]["rounds"] == 1
    assert doc["settings"]["torch"] == "PyTorch is not installed"
    assert doc["settings"]["check_rtol"] == nets.CHECK_RTOL
    assert [(n["network"], n["batch"], n["run_batch"], n["mode"]) for n in doc["networks"]] == [
        ("mobilenet_v3_large", 1, 1, "inference"), ("mobilenet_v3_large", 1, 1, "training")]
    for entry in doc["networks"]:
        assert set(entry) == {"network", "batch", "run_batch", "mode", "partial", "total_ms",
                              "ours_best", "torch_best", "ratio", "check_ok", "layers"}
        assert entry["partial"] and entry["ratio"] is None and entry["check_ok"] is True
        assert entry["total_ms"]["torch:nchw"] is None
        layer = entry["layers"][1]
        assert set(layer) == {"name", "count", "pick", "median_ms", "times_ms", "notes",
                              "error", "check_ok"}
        assert layer["count"] == 1 and layer["error"] <= nets.CHECK_RTOL
        assert sorted(layer["times_ms"]) == sorted(nets.ours_label(f, u) for f, u in nets.OURS)
        # the total is median x count summed over the layers
        total = sum(lay["median_ms"]["ours:nchw:fused"] * lay["count"]
                    for lay in entry["layers"])
        assert entry["total_ms"]["ours:nchw:fused"] == pytest.approx(total)


def test_runner_times_every_variant_and_checks_against_the_reference(monkeypatch):
    _no_torch(monkeypatch)
    status = {}
    results = nets.run_networks([TINY], batches=(2,), rounds=2, status=status)
    assert status["torch"] == "PyTorch is not installed"
    assert [(r.network, r.batch, r.run_batch, r.mode) for r in results] == [
        ("tiny", 2, 2, "inference"), ("tiny", 2, 2, "training")]
    for res in results:
        assert not res.partial and res.check_ok is True
        for layer in res.layers:
            # checked: every output and variant within CHECK_RTOL of the float64 reference
            assert layer.error is not None and layer.error <= nets.CHECK_RTOL, layer.name
            assert not layer.notes, layer.notes
            for fmt, fused in nets.OURS:
                assert len(layer.times[nets.ours_label(fmt, fused)]) == 2
        counts = {layer.name: layer.count for layer in res.layers}
        assert counts["res"] == 3
        expected = sum(layer.median_ms("ours:channels_last:unfused") * layer.count
                       for layer in res.layers)
        assert res.total_ms("ours:channels_last:unfused") == pytest.approx(expected)
    training = results[1]
    assert training.layers[0].pick.split("/")[1] == "-"        # the first layer: no gi
    assert all(layer.pick.split("/")[1] != "-" for layer in training.layers[1:])


def test_the_check_catches_a_wrong_result():
    """A result with one output channel dropped (the error the check is for)
    is over CHECK_RTOL; the right one is far under it."""
    layer = TINY.layer("res")
    a = nets.layer_arrays(layer)
    refs = nets.reference_outputs(layer, a, "inference", first=False)
    y = nets.forward_call(layer, a, fused=True)()
    assert nets.check_variant(layer, a, "inference", False, y, refs) < nets.CHECK_RTOL / 100
    y[:, 3] = 0
    assert nets.check_variant(layer, a, "inference", False, y, refs) > nets.CHECK_RTOL
    # and in training (batch 2), an input gradient 1 % off
    layer2 = nets.layers_at_batch(TINY, 2)[1]
    a2 = nets.layer_arrays(layer2)
    refs2 = nets.reference_outputs(layer2, a2, "training", first=False)
    result = nets.training_call(layer2, a2, fused=True, first=False)()
    assert nets.check_variant(layer2, a2, "training", False, result, refs2) < nets.CHECK_RTOL
    y2, gi2, gw2, gb2 = result
    wrong = (y2, gi2[:1] * 1.01, gw2, gb2)
    assert nets.check_variant(layer2, a2, "training", False, wrong, refs2) > nets.CHECK_RTOL


def test_a_wrong_result_is_reported_as_check_failed(monkeypatch, capsys):
    """End to end: a fused forward that is off on one output channel is
    marked CHECK FAILED in both tables, and the command exits 1."""
    _no_torch(monkeypatch)
    real = nets.forward_call

    def corrupted(layer, a, fused, algorithm="auto"):
        fn = real(layer, a, fused, algorithm)
        if not fused:
            return fn

        def wrong():
            y = fn()
            y[:, 0] += 1.0            # outputs are of unit size: an error of about 1/3
            return y
        return wrong

    monkeypatch.setattr(nets, "forward_call", corrupted)
    assert main(["bench", "--quick", "--net", "mobilenet_v3_large", "--mode", "inference",
                 "--no-progress"]) == 1
    out, err = capsys.readouterr()
    total = next(line for line in out.splitlines() if line.startswith("mobilenet_v3_large+"))
    assert total.endswith("CHECK FAILED")
    rows = [line for line in out.splitlines() if line.startswith("features.")]
    assert len(rows) == 2 and all(f"CHECK FAILED (over {nets.CHECK_RTOL:g})" in r for r in rows)
    assert "CHECK FAILED on 2 layer(s): mobilenet_v3_large batch 1 inference features.0.0" in err
    # --no-check: no figure, no verdict, exit 0
    assert main(["bench", "--quick", "--net", "mobilenet_v3_large", "--mode", "inference",
                 "--no-progress", "--no-check"]) == 0
    assert "CHECK FAILED" not in capsys.readouterr().out


def test_formats_choose_the_variants_run(monkeypatch, capsys):
    _no_torch(monkeypatch)
    results = nets.run_networks([TINY], batches=(1,), modes=("inference",),
                                formats=("channels_last",), rounds=1, max_layers=2)
    for layer in results[0].layers:
        assert sorted(layer.times) == ["ours:channels_last:fused", "ours:channels_last:unfused"]
    assert results[0].best("ours")[1] == "channels_last"
    assert results[0].total_ms("ours:nchw:fused") is None
    with pytest.raises(ValueError, match="format must be one of .* got 'nhwc'"):
        nets.run_networks([TINY], formats=("nhwc",), use_torch=False)
    with pytest.raises(ValueError, match="formats must name at least one"):
        nets.run_networks([TINY], formats=(), use_torch=False)
    with pytest.raises(SystemExit):
        main(["bench", "--nets", "--format", "nhwc"])
    assert "invalid choice: 'nhwc'" in capsys.readouterr().err
    assert main(["bench", "--format", "nchw", "--no-torch"]) == 2
    assert "--format" in capsys.readouterr().err


def test_a_pytorch_failure_mid_run_leaves_its_column_empty(monkeypatch):
    """A turn the worker answers with an error (out of memory, a crash)
    drops that PyTorch variant with its reason; ours and the run go on."""
    class FailingWorker:
        available = True

        def __init__(self, threads):
            self.requests = []

        def request(self, **message):
            self.requests.append(message["cmd"])
            if message["cmd"] == "prepare_layer":
                return {"ok": True, "id": len(self.requests)}
            if message["cmd"] == "turn" and message["id"] == 1:   # nchw's
                return {"error": "RuntimeError: out of memory"}
            return {"time": 0.001} if message["cmd"] == "turn" else {"ok": True}

        def close(self):
            pass

    monkeypatch.setattr(runner, "torch_missing", lambda: None)
    monkeypatch.setattr(runner, "TorchWorker", FailingWorker)
    status = {}
    results = nets.run_networks([TINY], batches=(1,), modes=("inference",), rounds=2,
                                max_layers=1, check=False, status=status)
    assert status["torch"] is None
    layer = results[0].layers[0]
    assert layer.notes == {"torch:nchw": "RuntimeError: out of memory"}
    assert "torch:nchw" not in layer.times and layer.times["torch:channels_last"] == [0.001] * 2
    assert len(layer.times["ours:nchw:fused"]) == 2
    assert results[0].best("torch") == (pytest.approx(1.0), "channels_last")


def test_fused_and_unfused_calls_agree_in_both_formats():
    """The two variants compute the same layer; channels-last views are
    what SPEC 1b describes (NHWC memory, logical NCHW shape)."""
    for layer in TINY.layers:
        base = nets.layer_arrays(layer)
        cl = nets.in_format(base, "channels_last")
        assert cl["x"].shape == base["x"].shape and np.array_equal(cl["x"], base["x"])
        assert np.moveaxis(cl["x"], 1, -1).flags.c_contiguous
        fused = nets.forward_call(layer, base, fused=True)()
        # fused and unfused round the same sum; the activation pass may
        # differ by an ulp or two of its own (float32 arithmetic)
        for a in (base, cl):
            np.testing.assert_allclose(nets.forward_call(layer, a, fused=False)(), fused,
                                       rtol=1e-5, atol=1e-6)


def test_bad_network_names_caps_and_options_are_refused(capsys):
    assert main(["bench", "--nets", "--net", "resnet51", "--no-torch"]) == 2
    err = capsys.readouterr().err
    assert "unknown network(s) ['resnet51']" in err and ", ".join(NETWORKS) in err
    with pytest.raises(ValueError, match="unknown network"):
        nets.select_networks(["resnet50", "vgg"])
    assert [n.name for n in nets.select_networks([])] == list(NETWORKS)
    assert nets.parse_caps(["unet3d=8", "unet2d=4"]) == {"unet3d": 8, "unet2d": 4}
    for bad in ("unet3d", "unet3d=0", "unet3d=two", "vgg=2"):
        with pytest.raises(ValueError, match="cap"):
            nets.parse_caps([bad])
    assert main(["bench", "--nets", "--cap", "unet3d=0", "--no-torch"]) == 2
    assert "positive integer batch" in capsys.readouterr().err
    assert main(["bench", "--nets", "--shapes", "resnet3x3", "--no-torch"]) == 2
    assert "--shapes" in capsys.readouterr().err
    assert main(["bench", "--batch", "8", "--no-torch"]) == 2
    assert "are for --nets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--nets", "--batch", "0"])
    with pytest.raises(ValueError, match="mode must be"):
        nets.run_networks([TINY], modes=("backward",), use_torch=False)


def test_a_capped_network_runs_at_its_cap_and_says_so(monkeypatch):
    _no_torch(monkeypatch)
    results = nets.run_networks([TINY], batches=(1, 3), modes=("inference",), rounds=1,
                                caps={"tiny": 2}, max_layers=1, check=False)
    assert [(r.batch, r.run_batch) for r in results] == [(1, 1), (3, 2)]
    table = nets.format_nets_tables(results)
    assert "      2* inference" in table and "* run at this batch size" in table
    assert "tiny, batch 2 (cap; asked 3), inference" in table
    assert nets.DEFAULT_BATCH_CAPS == {"unet3d": 2}


def test_help_describes_the_network_benchmark(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    for option in ("--nets", "--net NAME", "--batch N", "--mode", "--format",
                   "--cap NET=BATCH", "--plot FILE", "--quick"):
        assert option in out
    assert "unet3d" in out


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    results = []
    for batch in (1, 8):
        for mode in nets.MODES:
            res = nets.NetworkResult("tiny", batch, min(batch, 2), mode)
            layer = nets.LayerResult("stem", 2)
            layer.times = {"ours:nchw:fused": [0.002], "torch:nchw": [0.003]}
            res.layers.append(layer)
            results.append(res)
    assert results[0].ratio == pytest.approx(2 / 3)
    path = tmp_path / "ratios.png"
    assert nets.plot_ratios(results, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not nets.plot_ratios([nets.NetworkResult("tiny", 1, 1, "inference")],
                                str(tmp_path / "none.png"))
    # per layer: a picture per network, named after it
    written = nets.plot_layers(results, str(path))
    assert written == [str(tmp_path / "ratios-tiny.png")]
    assert Path(written[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert nets.plot_layers([nets.NetworkResult("tiny", 1, 1, "inference")], str(path)) == []


def test_no_matplotlib_skips_the_picture_cleanly(tmp_path, monkeypatch, capsys):
    _no_torch(monkeypatch)
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import fails
    res = nets.NetworkResult("tiny", 1, 1, "inference")
    layer = nets.LayerResult("stem", 1)
    layer.times = {"ours:nchw:fused": [0.002], "torch:nchw": [0.003]}
    res.layers.append(layer)
    assert not nets.plot_ratios([res], str(tmp_path / "a.png"))
    assert nets.plot_layers([res], str(tmp_path / "a.png")) == []
    assert main(["bench", "--quick", "--net", "mobilenet_v3_large", "--mode", "inference",
                 "--format", "nchw", "--no-progress", "--no-check",
                 "--plot", str(tmp_path / "b.png")]) == 0
    assert "no picture: it needs matplotlib" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
@pytest.mark.parametrize("fmt", nets.FORMATS)
def test_torch_worker_layer_calls_match_the_reference(fmt):
    """The PyTorch side computes the same layers (epilogue, gradients,
    output_mask) as ours, in both formats: checked in this process against
    the same float64 reference and CHECK_RTOL."""
    import torch.nn.functional as F

    from numbaconv.bench.torch_worker import _layer_call
    for layer in nets.layers_at_batch(TINY, 2):
        if fmt == "channels_last" and layer.ndim == 1:
            with pytest.raises(ValueError, match="no channels-last format for 1-D"):
                _layer_call(torch, F, layer, "inference", False, fmt, 0)
            continue
        first = layer.name == "stem"
        a = nets.layer_arrays(layer)
        refs = nets.reference_outputs(layer, a, "training", first)
        y = _layer_call(torch, F, layer, "inference", first, fmt, 0)()
        assert nets._rel_error(y.numpy()[:1], refs["y"]) < nets.CHECK_RTOL, layer.name
        if fmt == "channels_last":
            assert y.is_contiguous(memory_format=torch.channels_last if layer.ndim == 2
                                   else torch.channels_last_3d)
        y, gi, gw, gb = _layer_call(torch, F, layer, "training", first, fmt, 0)()
        assert (gi is None) == first and (gb is None) == (not layer.bias)
        if not first:
            assert nets._rel_error(gi.numpy()[:1], refs["gi"]) < nets.CHECK_RTOL
        # the full batch's weight gradient against ours (checked on sample 0 above)
        _, _, our_gw, our_gb = nets.training_call(layer, a, True, first)()
        assert nets._rel_error(gw.numpy(), np.asarray(our_gw, np.float64)) < nets.CHECK_RTOL
        if layer.bias:
            assert nets._rel_error(gb.numpy(), np.asarray(our_gb, np.float64)) < 1e-5


@pytest.mark.skipif(torch is None, reason="needs PyTorch")
def test_the_worker_process_times_torch_in_both_formats(monkeypatch):
    small = Network("small", "", "", (TINY.layers[1], TINY.layers[4]))
    results = nets.run_networks([small], modes=("inference",), batches=(1,), rounds=1,
                                check=False)
    layers = results[0].layers
    assert len(layers[0].times["torch:nchw"]) == 1
    assert len(layers[0].times["torch:channels_last"]) == 1
    assert "torch:channels_last" not in layers[1].times          # 1-D: NCHW only
    assert "no channels-last format for 1-D" in layers[1].notes["torch:channels_last"]
    assert results[0].ratio is not None
    assert results[0].best("torch")[1] == "nchw"     # the only format with a total


def test_asv_network_benchmarks_import_select_and_run(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    monkeypatch.delenv("NUMBACONV_ASV_ONLY", raising=False)
    sys.modules.pop("asv_benchmarks.bench_networks", None)
    full = importlib.import_module("asv_benchmarks.bench_networks")
    assert full.Network.param_names == ["net", "batch", "mode", "format"]
    assert full.Network.params == (list(NETWORKS), [1, 8], ["inference", "training"],
                                   ["nchw", "channels_last"])
    # a capped network's batch 8 is skipped, not recorded at its cap under batch 8's name
    with pytest.raises(NotImplementedError, match="capped at batch 2"):
        full.Network().setup("unet3d", 8, "inference", "nchw")
    monkeypatch.setenv("NUMBACONV_ASV_ONLY",
                       "net=mobilenet_v3_large;batch=1;mode=training;format=channels_last")
    sys.modules.pop("asv_benchmarks.bench_networks", None)
    part = importlib.import_module("asv_benchmarks.bench_networks")
    assert part.Network.params == (["mobilenet_v3_large"], [1], ["training"],
                                   ["channels_last"])
    with pytest.raises(NotImplementedError, match="format=nchw"):
        part.Network().setup("mobilenet_v3_large", 1, "training", "nchw")
    with pytest.raises(NotImplementedError, match="mode=inference"):
        part.Network().setup("mobilenet_v3_large", 1, "inference", "channels_last")
    # two layers, not the whole network: each mode's setup and sample run
    monkeypatch.setenv("NUMBACONV_ASV_ONLY", "net=mobilenet_v3_large;batch=2")
    seen = []

    def two_layers(net, batch):
        seen.append((net, batch))
        return nets.layers_at_batch(net, batch)[:2]

    monkeypatch.setattr(part, "_layers", two_layers)
    for mode in nets.MODES:
        bench = part.Network()
        bench.setup("mobilenet_v3_large", 2, mode, "channels_last")
        assert [count for _, count in bench.calls] == [1, 1]
        bench.time_total("mobilenet_v3_large", 2, mode, "channels_last")
    assert seen == [("mobilenet_v3_large", 2)] * 2
    sys.modules.pop("asv_benchmarks.bench_networks", None)
