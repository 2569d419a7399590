"""The network benchmark: every distinct layer of the network suite, timed
as the networks run it, against PyTorch (``numbaconv bench --nets``).

For each chosen network (:data:`numbaconv.bench.networks.NETWORKS`), batch
size and mode, every distinct layer (:class:`~numbaconv.bench.networks.NetLayer`)
is run with its real epilogue -- its bias if it has one, its activation,
and a residual array of the output's shape where it has a residual add:

* ``inference``: the forward call.  Ours in two variants: *fused* (the
  ``activation=`` / ``residual=`` arguments, one pass) and *unfused* (the
  convolution with its bias, then ``out += r`` and the NumPy activation
  :func:`numbaconv.epilogue.activate` as separate passes, the way PyTorch
  eager runs a network).  A layer with neither an activation nor a
  residual has one call, timed once, for both.
* ``training``: the forward call (as above) then the gradients through
  :func:`numbaconv.conv_backward`: the input gradient, the weight
  gradient and, where the layer has a bias, the bias gradient
  (``output_mask``).  A network's first layer computes no input gradient
  (nothing upstream needs it; PyTorch's autograd skips it too), on both
  sides.  The activation's own derivative is not timed on either side.

Ours runs in both memory formats (``nchw``: C-contiguous arrays;
``channels_last``: logical (N, C, *spatial) views of channels-last memory,
SPEC 1b, for the input, the residual and the output gradient), always with
``algorithm="auto"``, whose pick (:func:`numbaconv.choose_algorithm`) is
recorded per layer.  PyTorch runs in its own process (the
:class:`~numbaconv.bench.runner.TorchWorker` of the layer bench, command
``prepare_layer``): the same arrays, the epilogue as separate eager ops
(``F.conv2d`` with its bias, ``y += r``, the in-place activation where
PyTorch has one), ``torch.ops.aten.convolution_backward`` for the
gradients, under ``torch.no_grad()``, in ``torch.contiguous_format`` and
``torch.channels_last`` / ``channels_last_3d`` (1-D tensors have no
channels-last format in PyTorch: its 1-D layers run in NCHW only).

Timing (Note [network timing]): every variant makes one untimed call,
then the variants take ``rounds`` turns in rotating order, each turn one
timed call; a layer's time is the median of its ``rounds`` calls, and a
network's total is the sum over its layers of median x ``count``.  The
ratio reported per network is our best format's fused total over
PyTorch's best format's total (below 1: faster than PyTorch).

Note [network timing]
~~~~~~~~~~~~~~~~~~~~~
A turn after the other process's turn starts cold (Note [turn warm-up] in
:mod:`numbaconv.timing`), so each turn first calls untimed for
``warmup_s`` (at least once), as the layer bench does -- except where the
variant's previous timed call took over :data:`LONG_CALL_S`: a few
milliseconds of cold start are then under 2 % of the call, and the warm-up
call would double the cost of the heaviest layers (unet3d's take seconds
each).  The PyTorch worker applies the same rule to its own calls
(:func:`one_turn` serves both processes).

Note [network check]
~~~~~~~~~~~~~~~~~~~~
Every result of ours is checked against the float64 reference
(:mod:`numbaconv.reference`) with the same epilogue.  The reference runs at
about a tenth of our speed, so it is computed on the batch's first sample
only: the forward output and the input gradient of sample 0 depend on
sample 0 alone.  The weight and bias gradients sum over the batch; the
check makes one more (untimed) call of ours with the output gradient of
samples 1.. set to zero, whose weight and bias gradients are sample 0's,
with the same shapes and so the same algorithm as the timed call.  The
figure is max|ours - ref| / max|ref| over every output and variant of the
layer; above :data:`CHECK_RTOL` the layer is marked ``CHECK FAILED``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..timing import TURN_WARMUP_S
from .networks import NETWORKS, NetLayer, Network, layers_at_batch

#: Our memory formats and PyTorch's (same names in both processes).
#: one variant's arrays by role (x, w, b, r, g): arrays, or None where absent
ArrayDict = dict[str, Any]

FORMATS = ("nchw", "channels_last")
MODES = ("inference", "training")
DEFAULT_BATCHES = (1, 8)

#: Largest batch a network is run at unless ``caps`` says otherwise.  The
#: 3-D U-Net does 244 GMACs per sample (networks.py): at batch 8, 1954
#: GMACs: one forward pass of ours takes a minute or more on the 2-core
#: development machine (docs/benchmarking.md, "Network benchmark"), and a run
#: makes about 36 per layer and mode (6 variants x rounds + warm-up), hours
#: for this network alone.  At batch 2 it is still
#: the heaviest network of the suite.  The tables say where a cap applied
#: (``numbaconv bench --nets --cap unet3d=8`` lifts it).
DEFAULT_BATCH_CAPS: dict[str, int] = {"unet3d": 2}

#: A variant whose last timed call took longer skips the turn's warm-up
#: (Note [network timing]).
LONG_CALL_S = 0.25

#: Largest max|ours - ref| / max|ref| a float32 layer may show (Note
#: [network check]).  auto only picks algorithms within 64 eps of the
#: largest output magnitude (dispatch.TOLERANCE_EPS), which on these
#: unit-variance data is at most about 100 x max|ref| for the longest
#: sums (4608 terms): 64 x 1.2e-7 x 100 = 7.7e-4.  An error that drops or
#: doubles one input channel or tap is about max|ref| / sqrt(terms), 1.5e-2
#: for the longest sums: twenty times over the bound.
CHECK_RTOL = 1e-3

#: ``--quick``: a tiny subset for tests and CI.
QUICK_NETWORKS = ("resnet50", "mobilenet_v3_large")
QUICK_LAYERS = 2

#: Label of each of our variants: (format, fused).
OURS = tuple((fmt, fused) for fmt in FORMATS for fused in (True, False))


def ours_label(fmt: str, fused: bool) -> str:
    return f"ours:{fmt}:{'fused' if fused else 'unfused'}"


def torch_label(fmt: str) -> str:
    return f"torch:{fmt}"


def select_networks(names: Sequence[str] | None) -> list[Network]:
    """The networks named (all when ``names`` is empty), in suite order.

    Raises
    ------
    ValueError
        An unknown name; the message lists the known ones.
    """
    names = list(names or [])
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise ValueError(f"unknown network(s) {unknown}; known: {', '.join(NETWORKS)}")
    return [net for name, net in NETWORKS.items() if not names or name in names]


def parse_caps(items: Sequence[str] | None) -> dict[str, int]:
    """``NET=BATCH`` items over :data:`DEFAULT_BATCH_CAPS`.

    Raises
    ------
    ValueError
        A malformed item, an unknown network or a batch that is not a
        positive integer.
    """
    caps = dict(DEFAULT_BATCH_CAPS)
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"cap must be NET=BATCH with a positive integer batch, got {item!r}")
        if name not in NETWORKS:
            raise ValueError(f"unknown network {name!r} in cap {item!r}; known: "
                             f"{', '.join(NETWORKS)}")
        caps[name] = int(value)
    return caps


# ---------------------------------------------------------------------------
# the layers' arrays and calls (shared with the PyTorch worker and asv)
# ---------------------------------------------------------------------------

def channels_last(a: np.ndarray) -> np.ndarray:
    """``a`` (N, C, *spatial) as a view of channels-last memory (SPEC 1b)."""
    moved = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    return np.moveaxis(moved, -1, 1)


def layer_arrays(layer: NetLayer, seed: int = 0) -> ArrayDict:
    """The layer's float32 arrays, C-contiguous, the same in every process.

    ``x`` (input), ``w`` (weight, scaled by 1/sqrt(fan-in) so outputs stay
    of unit size through the activations), ``b`` (bias or None), ``r``
    (residual, or None) and ``g`` (output gradient), all seeded by ``seed``
    and the layer's name and shapes."""
    key = f"{layer.name}|{layer.input_shape}|{layer.weight_shape}".encode()
    rng = np.random.default_rng([seed, zlib.crc32(key)])
    out_shape = layer.output_shape
    fan_in = int(np.prod(layer.weight_shape[1:])) if not layer.transposed else \
        int(np.prod(layer.weight_shape[2:])) * layer.weight_shape[0] // layer.groups
    x = rng.standard_normal(layer.input_shape, dtype=np.float32)
    w = (rng.standard_normal(layer.weight_shape, dtype=np.float32)
         / np.float32(np.sqrt(max(fan_in, 1))))
    c_out = out_shape[1]
    b = rng.standard_normal(c_out, dtype=np.float32) * np.float32(0.1) if layer.bias else None
    r = rng.standard_normal(out_shape, dtype=np.float32) if layer.residual else None
    g = rng.standard_normal(out_shape, dtype=np.float32)
    return {"x": x, "w": w, "b": b, "r": r, "g": g}


