"""The fenced shell blocks of README.md and docs/*.md, with the ``docs-test`` marker that says how each is tested.

Every ```` ```bash ```` block of the user-facing docs is preceded (on the nearest non-blank line above the fence)
by one HTML comment, invisible on the rendered page::

    <!-- docs-test: road NAME -->              run by tests/e2e/test_docs_roads.py as part of the road NAME: the
                                               blocks of one road, in document order, make one bash script
    <!-- docs-test: run by FILE [FILE ...] --> run by those test files (each nnspine command's subcommand and
                                               options must appear in one of them)
    <!-- docs-test: not run: REASON -->        cannot run on this CPU machine (GPU-only, needs the user's data …);
                                               its nnspine lines are still parsed by the real argument parser

Import from test modules with ``from doc_blocks import ...`` (``tests/`` is on ``sys.path`` for modules in that
folder; modules in sub-folders add it themselves).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The pages whose shell blocks a user runs (docs/cli.md is generated help text; docs/development and
#: docs/methods hold no runnable blocks).
DOC_FILES = ["README.md", *(f"docs/{name}" for name in
             ("cord.md", "lesions.md", "nnunet-environment.md", "phantoms.md", "segment.md", "spine.md"))]  # fmt: skip

MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass
class Block:
    doc: str  #: path relative to the repository
    line: int  #: 1-based line of the opening fence
    text: str  #: the block's text, verbatim
    kind: str | None  #: "road", "run by", "not run" or None (no marker)
    arg: str  #: road name, test files, or reason

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def commands(self) -> list[str]:
        return commands(self.text)


def commands(text: str) -> list[str]:
    """Shell command lines of a text: continuations joined, comments and blank lines dropped, spaces collapsed."""
    text = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        line = re.sub(r"\s+", " ", line.split(" #")[0]).strip()
        if line:
            out.append(line)
    return out


def parse_marker(line: str) -> tuple[str, str] | None:
    m = MARKER.match(line.strip())
    if not m:
        return None
    body = m.group("body")
    for kind in ("road", "run by", "not run:"):
        if body.startswith(kind + (" " if not kind.endswith(":") else "")):
            return kind.rstrip(":"), body[len(kind) :].strip()
    return "invalid", body


def blocks(doc: str) -> list[Block]:
    """The ```bash blocks of one document (path relative to the repository)."""
    lines = (REPO / doc).read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = parse_marker(lines[k]) if k >= 0 else None
            kind, arg = marker if marker else (None, "")
            out.append(Block(doc, i + 1, "\n".join(lines[i + 1 : j]) + "\n", kind, arg))
            i = j + 1
        else:
            i += 1
    return out


def all_blocks() -> list[Block]:
    return [b for doc in DOC_FILES for b in blocks(doc)]


def road(name: str) -> list[Block]:
    """The blocks of one road, in document order (README.md first, then docs/ alphabetically)."""
    return [b for b in all_blocks() if b.kind == "road" and b.arg == name]


def road_names() -> list[str]:
    return sorted({b.arg for b in all_blocks() if b.kind == "road"})


#: What stands for a placeholder or a variable when a command is only parsed.
DUMMY = "/tmp/docs-test-dummy"
#: Variables that stand for a number where a command is only parsed.
NUMBER_VARIABLES = {"SLURM_ARRAY_TASK_ID": "0"}
_NNSPINE = re.compile(r"(?<![\w/.-])nnspine(?=\s)")


def nnspine_argvs(block: Block) -> list[list[str]]:
    """The argument vectors (after ``nnspine``) of every nnspine command of a block, placeholders such as
    ``<lesion model folder>`` and variables such as ``$nnUNet_results`` replaced by a dummy path."""
    argvs = []
    for line in block.commands:
        line = re.sub(r"<[^<>]+>", DUMMY, line)
        line = re.sub(r"\$\{?(\w+)\}?", lambda m: NUMBER_VARIABLES.get(m.group(1), DUMMY), line)
        for m in _NNSPINE.finditer(line):
            rest = line[m.end() :]
            rest = re.split(r"\s(?:&&|\|\||;|\|)\s|\)", rest)[0]  # up to the end of this command
            argvs.append(shlex.split(rest))
    return argvs


def parse_only_parser():
    """``nnspine``'s real parser, except that path options do not check that the path exists (the docs' paths are
    the user's): every other option, choice and value check is the real one."""
    import argparse
    from pathlib import Path as _Path

    from nnunet_extensions.cli import build_parser
    from nnunet_extensions.cli.common import existing_path

    parser = build_parser()
    todo = [parser]
    while todo:
        p = todo.pop()
        for action in p._actions:
            if action.type is existing_path:
                action.type = _Path
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return parser
