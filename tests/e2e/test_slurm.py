"""docs/segment.md's SLURM job array, on a real one-node SLURM cluster on this machine.

The test starts ``munged``, ``slurmctld`` and ``slurmd`` itself (as root, every file in a temporary folder, ports
chosen free), submits the docs' array script with ``sbatch --wait`` and stops the daemons afterwards. The script
is docs/segment.md's block (``<!-- docs-test: road slurm -->``) after the substitutions of :data:`SUBSTITUTIONS`
(paths into the temporary folder, 2 parts instead of 8, the CPU instead of a GPU, a tiny model), nothing else.

The model is a soft cord model trained here for 8 iterations (``nnUNetTrainerSoftSeg_debug``) on the toy dataset of
``tests/nnunet_helpers.py``; the cohort is a BIDS folder of three of its images. The union of the array's two
parts must equal a one-part run: the same cases, the soft masks voxel for voxel, the CSA tables row for row
(``Timestamp`` and ``Filename``, the output's own path, aside).

Skips, saying so, when SLURM or munge is not installed (``apt-get install slurm-wlm munge``), except under CI
(``CI`` set), where ``.ci/run`` installs them and a missing package fails.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from doc_blocks import road  # noqa: E402
from nnunet_helpers import (  # noqa: E402
    TOY_ID,
    TOY_NAME,
    console_script,
    make_toy_dataset,
    nnunet_env,
    plan_and_preprocess,
    preprocess_soft,
    run,
)

pytestmark = pytest.mark.slow

TRAINER = "nnUNetTrainerSoftSeg_debug"


def substitutions(tmp: Path) -> list[tuple[str, str]]:
    """(old, new) text replacements applied to the docs' block; each must apply."""
    return [
        ("#SBATCH --array=0-7", "#SBATCH --array=0-1"),
        ("#SBATCH --gres=gpu:1\n", ""),  # no GPU here
        ("#SBATCH --cpus-per-task=4", "#SBATCH --cpus-per-task=1"),
        ("#SBATCH --mem=16G", "#SBATCH --mem=2G"),
        ("/data/nnUNet_results", str(tmp / "nnUNet_results")),
        ("/data/cohort_bids", str(tmp / "cohort_bids")),
        ("/data/cohort_seg", str(tmp / "cohort_seg")),
        ("Dataset101_SoftCord/nnUNetTrainerSoftSeg__", f"{TOY_NAME}/{TRAINER}__"),
        ("--device cuda", "--device cpu"),
        ("--num-parts 8", "--num-parts 2"),
    ]


def _slurm_installed() -> bool:
    return all(shutil.which(x) for x in ("munged", "slurmctld", "slurmd", "sbatch", "sinfo"))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait(predicate, timeout: float, what: str, logs: list[Path]):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.5)
    text = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{text}")


