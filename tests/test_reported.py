"""Regression check of reproduced paper-profile results against the reported numbers (marker `reported`):
`./reproduce.sh test -m reported` with AL_RESULTS_DIR pointing at a results folder (default results/)."""
import os
from pathlib import Path

import pytest

from core.tools.report import load_rows
from core.tools.reported import budget, compare

RESULTS = Path(os.environ.get("AL_RESULTS_DIR", Path(__file__).resolve().parent.parent / "results"))


@pytest.mark.reported
def test_paper_profile_results_are_within_the_reported_tolerance():
    if not RESULTS.is_dir() or not list(RESULTS.rglob("results.jsonl")):
        pytest.skip(f"no results below {RESULTS}")
    comparisons, _ = compare(load_rows(RESULTS))
    if not comparisons:
        pytest.skip("no paper-profile result matches a reported number")
    failures = [c for c in comparisons if c.within is False]
    assert not failures, "\n".join(f"{c.reported.experiment}/{c.reported.method} at {budget(c.reported)}: "
                                   f"{c.mean:.2f} vs reported {c.reported.value:.2f}" for c in failures)
