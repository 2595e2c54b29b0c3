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
from doc_blocks import (  # noqa: E402
    DOC_FILES,
    REPO,
    SUBSTITUTIONS,
    all_blocks,
    blocks,
    commands,
    nnspine_argvs,
    nnunet_command_is_run,
    nnunet_commands,
    parse_marker,
    parse_only_parser,
    substitute,
)

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
    marker = parse_marker("<!-- docs-test: run by tests/a.py tests/b.sh with short-trainer cpu-plans -->")
    assert marker == ("run by", "tests/a.py tests/b.sh with short-trainer cpu-plans")
    run_by = type(found[0])("page.md", 1, "", *marker)
    assert run_by.files == ["tests/a.py", "tests/b.sh"] and run_by.substitution_sets == ["short-trainer", "cpu-plans"]
    assert type(found[0])("page.md", 1, "", "run by", "tests/a.py").substitution_sets == []
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


def run_by_problems(block) -> list[str]:
    """What a ``run by`` block's named test files do not run: each command line after the marker's substitution
    sets must be there. An nnspine command: its subcommand words and options appear in one file (the files call the
    console script with their own paths). An nnUNetv2_* command: one command of one file (see
    doc_blocks.nnunet_commands) has its program, positionals and every option with its value, any order, and at most
    doc_blocks.EXTRA_OPTIONS beside them; a leading VAR=value must name a variable the file sets. Any other line
    appears verbatim."""
    problems = []
    paths = [REPO / name for name in block.files]
    missing = [p for p in paths if not p.is_file()]
    if missing or not paths:
        return [f"{block.where}: no such test file {', '.join(str(p) for p in missing) or '(none named)'}"]
    unknown = [s for s in block.substitution_sets if s not in SUBSTITUTIONS]
    if unknown:
        return [f"{block.where}: unknown substitution set {unknown} (known: {sorted(SUBSTITUTIONS)})"]
    texts = [p.read_text() for p in paths]
    runs = [c for p in paths for c in nnunet_commands(p)]
    for original in block.commands:
        line = substitute(original, block.substitution_sets)
        if re.search(r"(?<![\w/.-])nnspine\s", line):
            argv = nnspine_argvs(type(block)(block.doc, block.line, line, block.kind, block.arg))[0]
            words = [a for i, a in enumerate(argv) if a.startswith("-") or all(not x.startswith("-") for x in argv[:i])]
            words = [w for w in words if not w.startswith("/tmp/")]
            if not any(all(w in t for w in words) for t in texts):
                problems.append(f"{block.where}: none of {block.files} runs `nnspine {' '.join(words)}`")
        elif re.match(r"^(?:\w+=\S+ )*nnUNetv2_", line):
            env = re.findall(r"(\w+)=\S+ ", line.split("nnUNetv2_")[0])
            if not nnunet_command_is_run(line, runs) or not all(any(v in t for t in texts) for v in env):
                problems.append(
                    f"{block.where}: none of {block.files} runs `{original}`"
                    + (f", which is `{line}` after {block.substitution_sets}" if line != original else "")
                    + "; they run:\n  "
                    + "\n  ".join(" ".join(c) for c in runs)
                )
        elif not any(line in " ".join(commands(t)) for t in texts):
            problems.append(f"{block.where}: {block.files} lack `{line}`")
    return problems


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "run by"], ids=lambda b: b.where)
def test_blocks_run_by_another_test_are_in_that_test(block):
    """Each command line, after the marker's substitutions, is run by one of the named test files (run_by_problems)."""
    problems = run_by_problems(block)
    assert not problems, "\n".join(problems)


def test_the_substitution_sets_say_why():
    for name, rules in SUBSTITUTIONS.items():
        assert re.fullmatch(r"[a-z-]+", name) and rules, name
        for pattern, _replacement, why in rules:
            re.compile(pattern)
            assert len(why) >= 10, (name, pattern)


