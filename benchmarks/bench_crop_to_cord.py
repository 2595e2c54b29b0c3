"""Benchmark: ``nnspine segment lesion --crop-to-cord`` against the whole image, on the lesion phantom.

Writes ``--subjects`` held-out lesion phantoms (``nnspine phantom --kind lesion``, seed 1000 on: never the
training seeds) with an in-plane field of view of ``--fov`` mm (R-L, A-P; the phantom's default is 28 × 40 mm,
a clinical sagittal T2w covers 150-250 mm), runs ``segment lesion`` once on the whole images and once with the
phantoms' own cord masks as ``--crop-to-cord`` (box = the cord's bounding box grown ``--margin`` mm), and
prints the wall time per case of both, the speed-up, and the lesion-wise F1 and Dice of both against the truth
(``nnspine evaluate lesions`` defaults: overlap rule, 26-connectivity; per case, then the mean).

    M=/tmp/demo/nnUNet_results/Dataset991_nnspineDemoLesion/nnUNetTrainerLesion_demo__nnUNetPlansCPUDemo__3d_fullres
    python benchmarks/bench_crop_to_cord.py --model $M -f all --subjects 3 --fov 80 120

Any 2-channel (T2w, T1w) lesion model of this package works; ``nnspine demo --lesion -o /tmp/demo`` trains one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="nnU-Net results folder of a T2w,T1w lesion model")
    ap.add_argument("-f", "--folds", nargs="+", default=None)
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--fov", type=float, nargs=2, default=(80.0, 120.0), metavar=("RL_MM", "AP_MM"))
    ap.add_argument("--margin", type=float, default=10.0, help="crop margin in mm (default: 10)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    for k, v in {"nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "nnUNet_compile": "f"}.items():
        os.environ.setdefault(k, v)

    import pandas as pd

    from nnunet_spine.apps.segment import segment
    from nnunet_spine.apps.segment_tasks import Options
    from nnunet_spine.phantoms.lesion import LesionGrid, write_lesion_dataset
    from nnunet_spine.postprocessing.lesion.metrics import evaluate_lesions

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        grid = LesionGrid(fov_mm=tuple(args.fov))
        write_lesion_dataset(d / "bids", n_subjects=args.subjects, seed=1000, grid=grid)
        labels = d / "bids" / "derivatives" / "labels"
        runs = {}
        for name, crop in (("whole image", None), (f"--crop-to-cord (+{args.margin:g} mm)", labels)):
            opts = Options(device=args.device, qc=False, crop_to_cord=crop, crop_margin_mm=args.margin)
            out = d / ("crop" if crop else "whole")
            t0 = time.perf_counter()
            report = segment("lesion", d / "bids", out, args.model, folds=args.folds, channels=["T2w", "T1w"],
                             options=opts)  # fmt: skip
            total = time.perf_counter() - t0
            if report.failures:
                raise SystemExit(f"{name}: {report.failures}")
            per_case = [s for _, _, s, _ in report.done]
            f1, dice = [], []
            for case, _, _, _ in report.done:
                sub = case.split("_")[0]
                pred = out / sub / "anat" / f"{case}_label-lesion_seg.nii.gz"
                ref = labels / sub / "anat" / f"{case}_label-lesion_seg.nii.gz"
                row = evaluate_lesions(pred, ref, all_foreground=True)[0][0]
                f1.append(row["lesion_f1"])
                dice.append(row["dice"])
            runs[name] = {
                "s/case (mean)": sum(per_case) / len(per_case),
                "run s (model load incl.)": total,
                "lesion F1 (mean)": sum(f1) / len(f1),
                "Dice (mean)": sum(dice) / len(dice),
                "F1 per case": " ".join(f"{v:.3f}" for v in f1),
            }
    table = pd.DataFrame(runs).T
    whole, crop = table.index
    print(
        f"{args.subjects} lesion phantoms, field of view {args.fov[0]:g} x {args.fov[1]:g} mm, model {args.model.name}"
    )
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    speed = table.loc[whole, "s/case (mean)"] / table.loc[crop, "s/case (mean)"]
    change = table.loc[crop, "lesion F1 (mean)"] - table.loc[whole, "lesion F1 (mean)"]
    print(f"speed-up per case: {speed:.2f}x; lesion F1 change with the crop: {change:+.3f}")


if __name__ == "__main__":
    main()
