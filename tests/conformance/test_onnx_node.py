"""ONNX's node test cases (those whose ops all lie in openqnn's inference op set) through openqnn.

One test per case, named after it: ``pytest tests/conformance -k test_relu``. Cases listed in
``excludes.py`` are skipped with their reason. ``python -m tests.conformance.report`` runs the same
cases and prints the pass rate and the failures grouped by op.
"""

from __future__ import annotations

import logging

import pytest

from tests.conformance.excludes import EXCLUDES
from tests.conformance.harness import case_names, get_case, quiet_logs, run_case

CASES = case_names()


def test_selection_is_not_empty():
    assert len(CASES) > 500


def test_excludes_name_selected_cases_with_reasons():
    stale = sorted(set(EXCLUDES) - set(CASES))
    assert not stale, f"excludes.py names cases that are not selected: {stale}"
    assert all(isinstance(r, str) and r.strip() and "\n" not in r for r in EXCLUDES.values())


@pytest.mark.parametrize("name", CASES)
def test_onnx_node(name: str) -> None:
    if name in EXCLUDES:
        pytest.skip(EXCLUDES[name])
    logger = logging.getLogger("openqnn")
    level = logger.level
    quiet_logs()
    try:
        run_case(get_case(name))
    finally:
        logger.setLevel(level)  # later tests in this process assert on openqnn's warnings