def test_a_training_block_is_checked_option_by_option_after_its_substitutions(tmp_path):
    """The stated substitutions turn the docs' GPU-sized commands into the e2e tests' ones; a doc option the test
    does not run (a renamed one, another value, a missing flag) or an option the test adds fails the block."""
    from doc_blocks import Block, nnunet_commands

    sets = ["short-trainer", "cpu-plans", "phantom-datasets"]
    assert substitute("nnUNetv2_train 201 3d_fullres 0 -tr nnUNetTrainerLesion", sets) == (
        "nnUNetv2_train 981 3d_fullres all -tr nnUNetTrainerLesion_debug -device cpu -p nnUNetPlansCPU"
    )
    assert substitute("nnUNetv2_predict -i x -o y -d 502 -c 3d_fullres -f 0 -tr nnUNetTrainerVertebraCutout", sets) == (
        "nnUNetv2_predict -i x -o y -d 995 -c 3d_fullres -f 0 -tr nnUNetTrainerVertebraCutout_debug -device cpu"
        " -p nnUNetPlansCPU"
    )
    test = tmp_path / "test_x.py"
    test.write_text(
        'import subprocess\nTRAIN_ID, PLANS = 981, "nnUNetPlansCPU"\nTRAINER = f"nnUNetTrainer{\'Lesion\'}_debug"\n'
        "def test(tmp_path):\n    env = {'nnUNet_n_proc_DA': '1'}\n"
        '    subprocess.run([console_script("nnUNetv2_train"), str(TRAIN_ID), "3d_fullres", "all", "-tr", TRAINER,\n'
        '                    "-p", PLANS, "-device", "cpu"])\n'
        '    subprocess.run([console_script("nnUNetv2_predict"), "-i", str(tmp_path / "a"), "-o", str(tmp_path),\n'
        '                    "-d", str(TRAIN_ID), "-f", "all", "-tr", TRAINER, "-p", PLANS, "-device", "cpu",\n'
        '                    "-npp", "1"])\n'
    )
    assert nnunet_commands(test)[0] == [
        "nnUNetv2_train", "981", "3d_fullres", "all", "-tr", "nnUNetTrainerLesion_debug", "-p", "nnUNetPlansCPU",
        "-device", "cpu",
    ]  # fmt: skip
    arg = f"{test} with {' '.join(sets)}"

    def problems(text: str) -> list[str]:
        return run_by_problems(Block("page.md", 1, text, "run by", arg))

    assert problems("nnUNetv2_train 201 3d_fullres 0 -tr nnUNetTrainerLesion\n") == []
    assert problems("nnUNet_n_proc_DA=1 nnUNetv2_predict -i in -o out -d 201 -f 0 -tr nnUNetTrainerLesion\n") == []
    for broken in (
        "nnUNetv2_train 201 3d_fullres 0 -tr nnUNetTrainerLesion --c\n",  # an option the test does not give
        "nnUNetv2_train 201 2d 0 -tr nnUNetTrainerLesion\n",  # another positional
        "nnUNetv2_train 201 3d_fullres 1 -tr nnUNetTrainerLesion\n",  # another fold
        "nnUNetv2_train 201 3d_fullres 0 -tr nnUNetTrainerSoftSeg\n",  # another trainer
        "nnUNetv2_predict -i in -o out -d 201 -tr nnUNetTrainerLesion\n",  # the test adds -f
        "nnUNet_n_proc_DEA=1 nnUNetv2_predict -i in -o out -d 201 -f 0 -tr nnUNetTrainerLesion\n",  # a variable
    ):
        assert problems(broken), broken
    assert problems("nnUNetv2_train 201 3d_fullres 0 -tr nnUNetTrainerLesion\n".replace("201", "202"))
    assert "unknown substitution set" in run_by_problems(Block("p.md", 1, "ls\n", "run by", f"{test} with gpu"))[0]


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
