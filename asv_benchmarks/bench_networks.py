"""asv benchmarks: whole networks' convolutions.

``Network.time_total`` is the total of one network of the suite
(:mod:`numbaconv.bench.networks`) at one batch size, in one mode and one
memory format: every distinct layer's call, ``auto``, made ``count``
times -- what ``numbaconv bench --nets`` reports as "ours fused".

* ``mode``: ``inference`` is the forward call with its fused epilogue
  (bias, activation, residual add); ``training`` adds the layer's
  gradients (:func:`numbaconv.conv_backward`; no input gradient for the
  network's first layer).
* ``format``: ``nchw`` (C-contiguous) or ``channels_last`` (logical
  (N, C, *spatial) views of channels-last memory, SPEC 1b).
* ``batch``: 1 or 8.  A network's batch cap
  (:data:`numbaconv.bench.nets.DEFAULT_BATCH_CAPS`: unet3d at 2) skips the
  points above it rather than record a smaller batch under their name.

The calls and arrays are those of :mod:`numbaconv.bench.nets`, so asv and
the command time the same thing.  Importing this module does not import
PyTorch, compiles nothing and builds no array (under a second): collecting
the grid is cheap, and ``setup`` does the work of one point only.

``setup`` builds the layers and calls each once (compiling or loading
its kernels), no more: one network pass.  A sample is a whole network
(milliseconds to minutes), so ``number`` is 1, a round takes 1 to 3
samples (30 s at most once one is taken), and asv's own warm-up is off
(the setup's call is it).  A commit without the network suite or the
fused epilogue (``activation=``) skips them all.

``NUMBACONV_ASV_ONLY`` selects with ``net=`` (network names), ``batch=``,
``mode=`` and ``format=``, as for the layer benchmarks
(:mod:`asv_benchmarks.benchmarks`); the full grid is 8 x 2 x 2 x 2 points,
hours on a 2-core machine.
"""

from __future__ import annotations

import os

try:
    from numbaconv.bench import nets as _nets
    from numbaconv.bench.networks import NETWORKS, layers_at_batch
except ImportError:          # a commit from before the network benchmark
    _nets = None
    NETWORKS = {}


def _selection():
    """{parameter name: allowed values (strings)} from NUMBACONV_ASV_ONLY."""
    chosen = {}
    for part in filter(None, os.environ.get("NUMBACONV_ASV_ONLY", "").split(";")):
        name, _, values = part.partition("=")
        chosen[name.strip()] = {v.strip() for v in values.split(",")}
    return chosen


def _chosen(name, values):
    allowed = _selection().get(name)
    return [v for v in values if allowed is None or str(v) in allowed]


#: An empty selection keeps one value, whose points ``setup`` skips, so
#: that asv still finds a valid grid.
NETS = _chosen("net", list(NETWORKS)) or ["resnet50"]
BATCHES = _chosen("batch", [1, 8]) or [1]
MODES = _chosen("mode", ["inference", "training"]) or ["inference"]
FORMATS = _chosen("format", ["nchw", "channels_last"]) or ["nchw"]


def _layers(net, batch):
    """The network's layers at ``batch`` (a seam for the tests)."""
    return layers_at_batch(net, batch)


def _prepare(net, batch, mode, fmt):
    """[(call, count)] of every layer, each called once; NotImplementedError to skip."""
    if _nets is None:
        raise NotImplementedError("this commit has no network benchmark")
    for name, value in (("net", net), ("batch", batch), ("mode", mode), ("format", fmt)):
        allowed = _selection().get(name)
        if allowed is not None and str(value) not in allowed:
            raise NotImplementedError(f"{name}={value} not in NUMBACONV_ASV_ONLY")
    cap = _nets.DEFAULT_BATCH_CAPS.get(net)
    if cap is not None and batch > cap:
        raise NotImplementedError(f"{net} is capped at batch {cap} (DEFAULT_BATCH_CAPS)")
    calls = []
    for i, layer in enumerate(_layers(net, batch)):
        arrays = _nets.in_format(_nets.layer_arrays(layer), fmt)
        if mode == "inference":
            call = _nets.forward_call(layer, arrays, fused=True)
        else:
            call = _nets.training_call(layer, arrays, fused=True, first=i == 0)
        try:
            call()                   # compile (or load); checks the commit serves it
        except TypeError as exc:     # no activation= / residual= in this commit
            raise NotImplementedError(str(exc)) from None
        calls.append((call, layer.count))
    return calls


class Network:
    """A network's total at a batch size, mode and format: fused epilogues, ``auto``."""

    param_names = ["net", "batch", "mode", "format"]
    params = (NETS, BATCHES, MODES, FORMATS)
    timeout = 3600
    number = 1
    repeat = (1, 3, 30.0)
    rounds = 2
    warmup_time = 0.0

    def setup(self, net, batch, mode, fmt):
        self.calls = _prepare(net, batch, mode, fmt)

    def time_total(self, net, batch, mode, fmt):
        for call, count in self.calls:
            for _ in range(count):
                call()
