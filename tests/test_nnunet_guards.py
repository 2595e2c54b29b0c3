"""Guards on the nnU-Net internals our trainers and loader build on.

Nothing of nnU-Net is copied; instead our code calls nnU-Net's methods and changes one thing they use (see
:mod:`nnunet_spine.integration.hooks`, :mod:`nnunet_spine.integration.soft_targets.loader` and
:mod:`nnunet_spine.trainers.lesion`). That relies on how the installed
nnU-Net's methods are written. Each entry below pins the source of one nnU-Net function (SHA-256 of
``inspect.getsource``) and names the code of ours that relies on it: when an nnU-Net update changes that source,
the test fails naming what to re-check; after re-checking (and adapting our code), update the hash here.
The behavioural tests below check the same contracts directly on the installed nnU-Net.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pickle

import numpy as np
import pytest
import torch

#: nnU-Net function (module:qualname) -> (sha256 of its source, our code relying on it, what to re-check)
GUARDED = {
    "nnunetv2.preprocessing.resampling.default_resampling:resample_data_or_seg_to_shape": (
        "8a1a616bf8a1287f",
        "nnunet_spine.integration.soft_targets.preprocess.preprocess_soft_array (default plans)",
        "called with is_seg=False, order=1 and the plans' order_z / force_separate_z for soft targets; the "
        "signature (data, new_shape, current_spacing, new_spacing, is_seg, order, order_z, force_separate_z) must hold",
    ),
    "nnunetv2.preprocessing.resampling.resample_torch:resample_torch_fornnunet": (
        "889e263ceafc42b8",
        "nnunet_spine.integration.soft_targets.preprocess.soft_resampling (*_torchres plans)",
        "soft targets follow the plans' torch resampling as the images do: it must stay linear for data "
        "(mode='linear', is_seg=False) and take (data, new_shape, current_spacing, new_spacing, **kwargs)",
    ),
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer:nnUNetTrainer.get_dataloaders": (
        "5f59e2b907cfa2d1",
        "nnunet_spine.trainers.softseg.nnUNetTrainerSoftSeg.get_dataloaders",
        "it runs nnU-Net's get_dataloaders with the module-level name nnUNetDataLoader bound to our loader class "
        "(nnunet_spine.integration.hooks.with_global); both loaders must still be built through that name",
    ),
    "nnunetv2.training.dataloading.data_loader:nnUNetDataLoader.generate_train_batch": (
        "0a430703c66ec9b8",
        "nnunet_spine.integration.soft_targets.loader.nnUNetDataLoaderSoft",
        "its hooks assume: get_indices() once per batch, then per sample get_bbox() followed by exactly one "
        "self.transforms(image=..., segmentation=...) call, image padded with 0, 2-D patches squeezed on axis 1",
    ),
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer:nnUNetTrainer.validation_step": (
        "3d415b41f6f7cd90",
        "nnunet_spine.integration.hooks.validation_step_with_output (validation_step of "
        "nnunet_spine.trainers.softseg.nnUNetTrainerSoftSeg and nnunet_spine.trainers.lesion.nnUNetTrainerLesion)",
        "it swaps self.loss for the call: nnU-Net must call self.loss(output, target) once with the network's full "
        "(deep-supervision) output and compute the pseudo Dice from batch['target']",
    ),
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer:nnUNetTrainer.train_step": (
        "c8993de84c8c419f",
        "nnunet_spine.trainers.softseg.nnUNetTrainerSoftSeg.train_step",
        "it passes the soft target as batch['target']: nnU-Net must use batch['target'] only as the loss target",
    ),
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer:nnUNetTrainer._build_loss": (
        "ba86dfb893faddc1",
        "nnunet_spine.integration.hooks.replace_inner_loss (soft trainers' _build_loss) and "
        "nnunet_spine.trainers.lesion.nnUNetTrainerLesion._build_loss",
        "the soft trainers keep nnU-Net's DeepSupervisionWrapper and replace its .loss; the lesion trainers keep "
        "nnU-Net's DC_and_CE_loss (plain labels) / DC_and_BCE_loss (regions) with .dc and .ce members",
    ),
    "nnunetv2.training.loss.compound_losses:DC_and_CE_loss.forward": (
        "b930a80c9c95bb40",
        "nnunet_spine.trainers.lesion (Dice smoothing set to 0; variants replace .ce with "
        "nnunet_spine.trainers.lesion_losses.FocalCELoss / TopKCELoss)",
        "the voxel term must still be self.ce(net_output, target[:, 0]) and the Dice term self.dc",
    ),
    "nnunetv2.training.loss.compound_losses:DC_and_BCE_loss.__init__": (
        "5fa891fd16dfc5f8",
        "nnunet_spine.trainers.lesion variants (FocalBCEWithLogitsLoss reduction)",
        "with an ignore label nnU-Net builds its BCE with reduction='none' and masks it; the replacement follows",
    ),
    "nnunetv2.training.loss.compound_losses:DC_and_BCE_loss.forward": (
        "74d26e1ae3d5acd6",
        "nnunet_spine.trainers.lesion variants (FocalBCEWithLogitsLoss / TopKBCEWithLogitsLoss as .ce)",
        "the voxel term must still be self.ce(net_output, target_regions), masked when an ignore label is used",
    ),
    "nnunetv2.training.loss.dice:MemoryEfficientSoftDiceLoss.forward": (
        "acbac5796c028f82",
        "nnunet_spine.trainers.lesion.nnUNetTrainerLesion._build_loss (Dice without smoothing)",
        "it sets .smooth = 0; the Dice must still read self.smooth, in numerator and denominator",
    ),
    "nnunetv2.training.nnUNetTrainer.nnUNetTrainer:nnUNetTrainer.perform_actual_validation": (
        "2bd52ada76cd3185",
        "nnunet_spine.trainers.lesion.nnUNetTrainerLesion.perform_actual_validation",
        "lesion_metrics.csv reads the exported predictions output_folder/validation/<case><file_ending> and the "
        "references in <preprocessed dataset>/gt_segmentations",
    ),
    "nnunetv2.training.logging.nnunet_logger:LocalLogger.load_checkpoint": (
        "ac9f390349751af3",
        "nnunet_spine.trainers.softseg.SoftLocalLogger.load_checkpoint",
        "it pads missing soft keys of stock checkpoints before nnU-Net's load_checkpoint copies the logging dict",
    ),
}


def _function(dotted: str):
    module_name, qualname = dotted.split(":")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _source_hash(func) -> str:
    return hashlib.sha256(inspect.getsource(func).encode()).hexdigest()[:16]


@pytest.mark.parametrize("upstream", sorted(GUARDED))
def test_guarded_nnunet_source_unchanged(upstream):
    import nnunetv2

    expected, ours, what = GUARDED[upstream]
    got = _source_hash(_function(upstream))
    version = getattr(nnunetv2, "__version__", None) or importlib.metadata.version("nnunetv2")
    assert got == expected, (
        f"nnU-Net's {upstream} changed (installed nnunetv2 {version}; hash {got}, guarded {expected}): "
        f"re-check {ours}: {what}. Then update its hash in tests/test_nnunet_guards.py."
    )


# ======================================================================= the same contracts, behaviourally
def test_with_global_substitutes_only_in_the_returned_function():
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    from nnunet_spine.integration.hooks import with_global

    original = trainer_module.nnUNetTrainer.get_dataloaders
    sentinel = object()
    copy = with_global(original, "nnUNetDataLoader", sentinel)
    assert copy.__globals__["nnUNetDataLoader"] is sentinel and copy.__code__ is original.__code__
    assert trainer_module.nnUNetDataLoader is nnUNetDataLoader  # nnU-Net's module untouched
    with pytest.raises(RuntimeError, match="no longer uses the global 'NoSuchName'"):
        with_global(original, "NoSuchName", sentinel)


def test_replace_inner_loss_keeps_nnunet_deep_supervision_weights():
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from nnunet_spine.integration.hooks import replace_inner_loss

    wrapper = DeepSupervisionWrapper(torch.nn.L1Loss(), [0.5, 0.25, 0.0])
    inner = torch.nn.MSELoss()
    out = replace_inner_loss(wrapper, inner)
    assert out is wrapper and out.loss is inner and out.weight_factors == (0.5, 0.25, 0.0)
    x = [torch.ones(2), torch.ones(2), torch.ones(2)]
    y = [torch.zeros(2), 3 * torch.ones(2), torch.zeros(2)]
    # by hand: 0.5 * mean(1²) + 0.25 * mean(2²) + 0 = 1.5
    assert float(out(x, y)) == pytest.approx(1.5)
    assert replace_inner_loss(torch.nn.L1Loss(), inner) is inner  # no deep supervision: the loss itself


def test_soft_loader_follows_nnunet_call_order_on_a_toy_dataset(tmp_path):
    """nnU-Net's own generate_train_batch drives our hooks: every sample's soft patch is cut where nnU-Net cut the
    image (the image is a known function of position, so its patch tells where it was cut), 2-D patches too."""
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from nnunet_spine.integration.soft_targets.layout import save_soft_target
    from nnunet_spine.integration.soft_targets.loader import nnUNetDataLoaderSoft

    shape = (6, 20, 24)
    z, y, x = np.indices(shape)
    position_code = (z * 1000 + y * 30 + x).astype(np.float32)  # unique per voxel
    blocks, chunks = comp_blosc2_params((1, *shape), (4, 16, 16), 4)
    for case in ("a", "b"):
        nnUNetDatasetBlosc2.save_case(
            position_code[None],
            (position_code[None] % 7 == 0).astype(np.int16),
            {"class_locations": {1: np.argwhere(position_code[None] % 7 == 0)}},
            str(tmp_path / case),
            chunks=chunks,
            blocks=blocks,
        )
        # soft target = the same code scaled into [0, 1]: a soft patch must equal the image patch / max
        save_soft_target(position_code[None] / position_code.max(), tmp_path / "soft_targets" / f"{case}.b2nd", shape)

    ds = nnUNetDatasetBlosc2(str(tmp_path), ["a", "b"])
    lm = LabelManager({"background": 0, "x": 1}, regions_class_order=None)
    for patch in ((4, 16, 16), (1, 16, 16)):
        final = patch if patch[0] != 1 else patch[1:]
        dl = nnUNetDataLoaderSoft(ds, 3, final, final, lm, oversample_foreground_percent=0.5)
        dl = pickle.loads(pickle.dumps(dl))  # as nnU-Net's worker processes receive it
        batch = next(dl)
        assert batch["soft_target"].shape == batch["data"].shape
        for j in range(3):
            image, soft = batch["data"][j].numpy(), batch["soft_target"][j].numpy()
            inside = image > 0  # padding is 0 in both
            np.testing.assert_allclose(soft[inside], image[inside] / position_code.max(), rtol=1e-6)
            assert np.all(soft[~inside] == 0)
