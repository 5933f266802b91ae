"""``openqnn deploy``: the guide's deployment folder in one command.

    openqnn deploy model.onnx --input_list input_data.txt --backends htp,gpu,cpu -o qnn_model/

writes the guide's "output structure"::

    qnn_model/
    ├── model_optimized.so          # the model library, for this machine
    ├── context_binaries/
    │   ├── htp_context.bin         # one per listed backend that can make a context here
    │   └── cpu_context.bin
    ├── quantization_config.json    # the encodings in use (from the htp context where there is one)
    └── input_specs.json            # names, shapes, dtypes, layouts and encodings of the I/O

by running the guide's separate tools in order, through the same functions: ``qnn-onnx-converter`` (an ONNX
model, into a work folder), ``qnn-model-lib-generator`` (:func:`openqnn.modellib.build_library`) and
``qnn-context-binary-generator`` once per backend, so both ways give the same files. A backend this build
cannot run (gpu) is a log line, not a failure. Everything is made in a temporary folder inside the output
folder and moved into place only when all of it is there.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from openqnn.cli.common import ToolParser, add_common_flags, check_output_dir, parse_backends, run_tool

if TYPE_CHECKING:
    pass

log = logging.getLogger("openqnn.deploy")

DEFAULT_BACKENDS = "htp,gpu,cpu"
CONTEXTS_DIR = "context_binaries"
JSON_FILES = ("quantization_config.json", "input_specs.json")
MODEL_KINDS = "an ONNX model (.onnx), a converted model (<stem>_net.json or <stem>.cpp with <stem>.bin beside it) " \
              "or a model library (.so)"


DESCRIPTION = ("Write the guide's deployment folder in one step: the model library for this machine, a context "
               "binary per backend, quantization_config.json and input_specs.json (the same files as "
               "qnn-onnx-converter, qnn-model-lib-generator and qnn-context-binary-generator one by one).")


def build_parser(prog: str = "openqnn deploy") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description=DESCRIPTION)
    add_deploy_flags(p)
    return p


def add_deploy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an ONNX model, a converted model (<stem>_net.json, or <stem>.cpp with <stem>.bin "
                                 "beside it) or a model library (.so)")
    p.add_argument("--input_list", help="calibration data (an input list of raw files): a float model is quantized "
                                        "with it for the backends that run quantized models (htp)")
    p.add_argument("--backends", default=DEFAULT_BACKENDS, metavar="B1,B2",
                   help=f"backends to write a context binary for (default {DEFAULT_BACKENDS}); one this build cannot "
                        "run is logged and left out")
    p.add_argument("-o", "--output_dir", default="qnn_model", help="the deployment folder (default qnn_model)")
    p.add_argument("--lib_name", default="model_optimized",
                   help="the model library's name in the folder, <lib_name>.so (default model_optimized)")
    p.add_argument("-d", "--input_dim", nargs=2, action="append", metavar=("INPUT_NAME", "INPUT_DIM"), default=[],
                   help="for an ONNX model: fix an input's dims, e.g. --input_dim input 1,3,224,224 (as "
                        "qnn-onnx-converter)")
    p.add_argument("--config_file", help="backend config JSON for the context binaries (as "
                                         "qnn-context-binary-generator)")
    add_common_flags(p)


@dataclass(frozen=True)
class _Plan:
    """What deploy makes, decided before anything is written."""

    model: Path
    kind: str  # onnx, cpp, net_json, library
    backends: tuple[str, ...]  # those that write a context here, in the order given


def deploy_main(args: argparse.Namespace, command: str = "openqnn deploy") -> int:
    """Check everything, make the folder's files in a temporary folder, then move them into place."""
    plan = _plan(args)
    out_dir = check_output_dir(args.output_dir, "-o")
    made = _first_missing(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".deploy.") as tmp:
            staged = _make(plan, args, Path(tmp), command)
            written = _move_into_place(staged, out_dir, plan.backends)
    except BaseException:
        if made is not None:  # a folder deploy made for nothing is removed again (only if empty)
            _remove_empty(out_dir, made)
        raise
    print("\n".join(map(str, written)))
    return 0


