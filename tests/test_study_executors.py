"""The same study on Ray and through submitit's local executor, and a study killed mid-way (driver and a
worker, SIGKILL) that finishes on re-running with results bit-identical to an uninterrupted one.

Slow (each starts fresh Python processes); CI runs them (`.ci/run` installs ray and submitit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prunelab.cli.main import main
from prunelab.experiments.executors import InProcessExecutor
from prunelab.experiments.experiment_file import ExperimentFile
from prunelab.experiments.study import Study
from prunelab.masks import Mask
from prunelab.store import RunStore, load_tensors

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[1] / "src"

STUDY = """
grid:
  kind: prune
  preset: digits_lenet_300_100
  train: {steps: STEPS, eval_every: null, checkpoint_every: 4it}
  prune: {ignore: []}
  density: 0.1
  grid:
    prune.strategy: [magnitude, snip]
    density: [0.1, 0.3]
    seed: [1, 2]
"""


def study_file(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.replace("STEPS", steps))
    return path


def assert_same_runs(store: RunStore, reference: RunStore, run_ids: list[str]) -> None:
    for run_id in run_ids:
        run, expected = store.run(run_id), reference.run(run_id)
        assert run.summary()["test_accuracy"] == expected.summary()["test_accuracy"], run_id
        assert Mask.load(run.mask_path) == Mask.load(expected.mask_path)
        step = expected.summary()["final_step"]
        final, wanted = load_tensors(run.weights_path(step)), load_tensors(expected.weights_path(step))
        assert all(torch.equal(final[k], wanted[k]) for k in wanted), run_id


def reference(path: Path, home: Path, pack: int | str = "auto") -> tuple[RunStore, list[str]]:
    """The grid run in this process. A packed model equals one trained alone only within float tolerance
    (docs/training.md), so the reference packs as the executor under test does: ``auto`` packs the grid on
    one worker as on two (a model's packed arithmetic does not depend on its companions), ``1`` trains each
    trial alone as a Slurm job does."""
    store = RunStore(home)
    points = ExperimentFile(path).points("grid")
    assert Study(points, store).run(InProcessExecutor(), progress=False, pack=pack).ok
    return store, [p.trial.run_id for p in points]


def test_the_grid_on_a_local_ray_instance(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    path = study_file(tmp_path, "6it")
    expected, ids = reference(path, tmp_path / "reference")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(
            [
                "run",
                str(path),
                "grid",
                "--executor",
                "ray",
                "--ray-num-cpus",
                "1",
                "--home",
                str(tmp_path / "ray"),
                "--json",
                "--no-progress",
            ]
        )
    finally:
        ray.shutdown()
    assert code == 0
    assert [row["status"] for row in json.loads(capsys.readouterr().out)] == ["done"] * 8
    assert_same_runs(RunStore(tmp_path / "ray"), expected, ids)


def test_a_trial_through_submitits_local_executor(tmp_path, capsys):
    pytest.importorskip("submitit")
    path = study_file(tmp_path, "6it")
    expected, ids = reference(path, tmp_path / "reference", pack=1)
    home, logs = tmp_path / "slurm", tmp_path / "logs"
    code = main(
        [
            "run",
            str(path),
            "grid",
            "--seed=1",
            "--density=0.1",
            "--prune.strategy=snip",
            "--executor",
            "slurm",
            "--slurm-cluster",
            "local",
            "--slurm-time",
            "0:10:00",
            "--slurm-logs",
            str(logs),
            "--home",
            str(home),
            "--json",
        ]
    )
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "done" and row["run_id"] in ids
    assert_same_runs(RunStore(home), expected, [row["run_id"]])
    assert any(logs.rglob("*_log.out"))  # submitit's job logs


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_killed_study_finishes_only_the_missing_trials_bit_identically(tmp_path, capsys):
    # unpacked: two packed units of four finish together, leaving no moment with one trial finished and
    # another begun (packed runs resume bit for bit too: tests/test_packed.py)
    path = study_file(tmp_path, "48it")
    expected, ids = reference(path, tmp_path / "reference", pack=1)
    home = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prunelab",
            "run",
            str(path),
            "grid",
            "--workers",
            "2",
            "--pack",
            "1",
            "--home",
            str(home),
            "--no-progress",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = RunStore(home)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:  # wait for one finished trial and one with a checkpoint only
            finished = [rid for rid in ids if store.run(rid).finished]
            begun = [
                rid
                for rid in ids
                if not store.run(rid).finished
                and store.run(rid).checkpoints_dir.is_dir()
                and any(store.run(rid).checkpoints_dir.iterdir())
            ]
            if finished and begun and len(finished) < len(ids) - 1:
                break
            assert driver.poll() is None, "the study finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the study never reached a state worth killing")
        workers = _children(driver.pid)
        assert workers, "no worker processes"
        os.kill(workers[-1], signal.SIGKILL)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # whatever is left of the session
        except ProcessLookupError:
            pass
        driver.wait()
    stored_before = {rid for rid in ids if store.run(rid).finished}
    assert (
        main(
            ["run", str(path), "grid", "--workers", "2", "--pack", "1", "--home", str(home), "--json", "--no-progress"]
        )
        == 0
    )
    rows = {row["run_id"]: row["status"] for row in json.loads(capsys.readouterr().out)}
    assert {rid for rid, status in rows.items() if status == "stored"} == stored_before
    assert {rid for rid, status in rows.items() if status == "done"} == set(ids) - stored_before
    assert any(store.run(rid).summary()["resumed_from"] is not None for rid in set(ids) - stored_before)
    assert_same_runs(store, expected, ids)