def slurm_conf(d: Path, host: str, ports: list[int]) -> str:
    return f"""ClusterName=nnspinetest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.socket
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs={os.cpu_count() or 2} RealMemory=8000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm(tmp_path):
    """A one-node SLURM cluster (munged, slurmctld, slurmd) for this test; yields the environment that points
    SLURM's commands at it; stops the daemons it started."""
    if not _slurm_installed():
        if os.environ.get("CI"):
            pytest.fail("SLURM/munge missing under CI: .ci/run installs slurm-wlm and munge")
        pytest.skip("slurm-wlm and munge not installed (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    d = tmp_path / "slurm"
    (d / "state").mkdir(parents=True)
    (d / "spool").mkdir()
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(slurm_conf(d, host, _free_ports(2)))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs: list[subprocess.Popen] = []
    logs = [d / "munged.log", d / "slurmctld.log", d / "slurmd.log"]
    try:
        procs.append(
            subprocess.Popen(
                [
                    "munged",
                    "-F",
                    "--force",
                    f"--socket={d}/munge.socket",
                    f"--key-file={key}",
                    f"--pid-file={d}/munged.pid",
                    f"--log-file={d}/munged.log",
                    f"--seed-file={d}/munged.seed",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
        _wait(lambda: (d / "munge.socket").exists(), 30, "munged", logs)
        procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(conf)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip

        def idle() -> bool:
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        _wait(idle, 90, "the node to be idle in sinfo", logs)
        yield {"env": env, "dir": d, "logs": logs}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def train_toy_cord_model(base: Path) -> tuple[dict, Path]:
    """A soft cord model of 8 iterations on the toy dataset (real nnU-Net console scripts)."""
    env = nnunet_env(base, nnUNet_raw=str(base / "nnUNet_raw"), nnUNet_preprocessed=str(base / "pre"),
                     nnUNet_results=str(base / "nnUNet_results"))  # fmt: skip
    env["nnUNet_extTrainer"] = (
        run([console_script("nnspine"), "trainers", "--export"], env).stdout.split("=", 1)[1].strip().strip("'\"")
    )
    make_toy_dataset(env["nnUNet_raw"], n_cases=4)
    plan_and_preprocess(env, TOY_ID)
    preprocess_soft(env, TOY_ID)
    run([console_script("nnUNetv2_train"), str(TOY_ID), "3d_fullres", "all", "-tr", TRAINER, "-device", "cpu"], env)
    return env, Path(env["nnUNet_results"]) / TOY_NAME / f"{TRAINER}__nnUNetPlans__3d_fullres"


def csa_rows(path: Path) -> list[dict]:
    with path.open() as f:
        return [{k: v for k, v in r.items() if k not in ("Timestamp", "Filename")} for r in csv.DictReader(f)]


def test_docs_slurm_array_equals_a_one_part_run(tmp_path, slurm):
    import nibabel as nib

    blocks = road("slurm")
    assert [b.where.split(":")[0] for b in blocks] == ["docs/segment.md"]
    script = blocks[0].text
    for old, new in substitutions(tmp_path):
        assert old in script, f"docs/segment.md's SLURM block no longer has {old!r}: update the substitutions"
        script = script.replace(old, new)
    (tmp_path / "array.sh").write_text(script)

    env, model = train_toy_cord_model(tmp_path)
    cohort = tmp_path / "cohort_bids"
    for i, img in enumerate(sorted((Path(env["nnUNet_raw"]) / TOY_NAME / "imagesTr").glob("*.nii.gz"))[:3]):
        dst = cohort / f"sub-0{i + 1}" / "anat" / f"sub-0{i + 1}_T2w.nii.gz"
        dst.parent.mkdir(parents=True)
        shutil.copy(img, dst)

    job_env = {**env, **slurm["env"], "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    t0 = time.time()
    sub = subprocess.run(["sbatch", "--wait", "array.sh"], cwd=tmp_path, env=job_env, capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    outs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("slurm-*.out")))
    assert sub.returncode == 0, f"sbatch failed: {sub.stdout}{sub.stderr}\nscript:\n{script}\n{outs}"
    assert len(list(tmp_path.glob("slurm-*.out"))) == 2, outs  # both array tasks ran
    print(f"array of 2 parts: {time.time() - t0:.1f} s")

    seg = tmp_path / "cohort_seg"
    parts = [sorted(r["case"] for r in csv.DictReader((seg / f"segment_summary_part-{k}.csv").open())) for k in (0, 1)]
    assert parts == [["sub-01_T2w", "sub-03_T2w"], ["sub-02_T2w"]], outs  # nnU-Net's list[part::parts]

    whole = tmp_path / "whole"
    run([console_script("nnspine"), "segment", "cord", "-i", str(cohort), "-o", str(whole), "--model", str(model),
         "--device", "cpu", "-q"], env)  # fmt: skip
    cases = sorted(r["case"] for r in csv.DictReader((whole / "segment_summary.csv").open()) if r["status"] == "ok")
    assert cases == sorted(parts[0] + parts[1])
    for case in cases:
        sub_dir = Path(case.split("_")[0]) / "anat"
        a = nib.load(whole / sub_dir / f"{case}_label-SC_softseg.nii.gz")
        b = nib.load(seg / sub_dir / f"{case}_label-SC_softseg.nii.gz")
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)) and np.array_equal(a.affine, b.affine)
        assert np.asarray(a.dataobj).max() > 0
        assert csa_rows(whole / sub_dir / f"{case}_csa_perslice.csv") == csa_rows(
            seg / sub_dir / f"{case}_csa_perslice.csv"
        )
    assert not list(seg.glob("failures_part-*.csv")) or all(
        not list(csv.DictReader(p.open())) for p in seg.glob("failures_part-*.csv")
    )
