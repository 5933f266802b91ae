"""Generated docs stay current, and public names are exported."""

from __future__ import annotations

from pathlib import Path

import openqnn
from openqnn.docs import cli_reference

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    assert (ROOT / "docs" / "cli.md").read_text().strip() == cli_reference().strip(), (
        "docs/cli.md is stale: run python -m openqnn.docs cli > docs/cli.md")


def test_public_names_are_in_all() -> None:
    public = {n for n in dir(openqnn) if not n.startswith("_") and not isinstance(getattr(openqnn, n), type(openqnn))}
    assert public <= set(openqnn.__all__), sorted(public - set(openqnn.__all__))


def test_ops_reference_is_current() -> None:
    from openqnn.docs import ops_markdown

    assert (ROOT / "docs" / "ops.md").read_text().strip() == ops_markdown().strip(), (
        "docs/ops.md is stale: run python -m openqnn.docs ops > docs/ops.md")


def test_tflite_converter_page_is_current() -> None:
    from openqnn.cli.tflite_converter import build_parser
    from openqnn.docs import flag_table
    from openqnn.frontends.tflite import supported_ops

    page = (ROOT / "docs" / "converters" / "tflite.md").read_text()
    assert "\n".join(flag_table("qnn-tflite-converter", build_parser())) in page, (
        "docs/converters/tflite.md: its flag table is stale (openqnn.docs.flag_table)")
    assert all(f"`{op}`" in page for op in supported_ops()), "docs/converters/tflite.md: the op list is stale"
