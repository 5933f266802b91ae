"""Print how openqnn's htp output codes compare with Qualcomm's HTP simulator's, per op and arch.

    python -m tests.fidelity.report                         # every single-op case on v68 and v73
    python -m tests.fidelity.report --arch 73 --ops conv gemm --cases
    python -m tests.fidelity.report --models                # plus the small whole models
    python -m tests.fidelity.report --models --no-ops --full  # only the whole models, at full size
    python -m tests.fidelity.report --json results.json

A cell reads ``99.1% ≤1``: the share of output codes identical to the simulator's, pooled over the
op's cases of that activation bitwidth, and the largest difference in codes. ``[2✗]``: that many cases
gave no comparison (the simulator refused the model, its outputs were off their encoding's grid, or
openqnn failed); the findings below the tables name them. ``-``: no case of that kind. The second table
holds both against exact arithmetic (ONNX Runtime's CPU on the same QDQ model, unfused).
The simulator's outputs are cached (``$OPENQNN_FIDELITY_CACHE`` or ``~/.cache/openqnn/fidelity``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence

from tests.fidelity.cases import Case, model_cases, select
from tests.fidelity.harness import Result, export_bytes, run_prepared, simulator_missing, wheel_version


def _machine() -> str:
    import platform
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        name = ""
    import os

    return f"{name or platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def run_all(cases: Sequence[Case], archs: Sequence[str], *, use_cache: bool = True, verbose: bool = False,
            progress: bool = True, arithmetic: str = "qnn") -> list[Result]:
    """Prepare each case once, run it on each arch."""
    from tests.fidelity.harness import _first_line

    results: list[Result] = []
    for i, case in enumerate(cases, 1):
        if progress:
            print(f"\r[{i}/{len(cases)}] {case.name:<60}", end="", file=sys.stderr, flush=True)
        stage = "prepare"
        try:
            prep = case.prepare()
            stage = "export"
            qdq: bytes | None = export_bytes(prep)
        except Exception as e:
            for arch in archs:
                results.append(Result(case.name, case.op, case.variant, arch, model=case.model,
                                      error=f"{stage}: {_first_line(e)}"))
            continue
        for arch in archs:
            r = run_prepared(prep, arch, use_cache=use_cache, qdq=qdq, arithmetic=arithmetic)
            results.append(r)
            if verbose:
                print(("\r" if progress else "") + r.line(), file=sys.stderr if progress else sys.stdout)
    if progress:
        print("\r" + " " * 80 + "\r", end="", file=sys.stderr)
    return results


# ---------------------------------------------------------------------------------------------
# tables


def _bits(r: Result) -> str:
    return "a16" if r.variant.startswith("a16") else "a8"


def _pool(rs: Iterable[Result], which: str = "qnn") -> tuple[int, float | None, float | None, int]:
    """(outputs, share identical, max diff, cases without a comparison) pooled over results."""
    n = same = 0
    mx: float | None = None
    failed = 0
    for r in rs:
        if which == "qnn":
            share, m = r.identical, r.max_diff
        elif which == "ref_oq":
            share, m = r.ref_oq, r.ref_oq_max
        else:
            share, m = r.ref_sim, r.ref_sim_max
        if share is None or m is None:
            failed += 1
            continue
        n += r.n
        same += round(share * r.n)
        mx = m if mx is None else max(mx, m)
    return n, (same / n if n else None), mx, failed


def _cell(rs: list[Result], which: str = "qnn") -> str:
    if not rs:
        return "-"
    _, share, mx, failed = _pool(rs, which)
    text = f"{_pct(share)} ≤{mx:g}" if share is not None else "—"
    return text + (f" [{failed}✗]" if failed else "")


def _pct(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 1.0:
        return "100%"
    return f"{min(x, 0.9999) * 100:.2f}%" if x >= 0.99 else f"{x * 100:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def op_table(results: Sequence[Result], archs: Sequence[str]) -> str:
    by: dict[tuple[str, str, str], list[Result]] = defaultdict(list)
    kernels: dict[str, set[str]] = {}
    order: list[str] = []
    for r in results:
        if r.model:
            continue
        if r.op not in kernels:
            order.append(r.op)
            kernels[r.op] = set()
        kernels[r.op] |= set(r.kernels)
        by[(r.op, r.arch, _bits(r))].append(r)
    kernel = {op: _kernel_names(ks) for op, ks in kernels.items()}
    header = ["op", "openqnn htp kernels", "cases"] + [f"v{a} {b}" for a in archs for b in ("a8", "a16")]
    rows = []
    for op in order:
        ncases = len({r.case for r in results if r.op == op and not r.model})
        rows.append([op, kernel[op], str(ncases)] + [_cell(by[(op, a, b)]) for a in archs for b in ("a8", "a16")])
    return _table(header, rows)


_LAYOUT = {"htp.transpose", "htp.reshape", "htp.const"}  # the layout moves around NCHW ops


def _kernel_names(ks: set[str]) -> str:
    """The kernels that ran (openqnn's step plans), less the layout moves around them when others ran."""
    main = ks - _LAYOUT or ks
    return ", ".join(sorted(k.removeprefix("htp.") for k in main)) or "?"


def exact_table(results: Sequence[Result], archs: Sequence[str]) -> str:
    by: dict[tuple[str, str], list[Result]] = defaultdict(list)
    order: list[str] = []
    for r in results:
        if r.model:
            continue
        if r.op not in order:
            order.append(r.op)
        by[(r.op, r.arch)].append(r)
    header = ["op"] + [f"v{a} {who}" for a in archs for who in ("openqnn≡exact", "QNN≡exact")]
    rows = [[op] + [_cell(by[(op, a)], w) for a in archs for w in ("ref_oq", "ref_sim")] for op in order]
    return _table(header, rows)


def model_table(results: Sequence[Result]) -> str:
    header = ["model", "arch", "outputs", "identical", "max diff", "top-1 agree", "openqnn≡exact", "QNN≡exact",
              "simulator s", "openqnn s"]
    rows = []
    for r in results:
        if not r.model:
            continue
        if r.identical is None:
            rows.append([r.case, f"v{r.arch}", "-", "REFUSED" if r.refusal else "ERROR", "-", "-", "-", "-",
                         f"{r.sim_s:.1f}", "-"])
            continue
        rows.append([r.case, f"v{r.arch}", str(r.n), _pct(r.identical), f"{r.max_diff:g}",
                     _pct(r.top1), _pct(r.ref_oq) + (f" ≤{r.ref_oq_max:g}" if r.ref_oq_max is not None else ""),
                     _pct(r.ref_sim) + (f" ≤{r.ref_sim_max:g}" if r.ref_sim_max is not None else ""),
                     f"{r.sim_s:.2f}", f"{r.oq_s:.2f}"])
    return _table(header, rows)


def findings(results: Sequence[Result]) -> str:
    """Refusals, off-grid outputs, errors, nodes QNN ran on floats and openqnn's cpu fallbacks, grouped."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in results:
        tag = f"{r.case} v{r.arch}"
        if r.refusal:
            groups[("refused by the simulator", r.refusal)].append(tag)
        elif r.error:
            kind = r.error.split(":", 1)[0]
            msg = r.error.split(":", 1)[1].strip() if ":" in r.error else r.error
            if kind == "off-grid":
                msg = "outputs not on their encoding's grid" + (
                    f"; QNN EP ran on floats: {', '.join(sorted({x.split(' ')[0] for x in r.qnn_float}))}"
                    if r.qnn_float else "")
            groups[(kind, _squash(msg))].append(tag)
        if r.qnn_float and not r.error:
            groups[("QNN EP ran outside a QDQ node unit (on floats)",
                    ", ".join(sorted({x.split(" ")[0] for x in r.qnn_float})))].append(tag)
        for fb in r.fallbacks:
            groups[("openqnn htp: cpu fallback", _squash(fb.split(": ", 1)[-1]))].append(tag)
    out = []
    for (kind, msg), tags in sorted(groups.items()):
        out.append(f"- {kind}: {msg}\n  {_compact(tags)}")
    return "\n".join(out) if out else "(none)"


def _squash(msg: str) -> str:
    import re

    msg = re.sub(r"value -?[\d.e+-]+ is [\d.e+-]+ of a code", "value is off", msg)
    msg = re.sub(r"scale [\d.e+-]+ \(offset -?\d+\)", "its scale", msg)
    msg = re.sub(r"node `[^`]*`", "node", msg)
    return msg


def _compact(tags: list[str]) -> str:
    """'conv/a8_pt v68, conv/a8_pt v73' -> 'conv/a8_pt v68 v73' (same case on several archs)."""
    by: dict[str, list[str]] = defaultdict(list)
    for t in tags:
        case, arch = t.rsplit(" ", 1)
        if arch not in by[case]:
            by[case].append(arch)
    return "; ".join(f"{c} {' '.join(a)}" for c, a in by.items())


def summary(results: Sequence[Result], seconds: float) -> str:
    sim = sum(r.sim_s for r in results)
    oq = sum(r.oq_s for r in results)
    cached = sum(r.cached for r in results)
    return (f"{len(results)} runs in {seconds:.0f} s wall; simulator {sim:.0f} s when run ({cached} of them from the "
            f"cache this time), openqnn htp {oq:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fidelity.report", description=__doc__.split("\n")[0])
    ap.add_argument("--arch", nargs="+", default=["68", "73"], help="htp_arch values (68 69 73 75 79)")
    ap.add_argument("--ops", nargs="+", help="only these ops (the report's op names) or kernels (e.g. lut)")
    ap.add_argument("--variants", nargs="+", help="only these variants (a8, a16, a8_pc, ...)")
    ap.add_argument("--models", action="store_true", help="also the whole models (small inputs)")
    ap.add_argument("--full", action="store_true", help="whole models at full size (224x224; bert: 64 tokens)")
    ap.add_argument("--no-ops", action="store_true", help="no single-op cases")
    ap.add_argument("--cases", action="store_true", help="print each case's result as it runs")
    ap.add_argument("--no-cache", action="store_true", help="run the simulator even where its outputs are cached")
    ap.add_argument("--json", help="write every result to this file")
    ap.add_argument("--arithmetic", choices=["qnn", "tflite"], default="qnn",
                    help="openqnn's htp_config.arithmetic (default qnn: QNN's arithmetic where established, else TFLite's)")
    args = ap.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(f"fidelity report: {missing}", file=sys.stderr)
        return 2
    archs = [a.lower().removeprefix("v") for a in args.arch]
    cases: list[Case] = [] if args.no_ops else select(args.ops, args.variants)
    if args.models or args.full:
        cases += [c for c in model_cases(args.full) if not args.ops or c.op in args.ops]
    t0 = time.perf_counter()
    results = run_all(cases, archs, use_cache=not args.no_cache, verbose=args.cases, arithmetic=args.arithmetic)
    seconds = time.perf_counter() - t0
    print(f"openqnn htp vs QNN's HTP simulator ({wheel_version()}); {_machine()}")
    if any(not r.model for r in results):
        print("\nShare of output codes identical to the simulator's, and the largest difference (codes):\n")
        print(op_table(results, archs))
        print("\nAgainst exact arithmetic (ONNX Runtime CPU, unfused QDQ), all variants pooled:\n")
        print(exact_table(results, archs))
    if any(r.model for r in results):
        print("\nWhole models (openqnn htp vs the simulator; top-1: rows of the last axis whose argmax agrees):\n")
        print(model_table(results))
    print("\nFindings:\n")
    print(findings(results))
    print(f"\n{summary(results, seconds)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_json() for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
