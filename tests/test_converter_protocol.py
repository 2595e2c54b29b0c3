"""The converter protocol (nnunet_spine.dataset_converters.protocol): one signature, CLI defaults read from the library,
the output root checked once, all-or-nothing writing, and subject-grouped splits that nnU-Net's planner picks up."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
from pathlib import Path

import pytest

from nnunet_spine.dataset_converters import defaults
from nnunet_spine.dataset_converters.splits import SPLITS_FILE, SPLITS_KEY, grouped_folds

CONVERTERS = ("softgt", "lesion", "spineps", "spider", "cutouts", "landmarks")
#: The protocol's keyword-only parameters and defaults (None: required or converter-specific default allowed).
PROTOCOL = {
    "nnunet_dataset": None,
    "name": None,
    "raw_root": None,
    "overwrite": False,
    "jobs": defaults.JOBS,
    "progress": False,
}
#: CLI dest → convert() parameter, where the names differ.
CLI_TO_PARAM = {"spacing": "spacing_mm", "input": "source"}


def _convert(module: str):
    return importlib.import_module(f"dataset_converters.{module}").convert


@pytest.mark.parametrize("module", CONVERTERS)
def test_every_converter_has_the_protocol_signature(module):
    params = inspect.signature(_convert(module)).parameters
    first, *rest = params.values()
    assert first.name == "source" and first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), module
    names = [p.name for p in rest]
    assert names[: len(PROTOCOL)] == list(PROTOCOL), module  # the protocol's options first, in one order
    for name, default in PROTOCOL.items():
        if name in ("nnunet_dataset", "name"):
            # required, except for softgt, whose nnU-Net dataset is optional (it always writes BIDS derivatives)
            assert params[name].default is (None if module == "softgt" else inspect.Parameter.empty), (module, name)
        else:
            assert params[name].default == default, (module, name)


def _subparser(command: str):
    from nnunet_spine.cli import build_parser

    def children(parser):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                return action.choices
        return {}

    return children(children(build_parser())["convert"])[command]


@pytest.mark.parametrize("module", CONVERTERS)
def test_cli_defaults_are_the_library_defaults(module):
    params = inspect.signature(_convert(module)).parameters
    compared = 0
    for action in _subparser(module)._actions:
        param = params.get(CLI_TO_PARAM.get(action.dest, action.dest))
        if param is None or param.default is inspect.Parameter.empty or action.dest in ("input",):
            continue
        cli, lib = action.default, param.default
        if isinstance(lib, tuple) and isinstance(cli, list):
            cli = tuple(cli)
        assert cli == lib, f"convert {module} --{action.dest}: CLI default {cli!r}, library default {lib!r}"
        compared += 1
    assert compared >= 4  # the protocol's options at least


@pytest.mark.parametrize("module", CONVERTERS)
def test_uncreatable_nnunet_raw_is_one_line_exit_2(module, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    source = tmp_path / "source"
    source.mkdir()
    extra = {"softgt": ["--derivatives-out", str(tmp_path / "d")], "lesion": ["--channels", "T2w"]}.get(module, [])
    cmd = ["nnspine", "convert", module, "-i", str(source), "--nnunet-dataset", "7", "--name", "X", *extra]
    env = {**os.environ, "nnUNet_raw": str(a_file / "raw")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{a_file / 'raw'}: cannot create the nnU-Net raw folder" in proc.stderr and "is a file" in proc.stderr
    assert not (a_file.parent / "raw").exists()


# ------------------------------------------------------------------------------------------------ folds
def test_grouped_folds_on_a_hand_case():
    subjects = {"sub-01": 3, "sub-02": 1, "sub-03": 2, "sub-04": 2, "sub-05": 1, "sub-06": 1, "sub-07": 2}
    cases = {f"{s}_c{k}": s for s, n in subjects.items() for k in range(n)}
    folds = grouped_folds(cases)
    assert len(folds) == 5
    vals = [set(f["val"]) for f in folds]
    assert sorted(c for v in vals for c in v) == sorted(cases)  # every case in exactly one validation fold
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == set(cases) and not set(f["train"]) & set(f["val"])
        assert {cases[c] for c in f["train"]}.isdisjoint({cases[c] for c in f["val"]})
        assert f["train"] == sorted(f["train"]) and f["val"] == sorted(f["val"])
    assert max(map(len, vals)) - min(map(len, vals)) <= 2  # balanced by cases (12 cases, subjects of 1-3)
    # fewer subjects than folds: one fold per subject; one subject: no split
    assert len(grouped_folds({"a1": "a", "a2": "a", "b1": "b"})) == 2
    assert grouped_folds({"a1": "a", "a2": "a"}) == []


def test_folds_depend_on_subjects_not_on_case_names():
    subjects = [f"sub-{i:02d}" for i in range(1, 9)]
    t1 = grouped_folds({f"{s}_T1w": s for s in subjects})
    t2 = grouped_folds({f"{s}_ses-1_T2w": s for s in subjects})
    assert [sorted(c.split("_")[0] for c in f["val"]) for f in t1] == [
        sorted(c.split("_")[0] for c in f["val"]) for f in t2
    ]


def _val_subjects(folder: Path) -> list[set[str]]:
    folds = json.loads((folder / SPLITS_FILE).read_text())
    return [{c.split("_")[0] for c in f["val"]} for f in folds]


def _check_grouped(folder: Path, n_subjects: int) -> list[dict]:
    folds = json.loads((folder / SPLITS_FILE).read_text())
    cases = sorted(p.name[: -len(".nii.gz")] for p in (folder / "labelsTr").glob("*.nii.gz"))
    assert len(folds) == min(5, n_subjects)
    assert sorted(c for f in folds for c in f["val"]) == cases
    for f in folds:
        train_subjects = {c.split("_")[0] for c in f["train"]}
        val_subjects = {c.split("_")[0] for c in f["val"]}
        assert train_subjects.isdisjoint(val_subjects) and sorted(f["train"] + f["val"]) == cases
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds[SPLITS_KEY]["folds"] == len(folds) and ds[SPLITS_KEY]["grouped_by"] == "subject"
    return folds


def test_softgt_splits_keep_each_subjects_contrasts_together(tmp_path):
    from nnunet_spine.dataset_converters.softgt import convert
    from nnunet_spine.phantoms.cord_dataset import write_cord_dataset

    write_cord_dataset(tmp_path / "bids", n_subjects=3, seed=3)
    report = convert(
        tmp_path / "bids",
        derivatives_out=tmp_path / "d",
        nnunet_dataset=961,
        name="S",
        raw_root=tmp_path / "raw",
        jobs=2,
    )
    folds = _check_grouped(tmp_path / "raw" / "Dataset961_S", 3)
    assert all(len(f["val"]) == 5 for f in folds)  # 5 contrasts of one subject per validation fold
    assert report.splits.status == "written" and report.splits.n_folds == 3
    assert "only 3 subjects, so 3 folds instead of 5" in "\n".join(report.lines())


def test_cutout_splits_keep_every_copy_of_a_subject_together_and_a_user_split_is_kept(tmp_path):
    from nnunet_spine.dataset_converters.cutouts import convert
    from nnunet_spine.phantoms.spine_dataset import write_spine_dataset

    write_spine_dataset(tmp_path / "bids", n_subjects=2, n_vertebrae=3, seed=0)
    size, spacing = (48, 64, 32), (1.5, 1.5, 2.0)
    kwargs = dict(nnunet_dataset=962, name="C", raw_root=tmp_path / "raw", shifts=1, size=size, spacing_mm=spacing)
    report = convert(tmp_path / "bids", **kwargs)
    folder = tmp_path / "raw" / "Dataset962_C"
    folds = _check_grouped(folder, 2)
    assert [len(f["val"]) for f in folds] == [6, 6]  # 3 vertebrae x (cutout + 1 shifted copy)
    assert report.splits.status == "written"
    # re-converting replaces a split nnspine wrote ...
    before = (folder / SPLITS_FILE).read_text()
    again = convert(tmp_path / "bids", overwrite=True, **kwargs)
    assert again.splits.status == "written" and (folder / SPLITS_FILE).read_text() == before
    # ... and never a user's split
    user = [{"train": sorted(f["train"] + f["val"][:1]), "val": f["val"][1:]} for f in folds]
    (folder / SPLITS_FILE).write_text(json.dumps(user))
    kept = convert(tmp_path / "bids", overwrite=True, **kwargs)
    assert json.loads((folder / SPLITS_FILE).read_text()) == user
    assert kept.splits.status == "kept" and SPLITS_KEY not in json.loads((folder / "dataset.json").read_text())
    assert any("in no validation fold" in p for p in kept.splits.problems)


def test_lesion_datasets_of_one_cohort_share_their_folds(tmp_path):
    from nnunet_spine.dataset_converters.lesion import convert
    from nnunet_spine.phantoms.lesion import write_lesion_dataset

    write_lesion_dataset(tmp_path / "bids", n_subjects=3, seed=5)
    for dataset_id, channels in ((963, "T2w"), (964, "T1w"), (965, "T1w,T2w")):
        convert(tmp_path / "bids", nnunet_dataset=dataset_id, name="L", raw_root=tmp_path / "raw", channels=channels)
    folders = sorted((tmp_path / "raw").glob("Dataset96*_L"))
    assert len(folders) == 3
    assert _val_subjects(folders[0]) == _val_subjects(folders[1]) == _val_subjects(folders[2])
    cases = [json.loads((f / SPLITS_FILE).read_text())[0]["val"] for f in folders]
    assert cases[0] != cases[1]  # other case names (sub-XX_T2w vs sub-XX_T1w), the same subjects


@pytest.mark.slow
def test_nnunet_planner_copies_our_split_to_preprocessed(tmp_path):
    """nnU-Net 2.8's planner copies the raw split to nnUNet_preprocessed, where nnUNetTrainer.do_split reads it."""
    from nnunet_spine.dataset_converters.lesion import convert
    from nnunet_spine.phantoms.lesion import write_lesion_dataset

    write_lesion_dataset(tmp_path / "bids", n_subjects=2, seed=1)
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    convert(tmp_path / "bids", nnunet_dataset=966, name="Plan", raw_root=raw, channels="T2w")
    env = {
        **os.environ,
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(pre),
        "nnUNet_results": str(tmp_path / "res"),
        "nnUNet_n_proc_DA": "1",
    }
    proc = subprocess.run(
        [
            "nnUNetv2_plan_and_preprocess",
            "-d",
            "966",
            "-c",
            "3d_fullres",
            "-np",
            "1",
            "-npfp",
            "1",
            "--no_pp",
            "-gpu_memory_target",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    copied = json.loads((pre / "Dataset966_Plan" / SPLITS_FILE).read_text())
    assert copied == json.loads((raw / "Dataset966_Plan" / SPLITS_FILE).read_text())


# ----------------------------------------------------------------------------------- all-or-nothing
def test_a_failing_rename_leaves_the_old_dataset_intact(tmp_path, monkeypatch):
    from nnunet_spine.dataset_converters import nnunet_raw

    folder = tmp_path / "Dataset001_X"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "imagesTr" / "old_0000.nii.gz").write_text("old image")
    (folder / "labelsTr").mkdir()
    (folder / "labelsTr" / "old.nii.gz").write_text("old label")
    (folder / "dataset.json").write_text("old json")
    (folder / "imagesTs").mkdir()  # not written by the conversion: kept in any case
    original = Path.rename
    calls = {"n": 0}

    def failing_rename(self, target):
        if ".staging-" in str(self):  # a new entry moving in: the second one fails
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return original(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        with nnunet_raw.staged_dataset(folder, overwrite=True) as stage:
            for sub in ("imagesTr", "labelsTr"):
                (stage / sub).mkdir()
                (stage / sub / "new.nii.gz").write_text("new")
            (stage / "dataset.json").write_text("new json")
    monkeypatch.setattr(Path, "rename", original)
    assert calls["n"] == 2
    assert (folder / "dataset.json").read_text() == "old json"
    assert [p.name for p in (folder / "imagesTr").iterdir()] == ["old_0000.nii.gz"]
    assert [p.name for p in (folder / "labelsTr").iterdir()] == ["old.nii.gz"]
    assert (folder / "imagesTs").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset001_X"]  # no staging or trash folder left
