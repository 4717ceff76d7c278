"""`.ci/run`: the default suite, then the slow tests, each part timed; exit code 5 (no test collected) passes
only for the slow part."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FAKE_TEST_COMMAND = """#!/usr/bin/env bash
if [ "${2:-}" = "-m" ]; then exit "$SLOW_EXIT"; fi
exit "$DEFAULT_EXIT"
"""


@pytest.mark.parametrize("default,slow,passes", [(0, 0, True), (0, 5, True), (5, 0, False), (1, 0, False),
                                                 (0, 1, False)])
def test_ci_runs_both_parts_and_fails_when_either_fails(tmp_path, default, slow, passes):
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", checkout / ".ci" / "run")
    (checkout / "reproduce.sh").write_text(FAKE_TEST_COMMAND)
    (checkout / "reproduce.sh").chmod(0o755)
    result = subprocess.run(["bash", str(checkout / ".ci" / "run")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "DEFAULT_EXIT": str(default), "SLOW_EXIT": str(slow)})
    assert (result.returncode == 0) == passes
    assert re.search(rf"^ci: default suite: \d+ s \(pytest exit code {default}\)$", result.stdout, re.M)
    assert re.search(rf"^ci: slow tests \(-m slow\): \d+ s \(pytest exit code {slow}\)$", result.stdout, re.M)
