"""Studies: prerequisites run first, failures are reported and skip only what needs them, stored trials are
reused, worker processes give the same runs as one process, results average the seeds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

from prunelab.cli.main import main
from prunelab.experiments.executors import InProcessExecutor, LocalExecutor, make_executor
from prunelab.experiments.experiment_file import ExperimentFile
from prunelab.experiments.study import Study
from prunelab.experiments.trial import Trial
from prunelab.masks import Mask
from prunelab.store import RunStore, load_tensors

STUDY = """
grid:
  kind: prune
  preset: digits_lenet_300_100
  train: {steps: 6it, eval_every: null, checkpoint_every: 3it}
  prune: {ignore: []}
  density: 0.1
  grid:
    prune.strategy: [magnitude, snip]
    density: [0.1, 0.3]
    seed: [1, 2]
lottery:
  kind: lottery
  preset: digits_lenet_300_100
  train: {steps: 4it, eval_every: null}
  levels: 2
  controls: [reinit]
broken_lottery:
  extends: lottery
  prune: {strategy: snip}
diverging_lottery:
  extends: lottery
  train: {lr: 1.0e+9}
diverging_grid:
  extends: diverging_lottery
  grid:
    seed: [1, 2]
"""


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    return path


def test_a_lottery_runs_its_levels_in_order_and_its_controls_after_their_level(study_file, home):
    store = RunStore(home)
    study = Study(ExperimentFile(study_file).points("lottery"), store)
    ids = list(study.entries)
    base, dense = ids[-1], ids[0]
    assert dense.startswith("train-")  # level 0 is the spec's train run
    assert ids == [
        dense,
        f"{base}/level_1",
        f"{base}/level_2",
        f"{base}/level_1/reinit",
        f"{base}/level_2/reinit",
        base,
    ]
    assert study.width() == 2  # level 2 and level 1's control can run together
    result = study.run(InProcessExecutor(), progress=False)
    assert result.ok and [o.status for o in result.outcomes] == ["done"] * 6
    summary = store.run(base).summary()
    assert [row["level"] for row in summary["levels"]] == [0, 1, 2] and "reinit" in summary["levels"][2]
    again = Study(ExperimentFile(study_file).points("lottery"), store).run(InProcessExecutor(), progress=False)
    assert [o.status for o in again.outcomes] == ["stored"] * 6


def test_a_failed_trial_is_reported_its_dependents_skipped_and_the_others_run(study_file, home, capsys):
    store = RunStore(home)
    points = ExperimentFile(study_file).points("diverging_lottery") + ExperimentFile(study_file).points("grid")[:2]
    result = Study(points, store).run(InProcessExecutor(), progress=True)
    status = {o.run_id: o.status for o in result.outcomes}
    lottery = points[0].trial.run_id
    dense = Trial("train", points[0].trial.spec).run_id  # the lottery's level 0
    assert status[dense] == "failed"
    assert {status[rid] for rid in status if rid.startswith(lottery)} == {"skipped"}
    assert [status[p.trial.run_id] for p in points[1:]] == ["done", "done"]
    failed = next(o for o in result.outcomes if o.status == "failed")
    assert failed.error.startswith("TrainingDiverged: training diverged") and "\n" not in failed.error
    assert failed.user_error and failed.message.startswith("training diverged")
    err = capsys.readouterr().err
    assert f"FAILED {dense}" in err and "done 2 · running 0 · failed 6 · left 0" in err
    assert not result.ok and result.count("skipped") == 5


def test_the_command_exits_non_zero_when_a_trial_failed(study_file, home, capsys):
    assert main(["run", str(study_file), "diverging_grid", "--workers", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "skipped" in out and "12 trials: 2 failed, 10 skipped" in out


def _runs_in(home: Path) -> list[str]:
    return sorted(p.name for p in Path(home).iterdir() if not p.name.startswith(".")) if Path(home).is_dir() else []


def test_a_bad_trial_fails_the_study_before_anything_runs(study_file, home, capsys):
    """The snip lottery is refused by the checks of every pending trial, before level 0 trains."""
    assert main(["run", str(study_file), "broken_lottery", "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prunelab: error: strategy 'snip' scores with training data") and err.count("\n") == 1
    assert not _runs_in(home)


def test_one_lottery_that_diverges_is_one_error_line_and_leaves_no_run(study_file, home, capsys):
    assert main(["run", str(study_file), "diverging_lottery", "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("prunelab: error:"))
    assert ": training diverged" in line and "Lower train.lr" in line and "Traceback" not in err
    assert "FAILED" not in err and "SKIPPED" not in err
    assert not _runs_in(home)


def test_one_worker_runs_in_this_process_and_a_single_trial_never_starts_workers():
    assert isinstance(make_executor("local", workers=1), InProcessExecutor)
    assert isinstance(make_executor("local", parallel=1), InProcessExecutor)
    local = make_executor("local", workers=2)
    assert isinstance(local, LocalExecutor) and local.threads >= 1 and local.capacity == 2


@pytest.mark.slow
def test_a_grid_on_two_worker_processes_equals_the_grid_in_one_process(study_file, tmp_path, capsys):
    """8 trials on two spawned workers: the same runs, bit for bit, as one process trains them."""
    outcomes = {}
    for workers in ("2", "1"):
        home = tmp_path / f"home-{workers}"
        assert main(["run", str(study_file), "grid", "--workers", workers, "--home", str(home), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [row["status"] for row in rows] == ["done"] * 8
        outcomes[workers] = {row["run_id"]: row for row in rows}
    assert outcomes["2"].keys() == outcomes["1"].keys()
    for run_id in outcomes["1"]:
        parallel, serial = (RunStore(tmp_path / f"home-{w}").run(run_id) for w in ("2", "1"))
        assert parallel.summary()["test_accuracy"] == serial.summary()["test_accuracy"]
        assert Mask.load(parallel.mask_path) == Mask.load(serial.mask_path)
        final, expected = load_tensors(parallel.weights_path(6)), load_tensors(serial.weights_path(6))
        assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)
    assert sorted(p.name for p in (tmp_path / "home-2" / ".logs").iterdir())[0].endswith(".log")


def test_results_average_the_seeds_of_each_grid_point(study_file, home, capsys):
    assert main(["results", str(study_file), "grid"]) == 1
    assert "none of its 8 trials has finished" in capsys.readouterr().err
    points = ExperimentFile(study_file).points("grid")
    store = RunStore(home)
    Study(points[:4], store).run(InProcessExecutor(), progress=False)  # magnitude at both densities, both seeds
    assert main(["results", str(study_file), "grid", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["keys"] == ["prune.strategy", "density"] and (table["found"], table["total"]) == (4, 8)
    assert [(row["prune.strategy"], row["density"], row["seeds"]) for row in table["rows"]] == [
        ("magnitude", 0.1, 2),
        ("magnitude", 0.3, 2),
    ]
    for row in table["rows"]:
        accuracies = [
            store.run(p.trial.run_id).summary()["test_accuracy"]
            for p in points[:4]
            if p.values["density"] == row["density"]
        ]
        assert row["mean_accuracy"] == pytest.approx(statistics.fmean(accuracies))
        assert row["std_accuracy"] == pytest.approx(statistics.stdev(accuracies))
        assert row["kept_fraction"] == pytest.approx(row["density"], abs=1e-3)  # every layer pruned to d
    assert main(["results", "--kind", "prune", "--where", "prune.strategy=magnitude", "--where", "density=0.3"]) == 0
    out = capsys.readouterr().out
    assert " ± " in out and out.count("\n") == 3  # one group of two seeds: header, rule, row
    assert main(["results", "--kind", "prune", "--where", "prune.strategy=synflow"]) == 1
    assert "no finished runs match --kind prune --where prune.strategy=synflow" in capsys.readouterr().err


def test_a_worker_whose_driver_is_gone_exits_at_once():
    """A local worker arms PR_SET_PDEATHSIG when it starts; if the driver died before that, the signal
    would never come, so the worker checks its parent and leaves."""
    import subprocess
    import sys

    code = "from prunelab.experiments.executors.local import _die_with_parent; _die_with_parent(1); print('stayed')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "stayed" not in done.stdout
    same = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from prunelab.experiments.executors.local import "
            "_die_with_parent; _die_with_parent(os.getppid()); print('stayed')",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert same.returncode == 0 and "stayed" in same.stdout
