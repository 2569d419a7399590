"""Bit-for-bit record of numbaconv's outputs, to prove a refactoring changes none.

``record`` runs every benchmark point of the public shapes
(``numbaconv.bench.suite.PUBLIC_SHAPES`` with ``--ops all``: forward,
transposed, grad_input, grad_weight, as each case offers them) with every
algorithm of ``numbaconv.algorithm_names()`` ("auto" included), in float32
and float64, and stores for each result a SHA-256 of
``shape | dtype | np.ascontiguousarray(result).tobytes()`` plus a few
cheap statistics (float64 max |value|, sum, sum of |value|, sum of
squares, the number of negative zeros and of non-finite values, and 32
values at fixed positions).  An algorithm that cannot serve a combination
is recorded as ``"refused: UnsupportedAlgorithmError"`` (or
``"refused: MemoryError"`` for a plan over the workspace limit); any other
exception as ``"error: <Type>: <message>"`` (compared like any value).

``compare`` reads two records and prints every entry that differs (case /
op / algorithm / dtype) with a judgement from the statistics: ``sign of
zero`` (only the count of negative zeros moved), ``last bits`` (the sampled
values are within 2 ulp and the sum within 2 eps of the sum of |value|),
``rounding`` (sampled values, sum and max |value| within 1024 eps of the
largest |value|: a reordered summation, say) or ``REAL`` (see
:func:`judge`); the numbers are printed so that a person can judge.  Exit status
1 on any difference (outputs, refusals, "auto"'s pick, the inputs, missing
entries), 0 when identical; the number of entries compared is printed.

How the calls are made, so that two commits with different internals hash
the same thing:

* only the public API: ``numbaconv.conv{N}d`` / ``conv_transpose{N}d`` and
  ``numbaconv.grad.conv{N}d_input`` / ``conv{N}d_weight``, with the
  arguments :meth:`numbaconv.bench.suite.BenchCase.op_call` gives for the
  point (the suite's own definition of what each op calls), plus
  ``algorithm=``;
* inputs are seeded per case (``np.random.default_rng`` inside ``op_call``;
  the seed is ``--seed`` + CRC-32 of the case's name) and the inputs'
  own SHA-256 is stored per (case, op, dtype), so a change in the suite's
  input generation shows as "inputs differ" and not as changed outputs;
* ``"auto"`` is made deterministic: measured autotuning is off
  (``NUMBACONV_TUNE=0`` and ``numbaconv.set_tuning(False)``) and
  ``NUMBACONV_CACHE_DIR`` points at a fresh empty directory, so that no
  tuning cache or calibrated cost constants in the user's cache directory
  steer the pick (``--user-cache`` keeps the user's); what "auto" picks
  (``numbaconv.choose_algorithm``) is stored and compared too;
* numba's thread count is left at its default; it, the thread pool size,
  the workspace limit, the numba / NumPy / Python versions, the CPU model
  and the batch are in the header.  ``compare`` warns when the headers
  differ in any of these: results are only expected to be bit-identical on
  the same machine and settings.

Batch: ``--batch`` defaults to each case's own (the suite's) batch.  A
cold record (numba compiling every kernel into an empty cache) takes
minutes more than a warm one; ``--batch 1`` runs the same calls on one
sample each, for a quick check.  Compare only records made with the same
batch.

Usage::

    PYTHONPATH=/path/to/checkout python scripts/output_hashes.py record OUT.json [--batch N]
    python scripts/output_hashes.py compare BEFORE.json AFTER.json

PYTHONPATH matters: the script imports whatever ``numbaconv`` is first on
the path (printed at the start and stored in the header as
``numbaconv_file``).
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import zlib

FORMAT = "numbaconv-output-hashes/1"
DTYPES = ("float32", "float64")
SAMPLES = 32


# ---------------------------------------------------------------------------
# record
# ---------------------------------------------------------------------------

def cpu_model():
    """numbaconv's CPU model reader (c82a764 and older name it _cpu_model)."""
    from numbaconv import tuning
    return (getattr(tuning, "cpu_model", None) or tuning._cpu_model)()


def _isolate(user_cache):
    """Environment for a deterministic "auto"; set before numbaconv is imported."""
    os.environ["NUMBACONV_TUNE"] = "0"
    if not user_cache:
        where = tempfile.mkdtemp(prefix="numbaconv-hashes-")
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        os.environ["NUMBACONV_CACHE_DIR"] = where


def case_seed(name, base):
    return base + zlib.crc32(name.encode())


