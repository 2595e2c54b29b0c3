"""Benchmark: ``nnspine segment cord`` (one command, one model load) against the multi-command route on the same
cohort and model: ``nnUNetv2_predict_from_modelfolder --save_probabilities`` → ``nnspine softmask`` → ``nnspine
csa`` per case. Prints the wall time per case of both routes and their ratio, and checks that both wrote the
same soft masks.

    M=$nnUNet_results/Dataset101_SoftCord/nnUNetTrainerSoftSeg__nnUNetPlans__3d_fullres
    python benchmarks/bench_segment.py --model $M -f 0 --subjects 2

The cohort is ``--subjects`` cord phantoms (5 contrasts each, ``nnspine phantom``). CPU by default
(``--device cuda`` on a GPU). Any soft-segmentation model of this package works; one trained by
``benchmarks/bench_softseg_ablation.py`` or the README walk-through is enough.

``--task spine``: ``nnspine segment spine`` on ``--subjects`` spine phantoms (``nnspine phantom --kind spine``),
seconds per case with the instance model loaded once for the run (now) and loaded again for every case (before;
reproduced here by reloading it around each case's instance phase), the number of checkpoint loads of each,
and whether both wrote the same instance masks:

    python benchmarks/bench_segment.py --task spine --model SEMANTIC_MODEL -f all \
        --instance-model CUTOUT_MODEL --instance-folds 0 --subjects 10
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


def bench_spine(args: argparse.Namespace) -> None:
    """``segment spine`` per case: the instance model loaded once (now) against once per case (before)."""
    import contextlib
    import io

    import nibabel as nib
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_spine.apps import instances
    from nnunet_spine.apps.segment import segment
    from nnunet_spine.apps.segment_tasks import Options

    nnspine = shutil.which("nnspine") or sys.exit("nnspine console script not found (pip install -e .)")
    os.environ.update(nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1", nnUNet_compile="f")
    loads = []
    init = nnUNetPredictor.initialize_from_trained_model_folder

    def counted(self, folder, *a, **kw):  # the real loading, counted and timed
        t0 = time.perf_counter()
        init(self, folder, *a, **kw)
        loads.append((Path(folder).name, time.perf_counter() - t0))

    nnUNetPredictor.initialize_from_trained_model_folder = counted
    once = instances.predict_instances

    def per_case(semantic, im, out_dir, **kw):  # before: the instance model loaded for every case
        fresh = instances.load_instance_model(im.cutouts.folder, im.folds, im.checkpoint, device=args.device)
        return once(semantic, fresh, out_dir, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run([nnspine, "phantom", "--kind", "spine", "-o", str(d / "bids"), "--subjects", str(args.subjects),
             "--vertebrae", str(args.vertebrae), "--seed", "7", "-q"], dict(os.environ))  # fmt: skip
        results = {}
        # the single load first: imports and torch's first use are paid there, not by the per-case route
        for name, phase in (("now: loaded once", once), ("before: instance model loaded per case", per_case)):
            instances.predict_instances = phase
            loads.clear()
            opts = Options(device=args.device, instance_model=args.instance_model,
                           instance_folds=args.instance_folds, qc=False)  # fmt: skip
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                report = segment("spine", d / "bids", d / name[:3], args.model, folds=args.folds, channels=["T2w"],
                                 options=opts, nnunet_log=False)  # fmt: skip
            wall = time.perf_counter() - t0
            ok = [c for c, s, _, _ in report.done if s == "ok"]
            results[name] = (wall, len(report.done), len(ok), loads[:], report.failures)
        instances.predict_instances = once
        same = all(
            np.array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(d / "now" / a.relative_to(d / "bef"))
                                                                       .dataobj))
            for a in sorted((d / "bef").rglob("*_seg-vert_msk.nii.gz"))
        )  # fmt: skip
    print(f"cohort: {args.subjects} spine phantoms ({args.vertebrae} vertebrae + sacrum), semantic model "
          f"{args.model.name}, instance model {args.instance_model.name}, {args.device}")  # fmt: skip
    for name, (wall, n, ok, loaded, failures) in results.items():
        t_load = sum(t for _, t in loaded)
        print(f"{name:40s} {wall:7.1f} s, {wall / n:.2f} s per case ({ok}/{n} ok), {len(loaded)} checkpoint "
              f"loads taking {t_load:.1f} s ({t_load / n:.2f} s per case)")  # fmt: skip
        for f in failures[:3]:
            print(f"    failed: {f}")
    b, a = results["before: instance model loaded per case"][0], results["now: loaded once"][0]
    print(f"per-case load / single load: {b / a:.2f}x; same instance masks voxel for voxel: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("cord", "spine"), default="cord")
    ap.add_argument("--model", required=True, type=Path, help="nnU-Net results folder of a soft cord model")
    ap.add_argument("-f", "--folds", nargs="+", default=["0"])
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--instance-model", type=Path, help="--task spine: the cutout model's results folder")
    ap.add_argument("--instance-folds", nargs="+", help="--task spine: its folds (default: every fold)")
    ap.add_argument("--vertebrae", type=int, default=3, help="--task spine: vertebrae per phantom (default: 3)")
    args = ap.parse_args()
    if args.task == "spine":
        if args.instance_model is None:
            ap.error("--task spine needs --instance-model")
        return bench_spine(args)
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
