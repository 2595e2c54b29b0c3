"""nnU-Net v2 trainers for lesion segmentation (spinal metastases, cord lesions): small, few, easy to miss.

Use with stock nnU-Net (``eval "$(nnspine trainers --export)"`` sets ``nnUNet_extTrainer``)::

    nnspine convert lesion -i BIDS --channels T2w,T1w --nnunet-dataset 201 --name Lesions [--regions]
    nnUNetv2_plan_and_preprocess -d 201 -c 3d_fullres --verify_dataset_integrity
    nnUNetv2_train 201 3d_fullres 0 -tr nnUNetTrainerLesion
    nnUNetv2_predict -i IN -o OUT -d 201 -c 3d_fullres -f 0 -tr nnUNetTrainerLesion

What changes against ``nnUNetTrainer`` (everything else, network and predictor included, is nnU-Net's):

* **Loss**: nnU-Net's Dice + CE (plain labels) or Dice + BCE (region labels), with the Dice term *unsmoothed*
  (``smooth = 0``): a tiny lesion still gives a full-size gradient, as nnU-Net's maintainers recommend when the
  pseudo Dice collapses on small structures. Variants replace the CE term only (focal, top-k).
* **Sampling**: ``oversample_foreground_percent = 0.66``, drawn per sample (probabilistic), so almost every batch
  has patches centred on a lesion (or another foreground class).
* **Lesion-wise validation**: every epoch, beside nnU-Net's pseudo Dice, the lesion sensitivity, precision and F1
  on the validation patches (summed counts of the epoch; :mod:`nnunet_spine.postprocessing.lesion.metrics`, the
  definitions of ``nnspine evaluate lesions``: 26-connected components, the ``overlap`` rule) go to the log, the
  checkpoint and ``progress_lesion.png``. The final validation adds ``validation/lesion_metrics.csv`` (one row per case
  and an ``ALL`` row, columns of ``nnspine evaluate lesions``) next to nnU-Net's ``summary.json``.

Which label is the lesion: the label (or region) named ``lesion`` in ``dataset.json``, else the highest label
(plain) or the last region. Region datasets as ``nnspine convert lesion --regions`` writes them
(``{"background": 0, "cord": [1, 2], "lesion": 2}``, ``regions_class_order: [1, 2]``) have the lesion region
last, so the exported label map holds it as value 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunet_spine.core.lesion_matching import (
    COUNT_KEYS,
    DEFAULT_CONNECTIVITY,
    DEFAULT_MATCH,
    MatchRule,
    lesion_counts,
    lesion_scores,
)
from nnunet_spine.integration.hooks import validation_step_with_output
from nnunet_spine.postprocessing.lesion.metrics import (
    BY_SIZE_COLUMNS,
    DEFAULT_SIZE_EDGES_MM3,
    cases_csv,
    detection_by_size,
    evaluate_lesion_arrays,
    summary_rows,
)
from nnunet_spine.trainers.epoch_metrics import Curve, ExtraMetricsLogger, sum_over_validation
from nnunet_spine.trainers.lesion_losses import FocalBCEWithLogitsLoss, FocalCELoss, TopKBCEWithLogitsLoss, TopKCELoss
from nnunet_spine.trainers.short_runs import DEBUG_BUDGET, LESION_DEMO_BUDGET, ShortRun

#: File written by the final validation, in ``<fold>/validation/``.
LESION_METRICS_CSV = "lesion_metrics.csv"
#: Detection by reference-lesion volume (bins
#: :data:`~nnunet_spine.postprocessing.lesion.metrics.DEFAULT_SIZE_EDGES_MM3`), beside it.
LESION_BY_SIZE_CSV = "lesion_detection_by_size.csv"


class LesionLocalLogger(ExtraMetricsLogger):
    """nnU-Net's local logger plus lesion sensitivity, precision and F1 per epoch, plotted to progress_lesion.png."""

    curves = (
        Curve("val_lesion_sensitivity", "lesion sensitivity (val patches)", "b"),
        Curve("val_lesion_precision", "lesion precision (val patches)", "r"),
        Curve("val_lesion_f1", "lesion F1 (val patches)", "g"),
        Curve("mean_fg_dice", "pseudo Dice", "k", "dotted"),
    )
    png_name = "progress_lesion.png"
    left_label = "lesion-wise score / pseudo Dice"


