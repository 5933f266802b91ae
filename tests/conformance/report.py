"""Run ONNX's node test cases (the selected ones) through openqnn and print a pass-rate report.

    python -m tests.conformance.report                # counts + failures grouped by op
    python -m tests.conformance.report -k resize      # only cases whose name contains 'resize'
    python -m tests.conformance.report --op Resize    # only cases testing Resize
    python -m tests.conformance.report --json out.json --list-skipped

The headline rate is passed / selected, counting excluded cases (``excludes.py``) as not passing;
the rate over the cases actually run is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict

import numpy as np
import onnx

from tests.conformance.excludes import EXCLUDES
from tests.conformance.harness import CaseTimeout, collect, quiet_logs, run_case


def first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if isinstance(e, AssertionError):
        # numpy's messages: "Not equal to tolerance ..." + "Output 0" + stats; keep the useful parts
        extra = [ln for ln in lines if ln.startswith(("Mismatched elements", "Max absolute", "Output ", "(shapes"))]
        if text.startswith(("Not equal", "Arrays are not equal", "Items are not equal")):
            text = "; ".join([text, *extra])
        elif extra:
            text = "; ".join([text] + [x for x in extra if x != text])
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"; supported ops: .*", "", text)
    return f"{type(e).__name__}: {text}"[:400]


def failing_op(e: BaseException, ops: tuple[str, ...]) -> str | None:
    """The op of the node an error names ("node 'x' (Op): ..."), when it is one of the case's ops."""
    m = re.search(r"node '[^']*' \((\w+)\)", str(e))
    return m.group(1) if m and m.group(1) in ops else None


