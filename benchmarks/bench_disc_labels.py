"""Benchmark: our SCT disc labels (``nnunet_spine.postprocessing.spine.sct_discs``) against SPINEPS' own converter
``spineps/utils/generate_disc_labels.py`` (``extract_discs_label`` with its ``DISCS_MAP``), run — not copied — on the
same instance masks: spine phantoms (``nnspine phantom --kind spine``) and ``../shared/data/tptbox_sample_mri``.

Per mask it prints the disc values both write, how many are equal, the values only one of them writes, the
largest and mean distance (world mm) between the two labels of one value, and the largest and mean distance from
our label to SPINEPS' *tie set*: the disc's voxels at its most posterior index along the image's A-P voxel axis.
SPINEPS picks, per disc, the voxel nearest (voxel units) to one line drawn behind the whole column through the disc
centroids (``extract_discs_label``: ``extract_centroids_3d``, ``closest_point_seg_to_line``; among equal distances
the first voxel in RSP index order, i.e. the rightmost); that voxel lies in the tie set on most discs (column
``SP in tie``), and where along the posterior border it falls depends on that line's slope and sampling, not on
the disc: for a tilted disc the tie set is its upper or lower posterior corner, where ours is at mid-height.
Then a round trip on T9–L5 phantoms: our labels → ``csa --discfile`` against ``csa --vertfile`` on the instance
mask, and against ``csa --discfile`` on labels at the discs' centroids (slices both label; ``--round-trip-seeds``),
and both rules against the phantom's analytic level (``phantoms.spine.slice_levels_truth``).

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


def tie_set_distance(label_ijk: np.ndarray, disc_ijk: np.ndarray, affine: np.ndarray) -> float:
    """Distance (world mm) from a label voxel to the nearest voxel of its disc that sits at the disc's most posterior
    index along the image's A-P voxel axis (the voxel axis most aligned with world y; posterior = world -y)."""
    ap = int(np.argmax(np.abs(affine[1, :3])))
    idx = disc_ijk[:, ap]
    end = idx.min() if affine[1, ap] > 0 else idx.max()
    tie = disc_ijk[idx == end]
    d = (tie - label_ijk) @ affine[:3, :3].T
    return float(np.sqrt((d**2).sum(1)).min())


