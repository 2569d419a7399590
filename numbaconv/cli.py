"""The ``numbaconv`` command line: ``bench``, ``tune``, ``explain``, ``calibrate``,
``warmup``, ``info`` and ``history`` (``numbaconv --help``; the README's table of the
public interface says what each is for)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _cmd_bench_nets(args):
    from .bench import nets

    if args.startup or args.shapes or args.ops or args.algorithms or args.dtype != "float32":
        print("numbaconv bench: --nets times the network suite in float32 with algorithm "
              "'auto'; --shapes, --ops, --algorithms, --dtype and --startup are for the layer "
              "benchmark", file=sys.stderr)
        return 2
    names = args.net or (list(nets.QUICK_NETWORKS) if args.quick else [])
    try:
        networks = nets.select_networks(names)
        caps = nets.parse_caps(args.cap)
    except ValueError as exc:
        print(f"numbaconv bench: {exc}", file=sys.stderr)
        return 2
    batches = tuple(dict.fromkeys(args.batch or ((1,) if args.quick else nets.DEFAULT_BATCHES)))
    modes = nets.MODES if args.mode == "both" else (args.mode,)
    formats = nets.FORMATS if args.format == "both" else (args.format,)
    rounds = 1 if args.quick else args.rounds
    status = {}
    progress = False if args.no_progress else "bar" if sys.stderr.isatty() else "lines"
    results = nets.run_networks(
        networks, batches=batches, modes=modes, formats=formats, rounds=rounds,
        threads=args.threads,
        use_torch=not args.no_torch, check=not args.no_check, progress=progress,
        warmup_s=args.warmup_ms / 1e3, caps=caps,
        max_layers=nets.QUICK_LAYERS if args.quick else None, status=status)
    print(f"numbaconv bench --nets: float32, algorithm auto, {args.threads} thread(s), "
          f"median of {rounds} round(s) after one warm-up call, {args.warmup_ms:g} ms of "
          "warm-up per turn")
    print(_machine_line())
    print(nets.format_nets_tables(results, nets.torch_note(status["torch"])))
    if args.json:
        settings = {"networks": [net.name for net in networks], "batches": list(batches),
                    "modes": list(modes), "formats": list(formats), "rounds": rounds,
                    "threads": args.threads,
                    "warmup_ms": args.warmup_ms, "caps": caps, "quick": args.quick,
                    "torch": status["torch"], "machine": _machine_line()}
        with open(args.json, "w") as fh:
            json.dump(nets.results_to_json(results, settings), fh, indent=1)
    if args.plot:
        if nets.plot_ratios(results, args.plot):
            written = [args.plot] + nets.plot_layers(results, args.plot)
            print(f"numbaconv bench: wrote {', '.join(written)}")
        else:
            print("numbaconv bench: no picture: it needs matplotlib and PyTorch's times",
                  file=sys.stderr)
    failed = [f"{res.network} batch {res.run_batch} {res.mode} {layer.name}"
              for res in results for layer in res.layers if layer.check_ok is False]
    if failed:
        # a wrong result makes its time meaningless: fail the command (CI smoke runs)
        print(f"numbaconv bench: CHECK FAILED on {len(failed)} layer(s): {'; '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def _machine_line():
    """Which CPU and which instructions a benchmark ran on (tables are
    compared only between the same two)."""
    import llvmlite.binding as llvm
    import numba
    from .storage import cpu_model, instruction_profile
    target = numba.config.CPU_NAME or llvm.get_host_cpu_name()
    return (f"machine: {cpu_model()}; numba compiles for {target}; instruction profile: "
            f"{instruction_profile() or 'none (the host CPU instructions)'}")


def _cmd_bench(args):
    from .algorithms import algorithm_names
    from .bench.runner import format_table, measure_startup, run_benchmarks, torch_column_note
    from .bench.suite import bench_points, get_cases, parse_ops

    if args.nets or args.net or args.quick:
        return _cmd_bench_nets(args)
    if args.batch or args.cap or args.plot or args.mode != "both" or args.format != "both":
        print("numbaconv bench: --batch, --mode, --format, --cap and --plot are for --nets",
              file=sys.stderr)
        return 2
    if args.startup:
        runs = measure_startup(args.threads)
        print("start-up (fresh processes sharing one empty NUMBA_CACHE_DIR):")
        for label, run in runs.items():
            print(f"  {label:>5} cache: " + ", ".join(f"{k}={v:.3f}" for k, v in run.items()))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(runs, fh, indent=1)
        return 0
    names = [n for n in (args.shapes or "").split(",") if n]
    try:
        cases = get_cases(names)
    except ValueError as exc:
        print(f"numbaconv bench: {exc}", file=sys.stderr)
        return 2
    try:
        ops = parse_ops(args.ops)
    except ValueError as exc:
        print(f"numbaconv bench: {exc}", file=sys.stderr)
        return 2
    points = bench_points(cases, ops)
    for case in cases:
        if not any(c is case for c, _ in points):
            print(f"numbaconv bench: note: {case.name} ({case.op}) has none of the ops "
                  f"{', '.join(ops)}; its ops: {', '.join(case.ops)}", file=sys.stderr)
    if not points:
        print("numbaconv bench: nothing to run", file=sys.stderr)
        return 2
    algorithms = [a for a in (args.algorithms or "").split(",") if a] or None
    unknown = [a for a in algorithms or () if a not in algorithm_names()]
    if unknown:
        print(f"numbaconv bench: unknown algorithm(s) {unknown}; known: "
              f"{', '.join(algorithm_names())}", file=sys.stderr)
        return 2
    status = {}
    # a bar on a terminal; in a log or a pipe, a line per point
    progress = False if args.no_progress else "bar" if sys.stderr.isatty() else "lines"
    results = run_benchmarks(
        cases, ops=ops, algorithms=algorithms, dtype=args.dtype, threads=args.threads,
        rounds=args.rounds, repeats=args.repeats, use_torch=not args.no_torch,
        use_scipy=not args.no_scipy, check=not args.no_check,
        progress=progress, warmup_s=args.warmup_ms / 1e3, status=status, loop=args.loop,
        loop_calls=args.loop_calls)
    print(f"numbaconv bench: {args.dtype}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.repeats} calls after {args.warmup_ms:g} ms of warm-up, "
          "median")
    print(_machine_line())
    print(format_table(results, torch_column_note(status["torch"])))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([m.as_dict() for m in results], fh, indent=1)
    return 0


def _cmd_tune(args):
    from . import tuning
    from .bench.suite import bench_points, get_cases, parse_ops, point_spec
    from .dispatch import tune_spec

    if args.clear:
        removed = tuning.clear_cache()          # the cache and its lock file
        print(f"numbaconv tune: removed {', '.join(removed)}" if removed else
              f"numbaconv tune: no tuning cache in {tuning.cache_dir()}")
        return 0
    if args.show:
        entries = tuning.read_entries(tuning.cache_path())
        print(f"{tuning.cache_path()}: {len(entries)} problem(s)")
        if entries:
            print("  problem: fastest algorithm (median time of each, fastest first)")
        for entry in entries.values():
            print(f"  {entry.get('problem', '?')}: {entry['algorithm']} "
                  f"({tuning.estimated_seconds(entry.get('seconds', {}))})")
        return 0
    names = [n for n in (args.shapes or "").split(",") if n]
    try:
        points = bench_points(get_cases(names), parse_ops(args.ops or "all"))
    except ValueError as exc:
        print(f"numbaconv tune: {exc}", file=sys.stderr)
        return 2
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    header = f"{'shape':<10} {'op':<11} {'fastest':<12} median time of each algorithm"
    print(f"{header}\n{'-' * len(header)}", flush=True)
    for case, op in points:
        spec = point_spec(case, op, args.dtype)
        tuned = tune_spec(spec, force=args.force)
        print(f"{case.name:<10} {op:<11} {tuned.algorithm:<12} "
              f"{tuning.estimated_seconds(tuned.seconds)}", flush=True)
    print(f"numbaconv tune: cache {tuning.cache_path()}")
    return 0


def _ints(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values[0] if len(values) == 1 else values


def _shape(text):
    value = _ints(text)
    return value if isinstance(value, tuple) else (value,)


def _padding(text):
    return text if text in ("same", "valid") else _ints(text)


def _cmd_explain(args):
    from .dispatch import explain
    try:
        print(explain(args.input, args.weight, stride=args.stride, padding=args.padding,
                      dilation=args.dilation, groups=args.groups,
                      transposed=args.op.startswith("conv_transpose"),
                      output_padding=args.output_padding, padding_mode=args.padding_mode,
                      gradient=args.gradient, dtype=args.dtype, measure=args.measure))
    except (ValueError, TypeError) as exc:
        print(f"numbaconv explain: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_calibrate(args):
    import numba

    from . import calibration, costs
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    progress = (lambda text: print(f"  {text}", flush=True)) if args.verbose else None
    fitted, counts = calibration.calibrate(repeats=args.repeats, progress=progress,
                                           write=not args.dry_run, rounds=args.rounds)
    shipped = costs.defaults()
    print(f"{'path':<26} {'seconds/unit':>13} {'default':>11} samples")
    for path in costs.paths():
        print(f"{path:<26} {fitted[path]:13.3e} {shipped[path]:11.3e} "
              f"{counts.get(path, 0)}")
    if not args.dry_run:
        print(f"numbaconv calibrate: wrote {costs.constants_path()}")
    return 0


def _cmd_info(args):
    import numba
    import numpy
    import scipy

    import numbaconv

    from .algorithms import algorithm_names

    print(f"numbaconv {numbaconv.__version__}")
    print(f"numba {numba.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}")
    try:
        import torch
        print(f"torch {torch.__version__} (used by tests and benchmarks only)")
    except ImportError:
        print("torch: not installed (optional)")
    print(f"algorithms: {', '.join(algorithm_names())}")
    print(f"numba threads: {numba.get_num_threads()} of {numba.config.NUMBA_NUM_THREADS}; "
          f"threading layer: {numba.config.THREADING_LAYER}; CPUs: {os.cpu_count()}")
    where = os.environ.get("NUMBA_CACHE_DIR") or "next to the package (default)"
    print(f"numba cache dir: {where}")
    print(f"workspace limit: {numbaconv.get_workspace_limit() / 2**20:g} MiB; each thread "
          f"keeps its workspaces between calls, up to the limit per device "
          f"(numbaconv.release_workspaces() frees them)")
    from .kernels.blas import find_gemm
    gemm = find_gemm()
    print(f"im2col GEMM: {gemm.path if gemm else 'none found (im2col unavailable)'}"
          + (f" ({gemm.int_bits}-bit integers)" if gemm else ""))
    from . import tuning
    print(f"tuning: {'on' if tuning.tuning_enabled() else 'off'} (nc.set_tuning, "
          f"NUMBACONV_TUNE); cache {tuning.cache_path()}")
    from .cuda.info import status
    lines, usable = status()
    for line in lines:
        print(line)
    # GPU algorithms are registered whether or not a GPU is there: name them
    # only where a GPU call can run
    print(f"GPU algorithms: {', '.join(algorithm_names('cuda'))}" if usable else
          "GPU algorithms: none (see the CUDA line above)")
    return 0


def _cmd_history(args):
    try:
        from .history import history
        history(args.results, args.machine, args.pattern, args.commits)
    except ImportError:
        print("numbaconv history: asv is not installed (pip install '.[bench]')",
              file=sys.stderr)
        return 2
    return 0


def _cmd_warmup(args):
    from . import warmup

    dtypes = warmup.DTYPES if args.dtype == "all" else (args.dtype,)
    jobs = warmup.select_jobs(args.only, dtypes)
    if args.list:
        for name, dtype in jobs:
            print(f"{name}, {dtype}")
        return 0
    if not jobs:
        print(f"numbaconv warmup: no job matches --only {args.only!r}; jobs: "
              f"{', '.join(warmup.job_names())}", file=sys.stderr)
        return 2
    return 1 if warmup.warmup(jobs, args.jobs) else 0


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="numbaconv", description="PyTorch-compatible convolutions on NumPy arrays.")
    sub = parser.add_subparsers(dest="command")

    bench = sub.add_parser(
        "bench", help="time the benchmark suite against PyTorch and SciPy",
        description="Run the public benchmark shapes with every numbaconv algorithm and "
                    "'auto', check each result against the float64 reference, and time "
                    "PyTorch (in its own process) and SciPy side by side.  Each shape "
                    "is run for one or more ops: forward (conv{N}d), transposed "
                    "(conv_transpose{N}d), grad_input and grad_weight "
                    "(numbaconv.grad / torch.nn.grad), see docs/benchmarking.md.")
    from .bench.suite import CLASS_SHAPES, PUBLIC_SHAPES
    from .timing import TURN_WARMUP_S
    from .bench.loop import LOOP_CALLS
    bench.add_argument("--shapes",
                       help="comma-separated shape names, or 'public' / 'classes' (default: "
                            "the public shapes): "
                            + ", ".join(case.name for case in PUBLIC_SHAPES)
                            + "; the layer classes of docs/results-classes.md: "
                            + ", ".join(case.name for case in CLASS_SHAPES))
    bench.add_argument("--ops", metavar="OPS",
                       help="comma-separated ops among forward, transposed, grad_input, "
                            "grad_weight, or 'all' (default: each shape's own call: forward, "
                            "and transposed for the transposed shape up4x4); a shape runs "
                            "the requested ops it offers (up4x4 offers only transposed)")
    bench.add_argument("--algorithms", help="comma-separated algorithms (default: all and auto)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    bench.add_argument("--threads", type=_positive_int, default=2,
                       help="threads for numba and PyTorch (default 2)")
    bench.add_argument("--rounds", type=_positive_int, default=5,
                       help="times each implementation takes its turn (default 5; with "
                            "--nets: timed calls per layer and variant, the median reported)")
    bench.add_argument("--repeats", type=_positive_int, default=3,
                       help="timed calls per turn, after the warm-up (default 3)")
    bench.add_argument("--warmup-ms", type=_non_negative_float, default=1e3 * TURN_WARMUP_S,
                       metavar="MS",
                       help="milliseconds of untimed calls that start each turn, at least "
                            f"one call (default {1e3 * TURN_WARMUP_S:g}; see "
                            "docs/benchmarking.md)")
    bench.add_argument("--no-torch", action="store_true",
                       help="skip PyTorch (without it the 'vs torch' column is empty; "
                            "pip install torch==2.13.0 fills it)")
    bench.add_argument("--no-scipy", action="store_true", help="skip SciPy")
    bench.add_argument("--no-check", action="store_true",
                       help="skip the check against the float64 reference")
    bench.add_argument("--no-progress", action="store_true",
                       help="no progress on stderr (a bar on a terminal, otherwise a line "
                            "per shape and op)")
    bench.add_argument("--loop", action="store_true",
                       help="also time each numbaconv algorithm as a user's loop: alone in a "
                            "fresh process, results allocated per call (no out=); the 'loop' "
                            "column (docs/benchmarking.md)")
    bench.add_argument("--loop-calls", type=_positive_int, default=LOOP_CALLS, metavar="N",
                       help=f"calls per user's loop, the first not counted (default "
                            f"{LOOP_CALLS})")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--startup", action="store_true",
                       help="instead: measure cold compile and warm-cache first-call times")
    from .bench.networks import NETWORKS
    nets = bench.add_argument_group(
        "network benchmark (--nets)",
        "Time every distinct layer of whole networks with its real epilogue (bias, "
        "activation, residual add), ours fused and unfused in NCHW and channels-last, "
        "against PyTorch eager in NCHW and channels-last, for inference and training "
        "(forward and gradients); per network, the total over its layers and the ratio "
        "of our faster format's total to PyTorch's (docs/benchmarking.md, \"Network "
        "benchmark\").  --threads, --rounds, --warmup-ms, --no-torch, --no-check, "
        "--no-progress and --json apply.  Exits with status 1 if a layer of ours fails "
        "the check against the float64 reference (CHECK FAILED).")
    nets.add_argument("--nets", action="store_true",
                      help="instead: run the network benchmark (--net and --quick imply "
                           "it)")
    nets.add_argument("--net", action="append", metavar="NAME",
                      help="a network to run (repeatable; default: all): "
                           + ", ".join(NETWORKS))
    nets.add_argument("--batch", action="append", type=_positive_int, metavar="N",
                      help="a batch size (repeatable; default: 1 and 8)")
    nets.add_argument("--mode", default="both", choices=["inference", "training", "both"],
                      help="inference (forward), training (forward and gradients) or both "
                           "(default)")
    nets.add_argument("--format", default="both", choices=["nchw", "channels_last", "both"],
                      help="memory format of ours and PyTorch's: nchw (C-contiguous), "
                           "channels_last (NHWC memory; 1-D layers: ours only) or both "
                           "(default)")
    nets.add_argument("--cap", action="append", metavar="NET=BATCH",
                      help="run NET at no more than BATCH samples (repeatable; default "
                           "unet3d=2: its batch 8 takes hours; the table marks capped rows)")
    nets.add_argument("--plot", metavar="FILE",
                      help="also draw ours/torch per network in FILE and per layer in "
                           "FILE's stem-NETWORK (nets.png: nets-resnet50.png; needs "
                           "matplotlib)")
    nets.add_argument("--quick", action="store_true",
                      help="a tiny subset for tests and CI: the first 2 layers of resnet50 "
                           "and mobilenet_v3_large (or of the --net networks), batch 1 "
                           "unless --batch, 1 round")
    bench.set_defaults(func=_cmd_bench)

    tune = sub.add_parser(
        "tune", help="measure every algorithm on the benchmark problems and cache the fastest",
        description="Fill the tuning cache that algorithm='auto' reads when tuning is on "
                    "(nc.set_tuning(True) or NUMBACONV_TUNE=1): every algorithm auto may pick "
                    "is timed on each benchmark problem and the fastest is stored, keyed by the "
                    "problem, dtype, thread count, numbaconv version and CPU.  The cache is "
                    "in the user cache directory (NUMBACONV_CACHE_DIR overrides).")
    tune.add_argument("--shapes", help="comma-separated shape names (default: all): "
                                       + ", ".join(case.name for case in PUBLIC_SHAPES))
    tune.add_argument("--ops", help="comma-separated ops among forward, transposed, "
                                    "grad_input, grad_weight (default: all)")
    tune.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    tune.add_argument("--threads", type=_positive_int, default=2,
                      help="numba threads to tune for (default 2)")
    tune.add_argument("--force", action="store_true", help="measure again what is cached")
    tune.add_argument("--show", action="store_true", help="instead: list the cache")
    tune.add_argument("--clear", action="store_true",
                      help="instead: delete the cache and its lock file")
    tune.set_defaults(func=_cmd_tune)

    exp = sub.add_parser(
        "explain", help="why algorithm='auto' picks what it picks for one problem",
        description="Print the dispatcher's decision for one problem: every algorithm's "
                    "path, estimated (or, with --measure, measured) time and workspace, "
                    "what it cannot serve, and the pick with its reason.  Arguments as "
                    "PyTorch takes them, e.g. numbaconv explain conv2d --input 4,64,56,56 "
                    "--weight 64,64,3,3 --padding 1")
    exp.add_argument("op", choices=[f"conv{n}d" for n in (1, 2, 3)]
                     + [f"conv_transpose{n}d" for n in (1, 2, 3)])
    exp.add_argument("--input", type=_shape, required=True, help="input shape, e.g. 4,64,56,56")
    exp.add_argument("--weight", type=_shape, required=True,
                     help="weight shape, e.g. 64,64,3,3")
    exp.add_argument("--stride", type=_ints, default=1)
    exp.add_argument("--padding", type=_padding, default=0,
                     help="an int, per-axis ints, or same/valid (forward only)")
    exp.add_argument("--dilation", type=_ints, default=1)
    exp.add_argument("--groups", type=int, default=1)
    exp.add_argument("--output-padding", type=_ints, default=0, help="transposed only")
    exp.add_argument("--padding-mode", default="zeros",
                     choices=["zeros", "reflect", "replicate", "circular"])
    exp.add_argument("--gradient", choices=["input", "weight"],
                     help="explain that gradient of the call instead")
    exp.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    exp.add_argument("--measure", action="store_true",
                     help="time every usable algorithm instead of trusting the cost models")
    exp.set_defaults(func=_cmd_explain)

    cal = sub.add_parser(
        "calibrate", help="fit the cost models' machine constants on this machine",
        description="Time every algorithm path on a fixed set of problems (about 40 s on "
                    "2 cores with the default three rounds) "
                    "and fit the cost models' constants (numbaconv.costs, Note [cost "
                    "models]); they are written to the user cache directory "
                    "(NUMBACONV_CACHE_DIR overrides), where algorithm='auto' finds them.")
    cal.add_argument("--threads", type=_positive_int, default=2,
                     help="numba threads to calibrate for (default 2)")
    cal.add_argument("--repeats", type=_positive_int, default=5,
                     help="timed calls per path and problem (default 5)")
    cal.add_argument("--rounds", type=_positive_int, default=3,
                     help="passes over all problems, the fastest of each kept (default 3)")
    cal.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    cal.add_argument("--verbose", action="store_true", help="print each measurement")
    cal.set_defaults(func=_cmd_calibrate)

    warm = sub.add_parser(
        "warmup", help="compile every CPU kernel into numba's cache, in parallel processes",
        description="Compile every CPU kernel numbaconv can use (every algorithm, float32 and "
                    "float64, forward, transposed and both gradients) into numba's disk "
                    "cache, so that no later process compiles: for cluster workers, CI and "
                    "container images.  It runs a table of tiny problems (numbaconv.warmup, "
                    "Note [warmup table]) in worker processes and writes where numba caches "
                    "(NUMBA_CACHE_DIR if set, else next to the package); a process that "
                    "reads the same cache then loads the kernels instead of compiling them.  "
                    "Exits with 1 if a job fails.")
    warm.add_argument("--jobs", type=_positive_int, default=None,
                      help="worker processes (default: the CPUs this process may use)")
    warm.add_argument("--dtype", default="all", choices=["all", "float32", "float64"],
                      help="compile for this dtype only (default: both)")
    warm.add_argument("--only", metavar="PATTERNS",
                      help="comma-separated shell patterns on job names, e.g. 'row pairs*' "
                           "(default: every job; --list shows them)")
    warm.add_argument("--list", action="store_true", help="list the jobs and exit")
    warm.set_defaults(func=_cmd_warmup)

    info = sub.add_parser("info", help="versions, threads and cache location")
    info.set_defaults(func=_cmd_info)
    hist = sub.add_parser("history", help="recorded asv results per benchmark, over commits "
                                          "(needs asv: pip install '.[bench]')")
    hist.add_argument("pattern", nargs="?", default="",
                      help="regular expression on benchmark names, e.g. 'Conv.time_conv'")
    hist.add_argument("--machine", default="numbaconv-dev",
                      help="asv machine name (default: numbaconv-dev, see docs/asv.md)")
    hist.add_argument("--results", default=".asv/results", help="asv results directory")
    hist.add_argument("--commits", type=_positive_int, default=10,
                      help="show the last N recorded commits (default 10)")
    hist.set_defaults(func=_cmd_history)
    return parser


def main(argv=None):
    try:
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.command is None:          # a bare ``numbaconv``: the help, not an error
                parser.print_help()
                return 0
            return args.func(args)
        finally:
            sys.stdout.flush()        # so a reader that went away shows here, not at exit
    except BrokenPipeError:
        # ``numbaconv tune --show | head``: the reader has what it wanted.
        # As Python's docs advise (signal module, "Note on SIGPIPE"): point
        # stdout at devnull, so the flush at exit raises no second error,
        # and exit with 1, as Python does on EPIPE.
        _stdout_to_devnull()
        return 1


def _stdout_to_devnull():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):     # no file descriptor (captured output)
        pass


if __name__ == "__main__":
    sys.exit(main())
