"""Files in, files out for the instance phase: ``nnspine fuse`` (cutouts + their nnU-Net predictions → SPINEPS
outputs named as SPINEPS names them). The fusion itself, on arrays, is :mod:`nnunet_spine.postprocessing.spine.fusion`;
``nnspine instances`` / ``segment spine`` (nnU-Net's predictor run in-process on the cutouts, then :func:`fuse`)
are in :mod:`nnunet_spine.apps.instances`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_spine.core.cutouts import (
    BODY_EROSION_MM,
    CUTOUTS_JSON,
    FILE_ENDING,
    MIN_BODY_MM3,
    Cutout,
    case_name,
    load_semantic,
    read_description,
    semantic_files,
)
from nnunet_spine.core.io import (
    Image,
    InputError,
    check_output,
    load_image,
    require_folder,
    save_image,
    split_suffix,
    write_text,
)
from nnunet_spine.core.labels import (
    CUTOUT_TARGET_LABELS,
    EXTENDED_SEMANTIC_LABELS,
    SACRUM,
    instance_name,
    is_vertebra,
    to_semantic_14,
    vertebra_number,
)
from nnunet_spine.postprocessing.spine.fusion import Fusion, fuse_arrays
from nnunet_spine.postprocessing.spine.labelling import DEFAULT_LUMBAR, NOT_LABELLED
from nnunet_spine.postprocessing.spine.sct_discs import (
    DiscLabelReport,
    disc_labels_from_instances,
    disc_labels_path,
)


# --------------------------------------------------------------------------------------------- files
def output_names(semantic_path: str | os.PathLike) -> dict[str, str]:
    """SPINEPS output names for a semantic mask or image name: ``vert`` (instance mask), ``spine`` (cleaned
    semantic mask), ``ctd`` (centroids, TPTBox's POI JSON), ``snp`` (QC snapshot), and ``info``: our sidecar
    of the instance mask (same stem, ``.json``, as BIDS sidecars) with the labelling and its anomalies, and
    ``discs``: SCT disc labels (:func:`~nnunet_spine.postprocessing.spine.sct_discs.disc_labels_path`), written only
    when the ids are anatomical.

    ``sub-01_T2w_seg-spine_msk.nii.gz`` → ``sub-01_T2w_seg-vert_msk.nii.gz``, ``sub-01_T2w_seg-spine_msk.nii.gz``,
    ``sub-01_T2w_seg-spine_ctd.json``, ``sub-01_T2w_seg-spine_snp.png``; a ``seg-…`` entity elsewhere in the name
    (``sub-mri_seg-subreg_label-6_msk``) is replaced in place; other names (``sub-01_T2w``) get the suffixes."""
    stem = split_suffix(semantic_path)[0]
    tokens = stem.split("_")
    seg = [i for i, t in enumerate(tokens) if t.startswith("seg-")]
    if seg and tokens[-1] == "msk" and len(tokens) > 2:

        def name(entity: str, suffix: str) -> str:
            t = list(tokens)
            t[seg[-1]] = entity
            t[-1] = suffix
            return "_".join(t)
    else:

        def name(entity: str, suffix: str) -> str:
            return f"{stem}_{entity}_{suffix}"

    return {
        "vert": name("seg-vert", "msk") + ".nii.gz",
        "spine": name("seg-spine", "msk") + ".nii.gz",
        "ctd": name("seg-spine", "ctd") + ".json",
        "snp": name("seg-spine", "snp") + ".png",
        "info": name("seg-vert", "msk") + ".json",
        "discs": disc_labels_path(name("seg-vert", "msk") + ".nii.gz").name,
    }


def read_prediction(folder: Path, cutout: Cutout) -> np.ndarray | None:
    """``folder/<name>.nii.gz`` as uint8 labels 0–3 on the cutout's grid; None when absent; InputError naming
    the file when it is not a cutout prediction or not on the cutout's grid."""
    p = folder / f"{cutout.name}{FILE_ENDING}"
    if not p.exists():
        return None
    img = load_image(p, "labels")
    top = max(CUTOUT_TARGET_LABELS.values())
    if img.data.size and img.data.max() > top:
        bad = np.unique(img.data[img.data > top]).tolist()
        raise InputError(f"{p}: values {bad[:8]} are not cutout labels (0 background, 1 above, 2 centre, 3 below)")
    ref = Image(np.broadcast_to(np.zeros((), np.uint8), cutout.shape), cutout.affine, None)
    if img.shape != cutout.shape or not np.allclose(img.affine, ref.affine, atol=1e-3, rtol=0):
        raise InputError(
            f"{p}: grid {img.shape} is not the grid of cutout {cutout.name} {cutout.shape} (not the same grid)"
        )
    return img.data.astype(np.uint8, copy=False)


def input_extended_labels(path: str | os.PathLike) -> np.ndarray | None:
    """The semantic mask's own values (uint8) when it holds SPINEPS 2.x / TPTBox labels 50–53
    (:data:`~nnunet_spine.core.labels.EXTENDED_SEMANTIC_LABELS`), which :func:`load_semantic` maps onto the
    14-label scheme for the fusion; None when it holds none of them."""
    data = np.asarray(load_image(path, "labels").data)
    if not np.isin(data, list(EXTENDED_SEMANTIC_LABELS)).any():
        return None
    return data.astype(np.uint8, copy=False)


def keep_input_labels(cleaned: np.ndarray, input_labels: np.ndarray | None) -> np.ndarray:
    """The cleaned semantic mask with the input's labels 50–53 back on the voxels it kept (the input's body core 50,
    dens 51 and split endplates 52/53 stay what they were; 0 stays 0): a new array, or ``cleaned`` itself when
    ``input_labels`` is None. A voxel the cleaning changed otherwise (``--endplates split`` of an input 62) keeps
    the cleaned value."""
    if input_labels is None:
        return cleaned
    back = (
        np.isin(input_labels, list(EXTENDED_SEMANTIC_LABELS))
        & (cleaned != 0)
        & (to_semantic_14(cleaned) == to_semantic_14(input_labels))
    )
    out = np.array(cleaned, copy=True)
    out[back] = input_labels[back]
    return out


def dens_to_its_vertebra(instance: np.ndarray, dens: np.ndarray | None) -> int:
    """In place: every dens voxel (bool mask, SPINEPS 2.x label 51) that belongs to a vertebra instance joins the
    vertebra holding most of the dens — the one the labelling names C2 from the dens anchor — so that the whole
    dens is C2's, as SPINEPS sets every dens voxel to C2 (``phase_postprocess_combined`` in ``spineps/phase_post.py``:
    ``whole_vert_nii_cleaned[seg_nii_cleaned == Location.Dens_axis.value] = C2_INSTANCE_LABEL``). Returns the number
    of voxels that changed vertebra."""
    if dens is None or not dens.any():
        return 0
    held = instance[dens]
    vertebrae = [v for v in np.unique(held).tolist() if is_vertebra(v) and v != SACRUM]
    if not vertebrae:
        return 0
    owner = max(vertebrae, key=lambda v: int(np.count_nonzero(held == v)))
    move = dens & np.isin(instance, vertebrae) & (instance != owner)
    instance[move] = owner
    return int(move.sum())


#: ``level_one_info`` / ``level_two_info`` of the POI file: keys are vertebra ids and TPTBox ``Location`` values.
POI_LEVELS = ("Vertebra_Instance", "Location")
#: TPTBox ``Location`` value under which SPINEPS stores a vertebra's body centroid.
POI_BODY_CENTROID = 50


def centroids_json(fusion: Fusion, affine: np.ndarray, shape: Sequence[int]) -> str:
    """The ``_ctd.json`` text in TPTBox's POI format, as SPINEPS writes it: a header with the image grid
    (``direction`` = nibabel axis codes, ``zoom``, ``origin``, ``rotation``, ``shape``) and, per vertebra id (and
    the sacrum, 26), the body centroid under subregion 50 in **voxel** coordinates of that grid
    (``TPTBox.POI.load(...).to_global()`` gives world RAS mm).

    The header also carries :func:`labelling_header` (``nnspine_anatomically_labelled``,
    ``nnspine_labelling_verified``, ``nnspine_labelling_reason``, ``nnspine_labelling_method``): TPTBox keeps
    header keys it does not know in ``POI.info`` (and writes them back on ``POI.save``), so a TPTBox user sees that
    ids 1..n are not C1..Cn, or that a count was not checked. Everything else of ours goes to the sidecar
    (:func:`sidecar_json`)."""
    import nibabel as nib

    a = np.asarray(affine, float)
    zooms = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
    inv = np.linalg.inv(a)
    header = {
        "direction": list(nib.aff2axcodes(a)),
        "zoom": [round(float(z), 6) for z in zooms],
        "origin": [round(float(o), 6) for o in a[:3, 3]],
        "rotation": (a[:3, :3] / zooms).round(8).tolist(),
        "shape": [int(n) for n in shape],
        "format": "POI",
        "level_one_info": POI_LEVELS[0],
        "level_two_info": POI_LEVELS[1],
        **labelling_header(fusion),
    }
    points = {
        str(int(v)): {str(POI_BODY_CENTROID): [round(float(x), 3) for x in (inv[:3, :3] @ c + inv[:3, 3])]}
        for v, c in sorted(fusion.centroids_mm.items())
    }
    return json.dumps([header, points], indent=1) + "\n"


#: Prefix of our keys in the POI header (TPTBox keeps unknown header keys in ``POI.info``).
POI_HEADER_PREFIX = "nnspine_"
#: Columns a summary CSV (``segment_summary.csv``) carries per case: :func:`labelling_fields`.
LABELLING_COLUMNS = ("labelling", "verified", "reason")


def labelling_header(fusion: Fusion) -> dict[str, bool | str]:
    """Our keys of the POI header: whether the ids are anatomical (VerSe) ids, whether two anchors verified
    them, why (:attr:`Labelling.reason`) and how they were found (:attr:`Labelling.method`)."""
    lab = fusion.labelling
    return {
        f"{POI_HEADER_PREFIX}anatomically_labelled": bool(fusion.named),
        f"{POI_HEADER_PREFIX}labelling_verified": bool(lab is not None and lab.verified),
        f"{POI_HEADER_PREFIX}labelling_reason": lab.reason if lab is not None else NOT_LABELLED,
        f"{POI_HEADER_PREFIX}labelling_method": lab.method if lab is not None else NOT_LABELLED,
    }


def labelling_fields(fusion: Fusion) -> dict[str, str]:
    """One case's :data:`LABELLING_COLUMNS` as CSV text: ``labelling`` ``anatomical`` or ``not anatomical``
    (ids 1..n from the top), ``verified`` ``true`` / ``false`` (two anchors agree), ``reason`` (why)."""
    lab = fusion.labelling
    return {
        "labelling": "anatomical" if fusion.named else "not anatomical",
        "verified": "true" if lab is not None and lab.verified else "false",
        "reason": lab.reason if lab is not None else NOT_LABELLED,
    }


def sidecar_json(fusion: Fusion, semantic_name: str) -> str:
    """The instance mask's sidecar (``<...>_seg-vert_msk.json``): how the ids were found (anatomical or not,
    the anchor), gaps and anomalies, cutouts without a prediction, disagreeing partners, and the centroids in
    world RAS mm with names. ``labelling`` holds ``anatomical``, ``verified`` (two independent anchors agree on
    the count), ``reason``, ``anchors`` (:meth:`Labelling.to_dict`). ``nnspine csa --vertfile`` reads it to refuse
    a mask not anatomically labelled; ``nnspine evaluate instances`` to warn about ids not anatomical or not
    verified."""
    lab = fusion.labelling
    content = {
        "generated_by": "nnspine fuse",
        "semantic": semantic_name,
        "numbering": "VerSe" if fusion.named else "from the top (1 = top)",
        "anatomically_labelled": bool(fusion.named),
        "labelling_verified": bool(lab is not None and lab.verified),
        "labelling": lab.to_dict() if lab is not None else None,
        "missing_cutouts": fusion.missing,
        "disagreements": fusion.disagreements,
        "flaws": [f.__dict__ for f in fusion.findings],
        "centroids_mm": [
            {
                "id": int(v),
                "name": fusion.label_name(v),
                "x_mm": round(float(c[0]), 3),
                "y_mm": round(float(c[1]), 3),
                "z_mm": round(float(c[2]), 3),
                "of": "sacrum" if v == SACRUM else "vertebral body",
            }
            for v, c in sorted(fusion.centroids_mm.items())
        ],
    }
    return json.dumps(content, indent=1) + "\n"


@dataclass
class FuseReport:
    """What :func:`fuse` wrote, per case."""

    cases: list[tuple[str, Fusion, dict[str, Path]]]
    #: per case, the SCT disc labels written (only for anatomical ids)
    discs: dict[str, DiscLabelReport] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for case, f, paths in self.cases:
            names = ", ".join(f.label_name(v) for v in f.vertebra_ids())
            out.append(
                f"{case}: {len(f.vertebrae)} vertebrae ({names}) from {len(f.used)} cutout prediction(s); "
                f"{f.stats.reassigned} orphan voxel(s) joined a neighbour, {f.stats.deleted_semantic} removed"
            )
            if f.labelling is not None:
                out.append(f"  labelling: {f.labelling.method}")
                out.append(f"  verified: {'yes' if f.labelling.verified else 'no'} ({f.labelling.reason})")
            out.extend(f"  {k}: {p}" for k, p in paths.items())
            if case in self.discs:
                first, *rest = self.discs[case].lines()
                out += [f"  SCT {first}", *(f"  {line.strip()}" for line in rest)]
        return out

    def warnings(self) -> list[str]:
        """One line per case whose discs could not all be written as SCT disc labels."""
        return [
            f"{case}: disc(s) without an SCT disc value, not in the disc labels: "
            + ", ".join(instance_name(v) for v in r.skipped)
            for case, r in self.discs.items()
            if r.skipped
        ]

    def summary_rows(self) -> list[dict[str, str]]:
        """Per case ``{"case": ..., **labelling_fields}``: the columns a summary CSV carries
        (:data:`LABELLING_COLUMNS`)."""
        return [{"case": case, **labelling_fields(f)} for case, f, _ in self.cases]


def fuse(
    semantic: str | os.PathLike,
    cutouts_dir: str | os.PathLike,
    predictions_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    top_vertebra: str | None = None,
    labelling: str = "auto",
    lumbar: int = DEFAULT_LUMBAR,
    endplates: str = "merged",
    image: str | os.PathLike | None = None,
    landmarks: str | os.PathLike | None = None,
    qc: bool = True,
    overwrite: bool = False,
    discfile: str | os.PathLike | None = None,
) -> FuseReport:
    """``nnspine fuse``: fuse the predictions of every case of ``cutouts.json`` whose semantic mask is given
    (a file, or a folder of semantic masks) and write the SPINEPS outputs to ``out_dir``. ``landmarks``: a
    landmark model's prediction (a file, or a folder holding ``<case>.nii.gz`` as ``nnUNetv2_predict`` names it);
    ``discfile``: SCT disc labels as anchors (a file, or a folder holding ``<case>_label-discs_dlabel.nii.gz``:
    :func:`disc_labels_for`).

    Everything is read and checked (grids, prediction values, output paths) before anything is written.
    Cutouts without a prediction are listed in the result (``Fusion.missing``) and the rest is fused; a case
    with no prediction at all is an InputError. The cleaned semantic mask keeps the input's SPINEPS 2.x labels
    50–53 (:func:`keep_input_labels`; the fusion works on the 14-label scheme) and every dens voxel is C2's
    (:func:`dens_to_its_vertebra`)."""
    from nnunet_spine.postprocessing.qc import plot_vertebra_instances

    top = None
    if top_vertebra is not None:
        try:
            top = vertebra_number(top_vertebra)
        except KeyError:
            raise InputError(f"--top-vertebra {top_vertebra!r}: not a vertebra name (C1 ... L6, T13)") from None
    content, records = read_description(cutouts_dir)
    by_case = {r.case: r for r in records}
    pred_dir = require_folder(predictions_dir, "predictions folder")
    out = Path(out_dir)
    results, stale = [], []
    for f in semantic_files(semantic):
        case = case_name(f)
        if case not in by_case:
            raise InputError(
                f"{f}: case {case} is not in {Path(cutouts_dir) / CUTOUTS_JSON} "
                f"(cases: {', '.join(sorted(by_case)) or 'none'})"
            )
        record = by_case[case]
        img = load_semantic(f)
        record.check_grid(img)
        preds = {c.name: read_prediction(pred_dir, c) for c in record.cutouts}
        names = output_names(f)
        paths = {k: out / v for k, v in names.items() if qc or k != "snp"}
        for p in paths.values():
            if p.resolve() == Path(f).resolve():
                raise InputError(f"{p}: output would replace the input semantic mask (choose another -o folder)")
        for p in paths.values():
            check_output(p, overwrite)
        fusion = fuse_arrays(
            img,
            record,
            preds,
            top_vertebra=top,
            labelling=labelling,
            lumbar=lumbar,
            endplates=endplates,
            erosion_mm=float(content.get("body_erosion_mm", BODY_EROSION_MM)),
            min_body_mm3=float(content.get("min_body_mm3", MIN_BODY_MM3)),
            landmarks=_landmark_map(landmarks, case, img),
            discs=disc_labels_for(discfile, case),
        )
        dens_to_its_vertebra(fusion.instance, (img.meta or {}).get("dens"))
        if not fusion.named:  # ids 1..n from the top have no SCT disc values
            stale.append(paths.pop("discs"))
        elif discfile is not None and paths["discs"].resolve() == _disc_input(discfile, case).resolve():
            raise InputError(f"{paths['discs']}: output would replace the --discfile input (choose another -o folder)")
        results.append((case, fusion, paths, img, input_extended_labels(f)))
    disc_reports = {}
    for p in stale:  # an earlier run's disc labels (overwrite is given when one exists) no longer hold
        p.unlink(missing_ok=True)
    for case, fusion, paths, img, extended in results:
        cleaned = keep_input_labels(fusion.semantic, extended)
        save_image(fusion.instance, img.affine, paths["vert"], overwrite=overwrite, dtype=np.uint8, like=img)
        save_image(cleaned, img.affine, paths["spine"], overwrite=overwrite, dtype=np.uint8, like=img)
        write_text(paths["ctd"], centroids_json(fusion, img.affine, img.shape), overwrite=overwrite)
        write_text(paths["info"], sidecar_json(fusion, str(img.path)), overwrite=overwrite)
        if "discs" in paths:
            data, disc_report = disc_labels_from_instances(Image(fusion.instance, img.affine, img.path))
            save_image(data, img.affine, paths["discs"], overwrite=overwrite, dtype=np.uint8, like=img)
            disc_reports[case] = disc_report
        if "snp" in paths:
            plot_vertebra_instances(
                fusion.instance,
                img.affine,
                paths["snp"],
                semantic=fusion.semantic,
                image=_snapshot_image(image, case, img),
                names={v: fusion.label_name(v) for v in fusion.vertebra_ids()},
                title=f"{case}: {len(fusion.vertebrae)} vertebrae",
                overwrite=overwrite,
            )
    return FuseReport([(case, fusion, paths) for case, fusion, paths, _, _ in results], disc_reports)


def _snapshot_image(image: str | os.PathLike | None, case: str, semantic: Image) -> np.ndarray | None:
    """The image to draw the snapshot over: ``image`` itself (a file), or ``<case>.nii[.gz]`` in it (a folder);
    None when not given or not found. An image on another grid than the semantic mask is an InputError."""
    if image is None:
        return None
    from nnunet_spine.core.bids import find_by_stem
    from nnunet_spine.core.io import check_same_grid

    p = Path(image)
    if p.is_dir():
        p = find_by_stem(p, case)
        if p is None:
            return None
    img = load_image(p, "image")
    check_same_grid(semantic, img)
    return np.asarray(img.data, np.float32)


def disc_labels_for(discfile: str | os.PathLike | None, case: str) -> list | None:
    """The SCT disc labels of ``case`` (``--discfile``): ``discfile`` itself (a file) or, in a folder, the first of
    ``<case>_label-discs_dlabel``, ``<case>_labels-disc-manual``, ``<case>_desc-<rater>_label-discs_dlabel``
    (:data:`core.manual_masks.MASK_SUFFIXES`) found under it; None when not given; InputError naming what is
    missing."""
    if discfile is None:
        return None
    from nnunet_spine.postprocessing.spine.sct_discs import read_disc_labels

    return read_disc_labels(_disc_input(discfile, case))


def _disc_input(discfile: str | os.PathLike, case: str) -> Path:
    """The disc label file of ``case`` that ``--discfile`` names (:func:`disc_labels_for`)."""
    from nnunet_spine.core.manual_masks import find_mask_under

    p = Path(discfile)
    if p.is_dir():
        hit = find_mask_under(p, case, "discs")
        if hit is None:
            raise InputError(f"{p}: no disc label file {case}_label-discs_dlabel.nii.gz for case {case} (--discfile)")
        p = hit
    elif not p.exists():
        raise InputError(f"{p}: not found (--discfile)")
    return p


def _landmark_map(landmarks: str | os.PathLike | None, case: str, semantic: Image) -> np.ndarray | None:
    """The landmark label map of ``case`` on the semantic mask's grid (nearest-neighbour resampling from another
    grid): ``landmarks`` itself (a file) or ``<case>.nii[.gz]`` in it (a folder); InputError naming what is
    missing."""
    if landmarks is None:
        return None
    from nnunet_spine.core.bids import find_by_stem
    from nnunet_spine.core.geometry import resample_to_grid
    from nnunet_spine.core.io import same_grid

    p = Path(landmarks)
    if p.is_dir():
        hit = find_by_stem(p, case)
        if hit is None:
            raise InputError(f"{p}: no landmark prediction {case}.nii.gz for case {case} (--landmarks)")
        p = hit
    img = load_image(p, "labels")
    if same_grid(semantic, img):
        return np.asarray(img.data)
    return resample_to_grid(np.asarray(img.data, np.float32), img.affine, semantic.shape, semantic.affine, order=0)