def array_digest(array):
    import numpy as np
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def describe_result(result):
    import numpy as np
    r = np.ascontiguousarray(result)
    f = r.astype(np.float64)
    finite = np.isfinite(f)
    fin = f[finite] if not finite.all() else f.ravel()
    flat = r.ravel()
    idx = sorted(set(np.linspace(0, flat.size - 1, SAMPLES).astype(int).tolist())) \
        if flat.size else []
    return {
        "sha256": array_digest(r),
        "shape": list(r.shape),
        "dtype": r.dtype.str,
        "max_abs": float(np.max(np.abs(fin))) if fin.size else 0.0,
        "sum": float(np.sum(fin)),
        "sum_abs": float(np.sum(np.abs(fin))),
        "sum_sq": float(np.sum(fin * fin)),
        "neg_zeros": int(np.count_nonzero((r == 0) & np.signbit(r))),
        "nonfinite": int(r.size - np.count_nonzero(finite)),
        "sample_index": idx,
        "samples": [float(flat[i]) for i in idx],
    }


def call_key(case, op, algorithm, dtype):
    return f"{case}/{op}/{algorithm}/{dtype}"


def auto_pick(nc, case, op, dtype):
    """What ``"auto"`` picks for the point, through the public
    ``choose_algorithm`` (``"error: <Type>"`` if that cannot tell)."""
    gradient = {"forward": None, "transposed": None, "grad_input": "input",
                "grad_weight": "weight"}[op]
    if op == "transposed" and not case.transposed:
        gradient = "input"
    try:
        return nc.choose_algorithm(case.input_shape, case.weight_shape,
                                   transposed=case.transposed, gradient=gradient, dtype=dtype,
                                   **case.kwargs).algorithm
    except Exception as exc:       # noqa: BLE001 - informative only
        return f"error: {type(exc).__name__}"


def record(args):
    _isolate(args.user_cache)
    import numba
    import numpy as np

    import numbaconv as nc
    from numbaconv.bench.suite import PUBLIC_SHAPES, bench_points, parse_ops

    print(f"numbaconv from {nc.__file__}", file=sys.stderr)
    if hasattr(nc, "set_tuning"):
        nc.set_tuning(False)
    cases = list(PUBLIC_SHAPES)
    if args.cases:
        wanted = args.cases.split(",")
        cases = [c for c in cases if c.name in wanted]
    algorithms = list(nc.algorithm_names())
    points = bench_points(cases, parse_ops("all"))
    header = {
        "format": FORMAT,
        "numbaconv_file": nc.__file__,
        "numbaconv_version": getattr(nc, "__version__", None),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "threads": numba.get_num_threads(),
        "pool_threads": numba.config.NUMBA_NUM_THREADS,
        "workspace_limit": nc.get_workspace_limit(),
        "cache_dir": os.environ.get("NUMBACONV_CACHE_DIR") if args.user_cache else "fresh",
        "batch": args.batch if args.batch else "suite",
        "seed": args.seed,
        "cases": [c.name for c in cases],
        "ops": "all",
        "algorithms": algorithms,
        "dtypes": list(DTYPES),
    }
    entries, inputs, picks = {}, {}, {}
    start = time.perf_counter()
    for case, op in points:
        run_case = case if not args.batch else dataclasses.replace(
            case, input_shape=(args.batch,) + tuple(case.input_shape[1:]))
        for dtype in DTYPES:
            t_point = time.perf_counter()
            call = run_case.op_call(op, dtype, case_seed(case.name, args.seed))
            fn = getattr(nc if call.namespace == "functional" else nc.grad, call.name)
            point = f"{case.name}/{op}/{dtype}"
            h = hashlib.sha256(repr((call.namespace, call.name,
                                     sorted(call.kwargs.items()))).encode())
            for a in call.args:
                h.update(array_digest(a).encode() if isinstance(a, np.ndarray)
                         else repr(tuple(a)).encode())
            inputs[point] = {"call": f"{call.namespace}.{call.name}",
                             "kwargs": repr(sorted(call.kwargs.items())),
                             "sha256": h.hexdigest()}
            picks[point] = auto_pick(nc, run_case, op, dtype)
            for algorithm in algorithms:
                key = call_key(case.name, op, algorithm, dtype)
                t0 = time.perf_counter()
                try:
                    result = fn(*call.args, **call.kwargs, algorithm=algorithm)
                except (nc.UnsupportedAlgorithmError, MemoryError) as exc:
                    entries[key] = f"refused: {type(exc).__name__}"
                    continue
                except Exception as exc:   # noqa: BLE001 - recorded, compared as a value
                    entries[key] = f"error: {type(exc).__name__}: {exc}"
                    print(f"  {key}: {entries[key]}", file=sys.stderr)
                    continue
                entry = describe_result(result)
                entry["seconds"] = round(time.perf_counter() - t0, 4)   # not compared
                entries[key] = entry
                del result
            print(f"{point:36s} {time.perf_counter() - t_point:7.1f} s  auto={picks[point]}",
                  file=sys.stderr, flush=True)
    header["seconds"] = round(time.perf_counter() - start, 1)
    header["entries"] = len(entries)
    header["hashed"] = sum(isinstance(e, dict) for e in entries.values())
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump({"header": header, "inputs": inputs, "auto_picks": picks,
                   "entries": entries}, fh, indent=1, sort_keys=True)
        fh.write("\n")
    refused = sum(isinstance(e, str) and e.startswith("refused") for e in entries.values())
    errors = sum(isinstance(e, str) and e.startswith("error") for e in entries.values())
    print(f"{len(entries)} entries ({header['hashed']} hashed, {refused} refused, "
          f"{errors} errors) from {len(points)} points x {len(DTYPES)} dtypes x "
          f"{len(algorithms)} algorithms in {header['seconds']} s -> {args.out}")
    return 0


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------

