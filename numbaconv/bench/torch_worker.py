"""PyTorch timing worker, run in its own process by ``numbaconv bench``.

Two OpenMP runtimes spinning in one process distort both, so PyTorch is
never timed inside the numbaconv process.  The parent sends one JSON object
per line on stdin and reads one JSON reply per line on stdout:

* ``{"cmd": "prepare", "case": NAME, "dtype": "float32", "seed": 0}`` builds
  the case's tensors (from the same seeded NumPy arrays as the parent) and
  warms up; reply ``{"ok": true}`` or ``{"error": "..."}``.
* ``{"cmd": "time", "repeats": K}`` makes one untimed call, then times K
  calls; reply ``{"times": [...]}`` in seconds.
* ``{"cmd": "quit"}`` exits.
"""

from __future__ import annotations

import json
import sys
import time


def _reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(threads: int) -> None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:
        _reply({"error": f"torch not importable: {exc}"})
        return
    from .suite import SUITE

    torch.set_num_threads(threads)
    _reply({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()})
    call = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "quit":
                return
            if request["cmd"] == "prepare":
                case = SUITE[request["case"]]
                x, w = case.make_arrays(request["dtype"], request["seed"])
                tx, tw = torch.from_numpy(x), torch.from_numpy(w)
                fn = getattr(F, case.op)
                kwargs = dict(case.kwargs)

                def call(fn=fn, tx=tx, tw=tw, kwargs=kwargs):
                    with torch.no_grad():
                        return fn(tx, tw, **kwargs)

                for _ in range(3):
                    call()
                _reply({"ok": True})
            elif request["cmd"] == "time":
                call()        # untimed, like the parent's turns
                times = []
                for _ in range(int(request["repeats"])):
                    start = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - start)
                _reply({"times": times})
            else:
                _reply({"error": f"unknown command {request['cmd']!r}"})
        except Exception as exc:  # report, keep serving
            _reply({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
