"""nnUNetTrainerSpineSemantic: the left-right axis from the geometry (nnU-Net's own readers, the plans' transpose),
label swaps under forced mirroring, test-time mirroring through nnU-Net's real predictor, discovery.

The truth for "which axis is left-right" never comes from the code under test: it is where a world-x ramp varies
in the arrays nnU-Net's readers return, or where the left and right structures of the preprocessed phantom lie.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from nnunet_helpers import console_script, environ, nnunet_env, plan_and_preprocess

from nnunet_spine.core.labels import COSTAL_LEFT, COSTAL_RIGHT, LEFT_RIGHT_PAIRS, SEMANTIC_LABELS
from nnunet_spine.trainers.spine_semantic import (
    MIN_LR_COSINE,
    TRAINERS,
    LateralityMirrorTransform,
    lateral_label_pairs,
    lr_axis_after_transpose,
    lr_axis_of_properties,
    patch_lr_axis,
)

SPINE_ID = 531
SPINE_NAME = f"Dataset{SPINE_ID:03d}_SpineTr"


# ---------------------------------------------------------------------------------- geometry (no planning)
def _ramp_image(path: Path, affine: np.ndarray, shape=(5, 6, 7)) -> None:
    """A NIfTI image whose voxel value is the world x (RAS, mm) of its centre."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    x = (ijk @ affine[:3, :3].T + affine[:3, 3])[:, 0].reshape(shape)
    nib.save(nib.Nifti1Image(x.astype(np.float32), affine), str(path))