HEADER_FIELDS = ("numba", "numpy", "python", "cpu", "threads", "pool_threads",
                 "workspace_limit", "batch", "seed", "cache_dir", "algorithms", "dtypes",
                 "cases")


def _sample_distance(a, b, dtype):
    """``(ulps, absolute)``: the largest distance between the paired samples,
    in ulp of ``dtype`` of the larger value, and absolute."""
    import numpy as np
    x = np.asarray(a, dtype=dtype)
    y = np.asarray(b, dtype=dtype)
    if x.shape != y.shape:
        return math.inf, math.inf
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    if same.all():
        return 0.0, 0.0
    with np.errstate(all="ignore"):
        spacing = np.spacing(np.maximum(np.abs(x), np.abs(y)).astype(dtype))
        diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
        ulps = diff / spacing.astype(np.float64)
    ulps[same] = 0.0
    diff[same] = 0.0
    ulps = np.where(np.isfinite(ulps), ulps, math.inf)
    diff = np.where(np.isfinite(diff), diff, math.inf)
    return float(ulps.max()), float(diff.max())


#: a difference up to this many eps of the result's largest |value| (sampled
#: values, sum, largest |value|) is judged "rounding": a reordered
#: summation moves a sum of K terms by about sqrt(K) eps of sum |term|
ROUNDING_EPS = 1024


def judge(a, b):
    """A few words on how two differing entries differ, then the numbers.

    ``sign of zero``: only the count of negative zeros moved (the stats and
    the sampled values are equal); ``last bits``: sampled values within 2
    ulp and the sum within 2 eps of sum |y|; ``rounding``: within
    :data:`ROUNDING_EPS` eps of max |y| (norm-wise: an element that cancels
    to near zero may move by many of its own ulp); else ``REAL``.  From 32
    sampled values and a few sums this is a hint, not a proof."""
    import numpy as np
    if isinstance(a, str) or isinstance(b, str):
        return "REAL (refusal/error changed)" if a != b else "identical"
    if a["shape"] != b["shape"] or a["dtype"] != b["dtype"]:
        return f"REAL (shape/dtype {a['shape']} {a['dtype']} -> {b['shape']} {b['dtype']})"
    dtype = np.dtype(a["dtype"])
    eps = float(np.finfo(dtype).eps)
    stats = ("max_abs", "sum", "sum_abs", "sum_sq", "nonfinite")
    stats_same = all(a[s] == b[s] for s in stats)
    ulps, diff = _sample_distance(a["samples"], b["samples"], dtype)
    top = max(a["max_abs"], b["max_abs"], 1e-300)
    sample_eps = diff / (eps * top)
    max_eps = abs(a["max_abs"] - b["max_abs"]) / (eps * top)
    sum_eps = abs(a["sum"] - b["sum"]) / (eps * max(a["sum_abs"], b["sum_abs"], 1e-300))
    numbers = (f"max|y| {a['max_abs']!r} -> {b['max_abs']!r}, sum {a['sum']!r} -> "
               f"{b['sum']!r} ({sum_eps:.3g} eps of sum|y|); sampled: max {ulps:.3g} ulp, "
               f"max |diff| {sample_eps:.3g} eps of max|y|; neg zeros {a['neg_zeros']} -> "
               f"{b['neg_zeros']}, non-finite {a['nonfinite']} -> {b['nonfinite']}")
    if stats_same and ulps == 0 and a["neg_zeros"] != b["neg_zeros"]:
        verdict = "sign of zero"
    elif a["nonfinite"] != b["nonfinite"]:
        verdict = "REAL (non-finite count)"
    elif ulps <= 2 and sum_eps <= 2 and max_eps <= 2:
        verdict = "last bits"
    elif max(sample_eps, max_eps, sum_eps) <= ROUNDING_EPS:
        verdict = "rounding"
    else:
        verdict = "REAL"
    return f"{verdict}: {numbers}"


