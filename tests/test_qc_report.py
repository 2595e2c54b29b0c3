"""The offline QC report (library side) and the qc_fail.yml loop: concurrent writers, escaping, the case-list
reader and its refusals, --exclude-yml on a real ``nnspine`` command. The page itself is tested in a real
browser by ``tests/e2e/test_qc_report_browser.py``."""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_spine.core.io import InputError
from nnunet_spine.core.qc_yml import read_case_list
from nnunet_spine.postprocessing.qc.report import (
    Entry,
    add_entries,
    add_entry,
    axial_mosaic,
    label_colours,
    read_entries,
    rebuild_report,
    sagittal_picture,
)

HOSTILE = "sub-<img src=x onerror=alert(1)>_T2w.nii.gz"

sys.path.insert(0, str(Path(__file__).parent))
import test_fuse  # noqa: E402
from test_fuse import files, spine5  # noqa: E402, F401 - fixtures: the spine phantom, its cutouts, perfect predictions


def _entry(file: str, command: str = "csa", **fields) -> Entry:
    picture = np.zeros((4, 6, 3), np.uint8)
    return Entry(command=command, file=file, yml_key="FILES_SEG", background=picture, overlay=picture + 1, **fields)


def _page_data(index: Path) -> dict:
    """The JSON embedded in the page, parsed by the json module (what the browser's JSON.parse reads)."""
    html = index.read_text()
    match = re.search(r'<script type="application/json" id="qc-data">(.*?)</script>', html, re.S)
    assert match, "no data script in the page"
    return json.loads(match.group(1))


def _writer(args: tuple[str, int, int]) -> None:
    folder, worker, n = args
    for k in range(n):
        add_entry(folder, _entry(f"sub-{worker:02d}_run-{k:02d}_T2w.nii.gz"))


def test_concurrent_writers_lose_no_entry(tmp_path):
    """8 processes × 25 entries into one report at once: 200 entry files, 200 entries in the page, ids unique."""
    folder = tmp_path / "qc"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(8) as pool:
        pool.map(_writer, [(str(folder), w, 25) for w in range(8)])
    assert len(list((folder / "entries").glob("*.json"))) == 200
    data = _page_data(folder / "index.html")
    names = sorted(e["file"] for e in data["entries"])
    assert names == sorted(f"sub-{w:02d}_run-{k:02d}_T2w.nii.gz" for w in range(8) for k in range(25))
    assert len({e["id"] for e in data["entries"]}) == 200
    assert len(list((folder / "entries").glob("*_bg.png"))) == 200


