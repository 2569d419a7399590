"""One implementation's turn in a timing round, shared by ``numbaconv
bench`` and its PyTorch worker process so that both sides are timed alike
(and by ``numbaconv calibrate``, with one untimed call and no warm-up).

Note [turn warm-up]
~~~~~~~~~~~~~~~~~~~
A turn starts right after the other process's turn, while this process sat
idle waiting on a pipe.  The first calls after such a pause are slow for
both libraries, and not only the first one (resnet3x3 3.4-3.9 ms after one
untimed call against 2.7-2.9 back to back); after 20 ms of untimed calls
both are within noise of their back-to-back times.  Layers in a model run
back to back, so a turn calls untimed for :data:`TURN_WARMUP_S` (at least
once) before its timed calls (docs/benchmarking.md, "Method").
"""

from __future__ import annotations

import time

#: Seconds of untimed calls that start each turn (Note [turn warm-up]).
TURN_WARMUP_S = 0.02


def time_turn(fn, repeats, warmup_s=TURN_WARMUP_S):
    """Call ``fn`` untimed for ``warmup_s`` seconds (at least once), then time
    ``repeats`` calls; return their durations in seconds."""
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < warmup_s:
        fn()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return times
