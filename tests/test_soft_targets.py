"""Soft targets: preprocessing beside nnU-Net's data (``nnspine preprocess-soft``) and the deep-supervision pyramid.

The preprocessed toy dataset (real ``nnUNetv2_plan_and_preprocess`` + ``nnspine preprocess-soft``) is built
once per session by :func:`nnunet_helpers.prepared_toy` (~25 s).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nnunet_helpers import TOY_ID, TOY_NAME, environ, prepared_toy, soft_blob

from nnunet_spine.cli import main as nnspine
from nnunet_spine.core.io import InputError
from nnunet_spine.integration.soft_targets import layout, preprocess
from nnunet_spine.integration.soft_targets.deep_supervision import DownsampleSoftTargetForDSTransform


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return prepared_toy(tmp_path_factory)


def _cases(toy) -> list[str]:
    return sorted(p.name[:-4] for p in toy["data"].glob("*.pkl"))


def _plans_and_config(toy):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(toy["plans"])
    return pm, pm.get_configuration("3d_fullres")


def _seg(toy, case) -> np.ndarray:
    import blosc2

    return blosc2.open(str(toy["data"] / f"{case}_seg.b2nd"), mode="r")[:]


def _soft(toy, case) -> np.ndarray:
    return layout.load_soft_target(toy["data"], case)[:]


# ============================================================================================ layout
def test_layout_beside_preprocessed_cases_and_invisible_to_nnunet(toy):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    cases = _cases(toy)
    assert len(cases) == 6
    folder = toy["data"] / layout.PREPROCESSED_SOFT_FOLDER
    assert sorted(p.name for p in folder.glob("*.b2nd")) == [f"{c}.b2nd" for c in cases]
    # nnU-Net still sees exactly its own cases (soft targets live in a sub-folder it ignores)
    cls = infer_dataset_class(str(toy["data"]))
    assert sorted(cls.get_identifiers(str(toy["data"]))) == cases
    manifest = json.loads((folder / layout.MANIFEST_NAME).read_text())
    assert manifest["configuration"] == "3d_fullres" and manifest["resampling"]["order"] == 1
    assert [c["case"] for c in manifest["cases"]] == cases
    # plans untouched: stock preprocessor and label manager
    plans = json.loads((toy["pre"] / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["preprocessor_name"] == "DefaultPreprocessor"
    assert plans["label_manager"] == "LabelManager"


def test_toy_dataset_exercises_transpose_crop_and_resampling(toy):
    """The toy dataset is only a meaningful test if nnU-Net transposed, cropped and resampled it."""
    from batchgenerators.utilities.file_and_folder_operations import load_pickle

    assert toy["plans"]["transpose_forward"] != [0, 1, 2]
    n_resampled = n_cropped = 0
    for case in _cases(toy):
        props = load_pickle(str(toy["data"] / f"{case}.pkl"))
        n_cropped += tuple(props["shape_before_cropping"]) != tuple(props["shape_after_cropping_and_before_resampling"])
        n_resampled += tuple(props["shape_after_cropping_and_before_resampling"]) != tuple(_seg(toy, case).shape[1:])
    assert n_cropped == 6 and n_resampled >= 5


# ============================================================================ agreement with nnU-Net
def test_soft_target_has_geometry_of_preprocessed_case_and_matches_label(toy):
    import blosc2

    for case in _cases(toy):
        soft = _soft(toy, case)
        data = blosc2.open(str(toy["data"] / f"{case}.b2nd"), mode="r")
        seg = _seg(toy, case)
        assert soft.dtype == np.float32 and soft.shape == data.shape == seg.shape
        assert soft.min() >= 0 and soft.max() <= 1
        fractional = (soft > 0.05) & (soft < 0.95)
        assert fractional.sum() > 100  # partial volume survived (nnU-Net would have binarized it)
        a, b = soft[0] > 0.5, seg[0] > 0
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice > 0.93, (case, dice)
        # the soft mask is where nnU-Net's label is: mean soft value inside vs outside the label
        assert soft[0][b].mean() > 0.8 and soft[0][~b].mean() < 0.05


def test_pipeline_reproduces_nnunet_label_preprocessing_exactly(toy):
    """Our transpose/crop/linear-resample applied to the *integer* label, thresholded at 0.5, must give
    exactly the label nnU-Net wrote (nnU-Net resamples labels with per-label linear interpolation + 0.5)."""
    from batchgenerators.utilities.file_and_folder_operations import load_pickle

    pm, cm = _plans_and_config(toy)
    rw = pm.image_reader_writer_class()
    for case in _cases(toy):
        props = load_pickle(str(toy["data"] / f"{case}.pkl"))
        label, _ = rw.read_seg(str(toy["raw"] / "labelsTr" / f"{case}.nii.gz"))
        ours = preprocess.preprocess_soft_array(label, props, pm, cm)
        seg = _seg(toy, case)
        assert ours.shape == seg.shape
        mismatch = int(((ours[0] >= 0.5) != (seg[0] > 0)).sum())
        assert mismatch == 0, (case, mismatch)


def test_preprocess_soft_array_is_linear_and_bounded(toy):
    """Soft values are resampled linearly: a constant mask stays constant, values stay in [0, 1]."""
    from batchgenerators.utilities.file_and_folder_operations import load_pickle

    pm, cm = _plans_and_config(toy)
    case = _cases(toy)[1]
    props = load_pickle(str(toy["data"] / f"{case}.pkl"))
    shape = tuple(np.array(props["shape_before_cropping"])[np.argsort(pm.transpose_forward)])
    const = np.full((1, *shape), 0.3, np.float32)
    out = preprocess.preprocess_soft_array(const, props, pm, cm)
    assert np.allclose(out, 0.3, atol=1e-5)
    with pytest.raises(InputError, match="differs from the image"):
        preprocess.preprocess_soft_array(np.zeros((1, 5, 5, 5), np.float32), props, pm, cm, name="x.nii.gz")


# ============================================================================================ errors
@pytest.fixture
def toy_copy(toy, tmp_path):
    """A private copy of the toy raw + preprocessed dataset (for tests that break it)."""
    base = tmp_path / "nn"
    for k in ("raw", "preprocessed"):
        shutil.copytree(Path(toy["env"][f"nnUNet_{k}"]), base / k)
    env = {
        "nnUNet_raw": str(base / "raw"),
        "nnUNet_preprocessed": str(base / "preprocessed"),
        "nnUNet_results": str(base / "results"),
    }
    raw = base / "raw" / TOY_NAME
    return env, raw


def _cli(env, *args) -> int:
    with environ(env):
        return nnspine(["preprocess-soft", "-d", str(TOY_ID), "-q", *args])


def test_cli_refuses_existing_outputs_and_overwrites_on_request(toy_copy, capsys):
    env, raw = toy_copy
    assert _cli(env) == 2
    assert "output exists" in capsys.readouterr().err
    assert _cli(env, "--overwrite") == 0


def _write_soft(raw: Path, case: str, data: np.ndarray, affine=None):
    f = raw / "labelsTr_soft" / f"{case}.nii.gz"
    ref = nib.load(str(f))
    nib.save(nib.Nifti1Image(data.astype(np.float32), ref.affine if affine is None else affine), str(f))
    return f


@pytest.mark.parametrize("problem", ["nan", "range", "grid", "affine", "missing_file", "missing_folder"])
def test_bad_soft_masks_are_reported_with_their_file(toy_copy, capsys, problem):
    env, raw = toy_copy
    case = "toy_002"
    f = raw / "labelsTr_soft" / f"{case}.nii.gz"
    soft = np.asanyarray(nib.load(str(f)).dataobj).astype(np.float32)
    expect = str(f)
    if problem == "nan":
        soft[3, 3, 3] = np.nan
        _write_soft(raw, case, soft)
        msg = "NaN"
    elif problem == "range":
        soft[3, 3, 3] = 1.7
        _write_soft(raw, case, soft)
        msg = r"\[0, 1\]"
    elif problem == "grid":
        _write_soft(raw, case, soft[:, :, :-2])
        msg = "grid"
    elif problem == "affine":
        aff = nib.load(str(f)).affine.copy()
        aff[0, 3] += 2.0
        _write_soft(raw, case, soft, aff)
        msg = "affine differs"
    elif problem == "missing_file":
        f.unlink()
        msg = "not found"
    else:
        shutil.rmtree(raw / "labelsTr_soft")
        expect = str(raw / "labelsTr_soft")
        msg = "not found"
    with pytest.raises(InputError, match=msg) as exc:
        with environ(env):
            preprocess.preprocess_soft(TOY_ID, overwrite=True, progress=False)
    assert expect in str(exc.value)
    # and through the CLI: exit 2, one line naming the file
    assert _cli(env, "--overwrite") == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err


def test_missing_dataset_plans_or_configuration(toy_copy, tmp_path, capsys):
    env, raw = toy_copy
    empty = {k: str(tmp_path / f"empty_{k}") for k in env}
    for v in empty.values():
        Path(v).mkdir()
    with environ(empty), pytest.raises(InputError, match="987"):
        preprocess.preprocess_soft(TOY_ID)
    with environ(env), pytest.raises(InputError, match="no configuration '2d_foo'"):
        preprocess.preprocess_soft(TOY_ID, ["2d_foo"], overwrite=True)
    with environ(env), pytest.raises(InputError, match="plans not found"):
        preprocess.preprocess_soft(TOY_ID, plans_identifier="NoSuchPlans", overwrite=True)
    assert _cli(empty) == 2


def test_deep_supervision_pyramid_of_soft_target_matches_label_pyramid():
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    scales = [[1, 1, 1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [0.25, 0.125, 0.125]]
    s = soft_blob((1, 1, 20, 32, 32))[0]
    seg = (s > 0.5).to(torch.int16)
    out = DownsampleSoftTargetForDSTransform(scales)(regression_target=s.clone(), segmentation=seg.clone())
    ref = DownsampleSegForDSTransform(scales)(segmentation=seg.clone())["segmentation"]
    assert isinstance(out["regression_target"], list)
    assert [tuple(t.shape) for t in out["regression_target"]] == [tuple(t.shape) for t in ref]
    assert torch.equal(out["segmentation"], seg)  # label untouched by this transform
    assert torch.equal(out["regression_target"][0], s)
    # area averaging keeps the partial-volume fraction: the mean is preserved when the scale divides the shape
    assert float(out["regression_target"][1].mean()) == pytest.approx(float(s.mean()), rel=1e-5)
    assert all(float(t.min()) >= 0 and float(t.max()) <= 1 for t in out["regression_target"])


# ================================================================================ the plans' resampling
def _with_resampling(toy, name: str, kwargs: dict):
    import copy

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = copy.deepcopy(toy["plans"])
    config = plans["configurations"]["3d_fullres"]
    config["resampling_fn_data"], config["resampling_fn_data_kwargs"] = name, kwargs
    pm = PlansManager(plans)
    return pm, pm.get_configuration("3d_fullres")


def test_soft_targets_follow_torch_resampling_plans(toy):
    """nnU-Net's *_torchres plans resample images with resample_torch_fornnunet (linear): soft targets go through
    that same function with the plans' arguments, not through scipy."""
    from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice
    from batchgenerators.utilities.file_and_folder_operations import load_pickle
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
    from nnunetv2.preprocessing.resampling.resample_torch import resample_torch_fornnunet

    torch_kwargs = {"is_seg": False, "force_separate_z": False, "memefficient_seg_resampling": False}
    pm, cm = _with_resampling(toy, "resample_torch_fornnunet", torch_kwargs)
    assert preprocess.soft_resampling(cm)["function"] == "resample_torch_fornnunet"
    case = _cases(toy)[0]
    props = load_pickle(str(toy["data"] / f"{case}.pkl"))
    label, _ = pm.image_reader_writer_class().read_seg(str(toy["raw"] / "labelsTr" / f"{case}.nii.gz"))
    soft = label.astype(np.float32) * 0.8
    ours = preprocess.preprocess_soft_array(soft, props, pm, cm)
    # independently: transpose, crop, then the torch function itself
    tf = list(pm.transpose_forward)
    arr = soft.transpose([0, *[i + 1 for i in tf]])[
        (slice(None), *bounding_box_to_slice(props["bbox_used_for_cropping"]))
    ]
    spacing = [props["spacing"][i] for i in tf]
    new_shape = compute_new_shape(arr.shape[1:], spacing, list(cm.spacing))
    expected = resample_torch_fornnunet(arr, new_shape, spacing, list(cm.spacing), **torch_kwargs)
    assert np.array_equal(ours, np.clip(np.asarray(expected), 0, 1).astype(np.float32))  # bit for bit
    # the default plans' scipy path is linear too, but not bit-identical (so the check above can fail): both
    # paths agree within 1e-5, i.e. the choice of plans does not change the soft targets materially
    pm_d, cm_d = _plans_and_config(toy)
    scipy_out = preprocess.preprocess_soft_array(soft, props, pm_d, cm_d)
    assert tuple(new_shape) != tuple(arr.shape[1:])  # the case is really resampled
    assert preprocess.soft_resampling(cm_d)["order"] == 1
    assert 0 < np.abs(scipy_out - ours).max() < 1e-5


def test_plans_with_another_resampling_are_refused_by_name(toy):
    _, cm = _with_resampling(toy, "my_lab_resampler", {})
    with pytest.raises(InputError, match="my_lab_resampler"):
        preprocess.soft_resampling(cm)
