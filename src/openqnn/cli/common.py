"""What every command-line tool shares: logging flags, and turning errors into one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from openqnn.errors import OpenQnnError

LOG_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "verbose": logging.DEBUG,
              "debug": logging.DEBUG}


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log_level", choices=sorted(LOG_LEVELS), default="warn",
                   help="how much to log (QNN's levels; verbose and debug print the most)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


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
        print(f"error: internal error ({type(e).__name__}: {e}); rerun with --debug for the traceback and please "
              "report it", file=sys.stderr)
        return 1


def parse_dims(text: str, flag: str) -> tuple[int, ...]:
    """``1,3,224,224`` -> (1, 3, 224, 224)."""
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        from openqnn.errors import InvalidConfigError

        raise InvalidConfigError(f"{flag} {text}: dims must be positive integers separated by commas, e.g. 1,3,224,224")
    return dims