def category(e: BaseException) -> str:
    from openqnn.errors import ConversionError, UnsupportedOpError

    msg = str(e)
    if isinstance(e, CaseTimeout):
        return "timeout"
    if isinstance(e, UnsupportedOpError):
        if "element type" in msg:
            return "unsupported element type"
        if "cannot run on the" in msg:
            return "no backend kernel / kernel variant"
        if re.search(r"op \w+ \(domain", msg):
            return "missing op translation"
        return "unsupported op variant/attribute"
    if isinstance(e, ConversionError):
        return "conversion error"
    if isinstance(e, AssertionError):
        if "Not equal to tolerance" in msg or "Arrays are not" in msg:
            return "wrong values"
        if "incorrect shape" in msg:
            return "wrong output shape"
        if "has dtype" in msg:
            return "wrong output dtype"
        if "Items are not equal" in msg:
            return "wrong output count"
        return "assertion"
    return f"crash ({type(e).__name__})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", help="only cases whose name contains this substring")
    ap.add_argument("--op", action="append", help="only cases testing this op (repeatable)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default 60)")
    ap.add_argument("--no-freeze", action="store_true",
                    help="do not let the adapter bake shape-like graph inputs in as constants")
    ap.add_argument("--json", help="write per-case results to this file")
    ap.add_argument("--list-skipped", action="store_true", help="also list the cases left out for element types")
    ap.add_argument("--list-passed", action="store_true", help="also list passing cases")
    ap.add_argument("--slowest", type=int, default=5, help="show the N slowest cases (default 5)")
    args = ap.parse_args(argv)

    quiet_logs()
    t0 = time.perf_counter()
    sel = collect()
    t_collect = time.perf_counter() - t0
    cases = sel.selected
    if args.k:
        cases = [c for c in cases if args.k in c.name]
    if args.op:
        cases = [c for c in cases if c.op in args.op]

    results: dict[str, dict] = {}
    t1 = time.perf_counter()
    for c in cases:
        r: dict = {"op": c.op, "expanded": c.expanded, "ops": list(c.ops)}
        if c.name in EXCLUDES:
            r.update(status="excluded", reason=EXCLUDES[c.name])
            results[c.name] = r
            continue
        ts = time.perf_counter()
        info: dict = {}
        try:
            run_case(c, timeout=args.timeout, info=info, freeze_inputs=not args.no_freeze)
            r.update(status="passed", casts=info["native_dtype_cast"])
        except (Exception, CaseTimeout) as e:
            r.update(status="failed", error=first_line(e), category=category(e),
                     failing_op=failing_op(e, c.ops) or c.op)
        r["frozen"] = info.get("frozen_inputs", [])
        r["seconds"] = round(time.perf_counter() - ts, 4)
        results[c.name] = r
    t_run = time.perf_counter() - t1

    n_sel = len(cases)
    passed = [n for n, r in results.items() if r["status"] == "passed"]
    failed = [n for n, r in results.items() if r["status"] == "failed"]
    excluded = [n for n, r in results.items() if r["status"] == "excluded"]
    ran = len(passed) + len(failed)
    pct = 100.0 * len(passed) / n_sel if n_sel else 0.0
    pct_ran = 100.0 * len(passed) / ran if ran else 0.0

    print(f"ONNX node conformance: onnx {onnx.__version__}, {len(sel.selected) + len(sel.skipped_ops) + len(sel.skipped_types)}"
          f" node cases; {len(sel.skipped_ops)} use ops outside the set, {len(sel.skipped_types)} left out for "
          "element types (float8/float4/int4/uint4/int2/uint2/bfloat16/string/complex, or non-tensor values)")
    if args.k or args.op:
        print(f"filtered to {n_sel} case(s)" + (f" matching -k {args.k}" if args.k else "")
              + (f" for op(s) {', '.join(args.op)}" if args.op else ""))

    by_op: dict[str, list[str]] = defaultdict(list)
    for n in failed:
        by_op[results[n]["failing_op"]].append(n)
    if failed:
        print(f"\nFailures by op ({len(failed)} in {len(by_op)} ops):")
        for op in sorted(by_op, key=lambda o: (-len(by_op[o]), o)):
            names = sorted(by_op[op])
            total = sum(1 for r in results.values() if r["op"] == op)
            other = sum(1 for n in names if results[n]["op"] != op)
            print(f"  {op}  ({len(names) - other}/{total} of its own cases failed"
                  + (f"; +{other} in other ops' expanded cases" if other else "") + ")")
            for n in names:
                r = results[n]
                tag = f" [expanded {r['op']}]" if r["expanded"] else (f" [{r['op']}]" if r["op"] != op else "")
                frozen = f" (frozen: {', '.join(r['frozen'])})" if r["frozen"] else ""
                print(f"    {n}{tag}{frozen}: {r['error']}")
        cats = Counter(results[n]["category"] for n in failed)
        print("\nFailures by cause:")
        for cat, k in cats.most_common():
            print(f"  {k:4d}  {cat}")
    if excluded:
        print(f"\nExcluded ({len(excluded)}, excludes.py):")
        for n in sorted(excluded):
            print(f"  {n}: {results[n]['reason']}")
    casts = {n: r["casts"] for n, r in results.items() if r.get("casts")}
    if casts:
        print(f"\nPassed only after the adapter cast openqnn's output to the declared dtype ({len(casts)}):")
        for n in sorted(casts):
            print(f"  {n}: {'; '.join(sorted(set(casts[n])))}")
    frozen_passed = [n for n in passed if results[n]["frozen"]]
    if frozen_passed:
        print(f"\n{len(frozen_passed)} passing case(s) needed inputs baked in as constants (shape-like operands "
              "openqnn requires static; the adapter freezes them per run value)"
              + (": " + ", ".join(sorted(frozen_passed)) if args.list_passed else ""))
    if args.list_passed:
        print(f"\nPassed ({len(passed)}):")
        for n in sorted(passed):
            print(f"  {n}")
    if args.list_skipped:
        print(f"\nLeft out for element types ({len(sel.skipped_types)}):")
        for n in sorted(sel.skipped_types):
            print(f"  {n}: {sel.skipped_types[n]}")
    timed = sorted(((r["seconds"], n) for n, r in results.items() if "seconds" in r), reverse=True)
    if args.slowest and timed:
        print("\nSlowest: " + ", ".join(f"{n} {s:.2f}s" for s, n in timed[: args.slowest]))

    print(f"\nselected: {n_sel}  passed: {len(passed)}  failed: {len(failed)}  excluded: {len(excluded)}")
    print(f"pass rate: {pct:.1f}% of selected ({len(passed)}/{n_sel}); {pct_ran:.1f}% of the {ran} run"
          f"   [collect {t_collect:.1f}s, run {t_run:.1f}s]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"selected": n_sel, "passed": len(passed), "failed": len(failed), "excluded": len(excluded),
                       "pass_rate": pct, "cases": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    np.set_printoptions(threshold=20)
    sys.exit(main())
