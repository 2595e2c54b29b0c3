"""The soft-segmentation ablation on cord phantoms, every step through the real console scripts.

What Bédard et al. claim, measured with this package's own tools on subjects the models never saw:

* arm **a**: stock ``nnUNetTrainer`` (CE + Dice) on each contrast's own binary cord mask;
* arm **b**: ``nnUNetTrainerSoftSeg`` (MSE + soft Dice) on the converter's soft GT (``nnspine convert softgt``);
* arm **c**: ``nnUNetTrainerSoftSegDA5``, as b with nnU-Net's aggressive (DA5) augmentation;
* arm **d** (generalisation): as c, trained on three contrasts only (soft GT from those three), tested on the
  two contrasts it never saw.

Every arm trains the ``_budget`` variant of its trainer (:mod:`nnunet_spine.trainers.budget`) with the same epochs and
iterations, on the same preprocessed images (one set of plans, planned on the soft dataset and moved to the
others with ``nnUNetv2_move_plans_between_datasets``), fold 0 of a split whose training set is every case (the
validation case, the smallest image, is one of them: nnU-Net's own validation only picks ``checkpoint_best``,
which is not used; the final checkpoint is evaluated).

Evaluation (held-out subjects, 5 contrasts each; arm d on its 2 unseen contrasts): predictions with
``nnUNetv2_predict`` (arm a: nnU-Net's binary output; soft arms: ``--save_probabilities`` → ``nnspine softmask``),
``nnspine evaluate csa-variability`` at one vertebral level (levels from the phantom's disc labels), and
``nnspine evaluate compare-variability`` of every row against arm a on the same contrasts (Wilcoxon signed-rank
on the per-subject SDs). Reference rows measure the held-out subjects' binary GT masks and exact
partial-volume truth the same way. CSA error is against the phantom's true CSA of that level (mm²). A held-out
mask with no cord at the level (an empty prediction) counts as CSA 0 mm², as its user would measure, and is
counted in the table's ``n_missing``.

Where the predicted area lies (issue: the soft arms overestimate CSA): with the phantom's exact partial-volume
truth, each held-out mask's area at the level is split into the part inside the true cord and a halo outside it
(:mod:`nnunet_spine.postprocessing.cord.halo`), and the mean predicted value is profiled against the signed distance to
the true cord edge (beside the converter's soft GT and the truth itself).

Budgets and the learning curve: the data and the plans are prepared once; every budget (epochs x iterations per
epoch, the same for every arm) trains, predicts and evaluates in its own ``budget_<E>x<I>/`` folder, and a run
that is started again resumes what an earlier one finished (:func:`run_ablation`).

Folder layout (``folder``): ``phantom_train*/``, ``phantom_test/``, ``deriv_*/``, ``nnUNet_raw|preprocessed/``,
``predict_input*/``, per budget ``budget_<E>x<I>/{nnUNet_results, pred/<arm>, soft/<arm>, csa, compare}`` with
``ablation.csv`` (the table), ``halo.csv`` and ``radial_profile.csv|png``; ``learning_curve.csv|png``,
``timings.json`` and ``nnunet.log`` (every command with its output).
"""

from nnunet_spine.apps.ablation.config import (
    ARMS,
    CONFIG,
    CONTRASTS,
    DATASETS,
    PLANS,
    SEEN_CONTRASTS,
    AblationConfig,
    Arm,
    budget_name,
    parse_budgets,
)
from nnunet_spine.apps.ablation.datasets import contrast_of, copy_contrasts
from nnunet_spine.apps.ablation.evaluation import fill_missing, format_table, summarize_row
from nnunet_spine.apps.ablation.run import AblationResult, learning_curve, run_ablation

__all__ = [
    "ARMS",
    "CONFIG",
    "CONTRASTS",
    "DATASETS",
    "PLANS",
    "SEEN_CONTRASTS",
    "AblationConfig",
    "AblationResult",
    "Arm",
    "budget_name",
    "contrast_of",
    "copy_contrasts",
    "fill_missing",
    "format_table",
    "learning_curve",
    "parse_budgets",
    "run_ablation",
    "summarize_row",
]
