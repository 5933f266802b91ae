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
