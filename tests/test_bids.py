"""nnunet_spine.core.bids: BIDS name parsing and discovery on hand-built tiny trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_spine.core.bids import (
    CORD_SEG,
    LESION_SEG,
    ImageSpec,
    build_name,
    case_name,
    derivative_path,
    find_by_stem,
    find_derivative,
    find_subjects,
    find_units,
    list_images,
    parse_name,
    select_images,
    split_subject,
)
from nnunet_spine.core.io import InputError, require_folder


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ================================================================================================ names
def test_parse_image_name_entities_and_suffix():
    n = parse_name("sub-01_ses-1_acq-ax_T2w")
    assert n.entities == (("sub", "01"), ("ses", "1"), ("acq", "ax")) and n.suffix == "T2w"
    assert (n.subject, n.session, n.get("acq"), n.get("ce")) == ("sub-01", "ses-1", "ax", None)
    assert n.source is None and n.image_stem == "sub-01_ses-1_acq-ax_T2w"
    assert parse_name("sub-01_T2w.nii.gz").suffix == "T2w"  # the file ending is dropped
    assert parse_name("sub-01_flip-1_mt-on_MTS").get("mt") == "on"


@pytest.mark.parametrize(
    "name, source, entities, suffix",
    [
        ("sub-01_T2w_label-SC_seg", "sub-01_T2w", (("label", "SC"),), "seg"),
        ("sub-01_ses-2_acq-sag_T2w_label-lesion_seg", "sub-01_ses-2_acq-sag_T2w", (("label", "lesion"),), "seg"),
        ("sub-01_T2w_seg-spine_msk", "sub-01_T2w", (("seg", "spine"),), "msk"),
        ("sub-01_T1w_desc-crop_label-SC_softseg", "sub-01_T1w", (("desc", "crop"), ("label", "SC")), "softseg"),
        ("sub-01_T2w_softseg", "sub-01_T2w", (), "softseg"),
    ],
)
def test_parse_derivative_names(name, source, entities, suffix):
    n = parse_name(name)
    assert n.source.name == source and n.image_stem == source
    assert n.entities == entities and n.suffix == suffix
    assert n.subject == "sub-01"
    assert n.get("sub") == "01"  # entities of the image are reachable from the derivative


def test_nested_derivative_keeps_the_image():
    n = parse_name("sub-01_T2w_label-SC_seg_labeled")
    assert n.suffix == "labeled" and n.source.name == "sub-01_T2w_label-SC_seg"
    assert n.source.source.name == "sub-01_T2w"


@pytest.mark.parametrize(
    "name",
    [
        "t2_fake_lesion",
        "t2",
        "T2w",
        "sub-01",
        "subject-01_T2w",
        "sub-01_acq-a-b_T2w",
        "sub-01_T2w_label-SC_",
        "sub-01__T2w",
        "ses-1_sub-01_T2w",
        "",
    ],
)
def test_non_bids_names(name):
    assert parse_name(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "sub-01_T2w",
        "sub-01_ses-1_acq-ax_rec-x_T2w",
        "sub-01_T2w_label-SC_seg",
        "sub-01_acq-sag_T2w_seg-spine_msk",
        "sub-01_T2w_label-SC_seg_labeled",
    ],
)
def test_names_build_back(name):
    assert parse_name(name).name == name


def test_build_name():
    assert build_name([("sub", "01"), ("acq", "ax")], "T2w") == "sub-01_acq-ax_T2w"
    assert build_name([("label", "SC")], "seg", source="sub-01_T2w") == "sub-01_T2w_label-SC_seg"
    assert build_name([], "T1w") == "T1w"


def test_split_subject():
    assert split_subject("sub-01_flip-1_mt-on_MTS") == ("sub-01", "flip-1_mt-on_MTS")
    assert split_subject("sub-01_ses-2_T2w") == ("sub-01", "ses-2_T2w")
    assert split_subject("sub-01") == ("sub-01", "")
    assert split_subject("t2_seg") == ("", "t2_seg")


def test_case_name_strips_one_known_suffix():
    assert case_name(Path("/x/sub-01_T2w_label-SC_seg.nii.gz")) == "sub-01_T2w"
    assert case_name("sub-01_T2w_label-SC_softseg.nii") == "sub-01_T2w"
    assert case_name("sub-01_T2w_softseg.nii.gz") == "sub-01_T2w"
    assert case_name("sub-01_T2w.nii.gz") == "sub-01_T2w"
    assert case_name("sub-01_T2w_label-lesion_seg.nii.gz", [LESION_SEG]) == "sub-01_T2w"
    assert case_name("sub-01_T2w_label-lesion_seg.nii.gz", [CORD_SEG]) == "sub-01_T2w_label-lesion_seg"
    assert case_name("t2_seg.nii.gz") == "t2"  # non-BIDS names too
    assert case_name("_seg.nii.gz") == "_seg"  # never an empty case name


def test_image_spec():
    spec = ImageSpec.parse("acq-sag_T2w")
    assert spec.entities == (("acq", "sag"),) and spec.suffix == "T2w" and spec.text == "acq-sag_T2w"
    assert spec.matches(parse_name("sub-01_acq-sag_T2w"))
    assert spec.matches(parse_name("sub-01_ses-1_acq-sag_rec-x_T2w"))  # extra entities are fine
    assert not spec.matches(parse_name("sub-01_acq-ax_T2w"))
    assert not spec.matches(parse_name("sub-01_acq-sag_T1w"))
    assert not spec.matches(parse_name("sub-01_acq-sag_T2w_label-SC_seg"))  # a mask is not an image
    assert ImageSpec.parse("T2w").matches(parse_name("sub-01_acq-sag_T2w"))
    for bad in ("", "acq_T2w", "acq-sag_", "sub-01_T2w", "ses-1_T2w", "T2w_acq-sag"):
        with pytest.raises(ValueError):
            ImageSpec.parse(bad)


# ============================================================================================ discovery
@pytest.fixture()
def tree(tmp_path) -> Path:
    """sub-01: T2w, acq-sag_T2w, T1w (masks for T2w in derivatives, for T1w beside the image);
    sub-02: ses-1 and ses-2 (T2w each, mask only in ses-1), plus a stray file; sub-03: empty anat; a file sub-04."""
    root = tmp_path / "bids"
    labels = root / "derivatives/labels"
    for name in ("sub-01_T2w", "sub-01_acq-sag_T2w", "sub-01_T1w"):
        touch(root / "sub-01/anat" / f"{name}.nii.gz")
    touch(labels / "sub-01/anat/sub-01_T2w_label-SC_seg.nii.gz")
    touch(labels / "sub-01/anat/sub-01_T2w_label-lesion_seg.nii")
    touch(root / "sub-01/anat/sub-01_T1w_label-SC_seg.nii.gz")  # side by side
    touch(root / "sub-01/anat/sub-01_T2w.json")
    for ses in ("ses-1", "ses-2"):
        touch(root / "sub-02" / ses / "anat" / f"sub-02_{ses}_T2w.nii.gz")
    touch(labels / "sub-02/ses-1/anat/sub-02_ses-1_T2w_label-SC_seg.nii.gz")
    touch(root / "sub-02/ses-1/anat/t2_other.nii.gz")
    (root / "sub-03/anat").mkdir(parents=True)
    touch(root / "sub-04")
    return root


def test_find_subjects_and_units(tree):
    assert find_subjects(tree) == ["sub-01", "sub-02", "sub-03"]  # the file sub-04 is not a subject
    units = find_units(tree)
    assert [(u.subject, u.session, u.rel_dir, u.name) for u in units] == [
        ("sub-01", "", "sub-01/anat", "sub-01"),
        ("sub-02", "ses-1", "sub-02/ses-1/anat", "sub-02_ses-1"),
        ("sub-02", "ses-2", "sub-02/ses-2/anat", "sub-02_ses-2"),
        ("sub-03", "", "sub-03/anat", "sub-03"),
    ]


def test_list_images_leaves_out_masks_beside_images_and_warns_on_strangers(tree):
    u1, u21, *_ = find_units(tree)
    images, warnings = list_images(u1)
    assert [im.stem for im in images] == ["sub-01_T1w", "sub-01_T2w", "sub-01_acq-sag_T2w"]
    assert [im.contrast for im in images] == ["T1w", "T2w", "acq-sag_T2w"]
    assert warnings == []
    images, warnings = list_images(u21)
    assert [im.contrast for im in images] == ["T2w"] and images[0].parsed.session == "ses-1"
    assert len(warnings) == 1 and "t2_other.nii.gz" in warnings[0] and "sub-02_ses-1_" in warnings[0]


def test_select_images_by_spec(tree):
    images, _ = list_images(find_units(tree)[0])
    assert [im.stem for im in select_images(images, "T2w")] == ["sub-01_T2w"]  # the exact contrast wins
    assert [im.stem for im in select_images(images, "acq-sag_T2w")] == ["sub-01_acq-sag_T2w"]
    assert [im.stem for im in select_images(images, "T1w")] == ["sub-01_T1w"]
    assert select_images(images, "T9w") == []
    no_plain = [im for im in images if im.contrast != "T2w"]
    assert [im.stem for im in select_images(no_plain, "T2w")] == ["sub-01_acq-sag_T2w"]  # by suffix


def test_find_derivative_under_derivatives_or_beside_the_image(tree):
    images, _ = list_images(find_units(tree)[0])
    by = {im.contrast: im for im in images}
    labels = tree / "derivatives/labels/sub-01/anat"
    assert find_derivative(tree, by["T2w"], CORD_SEG) == labels / "sub-01_T2w_label-SC_seg.nii.gz"
    assert find_derivative(tree, by["T2w"], LESION_SEG) == labels / "sub-01_T2w_label-lesion_seg.nii"  # .nii too
    assert find_derivative(tree, by["T1w"], CORD_SEG) == tree / "sub-01/anat/sub-01_T1w_label-SC_seg.nii.gz"
    assert find_derivative(tree, by["acq-sag_T2w"], CORD_SEG) is None  # missing mask
    assert find_derivative(tree, by["T2w"], CORD_SEG, pipeline="manual") is None
    assert derivative_path(tree, by["acq-sag_T2w"], CORD_SEG) == labels / "sub-01_acq-sag_T2w_label-SC_seg.nii.gz"
    ses2 = list_images(find_units(tree)[2])[0][0]
    assert find_derivative(tree, ses2, CORD_SEG) is None
    ses1 = list_images(find_units(tree)[1])[0][0]
    assert find_derivative(tree, ses1, CORD_SEG) == (
        tree / "derivatives/labels/sub-02/ses-1/anat" / "sub-02_ses-1_T2w_label-SC_seg.nii.gz"
    )


def test_find_by_stem_searches_recursively(tree):
    hit = find_by_stem(tree / "derivatives", "sub-02_ses-1_T2w_label-SC_seg")
    assert hit == tree / "derivatives/labels/sub-02/ses-1/anat/sub-02_ses-1_T2w_label-SC_seg.nii.gz"
    assert find_by_stem(tree, "sub-01_T2w_label-lesion_seg").name.endswith(".nii")
    assert find_by_stem(tree, "sub-09_T2w") is None


def test_missing_root_and_file_instead_of_folder(tmp_path):
    with pytest.raises(InputError, match="dataset folder not found"):
        find_subjects(tmp_path / "nope")
    touch(tmp_path / "file")
    with pytest.raises(InputError, match="is a file, expected a dataset folder"):
        find_units(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sub-"):
        find_subjects(tmp_path / "empty")
    assert require_folder(tmp_path) == tmp_path
