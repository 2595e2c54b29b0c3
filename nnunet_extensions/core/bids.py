"""BIDS discovery and name parsing: one place for every converter and evaluator.

A BIDS file name is a chain of ``key-value`` entities and a final suffix, joined by ``_``:
``sub-01_ses-1_acq-ax_T2w`` has the entities ``sub=01, ses=1, acq=ax`` and the suffix ``T2w``. Derivative
masks (spine-generic and SCT naming) append their own entities and suffix to the *image's* name:
``sub-01_acq-ax_T2w_label-SC_seg`` is the ``seg`` (entity ``label=SC``) of the image ``sub-01_acq-ax_T2w``.
:func:`parse_name` returns both parts (:class:`BidsName`, with ``source`` the image's name).

Layout read (``<unit dir>`` is ``sub-XX/anat`` or ``sub-XX/ses-YY/anat``)::

    <root>/<unit dir>/<image stem>.nii.gz                                   images
    <root>/derivatives/<pipeline>/<unit dir>/<image stem><suffix>.nii.gz    their masks (pipeline "labels")
    <root>/<unit dir>/<image stem><suffix>.nii.gz                           or masks beside the image

Images are chosen by an :class:`ImageSpec` such as ``T2w``, ``acq-sag_T2w`` or ``ce-gd_T1w``: a BIDS
suffix optionally preceded by entity-value pairs, which must all be present in the image's name.

Functions that read the file system raise :class:`~nnunet_spine.core.io.InputError` (one line naming the
path) for a missing folder or a file where a folder is expected; nothing here reads voxels.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_spine.core.io import NIFTI_SUFFIXES, InputError, require_folder, split_suffix

#: Derivative suffixes (appended to the image stem) used by the project.
CORD_SEG = "_label-SC_seg"  #: binary spinal-cord mask (spine-generic naming)
CORD_SOFTSEG = "_label-SC_softseg"  #: soft (partial-volume) cord mask written by ``convert softgt``
LESION_SEG = "_label-lesion_seg"  #: binary lesion mask
SPINE_MSK = "_seg-spine_msk"  #: SPINEPS semantic mask
SUBREG_MSK = "_seg-subreg_msk"  #: SPINEPS semantic mask, older SPINEPS / TPTBox naming
VERT_MSK = "_seg-vert_msk"  #: SPINEPS vertebra instance mask
#: Suffixes of SPINEPS semantic and instance masks (appended to the image stem), in lookup order.
SPINEPS_SEMANTIC_SUFFIXES = (SPINE_MSK, SUBREG_MSK)
SPINEPS_INSTANCE_SUFFIXES = (VERT_MSK,)
#: Suffixes stripped from cord-mask file names to recover the image's stem (longest first).
CORD_MASK_SUFFIXES = (CORD_SOFTSEG, CORD_SEG, "_seg-manual", "_softseg", "_seg")

_KEY = r"[A-Za-z]+"
_VALUE = r"[A-Za-z0-9]+"
_ENTITY_RE = re.compile(rf"^({_KEY})-({_VALUE})$")
_SUFFIX_RE = re.compile(r"^[A-Za-z0-9]+$")
#: Final parts of SCT's older derivative names, which look like entities: ``seg-manual``, ``labels-disc-manual``.
_LEGACY_SUFFIX_RE = re.compile(r"^[A-Za-z]+(?:-[A-Za-z0-9]+)+$")
_SUBJECT_RE = re.compile(r"^(sub-[A-Za-z0-9]+)(?:_(.*))?$")


# ----------------------------------------------------------------------------------------------- names
@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name (without its file ending).

    Attributes
    ----------
    entities : tuple of (key, value)
        The name's own ``key-value`` pairs in order (for a derivative: those after the image's name).
    suffix : str
        The last part (``T2w``, ``seg``, ``msk``...).
    source : BidsName or None
        For a derivative name, the image it belongs to (``sub-01_T2w`` of ``sub-01_T2w_label-SC_seg``).
    """

    entities: tuple[tuple[str, str], ...]
    suffix: str
    source: BidsName | None = None

    def get(self, key: str) -> str | None:
        """Value of entity ``key``: the name's own, else its source image's; ``None`` when absent."""
        for k, v in self.entities:
            if k == key:
                return v
        return self.source.get(key) if self.source is not None else None

    @property
    def subject(self) -> str:
        """``sub-XX`` (``""`` when the name has no subject entity)."""
        value = self.get("sub")
        return f"sub-{value}" if value else ""

    @property
    def session(self) -> str:
        """``ses-YY`` (``""`` without a session)."""
        value = self.get("ses")
        return f"ses-{value}" if value else ""

    @property
    def name(self) -> str:
        """The name built back from its parts (``parse_name(n).name == n`` for every BIDS name)."""
        return build_name(self.entities, self.suffix, source=self.source.name if self.source else None)

    @property
    def image_stem(self) -> str:
        """The image's name: the source's for a derivative, else the name itself."""
        return self.source.name if self.source is not None else self.name


