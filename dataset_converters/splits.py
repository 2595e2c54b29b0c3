"""Cross-validation folds grouped by subject, written as nnU-Net's ``splits_final.json`` in the raw dataset.

nnU-Net makes a random 5-fold split of the *cases* when it first trains a dataset
(``nnUNetTrainer.do_split``), so the other contrasts, sessions or shifted cutout copies of a validation subject
land in training and the validation scores (and ``checkpoint_best``) are optimistic. Every converter therefore
writes ``splits_final.json`` into the raw dataset folder, with all cases of one subject in the same fold.
nnU-Net 2.8's experiment planner copies a raw ``splits_final.json`` to ``nnUNet_preprocessed/DatasetXXX`` when it
plans (``ExperimentPlanner.__init__`` → ``_maybe_copy_splits_file`` in
``nnunetv2/experiment_planning/experiment_planners/default_experiment_planner.py``; an existing preprocessed
split is checked against it instead), and ``do_split`` then uses that file.

Folds are deterministic and depend only on the subjects, never on case names: subjects are ordered by a hash of
their identifier and each goes to the fold with the fewest cases so far. The T1w, T2w and T1w+T2w datasets of one
cohort (Hille et al.'s comparison) therefore get the same subjects in each fold. Fewer subjects than
:data:`DEFAULT_FOLDS`: one fold per subject; a single subject: no split (nnU-Net's ``all`` fold still trains).

Several subject labels can be one person (a session written into the label: ``sub-9709Ses1``, ``sub-9709Ses2``):
``group_by`` (``--group-by REGEX``) names the person by the first capture group of REGEX (the whole match without
one) searched in the subject label without ``sub-`` (:func:`subject_groups`), and folds then group persons instead of
subject labels;
:func:`grouping_warning` says when labels look like ``<id>Ses<k>`` and no grouping was given.

A ``splits_final.json`` that nnspine did not write (one whose hash is not the one recorded under
:data:`SPLITS_KEY` in ``dataset.json``) is the user's: it is never overwritten, and cases it misses or names in
vain are reported.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_spine.core.bids import session_in_label
from nnunet_spine.core.io import InputError, write_text

#: nnU-Net's split file name (raw and preprocessed dataset folders).
SPLITS_FILE = "splits_final.json"
#: Number of folds when there are enough subjects (nnU-Net's default).
DEFAULT_FOLDS = 5
#: ``dataset.json`` entry recording the split nnspine wrote (folds, grouping and the file's SHA-256).
SPLITS_KEY = "nnspine_splits"
#: Salt of the subject hash that orders subjects before they are dealt into folds.
SPLIT_SALT = "nnspine-splits-v1"


def _rank(subject: str) -> str:
    return hashlib.sha256(f"{SPLIT_SALT}:{subject}".encode()).hexdigest()


def grouped_folds(case_subjects: Mapping[str, str], n_folds: int = DEFAULT_FOLDS) -> list[dict[str, list[str]]]:
    """nnU-Net folds (``[{"train": [...], "val": [...]}, ...]``, sorted case ids) with every subject's cases in one
    validation fold; ``min(n_folds, subjects)`` folds, none for fewer than two subjects.

    ``case_subjects`` maps each case identifier to its subject. Subjects are taken in hash order and each joins
    the fold with the fewest cases so far (ties: the lower fold), so folds are balanced by cases and the same
    subjects give the same folds whatever the case names.
    """
    by_subject: dict[str, list[str]] = {}
    for case, subject in case_subjects.items():
        by_subject.setdefault(subject, []).append(case)
    k = min(n_folds, len(by_subject))
    if k < 2:
        return []
    val: list[list[str]] = [[] for _ in range(k)]
    for subject in sorted(by_subject, key=_rank):
        target = min(range(k), key=lambda i: (len(val[i]), i))
        val[target].extend(by_subject[subject])
    everything = set(case_subjects)
    return [{"train": sorted(everything - set(v)), "val": sorted(v)} for v in val]


def compile_group_by(group_by: str) -> re.Pattern:
    """``--group-by REGEX`` compiled; :class:`InputError` when it is not a regular expression."""
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise InputError(f"--group-by: {group_by!r} is not a regular expression ({exc})") from None


def subject_groups(subjects: Iterable[str], group_by: str | None) -> dict[str, str]:
    """``subject → person``: with ``group_by``, the first capture group of that regular expression (the whole match
    when it has none) searched in the subject's label without ``sub-`` (``'^([0-9]+)'`` or ``'^[0-9]+'``:
    ``sub-9709Ses1`` → ``9709``); without, each subject is its own person. :class:`InputError` naming the subject
    when the expression does not match or captures nothing."""
    subjects = list(subjects)
    if group_by is None:
        return {s: s for s in subjects}
    rx = compile_group_by(group_by)
    out = {}
    for s in subjects:
        label = s[4:] if s.startswith("sub-") else s
        m = rx.search(label)
        person = m.group(1 if rx.groups else 0) if m is not None else None
        if not person:
            raise InputError(f"--group-by: {group_by!r} finds no person in subject {s} (label {label!r})")
        out[s] = person
    return out


def grouping_warning(subjects: Iterable[str], group_by: str | None) -> str | None:
    """A warning when subject labels look like ``<id>Ses<k>`` (sessions written into labels) and no ``group_by``
    was given, so that one person's sessions may land in training and validation of one fold; else None."""
    if group_by is not None:
        return None
    persons: dict[str, list[str]] = {}
    for s in subjects:
        hit = session_in_label(s)
        if hit is not None:
            persons.setdefault(hit[0], []).append(s)
    if not persons:
        return None
    shared = [v for v in persons.values() if len(v) > 1]
    example = ", ".join(shared[0] if shared else next(iter(persons.values())))
    return (
        f"subject labels look like <id>Ses<k> ({example}): sessions of one person are split as different "
        f"subjects; group them with --group-by '^(.+?)(?:[Ss]es[0-9]+)?$' (or your own expression)"
    )