def in_format(arrays: ArrayDict, fmt: str) -> ArrayDict:
    """The activations (x, r, g) in ``fmt``; the weight and bias as they are."""
    if fmt == "nchw":
        return dict(arrays)
    return {k: channels_last(v) if k in ("x", "r", "g") and v is not None else v
            for k, v in arrays.items()}


def _hyper(layer: NetLayer) -> dict[str, Any]:
    kw: dict[str, Any] = dict(stride=layer.stride, padding=layer.padding,
                              dilation=layer.dilation, groups=layer.groups)
    if layer.transposed:
        kw["output_padding"] = layer.output_padding
    return kw


def forward_call(layer: NetLayer, a: ArrayDict, fused: bool,
                 algorithm: str = "auto") -> Callable[[], np.ndarray]:
    """Our forward call of ``layer`` on arrays ``a`` with its epilogue,
    fused or as separate passes."""
    from .. import functional
    from ..epilogue import activate

    name = f"conv_transpose{layer.ndim}d" if layer.transposed else f"conv{layer.ndim}d"
    op = getattr(functional, name)
    x, w, b, r = a["x"], a["w"], a["b"], a["r"]
    kw = _hyper(layer)
    act, slope = layer.activation, layer.negative_slope
    if fused:
        return lambda: op(x, w, b, algorithm=algorithm, activation=act, negative_slope=slope,
                          residual=r, **kw)

    def unfused():
        y = op(x, w, b, algorithm=algorithm, **kw)
        if r is not None:
            y += r
        return activate(act, y, slope) if act is not None else y
    return unfused


