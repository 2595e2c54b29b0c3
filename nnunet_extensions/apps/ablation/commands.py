"""Running the console scripts of the ablation: output appended to one log, failures raised with its tail."""

from __future__ import annotations

import sys
from pathlib import Path

from nnunet_spine.apps.ablation.config import AblationConfig, budget_name


def script(name: str) -> str:
    exe = Path(sys.executable).parent
    return str(exe / name) if (exe / name).exists() else name


def run(cmd: list[str], env: dict, log: Path, ok: tuple[int, ...] = (0,)) -> int:
    """Run a console script, its output appended to ``log``; raise with the log's tail unless its exit code is in
    ``ok`` (``nnspine evaluate csa-variability`` exits 2 when it skipped a mask, e.g. an empty prediction)."""
    import subprocess

    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.run([script(cmd[0]), *cmd[1:]], env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if code not in ok:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"'{' '.join(cmd[:3])} …' failed (exit {code}); see {log}:\n{tail}")
    return code


def run_together(cmds: list[list[str]], env: dict, log: Path) -> None:
    """Run independent console scripts at the same time (e.g. the two phantoms on two cores); outputs appended to
    ``log`` one after the other; raise naming the first that failed."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"{i}.log" for i in range(len(cmds))]
        procs = []
        for cmd, out in zip(cmds, outs):
            with open(out, "w") as f:
                procs.append(subprocess.Popen([script(cmd[0]), *cmd[1:]], env=env, stdout=f, stderr=subprocess.STDOUT))
        codes = [p.wait() for p in procs]
        with open(log, "a") as f:
            for cmd, out in zip(cmds, outs):
                f.write(f"\n$ {' '.join(cmd)}\n{out.read_text()}")
    for cmd, code in zip(cmds, codes):
        if code != 0:
            raise RuntimeError(f"'{' '.join(cmd[:3])} …' failed (exit {code}); see {log}")


def environment(folder: Path, config: AblationConfig, budget: tuple[int, int] | None = None) -> dict:
    """nnU-Net folders inside ``folder`` (with a budget, its own ``nnUNet_results`` under ``budget_<EXI>/``), our
    trainers, small-machine settings, and the training budget (read by :mod:`nnunet_spine.trainers.budget`)."""
    from nnunet_spine.apps.demo import nnunet_environment

    env = nnunet_environment(folder)
    epochs, iterations = budget or (config.epochs, config.iterations)
    env.update(
        NNSPINE_EPOCHS=str(epochs),
        NNSPINE_ITERATIONS=str(iterations),
        NNSPINE_VAL_ITERATIONS=str(config.val_iterations),
        NNSPINE_NO_TTA="0" if config.tta else "1",
    )
    if budget is not None:
        results = folder / f"budget_{budget_name(budget)}" / "nnUNet_results"
        results.mkdir(parents=True, exist_ok=True)
        env["nnUNet_results"] = str(results)
    return env