def build_name(entities: Iterable[tuple[str, str]], suffix: str, source: str | None = None) -> str:
    """``source_key-value_..._suffix`` (``source`` is an image stem for derivative names, else omitted)."""
    parts = [source] if source else []
    parts += [f"{k}-{v}" for k, v in entities]
    parts.append(suffix)
    return "_".join(parts)


def parse_name(name: str) -> BidsName | None:
    """Parse a BIDS name (a file name; its ending is dropped); ``None`` when it is not one.

    A BIDS name starts with ``sub-<label>``, continues with ``key-value`` entities and ends with a suffix.
    A bare word before the final suffix ends the name of a source image whose derivative this is:
    ``sub-01_T2w_label-SC_seg`` → source ``sub-01_T2w``, entities ``label=SC``, suffix ``seg``.

    >>> parse_name("sub-01_ses-1_acq-ax_T2w").get("acq")
    'ax'
    >>> parse_name("t2_fake_lesion") is None
    True
    """
    stem = split_suffix(name)[0] if "." in name else name
    tokens = stem.split("_")
    if len(tokens) < 2 or not _ENTITY_RE.match(tokens[0]) or not tokens[0].startswith("sub-"):
        return None
    if not _SUFFIX_RE.match(tokens[-1]) and not _is_legacy_suffix(tokens):
        return None
    bare = [i for i, t in enumerate(tokens[:-1]) if not _ENTITY_RE.match(t)]
    if any(not _SUFFIX_RE.match(tokens[i]) for i in bare):
        return None
    if bare:
        cut = bare[-1]
        source = parse_name("_".join(tokens[: cut + 1]))
        if source is None:
            return None
        own = tokens[cut + 1 : -1]
    else:
        source, own = None, tokens[:-1]
    entities = tuple(tuple(t.split("-", 1)) for t in own)
    return BidsName(entities=entities, suffix=tokens[-1], source=source)  # type: ignore[arg-type]


def _is_legacy_suffix(tokens: Sequence[str]) -> bool:
    """True when the last token is an SCT-style derivative suffix (``seg-manual``, ``labels-disc-manual``) after
    an image's name: it looks like an entity, so it only counts when a bare word (the image's suffix) precedes it."""
    return bool(_LEGACY_SUFFIX_RE.match(tokens[-1])) and any(not _ENTITY_RE.match(t) for t in tokens[1:-1])


def split_subject(name: str) -> tuple[str, str]:
    """``sub-01_flip-1_mt-on_MTS`` → ``("sub-01", "flip-1_mt-on_MTS")``; non-BIDS names give ``("", name)``."""
    m = _SUBJECT_RE.match(name)
    if not m:
        return "", name
    return m.group(1), m.group(2) or ""


def subject_session(path: str | Path) -> tuple[str, str]:
    """``("sub-01", "ses-2")`` of a BIDS file name (of its source image for a derivative), ``("", "")`` parts that
    the name lacks or when it is not a BIDS name; the folder is ignored. For the ``subject`` and ``session``
    columns of result tables."""
    parsed = parse_name(Path(path).name)
    return (parsed.subject, parsed.session) if parsed is not None else ("", "")