def backward_call(layer: NetLayer, a: ArrayDict, first: bool,
                  algorithm: str = "auto", g: np.ndarray | None = None
                  ) -> Callable[[], tuple]:
    """Our gradients of ``layer``: (input or None, weight, bias or None)."""
    from ..grad import conv_backward

    x, w, g = a["x"], a["w"], a["g"] if g is None else g
    mask = (not first, True, layer.bias)
    kw = _hyper(layer)
    if not layer.transposed:
        kw.pop("output_padding", None)
    return lambda: conv_backward(x, w, g, transposed=layer.transposed, output_mask=mask,
                                    algorithm=algorithm, **kw)


def training_call(layer: NetLayer, a: ArrayDict, fused: bool, first: bool,
                  algorithm: str = "auto") -> Callable[[], tuple]:
    """Forward with its epilogue, then the gradients: (y, gi, gw, gb)."""
    fwd = forward_call(layer, a, fused, algorithm)
    bwd = backward_call(layer, a, first, algorithm)

    def step():
        y = fwd()
        return (y,) + tuple(bwd())
    return step


def picks(layer: NetLayer, mode: str, first: bool, fmt: str = "nchw") -> str:
    """``auto``'s algorithm for the layer: the forward's, and in training
    ``forward/input gradient/weight gradient`` (``-`` for no input gradient)."""
    from ..dispatch import choose_algorithm

    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
              groups=layer.groups, transposed=layer.transposed,
              output_padding=layer.output_padding, dtype="float32",
              memory_format="channels_last" if fmt == "channels_last" else "contiguous")

    def pick(gradient=None):
        try:
            return choose_algorithm(layer.input_shape, layer.weight_shape, gradient=gradient,
                                    **kw).algorithm
        except (ValueError, MemoryError) as exc:       # no algorithm can serve it here
            return f"?({type(exc).__name__})"
    if mode == "inference":
        return pick()
    return "/".join((pick(), "-" if first else pick("input"), pick("weight")))


# ---------------------------------------------------------------------------
# the check (Note [network check])
# ---------------------------------------------------------------------------

def reference_outputs(layer: NetLayer, a: ArrayDict, mode: str,
                      first: bool) -> dict[str, np.ndarray]:
    """float64 reference of the first sample: ``y`` and, in training,
    ``gi`` (unless ``first``), ``gw`` and ``gb`` (with a bias)."""
    from .. import reference as ref
    from ..epilogue import activate

    f64: dict[str, Any] = {
        k: None if v is None else np.asarray(v[:1] if k in ("x", "r", "g") else v, np.float64)
        for k, v in a.items()}
    x, w, b, r, g = (f64[k] for k in ("x", "w", "b", "r", "g"))
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
              groups=layer.groups)
    if layer.transposed:
        y = ref.conv_transpose_reference(x, w, b, output_padding=layer.output_padding, **kw)
    else:
        y = ref.conv_reference(x, w, b, **kw)
    if r is not None:
        y = y + r
    out = {"y": activate(layer.activation, y, layer.negative_slope)}
    if mode == "training":
        if layer.transposed:
            # y = conv_transpose(x, w) is the input gradient of the conv
            # y -> x, so dL/dx = conv(g, w) and dL/dw its weight gradient
            if not first:
                out["gi"] = ref.conv_reference(g, w, None, **kw)
            out["gw"] = ref.conv_grad_weight_reference(g, w.shape, x, **kw)
        else:
            if not first:
                out["gi"] = ref.conv_grad_input_reference(x.shape, w, g, **kw)
            out["gw"] = ref.conv_grad_weight_reference(x, w.shape, g, **kw)
        if layer.bias:
            out["gb"] = g.sum(axis=tuple(i for i in range(g.ndim) if i != 1))
    return out


