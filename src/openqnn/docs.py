"""Generated documentation: the op tables come from the registries, never from a hand-kept list."""

from __future__ import annotations


def ops_table(markdown: bool = False) -> str:
    """ONNX ops openqnn converts, and IR ops with their package and cpu kernel support."""
    from openqnn.backends.cpu.kernels import KERNELS
    from openqnn.frontends.onnx.registry import TRANSLATIONS
    from openqnn.ops import OPS
    from openqnn.ops.build import package_of

    onnx_ops = sorted(TRANSLATIONS)
    if not markdown:
        return ("ONNX ops: " + ", ".join(onnx_ops) + "\n\nIR ops: "
                + ", ".join(f"{n}{'' if n in KERNELS else ' (no cpu kernel)'}" for n in sorted(OPS)))
    lines = ["| IR op | package | cpu |", "| --- | --- | --- |"]
    lines += [f"| {n} | {package_of(n)} | {'yes' if n in KERNELS else 'no'} |" for n in sorted(OPS)]
    return "\n".join(lines)


def cli_reference() -> str:
    """docs/cli.md: every tool's flags, straight from its argparse parser."""
    import argparse

    from openqnn.cli import main as openqnn_main
    from openqnn.cli import net_run, onnx_converter

    parsers: list[tuple[str, argparse.ArgumentParser]] = [
        ("qnn-onnx-converter", onnx_converter.build_parser()),
        ("qnn-net-run", net_run.build_parser()),
        ("openqnn", openqnn_main.build_parser()),
    ]
    out = ["# Command-line reference", "",
           "Generated from the tools' parsers by `python -m openqnn.docs cli > docs/cli.md`; "
           "a test keeps it current.", ""]
    for name, parser in parsers:
        out += [f"## {name}", "", parser.description or "", "", "| flag | help |", "| --- | --- |"]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for choice, sub in action.choices.items():
                    out.append(f"| `{name} {choice}` | {sub.description or _sub_help(action, choice)} |")
                continue
            flags = ", ".join(f"`{f}`" for f in action.option_strings) or f"`{action.dest}`"
            if action.metavar and action.option_strings:
                meta = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
                flags += f" {meta}"
            help_text = (action.help or "").replace("|", "\\|")
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                help_text += f" (one of: {', '.join(map(str, action.choices))})"
            if action.required:
                help_text += " **required**"
            out.append(f"| {flags} | {help_text} |")
        out.append("")
    return "\n".join(out)


def _sub_help(action, choice: str) -> str:
    for a in action._choices_actions:
        if a.dest == choice:
            return a.help or ""
    return ""


if __name__ == "__main__":
    import sys

    what = sys.argv[1] if len(sys.argv) > 1 else "cli"
    print(cli_reference() if what == "cli" else ops_table(markdown=True))