#: The columns every result table ends with (:func:`with_subject_columns`).
SUBJECT_COLUMNS = ("subject", "session")


def with_subject_columns(table, name_column: str):
    """A copy of a result table (pandas DataFrame) with ``subject`` and ``session`` appended as its last columns,
    parsed from each row's ``name_column`` (a file name or case id) by :func:`subject_session`; empty where the
    name is not BIDS (summary rows such as ``ALL``)."""
    out = table.copy()
    pairs = [subject_session(str(name)) for name in out[name_column]] if len(out) else []
    out["subject"] = [p[0] for p in pairs]
    out["session"] = [p[1] for p in pairs]
    return out


def case_name(path: str | Path, suffixes: Sequence[str] = CORD_MASK_SUFFIXES) -> str:
    """The image's stem of a mask file: the file name without its ending and without the first of
    ``suffixes`` it ends with (``sub-01_T2w_label-SC_seg.nii.gz`` → ``sub-01_T2w``)."""
    stem, _ = split_suffix(path)
    for suffix in suffixes:
        if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


# ----------------------------------------------------------------------------------------------- specs
#: Older contrast suffixes → the BIDS suffix they mean today (``sub-01_T2star`` is a ``T2starw`` image).
CONTRAST_ALIASES = {"T2star": "T2starw"}


def canonical_suffix(suffix: str) -> str:
    """An image suffix under its current BIDS name (``T2star`` → ``T2starw``; others unchanged)."""
    return CONTRAST_ALIASES.get(suffix, suffix)


@dataclass(frozen=True)
class ImageSpec:
    """Which images to take: a suffix and entity values they must carry (``acq-sag_T2w``)."""

    entities: tuple[tuple[str, str], ...]
    suffix: str

    @classmethod
    def parse(cls, text: str) -> ImageSpec:
        """``T2w`` / ``acq-sag_T2w`` / ``ce-gd_T1w`` → spec; ``ValueError`` naming the text otherwise."""
        tokens = text.strip().split("_") if text and text.strip() else []
        if not tokens or not _SUFFIX_RE.match(tokens[-1]) or not all(_ENTITY_RE.match(t) for t in tokens[:-1]):
            raise ValueError(
                f"{text!r} is not an image spec: a BIDS suffix, optionally after key-value entities "
                "(e.g. T2w, acq-sag_T2w, ce-gd_T1w)"
            )
        keys = [t.split("-", 1)[0] for t in tokens[:-1]]
        if "sub" in keys or "ses" in keys:
            raise ValueError(f"{text!r}: an image spec names a contrast, not a subject or session")
        return cls(tuple(tuple(t.split("-", 1)) for t in tokens[:-1]), tokens[-1])  # type: ignore[arg-type]

    @property
    def text(self) -> str:
        return build_name(self.entities, self.suffix)

    def matches(self, name: BidsName) -> bool:
        """True when ``name`` (an image name) has this suffix (or an older name of it, :data:`CONTRAST_ALIASES`)
        and every entity value of the spec."""
        return (
            name.source is None
            and canonical_suffix(name.suffix) == canonical_suffix(self.suffix)
            and all(name.get(k) == v for k, v in self.entities)
        )


# ------------------------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class Unit:
    """A subject, or one session of a subject: the images acquired together (``anat`` folder)."""

    subject: str  #: ``sub-XX``
    session: str  #: ``ses-YY`` or ``""``
    folder: Path  #: ``<root>/sub-XX[/ses-YY]/<datatype>``
    rel_dir: str  #: ``sub-XX[/ses-YY]/<datatype>`` (posix, relative to the root)

    @property
    def name(self) -> str:
        """``sub-XX`` or ``sub-XX_ses-YY``: the prefix of its images' names."""
        return f"{self.subject}_{self.session}" if self.session else self.subject