def _rel_error(got, want) -> float:
    got = np.asarray(got, np.float64)
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(got - want).max()) / scale


def check_variant(layer: NetLayer, a: ArrayDict, mode: str, first: bool,
                  result, refs: dict[str, np.ndarray]) -> float:
    """The largest relative error of one variant's ``result`` (its first
    sample; the weight and bias gradients from a call on sample 0's output
    gradient alone, Note [network check])."""
    if mode == "inference":
        return _rel_error(np.asarray(result)[:1], refs["y"])
    y, gi, gw, gb = result
    errors = [_rel_error(np.asarray(y)[:1], refs["y"])]
    if gi is not None:
        errors.append(_rel_error(np.asarray(gi)[:1], refs["gi"]))
    if a["x"].shape[0] > 1:
        g0 = a["g"].copy(order="K")       # in the variant's memory format
        g0[1:] = 0
        _, gw, gb = backward_call(layer, a, True, g=g0)()
    errors.append(_rel_error(gw, refs["gw"]))
    if gb is not None:
        errors.append(_rel_error(gb, refs["gb"]))
    return max(errors)


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def one_turn(fn: Callable[[], object], warmup_s: float, last: float | None) -> float:
    """One turn of a variant (Note [network timing]): untimed calls for
    ``warmup_s`` (at least one) unless its ``last`` timed call took over
    :data:`LONG_CALL_S`, then one timed call; its duration in seconds."""
    if warmup_s > 0 and (last is None or last <= LONG_CALL_S):
        start = time.perf_counter()
        fn()
        while time.perf_counter() - start < warmup_s:
            fn()
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


@dataclass
class LayerResult:
    """One layer of one network at one batch size and mode."""

    name: str
    count: int
    pick: str = ""
    times: dict = field(default_factory=dict)     # variant label -> [seconds]
    notes: dict = field(default_factory=dict)     # variant label -> why it has no times
    error: float | None = None

    def median_ms(self, label: str) -> float | None:
        t = self.times.get(label)
        return statistics.median(t) * 1e3 if t else None

    @property
    def check_ok(self) -> bool | None:
        return None if self.error is None else self.error <= CHECK_RTOL

    def best(self, prefix: str, fused: bool = True) -> tuple[float | None, str]:
        """(ms, format) of the faster format of ``prefix`` ("ours"/"torch")."""
        return _fastest_format(self.median_ms, prefix, fused)

    def as_dict(self) -> dict:
        return {"name": self.name, "count": self.count, "pick": self.pick,
                "median_ms": {k: self.median_ms(k) for k in self.times},
                "times_ms": {k: [t * 1e3 for t in v] for k, v in self.times.items()},
                "notes": dict(self.notes), "error": self.error, "check_ok": self.check_ok}


def _fastest_format(ms_of: Callable[[str], float | None], prefix: str,
                    fused: bool) -> tuple[float | None, str]:
    """(ms, format) of the format in which ``ms_of(label)`` is smallest for
    ``prefix`` ("ours", in the ``fused`` variant, or "torch"); (None, "")
    where no format has a time."""
    found = []
    for fmt in FORMATS:
        ms = ms_of(ours_label(fmt, fused) if prefix == "ours" else torch_label(fmt))
        if ms is not None:
            found.append((ms, fmt))
    return min(found) if found else (None, "")


@dataclass
class NetworkResult:
    """One network at one batch size and mode."""

    network: str
    batch: int              # as asked
    run_batch: int          # as run (below ``batch`` where a cap applied)
    mode: str
    layers: list = field(default_factory=list)
    partial: bool = False   # only some of the network's layers (--quick)

    def total_ms(self, label: str) -> float | None:
        """Sum over the layers of median x count; None if a layer has no time."""
        total = 0.0
        for layer in self.layers:
            ms = layer.median_ms(label)
            if ms is None:
                return None
            total += ms * layer.count
        return total

    def best(self, prefix: str, fused: bool = True) -> tuple[float | None, str]:
        """(total ms, format) of the faster format of ``prefix``."""
        return _fastest_format(self.total_ms, prefix, fused)

    @property
    def ratio(self) -> float | None:
        """Our best format's fused total / PyTorch's best format's total."""
        ours, _ = self.best("ours")
        torch, _ = self.best("torch")
        return ours / torch if ours is not None and torch else None

    @property
    def check_ok(self) -> bool | None:
        flags = [layer.check_ok for layer in self.layers if layer.check_ok is not None]
        return all(flags) if flags else None

    def as_dict(self) -> dict:
        labels = [ours_label(f, u) for f, u in OURS] + [torch_label(f) for f in FORMATS]
        return {"network": self.network, "batch": self.batch, "run_batch": self.run_batch,
                "mode": self.mode, "partial": self.partial,
                "total_ms": {k: self.total_ms(k) for k in labels},
                "ours_best": self.best("ours")[1], "torch_best": self.best("torch")[1],
                "ratio": self.ratio, "check_ok": self.check_ok,
                "layers": [layer.as_dict() for layer in self.layers]}


