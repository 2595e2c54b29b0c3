"""nnUNetTrainerVertebraCutout on a real cutout dataset (spine phantom → ``convert cutouts`` → nnU-Net planning):
which axis it mirrors, that forced mirroring keeps input channels and targets consistent, no intensity
augmentation, test-time mirroring through nnU-Net's real predictor, dataset checks, discovery.

The truth for "where is the subject's left / superior" never comes from the code under test: it is where the
left (43) and right (44) subregion channels, and the above (1) and below (3) targets, lie in the arrays nnU-Net
preprocessed. The cutout voxels are 3 mm A-P and 2 mm S-I and R-L, so nnU-Net's transpose moves A-P first and
left-right is not where the cutout's PIR file order would put it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunet_helpers import console_script, environ, nnunet_env, run

from nnunet_spine.core.labels import (
    CORPUS,
    COSTAL_LEFT,
    COSTAL_RIGHT,
    CUTOUT_CHANNEL_LABELS,
    CUTOUT_TARGET_LABELS,
)
from nnunet_spine.trainers.vertebra_cutout import (
    CHANNEL_LABELS_KEY,
    TRAINERS,
    CutoutMirrorTransform,
    _step_type,
    cutout_channel_order,
    limited_rotation,
)

DATASET_ID = 534
DATASET = f"Dataset{DATASET_ID:03d}_CutoutTr"
SIZE, SPACING_MM = (28, 64, 32), (3.0, 2.0, 2.0)  # P, I, R: 84 x 128 x 64 mm
LEFT, RIGHT = CUTOUT_CHANNEL_LABELS.index(COSTAL_LEFT), CUTOUT_CHANNEL_LABELS.index(COSTAL_RIGHT)
BODY = CUTOUT_CHANNEL_LABELS.index(CORPUS)
ABOVE, CENTRE, BELOW = (CUTOUT_TARGET_LABELS[k] for k in ("above", "centre", "below"))


#: Foreground voxels nnU-Net's fingerprint samples for its intensity statistics, over the whole dataset. nnU-Net's
#: 10^8 (``DatasetFingerprintExtractor.num_foreground_voxels_for_intensitystats``), drawn with replacement whatever
#: the dataset's size, take 10^8 x 9 channels x 4 bytes (several GB, twice while concatenated): this test's peak was
#: 11.3 GB. The cutout channels are ``noNorm``, so the statistics are not used by the preprocessing or the plans.
FINGERPRINT_SAMPLES = 100_000

#: ``nnUNetv2_extract_fingerprint`` with a smaller sample: nnU-Net's own extractor and ``run``, only the class
#: attribute set in a subclass (argv: dataset id, samples). ``nnUNetv2_plan_and_preprocess`` without ``--clean``
#: then reuses the fingerprint (and still verifies the dataset's integrity first).
_SMALL_FINGERPRINT = """
import sys
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor


