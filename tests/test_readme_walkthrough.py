"""The README's soft-cord walk-through is the one the slow pipeline test runs (``tests/e2e/readme_walkthrough.sh``).

Every command of the script (comments and blank lines aside; a line continued with a backslash counts as one)
must appear in README.md in the same order, with the same flags. Change both together.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "e2e" / "readme_walkthrough.sh"


def commands(text: str) -> list[str]:
    """Shell command lines of a text: continuations joined, comments and blank lines dropped, spaces collapsed."""
    text = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in text.splitlines():
        line = re.sub(r"\s+", " ", line.split(" #")[0] if not line.lstrip().startswith("#") else "").strip()
        if line:
            out.append(line)
    return out


def test_commands_helper_joins_continuations_and_drops_comments():
    text = "# a comment\nnnspine csa -i a.nii.gz \\\n    --perslice   -o x.csv  # trailing\n\nls\n"
    assert commands(text) == ["nnspine csa -i a.nii.gz --perslice -o x.csv", "ls"]


def test_readme_shows_the_walkthrough_the_pipeline_test_runs():
    script = commands(SCRIPT.read_text())
    readme = commands((REPO / "README.md").read_text())
    assert len(script) >= 10
    position = 0
    for command in script:
        assert command in readme[position:], (
            f"README.md lacks (after the previous walk-through command) the line the pipeline test runs:\n  {command}\n"
            f"Keep README.md and {SCRIPT.relative_to(REPO)} in step."
        )
        position = readme.index(command, position) + 1