def run_networks(networks: Sequence[Network], *, batches: Sequence[int] = DEFAULT_BATCHES,
                 modes: Sequence[str] = MODES, formats: Sequence[str] = FORMATS,
                 rounds: int = 5, threads: int = 2, use_torch: bool = True,
                 check: bool = True, seed: int = 0,
                 progress: bool | str = False, warmup_s: float = TURN_WARMUP_S,
                 caps: dict[str, int] | None = None, max_layers: int | None = None,
                 status: dict | None = None) -> list[NetworkResult]:
    """Time every distinct layer of ``networks``; a :class:`NetworkResult`
    per (batch, network, mode), in that order.

    Parameters
    ----------
    networks : sequence of Network
    batches : sequence of int
        Batch sizes (each capped per network by ``caps``).
    modes : sequence of {"inference", "training"}
    formats : sequence of {"nchw", "channels_last"}
        The memory formats to run, ours and PyTorch's alike.
    rounds : int
        Timed calls per variant and layer (one per round); the median is
        reported.
    threads : int
        Threads for numba and for PyTorch.
    use_torch, check : bool
        Time PyTorch (in its own process); check our results against the
        float64 reference (Note [network check]).
    seed : int
    progress : bool or {"bar", "lines"}
        As :func:`numbaconv.bench.runner.run_benchmarks` takes it.
    warmup_s : float
        Untimed seconds at the start of each turn (Note [network timing]).
    caps : dict, optional
        Largest batch per network name (default :data:`DEFAULT_BATCH_CAPS`).
    max_layers : int, optional
        Only each network's first ``max_layers`` layers (``--quick``).
    status : dict, optional
        Filled with ``"torch"``: None if PyTorch was timed, else why not.
    """
    import numba

    from . import runner

    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not formats:
        raise ValueError(f"formats must name at least one of {FORMATS}, got {formats!r}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    caps = DEFAULT_BATCH_CAPS if caps is None else caps
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    status = {} if status is None else status
    missing = runner.torch_missing() if use_torch else "skipped"
    worker = runner.TorchWorker(threads) if missing is None else None
    if worker is not None and not worker.available:
        missing = f"the PyTorch worker did not start ({worker.reason})"
    status["torch"] = missing
    plan = []
    for batch in batches:
        for net in networks:
            run_batch = min(batch, caps.get(net.name, batch))
            layers = layers_at_batch(net, run_batch)[:max_layers]
            for mode in modes:
                plan.append((net, batch, run_batch, mode, layers))
    points = sum(len(p[-1]) for p in plan)
    bar = runner.Progress(points * (rounds + 1), bool(progress), lines=progress == "lines",
                          points=points)
    results = []
    try:
        for net, batch, run_batch, mode, layers in plan:
            result = NetworkResult(net.name, batch, run_batch, mode,
                                   partial=len(layers) < len(net.layers))
            for i, layer in enumerate(layers):
                first = net.layers[0].name == layer.name
                where = f"{net.name} b{run_batch} {mode} {layer.name}"
                bar.begin(where)
                result.layers.append(_run_layer(layer, mode, first, formats, rounds, warmup_s,
                                                worker, check, seed, bar, where))
            results.append(result)
    finally:
        bar.close()
        if worker is not None:
            worker.close()
    return results


def _run_layer(layer, mode, first, formats, rounds, warmup_s, worker, check, seed, bar, where):
    out = LayerResult(layer.name, layer.count, pick=picks(layer, mode, first))
    base = layer_arrays(layer, seed)
    plain = layer.activation is None and not layer.residual     # fused == unfused
    players = []
    refs = None
    bar.step(f"{where}: warm-up")
    for fmt, fused in OURS:
        label = ours_label(fmt, fused)
        if fmt not in formats or (plain and not fused):
            continue                      # not asked for, or the same call as the fused one
        a = in_format(base, fmt)
        fn = (forward_call(layer, a, fused) if mode == "inference"
              else training_call(layer, a, fused, first))
        try:
            result = fn()                 # compiles; never timed
        except (ValueError, NotImplementedError, MemoryError) as exc:
            out.notes[label] = f"{type(exc).__name__}: {exc}"
            continue
        if check:
            if refs is None:
                refs = reference_outputs(layer, base, mode, first)
            error = check_variant(layer, a, mode, first, result, refs)
            out.error = error if out.error is None else max(out.error, error)
        players.append((label, fn))
    if worker is not None and worker.available:
        for fmt in formats:
            label = torch_label(fmt)
            if fmt == "channels_last" and layer.ndim == 1:
                out.notes[label] = "PyTorch has no channels-last format for 1-D tensors"
                continue
            reply = worker.request(cmd="prepare_layer", layer=layer_to_dict(layer), mode=mode,
                                   first=first, memory_format=fmt, seed=seed)
            if reply.get("ok"):
                players.append((label, None, reply["id"]))
            else:
                out.notes[label] = reply.get("error", "PyTorch refused the layer")
    last = {}
    for r in range(rounds):
        k = r % len(players) if players else 0
        for player in players[k:] + players[:k]:                 # rotate the order
            label = player[0]
            if label in out.notes:
                continue                  # failed in an earlier round
            if player[1] is None:
                reply = worker.request(cmd="turn", id=player[2], warmup_s=warmup_s,
                                       last=last.get(label))
                if "time" not in reply:
                    # PyTorch failed mid-run (out of memory, the worker died):
                    # a partial column would mislead, so the variant has no time
                    out.notes[label] = reply.get("error", "no time from the PyTorch worker")
                    out.times.pop(label, None)
                    continue
                t = reply["time"]
            else:
                t = one_turn(player[1], warmup_s, last.get(label))
            last[label] = t
            out.times.setdefault(label, []).append(t)
        bar.step(f"{where}: round {r + 1}/{rounds}")
    if plain and ours_label("nchw", True) in out.times:
        for fmt in FORMATS:
            if ours_label(fmt, True) in out.times:
                out.times[ours_label(fmt, False)] = out.times[ours_label(fmt, True)]
    best_fmt = out.best("ours")[1]
    if best_fmt and best_fmt != "nchw":
        # auto chooses per memory format: report the pick of the format shown
        out.pick = picks(layer, mode, first, best_fmt)
    if worker is not None and worker.available:
        worker.request(cmd="release")
    return out


def layer_to_dict(layer: NetLayer) -> dict:
    return {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)}


