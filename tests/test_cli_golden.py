"""Every CLI output format stays as it was: golden text captured from main before the issue-11 restructure.

A deliberate change of an output (a new column, a better search) recaptures with
``python tests/cli_golden.py NAME`` and shows the diff in review.
"""

import pytest

from cli_golden import CASES, GOLDEN, run_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_output_is_unchanged(name, tmp_path):
    rc, text = run_case(name, tmp_path)
    assert rc == 0
    assert text + "\n" == (GOLDEN / f"{name}.txt").read_text()
