"""Every fenced shell block of README.md and docs/*.md says how it is tested, and every ``nnspine`` line in them
parses with the real argument parser (a renamed or removed option fails here, run or not).

Markers and roads: see :mod:`doc_blocks`. The roads themselves run in ``tests/e2e/test_docs_roads.py`` (slow).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_blocks import DOC_FILES, REPO, all_blocks, blocks, commands, nnspine_argvs, parse_marker, parse_only_parser  # noqa: E402

BLOCKS = all_blocks()
IDS = [b.where for b in BLOCKS]


def test_the_block_reader_finds_markers_joins_continuations_and_drops_comments(tmp_path, monkeypatch):
    import doc_blocks

    page = tmp_path / "page.md"
    page.write_text(
        "text\n<!-- docs-test: road demo -->\n\n```bash\n# comment\nnnspine csa -i a.nii.gz \\\n   --perslice -o x.csv"
        "  # trailing\n```\n```bash\nls\n```\n<!-- docs-test: not run: GPU-only (--device cuda) -->\n```bash\n"
        'eval "$(nnspine trainers --export)"\nnnspine segment cord -i x --model <cord model> --device cuda\n```\n'
    )
    monkeypatch.setattr(doc_blocks, "REPO", tmp_path)
    found = blocks("page.md")
    assert [(b.line, b.kind, b.arg) for b in found] == [
        (4, "road", "demo"),
        (9, None, ""),
        (13, "not run", "GPU-only (--device cuda)"),
    ]
    assert found[0].commands == ["nnspine csa -i a.nii.gz --perslice -o x.csv"]
    assert nnspine_argvs(found[2]) == [
        ["trainers", "--export"],
        ["segment", "cord", "-i", "x", "--model", "/tmp/docs-test-dummy", "--device", "cuda"],
    ]
    assert parse_marker("<!-- docs-test: run later -->") == ("invalid", "run later")
    assert commands("a \\\n  b # c\n") == ["a b"]


def test_the_docs_have_shell_blocks():
    assert {b.doc for b in BLOCKS} == set(DOC_FILES)
    assert len(BLOCKS) >= 35


@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_every_block_says_how_it_is_tested(block):
    assert block.kind in ("road", "run by", "not run"), (
        f"{block.where}: the ```bash block needs a marker on the line above it: <!-- docs-test: road NAME -->, "
        f"<!-- docs-test: run by tests/FILE.py -->, or <!-- docs-test: not run: REASON --> "
        f"(found {block.kind!r} {block.arg!r})"
    )
    if block.kind == "not run":
        assert len(block.arg) >= 10, f"{block.where}: say why the block cannot run here"
    if block.kind == "road":
        assert re.fullmatch(r"[a-z0-9-]+", block.arg), f"{block.where}: road names are lower-case words with -"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "run by"], ids=lambda b: b.where)
def test_blocks_run_by_another_test_are_in_that_test(block):
    """Each nnspine command's subcommand words and options appear in one of the named test files (those call the
    console script with their own paths); the other commands appear verbatim."""
    texts = []
    for name in block.arg.split():
        path = REPO / name
        assert path.is_file(), f"{block.where}: {name} does not exist"
        texts.append(path.read_text())
    for line in block.commands:
        if re.search(r"(?<![\w/.-])nnspine\s", line):
            argv = nnspine_argvs(type(block)(block.doc, block.line, line, block.kind, block.arg))[0]
            words = [a for i, a in enumerate(argv) if a.startswith("-") or all(not x.startswith("-") for x in argv[:i])]
            words = [w for w in words if not w.startswith("/tmp/")]
            assert any(all(w in t for w in words) for t in texts), (
                f"{block.where}: none of {block.arg} runs `nnspine {' '.join(words)}`"
            )
        else:
            assert any(line in " ".join(commands(t)) for t in texts), f"{block.where}: {block.arg} lacks `{line}`"


@pytest.mark.parametrize("block", BLOCKS, ids=IDS)
def test_nnspine_lines_parse_with_the_real_parser(block):
    for argv in nnspine_argvs(block):
        parser = parse_only_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{block.where}: `nnspine {' '.join(argv)}` does not parse (exit {exc.code})")
        assert getattr(args, "func", None), f"{block.where}: `nnspine {' '.join(argv)}` names no command"


def test_roads_exist_and_the_road_test_knows_them():
    from doc_blocks import road_names

    names = road_names()
    assert names, "no block is marked as part of a road"
    road_tests = [(REPO / "tests" / "e2e" / f).read_text() for f in ("test_docs_roads.py", "test_slurm.py")]
    for name in names:
        assert any(f'"{name}"' in t for t in road_tests), (
            f"road {name!r} has no entry in tests/e2e/test_docs_roads.py (or test_slurm.py)"
        )


def test_the_parse_check_catches_a_renamed_option():
    parser = parse_only_parser()
    assert parser.parse_args(["csa", "-i", "absent.nii.gz", "--perslice", "-o", "x.csv"]).func
    with pytest.raises(SystemExit):
        parse_only_parser().parse_args(["csa", "-i", "absent.nii.gz", "--per-slice", "-o", "x.csv"])
    with pytest.raises(SystemExit):  # value checks stay real
        parse_only_parser().parse_args(["segment", "cord", "-i", "x", "-o", "y", "--model", "m", "--part-id", "k"])