def compare(path: Path) -> dict:
    from nnunet_spine.core.io import load_image
    from nnunet_spine.postprocessing.spine.sct_discs import disc_labels_from_instances

    img = load_image(path, "labels")
    ours, report = disc_labels_from_instances(img)
    theirs = spineps_disc_labels(path)
    a, b = points(ours, img.affine), points(theirs, img.affine)
    common = sorted(set(a) & set(b))
    dist = [float(np.linalg.norm(a[v] - b[v])) for v in common]
    data = np.rint(np.asarray(img.data)).astype(np.int64)
    tie = [
        tie_set_distance(np.argwhere(ours == v)[0], np.argwhere(data == disc), img.affine)
        for disc, v in report.written.items()
        if v in common
    ]
    theirs_in_tie = sum(
        tie_set_distance(np.argwhere(theirs == v)[0], np.argwhere(data == disc), img.affine) == 0.0
        for disc, v in report.written.items()
        if v in common
    )
    return {
        "mask": path.name,
        "ours": sorted(a),
        "spineps": sorted(b),
        "equal": len(common),
        "only_ours": sorted(set(a) - set(b)),
        "only_spineps": sorted(set(b) - set(a)),
        "max_mm": max(dist) if dist else float("nan"),
        "mean_mm": float(np.mean(dist)) if dist else float("nan"),
        "tie_max_mm": max(tie) if tie else float("nan"),
        "tie_mean_mm": float(np.mean(tie)) if tie else float("nan"),
        "spineps_in_tie": theirs_in_tie,
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


def _csa_levels(mask: Path, out: Path, *args: str) -> dict[int, int]:
    """``nnspine csa --perslice`` of the cord (60) of ``mask``: RPI slice (I->S) → level, slices with a level."""
    import pandas as pd

    subprocess.run(
        ["nnspine", "csa", "-i", str(mask), "--label", "60", "--perslice", "-o", str(out), *args],
        check=True, capture_output=True,
    )  # fmt: skip
    df = pd.read_csv(out).dropna(subset=["VertLevel"])
    return dict(zip(df["Slice (I->S)"].astype(int), df["VertLevel"].astype(int)))


def centroid_labels(instances: np.ndarray, written: dict[int, int], affine: np.ndarray) -> np.ndarray:
    """Disc labels at each disc's voxel nearest its centroid (world mm): the reference that isolates what the
    posterior tip itself changes under SCT's ``-discfile`` rule."""
    out = np.zeros(instances.shape, np.uint8)
    for disc, value in written.items():
        ijk = np.argwhere(instances == disc)
        xyz = ijk @ affine[:3, :3].T
        out[tuple(ijk[np.argmin(((xyz - xyz.mean(0)) ** 2).sum(1))])] = value
    return out


def round_trip(seed: int, folder: Path) -> dict:
    """T9–L5 phantom column (``build_spine_model(9, seed)``): our disc labels → ``csa --discfile`` against
    ``csa --vertfile`` on the instance mask, and against ``csa --discfile`` on centroid labels."""
    import nibabel as nib

    from nnunet_spine.core.geometry import SCT_RPI, reorient
    from nnunet_spine.core.labels import CORD, verse_to_sct_level
    from nnunet_spine.phantoms.spine import build_spine_model, render_spine, slice_levels_truth
    from nnunet_spine.postprocessing.spine.sct_discs import write_disc_labels

    model = build_spine_model(9, seed=seed)
    r = render_spine(model)
    vert, spine = folder / f"s{seed}_T2w_seg-vert_msk.nii.gz", folder / f"s{seed}_T2w_seg-spine_msk.nii.gz"
    nib.save(nib.Nifti1Image(r["instance"].astype(np.int16), r["affine"]), vert)
    nib.save(nib.Nifti1Image(r["semantic"].astype(np.uint8), r["affine"]), spine)
    report = write_disc_labels(vert)
    cen = folder / f"s{seed}_centroids.nii.gz"
    nib.save(nib.Nifti1Image(centroid_labels(r["instance"], report.written, r["affine"]), r["affine"]), cen)
    tip = _csa_levels(spine, folder / f"s{seed}_d.csv", "--discfile", str(report.path))
    by_vert = _csa_levels(spine, folder / f"s{seed}_v.csv", "--vertfile", str(vert))
    by_cen = _csa_levels(spine, folder / f"s{seed}_c.csv", "--discfile", str(cen))

    def agree(other: dict[int, int]) -> tuple[int, int]:
        both = sorted(set(tip) & set(other))
        return len(both), sum(tip[k] != other[k] for k in both)

    # the phantom's analytic level per slice (both rules label the slice; the lowest level, cut by the cord's end
    # or resting on the sacrum, left out)
    cord_rpi, aff_rpi = reorient((r["semantic"] == CORD).astype(np.uint8), r["affine"], SCT_RPI)
    both = sorted(set(tip) & set(by_vert))
    truth = dict(zip(both, (verse_to_sct_level(int(v)) for v in slice_levels_truth(model, cord_rpi, aff_rpi, both))))
    scored = [k for k in both if truth[k] != max(truth.values())]

    def right(levels: dict[int, int]) -> float:
        return 100.0 * sum(levels[k] == truth[k] for k in scored) / len(scored)

    return {
        "seed": seed,
        "vertfile": agree(by_vert),
        "centroids": agree(by_cen),
        "truth": (right(tip), right(by_vert)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vertebrae", type=int, nargs="+", default=[9, 17], help="phantom columns ending at L5")
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--round-trip-seeds", type=int, nargs="*", default=[0, 1, 3, 5, 7])
    args = ap.parse_args()
    try:
        import spineps.utils.generate_disc_labels  # noqa: F401
    except ImportError as exc:
        print(f"SPINEPS' generate_disc_labels is not importable ({exc}): comparison skipped, see this file's docstring")
        rows = []
    else:
        with tempfile.TemporaryDirectory() as tmp:
            masks = [p for n in args.vertebrae for p in phantom_masks(Path(tmp), n, args.subjects, args.seed)]
            sample = SHARED / "tptbox_sample_mri" / "sub-mri_seg-vert_label-6_msk.nii.gz"
            if sample.exists():
                masks.append(sample)
            else:
                print(f"(no {sample}: real sample skipped)")
            rows = [compare(p) for p in masks]
    if rows:
        print(
            f"{'mask':<38} {'ours':>4} {'SPINEPS':>7} {'equal':>5} {'max mm':>7} {'mean mm':>7} "
            f"{'tie max':>7} {'tie mean':>8} {'SP in tie':>9}  only ours / only SPINEPS"
        )
        for r in rows:
            print(
                f"{r['mask']:<38} {len(r['ours']):>4} {len(r['spineps']):>7} {r['equal']:>5} {r['max_mm']:>7.2f} "
                f"{r['mean_mm']:>7.2f} {r['tie_max_mm']:>7.2f} {r['tie_mean_mm']:>8.2f} {r['spineps_in_tie']:>9}  "
                f"{r['only_ours']} / {r['only_spineps']}"
            )
        n_ours = sum(len(r["ours"]) for r in rows)
        n_equal = sum(r["equal"] for r in rows)
        worst = max((r["max_mm"] for r in rows if r["equal"]), default=float("nan"))
        worst_tie = max((r["tie_max_mm"] for r in rows if r["equal"]), default=float("nan"))
        print(
            f"total: {n_equal} of {n_ours} of our labels have a SPINEPS label of the same value; "
            f"max distance {worst:.2f} mm, to SPINEPS' tie set {worst_tie:.2f} mm"
        )
    if args.round_trip_seeds:
        print("\nround trip (T9-L5 phantom): ours -> csa --discfile vs csa --vertfile / vs --discfile on centroids")
        print(
            f"{'seed':>4} {'slices':>6} {'differ':>6} {'equal %':>7}   {'slices':>6} {'differ':>6} {'equal %':>7}   "
            "right vs the phantom's truth: --discfile % / --vertfile %"
        )
        with tempfile.TemporaryDirectory() as tmp:
            for seed in args.round_trip_seeds:
                t = round_trip(seed, Path(tmp))
                (n1, d1), (n2, d2) = t["vertfile"], t["centroids"]
                e1, e2 = 100 * (1 - d1 / n1), 100 * (1 - d2 / n2)
                t1, t2 = t["truth"]
                print(f"{seed:>4} {n1:>6} {d1:>6} {e1:>7.1f}   {n2:>6} {d2:>6} {e2:>7.1f}   {t1:>5.1f} / {t2:>5.1f}")


if __name__ == "__main__":
    main()
