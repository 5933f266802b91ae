"""What every command-line tool shares: logging flags, and turning errors into one line."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from openqnn.errors import InvalidConfigError, OpenQnnError, one_line

if TYPE_CHECKING:
    from openqnn.runtime.config import BackendConfig

# the largest count or dimension a flag takes: QNN's flags are 32-bit integers
MAX_FLAG_INT = 2**31 - 1

LOG_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "verbose": logging.DEBUG,
              "debug": logging.DEBUG}


class ToolParser(argparse.ArgumentParser):
    """argparse for openqnn's tools: a refused flag is one line, ``error: <tool>: <what>``, naming the flag
    and pointing to ``--help``, with exit status 2 (argparse prints its usage block first otherwise)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log_level", choices=sorted(LOG_LEVELS), default="warn",
                   help="how much to log (QNN's levels; verbose and debug print the most)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def add_placement_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--disable_cpu_fallback", action="store_true",
                   help="a node the backend cannot run is an error listing the nodes, instead of running on the cpu "
                        "fallback (the config file's openqnn.disable_cpu_fallback)")


def backend_config(args: argparse.Namespace) -> BackendConfig:
    """The backend config of ``--config_file`` (defaults where none), with ``--disable_cpu_fallback`` and
    ``--perf_profile`` (every backend's performance_mode) where given."""
    from openqnn.backends import SPECS
    from openqnn.runtime.config import BackendConfig, read_backend_config

    config = read_backend_config(args.config_file) if getattr(args, "config_file", None) else BackendConfig()
    if getattr(args, "disable_cpu_fallback", False):
        config = config.with_placement(disable_cpu_fallback=True)
    if getattr(args, "perf_profile", None):
        from dataclasses import fields

        for name, spec in SPECS.items():
            if "performance_mode" in {f.name for f in fields(spec.config_class)}:
                config = config.with_section(name, performance_mode=args.perf_profile)
    return config


def setup_logging(level: str, debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else LOG_LEVELS[level],
                        format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("torch", "onnx", "onnxscript", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_tool(main: Callable[[argparse.Namespace], int | None], parser: argparse.ArgumentParser,
             argv: Sequence[str] | None) -> int:
    """Parse flags and run ``main``; an openqnn error becomes ``error: ...`` and exit status 2."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", "warn"), getattr(args, "debug", False))
    try:
        return int(main(args) or 0)
    except OpenQnnError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in openqnn: still one line unless --debug
        if args.debug:
            raise
        print(f"error: {type(e).__name__}: {one_line(str(e))} (a fault in openqnn, not in your input; rerun with "
              "--debug for the traceback and please report it)", file=sys.stderr)
        return 1


def parse_dims(text: str, flag: str) -> tuple[int, ...]:
    """``1,3,224,224`` -> (1, 3, 224, 224)."""
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise InvalidConfigError(f"{flag} {text}: dims must be positive integers separated by commas, e.g. 1,3,224,224")
    if any(d > MAX_FLAG_INT for d in dims):
        raise InvalidConfigError(f"{flag} {text}: a dim above {MAX_FLAG_INT} is not possible")
    return dims


def parse_backends(text: str, flag: str) -> list[str]:
    """``htp,gpu,cpu`` (names or QNN library names) -> backend names, each once; a bad list is one line naming
    ``flag``."""
    from openqnn.backends import SPECS, backend_spec

    names = [b for b in (x.strip() for x in text.split(",")) if b]
    if not names:
        raise InvalidConfigError(f"{flag} {text!r}: name backends separated by commas, e.g. htp,gpu,cpu")
    out: list[str] = []
    for name in names:
        try:
            spec = backend_spec(name)
        except InvalidConfigError:
            raise InvalidConfigError(f"{flag} {text}: unknown backend '{name}'; use "
                                     + ", ".join(f"{s.name} ({s.library})" for s in SPECS.values())) from None
        if spec.name in out:
            raise InvalidConfigError(f"{flag} {text}: {spec.name} is named twice")
        out.append(spec.name)
    return out


def check_range(value: float | None, flag: str, lo: float, hi: float, *, lo_open: bool = False) -> None:
    """A numeric flag lies in [lo, hi] (``lo_open``: (lo, hi]) and is finite; None (not given) passes."""
    if value is None:
        return
    low_ok = value > lo if lo_open else value >= lo
    if not (math.isfinite(value) and low_ok and value <= hi):
        raise InvalidConfigError(f"{flag} {value}: out of range; give a number in {'(' if lo_open else '['}{lo:g}, "
                                 f"{hi:g}]")


def check_output_dir(path: str | os.PathLike[str], flag: str = "--output_dir") -> Path:
    """An output folder that exists or can be made: no file in the way, here or above."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                what = "is a file" if q == p else f"cannot be made: {q} is a file"
                raise InvalidConfigError(f"{flag} {p}: {what}; give a folder")
            if not os.access(q, os.W_OK | os.X_OK):
                raise InvalidConfigError(f"{flag} {p}: {q} is not writable; give a folder you can write to")
            break
    return p