def layer_from_dict(d: dict) -> NetLayer:
    d = dict(d)
    for key in ("input_shape", "weight_shape", "follows"):
        d[key] = tuple(d.get(key, ()))
    return NetLayer(**d)


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

def torch_note(why: str | None) -> str | None:
    """The tables' line on empty PyTorch columns (``why``: ``status["torch"]``
    of :func:`run_networks`), or None if they are filled."""
    from .runner import TORCH_INSTALL

    if why is None:
        return None
    if why == "skipped":
        return "torch columns are empty: PyTorch was skipped (--no-torch)."
    return f"torch columns are empty: {why}; to fill them: {TORCH_INSTALL}"


def _ms(value: float | None, width: int = 9) -> str:
    return f"{value:{width}.2f}" if value is not None else f"{'-':>{width}}"


def _fmt_short(fmt: str) -> str:
    return {"nchw": "nchw", "channels_last": "cl", "": ""}[fmt]


def format_nets_tables(results: Sequence[NetworkResult], torch_note: str | None = None,
                       layers: bool = True) -> str:
    """The network totals table, then (``layers``) a table per network,
    batch and mode with each layer's times."""
    header = (f"{'network':<19} {'batch':>7} {'mode':<9} {'ours nchw':>9} {'unfused':>9} "
              f"{'ours cl':>9} {'unfused':>9} {'torch nchw':>10} {'torch cl':>9} "
              f"{'ours/torch':>10}  check")
    lines = ["network totals (ms: sum over layers of median x count)", header,
             "-" * len(header)]
    capped = partial = False
    for res in results:
        batch_text = str(res.batch) if res.run_batch == res.batch else f"{res.run_batch}*"
        capped |= res.run_batch != res.batch
        name = res.network + ("+" if res.partial else "")
        partial |= res.partial
        ratio = res.ratio
        ours_fmt, torch_fmt = res.best("ours")[1], res.best("torch")[1]
        ratio_text = (f"{ratio:5.2f} {_fmt_short(ours_fmt)}/{_fmt_short(torch_fmt)}"
                      if ratio is not None else "-")
        check = {None: "", True: "ok", False: "CHECK FAILED"}[res.check_ok]
        lines.append(
            f"{name:<19} {batch_text:>7} {res.mode:<9} "
            f"{_ms(res.total_ms(ours_label('nchw', True)))} "
            f"{_ms(res.total_ms(ours_label('nchw', False)))} "
            f"{_ms(res.total_ms(ours_label('channels_last', True)))} "
            f"{_ms(res.total_ms(ours_label('channels_last', False)))} "
            f"{_ms(res.total_ms(torch_label('nchw')), 10)} "
            f"{_ms(res.total_ms(torch_label('channels_last')))} {ratio_text:>10}  {check}")
    lines.append("ours nchw / ours cl: fused epilogue (activation=, residual=); unfused: the "
                 "same convolution, then the residual add and the activation as separate "
                 "NumPy passes.  ours/torch = our faster format's fused total / PyTorch's "
                 "faster format's total (below 1: faster than PyTorch), formats after it "
                 "(ours/torch's).")
    if capped:
        lines.append("* run at this batch size: the network's batch cap "
                     "(numbaconv.bench.nets.DEFAULT_BATCH_CAPS; --cap NET=BATCH changes it); "
                     "its totals are for the smaller batch.")
    if partial:
        lines.append("+ only the network's first layers (--quick): not a whole network.")
    if any(layer.notes.get(torch_label("channels_last")) for res in results
           for layer in res.layers):
        lines.append("torch cl: PyTorch has no channels-last format for 1-D tensors, so a "
                     "network with 1-D layers has no torch cl total; its best is nchw.")
    if torch_note:
        lines.append(torch_note)
    if not layers:
        return "\n".join(lines)
    for res in results:
        batch = res.run_batch
        lines += ["", f"{res.network}, batch {batch}"
                  + (f" (cap; asked {res.batch})" if batch != res.batch else "")
                  + f", {res.mode}"]
        head = (f"{'layer':<26} {'count':>5} {'pick':<22} {'ours':>9} {'fmt':<4} "
                f"{'unfused':>9} {'torch':>9} {'fmt':<4} {'ratio':>6} {'rel err':>8}  note")
        lines += [head, "-" * len(head)]
        for layer in res.layers:
            ours, ofmt = layer.best("ours")
            unfused, _ = layer.best("ours", fused=False)
            torch, tfmt = layer.best("torch")
            ratio_cell = f"{ours / torch:6.2f}" if ours is not None and torch else f"{'-':>6}"
            err = f"{layer.error:8.1e}" if layer.error is not None else f"{'':>8}"
            notes = [f"{k}: {v}" for k, v in layer.notes.items()
                     if not v.startswith("PyTorch has no channels-last")]
            if layer.check_ok is False:
                notes.insert(0, f"CHECK FAILED (over {CHECK_RTOL:g})")
            lines.append(f"{layer.name[:26]:<26} {layer.count:>5} {layer.pick[:22]:<22} "
                         f"{_ms(ours)} {_fmt_short(ofmt):<4} {_ms(unfused)} {_ms(torch)} "
                         f"{_fmt_short(tfmt):<4} {ratio_cell} {err}  {'; '.join(notes)}")
    lines.append("")
    lines.append("per layer: ours = our faster format (fused), unfused = our faster format "
                 "unfused, torch = PyTorch's faster format, ms per call (median); ratio = "
                 "ours / torch; pick = auto's algorithm (training: forward/input "
                 "gradient/weight gradient); rel err = max|ours - ref| / max|ref| against "
                 "the float64 reference over every output and variant (sample 0).")
    return "\n".join(lines)


