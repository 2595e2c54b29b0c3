"""The documented lesion road (docs/lesions.md), run with the real console script on the lesion phantom:
``nnspine lesions -i pred/ ... -o pred_clean/`` then ``nnspine evaluate lesions --pred pred_clean --ref ...``.

``lesions`` numbers its kept lesions 1..N and writes a JSON sidecar saying so; ``evaluate lesions`` and ``lesions``
itself then score that output as it is (every non-zero voxel is lesion), and the counts equal the phantom's truth
(its expected TP/FP/FN under 26-connectivity). A region prediction (cord 1 + lesion 2) without ``--label`` and
without such a sidecar is still refused: exit 2, one line, nothing written.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nnunet_spine.core.io import InputError

CASE = "sub-01_T2w"
MASK = f"{CASE}_label-lesion_seg"


def nnspine(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["nnspine", *map(str, args)], capture_output=True, text=True)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The stderr of a refused command: exit 2, exactly one line, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> dict:
    """One lesion phantom subject: its prediction folder (binary, known errors), the labels folder (cord and lesion
    references), a region prediction built from them (cord 1, predicted lesion 2) and the truth JSON."""
    root = tmp_path_factory.mktemp("road")
    ph = root / "phantom"
    r = nnspine("phantom", "--kind", "lesion", "-o", ph, "-q")
    assert r.returncode == 0, r.stderr
    labels = ph / "derivatives" / "labels"
    pred_file = ph / "derivatives" / "prediction" / "sub-01" / "anat" / f"{MASK}.nii.gz"
    cord_img = nib.load(str(labels / "sub-01" / "anat" / f"{CASE}_label-SC_seg.nii.gz"))
    region = np.where(data(pred_file) > 0, 2, np.asarray(cord_img.dataobj) > 0).astype(np.uint8)
    (root / "region").mkdir()
    nib.save(nib.Nifti1Image(region, cord_img.affine), str(root / "region" / f"{CASE}.nii.gz"))
    truth = json.loads((ph / "derivatives" / "truth" / "sub-01" / "sub-01_truth.json").read_text())
    return {"root": root, "pred": pred_file.parent.parent.parent, "labels": labels, "region": root / "region",
            "truth": truth}  # fmt: skip


def expected_counts(truth: dict) -> dict[str, int]:
    """The phantom's truth under the default rule (overlap) and connectivity (26)."""
    assert truth["prediction"]["expected_counts"]["match"] == "overlap"
    return truth["prediction"]["expected_counts"]["26"]


def counts(csv: Path) -> dict[str, int]:
    row = pd.read_csv(csv).iloc[0]
    assert row["case"] == CASE
    return {k: int(row[k]) for k in ("ref_lesions", "pred_lesions", "tp", "fp", "fn")}


def test_documented_road_binary_prediction(phantom, tmp_path):
    """docs: ``nnspine lesions -i pred/ --cord ... -o pred_clean/`` → ``evaluate lesions --pred pred_clean``."""
    clean, table, scores = tmp_path / "pred_clean", tmp_path / "lesions.csv", tmp_path / "eval.csv"
    r = nnspine("lesions", "-i", phantom["pred"], "--cord", phantom["labels"], "-o", clean, "--table", table, "-q")
    assert r.returncode == 0, r.stderr
    truth = expected_counts(phantom["truth"])
    out = data(clean / f"{MASK}.nii.gz")
    assert sorted(np.unique(out).tolist()) == list(range(truth["pred_lesions"] + 1))  # instances 0..N: several labels
    side = json.loads((clean / f"{MASK}.json").read_text())
    assert side["LesionInstances"] is True and side["LesionCount"] == truth["pred_lesions"]
    assert side["GeneratedBy"][0]["Name"] == "nnunet-spine lesions" and side["Connectivity"] == 26
    r = nnspine("evaluate", "lesions", "--pred", clean, "--ref", phantom["labels"], "-o", scores, "-q")
    assert r.returncode == 0, r.stderr
    assert counts(scores) == truth
    # the cleaned output scores exactly as the raw prediction (nothing was removed, only renumbered)
    raw = tmp_path / "raw.csv"
    assert nnspine("evaluate", "lesions", "--pred", phantom["pred"], "--ref", phantom["labels"], "-o", raw,
                   "-q").returncode == 0  # fmt: skip
    assert pd.read_csv(raw).iloc[0]["dice"] == pytest.approx(pd.read_csv(scores).iloc[0]["dice"])


