"""nnU-Net v2 trainers for soft (partial-volume) spinal cord segmentation.

Use with stock nnU-Net (``eval "$(nnspine trainers --export)"`` sets ``nnUNet_extTrainer``)::

    nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres --verify_dataset_integrity
    nnspine preprocess-soft -d 501 -c 3d_fullres
    nnUNetv2_train 501 3d_fullres 0 -tr nnUNetTrainerSoftSeg
    nnUNetv2_predict -i IN -o OUT -d 501 -c 3d_fullres -f 0 -tr nnUNetTrainerSoftSeg --save_probabilities

The network is nnU-Net's, with its usual 2-channel (background, cord) softmax head, so the stock predictor
works unchanged: the exported integer map is the soft mask thresholded at 0.5, and ``--save_probabilities``
writes the soft mask itself (channel 1 of the ``.npz``). Only the training target changes: the cord
probability is fitted to the soft mask that ``nnspine preprocess-soft`` stored beside the preprocessed cases
(see :mod:`nnunet_spine.integration.soft_targets` for the file layout and data loading,
:mod:`nnunet_spine.trainers.soft_losses` for the losses). Deep supervision is kept (soft targets area-downsampled per
scale). Every epoch the validation logs, besides nnU-Net's pseudo Dice (which still selects ``checkpoint_best``), the
soft Dice and the MSE against the soft target and the MSE against the binarized label.

Nothing of nnU-Net's trainer or data loader is copied: each override calls nnU-Net's method and changes one thing
it uses (the loader class, the per-scale loss, the loss target; see :mod:`nnunet_spine.integration.hooks`), and
``tests/test_nnunet_guards.py`` fails, naming the override to re-check, when the installed nnU-Net's source of
those methods changes. Datasets the soft trainers cannot train (region-based labels, an ignore label, several
foreground labels, cascades) are refused when the trainer is built, with a message naming the problem.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_spine.integration.hooks import replace_inner_loss, validation_step_with_output, with_global
from nnunet_spine.integration.soft_targets.deep_supervision import DownsampleSoftTargetForDSTransform
from nnunet_spine.integration.soft_targets.layout import missing_soft_targets
from nnunet_spine.integration.soft_targets.loader import nnUNetDataLoaderSoft
from nnunet_spine.trainers.epoch_metrics import Curve, ExtraMetricsLogger, sum_over_validation
from nnunet_spine.trainers.short_runs import DEBUG_BUDGET, DEMO_BUDGET, ShortRun
from nnunet_spine.trainers.soft_losses import SoftTargetLoss, soft_metric_sums, soft_metrics_from_sums


class SoftLocalLogger(ExtraMetricsLogger):
    """nnU-Net's local logger plus the soft validation metrics (one value per epoch, like every other key).

    ``progress.png`` is nnU-Net's, unchanged; the soft metrics are plotted to ``progress_soft.png``.
    """

    curves = (
        Curve("val_soft_dice", "soft Dice vs soft target", "g"),
        Curve("val_mse_soft", "MSE vs soft target", "b", axis="right"),
        Curve("val_mse_binary", "MSE vs binarized label", "r", "dotted", axis="right"),
    )
    png_name = "progress_soft.png"
    left_label = "soft Dice"
    right_label = "MSE"


def check_soft_trainable(label_manager, is_cascaded: bool, labels, trainer_name: str) -> None:
    """Refuse, with one clear message, a dataset the soft trainers cannot train: they fit one soft foreground.

    Region-based labels, an ignore label, more than one foreground label or a cascade would be silently
    mistrained (the soft target has one channel); the message says what is needed instead.
    """
    if label_manager.has_regions:
        problem = "region-based labels (regions / regions_class_order) are not supported"
    elif label_manager.has_ignore_label:
        problem = "an ignore label is not supported"
    elif len(label_manager.foreground_labels) != 1:
        problem = f"{len(label_manager.foreground_labels)} foreground labels given, one is supported"
    elif is_cascaded:
        problem = "cascaded configurations are not supported"
    else:
        return
    raise RuntimeError(
        f'{trainer_name} trains one soft foreground (dataset.json labels {{"background": 0, '
        f'"cord": 1}}): {problem}; this dataset has labels {labels}'
    )


def _append_soft_ds(transforms, nnunet_method, args: tuple, kwargs: dict):
    """Append the soft target's deep-supervision pyramid to nnU-Net's transforms (when deep supervision is on)."""
    scales = inspect.signature(nnunet_method).bind(*args, **kwargs).arguments.get("deep_supervision_scales")
    if scales is not None:
        transforms.transforms.append(DownsampleSoftTargetForDSTransform(scales))
    return transforms


def _to_device(x, device):
    if isinstance(x, (list, tuple)):
        return [i.to(device, non_blocking=True) for i in x]
    return x.to(device, non_blocking=True)


class nnUNetTrainerSoftSeg(nnUNetTrainer):
    """Soft cord segmentation: stock 2-class head; cord probability fitted to soft masks with MSE + soft Dice."""

    #: weights of :class:`~nnunet_spine.trainers.soft_losses.SoftTargetLoss` (variants change only these)
    soft_loss_weights = {"weight_mse": 1.0, "weight_dice": 1.0, "weight_adapwing": 0.0}
    dataloader_class = nnUNetDataLoaderSoft

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.logger.local_logger = SoftLocalLogger(self.logger.local_logger.verbose)
        check_soft_trainable(self.label_manager, self.is_cascaded, dataset_json.get("labels"), self.__class__.__name__)

    # ------------------------------------------------------------------------------------------ loss
    def _build_loss(self):
        # nnU-Net's loss construction (deep-supervision weights included), with the soft-target loss per scale
        soft = SoftTargetLoss(**self.soft_loss_weights, batch_dice=self.configuration_manager.batch_dice)
        return replace_inner_loss(super()._build_loss(), soft)

    # ------------------------------------------------------------------------------ data augmentation
    @staticmethod
    def get_training_transforms(*args, **kwargs) -> BasicTransform:
        """nnU-Net's training transforms, then the soft target's deep-supervision pyramid."""
        transforms = nnUNetTrainer.get_training_transforms(*args, **kwargs)
        return _append_soft_ds(transforms, nnUNetTrainer.get_training_transforms, args, kwargs)

    @staticmethod
    def get_validation_transforms(*args, **kwargs) -> BasicTransform:
        """nnU-Net's validation transforms, then the soft target's deep-supervision pyramid."""
        transforms = nnUNetTrainer.get_validation_transforms(*args, **kwargs)
        return _append_soft_ds(transforms, nnUNetTrainer.get_validation_transforms, args, kwargs)

    # ---------------------------------------------------------------------------------- data loading
    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        missing = missing_soft_targets(
            self.preprocessed_dataset_folder, sorted(set(dataset_tr.identifiers) | set(dataset_val.identifiers))
        )
        if missing:
            raise RuntimeError(
                f"{len(missing)} case(s) have no preprocessed soft target (e.g. {missing[0]}) in "
                f"{self.preprocessed_dataset_folder}/soft_targets. Run: nnspine preprocess-soft "
                f"-d {self.plans_manager.dataset_name} -c {self.configuration_name} -p {self.plans_manager.plans_name}"
            )
        return dataset_tr, dataset_val

    def get_dataloaders(self):
        # nnU-Net's own get_dataloaders, building self.dataloader_class where it builds nnUNetDataLoader
        build = with_global(super().get_dataloaders.__func__, "nnUNetDataLoader", self.dataloader_class)
        return build(self)

    # -------------------------------------------------------------------------------- train / validate
    def train_step(self, batch: dict) -> dict:
        # nnU-Net's train step, with the soft target as the loss target
        return super().train_step({**batch, "target": batch["soft_target"]})

    def validation_step(self, batch: dict) -> dict:
        # nnU-Net's validation step (pseudo Dice of argmax vs the integer label: drives ema_fg_dice and
        # checkpoint_best), with the loss computed against the soft target; adds the soft metrics' sums
        soft = _to_device(batch["soft_target"], self.device)
        soft_loss = self.loss
        result, output = validation_step_with_output(
            super().validation_step, self, batch, loss=lambda output, label: soft_loss(output, soft)
        )
        label = batch["target"]
        if self.enable_deep_supervision:
            output, soft, label = output[0], soft[0], label[0]
        result["soft_sums"] = soft_metric_sums(output, soft, label.to(output.device))
        return result

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        soft_sums = sum_over_validation(self, val_outputs, "soft_sums")
        super().on_validation_epoch_end(val_outputs)
        metrics = soft_metrics_from_sums(soft_sums)
        self.logger.log("val_soft_dice", metrics["soft_dice"], self.current_epoch)
        self.logger.log("val_mse_soft", metrics["mse_soft"], self.current_epoch)
        self.logger.log("val_mse_binary", metrics["mse_binary"], self.current_epoch)
        self.print_to_log_file(
            "val soft Dice",
            np.round(metrics["soft_dice"], decimals=4),
            "MSE vs soft target",
            np.round(metrics["mse_soft"], decimals=5),
            "MSE vs binarized label",
            np.round(metrics["mse_binary"], decimals=5),
        )


class nnUNetTrainerSoftSegMSE(nnUNetTrainerSoftSeg):
    """Soft cord segmentation with the MSE against the soft mask as the only loss."""

    soft_loss_weights = {"weight_mse": 1.0, "weight_dice": 0.0, "weight_adapwing": 0.0}


class nnUNetTrainerSoftSegAdapWing(nnUNetTrainerSoftSeg):
    """Soft cord segmentation with the adaptive wing loss as the only loss.

    Adaptive wing loss: Wang, Bo & Fuxin, ICCV 2019, used for soft cord masks by Bédard et al.
    """

    soft_loss_weights = {"weight_mse": 0.0, "weight_dice": 0.0, "weight_adapwing": 1.0}


class nnUNetTrainerSoftSeg_debug(ShortRun, nnUNetTrainerSoftSeg):
    """nnUNetTrainerSoftSeg cut short for tests: 8 iterations, no test-time mirroring.

    2 epochs of 4 iterations, 2 validation batches; without mirrored test-time augmentation final validation and
    prediction are 8x faster on CPU.
    """

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = DEBUG_BUDGET
    TEST_TIME_MIRRORING = False


class nnUNetTrainerSoftSeg_demo(nnUNetTrainerSoftSeg_debug):
    """nnUNetTrainerSoftSeg for the CPU demo: 150 iterations (about 4 minutes), no test-time mirroring."""

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = DEMO_BUDGET


#: The trainers this package provides (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (
    nnUNetTrainerSoftSeg,
    nnUNetTrainerSoftSegMSE,
    nnUNetTrainerSoftSegAdapWing,
    nnUNetTrainerSoftSeg_debug,
    nnUNetTrainerSoftSeg_demo,
)