@dataclass(frozen=True)
class BidsImage:
    """One image of a unit."""

    path: Path
    stem: str  #: file name without ending, e.g. ``sub-01_ses-1_acq-ax_T2w``
    unit: Unit
    parsed: BidsName

    @property
    def contrast(self) -> str:
        """The name after the unit's prefix: ``acq-ax_T2w`` (what the user chooses images by)."""
        return self.stem[len(self.unit.name) + 1 :]


def nifti_stem(path: Path) -> str | None:
    """File name without ``.nii[.gz]``; ``None`` for other files."""
    stem, suffix = split_suffix(path)
    return stem if suffix.lower() in NIFTI_SUFFIXES else None


def find_subjects(root: str | Path) -> list[str]:
    """The ``sub-*`` folders of a BIDS root, sorted (:class:`InputError` when there are none)."""
    root = require_folder(root, "dataset folder")
    subjects = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise InputError(f"{root}: no sub-* folders (not a BIDS dataset?)")
    return subjects


def find_units(root: str | Path, datatype: str = "anat") -> list[Unit]:
    """Every ``sub-XX/<datatype>`` and ``sub-XX/ses-YY/<datatype>`` folder of a BIDS root, sorted."""
    root = Path(root)
    units = []
    for subject in find_subjects(root):
        sub_dir = root / subject
        folders = [("", sub_dir / datatype)]
        folders += [(ses.name, ses / datatype) for ses in sorted(sub_dir.glob("ses-*")) if ses.is_dir()]
        for session, folder in folders:
            if folder.is_dir():
                units.append(Unit(subject, session, folder, folder.relative_to(root).as_posix()))
    return units


def list_images(unit: Unit) -> tuple[list[BidsImage], list[str]]:
    """The images of a unit (NIfTI files named ``<unit>_..._<suffix>``) sorted by name, and one warning per
    NIfTI file left out because its name is not a BIDS name of the unit. Masks stored beside their image
    (``<image stem>_label-SC_seg.nii.gz`` next to ``<image stem>.nii.gz``) are not images."""
    files = {}
    for path in sorted(unit.folder.iterdir()):
        stem = nifti_stem(path)
        if stem is not None and not path.name.startswith(".") and path.is_file():
            files.setdefault(stem, path)
    images, warnings = [], []
    for stem, path in files.items():
        parsed = parse_name(stem)
        if not stem.startswith(unit.name + "_"):
            warnings.append(f"{path}: name does not start with {unit.name}_; ignored")
        elif parsed is None:
            warnings.append(f"{path}: not a BIDS image name ({unit.name}_[key-value_...]<suffix>); ignored")
        elif parsed.source is not None and parsed.source.name in files:
            continue  # a derivative stored beside its image (e.g. <image>_label-SC_seg.nii.gz)
        else:
            images.append(BidsImage(path=path, stem=stem, unit=unit, parsed=parsed))
    return images, warnings


def select_images(images: Sequence[BidsImage], spec: ImageSpec | str) -> list[BidsImage]:
    """Images matching ``spec``; an image whose contrast is exactly the spec's text wins alone
    (``T2w`` picks ``sub-01_T2w`` over ``sub-01_acq-sag_T2w``)."""
    spec = ImageSpec.parse(spec) if isinstance(spec, str) else spec
    exact = [im for im in images if im.contrast == spec.text]
    if len(exact) == 1:
        return exact
    return [im for im in images if spec.matches(im.parsed)]


def derivative_path(
    root: str | Path, image: BidsImage, suffix: str, pipeline: str = "labels", ending: str = ".nii.gz"
) -> Path:
    """Where an image's derivative belongs: ``<root>/derivatives/<pipeline>/<unit dir>/<stem><suffix><ending>``."""
    return Path(root) / "derivatives" / pipeline / image.unit.rel_dir / f"{image.stem}{suffix}{ending}"


def find_derivative(root: str | Path, image: BidsImage, suffix: str, pipeline: str = "labels") -> Path | None:
    """An image's mask ``<stem><suffix>.nii[.gz]`` under ``derivatives/<pipeline>/``, else beside the image."""
    for folder in (Path(root) / "derivatives" / pipeline / image.unit.rel_dir, image.path.parent):
        for ending in NIFTI_SUFFIXES:
            p = folder / f"{image.stem}{suffix}{ending}"
            if p.is_file():
                return p
    return None