def test_documented_road_region_prediction(phantom, tmp_path):
    """docs: ``nnspine lesions -i pred/ --label 2 --cord cord_masks/ -o pred_clean/``, then scoring; the region
    prediction itself stays refused without --label, and ``lesions`` reads its own output as it is."""
    clean, table, scores = tmp_path / "pred_clean", tmp_path / "lesions.csv", tmp_path / "eval.csv"
    refused = tmp_path / "refused.csv"
    line = one_line_error(nnspine("evaluate", "lesions", "--pred", phantom["region"], "--ref", phantom["labels"],
                                  "-o", refused))  # fmt: skip
    assert f"{CASE}.nii.gz: several labels [1, 2]; choose the lesion with --label" in line and not refused.exists()
    r = nnspine("lesions", "-i", phantom["region"], "--label", "2", "--cord", phantom["labels"], "-o", clean,
                "--table", table, "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (clean / f"{CASE}.json").is_file()
    r = nnspine("evaluate", "lesions", "--pred", clean, "--ref", phantom["labels"], "-o", scores, "-q")
    assert r.returncode == 0, r.stderr
    assert counts(scores) == expected_counts(phantom["truth"])
    # `lesions` on its own output, without --label: the same lesions, the same numbers
    again = tmp_path / "again"
    r = nnspine("lesions", "-i", clean, "-o", again, "--table", tmp_path / "again.csv", "-q")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(data(again / f"{CASE}.nii.gz"), data(clean / f"{CASE}.nii.gz"))
    # a --label on a lesion-instance mask would pick one lesion: refused, naming the file
    line = one_line_error(nnspine("evaluate", "lesions", "--pred", clean, "--ref", phantom["labels"], "--label", "2",
                                  "-o", tmp_path / "label.csv"))  # fmt: skip
    assert f"{CASE}.nii.gz: holds lesion instances" in line and not (tmp_path / "label.csv").exists()


def test_sidecar_respects_overwrite(phantom, tmp_path):
    """The sidecar is an output like the mask: an existing one is refused without --overwrite (nothing written),
    replaced with it."""
    clean, table = tmp_path / "pred_clean", tmp_path / "t.csv"
    args = ("lesions", "-i", phantom["pred"], "-o", clean, "--table", table, "-q")
    assert nnspine(*args).returncode == 0
    (clean / f"{MASK}.nii.gz").unlink()
    table.unlink()
    (clean / f"{MASK}.json").write_text("{}\n")
    line = one_line_error(nnspine(*args))
    assert line.endswith(f"{MASK}.json: output exists (use --overwrite to replace it)")
    assert not (clean / f"{MASK}.nii.gz").exists() and not table.exists()
    assert nnspine(*args, "--overwrite").returncode == 0
    assert json.loads((clean / f"{MASK}.json").read_text())["LesionInstances"] is True


def test_run_lesions_writes_the_sidecar_for_segment(tmp_path):
    """``segment lesion`` builds a LesionJob itself and calls run_lesions with overwrite: the sidecar comes too."""
    from nnunet_spine.postprocessing.lesion.lesions import LesionJob, run_lesions
    from nnunet_spine.postprocessing.lesion.metrics import load_lesion_mask

    mask = np.zeros((12, 12, 12), np.uint8)
    mask[1:3, 1:3, 8:10] = 1  # superior
    mask[6:9, 6:9, 1:3] = 1  # inferior
    src = tmp_path / "tmp" / f"{CASE}_lesion.nii.gz"
    src.parent.mkdir()
    nib.save(nib.Nifti1Image(mask, np.diag([0.5, 0.5, 2.0, 1.0])), str(src))
    out = tmp_path / "out" / f"{MASK}.nii.gz"
    job = LesionJob(CASE, src, out)
    for _ in range(2):  # twice: overwrite replaces mask and sidecar
        run_lesions([job], tmp_path / "out" / "t.csv", overwrite=True)
    assert json.loads((tmp_path / "out" / f"{MASK}.json").read_text())["LesionCount"] == 2
    assert sorted(np.unique(data(out)).tolist()) == [0, 1, 2]
    img = load_lesion_mask(out, single_label=True)  # read as it is: all non-zero = lesion
    assert img.meta["lesion_instances"] and np.array_equal(img.data, mask > 0)


def test_region_mask_beside_an_unrelated_or_broken_sidecar(tmp_path):
    """Only ``"LesionInstances": true`` lifts the refusal; a sidecar without it changes nothing, a broken one is
    named."""
    from nnunet_spine.postprocessing.lesion.metrics import load_lesion_mask

    region = np.zeros((6, 6, 6), np.uint8)
    region[1:5, 1:5, :] = 1
    region[2:4, 2:4, 2:4] = 2
    path = tmp_path / "sub-01_T2w.nii.gz"
    nib.save(nib.Nifti1Image(region, np.eye(4)), str(path))
    side = tmp_path / "sub-01_T2w.json"
    for text in (None, '{"SpatialReference": "orig"}', '{"LesionInstances": false}'):
        if text is not None:
            side.write_text(text)
        with pytest.raises(InputError, match=r"several labels \[1, 2\]; choose the lesion with --label"):
            load_lesion_mask(path, single_label=True)
    assert np.array_equal(load_lesion_mask(path, 2).data, region == 2)  # --label 2 on a region mask still works
    side.write_text("{not json")
    with pytest.raises(InputError, match=r"sub-01_T2w\.json: cannot read the sidecar of sub-01_T2w\.nii\.gz"):
        load_lesion_mask(path, single_label=True)
    side.write_text('{"LesionInstances": "yes"}')
    with pytest.raises(InputError, match="LesionInstances must be true or false"):
        load_lesion_mask(path, single_label=True)
    side.write_text('{"LesionInstances": true}')
    assert np.array_equal(load_lesion_mask(path, single_label=True).data, region > 0)


def test_non_image_pred_is_named(phantom, tmp_path):
    """``--pred notes.txt`` (and ``lesions -i notes.txt``) names notes.txt, not the reference or cord folder."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a mask\n")
    line = one_line_error(nnspine("evaluate", "lesions", "--pred", notes, "--ref", phantom["labels"],
                                  "-o", tmp_path / "m.csv"))  # fmt: skip
    assert line.startswith(f"nnspine evaluate: error: {notes}: not an image") and "--pred" in line
    assert str(phantom["labels"]) not in line and not (tmp_path / "m.csv").exists()
    line = one_line_error(nnspine("lesions", "-i", notes, "--cord", phantom["labels"], "-o", tmp_path / "o.nii.gz",
                                  "--table", tmp_path / "t.csv"))  # fmt: skip
    assert line.startswith(f"nnspine lesions: error: {notes}: not an image") and str(phantom["labels"]) not in line