@dataclass
class SplitsReport:
    """What happened to ``splits_final.json``: ``written`` (by nnspine), ``kept`` (the user's) or ``none``."""

    status: str
    n_folds: int = 0
    n_subjects: int = 0  #: subjects, or persons with ``group_by``
    n_cases: int = 0
    problems: list[str] = field(default_factory=list)
    group_by: str | None = None  #: ``--group-by`` expression the folds were grouped with (None: by subject)

    def lines(self) -> list[str]:
        """One line (plus one per problem of a kept split)."""
        unit = "subject" if self.group_by is None else "person"
        if self.status == "written":
            how = "subject" if self.group_by is None else f"person (--group-by {self.group_by!r})"
            out = [
                f"{SPLITS_FILE}: {self.n_folds} folds grouped by {how} ({self.n_subjects} {unit}s, "
                f"{self.n_cases} cases; no {unit} in training and validation of one fold)"
            ]
            if self.n_folds < DEFAULT_FOLDS:
                out[0] += f"; only {self.n_subjects} {unit}s, so {self.n_folds} folds instead of {DEFAULT_FOLDS}"
        elif self.status == "kept":
            out = [f"{SPLITS_FILE}: kept the user's split ({self.n_folds} folds), not replaced"]
        else:
            out = [
                f"{SPLITS_FILE}: not written: {self.n_subjects} {unit}(s) cannot be cross-validated "
                f"(train with nnU-Net's fold 'all', or add subjects)"
            ]
        return out + [f"  {p}" for p in self.problems]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_nnspine_split(folder: Path) -> bool:
    """True when ``folder``'s split file is the one nnspine recorded in its ``dataset.json``."""
    try:
        recorded = json.loads((folder / "dataset.json").read_text()).get(SPLITS_KEY, {}).get("sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return recorded is not None and recorded == _sha256(folder / SPLITS_FILE)


def _user_split_problems(path: Path, cases: set[str]) -> tuple[int, list[str]]:
    """Folds of a user's split file and what it misses or names in vain (one line each)."""
    try:
        folds = json.loads(path.read_text())
        named = {c for f in folds for c in (*f["train"], *f["val"])}
        validated = {c for f in folds for c in f["val"]}
    except (OSError, ValueError, TypeError, KeyError):
        return 0, [f"{path}: not a readable nnU-Net split file (a list of {{'train': [...], 'val': [...]}})"]
    problems = []
    if cases - validated:
        missing = sorted(cases - validated)
        problems.append(f"{len(missing)} case(s) in no validation fold of the kept split, e.g. {missing[0]}")
    if named - cases:
        extra = sorted(named - cases)
        problems.append(f"{len(extra)} case(s) of the kept split are not in the dataset, e.g. {extra[0]}")
    return len(folds), problems


def write_splits(
    stage: Path, folder: Path, case_subjects: Mapping[str, str], group_by: str | None = None
) -> SplitsReport:
    """Write the subject-grouped ``splits_final.json`` into ``stage`` (the staging folder of
    :func:`nnunet_spine.dataset_converters.nnunet_raw.staged_dataset`, whose ``dataset.json`` is already written) unless
    ``folder`` (the dataset being replaced) holds a user's split, which is then kept; records the written
    file's hash in the staged ``dataset.json`` under :data:`SPLITS_KEY`. With ``group_by`` the subjects are first
    mapped to persons (:func:`subject_groups`) and folds group persons."""
    persons = subject_groups(sorted(set(case_subjects.values())), group_by)
    case_subjects = {case: persons[subject] for case, subject in case_subjects.items()}
    cases = set(case_subjects)
    n_subjects = len(set(case_subjects.values()))
    existing = folder / SPLITS_FILE
    if existing.is_file() and not is_nnspine_split(folder):
        n_folds, problems = _user_split_problems(existing, cases)
        return SplitsReport("kept", n_folds, n_subjects, len(cases), problems, group_by)
    folds = grouped_folds(case_subjects)
    if not folds:
        return SplitsReport("none", 0, n_subjects, len(cases), group_by=group_by)
    text = json.dumps(folds, indent=2) + "\n"
    write_text(stage / SPLITS_FILE, text, overwrite=True)
    dataset_json = stage / "dataset.json"
    content = json.loads(dataset_json.read_text())
    content[SPLITS_KEY] = {
        "file": SPLITS_FILE,
        "grouped_by": "subject" if group_by is None else f"person: first group of {group_by!r} in the subject label",
        "folds": len(folds),
        "subjects" if group_by is None else "persons": n_subjects,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    write_text(dataset_json, json.dumps(content, indent=2) + "\n", overwrite=True)
    return SplitsReport("written", len(folds), n_subjects, len(cases), group_by=group_by)
