"""The fenced shell blocks of README.md and docs/*.md, with the ``docs-test`` marker that says how each is tested.

Every ```` ```bash ```` block of the user-facing docs is preceded (on the nearest non-blank line above the fence)
by one HTML comment, invisible on the rendered page::

    <!-- docs-test: road NAME -->              run by tests/e2e/test_docs_roads.py as part of the road NAME: the
                                               blocks of one road, in document order, make one bash script
    <!-- docs-test: run by FILE [FILE ...] --> run by those test files (each nnspine command's subcommand and
                                               options must appear in one of them; other commands verbatim)
    <!-- docs-test: run by FILE ... with SET ... -->
                                               the same, after the named substitution sets of SUBSTITUTIONS
                                               (e.g. the GPU-sized trainer → its _debug variant on the CPU);
                                               each nnUNetv2_* command must then be one that a named file runs
                                               (see nnunet_commands): same positionals, every option with its
                                               value, in any order, the test adding at most EXTRA_OPTIONS
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
             ("cord.md", "lesions.md", "nnunet-environment.md", "phantoms.md", "qc.md", "segment.md", "spine.md"))]  # fmt: skip

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

    @property
    def files(self) -> list[str]:
        """The test files of a ``run by`` marker."""
        return self.arg.split(" with ")[0].split() if self.kind == "run by" else []

    @property
    def substitution_sets(self) -> list[str]:
        """The substitution sets named after ``with`` in a ``run by`` marker (names of SUBSTITUTIONS)."""
        return self.arg.split(" with ", 1)[1].split() if self.kind == "run by" and " with " in self.arg else []


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

    from nnunet_spine.cli import build_parser
    from nnunet_spine.cli.common import existing_path

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


# ---- "run by FILE ... with SET ...": stated substitutions, and the nnU-Net commands a test file runs -------------

#: The user's dataset id in the docs → (the id of the phantom dataset the e2e test trains, the fold it trains, which
#: test). Fold ``all`` where the e2e test trains on all cases: its phantom datasets (1-2 subjects) are too small for
#: nnU-Net's five folds.
PHANTOM_DATASETS = {
    "101": ("101", "all", "tests/e2e/readme_walkthrough.sh (SoftCord, one training subject)"),
    "201": ("981", "all", "tests/e2e/test_lesion_training.py (LesionE2E, two subjects)"),
    "501": ("993", "all", "tests/e2e/test_spine_pipeline.py (PipelineSpine, two subjects)"),
    "510": ("993", "all", "tests/e2e/test_spine_pipeline.py (PipelineSpine, two subjects)"),
    "502": ("995", "0", "tests/e2e/test_vertebra_cutout_training.py (CutoutTrainer, fold 0 as in the docs)"),
}

_ENV = r"(?:\w+=\S+ )*"  # leading VAR=value assignments of a command line
_OUR_TRAINERS = r"nnUNetTrainer(?:SoftSeg|SoftSegMSE|SoftSegAdapWing|SoftSegDA5|Lesion|SpineSemantic|VertebraCutout)"

#: Named substitution sets for ``<!-- docs-test: run by FILE ... with SET ... -->``: (regular expression,
#: replacement, why), applied with ``re.sub`` in this order to each command line of the block (continuations joined)
#: before it is looked up in the test files. Keep them few: each says how a GPU-sized doc command becomes the one a
#: CPU test runs.
SUBSTITUTIONS: dict[str, list[tuple[str, str, str]]] = {
    "short-trainer": [
        (rf"(?<![\w-])({_OUR_TRAINERS})(?=__|\s|$)", r"\1_debug",
         "the trainer's _debug variant (a few iterations) instead of the GPU-sized one, in -tr and model folders"),
        (rf"^({_ENV}nnUNetv2_(?:train|predict) .*)$", r"\1 -device cpu", "no GPU here: nnU-Net runs on the CPU"),
    ],
    "cpu-plans": [
        (rf"^({_ENV}nnUNetv2_plan_and_preprocess .*)$", r"\1 -gpu_memory_target 1 -overwrite_plans_name nnUNetPlansCPU",
         "small plans for a CPU (patch size for 1 GB), saved as nnUNetPlansCPU"),
        (rf"^({_ENV}nnUNetv2_(?:train|predict) .*)$", r"\1 -p nnUNetPlansCPU", "train and predict with those plans"),
        (r"^(nnspine preprocess-soft .*)$", r"\1 -p nnUNetPlansCPU", "the soft targets of those plans"),
        (r"__nnUNetPlans__", "__nnUNetPlansCPU__", "results folders named after those plans"),
    ],
    "phantom-datasets": [
        rule
        for doc_id, (test_id, fold, test) in PHANTOM_DATASETS.items()
        for rule in (
            (rf"^({_ENV}nnUNetv2_train) {doc_id} (\S+) 0(?= |$)", rf"\g<1> {test_id} \g<2> {fold}",
             f"dataset {doc_id} fold 0 → {test}'s dataset {test_id}, fold {fold}"),
            (rf"^((?=.* -d {doc_id}(?: |$)).*? -f )0(?= |$)", rf"\g<1>{fold}", f"predict: fold 0 → {fold}, as trained"),
            (rf"(?<= -d ){doc_id}(?= |$)", test_id, f"-d {doc_id} → -d {test_id}"),
            (rf"(?<= --dataset ){doc_id}(?= |$)", test_id, f"nnspine's --dataset {doc_id} → {test_id}"),
        )
    ],
}  # fmt: skip

#: Options a test's nnU-Net command may have beyond the doc's: process counts and progress bars, which change
#: neither what is computed nor where it is written.
EXTRA_OPTIONS = {"-np", "-npfp", "-npp", "-nps", "--no_pbar"}
#: Options whose values are the user's folders (nnUNetv2_predict's input and output): never compared, as the paths
#: of nnspine lines are not.
USER_FOLDER_OPTIONS = {"-i", "-o"}
#: What stands for the value of a USER_FOLDER_OPTIONS option, on both sides.
FOLDER = "<folder>"
#: What stands for an element of a test's command that is not a literal or a module constant (a tmp_path folder).
OTHER = "<expression>"


def substitute(line: str, sets: list[str]) -> str:
    """A command line after the named substitution sets (unknown names raise KeyError)."""
    for name in sets:
        for pattern, replacement, _why in SUBSTITUTIONS[name]:
            line = re.sub(pattern, replacement, line)
    return line


def nnunet_commands(path: Path) -> list[list[str]]:
    """The ``nnUNetv2_*`` commands a test file runs, as argument vectors.

    A shell script: its command lines that call ``nnUNetv2_*`` (leading ``VAR=value`` dropped). A Python file: every
    list literal whose first element is ``console_script("nnUNetv2_…")`` (or that string), i.e. the argument list
    handed to ``subprocess``; its elements are string and number literals, the module's constants (``TRAINER``,
    ``PLANS``, ``str(DATASET_ID)``, f-strings of them) and, for any other expression (a ``tmp_path`` folder),
    :data:`OTHER`."""
    import ast

    text = path.read_text()
    if path.suffix != ".py":
        out = []
        for line in commands(text):
            tokens = shlex.split(line)
            while tokens and re.match(r"^\w+=", tokens[0]):
                tokens.pop(0)
            if tokens and tokens[0].startswith("nnUNetv2_"):
                out.append(tokens)
        return out

    constants: dict[str, str] = {}

    def value(node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
            return str(node.value)
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "console_script"):
            return value(node.args[0]) if len(node.args) == 1 and not node.keywords else None
        if isinstance(node, ast.JoinedStr):
            parts = [value(v.value) if isinstance(v, ast.FormattedValue) else value(v) for v in node.values]
            return None if None in parts else "".join(parts)
        return None

    tree = ast.parse(text)
    for stmt in tree.body:  # module-level constants, in order
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, val = stmt.targets[0], stmt.value
            pairs = [(target, val)]
            if isinstance(target, ast.Tuple) and isinstance(val, ast.Tuple) and len(target.elts) == len(val.elts):
                pairs = list(zip(target.elts, val.elts))
            for t, v in pairs:
                if isinstance(t, ast.Name) and (resolved := value(v)) is not None:
                    constants[t.id] = resolved
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and node.elts and (value(node.elts[0]) or "").startswith("nnUNetv2_"):
            out.append([OTHER if (v := value(e)) is None else v for e in node.elts])
    return out


def nnunet_parts(tokens: list[str]) -> tuple[str, list[str], dict[str, tuple[str, ...]]]:
    """(program, positionals, {option: its values}) of an nnU-Net command; the values of
    :data:`USER_FOLDER_OPTIONS` are :data:`FOLDER`."""
    positionals: list[str] = []
    options: dict[str, tuple[str, ...]] = {}
    key = None
    for tok in tokens[1:]:
        if re.match(r"^--?[A-Za-z]", tok):
            key = tok
            options[key] = ()
        elif key is None:
            positionals.append(tok)
        else:
            options[key] += (tok,)
    for k in USER_FOLDER_OPTIONS & set(options):
        options[k] = (FOLDER,)
    return tokens[0], positionals, options


def nnunet_command_is_run(line: str, runs: list[list[str]]) -> bool:
    """Whether an ``nnUNetv2_*`` command line (after substitution) is one of ``runs``: the same program and
    positionals, every option with the same values (any order), and no further option but :data:`EXTRA_OPTIONS`."""
    tokens = shlex.split(line)
    while tokens and re.match(r"^\w+=", tokens[0]):
        tokens.pop(0)
    program, positionals, options = nnunet_parts(tokens)
    for run in runs:
        p, pos, opts = nnunet_parts(run)
        if (p, pos) == (program, positionals) and all(opts.get(k) == v for k, v in options.items()):
            if set(opts) - set(options) <= EXTRA_OPTIONS:
                return True
    return False
