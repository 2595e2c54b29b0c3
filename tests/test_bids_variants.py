"""Real BIDS datasets as they come: mask naming variants, their order of preference, ``--mask-suffix``, the old
``T2star`` suffix, ``run-``/``acq-``/``ses-`` entities, one contrast, unlabelled runs and ``--group-by``, on small
hand-made trees (and on the real Grey Matter Challenge data when ``../shared/data`` is there)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nnunet_spine.core import bids, manual_masks
from nnunet_spine.core.io import InputError, load_image, save_image
from nnunet_spine.dataset_converters import lesion, softgt
from nnunet_spine.dataset_converters.splits import grouped_folds, grouping_warning, subject_groups

GM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gm_challenge"
#: Thick-slice axial grid as in the Grey Matter Challenge: 0.5 mm in-plane, 3 mm slices (RAS).
ZOOMS = (0.5, 0.5, 3.0)
SHAPE = (32, 32, 6)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def cord_mask(radius_mm: float = 3.2, centre_shift_mm: float = 0.0) -> np.ndarray:
    """A binary cylinder along the third (S-I) axis: voxel centres within ``radius_mm`` of the in-plane centre."""
    x, y = np.meshgrid(*(np.arange(n) * z for n, z in zip(SHAPE[:2], ZOOMS[:2])), indexing="ij")
    cx = cy = (SHAPE[0] - 1) * ZOOMS[0] / 2
    disk = (x - cx - centre_shift_mm) ** 2 + (y - cy) ** 2 <= radius_mm**2
    return np.repeat(disk[:, :, None], SHAPE[2], axis=2).astype(np.uint8)


def write_pair(root: Path, rel_dir: str, stem: str, suffix: str | None, beside: bool = False) -> tuple[Path, Path]:
    """An image ``<rel_dir>/<stem>.nii.gz`` and, unless ``suffix`` is None, its mask ``<stem><suffix>`` under
    ``derivatives/labels/<rel_dir>`` (or beside the image)."""
    aff = np.diag([*ZOOMS, 1.0])
    rng = np.random.default_rng(len(stem))
    image = root / rel_dir / f"{stem}.nii.gz"
    if not image.exists():  # a second mask of the same image
        save_image((100 + 50 * cord_mask() + rng.normal(0, 3, SHAPE)).astype(np.float32), aff, image)
    if suffix is None:
        return image, None
    folder = root / rel_dir if beside else root / "derivatives" / "labels" / rel_dir
    return image, save_image(cord_mask(), aff, folder / f"{stem}{suffix}.nii.gz")


# ================================================================================================ names
@pytest.mark.parametrize(
    "name, image, suffix",
    [
        ("sub-9709Ses1_run-1_T2starw_seg-manual", "sub-9709Ses1_run-1_T2starw", "seg-manual"),
        ("sub-01_T2w_lesion-manual", "sub-01_T2w", "lesion-manual"),
        ("sub-01_T2w_labels-disc-manual", "sub-01_T2w", "labels-disc-manual"),
        ("sub-01_ses-2_acq-ax_T2w_desc-rater1_label-SC_seg", "sub-01_ses-2_acq-ax_T2w", "seg"),
    ],
)
def test_older_sct_mask_names_parse_as_derivatives_of_their_image(name, image, suffix):
    n = bids.parse_name(name)
    assert n.source.name == image and n.suffix == suffix and n.name == name
    assert bids.parse_name("sub-01_acq-ax") is None  # an entity is a suffix only after an image's name


def test_old_t2star_suffix_is_t2starw():
    spec = bids.ImageSpec.parse("T2starw")
    assert spec.matches(bids.parse_name("sub-01_T2star")) and spec.matches(bids.parse_name("sub-01_run-2_T2starw"))
    assert bids.ImageSpec.parse("T2star").matches(bids.parse_name("sub-01_T2starw"))
    assert not spec.matches(bids.parse_name("sub-01_T2w"))


@pytest.mark.parametrize(
    "subject, found",
    [("sub-9709Ses1", ("9709", "1")), ("sub-10062Ses2", ("10062", "2")), ("sub-01ses3", ("01", "3")),
     ("sub-9604", None), ("sub-Sessa", None)],
)  # fmt: skip
def test_session_written_into_the_subject_label(subject, found):
    assert bids.session_in_label(subject) == found


# ========================================================================================= mask lookup
#: The documented order of preference for cord masks (docs/cord.md), written out by hand.
CORD_ORDER = ["_label-SC_seg", "_seg-manual", "_desc-rater1_label-SC_seg", "_desc-rater2_label-SC_seg", "_seg"]


def _image(root: Path, stem: str = "sub-01_T2w") -> bids.BidsImage:
    touch(root / "sub-01/anat" / f"{stem}.nii.gz")
    unit = bids.find_units(root)[0]
    return next(im for im in bids.list_images(unit)[0] if im.stem == stem)


def test_cord_masks_are_picked_in_the_documented_order(tmp_path):
    labels = tmp_path / "derivatives/labels/sub-01/anat"
    for s in CORD_ORDER:
        touch(labels / f"sub-01_T2w{s}.nii.gz")
    touch(labels / "sub-01_T2w_gmseg-manual.nii.gz")  # grey matter: never a cord mask
    touch(labels / "sub-01_T2w_label-lesion_seg.nii.gz")  # a lesion mask: not a cord mask either
    image = _image(tmp_path)
    for i, s in enumerate(CORD_ORDER):
        pick = manual_masks.find_mask(tmp_path, image, "cord")
        assert pick.path == labels / f"sub-01_T2w{s}.nii.gz" and pick.suffix == s
        assert [p.name for p in pick.others] == [f"sub-01_T2w{t}.nii.gz" for t in CORD_ORDER[i + 1 :]]
        assert ("picked" in pick.note()) == (i < len(CORD_ORDER) - 1)
        (labels / f"sub-01_T2w{s}.nii.gz").unlink()
    assert manual_masks.find_mask(tmp_path, image, "cord") is None


def test_mask_suffix_chooses_one_naming(tmp_path):
    labels = tmp_path / "derivatives/labels/sub-01/anat"
    for s in CORD_ORDER:
        touch(labels / f"sub-01_T2w{s}.nii.gz")
    image = _image(tmp_path)
    assert manual_masks.find_mask(tmp_path, image, "cord", "_seg").path.name == "sub-01_T2w_seg.nii.gz"
    rater = manual_masks.find_mask(tmp_path, image, "cord", "_desc-*_label-SC_seg")
    assert rater.suffix == "_desc-rater1_label-SC_seg" and [p.name for p in rater.others] == [
        "sub-01_T2w_desc-rater2_label-SC_seg.nii.gz"
    ]
    assert manual_masks.find_mask(tmp_path, image, "cord", "_label-SC_softseg") is None
    with pytest.raises(InputError, match="--mask-suffix"):
        manual_masks.find_mask(tmp_path, image, "cord", "seg-manual")


@pytest.mark.parametrize(
    "kind, suffix",
    [("lesion", "_label-lesion_seg"), ("lesion", "_lesion-manual"), ("lesion", "_desc-rater1_label-lesion_seg"),
     ("discs", "_label-discs_dlabel"), ("discs", "_labels-disc-manual")],
)  # fmt: skip
def test_lesion_and_disc_namings(tmp_path, kind, suffix):
    mask = touch(tmp_path / "derivatives/labels/sub-01/anat" / f"sub-01_T2w{suffix}.nii.gz")
    touch(tmp_path / "derivatives/labels/sub-01/anat/sub-01_T2w_seg-manual.nii.gz")  # a cord mask, not this kind
    pick = manual_masks.find_mask(tmp_path, _image(tmp_path), kind)
    assert pick.path == mask and pick.suffix == suffix and pick.others == ()
    assert manual_masks.mask_image_stem(mask, kind) == "sub-01_T2w"


def test_masks_beside_the_image_and_nii_endings(tmp_path):
    beside = touch(tmp_path / "sub-01/anat/sub-01_T2w_seg-manual.nii")
    image = _image(tmp_path)
    assert [im.stem for im in bids.list_images(bids.find_units(tmp_path)[0])[0]] == ["sub-01_T2w"]  # not an image
    assert manual_masks.find_mask(tmp_path, image, "cord").path == beside


def test_masks_found_by_stem_under_a_folder_follow_the_order_of_preference(tmp_path):
    """``--discfile FOLDER``: any depth, today's naming before SCT's older one before a rater's (sorted paths);
    a rater label with an underscore, another case and another kind never match."""
    d = tmp_path / "discs"
    touch(d / "sub-01_T2w_desc-b_label-discs_dlabel.nii.gz")
    rater = touch(d / "a/sub-01_T2w_desc-a_label-discs_dlabel.nii.gz")
    touch(d / "sub-01_T2w_desc-x_y_label-discs_dlabel.nii.gz")
    touch(d / "sub-01_T2w_run-1_label-discs_dlabel.nii.gz")
    touch(d / "sub-01_T2w_label-SC_seg.nii.gz")
    assert manual_masks.find_mask_under(d, "sub-01_T2w", "discs") == rater
    older = touch(d / "deep/er/sub-01_T2w_labels-disc-manual.nii")
    assert manual_masks.find_mask_under(d, "sub-01_T2w", "discs") == older
    today = touch(d / "z/sub-01_T2w_label-discs_dlabel.nii.gz")
    assert manual_masks.find_mask_under(d, "sub-01_T2w", "discs") == today
    assert manual_masks.find_mask_under(d, "sub-02_T2w", "discs") is None


def test_orphan_masks_name_the_image_they_miss(tmp_path):
    touch(tmp_path / "sub-01/anat/sub-01_run-2_T2starw.nii.gz")
    orphan = touch(tmp_path / "derivatives/labels/sub-01/anat/sub-01_run-1_T2starw_seg-manual.nii.gz")
    touch(tmp_path / "derivatives/labels/sub-01/anat/sub-01_run-1_T2starw_gmseg-manual.nii.gz")
    unit = bids.find_units(tmp_path)[0]
    images, _ = bids.list_images(unit)
    assert manual_masks.orphan_masks(tmp_path, unit, images) == [(orphan, "sub-01_run-1_T2starw")]


# ============================================================================================ softgt
@pytest.mark.parametrize("suffix", ["_label-SC_seg", "_seg-manual", "_desc-rater1_label-SC_seg", "_seg"])
def test_softgt_converts_each_cord_naming(tmp_path, suffix):
    root = tmp_path / "bids"
    write_pair(root, "sub-01/anat", "sub-01_T2w", suffix)
    report = softgt.convert(root, derivatives_out=tmp_path / "out")
    (c,) = report.subjects[0].contrasts
    assert c.mask_suffix == suffix and c.mask == f"derivatives/labels/sub-01/anat/sub-01_T2w{suffix}.nii.gz"
    assert report.mask_counts() == {suffix: 1}
    assert any(f"1 x {suffix}" in line for line in report.lines())


def test_softgt_one_contrast_thick_slices_runs_and_sessions(tmp_path):
    """One contrast (old name T2star), a session folder, acq- and run- entities, labels on run-1 only: run-1 is the
    only case, run-2 is listed, the reference is the one labelled contrast, and the soft mask is that mask's own
    partial volume (sidecar says no averaging), with the binary mask's volume."""
    root = tmp_path / "bids"
    rel = "sub-01/ses-02/anat"
    image, mask = write_pair(root, rel, "sub-01_ses-02_acq-ax_run-1_T2star", "_seg-manual")
    write_pair(root, rel, "sub-01_ses-02_acq-ax_run-2_T2star", None)
    report = softgt.convert(
        root, derivatives_out=tmp_path / "out", nnunet_dataset=777, name="Variants", raw_root=tmp_path / "raw"
    )
    assert report.unlabelled == [f"{rel}/sub-01_ses-02_acq-ax_run-2_T2star.nii.gz"]
    (s,) = report.subjects
    assert s.reference == "acq-ax_run-1_T2star" and s.averaged_across_contrasts is False
    raw = tmp_path / "raw" / "Dataset777_Variants"
    assert sorted(p.name for p in (raw / "labelsTr").iterdir()) == ["sub-01_ses-02_acq-ax_run-1_T2star.nii.gz"]
    soft_path = tmp_path / "out/labels_softseg" / rel / "sub-01_ses-02_acq-ax_run-1_T2star_label-SC_softseg.nii.gz"
    sidecar = json.loads(soft_path.with_name(soft_path.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["AveragedAcrossContrasts"] is False and "no averaging" in sidecar["ContrastAveraging"]
    assert sidecar["InputMaskSuffix"] == "_seg-manual"
    facts = json.loads((raw / "dataset.json").read_text())["nnspine"]
    assert facts["unlabelled_images"] == report.unlabelled and facts["masks_by_suffix"] == {"_seg-manual": 1}

    soft = load_image(soft_path, "soft").data.astype(np.float64)
    binary = cord_mask().astype(bool)
    voxel = float(np.prod(ZOOMS))
    assert soft.sum() * voxel == pytest.approx(binary.sum() * voxel, rel=0.005)  # volume kept
    # in-plane partial volume only: every slice alike (a cylinder), 1 deep inside, 0 far outside
    assert np.allclose(soft[:, :, 1:-1], soft[:, :, 2:3], atol=1e-6)
    assert soft[cord_mask(radius_mm=2.0).astype(bool)].min() == 1.0
    assert soft[~cord_mask(radius_mm=4.5).astype(bool)].max() == 0.0
    edge = binary ^ cord_mask(radius_mm=2.6).astype(bool)
    assert 0.3 < soft[edge].mean() < 1.0


def test_softgt_reference_default_with_several_contrasts_is_t2w(tmp_path):
    root = tmp_path / "bids"
    write_pair(root, "sub-01/anat", "sub-01_T2w", "_seg-manual")
    write_pair(root, "sub-01/anat", "sub-01_T1w", "_label-SC_seg")
    report = softgt.convert(root, derivatives_out=tmp_path / "out")
    (s,) = report.subjects
    assert s.reference == "T2w" and s.averaged_across_contrasts is True
    assert {c.entities: c.mask_suffix for c in s.contrasts} == {"T1w": "_label-SC_seg", "T2w": "_seg-manual"}


def test_softgt_grey_matter_masks_alone_convert_nothing(tmp_path):
    root = tmp_path / "bids"
    write_pair(root, "sub-01/anat", "sub-01_T2starw", "_gmseg-manual")
    with pytest.raises(InputError, match="no image with a cord mask"):
        softgt.convert(root, derivatives_out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_softgt_mask_for_a_missing_run_is_bad_input(tmp_path):
    root = tmp_path / "bids"
    write_pair(root, "sub-01/anat", "sub-01_run-1_T2starw", "_seg-manual")
    image, mask = write_pair(root, "sub-02/anat", "sub-02_run-1_T2starw", "_seg-manual")
    image.rename(image.with_name("sub-02_run-2_T2starw.nii.gz"))  # the image was renamed, its mask not
    with pytest.raises(InputError, match="sub-02_run-1_T2starw_seg-manual.nii.gz: cord mask of sub-02_run-1_T2starw"):
        softgt.convert(root, derivatives_out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ============================================================================================ lesion
@pytest.mark.parametrize("suffix", ["_label-lesion_seg", "_lesion-manual", "_desc-rater1_label-lesion_seg"])
def test_lesion_converter_reads_each_lesion_naming_and_t2star(tmp_path, suffix):
    root = tmp_path / "bids"
    for sub in ("sub-01", "sub-02"):
        write_pair(root, f"{sub}/anat", f"{sub}_T2star", suffix)
        write_pair(root, f"{sub}/anat", f"{sub}_T2star", "_seg-manual")  # the cord mask for --regions
    report = lesion.convert(
        root, nnunet_dataset=778, name="LesionVariants", raw_root=tmp_path / "raw", channels="T2starw", regions=True
    )
    assert [c.case for c in report.cases] == ["sub-01_T2star", "sub-02_T2star"]
    assert all(c.lesion_mask.endswith(f"_T2star{suffix}.nii.gz") for c in report.cases)
    assert all(c.cord_mask.endswith("_T2star_seg-manual.nii.gz") for c in report.cases)


# ======================================================================================== grouping
def test_group_by_names_persons_and_keeps_them_in_one_fold():
    subjects = ["sub-9418", "sub-9584", "sub-9604", "sub-9669", "sub-9709Ses1", "sub-9709Ses2", "sub-10062Ses1",
                "sub-10062Ses2"]  # fmt: skip
    persons = subject_groups(subjects, "^([0-9]+)")
    assert persons["sub-9709Ses1"] == persons["sub-9709Ses2"] == "9709" and persons["sub-9604"] == "9604"
    assert len(set(persons.values())) == 6
    folds = grouped_folds({f"{s}_T2starw": persons[s] for s in subjects})
    assert len(folds) == 5
    for f in folds:
        for a, b in (("sub-9709Ses1", "sub-9709Ses2"), ("sub-10062Ses1", "sub-10062Ses2")):
            assert (f"{a}_T2starw" in f["val"]) == (f"{b}_T2starw" in f["val"])
    assert subject_groups(["sub-01"], None) == {"sub-01": "sub-01"}
    assert grouping_warning(subjects, "^([0-9]+)") is None
    assert "sub-9709Ses1, sub-9709Ses2" in grouping_warning(subjects, None) or "sub-10062Ses1" in grouping_warning(
        subjects, None
    )
    assert grouping_warning(["sub-01", "sub-02"], None) is None


@pytest.mark.parametrize(
    "regex, message", [("([0-9]+", "not a regular expression"), ("^(x)", "sub-9604"), ("^x", "sub-9604"),
                       ("^(x*)", "sub-9604")],
)  # fmt: skip
def test_bad_group_by_is_bad_input(regex, message):
    with pytest.raises(InputError, match=message):
        subject_groups(["sub-9604"], regex)
    assert subject_groups(["sub-9604", "sub-9709Ses2"], "^[0-9]+") == {"sub-9604": "9604", "sub-9709Ses2": "9709"}


def _nnspine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *args], capture_output=True, text=True)


def test_cli_group_by_and_its_warning(tmp_path):
    """sub-7Ses1/sub-7Ses2 are one person: without --group-by a warning names them; with it, they share a fold."""
    root = tmp_path / "bids"
    for sub in ("sub-7Ses1", "sub-7Ses2", "sub-8", "sub-9"):
        write_pair(root, f"{sub}/anat", f"{sub}_run-1_T2starw", "_seg-manual")
    common = ["convert", "softgt", "-i", str(root), "--raw-root", str(tmp_path / "raw"), "--name", "Grouped",
              "--nnunet-dataset", "779"]  # fmt: skip
    plain = _nnspine(*common, "--derivatives-out", str(tmp_path / "o1"))
    assert plain.returncode == 0, plain.stderr
    assert "warning: subject labels look like <id>Ses<k> (sub-7Ses1, sub-7Ses2)" in plain.stderr
    grouped = _nnspine(*common, "--derivatives-out", str(tmp_path / "o2"), "--group-by", "^([0-9]+)", "--overwrite")
    assert grouped.returncode == 0, grouped.stderr
    assert "Ses<k>" not in grouped.stderr and "3 persons" in grouped.stdout
    folds = json.loads((tmp_path / "raw/Dataset779_Grouped/splits_final.json").read_text())
    assert len(folds) == 3
    assert ["sub-7Ses1_run-1_T2starw", "sub-7Ses2_run-1_T2starw"] in [f["val"] for f in folds]


def test_cli_mask_suffix_picks_one_rater(tmp_path):
    root = tmp_path / "bids"
    write_pair(root, "sub-01/anat", "sub-01_T2w", "_label-SC_seg")
    write_pair(root, "sub-01/anat", "sub-01_T2w", "_desc-rater2_label-SC_seg")
    default = _nnspine("convert", "softgt", "-i", str(root), "--derivatives-out", str(tmp_path / "o1"))
    assert default.returncode == 0, default.stderr
    assert "cord masks used: 1 x _label-SC_seg (order of preference)" in default.stdout
    assert "picked sub-01_T2w_label-SC_seg.nii.gz over sub-01_T2w_desc-rater2_label-SC_seg.nii.gz" in default.stderr
    rater = _nnspine("convert", "softgt", "-i", str(root), "--derivatives-out", str(tmp_path / "o2"),
                     "--mask-suffix", "_desc-*_label-SC_seg")  # fmt: skip
    assert rater.returncode == 0, rater.stderr
    assert "1 x _desc-rater2_label-SC_seg (--mask-suffix _desc-*_label-SC_seg)" in rater.stdout
    sidecar = next((tmp_path / "o2").rglob("*_label-SC_softseg.json"))
    assert json.loads(sidecar.read_text())["InputMask"].endswith("sub-01_T2w_desc-rater2_label-SC_seg.nii.gz")


# ======================================================================================== real data
@pytest.mark.skipif(not GM.is_dir(), reason=f"real test data absent: {GM} (see ../shared/data/README.md)")
def test_gm_challenge_converts_eight_sessions_into_six_persons(tmp_path):
    report = softgt.convert(
        GM, derivatives_out=tmp_path / "out", nnunet_dataset=780, name="GM", raw_root=tmp_path / "raw",
        group_by="^([0-9]+)",
    )  # fmt: skip
    assert report.num_cases == 8 and report.splits.n_subjects == 6 and report.splits.n_folds == 5
    assert report.mask_counts() == {"_seg-manual": 8}
    assert len(report.unlabelled) == 8 and all("_run-2_T2starw" in u for u in report.unlabelled)
    assert all(not s.averaged_across_contrasts and s.reference == "run-1_T2starw" for s in report.subjects)
