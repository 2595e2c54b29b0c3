"""nnUNetTrainerSoftSegDA5: nnU-Net's aggressive (DA5) augmentation carrying the soft target, and the budget trainers.

The central check runs a sharp-edged phantom (an off-centre box whose soft target is its exact partial-volume mask)
through the trainer's own training transforms with fixed seeds. Each sample is replayed with the random state of
every spatial step on a copy of the image that gets only the spatial steps: the transformed soft target's 0.5
iso-surface must coincide with that image's edge (and nnU-Net's label) within a voxel, while every intensity step
changes the image and leaves the target bit-identical.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import random

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform, ImageOnlyTransform, SegOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import OneOfTransform, RandomTransform
from nnunet_helpers import environ, prepared_toy
from scipy import ndimage

from nnunet_spine.integration.soft_targets.deep_supervision import DownsampleSoftTargetForDSTransform
from nnunet_spine.trainers.softseg_da5 import nnUNetTrainerSoftSegDA5

DA5_MODULE = "nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5"

#: nnU-Net source (module:qualname) -> (sha256 prefix of inspect.getsource, what our trainer relies on)
GUARDED = {
    f"{DA5_MODULE}:nnUNetTrainerDA5.get_training_transforms": (
        "0c1a25ffd6b290b9",
        "nnunet_spine.trainers.softseg_da5.nnUNetTrainerSoftSegDA5.get_training_transforms calls it and appends the "
        "soft DS pyramid: every spatial transform in it must move regression_target exactly as the image and every "
        "other transform must be image- or segmentation-only (test_soft_target_follows_the_image_edge_through_da5)",
    ),
    f"{DA5_MODULE}:nnUNetTrainerDA5.configure_rotation_dummyDA_mirroring_and_inital_patch_size": (
        "9db06bb59ac301d3",
        "nnUNetTrainerSoftSegDA5 inherits it (MRO: SoftSeg, then DA5); the _debug/_demo variants call it through "
        "super() and only drop test-time mirroring",
    ),
}

#: The intensity transforms DA5 adds on top of its spatial ones (batchgeneratorsv2 class names).
DA5_INTENSITY = {
    "MedianFilterTransform",
    "GaussianBlurTransform",
    "GaussianNoiseTransform",
    "BrightnessAdditiveTransform",
    "ContrastTransform",
    "SimulateLowResolutionTransform",
    "GammaTransform",
    "BlankRectangleTransform",
    "BrightnessGradientAdditiveTransform",
    "LocalGammaTransform",
    "SharpeningTransform",
}

PATCH = (32, 32, 32)
INPUT = (48, 48, 48)  # larger than the patch, as nnU-Net's loader cuts it (initial patch size)
DS_SCALES = [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]
# box in input voxel coordinates (voxel i covers [i - 0.5, i + 0.5]): off-centre and different along each axis, so
# a missed mirror, 90° rotation or transpose moves it by many voxels
BOX_LO = (17.3, 16.6, 20.2)
BOX_HI = (30.7, 26.1, 33.45)
IMAGE_OUT, IMAGE_IN = 0.2, 1.1  # image intensity outside / inside the box
EDGE_LEVEL = 0.5 * (IMAGE_OUT + IMAGE_IN)


def _source_hash(dotted: str) -> str:
    module_name, qualname = dotted.split(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


@pytest.mark.parametrize("upstream", sorted(GUARDED))
def test_guarded_da5_source_unchanged(upstream):
    expected, relies = GUARDED[upstream]
    got = _source_hash(upstream)
    assert got == expected, (
        f"nnU-Net's {upstream} changed (hash {got}, guarded {expected}): re-check {relies}; "
        f"then update the hash in tests/test_softseg_da5.py"
    )


# =============================================================================================== the phantom
def box_fraction(shape=INPUT, lo=BOX_LO, hi=BOX_HI) -> np.ndarray:
    """Exact fraction of each voxel inside the box (product of the per-axis overlaps of [i-0.5, i+0.5])."""
    frac = np.ones(shape)
    for axis, (n, a, b) in enumerate(zip(shape, lo, hi)):
        i = np.arange(n)
        overlap = np.clip(np.minimum(i + 0.5, b) - np.maximum(i - 0.5, a), 0, 1)
        frac = frac * overlap.reshape([-1 if k == axis else 1 for k in range(len(shape))])
    return frac


def phantom_sample() -> dict:
    frac = box_fraction()
    return {
        "image": torch.from_numpy(IMAGE_OUT + (IMAGE_IN - IMAGE_OUT) * frac).float()[None],
        "segmentation": torch.from_numpy(frac >= 0.5).to(torch.int16)[None],
        "regression_target": torch.from_numpy(frac).float()[None],
    }


def da5_soft_transforms() -> ComposeTransforms:
    """The training transforms of nnUNetTrainerSoftSegDA5 for a cubic 3-D patch (as the trainer builds them)."""
    rotation = (-30.0 / 360 * 2.0 * np.pi, 30.0 / 360 * 2.0 * np.pi)  # DA5's 3-D range for an isotropic patch
    return nnUNetTrainerSoftSegDA5.get_training_transforms(
        PATCH, rotation, DS_SCALES, (0, 1, 2), False, use_mask_for_norm=[False]
    )


def leaves(t: BasicTransform) -> list:
    """The transforms a (nested) composition applies, unwrapped from Random/OneOf/Compose."""
    if isinstance(t, RandomTransform):
        return leaves(t.transform)
    if isinstance(t, OneOfTransform):
        return [x for s in t.list_of_transforms for x in leaves(s)]
    if isinstance(t, ComposeTransforms):
        return [x for s in t.transforms for x in leaves(s)]
    return [t]


def is_intensity_step(t: BasicTransform) -> bool:
    return all(isinstance(x, ImageOnlyTransform) for x in leaves(t))


def rng_state():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def set_rng_state(state) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


def shell(mask: np.ndarray) -> np.ndarray:
    """Voxels within one voxel (26-neighbourhood) of the mask's boundary."""
    s = np.ones((3, 3, 3), bool)
    return ndimage.binary_dilation(mask, s) & ~ndimage.binary_erosion(mask, s)


