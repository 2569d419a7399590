"""PyTorch timing worker, run in its own process by ``numbaconv bench``.

Two OpenMP runtimes spinning in one process distort both, so PyTorch is
never timed inside the numbaconv process.  The parent sends one JSON object
per line on stdin and reads one JSON reply per line on stdout:

* ``{"cmd": "prepare", "case": CASE, "op": "forward", "dtype": "float32",
  "seed": 0}`` builds the point's tensors (from the same seeded NumPy arrays
  as the parent: :meth:`BenchCase.op_call`) and warms up; reply
  ``{"ok": true}`` or ``{"error": "..."}``.  ``CASE`` is a suite shape's
  name or a case as :meth:`BenchCase.to_dict` writes it; ``op`` defaults to
  the case's own call.  The call is PyTorch's match of numbaconv's:
  ``torch.nn.functional.conv{N}d`` / ``conv_transpose{N}d`` or
  ``torch.nn.grad.conv{N}d_input`` / ``conv{N}d_weight``, all under
  ``torch.no_grad()``.
* ``{"cmd": "time", "repeats": K, "warmup_s": S}`` calls untimed for S
  seconds (at least once; default :data:`~numbaconv.timing.TURN_WARMUP_S`),
  then times K calls (:func:`~numbaconv.timing.time_turn`); reply
  ``{"times": [...]}`` in seconds.
* ``{"cmd": "prepare_layer", "layer": LAYER, "mode": "inference",
  "first": false, "memory_format": "nchw", "seed": 0}`` (the network
  benchmark, :mod:`numbaconv.bench.nets`) builds a network layer's tensors
  from the same seeded arrays as the parent (:func:`~numbaconv.bench.nets.layer_arrays`;
  ``LAYER`` as :func:`~numbaconv.bench.nets.layer_to_dict` writes it) in
  ``memory_format`` (``nchw`` or ``channels_last``: ``torch.channels_last``
  / ``channels_last_3d``; refused for 1-D), and its call: the convolution
  with its bias, ``y += r`` for a residual and the activation (in place
  where PyTorch has one) as separate eager ops, and in ``training`` mode
  then ``torch.ops.aten.convolution_backward`` with ``output_mask`` (no
  input gradient for the network's ``first`` layer, a bias gradient where
  the layer has a bias), all under ``torch.no_grad()``; one untimed call;
  reply ``{"ok": true, "id": K}``.
* ``{"cmd": "turn", "id": K, "warmup_s": S, "last": T}``: one turn of
  prepared layer K (:func:`~numbaconv.bench.nets.one_turn`); reply
  ``{"time": seconds}``.
* ``{"cmd": "release"}`` drops every prepared layer.
* ``{"cmd": "quit"}`` exits.
"""

from __future__ import annotations

from typing import Callable

