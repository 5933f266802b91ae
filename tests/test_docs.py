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


def test_converter_pages_are_current() -> None:
    from openqnn.docs import CONVERTERS, converter_page, converters_index

    assert (ROOT / "docs" / "converters" / "README.md").read_text().strip() == converters_index().strip(), (
        "docs/converters/README.md is stale: run python -m openqnn.docs converters > docs/converters/README.md")
    for tool, (_, frontend) in CONVERTERS.items():
        page = ROOT / "docs" / "converters" / f"{frontend}.md"
        assert page.read_text().strip() == converter_page(tool).strip(), (
            f"{page} is stale: run python -m openqnn.docs converter {frontend} > docs/converters/{frontend}.md")