def _plan(args: argparse.Namespace) -> _Plan:
    from openqnn.backends import SPECS
    from openqnn.errors import InvalidConfigError

    model = Path(args.model)
    if not model.is_file():
        raise InvalidConfigError(f"MODEL {model}: no such file; give {MODEL_KINDS}")
    name = model.name.lower()
    if name.endswith(".onnx"):
        kind = "onnx"
    elif name.endswith("_net.json"):
        kind = "net_json"
    elif name.endswith(".cpp"):
        kind = "cpp"
    elif name.endswith(".so"):
        kind = "library"
    else:
        raise InvalidConfigError(f"MODEL {model}: not a model deploy knows; give {MODEL_KINDS}")
    if args.input_dim and kind != "onnx":
        raise InvalidConfigError(f"--input_dim: only for an ONNX model; {model} is already converted")
    if args.input_list and not Path(args.input_list).is_file():
        raise InvalidConfigError(f"--input_list {args.input_list}: no such file; give an input list of raw files, "
                                 "one inference per line")
    from openqnn.modellib.build import check_lib_name

    check_lib_name(args.lib_name, "--lib_name")

    chosen: list[str] = []
    for b in parse_backends(args.backends, "--backends"):
        spec = SPECS[b]
        why = spec.why_unavailable()
        if why is not None:
            log.warning("%s: not available here (%s); no %s_context.bin written", spec.name, why, spec.name)
        elif spec.capabilities.qnn_contexts:
            log.warning("%s: writes QNN's own context binaries, not openqnn's: make one with "
                        "qnn-context-binary-generator --backend %s; no %s_context.bin written", spec.name, spec.name,
                        spec.name)
        elif not spec.capabilities.contexts:
            log.warning("%s: this backend cannot write context binaries yet; no %s_context.bin written", spec.name,
                        spec.name)
        else:
            chosen.append(spec.name)
    if not chosen:
        able = ", ".join(s.name for s in SPECS.values() if s.why_unavailable() is None and s.capabilities.contexts)
        raise InvalidConfigError(f"--backends {args.backends}: none of these backends can write a context binary in "
                                 f"this build; use {able}")
    return _Plan(model, kind, tuple(chosen))


def _make(plan: _Plan, args: argparse.Namespace, tmp: Path, command: str) -> Path:
    """The folder's files under ``tmp/stage``, made by the separate tools' functions."""
    from openqnn.backends import backend_spec

    stage, work = tmp / "stage", tmp / "work"
    stage.mkdir()
    work.mkdir()
    library = _library(plan, args, stage, work, command)
    contexts: dict[str, Path] = {}
    for backend in plan.backends:
        out = tmp / f"context_{backend}"
        _quiet(_context_generator, library, backend, out, args)
        contexts[backend] = out
    (stage / CONTEXTS_DIR).mkdir()
    for backend, out in contexts.items():
        os.replace(out / f"{backend}_context.bin", stage / CONTEXTS_DIR / f"{backend}_context.bin")
    # the encodings in use: those of the backend that quantizes (htp) where one is listed, else the first's
    source = next((contexts[b] for b in plan.backends if backend_spec(b).capabilities.quantized_only),
                  contexts[plan.backends[0]])
    for f in JSON_FILES:
        os.replace(source / f, stage / f)
    return stage