@dataclass(frozen=True)
class LesionTarget:
    """Where the lesion is in a network output, a training target and an exported label map.

    Plain labels: ``argmax == label``; regions: channel ``channel`` above 0.5 (logit > 0). In files, the
    prediction's lesion is ``== file_label`` and the reference's ``isin(ref_labels)``.
    """

    regions: bool
    channel: int
    file_label: int
    ref_labels: tuple[int, ...]

    @classmethod
    def from_label_manager(cls, label_manager) -> LesionTarget:
        """The lesion of a dataset: the label / region named ``lesion``, else the highest label / last region."""
        names = [k for k, v in label_manager.label_dict.items() if k != "ignore" and not _is_background(v)]
        index = names.index("lesion") if "lesion" in names else len(names) - 1
        if label_manager.has_regions:
            region = label_manager.foreground_regions[index]
            labels = tuple(int(i) for i in np.atleast_1d(region))
            return cls(True, index, int(label_manager.regions_class_order[index]), labels)
        label = int(label_manager.label_dict[names[index]])
        return cls(False, label, label, (label,))

    def patch_masks(self, output: torch.Tensor, target: torch.Tensor, ignore_label: int | None):
        """Boolean lesion masks ``(pred, ref)`` of shape ``(B, *spatial)`` of a network output and its target
        (nnU-Net's validation target: labels ``(B, 1, ...)`` or one-hot regions ``(B, R[+ignore], ...)``);
        voxels under the ignore label are neither."""
        if self.regions:
            pred = output[:, self.channel] > 0
            ref = target[:, self.channel] > 0
            valid = target[:, -1] == 0 if ignore_label is not None else None
        else:
            pred = output.argmax(1) == self.channel
            ref = target[:, 0] == self.channel
            valid = target[:, 0] != ignore_label if ignore_label is not None else None
        if valid is not None:
            pred, ref = pred & valid, ref & valid
        return pred.cpu().numpy(), ref.cpu().numpy()


def _is_background(value) -> bool:
    return all(int(i) == 0 for i in np.atleast_1d(value))


def _inner_loss(loss) -> nn.Module:
    return loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss


def write_validation_lesion_metrics(
    validation_folder: Path,
    gt_folder: Path,
    file_ending: str,
    target: LesionTarget,
    connectivity: int = DEFAULT_CONNECTIVITY,
    match: str | MatchRule = DEFAULT_MATCH,
) -> Path:
    """Lesion-wise metrics of nnU-Net's final validation: one row per predicted case of ``validation_folder``
    against ``gt_folder/<case><file_ending>`` (nnU-Net's ``gt_segmentations``), then the ``ALL``, ``MEAN``, ``SD``
    and ``N`` rows; written to ``validation_folder/lesion_metrics.csv`` (columns of ``nnspine evaluate lesions``,
    volumes in mm³), and detection by lesion size to ``lesion_detection_by_size.csv``."""
    import pandas as pd

    from nnunet_spine.core.io import check_same_grid, load_image, write_text

    rows, lesions = [], []
    for pred_file in sorted(validation_folder.glob(f"*{file_ending}")):
        case = pred_file.name[: -len(file_ending)]
        pred = load_image(pred_file, "labels")
        ref = load_image(gt_folder / f"{case}{file_ending}", "labels")
        check_same_grid(ref, pred)
        row, per = evaluate_lesion_arrays(
            np.isin(ref.data, target.ref_labels),
            pred.data == target.file_label,
            ref.affine,
            case=case,
            match=match,
            connectivity=connectivity,
            per_lesion=True,
        )
        rows.append(row)
        lesions.extend(per)
    sizes = pd.DataFrame(detection_by_size(lesions, DEFAULT_SIZE_EDGES_MM3), columns=BY_SIZE_COLUMNS)
    write_text(validation_folder / LESION_BY_SIZE_CSV, sizes.to_csv(index=False, float_format="%.6g"), overwrite=True)
    return write_text(validation_folder / LESION_METRICS_CSV, cases_csv(rows + summary_rows(rows)), overwrite=True)