def run_with_spatial_replay(transforms: ComposeTransforms, seed: int):
    """Run ``transforms`` on the phantom; replay each spatial step (same random state) on a copy of the image that
    gets no intensity step. Returns (sample, spatial-only image, list of intensity-step checks)."""
    set_rng_state(
        (
            random.Random(seed).getstate(),
            np.random.RandomState(seed).get_state(),
            torch.Generator().manual_seed(seed).get_state(),
        )
    )
    sample = phantom_sample()
    probe = {"image": sample["image"].clone(), "segmentation": sample["segmentation"].clone()}
    intensity_checks = []
    for step in transforms.transforms:
        before = rng_state()
        if is_intensity_step(step):
            target, seg, image = (
                sample["regression_target"].clone(),
                sample["segmentation"].clone(),
                sample["image"].clone(),
            )
            sample = step(**sample)
            intensity_checks.append(
                (
                    type(leaves(step)[0]).__name__,
                    torch.equal(target, sample["regression_target"]),
                    torch.equal(seg, sample["segmentation"]),
                    not torch.equal(image, sample["image"]),
                )
            )
            continue
        sample = step(**sample)
        after = rng_state()
        set_rng_state(before)
        probe = step(**probe)
        set_rng_state(after)
    return sample, probe["image"], intensity_checks


def test_pipeline_is_nnunet_da5_plus_the_soft_pyramid_and_carries_the_target_everywhere():
    """The trainer's transforms are DA5's own, in order, then the soft deep-supervision pyramid; every transform in
    them either is image-only (leaves the target alone), segmentation-only, or moves ``regression_target``."""
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5

    from nnunet_spine.trainers.softseg import nnUNetTrainerSoftSeg

    rotation = (-0.5, 0.5)
    ours = nnUNetTrainerSoftSegDA5.get_training_transforms(PATCH, rotation, DS_SCALES, (0, 1, 2), False)
    nnunet = nnUNetTrainerDA5.get_training_transforms(PATCH, rotation, DS_SCALES, (0, 1, 2), False)
    assert [type(t) for t in ours.transforms] == [type(t) for t in nnunet.transforms] + [
        DownsampleSoftTargetForDSTransform
    ]
    names = {type(x).__name__ for x in leaves(ours)}
    assert DA5_INTENSITY <= names
    assert any(type(x).__name__ == "GammaTransform" and x.p_invert_image == 1 for x in leaves(ours))  # inversion
    stock = {
        type(x).__name__
        for x in leaves(nnUNetTrainerSoftSeg.get_training_transforms(PATCH, rotation, DS_SCALES, (0, 1, 2), False))
    }
    assert {"LocalGammaTransform", "BlankRectangleTransform", "SharpeningTransform"}.isdisjoint(stock)
    for x in leaves(ours):
        moves = type(x)._apply_to_regr_target is not BasicTransform._apply_to_regr_target
        assert (
            isinstance(x, (ImageOnlyTransform, SegOnlyTransform))
            or moves
            or isinstance(x, DownsampleSoftTargetForDSTransform)
        ), type(x).__name__