def find_by_stem(folder: str | Path, name: str) -> Path | None:
    """The first file ``<name>.nii.gz`` (else ``<name>.nii``) anywhere under ``folder`` (sorted paths)."""
    folder = Path(folder)
    for ending in NIFTI_SUFFIXES:
        hits = sorted(folder.rglob(f"{name}{ending}"))
        if hits:
            return hits[0]
    return None


#: A subject label holding a session (``9709Ses1``, ``01ses2``): the person's part, then the session number.
_SESSION_IN_LABEL_RE = re.compile(r"^([A-Za-z0-9]+?)[Ss]es(?:sion)?([0-9]+)$")


def session_in_label(subject: str) -> tuple[str, str] | None:
    """``sub-9709Ses1`` → ``("9709", "1")``: a subject label that looks like ``<id>Ses<k>`` (a session written into
    the subject's label, as in the Grey Matter Challenge data); ``None`` otherwise."""
    m = _SESSION_IN_LABEL_RE.match(subject[4:] if subject.startswith("sub-") else subject)
    return (m.group(1), m.group(2)) if m else None


# --------------------------------------------------------------------------------------- SPINEPS masks
#: ``seg`` entity of SPINEPS semantic masks: ``seg-spine`` (SPINEPS), ``seg-subreg`` (older SPINEPS / TPTBox).
SPINEPS_SEMANTIC_SEGS = ("spine", "subreg")
#: ``seg`` entity of SPINEPS instance masks (``..._seg-vert_msk``).
SPINEPS_INSTANCE_SEGS = ("vert",)


def is_spineps_mask_of(mask: BidsName, image: BidsName, segs: Sequence[str] = SPINEPS_SEMANTIC_SEGS) -> bool:
    """True when ``mask`` names a SPINEPS mask (suffix ``msk``, ``seg-<one of segs>``) of ``image``.

    Two namings are recognised: a derivative of the image's name (``sub-01_T2w_seg-spine_msk`` of
    ``sub-01_T2w``), and SPINEPS' own, which keeps the image's entities, adds ``seg-X`` (and optionally
    ``mod-<image suffix>``) and ends in ``msk`` (``sub-01_seg-subreg_label-6_msk`` of ``sub-01_label-6_T2w``).
    """
    if mask.suffix != "msk" or mask.get("seg") not in tuple(segs):
        return False
    if mask.source is not None:
        return mask.source.name == image.name
    own = {k: v for k, v in mask.entities if k not in ("seg", "mod")}
    mod = mask.get("mod")
    return own == dict(image.entities) and (mod is None or mod == image.suffix)


def spineps_seg(path: str | Path | None) -> str | None:
    """The ``seg-`` entity of a file named as a SPINEPS mask (suffix ``msk``: ``sub-01_T2w_seg-vert_msk.nii.gz``
    → ``"vert"``, SPINEPS' own ``sub-01_seg-subreg_label-6_msk.nii.gz`` → ``"subreg"``); None for other names."""
    if path is None:
        return None
    stem = nifti_stem(Path(path))
    parsed = parse_name(stem) if stem is not None else None
    return parsed.get("seg") if parsed is not None and parsed.suffix == "msk" else None


def find_spineps_masks(root: str | Path, image: BidsImage, segs: Sequence[str] = SPINEPS_SEMANTIC_SEGS) -> list[Path]:
    """Every SPINEPS mask of ``image`` (:func:`is_spineps_mask_of`) under ``<root>/derivatives/<any pipeline>/
    <unit dir>/`` and beside the image, ordered by ``segs`` (first preferred), then by path."""
    root = Path(root)
    folders = sorted(p / image.unit.rel_dir for p in (root / "derivatives").glob("*") if p.is_dir())
    folders.append(image.path.parent)
    found: dict[Path, int] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            stem = nifti_stem(path)
            parsed = parse_name(stem) if stem is not None else None
            if parsed is not None and path.is_file() and is_spineps_mask_of(parsed, image.parsed, segs):
                found.setdefault(path, tuple(segs).index(parsed.get("seg")))
    return sorted(found, key=lambda p: (found[p], str(p)))