class nnUNetTrainerLesion(nnUNetTrainer):
    """Lesion segmentation: Dice without smoothing + CE, lesion patches in 2/3 of samples, lesion-wise validation.

    See the module docstring. Works with plain and region labels (and nnU-Net's ignore label).
    """

    #: Foreground oversampling (nnU-Net: 0.33), drawn per sample.
    OVERSAMPLE_FOREGROUND = 0.66
    #: Lesion components and matching of the per-epoch and final lesion metrics.
    connectivity = DEFAULT_CONNECTIVITY
    #: Matching rule (a kind name or a :class:`~nnunet_spine.core.lesion_matching.MatchRule`); subclass to change it.
    match: str | MatchRule = DEFAULT_MATCH

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.oversample_foreground_percent = self.OVERSAMPLE_FOREGROUND
        self.probabilistic_oversampling = True
        self.lesion_target = LesionTarget.from_label_manager(self.label_manager)
        self.logger.local_logger = LesionLocalLogger(self.logger.local_logger.verbose)

    # ------------------------------------------------------------------------------------------ loss
    def voxel_loss(self) -> nn.Module | None:
        """The voxel-wise term beside Dice; ``None`` keeps nnU-Net's CE / BCE (variants override this)."""
        return None

    def _build_loss(self):
        # nnU-Net's Dice + CE / BCE (deep supervision included), Dice unsmoothed, CE term replaced by variants
        loss = super()._build_loss()
        inner = _inner_loss(loss)
        getattr(inner.dc, "_orig_mod", inner.dc).smooth = 0.0
        voxel = self.voxel_loss()
        if voxel is not None:
            inner.ce = voxel
        return loss

    # -------------------------------------------------------------------------------------- validation
    def validation_step(self, batch: dict) -> dict:
        # nnU-Net's validation step, plus the lesion counts of each validation patch
        result, output = validation_step_with_output(super().validation_step, self, batch)
        target = batch["target"]
        if self.enable_deep_supervision:
            output, target = output[0], target[0]
        with torch.no_grad():
            pred, ref = self.lesion_target.patch_masks(
                output, target.to(output.device), self.label_manager.ignore_label
            )
        counts = np.zeros(len(COUNT_KEYS), dtype=np.int64)
        for p, r in zip(pred, ref):
            c = lesion_counts(r, p, connectivity=self.connectivity, match=self.match)
            counts += [c[k] for k in COUNT_KEYS]
        result["lesion_counts"] = counts
        return result

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        counts = dict(zip(COUNT_KEYS, (int(i) for i in sum_over_validation(self, val_outputs, "lesion_counts"))))
        super().on_validation_epoch_end(val_outputs)
        scores = lesion_scores(counts)
        for k in ("lesion_sensitivity", "lesion_precision", "lesion_f1"):
            self.logger.log(f"val_{k}", scores[k], self.current_epoch)
        self.print_to_log_file(
            "val lesion sensitivity",
            np.round(scores["lesion_sensitivity"], 4),
            "precision",
            np.round(scores["lesion_precision"], 4),
            "F1",
            np.round(scores["lesion_f1"], 4),
            f"(patches: {counts['ref_lesions']} reference, {counts['pred_lesions']} predicted lesions, "
            f"tp {counts['tp']} fp {counts['fp']} fn {counts['fn']}; {MatchRule.of(self.match).name} rule, "
            f"{self.connectivity}-connectivity)",
        )

    def perform_actual_validation(self, save_probabilities: bool = False):
        super().perform_actual_validation(save_probabilities)
        if self.local_rank == 0:
            folder = Path(self.output_folder) / "validation"
            out = write_validation_lesion_metrics(
                folder,
                Path(self.preprocessed_dataset_folder_base) / "gt_segmentations",
                self.dataset_json["file_ending"],
                self.lesion_target,
                self.connectivity,
                self.match,
            )
            self.print_to_log_file(f"Lesion-wise validation metrics written to {out}", also_print_to_console=True)


