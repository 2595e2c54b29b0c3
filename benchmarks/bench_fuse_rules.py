"""Measure our two departures from SPINEPS' fusion postprocessing on flawed cutout predictions.

Ours (``rules="nnspine"``, the default of ``nnspine fuse`` / ``instances``): instance fragments below 250 mm³ are
*released* and given back to a neighbouring vertebra, and a fragment between several vertebrae is split voxel by
voxel to the nearest one. SPINEPS (``rules="spineps"``): small fragments are deleted from both masks
(``clean_cc_artifacts(only_delete=True)``) and a fragment between vertebrae joins its most frequent neighbour
(``assign_missing_cc``). Everything else (couples, union/tie rules, numbering, discs) is the same code.

Cases: the spine phantom (7 vertebrae T11-L5, seed 5) and panoptica's lumbar case when ../shared/data is there.
Flaws, applied to "perfect" cutout predictions made from the reference instance mask: each cutout shifted by its
own 1-2 voxel vector; one cutout's lower neighbour labelled as its centre; the centre label grown by two voxels;
speckles (30 random 2x2x2 blocks per cutout relabelled to another vertebra label: small wrong fragments). Per flaw
and rule: the lowest and mean Dice of the vertebrae against the reference, vertebra voxels dropped from the cleaned
semantic mask, and how many voxels the two rules label differently.

    python benchmarks/bench_fuse_rules.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fuse import SHARED, perfect_predictions  # noqa: E402


def shifted(pred: np.ndarray, d) -> np.ndarray:
    """A prediction moved by the integer voxel vector ``d`` (zeros move in)."""
    out = np.zeros_like(pred)
    src = tuple(slice(max(0, -x), n - max(0, x)) for x, n in zip(d, pred.shape))
    dst = tuple(slice(max(0, x), n - max(0, -x)) for x, n in zip(d, pred.shape))
    out[dst] = pred[src]
    return out


def flaws(preds: dict[str, np.ndarray], names: list[str]) -> dict[str, dict]:
    """The flawed prediction sets (module docstring)."""
    from scipy import ndimage

    rng = np.random.default_rng(7)
    mid = names[len(names) // 2]
    wrong = preds[mid].copy()
    wrong[wrong == 3] = 2
    grown = preds[mid].copy()
    grown[ndimage.binary_dilation(grown == 2, iterations=2)] = 2
    speckled = {}
    for n, p in preds.items():
        q = p.copy()
        fg = np.argwhere(p > 0)
        for i, j, k in fg[rng.choice(len(fg), size=min(30, len(fg)), replace=False)]:
            v = int(p[i, j, k])
            q[i : i + 2, j : j + 2, k : k + 2] = [x for x in (1, 2, 3) if x != v][int(rng.integers(2))]
        speckled[n] = q
    return {
        "shifted boundaries": {n: shifted(p, rng.choice([-2, -1, 1, 2], size=3)) for n, p in preds.items()},
        "one cutout with a wrong label": {**preds, mid: wrong},
        "centre grown by two voxels": {**preds, mid: grown},
        "speckles (small wrong fragments)": speckled,
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def measure(name: str, sem_path: Path, ref_path: Path) -> list[dict]:
    from nnunet_spine.core.io import load_image
    from nnunet_spine.core.labels import SACRUM, VERTEBRA_SUBREGIONS, is_vertebra
    from nnunet_spine.core.cutouts import case_name, cut_case, load_semantic
    from nnunet_spine.postprocessing.spine.fusion import fuse_arrays

    sem, ref = load_semantic(sem_path), load_image(ref_path, "labels")
    record = cut_case(sem, case_name(sem_path))[0]
    preds = perfect_predictions(sem, ref, record)
    r = np.asarray(ref.data)
    verts = [int(v) for v in np.unique(r) if is_vertebra(v) and v != SACRUM]
    rows = []
    for flaw, flawed in flaws(preds, [c.name for c in record.cutouts]).items():
        out = {}
        for rules in ("nnspine", "spineps"):
            f = fuse_arrays(sem, record, flawed, labelling="none", rules=rules)
            # fused ids are 1..n from the top: map each to the reference vertebra it overlaps most
            ids = {}
            for v in [int(x) for x in np.unique(f.instance) if 0 < x < 100 and x != SACRUM]:
                hits = np.bincount(r[f.instance == v].astype(np.int64), minlength=256)
                hits[[0, SACRUM]] = 0
                ids[v] = int(hits.argmax())
            d = [max((dice(f.instance == v, r == t) for v, t in ids.items() if t == t0), default=0.0) for t0 in verts]
            lost = int(
                (np.isin(np.asarray(sem.data), VERTEBRA_SUBREGIONS) & ~np.isin(f.semantic, VERTEBRA_SUBREGIONS)).sum()
            )
            out[rules] = f
            rows.append({"case": name, "flaw": flaw, "rules": rules, "min Dice": min(d), "mean Dice": float(np.mean(d)),
                         "vertebra voxels dropped": lost})  # fmt: skip
        differ = int((out["nnspine"].instance != out["spineps"].instance).sum())
        rows[-1]["voxels labelled differently"] = rows[-2]["voxels labelled differently"] = differ
    return rows


def main() -> None:
    import pandas as pd

    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bids"
        write_spine_dataset(root, n_subjects=1, seed=5, n_vertebrae=7)
        lab = root / "derivatives" / "labels" / "sub-01" / "anat"
        rows += measure(
            "phantom T11-L5", lab / "sub-01_T2w_seg-spine_msk.nii.gz", lab / "sub-01_T2w_seg-vert_msk.nii.gz"
        )
    d = SHARED / "panoptica_spine_seg"
    sem, ref = d / "semantic" / "ref.nii.gz", d / "matched_instance" / "ref.nii.gz"
    if sem.exists() and ref.exists():
        rows += measure("panoptica lumbar", sem, ref)
    else:
        print(f"({d} absent: phantom only)")
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    by = table.groupby("rules")[["min Dice", "mean Dice", "vertebra voxels dropped"]].mean()
    print("\nmean over cases and flaws:\n" + by.to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
