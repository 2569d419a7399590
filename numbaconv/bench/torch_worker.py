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
            elif request["cmd"] == "time":
                # warmed up and timed exactly like the parent's turns
                times = time_turn(call, int(request["repeats"]),
                                  float(request.get("warmup_s", TURN_WARMUP_S)))
                _reply({"times": times})
            else:
                _reply({"error": f"unknown command {request['cmd']!r}"})
        except Exception as exc:  # report, keep serving
            _reply({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
