"""One implementation's turn in a timing round, shared by ``numbaconv
bench`` and its PyTorch worker process so that both sides are timed alike
(and by ``numbaconv calibrate``, with one untimed call and no warm-up).

Note [turn warm-up]
~~~~~~~~~~~~~~~~~~~
A turn starts right after the other process's turn, while this process sat
idle waiting on a pipe.  The first calls after such a pause are slow for
both libraries, and not only the first one: on the 2-vCPU development VM
(AMD EPYC, 2026-11-30), after 10 ms idle and one untimed call, the next
calls of the ConvNeXt 7x7 depthwise layer took 0.36-0.39 ms for PyTorch
(0.27-0.35 back to back) and 0.47-0.58 ms for numbaconv (0.33-0.38 back
to back), resnet3x3 3.4-3.9 ms for numbaconv (2.7-2.9).  After 20 ms of
untimed calls both were within noise of their back-to-back times (PyTorch
0.31-0.35, numbaconv 0.34-0.54 on the noisiest run).  Layers in a model run
back to back, so a turn now calls untimed for :data:`TURN_WARMUP_S` (at
least once) before its timed calls.
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