import json
import sys


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(threads: int) -> None:
    try:
        import torch
        import torch.nn.functional as F
        import torch.nn.grad
    except ImportError as exc:
        _reply({"error": f"torch not importable: {exc}"})
        return
    import numpy as np

    from .suite import SUITE, BenchCase
    from ..timing import TURN_WARMUP_S, time_turn

    torch.set_num_threads(threads)
    _reply({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()})
    call: Callable[[], object] | None = None
    layers: dict[int, Callable[[], object]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                return
            if request["cmd"] == "prepare":
                call = None
                case = request["case"]
                case = SUITE[case] if isinstance(case, str) else BenchCase.from_dict(case)
                op = request.get("op") or case.default_op
                spec = case.op_call(op, request["dtype"], request["seed"])
                namespace = F if spec.namespace == "functional" else torch.nn.grad
                fn = getattr(namespace, spec.name)
                args = tuple(torch.from_numpy(a) if isinstance(a, np.ndarray) else a
                             for a in spec.args)

                def prepared(fn=fn, args=args, kwargs=dict(spec.kwargs)):
                    with torch.no_grad():
                        return fn(*args, **kwargs)

                call = prepared

                for _ in range(3):
                    call()
                _reply({"ok": True})
            elif request["cmd"] == "prepare_layer":
                from .nets import layer_from_dict
                fn = _layer_call(torch, F, layer_from_dict(request["layer"]), request["mode"],
                                 bool(request.get("first")), request["memory_format"],
                                 int(request.get("seed", 0)))
                fn()                                    # the one untimed call
                key = len(layers)
                layers[key] = fn
                _reply({"ok": True, "id": key})
            elif request["cmd"] == "turn":
                from .nets import one_turn
                _reply({"time": one_turn(layers[int(request["id"])],
                                         float(request.get("warmup_s", TURN_WARMUP_S)),
                                         request.get("last"))})
            elif request["cmd"] == "release":
                layers.clear()
                _reply({"ok": True})
            elif request["cmd"] == "time":
                # warmed up and timed exactly like the parent's turns
                times = time_turn(call, int(request["repeats"]),
                                  float(request.get("warmup_s", TURN_WARMUP_S)))
                _reply({"times": times})
            else:
                _reply({"error": f"unknown command {request['cmd']!r}"})
        except Exception as exc:  # report, keep serving
            _reply({"error": f"{type(exc).__name__}: {exc}"})


def _activation(torch, F, name, slope):
    """PyTorch eager's activation pass, in place where PyTorch has one (as
    torchvision's modules run it: ``nn.ReLU(inplace=True)`` and friends)."""
    table = {
        None: lambda y: y,
        "relu": lambda y: F.relu(y, inplace=True),
        "relu6": lambda y: F.relu6(y, inplace=True),
        "leaky_relu": lambda y: F.leaky_relu(y, slope, inplace=True),
        "hardswish": lambda y: F.hardswish(y, inplace=True),
        "silu": lambda y: F.silu(y, inplace=True),
        "sigmoid": lambda y: y.sigmoid_(),
        "tanh": lambda y: y.tanh_(),
        "gelu": lambda y: F.gelu(y),
        "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}")
    return table[name]


def _layer_call(torch, F, layer, mode, first, memory_format, seed):
    """The prepared call of one network layer (see ``prepare_layer``)."""
    from .nets import layer_arrays

    nd = layer.ndim
    fmt = None
    if memory_format == "channels_last":
        fmt = {2: torch.channels_last, 3: torch.channels_last_3d}.get(nd)
        if fmt is None:
            raise ValueError("PyTorch has no channels-last format for 1-D tensors")
    elif memory_format != "nchw":
        raise ValueError(f"memory_format must be 'nchw' or 'channels_last', got "
                         f"{memory_format!r}")

    def tensor(a):
        if a is None:
            return None
        t = torch.from_numpy(a)
        return t.contiguous(memory_format=fmt) if fmt is not None and t.dim() == nd + 2 else t

    a = {k: tensor(v) for k, v in layer_arrays(layer, seed).items()}
    x, w, b, r, g = (a[k] for k in ("x", "w", "b", "r", "g"))
    conv = getattr(F, f"conv_transpose{nd}d" if layer.transposed else f"conv{nd}d")
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
              groups=layer.groups)
    if layer.transposed:
        kw["output_padding"] = layer.output_padding
    act = _activation(torch, F, layer.activation, layer.negative_slope)

    def forward():
        y = conv(x, w, b, **kw)
        if r is not None:
            y += r
        return act(y)

    if mode == "inference":
        def call():
            with torch.no_grad():
                return forward()
        return call
    if mode != "training":
        raise ValueError(f"mode must be 'inference' or 'training', got {mode!r}")
    bias_sizes = [g.shape[1]] if layer.bias else None
    mask = [not first, True, bool(layer.bias)]
    s, p, d = ([v] * nd for v in (layer.stride, layer.padding, layer.dilation))
    out_pad = [layer.output_padding if layer.transposed else 0] * nd

    def step():
        with torch.no_grad():
            y = forward()
            return (y,) + tuple(torch.ops.aten.convolution_backward(
                g, x, w, bias_sizes, s, p, d, layer.transposed, out_pad, layer.groups, mask))
    return step


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