def compare(args):
    with open(args.before, encoding="utf-8") as fh:
        before = json.load(fh)
    with open(args.after, encoding="utf-8") as fh:
        after = json.load(fh)
    for name, rec in (("before", before), ("after", after)):
        if rec.get("header", {}).get("format") != FORMAT:
            print(f"{name}: not a {FORMAT} record", file=sys.stderr)
            return 2
    hb, ha = before["header"], after["header"]
    print(f"before: {hb['numbaconv_file']} ({hb['entries']} entries, {hb['seconds']} s)")
    print(f"after:  {ha['numbaconv_file']} ({ha['entries']} entries, {ha['seconds']} s)")
    for field in HEADER_FIELDS:
        if hb.get(field) != ha.get(field):
            print(f"WARNING: header {field} differs: {hb.get(field)!r} -> {ha.get(field)!r} "
                  f"(bit-identity is only expected with the same settings and machine)")
    differences = 0

    for point in sorted(set(before["inputs"]) | set(after["inputs"])):
        ib, ia = before["inputs"].get(point), after["inputs"].get(point)
        if ib != ia:
            differences += 1
            print(f"DIFF inputs {point}: {ib} -> {ia} (outputs of this point are not "
                  f"comparable)")
    for point in sorted(set(before["auto_picks"]) | set(after["auto_picks"])):
        pb, pa = before["auto_picks"].get(point), after["auto_picks"].get(point)
        if pb != pa:
            differences += 1
            print(f"DIFF auto pick {point}: {pb} -> {pa}")

    eb, ea = before["entries"], after["entries"]
    keys = sorted(set(eb) | set(ea))
    identical = 0
    verdicts = {}
    for key in keys:
        case, op, algorithm, dtype = key.split("/")
        where = f"case={case} op={op} algorithm={algorithm} dtype={dtype}"
        if key not in eb or key not in ea:
            differences += 1
            print(f"DIFF {where}: only in {'after' if key not in eb else 'before'}")
            continue
        a, b = eb[key], ea[key]
        ha_ = a if isinstance(a, str) else a["sha256"]
        hb_ = b if isinstance(b, str) else b["sha256"]
        if ha_ == hb_:
            identical += 1
            continue
        differences += 1
        if isinstance(a, str) or isinstance(b, str):
            print(f"DIFF {where}: {a if isinstance(a, str) else 'hash'} -> "
                  f"{b if isinstance(b, str) else 'hash'}")
            verdicts["refusal/error changed"] = verdicts.get("refusal/error changed", 0) + 1
            continue
        verdict = judge(a, b)
        verdicts[verdict.split(":")[0]] = verdicts.get(verdict.split(":")[0], 0) + 1
        print(f"DIFF {where}: {verdict}")
    hashed = sum(isinstance(eb.get(k), dict) for k in keys)
    print(f"compared {len(keys)} entries ({hashed} hashed outputs, the rest refusals): "
          f"{identical} identical, {len(keys) - identical} differ; "
          f"{differences} differences in all (entries, inputs, auto picks)")
    if verdicts:
        print("differing entries by kind: " + ", ".join(f"{k}: {v}" for k, v in
                                                         sorted(verdicts.items())))
    print("IDENTICAL" if differences == 0 else "DIFFERENT")
    return 1 if differences else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="hash every output into a JSON record")
    rec.add_argument("out", help="the JSON file to write")
    rec.add_argument("--batch", type=int, default=None,
                     help="batch size of every case (default: the suite's own)")
    rec.add_argument("--seed", type=int, default=0,
                     help="base seed; each case adds the CRC-32 of its name (default 0)")
    rec.add_argument("--cases", default="",
                     help="comma-separated public case names (default: all of them)")
    rec.add_argument("--user-cache", action="store_true",
                     help="keep the user's numbaconv cache directory (calibrated cost "
                          "constants steer 'auto'); default: a fresh empty one")
    cmp_ = sub.add_parser("compare", help="compare two records; exit 1 on any difference")
    cmp_.add_argument("before")
    cmp_.add_argument("after")
    args = parser.parse_args(argv)
    if args.command == "record":
        if args.batch is not None and args.batch < 1:
            parser.error("--batch must be at least 1")
        return record(args)
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
