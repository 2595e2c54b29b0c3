"""Benchmark: our SCT disc labels (``nnunet_spine.postprocessing.spine.sct_discs``) against SPINEPS' own converter
``spineps/utils/generate_disc_labels.py`` (``extract_discs_label`` with its ``DISCS_MAP``), run — not copied — on the
same instance masks: spine phantoms (``nnspine phantom --kind spine``) and ``../shared/data/tptbox_sample_mri``.

Per mask it prints the disc values both write, how many are equal, the values only one of them writes, and the
largest and mean distance (world mm) between the two labels of one value.

SPINEPS' converter is not in the PyPI release (2.1.3); run this with a SPINEPS source tree that has it on the path,
e.g. from a checkout of Hendrik-code/spineps, in an environment with SPINEPS' dependencies::

    python -m venv --system-site-packages /tmp/spvenv3
    /tmp/spvenv3/bin/pip install --no-deps spineps monai pytorch-lightning torchmetrics lightning-utilities \\
        TypeSaveArgParse configargparse
    PYTHONPATH=/path/to/spineps-checkout /tmp/spvenv3/bin/python benchmarks/bench_disc_labels.py --vertebrae 9 17
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def spineps_disc_labels(path: Path) -> np.ndarray:
    """SPINEPS' ``extract_discs_label(Image(path), DISCS_MAP)``, its label array on the input's grid."""
    from spineps.utils.generate_disc_labels import DISCS_MAP, extract_discs_label
    from spineps.utils.image import Image as SpinepsImage

    with contextlib.redirect_stdout(io.StringIO()):
        out = extract_discs_label(SpinepsImage(str(path)), mapping=DISCS_MAP)
    return np.asarray(out.data)


def points(data: np.ndarray, affine: np.ndarray) -> dict[int, np.ndarray]:
    """Label value → world position (RAS mm) of its voxel (centroid if several)."""
    out = {}
    for v in np.unique(data[data > 0]):
        ijk = np.argwhere(data == v).mean(0)
        out[int(v)] = affine[:3, :3] @ ijk + affine[:3, 3]
    return out


def compare(path: Path) -> dict:
    from nnunet_spine.core.io import load_image
    from nnunet_spine.postprocessing.spine.sct_discs import disc_labels_from_instances

    img = load_image(path, "labels")
    ours, report = disc_labels_from_instances(img)
    theirs = spineps_disc_labels(path)
    a, b = points(ours, img.affine), points(theirs, img.affine)
    common = sorted(set(a) & set(b))
    dist = [float(np.linalg.norm(a[v] - b[v])) for v in common]
    return {
        "mask": path.name,
        "ours": sorted(a),
        "spineps": sorted(b),
        "equal": len(common),
        "only_ours": sorted(set(a) - set(b)),
        "only_spineps": sorted(set(b) - set(a)),
        "max_mm": max(dist) if dist else float("nan"),
        "mean_mm": float(np.mean(dist)) if dist else float("nan"),
        "skipped": report.skipped,
    }


def phantom_masks(folder: Path, vertebrae: int, subjects: int, seed: int) -> list[Path]:
    out = folder / f"v{vertebrae}"
    subprocess.run(
        ["nnspine", "phantom", "--kind", "spine", "-o", str(out), "--vertebrae", str(vertebrae),
         "--subjects", str(subjects), "--seed", str(seed), "-q"],
        check=True, capture_output=True,
    )  # fmt: skip
    return sorted(out.glob("derivatives/labels/*/anat/*_seg-vert_msk.nii.gz"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vertebrae", type=int, nargs="+", default=[9, 17], help="phantom columns ending at L5")
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import spineps.utils.generate_disc_labels  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"SPINEPS' generate_disc_labels is not importable ({exc}); see this file's docstring")
    with tempfile.TemporaryDirectory() as tmp:
        masks = [p for n in args.vertebrae for p in phantom_masks(Path(tmp), n, args.subjects, args.seed)]
        sample = SHARED / "tptbox_sample_mri" / "sub-mri_seg-vert_label-6_msk.nii.gz"
        if sample.exists():
            masks.append(sample)
        else:
            print(f"(no {sample}: real sample skipped)")
        rows = [compare(p) for p in masks]
    print(
        f"{'mask':<42} {'ours':>6} {'SPINEPS':>7} {'equal':>5} {'max mm':>7} {'mean mm':>7}  only ours / only SPINEPS"
    )
    for r in rows:
        print(
            f"{r['mask']:<42} {len(r['ours']):>6} {len(r['spineps']):>7} {r['equal']:>5} {r['max_mm']:>7.2f} "
            f"{r['mean_mm']:>7.2f}  {r['only_ours']} / {r['only_spineps']}"
        )
    n_ours = sum(len(r["ours"]) for r in rows)
    n_equal = sum(r["equal"] for r in rows)
    worst = max((r["max_mm"] for r in rows if r["equal"]), default=float("nan"))
    print(
        f"total: {n_equal} of {n_ours} of our labels have a SPINEPS label of the same value; "
        f"max distance {worst:.2f} mm"
    )


if __name__ == "__main__":
    main()