@pytest.mark.parametrize("seed", range(12))
def test_soft_target_follows_the_image_edge_through_da5(seed):
    transforms = da5_soft_transforms()
    sample, spatial_image, intensity_checks = run_with_spatial_replay(transforms, seed)
    target = sample["regression_target"][0]  # full-resolution level of the pyramid
    assert tuple(target.shape) == (1, *PATCH)
    t = target[0].numpy()
    edge = spatial_image[0].numpy() > EDGE_LEVEL  # the transformed image's edge, no intensity transform
    inside = t > 0.5
    assert inside.sum() > 200  # the box is in the patch
    assert 0 <= t.min() and t.max() <= 1 + 1e-6 and ((t > 0.05) & (t < 0.95)).sum() > 50  # still partial volume
    near_surface = shell(inside)
    assert not ((inside ^ edge) & ~near_surface).any(), "soft target's 0.5 surface left the image edge"
    label = sample["segmentation"][0][0].numpy() == 1
    assert not ((inside ^ label) & ~near_surface).any(), "soft target's 0.5 surface left nnU-Net's label"
    # intensity steps: the target and the label bit-identical before and after each
    for name, target_same, seg_same, _ in intensity_checks:
        assert target_same and seg_same, name
    # the pyramid's coarser levels are area averages of the full-resolution target
    np.testing.assert_allclose(
        sample["regression_target"][1][0].numpy(), t.reshape(16, 2, 16, 2, 16, 2).mean(axis=(1, 3, 5)), atol=1e-6
    )