def results_to_json(results: Sequence[NetworkResult], settings: dict) -> dict:
    """The JSON document ``--json`` writes: ``settings`` and ``networks``."""
    return {"settings": {"formats": list(FORMATS), **settings, "check_rtol": CHECK_RTOL},
            "networks": [res.as_dict() for res in results]}


#: The quality bars drawn on the picture (ours / torch).
QUALITY_BARS = (0.70, 0.85)


def plot_ratios(results: Sequence[NetworkResult], path: str) -> bool:
    """Bars of ours/torch per network (batch sizes side by side), one panel
    per mode, with lines at 1.0 and the quality bars (``+`` after a name:
    only its first layers ran); False (nothing written) without matplotlib
    or without any ratio."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    modes = [m for m in MODES if any(r.mode == m and r.ratio is not None for r in results)]
    if not modes:
        return False
    nets = list(dict.fromkeys(r.network for r in results))
    batches = sorted({r.batch for r in results})
    fig, axes = plt.subplots(len(modes), 1, figsize=(max(6, 1.2 * len(nets) + 2),
                                                      3.2 * len(modes)), squeeze=False)
    width = 0.8 / len(batches)
    for ax, mode in zip(axes[:, 0], modes):
        for j, batch in enumerate(batches):
            xs, ys, labels = [], [], []
            for i, net in enumerate(nets):
                for r in results:
                    if (r.network, r.batch, r.mode) == (net, batch, mode) and r.ratio:
                        xs.append(i + (j - (len(batches) - 1) / 2) * width)
                        ys.append(r.ratio)
                        labels.append(f"{r.run_batch}*" if r.run_batch != batch else "")
            bars = ax.bar(xs, ys, width, label=f"batch {batch}")
            for bar, label in zip(bars, labels):
                if label:
                    ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
        for level, style in ((1.0, "-"), *((q, "--") for q in QUALITY_BARS)):
            ax.axhline(level, color="k" if level == 1.0 else "gray", linestyle=style,
                       linewidth=0.8)
        ax.set_xticks(range(len(nets)))
        partial = {r.network for r in results if r.partial}
        ax.set_xticklabels([n + ("+" if n in partial else "") for n in nets], rotation=20,
                           ha="right", fontsize=8)
        ax.set_ylabel("ours / torch (total ms)")
        ax.set_title(f"{mode}: below 1 is faster than PyTorch; lines at 1.0, "
                     + ", ".join(f"{q:.2f}" for q in QUALITY_BARS), fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def layer_plot_path(path: str, network: str) -> str:
    """Where :func:`plot_layers` draws ``network``: ``path``'s stem, a dash
    and the network's name, with ``path``'s suffix (``nets.png`` ->
    ``nets-resnet50.png``)."""
    from pathlib import Path

    p = Path(path)
    return str(p.with_name(f"{p.stem}-{network}{p.suffix or '.png'}"))


def plot_layers(results: Sequence[NetworkResult], path: str) -> list[str]:
    """A picture per network of each layer's ours/torch (horizontal bars,
    batch sizes side by side, one panel per mode, ``auto``'s pick written
    at each bar), at :func:`layer_plot_path`; the paths written (none
    without matplotlib or without any layer's ratio)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []

    def ratio(layer):
        ours, torch = layer.best("ours")[0], layer.best("torch")[0]
        return ours / torch if ours is not None and torch else None

    written = []
    for net in dict.fromkeys(r.network for r in results):
        mine = [r for r in results if r.network == net]
        modes = [m for m in MODES if any(r.mode == m and ratio(lay) is not None
                                         for r in mine for lay in r.layers)]
        if not modes:
            continue
        names = list(dict.fromkeys(lay.name for r in mine for lay in r.layers))
        batches = sorted({r.batch for r in mine})
        height = 0.8 / len(batches)
        fig, axes = plt.subplots(1, len(modes), squeeze=False, sharey=True,
                                 figsize=(6 * len(modes),
                                          1.5 + 0.22 * len(names) * len(batches)))
        for ax, mode in zip(axes[0], modes):
            for j, batch in enumerate(batches):
                ys, xs, picked = [], [], []
                for r in mine:
                    if (r.batch, r.mode) != (batch, mode):
                        continue
                    for lay in r.layers:
                        if ratio(lay) is not None:
                            ys.append(names.index(lay.name)
                                      + (j - (len(batches) - 1) / 2) * height)
                            xs.append(ratio(lay))
                            picked.append(lay.pick)
                label = f"batch {batch}" + next(
                    (f" (run at {r.run_batch})" for r in mine
                     if r.batch == batch and r.run_batch != batch), "")
                ax.barh(ys, xs, height, label=label)
                for y, x, pick in zip(ys, xs, picked):
                    ax.annotate(pick, (x, y), xytext=(2, 0), textcoords="offset points",
                                va="center", fontsize=5)
            for level, style in ((1.0, "-"), *((q, "--") for q in QUALITY_BARS)):
                ax.axvline(level, color="k" if level == 1.0 else "gray", linestyle=style,
                           linewidth=0.8)
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels(names, fontsize=6)
            ax.invert_yaxis()                      # network order, top to bottom
            ax.set_xlabel("ours / torch (ms per call, each side's faster format)")
            ax.set_title(f"{net}{' (first layers only)' if any(r.partial for r in mine) else ''}"
                         f", {mode}: below 1 is faster than PyTorch; "
                         "auto's pick at each bar", fontsize=8)
            ax.legend(fontsize=7)
        fig.tight_layout()
        out = layer_plot_path(path, net)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        written.append(out)
    return written
