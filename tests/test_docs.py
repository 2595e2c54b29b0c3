"""The manual in docs/ stays true to the code: the generated CLI reference is current, every code name quoted in
the method pages exists, and every local link resolves."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_cli_reference_is_generated_from_the_current_parsers():
    from nnunet_spine.cli.reference import reference_markdown

    current = (DOCS / "cli.md").read_text()
    assert current == reference_markdown(), (
        "docs/cli.md is stale: run `python -m nnunet_spine.cli.reference --docs docs`"
    )


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


#: `package.module.NAME` quoted in the docs (a constant, function or class of ours).
_QUALIFIED = re.compile(r"`(nnunet_spine(?:\.\w+)+)`")


def _resolve(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_names_quoted_in_the_docs_exist(doc):
    missing = [name for name in sorted(set(_QUALIFIED.findall(doc.read_text()))) if not _resolve(name)]
    assert missing == [], f"{doc.relative_to(ROOT)} quotes names the code no longer has: {missing}"


@pytest.mark.parametrize("doc", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_resolve(doc):
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (doc.parent / target).exists():
            broken.append(target)
    assert broken == [], f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_constants_table_is_generated_from_the_code():
    from nnunet_spine.cli.reference import constants_markdown

    pages = [p for p in (DOCS / "methods").glob("*.md") if p.name != "constants.md"]
    assert (DOCS / "methods" / "constants.md").read_text() == constants_markdown(pages), (
        "docs/methods/constants.md is stale: run `python -m nnunet_spine.cli.reference --docs docs`"
    )


def test_label_crosswalk_in_spine_md_is_generated_from_the_code():
    """docs/spine.md's cross-walk table (SCT level, SCT disc value, SPINEPS/VerSe id, TotalSpineSeg id) is
    :func:`nnunet_spine.core.labels.crosswalk_markdown` between its markers."""
    from nnunet_spine.core.labels import crosswalk_markdown

    page = (DOCS / "spine.md").read_text()
    found = re.search(r"<!-- crosswalk:begin -->\n(.*?)<!-- crosswalk:end -->", page, re.S)
    assert found, "docs/spine.md: no <!-- crosswalk:begin --> ... <!-- crosswalk:end --> section"
    assert found.group(1) == crosswalk_markdown(), (
        "docs/spine.md's cross-walk is stale: paste nnunet_spine.core.labels.crosswalk_markdown() between its markers"
    )


def test_readme_is_an_entrance_not_a_manual():
    """The README stays short (issue: ≤ 250 lines) and points into docs/ for each capability."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "README.md grew past 250 lines: move the detail into docs/"
    for page in ("docs/cord.md", "docs/lesions.md", "docs/spine.md", "docs/cli.md"):
        assert f"({page})" in text, f"README.md does not link {page}"