def _affine(codes: str, zooms=(1.0, 1.5, 2.0), rot_deg: float = 0.0) -> np.ndarray:
    """Affine whose voxel axes point along the nibabel codes (e.g. 'PIR'), optionally rotated about S."""
    unit = {"R": [1, 0, 0], "L": [-1, 0, 0], "A": [0, 1, 0], "P": [0, -1, 0], "S": [0, 0, 1], "I": [0, 0, -1]}
    cols = np.array([unit[c] for c in codes], float).T * np.asarray(zooms)
    t = np.radians(rot_deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ cols
    aff[:3, 3] = [3.0, -7.0, 11.0]
    return aff


@pytest.mark.parametrize(
    "codes, rot", [("PIR", 0), ("RAS", 0), ("LPS", 0), ("ASL", 0), ("SLP", 0), ("PIR", 25), ("RAS", -30)]
)
@pytest.mark.parametrize("reader", ["SimpleITKIO", "NibabelIO", "NibabelIOWithReorient"])
def test_lr_axis_from_nnunet_readers(tmp_path, codes, rot, reader):
    from nnunetv2.imageio import nibabel_reader_writer, simpleitk_reader_writer

    cls = getattr(simpleitk_reader_writer, reader, None) or getattr(nibabel_reader_writer, reader)
    path = tmp_path / "ramp.nii.gz"
    _ramp_image(path, _affine(codes, rot_deg=rot))
    data, props = cls().read_images([str(path)])
    x = data[0]
    # truth: the array axis along which world x changes most, and whether it grows (towards the right)
    steps = [float(np.mean(np.diff(x, axis=a))) for a in range(3)]
    truth_axis = int(np.argmax(np.abs(steps)))
    truth_sign = -1 if steps[truth_axis] > 0 else 1  # +1: index increases towards the subject's left
    assert lr_axis_of_properties(props) == (truth_axis, truth_sign)


def test_lr_axis_after_transpose_and_patch_axis():
    # preprocessing puts old axis transpose_forward[j] at j: old axis 0 goes to 1 under [2, 0, 1]
    data = np.zeros((4, 5, 6))
    data[1, :, :] = 1  # marks old axis 0
    moved = data.transpose([2, 0, 1])
    assert np.nonzero(moved.sum(axis=(0, 2)))[0].tolist() == [1]
    assert lr_axis_after_transpose(0, [2, 0, 1]) == 1
    assert patch_lr_axis(1, 3) == 1 and patch_lr_axis(1, 2) == 0 and patch_lr_axis(0, 2) is None


def test_oblique_geometry_is_refused():
    c = np.cos(np.radians(45))
    direction = np.array([[c, -c, 0], [c, c, 0], [0, 0, 1]])  # columns: index axes rotated 45 degrees about S
    props = {"sitk_stuff": {"direction": tuple(direction.ravel())}}
    assert np.abs(direction[0]).max() < MIN_LR_COSINE  # no axis is left-right
    with pytest.raises(ValueError, match="40 degrees"):
        lr_axis_of_properties(props)


def test_lateral_pairs_from_dataset_json():
    spineps = {
        "labels": {"background": 0, "a": 1, "b": 2, "c": 3},
        "nnspine_label_map": {"convention": "spineps", "values": {"0": 0, "1": 43, "2": 49, "3": 44}},
    }
    assert lateral_label_pairs(spineps) == ((1, 3),)
    by_name = {
        "labels": {
            "background": 0,
            "Costal_Process_Right": 1,
            "Costal_Process_Left": 2,
            "Inferior_Articular_Left": 3,
            "Inferior_Articular_Right": 4,
        }
    }
    assert lateral_label_pairs(by_name) == ((2, 1), (3, 4))
    assert lateral_label_pairs({"labels": {"background": 0, "vertebra": 1, "disc": 2}}) == ()
    with pytest.raises(ValueError, match="opposite-side"):
        lateral_label_pairs({"labels": {"background": 0, "Costal_Process_Left": 1}})


def test_guard_copied_mirror_parameters():
    """LateralityMirrorTransform.get_parameters copies batchgeneratorsv2's MirrorTransform.get_parameters with the
    0.5 made an attribute: if upstream changes it, re-check the copy and update this hash."""
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform

    src = inspect.getsource(MirrorTransform.get_parameters)
    assert "torch.rand(1) < 0.5" in src
    assert (
        hashlib.sha256(src.encode()).hexdigest() == "4b65949cd6e43ea0db075f549ce1754ec964e0e9a7585c183b91f8847499f76d"
    ), hashlib.sha256(src.encode()).hexdigest()


# ------------------------------------------------------------------------- with a planned phantom dataset
@pytest.fixture(scope="module")
def spine(tmp_path_factory) -> dict:
    """Two spine phantoms (voxels 2 mm A-P, 1.5 mm S-I and R-L: nnU-Net moves A-P first, so left-right is not
    axis 0), converted and planned with the real nnU-Net."""
    from nnunet_spine.dataset_converters import spineps
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    base = tmp_path_factory.mktemp("spine_trainer")
    env = nnunet_env(base)
    write_spine_dataset(base / "bids", n_subjects=2, n_vertebrae=2, seed=1, voxel_mm=(2.0, 1.5, 1.5))
    spineps.convert(base / "bids", nnunet_dataset=SPINE_ID, name="SpineTr", raw_root=env["nnUNet_raw"])
    plan_and_preprocess(env, SPINE_ID)
    pre = Path(env["nnUNet_preprocessed"]) / SPINE_NAME
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((pre / "dataset.json").read_text())
    out = subprocess.run(
        [console_script("nnspine"), "trainers", "--export"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env["nnUNet_extTrainer"] = out.split("=", 1)[1].strip("'")
    return {"env": env, "pre": pre, "plans": plans, "dataset_json": dataset_json, "base": base}


def _trainer(spine, name="nnUNetTrainerSpineSemantic"):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with environ({k: v for k, v in spine["env"].items() if k.startswith("nnUNet")}):
        cls = recursive_find_trainer_class_by_name(name)
        trainer = cls(
            plans={**spine["plans"], "continue_training": False},
            configuration="3d_fullres",
            fold=0,
            dataset_json=dict(spine["dataset_json"]),
            device=torch.device("cpu"),
        )
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    return trainer


def _label(spine, value: int) -> int:
    return spine["dataset_json"]["labels"][SEMANTIC_LABELS[value]]


def _lr_truth(spine) -> tuple[int, int]:
    """(axis, sign) from content: where the left (43) and right (44) costal processes of the preprocessed
    phantom lie apart; sign +1 when left lies at the higher index."""
    import blosc2

    folder = spine["pre"] / spine["plans"]["configurations"]["3d_fullres"]["data_identifier"]
    seg = blosc2.open(urlpath=str(folder / "sub-01_T2w_seg.b2nd"), mode="r")[:][0]
    left = np.argwhere(seg == _label(spine, COSTAL_LEFT)).mean(0)
    right = np.argwhere(seg == _label(spine, COSTAL_RIGHT)).mean(0)
    axis = int(np.argmax(np.abs(left - right)))
    return axis, 1 if left[axis] > right[axis] else -1


def test_trainer_axis_matches_the_data_and_tta_excludes_it(spine):
    axis, _ = _lr_truth(spine)
    assert axis == 1  # A-P moved first by nnU-Net's transpose: left-right is not where a guess would put it
    t = _trainer(spine)
    assert t.dataset_lr_axis() == axis and t.lr_axis == axis
    assert t.lateral_pairs == tuple((_label(spine, a), _label(spine, b)) for a, b in LEFT_RIGHT_PAIRS)
    assert t.inference_allowed_mirroring_axes == tuple(a for a in (0, 1, 2) if a != axis)
    assert _trainer(spine, "nnUNetTrainerSpineSemantic_noMirroring").inference_allowed_mirroring_axes is None
    assert (
        _trainer(spine, "nnUNetTrainerSpineSemantic_debug").inference_allowed_mirroring_axes
        == t.inference_allowed_mirroring_axes
    )
    stock = _trainer(spine, "nnUNetTrainer")
    assert stock.inference_allowed_mirroring_axes == (0, 1, 2)  # what the swap protects against


def _asymmetric_case(spine, axis: int, shape=(40, 40, 40)):
    """Image and segmentation in the preprocessed frame: a left costal block on the subject's left (low index
    when the axis runs towards the right), a right one opposite, an intensity ramp along the axis."""
    _, sign = _lr_truth(spine)
    img = np.zeros((1, *shape), np.float32)
    seg = np.zeros((1, *shape), np.int16)
    idx = np.arange(shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
    img[0] += idx.astype(np.float32) / shape[axis]
    sl_lo = [slice(12, 28)] * 3
    sl_hi = [slice(12, 28)] * 3
    sl_lo[axis], sl_hi[axis] = slice(4, 14), slice(26, 36)
    left_sl, right_sl = (sl_hi, sl_lo) if sign > 0 else (sl_lo, sl_hi)
    seg[(0, *left_sl)] = _label(spine, COSTAL_LEFT)
    seg[(0, *right_sl)] = _label(spine, COSTAL_RIGHT)
    return torch.from_numpy(img), torch.from_numpy(seg), sign


def _left_minus_right(seg: torch.Tensor, spine, axis: int) -> float:
    s = seg[0].numpy()
    left = np.argwhere(s == _label(spine, COSTAL_LEFT))[:, axis].mean()
    right = np.argwhere(s == _label(spine, COSTAL_RIGHT))[:, axis].mean()
    return float(left - right)


def test_forced_mirroring_keeps_left_labels_on_the_subjects_left(spine):
    t = _trainer(spine)
    axis = t.lr_axis
    rotation, dummy_2d, _, mirror_axes = t.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    pipeline = t.get_training_transforms((32, 32, 32), rotation, None, mirror_axes, dummy_2d)
    mirrors = [m for m in pipeline.transforms if isinstance(m, LateralityMirrorTransform)]
    assert len(mirrors) == 1 and mirrors[0].allowed_axes == (0, 1, 2)
    mirrors[0].p_per_axis = 1.0  # force: every sample flipped along every axis, the left-right one included
    img, seg, sign = _asymmetric_case(spine, axis)
    assert np.sign(_left_minus_right(seg, spine, axis)) == sign  # the input is right
    torch.manual_seed(0)
    np.random.seed(0)
    for _ in range(6):
        out = pipeline(image=img.clone(), segmentation=seg.clone())
        ramp = out["image"][0].numpy().mean(axis=tuple(a for a in range(3) if a != axis))
        assert ramp[0] > ramp[-1]  # flipped along the left-right axis
        assert np.sign(_left_minus_right(out["segmentation"], spine, axis)) == sign  # left still on the left
    # control: the same forced flip without the swap (nnU-Net's plain mirroring) puts "left" on the right
    plain = LateralityMirrorTransform((0, 1, 2), axis, pairs=(), p_per_axis=1.0)
    out = plain(image=img.clone(), segmentation=seg.clone())
    assert np.sign(_left_minus_right(out["segmentation"], spine, axis)) == -sign


class _PositionalNet(torch.nn.Module):
    """Stand-in for a trained laterality-aware network: 'bone' (input > 0.5) is labelled left or right by its
    position along the left-right axis, exactly as a network trained in one orientation must do."""

    def __init__(self, n_classes: int, axis: int, left: int, right: int, left_low: bool):
        super().__init__()
        self.n, self.axis, self.left, self.right, self.left_low = n_classes, axis, left, right, left_low

    def forward(self, x):
        b, _, *shape = x.shape
        out = torch.zeros((b, self.n, *shape))
        bone = x[:, 0] > 0.5
        idx = torch.arange(shape[self.axis]).reshape([-1 if a == self.axis else 1 for a in range(3)])
        low = (idx < shape[self.axis] // 2).expand(*shape)
        is_left = low if self.left_low else ~low
        out[:, 0] = (~bone).float() * 4
        out[:, self.left] = (bone & is_left).float() * 4
        out[:, self.right] = (bone & ~is_left).float() * 4
        return out


def test_test_time_mirroring_keeps_laterality_in_nnunets_predictor(spine):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    t = _trainer(spine)
    axis, sign = t.lr_axis, _lr_truth(spine)[1]
    left, right = _label(spine, COSTAL_LEFT), _label(spine, COSTAL_RIGHT)
    pm = PlansManager(spine["plans"])
    cm = pm.get_configuration("3d_fullres")
    shape = tuple(cm.patch_size)
    x = torch.zeros((1, *shape))
    sl = [slice(s // 4, 3 * s // 4) for s in shape]
    x[(0, *sl)] = 1.0  # a bone block across the midline
    net = _PositionalNet(len(spine["dataset_json"]["labels"]), axis, left, right, left_low=sign < 0)
    expected = net(x[None])[0].argmax(0)

    def predict(axes):
        p = nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=True,
            device=torch.device("cpu"),
            verbose=False,
            allow_tqdm=False,
        )
        p.manual_initialization(net, pm, cm, None, spine["dataset_json"], "x", axes)
        return p.predict_sliding_window_return_logits(x).argmax(0)

    ours = predict(t.inference_allowed_mirroring_axes)
    assert torch.equal(ours, expected)
    assert (ours == right).sum() > 0 and (ours == left).sum() > 0
    stock = predict((0, 1, 2))  # nnU-Net's default axes: left and right tie and one side takes both
    assert not torch.equal(stock, expected)
    assert (stock == right).sum() == 0 or (stock == left).sum() == 0


def test_mixed_orientations_are_refused(spine, tmp_path):
    import pickle

    t = _trainer(spine)
    folder = Path(t.preprocessed_dataset_folder)
    copy = tmp_path / folder.name
    import shutil

    shutil.copytree(folder, copy)
    pkl = copy / "sub-02_T2w.pkl"
    props = pickle.loads(pkl.read_bytes())
    d = np.array(props["sitk_stuff"]["direction"]).reshape(3, 3)
    d[:, 2] *= -1  # the left-right file axis now points the other way
    props["sitk_stuff"]["direction"] = tuple(d.ravel())
    pkl.write_bytes(pickle.dumps(props))
    t.preprocessed_dataset_folder = str(copy)
    with pytest.raises(RuntimeError, match="disagree on the left-right orientation"):
        t.dataset_lr_axis()


def test_trainers_listed_and_found_by_stock_nnunet(spine):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    listed = subprocess.run([console_script("nnspine"), "trainers"], capture_output=True, text=True, check=True).stdout
    for cls in TRAINERS:
        assert cls.__name__ in listed
        with environ({"nnUNet_extTrainer": spine["env"]["nnUNet_extTrainer"]}):
            assert recursive_find_trainer_class_by_name(cls.__name__).__name__ == cls.__name__
