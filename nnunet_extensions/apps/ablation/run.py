"""Running the ablation: prepare the data once, then per budget train, predict and evaluate every arm, resuming
whatever an earlier run of the same folder finished; the learning curve over the budgets."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_spine.apps.ablation.commands import environment, run
from nnunet_spine.apps.ablation.config import (
    ARMS,
    CONFIG,
    CONTRASTS,
    DATASETS,
    MARKER,
    PLANS,
    AblationConfig,
    Arm,
    budget_name,
)
from nnunet_spine.apps.ablation.datasets import PREPARED, contrast_of, prepare
from nnunet_spine.apps.ablation.evaluation import evaluate_budget
from nnunet_spine.core.io import OutputExistsError

if TYPE_CHECKING:
    import pandas

#: The data settings a folder was prepared with (a resumed run must use the same).
SETTINGS_FILE = "ablation_settings.json"
#: File in an arm's prediction folder once every held-out mask of it is written.
DONE = ".done"


@dataclass
class AblationResult:
    """The tables of every budget, the learning curve over them, and where everything was written."""

    folder: Path
    tables: dict[str, pandas.DataFrame]  # noqa: F821  budget name → the ablation table of that budget
    curve: pandas.DataFrame  # noqa: F821  one row per (budget, row of the table)
    curve_csv: Path
    timings_s: dict = field(default_factory=dict)

    @property
    def table(self) -> pandas.DataFrame:  # noqa: F821
        """The table of the largest budget."""
        return self.tables[list(self.tables)[-1]]

    def budget_folder(self, budget: str | None = None) -> Path:
        """``budget_<EXI>/`` of ``budget`` (default: the largest)."""
        return self.folder / f"budget_{budget or list(self.tables)[-1]}"


def _open_folder(folder: Path, config: AblationConfig, overwrite: bool) -> None:
    """A new folder, an earlier ablation folder to resume (same data settings), or with ``overwrite`` a fresh one."""
    settings = config.data_settings()
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).is_file():
            raise OutputExistsError(f"{folder}: not an ablation folder (no {MARKER}); refusing to use it")
        saved = json.loads((folder / SETTINGS_FILE).read_text()) if (folder / SETTINGS_FILE).is_file() else None
        if overwrite or saved != settings:
            if not overwrite:
                raise OutputExistsError(
                    f"{folder}: an ablation with other data settings ({saved}) — use another folder, or --overwrite"
                )
            shutil.rmtree(folder)
        elif not (folder / PREPARED).is_file():  # an interrupted preparation: start it again
            for entry in folder.iterdir():
                if entry.name not in (MARKER, SETTINGS_FILE):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by nnunet_spine.apps.ablation (benchmarks/bench_softseg_ablation.py)\n")
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def _checkpoint(env: dict, arm: Arm) -> Path:
    dataset_id, name = DATASETS[arm.dataset]
    return (
        Path(env["nnUNet_results"])
        / f"Dataset{dataset_id:03d}_{name}"
        / f"{arm.trainer}__{PLANS}__{CONFIG}"
        / "fold_0"
        / "checkpoint_final.pth"
    )


def _prediction_inputs(folder: Path, config: AblationConfig) -> dict[bool, Path]:
    """Held-out images named for nnU-Net (``_0000``): all contrasts, and arm d's unseen contrasts."""
    test = folder / "phantom_test"
    inputs = {}
    for unseen in (False, True):
        contrasts = config.unseen_contrasts if unseen else CONTRASTS
        inputs[unseen] = folder / ("predict_input_unseen" if unseen else "predict_input")
        if not inputs[unseen].is_dir():
            tmp = inputs[unseen].with_name(inputs[unseen].name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for image in sorted(test.glob("sub-*/anat/sub-*.nii.gz")):
                if contrast_of(image) in contrasts:
                    shutil.copy(image, tmp / image.name.replace(".nii.gz", "_0000.nii.gz"))
            tmp.rename(inputs[unseen])
    return inputs


def train_and_predict(
    folder: Path,
    config: AblationConfig,
    budget: tuple[int, int],
    log: Path,
    say: Callable[[str], None],
    timings: dict,
) -> dict[str, Path]:
    """Every arm of ``budget``: trained (unless its final checkpoint exists) and its held-out masks predicted
    (unless they are complete); returns arm name → mask folder. A half-finished arm is redone from scratch."""
    env = environment(folder, config, budget)
    out = folder / f"budget_{budget_name(budget)}"
    inputs = _prediction_inputs(folder, config)
    masks: dict[str, Path] = {}
    for arm in (a for a in ARMS if a.key in config.arms):
        checkpoint = _checkpoint(env, arm)
        final = out / ("soft" if arm.soft else "pred") / arm.name
        masks[arm.name] = final
        if (final / DONE).is_file() and checkpoint.is_file():
            say(f"  arm {arm.key}, budget {budget_name(budget)}: trained and predicted earlier (resumed)")
            continue
        t0 = time.perf_counter()
        if not checkpoint.is_file():
            shutil.rmtree(checkpoint.parent, ignore_errors=True)
            say(
                f"  train arm {arm.key} ({arm.description}): nnUNetv2_train {DATASETS[arm.dataset][0]} {CONFIG} 0 "
                f"-tr {arm.trainer}, {budget[0]} epochs x {budget[1]} iterations, -device {config.device}"
            )
            run(
                ["nnUNetv2_train", str(DATASETS[arm.dataset][0]), CONFIG, "0", "-tr", arm.trainer, "-p", PLANS]
                + ["-device", config.device],
                env,
                log,
            )
            timings[f"{budget_name(budget)}_train_{arm.key}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        say(
            f"  predict arm {arm.key} on the held-out subjects"
            + (" (unseen contrasts)" if arm.unseen_only else "")
            + (": --save_probabilities → nnspine softmask" if arm.soft else "")
        )
        pred = out / "pred" / arm.name
        for stale in {pred, final}:
            shutil.rmtree(stale, ignore_errors=True)
        cmd = ["nnUNetv2_predict", "-i", str(inputs[arm.unseen_only]), "-o", str(pred)]
        cmd += ["-d", str(DATASETS[arm.dataset][0]), "-c", CONFIG, "-f", "0", "-tr", arm.trainer, "-p", PLANS]
        cmd += ["-device", config.device, "-npp", "1", "-nps", "1"]
        if not config.tta:
            cmd.append("--disable_tta")
        if arm.soft:
            cmd.append("--save_probabilities")
        run(cmd, env, log)
        if arm.soft:
            run(["nnspine", "softmask", "-i", str(pred), "-o", str(final), "--threshold", "0.5", "-q"], env, log)
        (final / DONE).write_text("every held-out mask written\n")
        timings[f"{budget_name(budget)}_predict_{arm.key}"] = time.perf_counter() - t0
    return masks


def run_ablation(
    folder: str | os.PathLike,
    config: AblationConfig | None = None,
    *,
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> AblationResult:
    """Run (or resume) the ablation in ``folder`` for every budget of ``config`` (``config.budget_list``).

    A new folder is prepared (phantoms, training sets, one set of plans); an earlier ablation folder with the
    same data settings is resumed: finished preparation, trained arms and complete predictions are reused, a
    half-finished arm is redone (so a killed run can simply be started again); other settings need a new folder
    or ``overwrite``. Each budget gets ``budget_<EPOCHS>x<ITERATIONS>/`` with its table (``ablation.csv``: one row
    per arm and reference with ``row, method, train_contrasts, test_contrasts, n_subjects, n_contrasts,
    n_missing, csa_error_pct, abs_csa_error_pct, sd_across_contrasts_mm2, wilcoxon_p_vs_a, inside_error_pct,
    halo_pct`` — CSA errors in % of the true CSA, signed and absolute, mean over every held-out mask; SD across
    contrasts in mm², mean over subjects; p of the two-sided Wilcoxon signed-rank test of the per-subject SDs
    against arm a on the same contrasts; the predicted area inside the true cord minus the true area, and the
    area outside it, in % of the true area, see :mod:`nnunet_spine.postprocessing.cord.halo`), ``halo.csv`` per
    contrast, and the radial profile (``radial_profile.csv``/``.png``). ``n_missing`` masks had no cord at the level
    (e.g. an empty prediction): they count as CSA 0 mm² in every figure, as a user of that model would measure.
    The learning curve over the budgets is ``learning_curve.csv``/``.png`` in ``folder``.
    """

    from nnunet_spine.core.io import write_text

    config = config or AblationConfig()
    config.check()
    folder = Path(folder).resolve()
    _open_folder(folder, config, overwrite)
    log = folder / "nnunet.log"
    timings = prepare(folder, config, environment(folder, config), log, say)
    tables = {}
    for budget in config.budget_list:
        name = budget_name(budget)
        say(f"budget {name} ({budget[0] * budget[1]} training iterations per arm)")
        masks = train_and_predict(folder, config, budget, log, say, timings)
        t0 = time.perf_counter()
        say(f"  evaluate (C{config.level}): csa-variability, compare-variability vs arm a, halo split")

        def sh(*cmd: str, ok: tuple[int, ...] = (0,), extra_env: dict | None = None, _b=budget) -> int:
            return run(list(cmd), {**environment(folder, config, _b), **(extra_env or {})}, log, ok)

        tables[name] = evaluate_budget(folder, folder / f"budget_{name}", config, masks, sh)
        timings[f"{name}_evaluate"] = time.perf_counter() - t0
    curve = learning_curve(tables)
    curve_csv = write_text(
        folder / "learning_curve.csv", curve.to_csv(index=False, float_format="%.4g"), overwrite=True
    )
    from nnunet_spine.postprocessing.qc import plot_learning_curve

    plot_learning_curve(curve, folder / "learning_curve.png", overwrite=True)
    timings_json = folder / "timings.json"
    old = json.loads(timings_json.read_text()) if timings_json.is_file() else {}
    write_text(timings_json, json.dumps({**old, **timings}, indent=2) + "\n", overwrite=True)
    return AblationResult(folder, tables, curve, Path(curve_csv), timings)


def learning_curve(tables: dict[str, pandas.DataFrame]) -> pandas.DataFrame:  # noqa: F821
    """One row per (budget, table row): ``budget, epochs, iterations, total_iterations`` and the table's figures."""
    import pandas as pd

    frames = []
    for name, table in tables.items():
        epochs, iterations = (int(v) for v in name.split("x"))
        frames.append(
            table.assign(budget=name, epochs=epochs, iterations=iterations, total_iterations=epochs * iterations)
        )
    curve = pd.concat(frames, ignore_index=True)
    first = ["budget", "epochs", "iterations", "total_iterations", "row"]
    return curve[first + [c for c in curve.columns if c not in first]]
