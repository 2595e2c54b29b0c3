"""Benchmark: does ``nnspine demo --lesion`` find lesions every time, and how long does it take?

Runs the whole lesion demo (real nnU-Net on CPU, ``nnUNetTrainerLesion_demo`` unless ``--trainer``) once per
seed, one after the other (``--seed k``: new phantoms for training and test, and the training
seeded with k, so every seed is also another training), and prints per seed: wall time, the demo's stage times, the
postprocessed prediction's lesion counts and F1 against the held-out subject, and whether it **found lesions**
(at least one reference lesion detected, the demo's failure mode being a network that predicts none), then how
many seeds found lesions, how many reached lesion F1 >= 0.5, and the median and longest wall time.

    python benchmarks/bench_lesion_demo.py --seeds 10 -o /tmp/lesion_demo_bench

Not run in CI (about 6-7 minutes per seed on 2 idle CPU cores); CI runs the demo once with the _debug trainer.
The runs stay in ``-o`` (``seed-K/``) for inspection; ``results.csv`` there holds the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: The demo's row of the postprocessed network prediction in ``lesion_metrics.csv``.
POST_ROW = "nnU-Net + nnspine lesions"


def run_seed(nnspine: str, folder: Path, seed: int, trainer: str | None) -> dict:
    """One demo run; its figures (or the failure) as a row."""
    cmd = [nnspine, "demo", "--lesion", "--seed", str(seed), "-o", str(folder)]
    if trainer:
        cmd += ["--trainer", trainer]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row: dict = {"seed": seed, "wall_s": round(wall, 1), "exit": proc.returncode}
    if proc.returncode != 0:
        (folder.parent / f"seed-{seed}.stderr").write_text(proc.stdout + proc.stderr)
        return {**row, "found": False}
    import pandas as pd

    m = pd.read_csv(folder / "lesion_metrics.csv").set_index("prediction").loc[POST_ROW]
    timings = json.loads((folder / "timings_s.json").read_text())
    row.update({f"{k}_s": round(v, 1) for k, v in timings.items() if k in ("preprocess", "train", "predict")})
    row.update({k: int(m[k]) for k in ("ref_lesions", "tp", "fp", "fn")})
    row.update({"lesion_f1": round(float(m["lesion_f1"]), 3), "dice": round(float(m["dice"]), 3)})
    row["found"] = row["tp"] >= 1
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default: 10)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--trainer", help="lesion trainer (default: the demo's, nnUNetTrainerLesion_demo)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="folder for the runs (created)")
    args = ap.parse_args()
    import pandas as pd

    nnspine = shutil.which("nnspine") or sys.exit("nnspine console script not found (pip install -e .)")
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        folder = args.output / f"seed-{seed}"
        if folder.exists():
            shutil.rmtree(folder)
        rows.append(run_seed(nnspine, folder, seed, args.trainer))
        print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
        pd.DataFrame(rows).to_csv(args.output / "results.csv", index=False)
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False))
    n = len(table)
    found = int(table["found"].sum())
    good = int((table.get("lesion_f1", pd.Series(dtype=float)) >= 0.5).sum())
    print(
        f"\nfound lesions in {found} of {n} seeds; lesion F1 >= 0.5 in {good} of {n}; wall time median "
        f"{table['wall_s'].median() / 60:.1f} min, longest {table['wall_s'].max() / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
