"""qnn-net-run: run a model on a backend over an input list, writing Result_<i>/<tensor>.raw."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from openqnn.cli.common import add_common_flags, run_tool

log = logging.getLogger("openqnn.net_run")


def build_parser(prog: str = "qnn-net-run") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run a converted model over the inferences of an input list.")
    add_net_run_flags(p)
    return p


def add_net_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the converter's <stem>_net.json (or <stem>.cpp / <stem>)")
    p.add_argument("--backend", default="cpu", help="cpu, gpu or htp, or libQnnCpu.so / libQnnGpu.so / libQnnHtp.so")
    p.add_argument("--input_list", required=True,
                   help="text file: one inference per line, raw paths in input order or name:=path pairs")
    p.add_argument("--output_dir", default="./output", help="where Result_<i>/ folders go (default ./output)")
    p.add_argument("--use_native_input_files", action="store_true",
                   help="raw inputs hold each input's own type instead of float32")
    p.add_argument("--use_native_output_files", action="store_true",
                   help="write outputs in their own type as <tensor>_native.raw instead of float32")
    p.add_argument("--num_inferences", type=int, help="run this many inferences, looping over the input list")
    p.add_argument("--duration", type=float, help="keep looping over the input list for this many seconds")
    p.add_argument("--config_file", help="backend config JSON (cpu_config / gpu_config / htp_config)")
    add_common_flags(p)


def net_run_main(args: argparse.Namespace) -> int:
    import numpy as np

    import openqnn
    from openqnn.backends import resolve_backend_name
    from openqnn.errors import InvalidConfigError
    from openqnn.runtime.config import load_backend_config
    from openqnn.runtime.io import read_input_list, read_raw, sanitize, write_raw

    if args.num_inferences is not None and args.num_inferences <= 0:
        raise InvalidConfigError(f"--num_inferences {args.num_inferences}: give a positive count")
    if args.duration is not None and args.duration <= 0:
        raise InvalidConfigError(f"--duration {args.duration}: give a positive number of seconds")
    backend = resolve_backend_name(args.backend)
    options = load_backend_config(args.config_file, backend) if args.config_file else {}
    graph = openqnn.load(args.model)
    inputs = graph.input_tensors()
    ilist = read_input_list(args.input_list, inputs)
    wanted = ilist.output_names or list(graph.outputs)
    unknown = [n for n in wanted if n not in graph.outputs]
    if unknown:
        raise InvalidConfigError(f"{ilist.path}: output(s) {', '.join(unknown)} are not graph outputs "
                                 f"({', '.join(graph.outputs)})")
    # read every file before running anything, so a bad file leaves no partial results
    # on htp, native files of quantized inputs hold their integers (uint8 / uint16)
    quantized_io = backend == "htp"
    feeds = [{t.name: read_raw(entry[t.name], t, args.use_native_input_files,
                               quantized=quantized_io and t.encoding is not None) for t in inputs}
             for entry in ilist.inferences]
    session = openqnn.Session(graph, backend=backend, **options)

    total = args.num_inferences or len(feeds)
    deadline = time.perf_counter() + args.duration if args.duration else None
    out_dir = Path(args.output_dir)
    progress = _progress(total if deadline is None else None)
    count, start = 0, time.perf_counter()
    while count < total or (deadline is not None and time.perf_counter() < deadline):
        i = count % len(feeds)
        if quantized_io:
            outs = session.run(feeds[i], native_inputs=args.use_native_input_files,
                               native_outputs=args.use_native_output_files)
        else:
            outs = session.run(feeds[i])
        if count < len(feeds):  # looping re-runs the same inputs; their results are written once
            for name in wanted:
                arr = outs[name]
                if args.use_native_output_files:
                    write_raw(out_dir / f"Result_{i}" / f"{sanitize(name)}_native.raw", arr)
                else:
                    write_raw(out_dir / f"Result_{i}" / f"{sanitize(name)}.raw", np.asarray(arr, dtype=np.float32))
        count += 1
        progress.update(1)
    progress.close()
    elapsed = time.perf_counter() - start
    log.info("%d inferences in %.3f s (%.2f ms each)", count, elapsed, 1e3 * elapsed / max(count, 1))
    print(f"{count} inference(s) on {backend}: {1e3 * elapsed / max(count, 1):.3f} ms average; results in {out_dir}")
    return 0


def _progress(total: int | None):
    from tqdm import tqdm

    show = (total or 0) >= 20 or total is None
    return tqdm(total=total, unit="inf", disable=not (show and sys.stderr.isatty()), leave=False)


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(net_run_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
