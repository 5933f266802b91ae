"""``python -m benchmarks``: openqnn cpu vs ONNX Runtime vs PyTorch eager latency table; ``--htp``: the htp
integer emulation vs ONNX Runtime int8 QDQ and openqnn cpu fp32; ``--simulator``: openqnn's htp against
Qualcomm's HTP simulator; ``--contexts``: opening a context binary
vs preparing the model from its _net.json."""

from __future__ import annotations

import argparse
import os
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.isacap import cap_cpuid

    cap_cpuid()  # before anything imports onnxruntime: its kernels follow OPENQNN_MAX_ISA too
    from benchmarks.bench import DEFAULT_MODELS, run
    from benchmarks.zoo import MODELS

    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=sorted(MODELS),
                   help="models to time (default: %(default)s)")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8], help="batch sizes (default: 1 8)")
    p.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: torch's default)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per measurement; the median is reported")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    p.add_argument("--rounds", type=int, default=2, help="turns each runtime takes; its best median counts")
    p.add_argument("--size", type=int, default=None, help="image size for the CNNs (default 224)")
    p.add_argument("--htp", action="store_true",
                   help="time the htp integer emulation (W8A8) against ORT int8 QDQ and openqnn cpu fp32 instead "
                        "(models default to resnet18 mobilenet_v2, batch 1)")
    p.add_argument("--contexts", action="store_true",
                   help="time opening a context binary against preparing from the _net.json, on htp (W8A8) and cpu "
                        "(float) (models default to resnet18 bert mobilenet_v2; --rounds prepares, 3 opens each)")
    p.add_argument("--simulator", action="store_true",
                   help="time openqnn's htp against Qualcomm's HTP simulator (the onnxruntime-qnn wheel) on the same "
                        "W8A8 model and input (models default to resnet18)")
    p.add_argument("--arch", default="73", help="the HTP arch of --simulator (default 73)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 3 runs, 1 warm-up, 1 round, batch 1, 112x112 images")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.warmup, args.rounds, args.batch = 3, 1, 1, [1]
        args.size = args.size or 112
    warnings.filterwarnings("ignore")
    if args.contexts:
        from benchmarks.contexts import DEFAULT_CONTEXT_MODELS, run_contexts

        models = args.models if args.models != list(DEFAULT_MODELS) else list(DEFAULT_CONTEXT_MODELS)
        run_contexts(models, ["htp", "cpu"], max(args.rounds, 5 if not args.quick else 1), args.size, args.threads)
        return 0
    if args.simulator:
        from benchmarks.simulator import run_simulator

        models = args.models if args.models != list(DEFAULT_MODELS) else ["resnet18"]
        return run_simulator(models, args.arch.lower().removeprefix("v"), args.size, args.threads)
    if args.htp:
        from benchmarks.htp import run_htp

        models = args.models if args.models != list(DEFAULT_MODELS) else ["resnet18", "mobilenet_v2"]
        for batch in args.batch if args.batch != [1, 8] else [1]:
            run_htp(models, batch, args.threads, args.runs, args.warmup, args.size, args.rounds)
        return 0
    run(args.models, args.batch, args.threads, args.runs, args.warmup, args.size, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
