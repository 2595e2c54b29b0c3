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
(see :mod:`nnunet_extensions.soft_targets` for the file layout and data loading, :mod:`trainers.soft_losses`
for the losses). Deep supervision is kept (soft targets area-downsampled per scale). Every epoch the validation
logs, besides nnU-Net's pseudo Dice (which still selects ``checkpoint_best``), the soft Dice and the MSE against
the soft target and the MSE against the binarized label.
"""

from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.utilities.file_and_folder_operations import join
from batchgeneratorsv2.helpers.scalar_type import RandomScalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from torch import autocast
from torch import distributed as dist

from nnunetv2.training.logging.nnunet_logger import LocalLogger
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.helpers import dummy_context

from nnunet_extensions.soft_targets.deep_supervision import DownsampleSoftTargetForDSTransform
from nnunet_extensions.soft_targets.layout import missing_soft_targets
from nnunet_extensions.soft_targets.loader import nnUNetDataLoaderSoft
from trainers.soft_losses import SoftTargetLoss, soft_metric_sums, soft_metrics_from_sums

#: Per-epoch validation metrics added to nnU-Net's log (``checkpoint['logging']``), with their plot labels.
SOFT_LOG_KEYS = {
    'val_soft_dice': 'soft Dice vs soft target',
    'val_mse_soft': 'MSE vs soft target',
    'val_mse_binary': 'MSE vs binarized label',
}


class SoftLocalLogger(LocalLogger):
    """nnU-Net's local logger plus the soft validation metrics (one value per epoch, like every other key).

    ``progress.png`` is nnU-Net's, unchanged; the soft metrics are plotted to ``progress_soft.png``.
    """

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        for k in SOFT_LOG_KEYS:
            self.my_fantastic_logging[k] = list()

    def load_checkpoint(self, checkpoint: dict):
        # a checkpoint of a stock trainer (e.g. fine-tuning continued with --c) has no soft keys: pad with NaN
        n = len(checkpoint.get('train_losses', []))
        for k in SOFT_LOG_KEYS:
            checkpoint.setdefault(k, [float('nan')] * n)
        super().load_checkpoint(checkpoint)

    def plot_progress_png(self, output_folder):
        super().plot_progress_png(output_folder)
        import matplotlib.pyplot as plt

        epoch = min(len(i) for i in self.my_fantastic_logging.values()) - 1
        x = list(range(epoch + 1))
        fig, ax = plt.subplots(1, 1, figsize=(30, 18))
        ax2 = ax.twinx()
        ax.plot(x, self.my_fantastic_logging['val_soft_dice'][:epoch + 1], color='g', ls='-', linewidth=4,
                label=SOFT_LOG_KEYS['val_soft_dice'])
        ax2.plot(x, self.my_fantastic_logging['val_mse_soft'][:epoch + 1], color='b', ls='-', linewidth=4,
                 label=SOFT_LOG_KEYS['val_mse_soft'])
        ax2.plot(x, self.my_fantastic_logging['val_mse_binary'][:epoch + 1], color='r', ls='dotted', linewidth=3,
                 label=SOFT_LOG_KEYS['val_mse_binary'])
        ax.set_xlabel('epoch')
        ax.set_ylabel('soft Dice')
        ax2.set_ylabel('MSE')
        ax.legend(loc=(0, 1))
        ax2.legend(loc=(0.3, 1))
        plt.tight_layout()
        fig.savefig(join(output_folder, 'progress_soft.png'))
        plt.close(fig)


class nnUNetTrainerSoftSeg(nnUNetTrainer):
    """Soft cord segmentation: stock 2-class head; cord probability fitted to soft masks with MSE + soft Dice."""

    #: weights of :class:`~trainers.soft_losses.SoftTargetLoss` (variants change only these)
    soft_loss_weights = {'weight_mse': 1.0, 'weight_dice': 1.0, 'weight_adapwing': 0.0}
    dataloader_class = nnUNetDataLoaderSoft

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.logger.local_logger = SoftLocalLogger(self.logger.local_logger.verbose)
        lm = self.label_manager
        if lm.has_regions or lm.has_ignore_label or len(lm.foreground_labels) != 1 or self.is_cascaded:
            raise RuntimeError(
                f"{self.__class__.__name__} trains one soft foreground (labels {{background: 0, cord: 1}}, no "
                f"regions, no ignore label, no cascade); this dataset has labels {dataset_json.get('labels')}")

    # ------------------------------------------------------------------------------------------ loss
    def _build_loss(self):
        loss = SoftTargetLoss(**self.soft_loss_weights, batch_dice=self.configuration_manager.batch_dice)
        if self.enable_deep_supervision:
            # nnU-Net's weighting: halved per scale, lowest resolution unused, normalized to sum 1
            weights = np.array([1 / (2 ** i) for i in range(len(self._get_deep_supervision_scales()))])
            weights[-1] = 1e-6 if (self.is_ddp and not self._do_i_compile()) else 0
            loss = DeepSupervisionWrapper(loss, weights / weights.sum())
        return loss

    # ------------------------------------------------------------------------------ data augmentation
    @staticmethod
    def get_training_transforms(
            patch_size: Union[np.ndarray, Tuple[int]],
            rotation_for_DA: RandomScalar,
            deep_supervision_scales: Union[List, Tuple, None],
            mirror_axes: Tuple[int, ...],
            do_dummy_2d_data_aug: bool,
            use_mask_for_norm: List[bool] = None,
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        transforms = nnUNetTrainer.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm, is_cascaded, foreground_labels, regions, ignore_label)
        if deep_supervision_scales is not None:
            transforms.transforms.append(DownsampleSoftTargetForDSTransform(deep_supervision_scales))
        return transforms

    @staticmethod
    def get_validation_transforms(
            deep_supervision_scales: Union[List, Tuple, None],
            is_cascaded: bool = False,
            foreground_labels: Union[Tuple[int, ...], List[int]] = None,
            regions: List[Union[List[int], Tuple[int, ...], int]] = None,
            ignore_label: int = None,
    ) -> BasicTransform:
        transforms = nnUNetTrainer.get_validation_transforms(deep_supervision_scales, is_cascaded,
                                                             foreground_labels, regions, ignore_label)
        if deep_supervision_scales is not None:
            transforms.transforms.append(DownsampleSoftTargetForDSTransform(deep_supervision_scales))
        return transforms

    # ---------------------------------------------------------------------------------- data loading
    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        missing = missing_soft_targets(self.preprocessed_dataset_folder,
                                       sorted(set(dataset_tr.identifiers) | set(dataset_val.identifiers)))
        if missing:
            raise RuntimeError(
                f"{len(missing)} case(s) have no preprocessed soft target (e.g. {missing[0]}) in "
                f"{self.preprocessed_dataset_folder}/soft_targets. Run: nnspine preprocess-soft "
                f"-d {self.plans_manager.dataset_name} -c {self.configuration_name} -p {self.plans_manager.plans_name}")
        return dataset_tr, dataset_val

    def get_dataloaders(self):
        # nnU-Net's get_dataloaders, with the soft-target data loader in place of nnUNetDataLoader
        patch_size = self.configuration_manager.patch_size
        deep_supervision_scales = self._get_deep_supervision_scales()
        rotation_for_DA, do_dummy_2d_data_aug, initial_patch_size, mirror_axes = \
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        tr_transforms = self.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm, is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels, regions=None,
            ignore_label=self.label_manager.ignore_label)
        val_transforms = self.get_validation_transforms(
            deep_supervision_scales, is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels, regions=None,
            ignore_label=self.label_manager.ignore_label)

        dataset_tr, dataset_val = self.get_tr_and_val_datasets()
        dl_tr = self.dataloader_class(dataset_tr, self.batch_size, initial_patch_size, patch_size,
                                      self.label_manager,
                                      oversample_foreground_percent=self.oversample_foreground_percent,
                                      sampling_probabilities=None, pad_sides=None, transforms=tr_transforms,
                                      probabilistic_oversampling=self.probabilistic_oversampling)
        dl_val = self.dataloader_class(dataset_val, self.batch_size, patch_size, patch_size, self.label_manager,
                                       oversample_foreground_percent=self.oversample_foreground_percent,
                                       sampling_probabilities=None, pad_sides=None, transforms=val_transforms,
                                       probabilistic_oversampling=self.probabilistic_oversampling)
        allowed_num_processes = get_allowed_n_proc_DA()
        if allowed_num_processes == 0:
            mt_gen_train = SingleThreadedAugmenter(dl_tr, None)
            mt_gen_val = SingleThreadedAugmenter(dl_val, None)
        else:
            mt_gen_train = NonDetMultiThreadedAugmenter(
                data_loader=dl_tr, transform=None, num_processes=allowed_num_processes,
                num_cached=max(6, allowed_num_processes // 2), seeds=None,
                pin_memory=self.device.type == 'cuda', wait_time=0.002)
            mt_gen_val = NonDetMultiThreadedAugmenter(
                data_loader=dl_val, transform=None, num_processes=max(1, allowed_num_processes // 2),
                num_cached=max(3, allowed_num_processes // 4), seeds=None,
                pin_memory=self.device.type == 'cuda', wait_time=0.002)
        _ = next(mt_gen_train)
        _ = next(mt_gen_val)
        return mt_gen_train, mt_gen_val

    # -------------------------------------------------------------------------------- train / validate
    def train_step(self, batch: dict) -> dict:
        # nnU-Net's train step, with the soft target as the loss target
        return super().train_step({**batch, 'target': batch['soft_target']})

    def validation_step(self, batch: dict) -> dict:
        data = batch['data'].to(self.device, non_blocking=True)
        target, soft = batch['target'], batch['soft_target']
        if isinstance(target, list):
            target = [i.to(self.device, non_blocking=True) for i in target]
            soft = [i.to(self.device, non_blocking=True) for i in soft]
        else:
            target = target.to(self.device, non_blocking=True)
            soft = soft.to(self.device, non_blocking=True)

        with autocast(self.device.type, enabled=True) if self.device.type == 'cuda' else dummy_context():
            output = self.network(data)
            del data
            l = self.loss(output, soft)

        if self.enable_deep_supervision:
            output, target, soft = output[0], target[0], soft[0]

        # nnU-Net's pseudo Dice (hard argmax vs integer label): drives ema_fg_dice and checkpoint_best
        axes = [0] + list(range(2, output.ndim))
        predicted_segmentation_onehot = torch.zeros(output.shape, device=output.device, dtype=torch.float16)
        predicted_segmentation_onehot.scatter_(1, output.argmax(1)[:, None], 1)
        tp, fp, fn, _ = get_tp_fp_fn_tn(predicted_segmentation_onehot, target, axes=axes, mask=None)

        return {'loss': l.detach().cpu().numpy(),
                'tp_hard': tp.detach().cpu().numpy()[1:],
                'fp_hard': fp.detach().cpu().numpy()[1:],
                'fn_hard': fn.detach().cpu().numpy()[1:],
                'soft_sums': soft_metric_sums(output, soft, target)}

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        soft_sums = np.sum([o.pop('soft_sums') for o in val_outputs], axis=0)
        super().on_validation_epoch_end(val_outputs)
        if self.is_ddp:
            gathered = [None for _ in range(dist.get_world_size())]
            dist.all_gather_object(gathered, soft_sums)
            soft_sums = np.sum(gathered, axis=0)
        metrics = soft_metrics_from_sums(soft_sums)
        self.logger.log('val_soft_dice', metrics['soft_dice'], self.current_epoch)
        self.logger.log('val_mse_soft', metrics['mse_soft'], self.current_epoch)
        self.logger.log('val_mse_binary', metrics['mse_binary'], self.current_epoch)
        self.print_to_log_file('val soft Dice', np.round(metrics['soft_dice'], decimals=4),
                               'MSE vs soft target', np.round(metrics['mse_soft'], decimals=5),
                               'MSE vs binarized label', np.round(metrics['mse_binary'], decimals=5))


class nnUNetTrainerSoftSegMSE(nnUNetTrainerSoftSeg):
    """Soft cord segmentation with the MSE against the soft mask as the only loss."""

    soft_loss_weights = {'weight_mse': 1.0, 'weight_dice': 0.0, 'weight_adapwing': 0.0}


class nnUNetTrainerSoftSegAdapWing(nnUNetTrainerSoftSeg):
    """Soft cord segmentation with the adaptive wing regression loss (Wang et al. 2019; Bédard et al.)."""

    soft_loss_weights = {'weight_mse': 0.0, 'weight_dice': 0.0, 'weight_adapwing': 1.0}


class nnUNetTrainerSoftSeg_debug(nnUNetTrainerSoftSeg):
    """nnUNetTrainerSoftSeg cut short for tests and demos: 2 epochs of 4 iterations, 2 validation batches, no
    mirrored test-time augmentation (8x faster final validation and prediction on CPU)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 4
        self.num_val_iterations_per_epoch = 2

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        # as nnU-Net's nnUNetTrainerNoMirroring, for inference only: training still mirrors
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return configured


class nnUNetTrainerSoftSeg_demo(nnUNetTrainerSoftSeg_debug):
    """nnUNetTrainerSoftSeg for ``nnspine demo`` on CPU: 6 epochs of 25 iterations (~4 min), no TTA."""

    DEMO_EPOCHS = 6  # read by the demo's progress line

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.DEMO_EPOCHS
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 3


#: The trainers this package provides (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (nnUNetTrainerSoftSeg, nnUNetTrainerSoftSegMSE, nnUNetTrainerSoftSegAdapWing, nnUNetTrainerSoftSeg_debug,
            nnUNetTrainerSoftSeg_demo)