def _library(plan: _Plan, args: argparse.Namespace, stage: Path, work: Path, command: str) -> Path:
    """``<stage>/<lib_name>.so``: built from the model's .cpp (converted first from ONNX, written from a
    _net.json that has none beside it), or copied where the model is a library."""
    from openqnn.modellib import build_library, library_info
    from openqnn.modellib.toolchain import host_target

    dest = stage / f"{args.lib_name}.so"
    if plan.kind == "library":
        shutil.copyfile(plan.model, dest)
        info = library_info(plan.model)
        if info.get("weights") == "file" and info.get("weights_file"):  # weights kept beside the library
            shutil.copyfile(plan.model.with_name(str(info["weights_file"])), stage / str(info["weights_file"]))
        return dest
    if plan.kind == "onnx":
        cpp = work / f"{plan.model.stem}.cpp"
        _quiet(_converter, plan.model, cpp, args.input_dim, command)
    elif plan.kind == "cpp":
        cpp = plan.model
    else:
        cpp = _source_of(plan.model, work)
    target = host_target()
    return build_library(cpp, cpp.with_suffix(".bin"), name=args.lib_name, output=dest, targets=[target])[target]


def _source_of(net_json: Path, work: Path) -> Path:
    """The ``<stem>.cpp`` of a ``<stem>_net.json``: the converter's beside it, or one written into ``work``."""
    import openqnn
    from openqnn.errors import InvalidConfigError
    from openqnn.modellib import write_source
    from openqnn.serialization import model_paths

    json_path, bin_path = model_paths(net_json)
    cpp = json_path.with_name(json_path.name.removesuffix("_net.json") + ".cpp")
    if cpp.is_file():
        return cpp
    if not bin_path.is_file():
        raise InvalidConfigError(f"MODEL {net_json}: its weights {bin_path.name} are not beside it; the converter "
                                 "writes both")
    return write_source(openqnn.load(json_path), work / cpp.name, bin_path)


def _converter(onnx_path: Path, cpp: Path, dims: list[list[str]], command: str) -> None:
    from openqnn.cli import onnx_converter
    from openqnn.cli.converter import convert_main

    argv = ["--input_network", str(onnx_path), "--output_path", str(cpp)]
    for name, value in dims:
        argv += ["--input_dim", name, value]
    convert_main(onnx_converter.build_parser().parse_args(argv), command)


def _context_generator(library: Path, backend: str, out: Path, args: argparse.Namespace) -> None:
    from openqnn.cli import context_binary_generator

    argv = ["--model", str(library), "--backend", backend, "--output_dir", str(out)]
    if args.input_list:
        argv += ["--input_list", args.input_list]
    if args.config_file:
        argv += ["--config_file", args.config_file]
    context_binary_generator.context_binary_generator_main(context_binary_generator.build_parser().parse_args(argv))


def _quiet(fn: Callable[..., object], *a: object) -> None:
    """Run a tool's function without its list of written paths: deploy prints the folder's own at the end."""
    with contextlib.redirect_stdout(io.StringIO()):
        fn(*a)


def _move_into_place(staged: Path, out_dir: Path, backends: Sequence[str]) -> list[Path]:
    """Every staged file to the same place under ``out_dir`` (renames within one file system), in the guide's
    order: the library (with a weights file kept beside it), the contexts, the JSON files."""
    contexts = [Path(CONTEXTS_DIR) / f"{b}_context.bin" for b in backends]
    rest = sorted(p.relative_to(staged) for p in staged.iterdir() if p.is_file() and p.name not in JSON_FILES)
    written = []
    for rel in [*rest, *contexts, *map(Path, JSON_FILES)]:
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / rel, dest)
        written.append(dest)
    return written


def _first_missing(path: Path) -> Path | None:
    """The highest folder of ``path`` (itself or a parent) that does not exist yet: what mkdir will make."""
    missing = None
    for q in (path, *path.parents):
        if q.exists():
            break
        missing = q
    return missing


def _remove_empty(path: Path, top: Path) -> None:
    for q in (path, *path.parents):
        try:
            q.rmdir()
        except OSError:
            return
        if q == top:
            return


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["openqnn", "deploy", *map(shlex.quote, argv)])
    return run_tool(lambda a: deploy_main(a, command), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
