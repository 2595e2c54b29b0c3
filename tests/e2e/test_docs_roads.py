"""The docs' command roads, run as a user would: each road's blocks (``<!-- docs-test: road NAME -->``, see
``tests/doc_blocks.py``), in document order, make one bash script (``set -euo pipefail``) that runs in an empty
folder, so the outputs of one command are the inputs of the next.

What a road's script holds, and nothing else:

1. a **prelude** (kept here, in :data:`ROADS`) that makes the inputs the docs assume the user has — copies of
   phantoms written by ``nnspine phantom`` (once per session, in ``$PHANTOMS``) and stand-ins for predictions
   (a phantom's masks play a model's output);
2. the road's blocks, **verbatim after the road's substitutions** (each ``(old, new)`` pair a plain text
   replacement that must apply at least once, so a stale substitution fails);
3. checks of the outputs (in Python, after the script).

The script is printed on failure. ``$REPO`` is the checkout, ``$PHANTOMS`` the session's phantoms.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from doc_blocks import REPO, road, road_names  # noqa: E402

pytestmark = pytest.mark.slow

#: the lesions road's stand-ins: the lesion phantom's "prediction" as a binary map (pred/) and as a cord 1 +
#: lesion 2 map (pred_regions/), and SCT-style labelled levels (C3 above, C4 below) from the phantom's cord mask
_PY_LESION_PREDS = r"""
python - <<'PY'
import nibabel as nib, numpy as np
lab = "ph/derivatives/labels/sub-01/anat/"
cord = nib.load(lab + "sub-01_T2w_label-SC_seg.nii.gz")
c = np.asarray(cord.dataobj) > 0
les = np.asarray(nib.load("ph/derivatives/prediction/sub-01/anat/sub-01_T2w_label-lesion_seg.nii.gz").dataobj) > 0
nib.save(nib.Nifti1Image(les.astype(np.uint8), cord.affine), "pred/sub-01_T2w.nii.gz")
nib.save(nib.Nifti1Image((c + les * (2 - c)).astype(np.uint8), cord.affine), "pred_regions/sub-01_T2w.nii.gz")
levels = np.zeros(c.shape, np.uint8)
mid = c.shape[2] // 2
levels[..., :mid][c[..., :mid]] = 4
levels[..., mid:][c[..., mid:]] = 3
nib.save(nib.Nifti1Image(levels, cord.affine), "sub-01_T2w_label-SC_seg_labeled.nii.gz")
PY
"""


@dataclass
class Road:
    prelude: str
    substitutions: list[tuple[str, str]] = field(default_factory=list)


ENV_SUBS = [("=/data/", "=$PWD/data/")]
ENV_EPILOGUE = "env | grep '^nnUNet_' | sort > env.txt\n"

ROADS: dict[str, Road] = {
    # README's and docs/nnunet-environment.md's environment: /data/ is the user's disk
    "readme-env": Road(prelude="", substitutions=ENV_SUBS),
    "nnunet-environment": Road(prelude="", substitutions=ENV_SUBS),
    "phantoms": Road(prelude=""),
    "cord-csa": Road(
        prelude="""
cp -r "$PHANTOMS/cord" ph
cp ph/derivatives/truth/sub-01/anat/sub-01_T2w_label-SC_softseg.nii.gz sub-01_T2w_softseg.nii.gz
cp ph/derivatives/labels/sub-01/anat/sub-01_T2w_label-SC_seg_labeled.nii.gz sub-01_T2w_seg_labeled.nii.gz
mkdir masks_folder
cp ph/derivatives/truth/sub-01/anat/sub-01_T2w_label-SC_softseg.nii.gz masks_folder/sub-01_T2w.nii.gz
cp ph/derivatives/labels/sub-01/anat/sub-01_T2w_label-discs_dlabel.nii.gz discs.nii.gz
""",
    ),
    "cord-eval": Road(
        # the phantoms' exact soft masks play the soft model's predictions, their binary masks a binary model's
        prelude="""
