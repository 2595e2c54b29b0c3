"""What the soft-segmentation ablation runs: contrasts, arms, datasets and the budgets (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

from nnunet_spine.core.io import InputError

#: The phantom's five contrasts (BIDS name after ``sub-XX_``), reference first.
CONTRASTS = ("T2w", "T1w", "T2starw", "flip-1_mt-on_MTS", "flip-2_mt-off_MTS")
#: Contrasts arm d trains on by default; it is tested on the others.
SEEN_CONTRASTS = ("T2w", "T1w", "T2starw")
CONFIG = "3d_fullres"
PLANS = "nnUNetPlansAblation"
#: nnU-Net dataset ids and names of the three training sets.
DATASETS = {"soft": (781, "AblationSoft"), "binary": (782, "AblationBinary"), "soft_seen": (783, "AblationSoftSeen")}
#: File marking an ablation folder: only such a folder is cleared by ``overwrite``.
MARKER = ".nnspine_ablation"


@dataclass(frozen=True)
class Arm:
    """One trained model of the ablation."""

    key: str  # a, b, c, d
    name: str  # short name used for folders and in compare-variability column names
    trainer: str
    dataset: str  # key of DATASETS
    soft: bool  # evaluate the soft output (probabilities) rather than nnU-Net's label map
    unseen_only: bool  # tested only on the contrasts it did not see
    description: str


ARMS = (
    Arm("a", "binary", "nnUNetTrainer_budget", "binary", False, False, "stock nnUNetTrainer, per-contrast binary GT"),
    Arm("b", "soft", "nnUNetTrainerSoftSeg_budget", "soft", True, False, "nnUNetTrainerSoftSeg, soft GT"),
    Arm("c", "softDA5", "nnUNetTrainerSoftSegDA5_budget", "soft", True, False, "nnUNetTrainerSoftSegDA5, soft GT"),
    Arm(
        "d",
        "softDA5_unseen",
        "nnUNetTrainerSoftSegDA5_budget",
        "soft_seen",
        True,
        True,
        "nnUNetTrainerSoftSegDA5, soft GT of 3 contrasts, tested on 2 unseen",
    ),
)


@dataclass
class AblationConfig:
    """The budget and the data of one ablation run (the same training budget for every arm)."""

    n_train: int = 2  # training subjects (5 contrasts = 5 cases each)
    n_test: int = 6  # held-out subjects (the Wilcoxon test pairs them; 6 are needed for p < 0.05)
    epochs: int = 4
    iterations: int = 25  # training iterations per epoch
    val_iterations: int = 2
    device: str = "cpu"
    level: int = 3  # vertebral level whose CSA is compared (C3: covered by every contrast)
    seen_contrasts: tuple[str, ...] = SEEN_CONTRASTS
    seed: int = 0
    tta: bool = False  # mirrored test-time augmentation (8x slower prediction on CPU)
    gpu_memory_target_gb: float | None = None  # planner's target; None: 1 GB on CPU (small patches), else nnU-Net's
    target_spacing_mm: float | None = None  # isotropic 3d_fullres spacing (planner's -overwrite_target_spacing)
    arms: tuple[str, ...] = ("a", "b", "c", "d")
    #: Training budgets of a learning curve, (epochs, iterations per epoch) each, smallest first; empty: the one
    #: budget ``epochs`` x ``iterations``.
    budgets: tuple[tuple[int, int], ...] = ()

    def check(self) -> None:
        """Raise :class:`InputError` for values that cannot run."""
        if self.n_train < 1 or self.n_test < 1:
            raise InputError(
                f"subjects: need at least one training and one held-out subject (got {self.n_train}, {self.n_test})"
            )
        for name in ("epochs", "iterations", "val_iterations"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        for epochs, iterations in self.budgets:
            if epochs < 1 or iterations < 1:
                raise InputError(f"budget {epochs}x{iterations}: epochs and iterations must be positive")
        unknown = [c for c in self.seen_contrasts if c not in CONTRASTS]
        if (
            unknown
            or not 1 <= len(set(self.seen_contrasts)) <= len(CONTRASTS) - 2
            or CONTRASTS[0] not in self.seen_contrasts
        ):
            raise InputError(
                f"seen contrasts {list(self.seen_contrasts)}: need {CONTRASTS[0]} and leave at least two "
                f"of {list(CONTRASTS)} unseen"
            )
        bad = [a for a in self.arms if a not in {arm.key for arm in ARMS}]
        if bad or "a" not in self.arms:
            raise InputError(f"arms {list(self.arms)}: choose among a, b, c, d; a (the baseline) is required")

    @property
    def unseen_contrasts(self) -> tuple[str, ...]:
        return tuple(c for c in CONTRASTS if c not in self.seen_contrasts)

    @property
    def budget_list(self) -> list[tuple[int, int]]:
        """The budgets to run, smallest total number of iterations first."""
        budgets = self.budgets or ((self.epochs, self.iterations),)
        return sorted(dict.fromkeys(budgets), key=lambda b: (b[0] * b[1], b))

    def data_settings(self) -> dict:
        """What the shared data, plans and evaluation depend on (not the budget): a resumed folder must match."""
        return {
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seed": self.seed,
            "level": self.level,
            "seen_contrasts": list(self.seen_contrasts),
            "target_spacing_mm": self.target_spacing_mm,
            "gpu_memory_target_gb": self.gpu_memory_target_gb,
            "device": self.device,
            "tta": self.tta,
            "val_iterations": self.val_iterations,
        }


def budget_name(budget: tuple[int, int]) -> str:
    """``(4, 20)`` → ``"4x20"`` (epochs x iterations per epoch), the budget's folder name."""
    return f"{budget[0]}x{budget[1]}"


def parse_budgets(text: str) -> tuple[tuple[int, int], ...]:
    """``"4x20,4x100,16x100"`` → ``((4, 20), (4, 100), (16, 100))``; :class:`InputError` for anything else."""
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        parts = item.lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise InputError(f"--budgets: {item!r} is not EPOCHSxITERATIONS (e.g. 4x20)")
        out.append((int(parts[0]), int(parts[1])))
    if not out:
        raise InputError("--budgets: give at least one EPOCHSxITERATIONS budget (e.g. 4x20,4x100)")
    return tuple(out)