def flat_units(folder: str | Path) -> list[Unit]:
    """Units of a flat folder holding images (and masks) side by side, without ``sub-*`` folders: one unit
    per ``sub-XX[_ses-YY]`` prefix of its BIDS-named NIfTI files, sorted (:class:`InputError` when none)."""
    folder = require_folder(folder, "dataset folder")
    names = set()
    for path in folder.iterdir():
        stem = nifti_stem(path)
        parsed = parse_name(stem) if stem is not None and path.is_file() else None
        if parsed is not None and parsed.subject:
            names.add((parsed.subject, parsed.session))
    if not names:
        raise InputError(f"{folder}: no sub-* folders and no BIDS-named images (sub-XX_..._<suffix>.nii.gz)")
    return [Unit(subject, session, folder, "") for subject, session in sorted(names)]


# --------------------------------------------------------------------- matching files of a case by name
def list_nifti(folder: str | Path) -> list[Path]:
    """NIfTI files anywhere under ``folder`` (a flat nnU-Net folder or a BIDS tree), sorted by path;
    hidden files skipped. :class:`InputError` when the folder is missing or holds none."""
    from nnunet_spine.core.io import is_nifti

    root = require_folder(folder, "folder")
    found = sorted(p for p in Path(root).rglob("*") if p.is_file() and is_nifti(p) and not p.name.startswith("."))
    if not found:
        raise InputError(f"{root}: folder holds no NIfTI file (.nii or .nii.gz)")
    return found


def cases_by_name(paths: Sequence[Path], suffixes: Sequence[str]) -> dict[str, Path]:
    """``case → path`` for mask files (case = :func:`case_name` with ``suffixes`` stripped); two files of one
    case raise :class:`InputError` naming both."""
    out: dict[str, Path] = {}
    for p in paths:
        c = case_name(p, suffixes)
        if c in out:
            raise InputError(f"{p}: case {c} also given by {out[c]}")
        out[c] = Path(p)
    return out


def find_case_file(folder: str | Path, case: str, suffixes: Sequence[str], what: str) -> Path:
    """The first ``<case><suffix>.nii[.gz]`` under ``folder`` (recursively) for each suffix in turn;
    :class:`InputError` naming what was looked for when there is none."""
    for s in suffixes:
        hit = find_by_stem(folder, f"{case}{s}")
        if hit is not None:
            return hit
    names = " or ".join(f"{case}{s}.nii.gz" for s in suffixes)
    raise InputError(f"{folder}: no {what} for case {case} ({names})")


def pair_cases(
    pred: str | Path,
    ref: str | Path,
    *,
    pred_suffixes: Sequence[str],
    ref_suffixes: Sequence[str],
    what: str = "reference",
    select: Callable[[Path], list[Path] | None] | None = None,
) -> list[tuple[str, Path, Path]]:
    """``[(case, pred_path, ref_path)]``: a file with a file, a file with its case's file in a folder, or
    every NIfTI file under a prediction folder with its case's file under a reference folder. The case is
    the file name without one of ``pred_suffixes`` (the image's BIDS stem); references are found as
    ``<case><ref suffix>``. ``select(folder)`` may choose the prediction files of a folder (None: all of them).
    Raises :class:`InputError` naming the path."""
    pred, ref = Path(pred), Path(ref)
    for p in (pred, ref):
        if not p.exists():
            raise InputError(f"{p}: file not found")
    chosen = select(pred) if select is not None and pred.is_dir() else None
    preds = chosen if chosen is not None else list_nifti(pred) if pred.is_dir() else [pred]
    if pred.is_dir() and not ref.is_dir():
        raise InputError(f"{ref}: is a file; a folder of predictions needs a folder of {what}s")
    return [
        (case, p, find_case_file(ref, case, ref_suffixes, what) if ref.is_dir() else ref)
        for case, p in cases_by_name(preds, pred_suffixes).items()
    ]
