"""Benchmark: ``nnspine segment cord`` (one command, one model load) against the multi-command route on the same
cohort and model: ``nnUNetv2_predict_from_modelfolder --save_probabilities`` → ``nnspine softmask`` → ``nnspine
csa`` per case. Prints the wall time per case of both routes and their ratio, and checks that both wrote the
same soft masks.

    M=$nnUNet_results/Dataset101_SoftCord/nnUNetTrainerSoftSeg__nnUNetPlans__3d_fullres
    python benchmarks/bench_segment.py --model $M -f 0 --subjects 2

The cohort is ``--subjects`` cord phantoms (5 contrasts each, ``nnspine phantom``). CPU by default
(``--device cuda`` on a GPU). Any soft-segmentation model of this package works; one trained by
``benchmarks/bench_softseg_ablation.py`` or the README walk-through is enough.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SOFT = "_label-SC_softseg.nii.gz"


def run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="nnU-Net results folder of a soft cord model")
    ap.add_argument("-f", "--folds", nargs="+", default=["0"])
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import nibabel as nib

    nnspine = shutil.which("nnspine") or sys.exit("nnspine console script not found (pip install -e .)")
    predict = shutil.which("nnUNetv2_predict_from_modelfolder") or sys.exit("nnU-Net's console scripts not found")
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "nnUNet_compile": "f"}
    env["nnUNet_extTrainer"] = (
        subprocess.run([nnspine, "trainers", "--export"], capture_output=True, text=True, check=True)
        .stdout.strip()
        .split("=", 1)[1]
        .strip("'")
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run([nnspine, "phantom", "--kind", "cord", "-o", str(d / "bids"), "--subjects", str(args.subjects), "-q"], env)
        images = sorted((d / "bids").glob("sub-*/anat/*.nii.gz"))
        n = len(images)
        # the multi-command route: nnU-Net's input folder, predict, softmask, csa per file
        (d / "in").mkdir()
        for p in images:
            shutil.copy(p, d / "in" / p.name.replace(".nii.gz", "_0000.nii.gz"))
        t_multi = run(
            [predict, "-i", str(d / "in"), "-o", str(d / "pred"), "-m", str(args.model), "-f", *args.folds,
             "--save_probabilities", "-device", args.device, "-npp", "1", "-nps", "1"], env,
        )  # fmt: skip
        t_multi += run([nnspine, "softmask", "-i", str(d / "pred"), "-o", str(d / "soft"), "-q"], env)
        for p in sorted((d / "soft").glob("*.nii.gz")):
            t_multi += run([nnspine, "csa", "-i", str(p), "--perslice", "-o", str(d / f"{p.name}.csv"), "-q"], env)
        # the one-command route
        t_one = run(
            [nnspine, "segment", "cord", "-i", str(d / "bids"), "-o", str(d / "seg"), "--model", str(args.model),
             "-f", *args.folds, "--device", args.device, "-q"], env,
        )  # fmt: skip
        same = all(
            np.array_equal(
                np.asarray(nib.load(str(d / "soft" / p.name)).dataobj),
                np.asarray(nib.load(str(next((d / "seg").rglob(p.name.replace(".nii.gz", SOFT))))).dataobj),
            )
            for p in images
        )  # fmt: skip
    print(f"cohort: {n} images ({args.subjects} cord phantoms x 5 contrasts), model {args.model.name}, {args.device}")
    print(f"nnUNetv2_predict + softmask + csa (separate commands): {t_multi:.1f} s, {t_multi / n:.2f} s per case")
    print(f"nnspine segment cord (one command):                   {t_one:.1f} s, {t_one / n:.2f} s per case")
    print(f"ratio multi / one: {t_multi / t_one:.2f}x; same soft masks voxel for voxel: {same}")


if __name__ == "__main__":
    main()