cp -r "$PHANTOMS/cord" bids
export nnUNet_raw=$PWD/nnUNet_raw
mkdir pred_soft pred_binary
for f in bids/derivatives/truth/sub-*/anat/*_label-SC_softseg.nii.gz; do
  b=$(basename "$f"); cp "$f" "pred_soft/${b%_label-SC_softseg.nii.gz}.nii.gz"; done
for f in bids/derivatives/labels/sub-*/anat/*_label-SC_seg.nii.gz; do
  b=$(basename "$f"); cp "$f" "pred_binary/${b%_label-SC_seg.nii.gz}.nii.gz"; done
nnspine evaluate csa-variability -i pred_binary --discs bids/derivatives/labels --vert 2:3 -o binary.csv -q
""",
        substitutions=[("compare-variability soft.csv", "compare-variability csa_variability.csv")],
    ),
    "cord-bench-help": Road(prelude="", substitutions=[("python benchmarks/", 'python "$REPO"/benchmarks/')]),
    "lesion-convert": Road(prelude='cp -r "$PHANTOMS/lesion" bids\nexport nnUNet_raw=$PWD/nnUNet_raw\n'),
    "lesions": Road(
        # the lesion phantom's "prediction" (known errors) is the model's output; a two-level file from its cord
        # mask plays SCT's labelled levels; the reference is the phantom's lesion mask
        prelude="""
cp -r "$PHANTOMS/lesion" ph
export nnUNet_raw=$PWD/nnUNet_raw
mkdir -p pred pred_regions cord_masks "$nnUNet_raw/Dataset201_Lesion/labelsTr"
cp ph/derivatives/labels/sub-01/anat/sub-01_T2w_label-SC_seg.nii.gz sub-01_T2w_label-SC_seg.nii.gz
cp ph/derivatives/labels/sub-01/anat/sub-01_T2w_label-SC_seg.nii.gz cord_masks/sub-01_T2w.nii.gz
ref=$nnUNet_raw/Dataset201_Lesion/labelsTr
cp ph/derivatives/labels/sub-01/anat/sub-01_T2w_label-lesion_seg.nii.gz "$ref/sub-01_T2w.nii.gz"
"""
        + _PY_LESION_PREDS,
        substitutions=[
            # the summary's four evaluations are the one this road made
            ("=eval_T1w_2d.csv", "=lesions_eval.csv"),
            ("=eval_T1w_3d.csv", "=lesions_eval.csv"),
            ("=eval_T2w_3d.csv", "=lesions_eval.csv"),
            ("=eval_both_3d.csv", "=lesions_eval.csv"),
        ],
    ),
    "spine-convert": Road(
        # the second converter line reads T2w and T1w: the phantom's T2w image copied as T1w stands in
        prelude="""
cp -r "$PHANTOMS/spine" bids
export nnUNet_raw=$PWD/nnUNet_raw
for f in bids/sub-*/anat/*_T2w.nii.gz; do cp "$f" "${f%_T2w.nii.gz}_T1w.nii.gz"; done
for f in bids/derivatives/labels/sub-*/anat/*_T2w_seg-*; do cp "$f" "${f/_T2w_/_T1w_}"; done
""",
        substitutions=[("--subjects 4", "--subjects 2")],
    ),
    "spine-masks": Road(
        # a cervical spine phantom (C2-C6): its nnU-Net-labelled masks (convert spineps) play the semantic model's
        # predictions, its SPINEPS masks the fused instances and the references, its cord label the soft cord
        prelude="""
cp -r "$PHANTOMS/spine_cervical" ph
export nnUNet_raw=$PWD/nnUNet_raw
nnspine convert spineps -i ph --nnunet-dataset 510 --name SpineSemantic -q
mkdir pred inst reference_vert_msks sem reference_spine_msks pred_soft
cp "$nnUNet_raw"/Dataset510_SpineSemantic/labelsTr/*.nii.gz pred/
cp "$nnUNet_raw"/Dataset510_SpineSemantic/dataset.json pred/
cp ph/sub-01/anat/sub-01_T2w.nii.gz sub-01_T2w.nii.gz
lab=ph/derivatives/labels/sub-01/anat
cp $lab/sub-01_T2w_seg-vert_msk.nii.gz inst/; cp $lab/sub-01_T2w_seg-vert_msk.nii.gz reference_vert_msks/
cp $lab/sub-01_T2w_seg-spine_msk.nii.gz inst/
cp $lab/sub-01_T2w_seg-spine_msk.nii.gz sem/; cp $lab/sub-01_T2w_seg-spine_msk.nii.gz reference_spine_msks/
python - <<'PY'
import nibabel as nib, numpy as np
m = nib.load("ph/derivatives/labels/sub-01/anat/sub-01_T2w_seg-spine_msk.nii.gz")
nib.save(nib.Nifti1Image((np.asarray(m.dataobj) == 60).astype(np.float32), m.affine), "pred_soft/sub-01_T2w.nii.gz")
PY
""",
    ),
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    """The phantoms the preludes copy: those docs/phantoms.md's road writes (it runs here, once; its test checks
    them), and a cervical spine phantom (C2-C6) written by ``nnspine phantom``."""
    root = tmp_path_factory.mktemp("docs_phantoms")
    (root / "road").mkdir()
    run_road("phantoms", root / "road", root)
    for name in ("cord", "lesion", "spine"):
        shutil.copytree(root / "road" / f"phantom_{name}", root / name)
    subprocess.run(
        ["nnspine", "phantom", "--kind", "spine", "--vertebrae", "5", "--variant", "cervical", "-q",
         "-o", str(root / "spine_cervical")],
        check=True, capture_output=True,
    )  # fmt: skip
    return root


def road_script(name: str) -> str:
    spec = ROADS[name]
    parts = [f"# ---- {b.where}\n{b.text}" for b in road(name)]
    body = "\n".join(parts)
    for old, new in spec.substitutions:
        assert old in body, f"road {name}: substitution {old!r} no longer applies (the docs changed?)"
        body = body.replace(old, new)
    epilogue = ENV_EPILOGUE if name in ("readme-env", "nnunet-environment") else ""
    return f"set -euo pipefail\n# ---- prelude (tests/e2e/test_docs_roads.py)\n{spec.prelude}\n{body}\n{epilogue}"


def run_road(name: str, folder: Path, phantoms: Path) -> str:
    script = road_script(name)
    (folder / "road.sh").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        REPO=str(REPO),
        PHANTOMS=str(phantoms),
        MPLBACKEND="Agg",
    )
    proc = subprocess.run(["bash", "road.sh"], cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(
            f"road {name} failed ({proc.returncode}); script:\n{script}\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_every_road_has_an_entry_here():
    assert set(road_names()) - {"slurm"} == set(ROADS)  # the slurm road runs in test_slurm.py


@pytest.mark.parametrize("name", ["readme-env", "nnunet-environment"])
def test_environment_roads(name, tmp_path, phantoms):
    run_road(name, tmp_path, phantoms)
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert env["nnUNet_raw"] == f"{tmp_path}/data/nnUNet_raw"
    assert env["nnUNet_results"] == f"{tmp_path}/data/nnUNet_results"
    assert (Path(env["nnUNet_extTrainer"]) / "__init__.py").exists() or Path(env["nnUNet_extTrainer"]).is_dir()
    assert (env["nnUNet_n_proc_DA"], env["nnUNet_def_n_proc"], env["nnUNet_compile"]) == ("0", "1", "f")


def test_phantoms_road(phantoms):
    """docs/phantoms.md's road ran in the ``phantoms`` fixture (the other roads copy its outputs)."""
    out = phantoms / "road"
    for sub in ("sub-01", "sub-02"):
        truth = json.loads((out / f"phantom_cord/derivatives/truth/{sub}/{sub}_truth.json").read_text())
        assert len(truth["csa_per_level_mm2"]) >= 4
        assert len(list((out / "phantom_cord" / sub / "anat").glob("*.nii.gz"))) == 5
    spine = json.loads((out / "phantom_spine/derivatives/truth/sub-01/sub-01_truth.json").read_text())
    assert spine
    assert (out / "phantom_spine/derivatives/labels/sub-01/anat/sub-01_T2w_seg-vert_msk.nii.gz").exists()
    assert (out / "phantom_lesion/sub-01/anat/sub-01_T1w.nii.gz").exists()
    assert (out / "phantom_lesion/derivatives/prediction/sub-01/anat/sub-01_T2w_label-lesion_seg.nii.gz").exists()


def test_cord_csa_road(tmp_path, phantoms):
    run_road("cord-csa", tmp_path, phantoms)
    perslice = rows(tmp_path / "csa_perslice.csv")
    assert len(perslice) > 10 and all(float(r["MEAN(area)"]) >= 0 for r in perslice)
    assert (tmp_path / "csa.png").stat().st_size > 1000
    perlevel = rows(tmp_path / "csa_perlevel.csv")
    assert sorted({r["VertLevel"] for r in perlevel}) == ["2", "3", "4", "5"]
    truth = json.loads((tmp_path / "ph/derivatives/truth/sub-01/sub-01_truth.json").read_text())["csa_per_level_mm2"]
    for r in perlevel:  # the exact soft mask's CSA per level is the phantom's true CSA (a few %)
        assert float(r["MEAN(area)"]) == pytest.approx(truth[r["VertLevel"]], rel=0.05)
    cohort = rows(tmp_path / "cohort.csv")
    assert {r["VertLevel"] for r in cohort} >= {"3", "4"}


def test_cord_eval_road(tmp_path, phantoms):
    run_road("cord-eval", tmp_path, phantoms)
    raw = tmp_path / "nnUNet_raw" / "Dataset101_SoftCord"
    assert len(list((raw / "labelsTr_soft").glob("*.nii.gz"))) == 10
    assert (tmp_path / "bids_derivatives").is_dir()
    ev = rows(tmp_path / "eval.csv")
    assert ev[-1]["case"] == "MEAN" and len(ev) == 11
    assert {r["subject"] for r in rows(tmp_path / "csa_variability.csv") if r.get("subject")} >= {"sub-01", "sub-02"}
    assert rows(tmp_path / "compare.csv") and (tmp_path / "compare.png").exists()


def test_cord_bench_help_road(tmp_path, phantoms):
    assert "--budgets" in run_road("cord-bench-help", tmp_path, phantoms)


def test_lesion_convert_road(tmp_path, phantoms):
    run_road("lesion-convert", tmp_path, phantoms)
    for ds, channels in (("Dataset201_LesionT1wT2w", 2), ("Dataset202_LesionT2w", 1)):
        meta = json.loads((tmp_path / "nnUNet_raw" / ds / "dataset.json").read_text())
        assert len(meta["channel_names"]) == channels
        assert list((tmp_path / "nnUNet_raw" / ds / "labelsTr").glob("*.nii.gz"))


def test_lesions_road(tmp_path, phantoms):
    run_road("lesions", tmp_path, phantoms)
    assert rows(tmp_path / "lesions.csv") and (tmp_path / "lesions.png").exists()
    ev = {r["case"]: r for r in rows(tmp_path / "lesions_eval.csv")}
    assert "sub-01_T2w" in ev
    assert rows(tmp_path / "per_lesion.csv") and rows(tmp_path / "by_size.csv")
    assert rows(tmp_path / "table.csv")


def test_spine_convert_road(tmp_path, phantoms):
    run_road("spine-convert", tmp_path, phantoms)
    for ds, channels in (("Dataset510_SpineSemantic", 1), ("Dataset511_SpineT2T1", 2)):
        meta = json.loads((tmp_path / "nnUNet_raw" / ds / "dataset.json").read_text())
        assert len(meta["channel_names"]) == channels


def test_spine_masks_road(tmp_path, phantoms):
    run_road("spine-masks", tmp_path, phantoms)
    import nibabel as nib
    import numpy as np

    relabelled = np.asarray(nib.load(tmp_path / "pred_spineps" / "sub-01_T2w.nii.gz").dataobj)
    reference = np.asarray(
        nib.load(tmp_path / "ph/derivatives/labels/sub-01/anat/sub-01_T2w_seg-spine_msk.nii.gz").dataobj
    )
    assert set(np.unique(relabelled)) == set(np.unique(reference))
    assert (tmp_path / "sub-01_qc.png").stat().st_size > 1000
    inst = rows(tmp_path / "instance_metrics.csv")
    assert inst
    assert rows(tmp_path / "semantic_dice.csv")
    assert rows(tmp_path / "csa_variability.csv")