class SmallSample(DatasetFingerprintExtractor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_foreground_voxels_for_intensitystats = int(sys.argv[2])


if __name__ == "__main__":
    SmallSample(int(sys.argv[1]), 1).run(overwrite_existing=True)
"""


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory) -> dict:
    """Two 3-vertebra spine phantoms → the cutout dataset of ``convert cutouts`` → the real nnU-Net planning and
    preprocessing of ``2d`` and ``3d_fullres`` (fingerprint with :data:`FINGERPRINT_SAMPLES` intensity samples,
    so the quick tests fit an 8 GB machine)."""
    import sys

    from nnunet_spine.dataset_converters.cutouts import convert as convert_cutouts
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    base = tmp_path_factory.mktemp("cutout_trainer")
    env = nnunet_env(base)
    write_spine_dataset(base / "bids", n_subjects=2, n_vertebrae=3, seed=2)
    convert_cutouts(
        base / "bids",
        nnunet_dataset=DATASET_ID,
        name="CutoutTr",
        shifts=0,
        size=SIZE,
        spacing_mm=SPACING_MM,
        raw_root=env["nnUNet_raw"],
    )
    fingerprint_script = base / "small_fingerprint.py"
    fingerprint_script.write_text(_SMALL_FINGERPRINT)
    run([sys.executable, str(fingerprint_script), str(DATASET_ID), str(FINGERPRINT_SAMPLES)], env)
    run(
        [
            console_script("nnUNetv2_plan_and_preprocess"),
            "-d",
            str(DATASET_ID),
            "-c",
            "2d",
            "3d_fullres",
            "-np",
            "1",
            "1",
            "-npfp",
            "1",
            "--verify_dataset_integrity",
            "--no_pbar",
        ],
        {**env, "nnUNet_n_proc_DA": "1"},
    )
    pre = Path(env["nnUNet_preprocessed"]) / DATASET
    out = subprocess.run(
        [console_script("nnspine"), "trainers", "--export"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env["nnUNet_extTrainer"] = out.split("=", 1)[1].strip("'")
    return {
        "env": env,
        "pre": pre,
        "plans": json.loads((pre / "nnUNetPlans.json").read_text()),
        "dataset_json": json.loads((pre / "dataset.json").read_text()),
        "fingerprint": json.loads((pre / "dataset_fingerprint.json").read_text()),
        "raw": Path(env["nnUNet_raw"]) / DATASET,
    }


def test_fingerprint_kept_the_small_sample_and_splits_group_subjects(cutouts):
    """The planning used the fingerprint of :data:`FINGERPRINT_SAMPLES` (one-hot channels: every sampled foreground
    value is 0 or 1), and, as ``nnspine convert cutouts --help`` says, the converter's subject-grouped
    ``splits_final.json`` reached nnU-Net's preprocessed folder: each subject's cutouts in one validation fold."""
    stats = cutouts["fingerprint"]["foreground_intensity_properties_per_channel"]
    assert len(stats) == len(CUTOUT_CHANNEL_LABELS)
    assert all(0.0 <= s["min"] <= s["max"] <= 1.0 for s in stats.values())
    assert cutouts["plans"]["foreground_intensity_properties_per_channel"] == stats
    cases = sorted(p.name[: -len(".nii.gz")] for p in (cutouts["raw"] / "labelsTr").glob("*.nii.gz"))
    # by hand from the case names <stem>_<NNN>: the subject is the stem's sub-XX entity
    subject = {c: c.split("_")[0] for c in cases}
    assert sorted(set(subject.values())) == ["sub-01", "sub-02"]
    raw_split = json.loads((cutouts["raw"] / "splits_final.json").read_text())
    assert json.loads((cutouts["pre"] / "splits_final.json").read_text()) == raw_split
    assert len(raw_split) == 2
    for fold in raw_split:
        assert sorted(fold["train"] + fold["val"]) == cases
        assert len({subject[c] for c in fold["val"]}) == 1
        assert not {subject[c] for c in fold["val"]} & {subject[c] for c in fold["train"]}
    shown = subprocess.run([console_script("nnspine"), "convert", "cutouts", "--help"], capture_output=True, text=True)
    help_text = " ".join(shown.stdout.split())
    assert "splits_final.json: folds grouped by subject" in help_text and "random folds mix" not in help_text


def _trainer(cutouts, name="nnUNetTrainerVertebraCutout", configuration="3d_fullres", dataset_json=None):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with environ({k: v for k, v in cutouts["env"].items() if k.startswith("nnUNet")}):
        cls = recursive_find_trainer_class_by_name(name)
        trainer = cls(
            plans={**cutouts["plans"], "continue_training": False},
            configuration=configuration,
            fold=0,
            dataset_json=dict(dataset_json or cutouts["dataset_json"]),
            device=torch.device("cpu"),
        )
        configured = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    return trainer, configured


def _centroid_axis(mask: np.ndarray, axis: int) -> float:
    return float(np.argwhere(mask)[:, axis].mean())


def _truth(cutouts) -> dict:
    """Axes and directions of the preprocessed 3-D arrays from content, over all cases: left-right where the left
    and right costal channels lie apart (sign +1: left at the higher index), superior-inferior where the above and
    below targets lie apart (sign +1: superior at the higher index)."""
    import blosc2

    folder = cutouts["pre"] / cutouts["plans"]["configurations"]["3d_fullres"]["data_identifier"]
    lr, si = [], []
    for f in sorted(folder.glob("*_seg.b2nd")):
        seg = blosc2.open(urlpath=str(f), mode="r")[:][0]
        data = blosc2.open(urlpath=str(f).replace("_seg.b2nd", ".b2nd"), mode="r")[:]
        left = np.argwhere(data[LEFT] > 0.5).mean(0) - np.argwhere(data[RIGHT] > 0.5).mean(0)
        if (seg == ABOVE).any() and (seg == BELOW).any():
            si.append(np.argwhere(seg == ABOVE).mean(0) - np.argwhere(seg == BELOW).mean(0))
        lr.append(left)
    lr_d, si_d = np.mean(lr, 0), np.mean(si, 0)
    lr_axis, si_axis = int(np.argmax(np.abs(lr_d))), int(np.argmax(np.abs(si_d)))
    assert all(np.sign(d[lr_axis]) == np.sign(lr_d[lr_axis]) for d in lr)  # every case agrees
    assert all(np.sign(d[si_axis]) == np.sign(si_d[si_axis]) for d in si)
    return {
        "lr": lr_axis,
        "lr_sign": int(np.sign(lr_d[lr_axis])),
        "si": si_axis,
        "si_sign": int(np.sign(si_d[si_axis])),
    }


# ------------------------------------------------------------------------------------------- dataset checks
def test_channel_order_from_the_dataset_and_refusals(cutouts):
    dj = cutouts["dataset_json"]
    # by hand from the table 41..49 in channel order: 43<->44 (2, 3), 45<->46 (4, 5), 47<->48 (6, 7)
    assert cutout_channel_order(dj) == [0, 1, 3, 2, 5, 4, 7, 6, 8]
    assert cutout_channel_order({k: v for k, v in dj.items() if k != CHANNEL_LABELS_KEY}) == [0, 1, 3, 2, 5, 4, 7, 6, 8]
    swapped = {**dj, CHANNEL_LABELS_KEY: {**dj[CHANNEL_LABELS_KEY], "2": 44, "3": 43}}
    with pytest.raises(ValueError, match="channel swap would be wrong"):
        cutout_channel_order(swapped)
    with pytest.raises(ValueError, match="not the cutout targets"):
        cutout_channel_order({**dj, "labels": {"background": 0, "vertebra": 1}})
    with pytest.raises(ValueError, match="1 input channel"):
        cutout_channel_order({**dj, "channel_names": {"0": "T2w"}})
    with pytest.raises(RuntimeError, match="nnUNetTrainerVertebraCutout: dataset.json labels"):
        _trainer(cutouts, dataset_json={**dj, "labels": {"background": 0, "above": 1, "centre": 2}})


# ------------------------------------------------------------------------------------ axes and augmentation
def test_mirrors_only_the_left_right_axis_and_never_at_test_time(cutouts):
    truth = _truth(cutouts)
    assert truth["lr"] == 1 and truth["si"] == 2  # A-P moved first by nnU-Net's transpose
    t, (rotation, dummy_2d, _, mirror_axes) = _trainer(cutouts)
    assert t.lr_axis == truth["lr"] and mirror_axes == (truth["lr"],)
    assert t.inference_allowed_mirroring_axes is None
    for variant in ("nnUNetTrainerVertebraCutout_debug", "nnUNetTrainerVertebraCutout_demo"):
        tv, cfg = _trainer(cutouts, variant)
        assert cfg[3] == mirror_axes and tv.inference_allowed_mirroring_axes is None
    assert (t.num_epochs, t.num_iterations_per_epoch) == (1000, 250)
    assert (
        _trainer(cutouts, "nnUNetTrainerVertebraCutout_debug")[0].num_iterations_per_epoch,
        _trainer(cutouts, "nnUNetTrainerVertebraCutout_demo")[0].num_epochs,
    ) == (4, 6)
    stock, (stock_rotation, _, _, stock_axes) = _trainer(cutouts, "nnUNetTrainer")
    assert stock_axes == (0, 1, 2) and stock.inference_allowed_mirroring_axes == (0, 1, 2)  # what is avoided
    limit = np.radians(30)
    assert rotation == pytest.approx(tuple(np.clip(stock_rotation, -limit, limit)))
    # 2-D: slices along A-P (preprocessed axis 0), so the left-right axis is the first in-plane axis
    t2, (rotation_2d, _, _, axes_2d) = _trainer(cutouts, configuration="2d")
    assert axes_2d == (truth["lr"] - 1,) and t2.inference_allowed_mirroring_axes is None
    assert max(abs(r) for r in rotation_2d) <= limit + 1e-9


def test_rotation_limit_by_hand():
    assert limited_rotation((-np.pi, np.pi)) == pytest.approx((-np.pi / 6, np.pi / 6))
    assert limited_rotation((-0.1, 0.2)) == pytest.approx((-0.1, 0.2))
    with pytest.raises(RuntimeError, match="rotation range"):
        limited_rotation(0.3)


def _pipeline(t, configured, patch):
    rotation, dummy_2d, _, mirror_axes = configured
    return t.get_training_transforms(patch, rotation, None, mirror_axes, dummy_2d)


def _asymmetric_cutout(shape, truth) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic cutout in the preprocessed frame: a large left costal block on the subject's left, a small right
    one on the right, a vertebral body in the middle; targets: 'above' block superior, 'below' inferior, 'centre'
    between them."""
    img = np.zeros((len(CUTOUT_CHANNEL_LABELS), *shape), np.float32)
    seg = np.zeros((1, *shape), np.int16)
    lr, si = truth["lr"], truth["si"]
    n_lr, n_si = shape[lr], shape[si]

    def box(lr_range, si_range):
        sl = [slice(s // 4, 3 * s // 4) for s in shape]
        sl[lr], sl[si] = slice(*lr_range), slice(*si_range)
        return tuple(sl)

    lo_side, hi_side = (2, n_lr // 2 - 2), (n_lr // 2 + 2, n_lr - 2)
    left_side, right_side = (hi_side, lo_side) if truth["lr_sign"] > 0 else (lo_side, hi_side)
    mid = (n_si // 3, 2 * n_si // 3)
    img[(LEFT, *box(left_side, mid))] = 1  # large
    small = (right_side[0] + (right_side[1] - right_side[0]) // 3, right_side[1] - (right_side[1] - right_side[0]) // 3)
    img[(RIGHT, *box(small, (mid[0] + 2, mid[1] - 2)))] = 1  # small
    img[(BODY, *box((n_lr // 2 - 1, n_lr // 2 + 1), mid))] = 1
    lo_si, hi_si = (1, n_si // 3), (2 * n_si // 3, n_si - 1)
    sup, inf = (hi_si, lo_si) if truth["si_sign"] > 0 else (lo_si, hi_si)
    seg[(0, *box((2, n_lr - 2), sup))] = ABOVE
    seg[(0, *box((2, n_lr - 2), mid))] = CENTRE
    seg[(0, *box((2, n_lr - 2), inf))] = BELOW
    return torch.from_numpy(img), torch.from_numpy(seg)


def _left_minus_right(img: torch.Tensor, axis: int) -> float:
    x = img.numpy()
    return _centroid_axis(x[LEFT] > 0.5, axis) - _centroid_axis(x[RIGHT] > 0.5, axis)


def _above_minus_below(seg: torch.Tensor, axis: int) -> float:
    s = seg[0].numpy()
    return _centroid_axis(s == ABOVE, axis) - _centroid_axis(s == BELOW, axis)


def test_forced_mirroring_keeps_channels_and_targets_consistent(cutouts):
    truth = _truth(cutouts)
    lr, si = truth["lr"], truth["si"]
    t, configured = _trainer(cutouts)
    patch = tuple(t.configuration_manager.patch_size)
    pipeline = _pipeline(t, configured, patch)
    mirrors = [m for m in pipeline.transforms if isinstance(m, CutoutMirrorTransform)]
    assert len(mirrors) == 1 and mirrors[0].allowed_axes == (lr,)
    mirrors[0].p_per_axis = 1.0  # force: every sample flipped along the left-right axis
    img, seg = _asymmetric_cutout(patch, truth)
    assert np.sign(_left_minus_right(img, lr)) == truth["lr_sign"]
    assert np.sign(_above_minus_below(seg, si)) == truth["si_sign"]
    big, small = float(img[LEFT].sum()), float(img[RIGHT].sum())
    torch.manual_seed(0)
    np.random.seed(0)
    for _ in range(6):
        out = pipeline(image=img.clone(), segmentation=seg.clone())
        x = out["image"]
        # flipped and swapped: the left channel now holds the mirrored right (small) block, still on the left
        assert float((x[LEFT] > 0.5).sum()) < float((x[RIGHT] > 0.5).sum())
        assert np.sign(_left_minus_right(x, lr)) == truth["lr_sign"]
        assert np.sign(_above_minus_below(out["segmentation"], si)) == truth["si_sign"]  # above stays superior
    # the transform alone, exactly (numpy): flip along the left-right axis, then channels 43<->44, 45<->46, 47<->48
    alone = CutoutMirrorTransform((lr,), lr, t.channel_order, p_per_axis=1.0)(
        image=img.clone(), segmentation=seg.clone()
    )
    np.testing.assert_array_equal(alone["image"].numpy(), np.flip(img.numpy(), lr + 1)[[0, 1, 3, 2, 5, 4, 7, 6, 8]])
    np.testing.assert_array_equal(alone["segmentation"].numpy(), np.flip(seg.numpy(), lr + 1))
    assert small < big
    # controls: nnU-Net's plain flips put the left channel on the right and the vertebra above below
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform

    class Forced(MirrorTransform):
        def get_parameters(self, **data_dict):
            return {"axes": list(self.allowed_axes)}

    plain = Forced((0, 1, 2))(image=img.clone(), segmentation=seg.clone())
    assert np.sign(_left_minus_right(plain["image"], lr)) == -truth["lr_sign"]
    assert np.sign(_above_minus_below(plain["segmentation"], si)) == -truth["si_sign"]


def test_no_intensity_augmentation_one_hot_stays_one_hot_fractions(cutouts):
    """Spatial steps only interpolate (values in [0, 1], channels sum to at most 1); nnU-Net's stock pipeline on the
    same input, seeded, leaves that range (noise, brightness, gamma)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    truth = _truth(cutouts)
    t, configured = _trainer(cutouts)
    patch = tuple(t.configuration_manager.patch_size)
    img, seg = _asymmetric_cutout(patch, truth)
    names = [_step_type(s).__name__ for s in _pipeline(t, configured, patch).transforms]
    assert names == ["SpatialTransform", "CutoutMirrorTransform", "RemoveLabelTransform"], names

    def ranges(pipeline, n=24):
        torch.manual_seed(1)
        np.random.seed(1)
        outs = [pipeline(image=img.clone(), segmentation=seg.clone())["image"] for _ in range(n)]
        return (
            min(float(o.min()) for o in outs),
            max(float(o.max()) for o in outs),
            max(float(o.sum(0).max()) for o in outs),
        )

    lo, hi, total = ranges(_pipeline(t, configured, patch))
    assert lo >= 0 and hi <= 1 + 1e-6 and total <= 1 + 1e-5
    rotation, dummy_2d, _, _ = configured
    stock = nnUNetTrainer.get_training_transforms(patch, rotation, None, (0, 1, 2), dummy_2d)
    s_lo, s_hi, _ = ranges(stock)
    assert s_lo < 0 or s_hi > 1 + 1e-6


# ------------------------------------------------------------------------------------- test-time mirroring
class _PositionalNet(torch.nn.Module):
    """Stand-in for a trained cutout network: vertebral body voxels are 'above' in the superior half and 'below' in
    the inferior half; left-costal voxels are 'centre' only on the subject's left (as a network trained on
    correctly sided channels reads them)."""

    def __init__(self, truth: dict):
        super().__init__()
        self.truth = truth

    def _half(self, shape, axis: int, sign: int) -> torch.Tensor:
        idx = torch.arange(shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
        high = idx >= shape[axis] // 2
        return (high if sign > 0 else ~high).expand(*shape)

    def forward(self, x):
        b, _, *shape = x.shape
        out = torch.zeros((b, len(CUTOUT_TARGET_LABELS), *shape))
        body = x[:, BODY] > 0.5
        left = (x[:, LEFT] > 0.5) & self._half(shape, self.truth["lr"], self.truth["lr_sign"])
        sup = self._half(shape, self.truth["si"], self.truth["si_sign"])
        out[:, ABOVE] = (body & sup).float() * 4
        out[:, BELOW] = (body & ~sup).float() * 4
        out[:, CENTRE] = left.float() * 4
        out[:, 0] = (~(body | left)).float() * 4
        return out


def test_test_time_mirroring_keeps_labels_in_nnunets_predictor(cutouts):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    truth = _truth(cutouts)
    t, _ = _trainer(cutouts)
    pm = PlansManager(cutouts["plans"])
    cm = pm.get_configuration("3d_fullres")
    shape = tuple(cm.patch_size)
    x, _ = _asymmetric_cutout(shape, truth)
    x[BODY] = 0
    sl = [slice(s // 4, 3 * s // 4) for s in shape]
    x[(BODY, *sl)] = 1.0  # a body block across the S-I midline
    net = _PositionalNet(truth)
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
        p.manual_initialization(net, pm, cm, None, cutouts["dataset_json"], "x", axes)
        return p.predict_sliding_window_return_logits(x).argmax(0)

    ours = predict(t.inference_allowed_mirroring_axes)
    assert torch.equal(ours, expected)
    assert all((ours == v).sum() > 0 for v in (ABOVE, CENTRE, BELOW))
    stock = predict((0, 1, 2))  # nnU-Net's default: above and below tie on the body, the left block loses 'centre'
    assert not torch.equal(stock, expected)
    assert (stock == ABOVE).sum() == 0 or (stock == BELOW).sum() == 0
    assert (stock == CENTRE).sum() == 0


# ---------------------------------------------------------------------------------------------- discovery
def test_trainers_listed_and_found_by_stock_nnunet(cutouts):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    listed = subprocess.run([console_script("nnspine"), "trainers"], capture_output=True, text=True, check=True).stdout
    for cls in TRAINERS:
        assert cls.__name__ in listed
        with environ({"nnUNet_extTrainer": cutouts["env"]["nnUNet_extTrainer"]}):
            assert recursive_find_trainer_class_by_name(cls.__name__) is cls