def test_hostile_text_stays_data(tmp_path):
    """Names that would close the script element or run code come back from the page's JSON unchanged, and the
    page's HTML holds them nowhere outside the JSON (escaped there: no '<' at all)."""
    nasty = {
        "subject": "sub-\"quoted'</script><script>alert(2)</script>",
        "values": {"<b>CSA</b>": "1 & 2 \u2028 </SCRIPT>"},
        "cmdline": "nnspine csa -i '" + HOSTILE + "'",
    }
    add_entry(tmp_path, _entry(HOSTILE, **nasty))
    html = (tmp_path / "index.html").read_text()
    data = _page_data(tmp_path / "index.html")
    (entry,) = data["entries"]
    assert entry["file"] == HOSTILE and entry["subject"] == nasty["subject"]
    assert entry["values"] == nasty["values"] and entry["cmdline"] == nasty["cmdline"]
    embedded = re.search(r'id="qc-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in embedded and ">" not in embedded
    assert html.count("<script") == 2  # the data element and the page's own script, nothing injected
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in html  # the script builds the page with textContent / createElement only


def test_rebuild_after_deleting_keeps_report_id(tmp_path):
    """Deleting an entry's JSON and rebuilding drops it from the page; the report id (the marks' key) stays."""
    add_entries(tmp_path, [_entry("sub-01_T2w.nii.gz"), _entry("sub-02_T2w.nii.gz")])
    rid = (tmp_path / "report_id").read_text()
    first = next(p for p in (tmp_path / "entries").glob("*.json") if "sub-01" in p.read_text())
    first.unlink()
    rebuild_report(tmp_path)
    data = _page_data(tmp_path / "index.html")
    assert [e["file"] for e in data["entries"]] == ["sub-02_T2w.nii.gz"]
    assert data["report_id"] == rid.strip() and len(read_entries(tmp_path)) == 1


def test_rebuild_refuses_a_folder_without_report(tmp_path):
    r = subprocess.run(["nnspine", "qc", "report", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "not a QC report folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "index.html").exists()


def test_same_colour_per_label_id_across_entries():
    """Vertebra 22 is drawn in the same colour whether it is alone or the third of three vertebrae."""
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    lut = label_colours("instances")
    alone = np.zeros((20, 40, 5), np.uint8)
    alone[5:15, 10:20, :] = 22
    several = np.zeros((20, 40, 5), np.uint8)
    several[5:15, 0:8, :], several[5:15, 10:20, :], several[5:15, 22:30, :] = 20, 22, 21
    colours = []
    for mask in (alone, several):
        bg, ov = sagittal_picture(mask, affine, lut)
        changed = np.any(bg != ov, axis=-1)
        colours.append({tuple(c) for c in ov[changed]})
    assert colours[0] <= colours[1]  # every colour of vertebra 22 alone also appears with its neighbours
    assert len(colours[0]) == 1


def test_axial_mosaic_fixed_size_and_overlay_only_on_labels():
    """Two masks of different grids give pictures of one size; the overlay differs from the background only
    where labels are drawn (a 3-voxel lesion: few pixels changed)."""
    small = np.zeros((30, 30, 10), np.uint8)
    small[14:17, 14:17, 3:7] = 1
    big = np.zeros((60, 50, 40), np.uint8)
    big[20:40, 20:30, 5:35] = 1
    bg1, ov1 = axial_mosaic(small, np.diag([0.5, 0.5, 2.0, 1.0]), label_colours("cord"))
    bg2, ov2 = axial_mosaic(big, np.diag([1.0, 1.0, 1.0, 1.0]), label_colours("cord"))
    assert bg1.shape == bg2.shape == ov1.shape == ov2.shape
    changed = np.any(bg1 != ov1, axis=-1)
    # 4 slices, each a square of 3 voxels × 0.5 mm = 1.5 mm; tiles show 40 mm in 96 px (2.4 px/mm): 3.6 px,
    # so 3 or 4 pixels a side after nearest-neighbour sampling
    assert 4 * 3 * 3 <= changed.sum() <= 4 * 4 * 4
    red = ov1[changed].astype(int)
    assert np.all(red[:, 0] > red[:, 1])  # drawn in red


# ------------------------------------------------------------------------------------------ the case lists
def test_reads_manual_correction_layout(tmp_path):
    """The layout of manual-correction's -config example (FILES_SEG / FILES_LESION / FILES_LABEL), plus
    subjects, sessions and a wildcard as sct_run_batch / manual-correction read them."""
    path = tmp_path / "qc_fail.yml"
    path.write_text(
        "FILES_SEG:\n- sub-001_T1w.nii.gz\n- sub-002/anat/sub-002_T2w.nii.gz\n"
        "FILES_LESION:\n- sub-003_*_T2w.nii.gz\n"
        "FILES_LABEL:\n- sub-004\n- sub-005/ses-02\n"
    )
    cases = read_case_list(path)
    assert cases.matches("pred/sub-001_T1w.nii.gz")
    assert cases.matches("x/sub-002_T2w_label-SC_seg.nii.gz") is False  # a mask's name is not its image's
    assert cases.matches("sub-002_T2w.nii.gz")
    assert cases.matches("sub-003_acq-ax_T2w.nii.gz") and not cases.matches("sub-003_T1w.nii.gz")
    assert cases.matches("bids/sub-004/anat/sub-004_T1w.nii.gz")
    assert cases.matches("sub-005_ses-02_T2w.nii.gz") and not cases.matches("sub-005_ses-01_T2w.nii.gz")
    assert not cases.matches("sub-0011_T1w.nii.gz")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("FILES_WHATEVER:\n- a.nii.gz\n", "unexpected key 'FILES_WHATEVER'"),
        ("FILES_SEG: sub-01_T2w.nii.gz\n", "FILES_SEG must be a list"),
        ("FILES_SEG:\n- 12\n", "must list path strings"),
        ("FILES_SEG:\n- {a: b}\n", "must list path strings"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "not valid YAML"),
        ("just a string\n", "expected a mapping"),
        ("FILES_SEG: [unclosed\n", "not valid YAML"),
    ],
)
def test_refuses_bad_case_lists(tmp_path, text, problem):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_case_list(path)
    message = str(info.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_empty_and_missing_case_lists(tmp_path):
    (tmp_path / "empty.yml").write_text("# nothing marked\n")
    assert read_case_list(tmp_path / "empty.yml").files == ()
    with pytest.raises(InputError, match="file not found"):
        read_case_list(tmp_path / "absent.yml")


@pytest.fixture(scope="module")
def two_lesion_subjects(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lesion2") / "bids"
    subprocess.run(["nnspine", "phantom", "--kind", "lesion", "-o", str(root), "--subjects", "2", "-q"], check=True)
    return root


def test_exclude_yml_skips_and_reports_the_case(tmp_path, two_lesion_subjects):
    """``evaluate lesions --exclude-yml`` leaves out the listed case (the CSV has the other one) and says so;
    the report built in the same run holds only the kept case."""
    root = two_lesion_subjects
    listed = tmp_path / "qc_fail.yml"
    listed.write_text('FILES_LESION:\n- "sub-01/anat/sub-01_T2w.nii.gz"\n')
    out = tmp_path / "metrics.csv"
    cmd = ["nnspine", "evaluate", "lesions", "--pred", str(root / "derivatives" / "prediction"),
           "--ref", str(root / "derivatives" / "labels"), "-o", str(out), "--exclude-yml", str(listed),
           "--qc-report", str(tmp_path / "qc"), "-q"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "skipped 1 case(s)" in r.stderr and "sub-01_T2w.nii.gz" in r.stderr
    import pandas as pd

    cases = set(pd.read_csv(out)["case"])
    assert "sub-02_T2w" in cases and "sub-01_T2w" not in cases
    data = _page_data(tmp_path / "qc" / "index.html")
    assert [e["file"] for e in data["entries"]] == ["sub-02/anat/sub-02_T2w.nii.gz"]
    include = tmp_path / "only.yml"
    include.write_text("- sub-01\n")
    out2 = tmp_path / "only.csv"
    cmd2 = cmd[:7] + ["-o", str(out2), "--include-yml", str(include), "-q"]
    r = subprocess.run(cmd2, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert set(pd.read_csv(out2)["case"]) >= {"sub-01_T2w"} and "sub-02_T2w" not in set(pd.read_csv(out2)["case"])


def test_bad_exclude_yml_is_one_line_and_writes_nothing(tmp_path, two_lesion_subjects):
    bad = tmp_path / "bad.yml"
    bad.write_text("FILES_SEG:\n- [nested]\n")
    out = tmp_path / "metrics.csv"
    r = subprocess.run(
        ["nnspine", "evaluate", "lesions", "--pred", str(two_lesion_subjects / "derivatives" / "prediction"),
         "--ref", str(two_lesion_subjects / "derivatives" / "labels"), "-o", str(out), "--exclude-yml", str(bad)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr
    assert not out.exists()


def test_segment_exclude_yml_leaves_out_cases_before_the_network_loads(tmp_path):
    """``segment --exclude-yml`` listing every case: one line naming the list, exit 2, nothing written (the
    filter runs before any checkpoint loads; the model here is an empty one that could not load)."""
    from test_segment import fake_model, image

    model = fake_model(tmp_path / "results", {"background": 0, "cord": 1})
    for sub in ("01", "02"):
        image(tmp_path / "bids" / f"sub-{sub}" / "anat" / f"sub-{sub}_T2w.nii.gz")
    listed = tmp_path / "qc_fail.yml"
    listed.write_text("FILES_SEG:\n- sub-01/anat/sub-01_T2w.nii.gz\n- sub-02_T2w.nii.gz\n")
    out = tmp_path / "seg"
    r = subprocess.run(
        ["nnspine", "segment", "cord", "-i", str(tmp_path / "bids"), "-o", str(out), "--model", str(model),
         "--device", "cpu", "--exclude-yml", str(listed), "--qc-report", str(tmp_path / "qc"), "-q"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and "every case is left out by" in r.stderr and str(listed) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists() and not (tmp_path / "qc").exists()


def test_fuse_adds_its_cases_with_the_vertebrae_named(tmp_path, files, spine5):  # noqa: F811 - the fixtures above
    """``fuse --qc-report``: one entry for the phantom (L1-L5 over a sacrum: its truth), under FILES_LABEL, a
    sagittal picture in which the five vertebrae have five colours."""
    assert test_fuse.fuse_cli(files, "--qc-report", str(tmp_path / "qc")) == 0
    (entry,) = read_entries(tmp_path / "qc")
    assert entry["command"] == "fuse" and entry["yml_key"] == "FILES_LABEL" and entry["plane"] == "sagittal"
    assert entry["file"] == "sub-01_T2w.nii.gz" and entry["subject"] == "sub-01"
    names = [v["name"] for v in spine5.truth["vertebrae"]]
    assert entry["values"]["vertebrae"] == f"{len(names)} ({', '.join(names)}, S)"  # S: the sacrum below L5
    from matplotlib.image import imread

    bg = imread(tmp_path / "qc" / entry["background"])[..., :3]
    ov = imread(tmp_path / "qc" / entry["overlay"])[..., :3]
    drawn = {tuple(np.round(c, 2)) for c in ov[np.any(bg != ov, axis=-1)]}
    assert len(drawn) >= len(names)


def test_segment_entries_from_a_finished_case(tmp_path, cord_phantom):
    """The entry ``segment cord`` adds for a finished case, from the files a run leaves (the phantom's cord mask
    as the result, its per-slice CSA table as ``nnspine csa --perslice`` writes it): the image-relative file, the
    model, and a mean CSA within the phantom's true CSA range (mm²)."""
    from types import SimpleNamespace

    from nnunet_spine.apps.qc_report import report_segment
    from nnunet_spine.apps.segment import SegmentReport
    from nnunet_spine.apps.segment_cases import Case

    root = Path(cord_phantom["root"])
    out = tmp_path / "seg"
    (out / "sub-01" / "anat").mkdir(parents=True)
    mask = next((root / "derivatives" / "labels").rglob("sub-01_T2w_label-SC_seg.nii.gz"))
    shutil.copy(mask, out / "sub-01" / "anat" / mask.name)
    table = out / "sub-01" / "anat" / "sub-01_T2w_csa_perslice.csv"
    subprocess.run(["nnspine", "csa", "-i", str(mask), "--perslice", "-o", str(table), "-q"], check=True)
    case = Case("sub-01_T2w", [root / "sub-01" / "anat" / "sub-01_T2w.nii.gz"], "sub-01/anat")
    report = SegmentReport(done=[("sub-01_T2w", "ok", 1.0, [])])
    model = SimpleNamespace(soft=False, folder=Path("/r/Dataset101_Cord/nnUNetTrainer__nnUNetPlans__3d_fullres"))
    report_segment(tmp_path / "qc", "cord", report, [case], root, out, model)
    (entry,) = read_entries(tmp_path / "qc")
    assert entry["file"] == "sub-01/anat/sub-01_T2w.nii.gz" and entry["command"] == "segment cord"
    assert entry["model"] == "Dataset101_Cord/nnUNetTrainer__nnUNetPlans__3d_fullres"
    truth = cord_phantom["subjects"]["sub-01"]["csa_per_level_mm2"].values()
    csa = float(entry["values"]["mean CSA over slices (mm²)"])
    assert min(truth) * 0.9 <= csa <= max(truth) * 1.1