def test_da5_actually_moved_and_restyled_the_phantoms():
    """Across the fixed seeds of the alignment test the spatial steps moved the box (rotation, scaling, mirroring,
    90° rotations) and the intensity steps changed the image: the alignment test is not vacuous."""
    centre = tuple(slice((i - p) // 2, (i - p) // 2 + p) for i, p in zip(INPUT, PATCH))
    untransformed = box_fraction()[centre] > 0.5
    moved = restyled = 0
    for seed in range(12):
        sample, spatial_image, _ = run_with_spatial_replay(da5_soft_transforms(), seed)
        moved += int(((sample["regression_target"][0][0].numpy() > 0.5) != untransformed).sum() > 100)
        restyled += int(not torch.allclose(sample["image"], spatial_image, atol=1e-3))
    assert moved >= 10 and restyled >= 8, (moved, restyled)


def test_each_intensity_transform_changes_the_image_and_leaves_the_target():
    """Each of DA5's intensity transforms, forced on: the image changes, soft target and label are bit-identical."""
    seen = set()
    for leaf in leaves(da5_soft_transforms()):
        if not isinstance(leaf, ImageOnlyTransform):
            continue
        changed = False
        for seed in range(20):
            torch.manual_seed(seed)
            np.random.seed(seed)
            sample = phantom_sample()
            out = leaf(**{k: v.clone() for k, v in sample.items()})
            assert torch.equal(out["regression_target"], sample["regression_target"]), type(leaf).__name__
            assert torch.equal(out["segmentation"], sample["segmentation"]), type(leaf).__name__
            changed |= not torch.allclose(out["image"], sample["image"], atol=1e-4)
        assert changed, f"{type(leaf).__name__} never changed the image"
        seen.add(type(leaf).__name__)
    assert DA5_INTENSITY <= seen


# ================================================================================= the trainers on real plans
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return prepared_toy(tmp_path_factory)


def _make(toy, tmp_path, name: str, extra_env: dict | None = None):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_spine.integration.trainer_lookup import discovery_folder

    env = {
        "nnUNet_raw": toy["env"]["nnUNet_raw"],
        "nnUNet_preprocessed": toy["env"]["nnUNet_preprocessed"],
        "nnUNet_results": str(tmp_path),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_compile": "f",
        "nnUNet_extTrainer": str(discovery_folder()),
        **(extra_env or {}),
    }
    with environ(env):
        cls = recursive_find_trainer_class_by_name(name)
        plans = json.loads((toy["pre"] / "nnUNetPlans.json").read_text())
        plans["continue_training"] = False
        dj = json.loads((toy["pre"] / "dataset.json").read_text())
        trainer = cls(plans=plans, configuration="3d_fullres", fold="all", dataset_json=dj, device=torch.device("cpu"))
    return trainer, env


def test_da5_trainer_batches_keep_soft_target_on_the_label(toy, tmp_path):
    """The trainer's own loader and DA5 transforms on nnU-Net-preprocessed data: in every sample the soft
    target's 0.5 surface matches nnU-Net's label, fractional values survive, all pyramid levels match in shape."""
    from nnunet_spine.integration.soft_targets.loader import nnUNetDataLoaderSoft

    trainer, env = _make(toy, tmp_path, "nnUNetTrainerSoftSegDA5")
    with environ(env):
        trainer.initialize()
        ds_tr, _ = trainer.get_tr_and_val_datasets()
        rot, dummy2d, initial_ps, mirror = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        ps = trainer.configuration_manager.patch_size
        transforms = trainer.get_training_transforms(ps, rot, trainer._get_deep_supervision_scales(), mirror, dummy2d)
        assert {type(x).__name__ for x in leaves(transforms)} >= DA5_INTENSITY
        dl = nnUNetDataLoaderSoft(
            ds_tr, 4, initial_ps, ps, trainer.label_manager, oversample_foreground_percent=1.0, transforms=transforms
        )
        torch.manual_seed(3)
        np.random.seed(3)
        checked = 0
        for _ in range(3):
            batch = next(dl)
            soft, seg = batch["soft_target"], batch["target"]
            assert [tuple(s.shape) for s in soft] == [tuple(s.shape) for s in seg]
            for j in range(soft[0].shape[0]):
                s, lab = soft[0][j, 0].numpy(), seg[0][j, 0].numpy() == 1
                assert s.min() >= -1e-6 and s.max() <= 1 + 1e-6
                if lab.sum() > 50:
                    assert not (((s > 0.5) ^ lab) & ~shell(s > 0.5)).any()
                    assert ((s > 0.05) & (s < 0.95)).sum() > 20
                    checked += 1
        assert checked >= 6


def test_short_variants_and_budget_trainers(toy, tmp_path):
    """_debug/_demo keep DA5's augmentation with their parents' budgets and no test-time mirroring; the budget
    trainers take epochs / iterations / TTA from the environment and refuse bad values naming the variable."""
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerDA5 import nnUNetTrainerDA5

    from nnunet_spine.trainers.softseg import nnUNetTrainerSoftSeg_debug, nnUNetTrainerSoftSeg_demo

    for name, parent in (
        ("nnUNetTrainerSoftSegDA5_debug", nnUNetTrainerSoftSeg_debug),
        ("nnUNetTrainerSoftSegDA5_demo", nnUNetTrainerSoftSeg_demo),
    ):
        trainer, env = _make(toy, tmp_path, name)
        reference, _ = _make(toy, tmp_path, parent.__name__)
        assert isinstance(trainer, nnUNetTrainerDA5)
        assert (trainer.num_epochs, trainer.num_iterations_per_epoch) == (
            reference.num_epochs,
            reference.num_iterations_per_epoch,
        )
        with environ(env):
            trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        assert trainer.inference_allowed_mirroring_axes is None

    budget = {"NNSPINE_EPOCHS": "3", "NNSPINE_ITERATIONS": "7", "NNSPINE_VAL_ITERATIONS": "2", "NNSPINE_NO_TTA": "1"}
    for name in ("nnUNetTrainer_budget", "nnUNetTrainerSoftSeg_budget", "nnUNetTrainerSoftSegDA5_budget"):
        trainer, env = _make(toy, tmp_path, name, budget)
        assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (3, 7, 2)
        assert trainer.save_every == 1  # a 3-epoch budget run resumes from its last epoch, not from epoch 50
        with environ(env):
            trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        assert trainer.inference_allowed_mirroring_axes is None
    stock, env = _make(toy, tmp_path, "nnUNetTrainer_budget", {k: "" for k in budget})
    assert (stock.num_epochs, stock.num_iterations_per_epoch) == (1000, 250)  # unset: nnU-Net's defaults
    assert stock.save_every == 50  # nnU-Net's interval kept for a 1000-epoch run
    with environ(env):
        stock.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert stock.inference_allowed_mirroring_axes  # mirrored TTA kept
    with pytest.raises(RuntimeError, match="NNSPINE_ITERATIONS='0'"):
        _make(toy, tmp_path, "nnUNetTrainerSoftSeg_budget", {"NNSPINE_ITERATIONS": "0"})
    with pytest.raises(RuntimeError, match="NNSPINE_NO_TTA='yes'"):
        _make(toy, tmp_path, "nnUNetTrainer_budget", {"NNSPINE_NO_TTA": "yes"})
