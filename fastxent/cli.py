"""The ``fastxent`` command: ``bench`` (peer comparison), ``eval`` (saved logits), ``info``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _shape(text: str) -> tuple[int, ...]:
    """``N,C`` (cross-entropy) or ``N,H,V`` (linear cross-entropy), positive integers."""
    try:
        parts = tuple(int(part) for part in text.lower().replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"expected N,C (e.g. 4096,32000) or, for --operation linear, N,H,V "
            f"(e.g. 2048,1024,32000), got {text!r}"
        )
    if min(parts) < 1:
        raise argparse.ArgumentTypeError(f"every size must be positive, got {text!r}")
    return parts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastxent", description="Fast softmax cross-entropy kernels: benchmarks and info."
    )
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser("bench", help="time fastxent against NumPy, PyTorch and JAX")
    bench.add_argument("--quick", action="store_true", help="three shapes, few repeats (<1 min)")
    bench.add_argument(
        "--shape",
        type=_shape,
        action="append",
        help="N,C to run, or N,H,V with --operation linear (repeatable); default: all",
    )
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    bench.add_argument("--threads", type=int, default=None, help="threads (default: all)")
    bench.add_argument(
        "--peers",
        default=None,
        help="comma-separated subset of fastxent,reference,torch,fastxent.torch,jax "
        "(fastxent.torch: the PyTorch drop-in, through autograd)",
    )
    bench.add_argument(
        "--operation",
        choices=("forward", "forward+grad", "both", "linear", "evaluate"),
        default="both",
        help="cross-entropy forward, forward+grad or both; linear: fused linear "
        "cross-entropy against PyTorch's two paths and the matrix products alone; "
        "evaluate: fastxent.evaluate's metrics against NumPy and scikit-learn",
    )
    bench.add_argument("--json", metavar="PATH", help="write the measurements as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    evaluation = commands.add_parser(
        "eval",
        help="NLL, perplexity, top-k accuracy and calibration of saved logits, in one pass",
        description="Evaluate saved logits against labels, reading the files once in blocks.",
    )
    from fastxent import eval_command

    eval_command.add_arguments(evaluation)
    commands.add_parser("info", help="threading layer, threads, cache directory, SIMD width")
    return parser


def _bench(args: argparse.Namespace) -> int:
    from fastxent import bench, bench_evaluation

    linear = args.operation == "linear"
    evaluate = args.operation == "evaluate"
    size = 3 if linear else 2
    wrong = [shape for shape in args.shape or [] if len(shape) != size]
    if wrong:
        expected = "N,H,V with --operation linear" if linear else "N,C (N,H,V is for linear)"
        shown = ", ".join(",".join(map(str, shape)) for shape in wrong)
        print(f"fastxent bench: error: --shape {shown}: expected {expected}", file=sys.stderr)
        return 2
    installed = bench.available_peers()
    known = bench.LINEAR_PEERS if linear else tuple(installed)
    if evaluate:
        known = bench_evaluation.PEERS
    peers = args.peers.split(",") if args.peers else None
    unknown = [p for p in (peers or []) if p not in known]
    if unknown:
        print(f"unknown peer(s): {', '.join(unknown)}; choose from {', '.join(known)}")
        return 2
    print(_header())
    if linear:
        shapes = args.shape or list(
            bench.QUICK_LINEAR_SHAPES if args.quick else bench.LINEAR_SHAPES
        )
        absent = [p for p in bench.LINEAR_PEERS if p not in bench.available_linear_peers()]
        results = bench.run_linear(
            shapes, args.dtype, peers, args.threads, args.quick,
            bench.progress_printer(len(shapes) * len(bench.LINEAR_OPERATIONS)),
        )  # fmt: skip
    elif evaluate:
        shapes = args.shape or list(
            bench_evaluation.QUICK_SHAPES if args.quick else bench_evaluation.SHAPES
        )
        absent = [p for p in known if p not in bench_evaluation.available_peers()]
        results = bench_evaluation.run_evaluate(
            shapes, args.dtype, peers, args.threads, args.quick,
            bench.progress_printer(len(shapes)),
        )  # fmt: skip
    else:
        shapes = args.shape or list(bench.QUICK_SHAPES if args.quick else bench.DEFAULT_SHAPES)
        operations = bench.OPERATIONS if args.operation == "both" else (args.operation,)
        absent = [p for p, ok in installed.items() if not ok]
        results = bench.run(
            shapes, args.dtype, peers, operations, args.threads, args.quick,
            bench.progress_printer(len(shapes) * len(operations)),
        )  # fmt: skip
    if peers is not None:
        absent = [p for p in absent if p in peers]
    print(bench.format_table(results, absent))
    dropin = "" if linear or evaluate else bench.format_dropin(results)
    if dropin:
        print(dropin)
    print(bench.format_agreement(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"system": _measured_on(), "results": bench.to_json(results)}, handle, indent=1
            )
    if args.plot:
        bench.plot(results, args.plot)
    return 0


def _system() -> dict[str, str]:
    import platform

    import numba
    import numpy

    import fastxent
    from fastxent import _threading

    _threading.prepare()  # before numba.get_num_threads(), which starts the layer

    return {
        "fastxent": fastxent.__version__,
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "threads": str(numba.get_num_threads()),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _measured_on() -> dict[str, str]:
    """The system facts, the threading layer, and the versions of the peers measured."""
    from fastxent import _threading

    facts = _system()
    facts["layer"] = _threading.describe()["threading layer"]
    for peer in ("torch", "jax", "sklearn"):
        if peer in sys.modules:  # imported by the run: a peer it measured
            facts[peer] = str(getattr(sys.modules[peer], "__version__", "unknown"))
    return facts


def _header() -> str:
    from fastxent import _threading

    facts = _system()
    facts["layer"] = _threading.describe()["threading layer"]
    return " ".join(f"{key}={value}" for key, value in facts.items())


def _info() -> int:
    import numba

    from fastxent import _threading
    from fastxent._plan import parallel_min_elements
    from fastxent._simd import vector_width_bits
    from fastxent._tuning import PARALLEL_ENV, THRESHOLDS

    facts = _system()
    facts.update(_threading.describe())
    threshold = parallel_min_elements(_threading.launched_layer())
    facts["parallel from"] = f"{threshold} elements ({PARALLEL_ENV})"
    cache_dir = numba.config.CACHE_DIR  # type: ignore[attr-defined]
    facts["cache directory"] = cache_dir or "next to the package (__pycache__)"
    facts["SIMD width"] = f"{vector_width_bits()} bits"
    facts["prefetch above"] = (
        f"{THRESHOLDS.streaming_min_bytes / 2**20:g} MiB inputs ({THRESHOLDS.streaming_source}),"
        f" rows of {THRESHOLDS.prefetch_min_classes}+ classes"
    )
    for key, value in facts.items():
        print(f"{key:>20}: {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastxent`` command; ``fastxent`` alone runs ``bench --quick``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        arguments = ["bench", "--quick"]
    args = _parser().parse_args(arguments)
    if args.command == "bench":
        return _bench(args)
    if args.command == "eval":
        from fastxent import eval_command

        return eval_command.run(args)
    if args.command == "info":
        return _info()
    _parser().print_help()
    return 2