class nnUNetTrainerLesion_DiceFocal(nnUNetTrainerLesion):
    """nnUNetTrainerLesion with focal loss (γ = 2) instead of cross-entropy, against under-segmentation."""

    def voxel_loss(self):
        lm = self.label_manager
        if lm.has_regions:
            return FocalBCEWithLogitsLoss(gamma=2.0, reduction="none" if lm.has_ignore_label else "mean")
        return FocalCELoss(gamma=2.0, ignore_index=lm.ignore_label if lm.has_ignore_label else -100)


class nnUNetTrainerLesion_DiceTopK(nnUNetTrainerLesion):
    """nnUNetTrainerLesion with the cross-entropy of the 10 % hardest voxels (top-k) instead of the plain CE."""

    def voxel_loss(self):
        lm = self.label_manager
        if lm.has_regions:
            if lm.has_ignore_label:
                raise RuntimeError(
                    f"{self.__class__.__name__}: region labels with an ignore label are not "
                    f"supported (top-k of a masked loss); use nnUNetTrainerLesion_DiceFocal"
                )
            return TopKBCEWithLogitsLoss(k=10)
        return TopKCELoss(k=10, ignore_index=lm.ignore_label if lm.has_ignore_label else -100)


class nnUNetTrainerLesion_debug(ShortRun, nnUNetTrainerLesion):
    """nnUNetTrainerLesion cut short for tests: 8 iterations, no test-time mirroring.

    2 epochs of 4 iterations, 2 validation batches; without mirrored test-time augmentation final validation and
    prediction are 8x faster on CPU.
    """

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = DEBUG_BUDGET
    TEST_TIME_MIRRORING = False


class nnUNetTrainerLesion_demo(nnUNetTrainerLesion_debug):
    """nnUNetTrainerLesion for the CPU demo: 200 iterations at 3x nnU-Net's learning rate, every patch centred on a
    lesion, no test-time mirroring.

    Trained by ``nnspine demo --lesion``: 8 epochs of 25 iterations, 3 validation batches. With nnU-Net's 150
    iterations (6 x 25), its learning rate (0.01, poly decay) and its lesion sampling (66 %), one run in three
    stayed on the all-background solution: the poly schedule has decayed before the network leaves it. An initial
    learning rate of 0.03 (same poly decay), a patch always drawn around a lesion (``OVERSAMPLE_FOREGROUND = 1``;
    the patch is still mostly background) and 50 more iterations leave it within the first epochs
    (``benchmarks/bench_lesion_demo.py`` counts the seeds that found lesions).
    """

    NUM_EPOCHS, NUM_ITERATIONS, NUM_VAL_ITERATIONS = LESION_DEMO_BUDGET
    OVERSAMPLE_FOREGROUND = 1.0
    INITIAL_LR = 0.03

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = self.INITIAL_LR


#: The trainers of this family (exported for ``nnUNet_extTrainer`` and listed by ``nnspine trainers``).
TRAINERS = (
    nnUNetTrainerLesion,
    nnUNetTrainerLesion_DiceFocal,
    nnUNetTrainerLesion_DiceTopK,
    nnUNetTrainerLesion_debug,
    nnUNetTrainerLesion_demo,
)
