"""``qc_fail.yml``-style case lists: read them safely, match cases against them.

The layout is manual-correction's config file (``spinalcordtoolbox/manual-correction``, ``manual_correction.py``,
``-config`` help), which SCT's QC report writes with **Save Fails** and ``sct_run_batch -exclude-yml`` reads
(``sct_run_batch.py``, ``parse_yml``): a mapping of kinds (``FILES_SEG``, ``FILES_LABEL``, ``FILES_LESION``, ...)
to lists of input-relative image paths, or one plain list. Entries that end in ``.nii``/``.nii.gz`` name files
(matched by file name, ``*`` wildcards as manual-correction allows); other entries name subjects or sessions
(``sub-01``, ``sub-01/ses-01``, ``ses-02``), as ``sct_run_batch`` reads them.

The file is read with ``yaml.safe_load``; anything but the expected keys and lists of path strings raises
:class:`~nnunet_spine.core.io.InputError` with one line naming the file.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nnunet_spine.core.io import NIFTI_SUFFIXES, InputError

#: Keys a case list may hold: manual-correction's config keys.
YML_KEYS = (
    "FILES_SEG",
    "FILES_GMSEG",
    "FILES_LESION",
    "FILES_LABEL",
    "FILES_COMPRESSION",
    "FILES_PMJ",
    "FILES_CENTERLINE",
)
#: Largest case-list file read (bytes): a QC export of a large cohort is far smaller.
MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class CaseList:
    """The cases a YAML file lists: image file paths (as written) and subject/session names."""

    path: Path
    files: tuple[str, ...]
    subjects: tuple[str, ...]

    def matches(self, image: str | os.PathLike) -> bool:
        """True when ``image`` (a path to a case's image or mask; only its name and its ``sub-``/``ses-``
        folders or name entities count) is listed: by file name (wildcards allowed) or by subject / session."""
        name = PurePosixPath(str(image).replace(os.sep, "/")).name
        if any(fnmatch.fnmatchcase(name, PurePosixPath(f).name) for f in self.files):
            return True
        if not self.subjects:
            return False
        parts = _subject_parts(str(image))
        return any(s in parts for s in self.subjects)


def _subject_parts(image: str) -> set[str]:
    """``sub-01``, ``ses-01`` and ``sub-01/ses-01`` of a case path (from folders or the file name)."""
    p = PurePosixPath(image.replace(os.sep, "/"))
    tokens = [t for part in (*p.parent.parts, p.name) for t in part.split("_")]
    sub = next((t for t in tokens if t.startswith("sub-")), None)
    ses = next((t for t in tokens if t.startswith("ses-")), None)
    out = {t for t in (sub, ses) if t}
    if sub and ses:
        out.add(f"{sub}/{ses}")
    return out


def _is_file_entry(entry: str) -> bool:
    """An entry naming an image file (``.nii``/``.nii.gz``), not a subject or session."""
    return entry.lower().endswith(NIFTI_SUFFIXES)


def read_case_list(path: str | os.PathLike) -> CaseList:
    """Read a ``qc_fail.yml``-style file (see the module's docstring); :class:`InputError` naming the file
    for anything else: unreadable, not YAML, keys other than :data:`YML_KEYS`, values other than lists of
    non-empty path strings."""
    import yaml

    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise InputError(f"{p}: case list larger than {MAX_BYTES // 2**20} MiB")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a folder, expected a YAML case list") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the case list ({exc})") from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(f"{p}: not valid YAML{at}") from None
    return CaseList(p, *_entries(p, content))


def _entries(p: Path, content) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(files, subjects) of the parsed YAML ``content``; :class:`InputError` for an unexpected shape."""
    if content is None:
        lists: list = []
    elif isinstance(content, list):
        lists = [("list", content)]
    elif isinstance(content, dict):
        unknown = [k for k in content if k not in YML_KEYS]
        if unknown:
            raise InputError(f"{p}: unexpected key {unknown[0]!r} (expected {', '.join(YML_KEYS)})")
        lists = [(k, v if v is not None else []) for k, v in content.items()]
    else:
        raise InputError(f"{p}: expected a mapping of {', '.join(YML_KEYS[:3])}... to lists of paths, or a list")
    files: list[str] = []
    subjects: list[str] = []
    for key, values in lists:
        if not isinstance(values, list):
            raise InputError(f"{p}: {key} must be a list of paths, got {type(values).__name__}")
        for v in values:
            if not isinstance(v, str) or not v.strip() or "\0" in v:
                raise InputError(f"{p}: {key} must list path strings, got {v!r}"[:300])
            target = files if _is_file_entry(v) else subjects
            if v not in target:
                target.append(v.strip().rstrip("/"))
    return tuple(files), tuple(subjects)


def filter_cases(
    cases: Iterable,
    *,
    exclude: CaseList | None = None,
    include: CaseList | None = None,
    path_of=lambda case: case,
) -> tuple[list, list]:
    """Split ``cases`` into (kept, skipped): with ``include``, only listed cases are kept; then the cases
    ``exclude`` lists are skipped (inclusions before exclusions, as ``sct_run_batch``). ``path_of`` gives a
    case's image path (default: the case itself)."""
    kept, skipped = [], []
    for case in cases:
        path = path_of(case)
        listed_in = include is None or include.matches(path)
        if listed_in and not (exclude is not None and exclude.matches(path)):
            kept.append(case)
        else:
            skipped.append(case)
    return kept, skipped
