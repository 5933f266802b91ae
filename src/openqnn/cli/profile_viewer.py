"""qnn-profile-viewer: read a profiling log; print its summary, write CSV, a Chrome trace or an HTML report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser, add_common_flags, run_tool

# QNN's reader library names, accepted for --reader as its own tool takes them
CHROMETRACE_READERS = ("chrometrace", "libQnnChrometraceProfilingReader.so")


def build_parser(prog: str = "qnn-profile-viewer") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Summarize a profiling log (qnn-net-run --profiling_level): text, CSV, "
                                          "Chrome trace, HTML report.")
    add_profile_viewer_flags(p)
    return p


def add_profile_viewer_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input_log", required=True, help="the qnn-profiling-data_0.log qnn-net-run wrote")
    p.add_argument("--output", help="write per-node statistics as CSV here (with --reader chrometrace: the trace JSON)")
    p.add_argument("--reader", help="chrometrace (or libQnnChrometraceProfilingReader.so): --output is a Chrome "
                                    "trace for chrome://tracing or Perfetto")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with charts and suggestions")
    p.add_argument("--accuracy_csv", metavar="FILE",
                   help="qnn-accuracy-debugger's layer CSV: the report names the layers losing most accuracy")
    add_common_flags(p)


def profile_viewer_main(args: argparse.Namespace) -> int:
    from openqnn.errors import InvalidConfigError
    from openqnn.profiling import read_profile
    from openqnn.profiling.viewer import summary_text, write_chrome_trace, write_csv

    reader = None
    if args.reader is not None:
        reader = args.reader.rsplit("/", 1)[-1]
        if reader not in CHROMETRACE_READERS:
            raise InvalidConfigError(f"--reader {args.reader}: unknown reader; use chrometrace "
                                     "(libQnnChrometraceProfilingReader.so), or leave it out for CSV")
        if not args.output:
            raise InvalidConfigError("--reader chrometrace writes the trace to --output; give --output trace.json")
    log = read_profile(args.input_log)
    sqnr = None
    if args.accuracy_csv:
        from openqnn.profiling.accuracy import read_layer_sqnr

        sqnr = read_layer_sqnr(args.accuracy_csv)
    print(summary_text(log, args.input_log), end="")
    if args.output:
        if reader is not None:
            print(f"Chrome trace: {write_chrome_trace(log, args.output)}")
        else:
            print(f"CSV: {write_csv(log, args.output)}")
    if args.html:
        from openqnn.profiling.report import write_html_report

        print(f"HTML report: {write_html_report(log, args.html, args.input_log, sqnr)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_tool(profile_viewer_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
