"""How lotteries live in the run store: results only grow (a shorter command never shrinks a lottery's
summary), work is never done twice (level 0 is the spec's train run, shared with ``prunelab train``
and with every lottery that differs only in pruning settings; a step a finished train run did not save
is recomputed, not the whole run), and no temporary or lock files are left behind. Tiny runs on digits."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from prunelab.analysis.report import collect_points
from prunelab.cli.main import main
from prunelab.experiments.lottery import run_lottery
from prunelab.experiments.results import filtered_results
from prunelab.experiments.train import run_train, train_run_id
from prunelab.experiments.trial import Trial
from prunelab.experiments.workbench import Workbench
from prunelab.specs import load_spec
from prunelab.store import RunStore
from prunelab.store.maintenance import collect_garbage

BASE = {"model.name": "lenet_32_16", "train.steps": "12it", "train.eval_every": "none", "train.progress": "false"}


def make_spec(**overrides):
    return load_spec("digits_lenet_300_100", overrides={**BASE, **overrides})


@pytest.fixture
def trainings(monkeypatch) -> list[tuple[str, int | None]]:
    """Every training call: (run id, the step it stops at, None for the end)."""
    calls: list[tuple[str, int | None]] = []
    original = Workbench.train

    def counting(self, model, run, **kwargs):
        calls.append((run.run_id if run is not None else "<memory>", kwargs.get("stop_step")))
        return original(self, model, run, **kwargs)

    monkeypatch.setattr(Workbench, "train", counting)
    return calls


def pointer(store: RunStore, lottery_id: str) -> str:
    return json.loads(store.run(lottery_id).stage_path.read_text())["stages"]["level_0"]


# results only grow ---------------------------------------------------------------------------------
def test_a_shorter_lottery_command_leaves_every_stored_level_and_control_in_the_summary(tmp_path, trainings, capsys):
    store = RunStore(tmp_path / "store")
    spec = make_spec()
    full = run_lottery(spec, 3, controls=("reinit",), store=store)
    trainings.clear()
    short = run_lottery(spec, 1, store=store)
    assert trainings == []
    assert [row["level"] for row in short["levels"]] == [0, 1, 2, 3]
    assert all("reinit" in row for row in short["levels"][1:]) and short["controls"] == ["reinit"]
    assert short["levels"] == full["levels"] and short["density"] == full["density"]
    assert store.run(full["run_id"]).summary()["levels"] == full["levels"]

    # what results, report and runs show: every level, the control at every pruned level
    table = filtered_results(store, kind="lottery")
    assert sorted((row["level"], row.get("control") or "") for row in table.rows) == [
        (0, ""),
        (1, ""),
        (1, "reinit"),
        (2, ""),
        (2, "reinit"),
        (3, ""),
        (3, "reinit"),
    ]
    points = collect_points([store.run(full["run_id"])])
    assert sorted(p["method"] for p in points) == ["IMP"] * 4 + ["IMP reinit"] * 3
    assert main(["runs", "--json", "--home", str(store.root)]) == 0
    rows = {row["run_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[full["run_id"]]["density"] == full["levels"][3]["density"]
    # a whole-lottery trial is stored only when each level asked for has each control asked for
    assert Trial("lottery", spec, levels=3, controls=("reinit",)).is_stored(store)
    assert not Trial("lottery", spec, levels=4, controls=("reinit",)).is_stored(store)
    assert not Trial("lottery", spec, levels=1, controls=("shuffle",)).is_stored(store)


def test_the_command_line_lottery_also_reports_what_is_stored_beyond_its_levels(tmp_path, capsys):
    home = tmp_path / "cli"
    argv = [
        "lottery",
        "--preset",
        "digits_lenet_300_100",
        "--model.name=lenet_32_16",
        "--train.steps=12it",
        "--train.eval_every=none",
        "--no-progress",
        "--json",
        "--workers",
        "1",
        "--home",
        str(home),
    ]
    assert main([*argv, "--levels", "2", "--controls", "reinit"]) == 0
    capsys.readouterr()
    assert main([*argv, "--levels", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    summary = summary[0] if isinstance(summary, list) else summary
    assert [row["level"] for row in summary["levels"]] == [0, 1, 2] and "reinit" in summary["levels"][2]


# work never done twice -----------------------------------------------------------------------------
def test_a_lottery_after_train_of_the_same_spec_trains_level_0_zero_times(tmp_path, trainings):
    store = RunStore(tmp_path / "store")
    spec = make_spec()
    dense = run_train(spec, store=store)
    assert [run_id for run_id, _ in trainings] == [dense["run_id"]]
    trainings.clear()
    lottery = run_lottery(spec, 2, store=store)
    assert [run_id for run_id, _ in trainings] == [f"{lottery['run_id']}/level_1", f"{lottery['run_id']}/level_2"]
    assert pointer(store, lottery["run_id"]) == dense["run_id"] == train_run_id(spec)
    row = lottery["levels"][0]
    assert (row["test_accuracy"], row["test_loss"], row["density"]) == (dense["test_accuracy"], dense["test_loss"], 1.0)
    assert not (store.run(lottery["run_id"]).path / "level_0").exists()
    # the lottery's level 0 is found under its name too (show, export, branch, verify go through find)
    assert store.find(f"{lottery['run_id']}/level_0").run_id == dense["run_id"]


def test_report_averages_lotteries_of_two_seeds_whose_level_0s_are_different_train_runs(tmp_path):
    store = RunStore(tmp_path / "store")
    runs = [store.run(run_lottery(make_spec().with_seed(seed), 1, store=store)["run_id"]) for seed in (1, 2)]
    assert pointer(store, runs[0].run_id) != pointer(store, runs[1].run_id)
    assert {p["method"] for p in collect_points(runs)} == {"IMP"}  # replicates, not "[config N]"


def test_lotteries_that_differ_only_in_pruning_settings_share_level_0(tmp_path, trainings):
    store = RunStore(tmp_path / "store")
    first = run_lottery(make_spec(), 1, store=store)
    trainings.clear()
    variants = [
        make_spec(**{"prune.fraction": 0.5}),
        make_spec(**{"prune.strategy": "random"}),
        make_spec(**{"prune.scope": "layerwise", "prune.ignore": []}),
    ]
    for spec in variants:
        other = run_lottery(spec, 1, controls=("shuffle",), store=store)
        assert other["run_id"] != first["run_id"]
        assert pointer(store, other["run_id"]) == pointer(store, first["run_id"])
        assert other["levels"][0] == first["levels"][0]
    assert all(run_id.startswith("lottery-") for run_id, _ in trainings), "level 0 was trained again"
    assert len(trainings) == 2 * len(variants)  # level 1 and its control, per lottery


def test_a_rewind_lottery_reuses_a_train_run_and_recomputes_only_the_missing_rewind_step(tmp_path, trainings):
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.rewind": "5it"})
    dense = run_train(spec, store=store)  # a plain train run: steps 0 and 12 saved, not 5
    assert dense["saved_steps"] == [0, 12]
    trainings.clear()
    lottery = run_lottery(spec, 1, store=store)
    train_id = dense["run_id"]
    # step 5 recomputed (5 iterations in the run's scratch directory), the run itself not retrained
    assert trainings == [(train_id, 5), (f"{lottery['run_id']}/level_1", None)]
    run = store.run(train_id)
    after = run.summary()
    assert after["saved_steps"] == [0, 5, 12]
    assert {k: v for k, v in after.items() if k != "saved_steps"} == {
        k: v for k, v in dense.items() if k != "saved_steps"
    }
    assert not run.more_steps_dir.exists() and not list(store.root.rglob("*.tmp"))
    # the recomputed step is what an uninterrupted training saves there
    reference_store = RunStore(tmp_path / "reference")
    reference = run_train(make_spec(**{"train.save_steps": ["5it"]}), store=reference_store)
    assert reference["run_id"] == train_id, "save steps are not part of a run's name"
    expected = load_file(str(reference_store.run(train_id).weights_path(5)))
    got = load_file(str(run.weights_path(5)))
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    final = load_file(str(reference_store.run(train_id).weights_path(12)))
    assert all(torch.equal(load_file(str(run.weights_path(12)))[k], final[k]) for k in final)
    # level 1 starts from exactly those weights, masked
    mask = load_file(str(store.run(f"{lottery['run_id']}/level_1").mask_path))
    start = load_file(str(store.run(f"{lottery['run_id']}/level_1").weights_path(5)))
    for key, value in expected.items():
        assert torch.equal(start[key], value * mask[key] if key in mask else value), key

    trainings.clear()  # another rewind lottery of the same spec: level 0 and its step 5 are stored
    run_lottery(make_spec(**{"prune.rewind": "5it", "prune.fraction": 0.5}), 1, store=store)
    assert [run_id for run_id, _ in trainings] == [
        f"lottery-{make_spec(**{'prune.rewind': '5it', 'prune.fraction': 0.5}).run_hash('lottery')}/level_1"
    ]


def test_a_rewind_lottery_trains_level_0_once_saving_its_rewind_step(tmp_path, trainings):
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.rewind": "5it"})
    lottery = run_lottery(spec, 1, store=store)
    train_id = train_run_id(spec)
    assert trainings == [(train_id, None), (f"{lottery['run_id']}/level_1", None)]
    assert store.run(train_id).summary()["saved_steps"] == [0, 5, 12]
    trainings.clear()
    assert run_train(spec, store=store)["run_id"] == train_id and trainings == []
    assert Trial("lottery", spec, level=0).is_stored(store)


# litter ----------------------------------------------------------------------------------------------
def _train_in_child(spec, root: str) -> None:
    os.setpgrp()
    run_train(spec, store=RunStore(root))
    os._exit(0)


def test_no_lock_or_temporary_file_is_left_after_runs_a_kill_and_a_re_run(tmp_path):
    store = RunStore(tmp_path / "store")
    run_lottery(make_spec(), 1, controls=("reinit",), store=store)
    run_train(make_spec(**{"seed": 3}), store=store)
    # a training killed while it holds its lock, in the middle of its run
    slow = make_spec(**{"seed": 4, "train.steps": "400it", "train.checkpoint_every": "5it"})
    child = multiprocessing.get_context("fork").Process(target=_train_in_child, args=(slow, str(store.root)))
    child.start()
    run = store.run(train_run_id(slow))
    deadline = time.monotonic() + 60
    while not (run.checkpoints_dir / "latest.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.join()
    assert not run.finished and store.lock_path(run.run_id).exists(), "the killed holder left its lock file"
    (run.checkpoints_dir / ".latest.safetensors.x1y2z3.tmp").write_bytes(b"partial")  # a write it was in
    assert run_train(slow, store=store)["final_step"] == 400  # the re-run resumes and finishes
    assert not list(store.root.rglob("*.tmp")) and not list(store.root.rglob(".tmp*"))
    assert not list(store.root.rglob("*.lock")), "lock files left behind"


def test_gc_removes_the_scratch_of_an_interrupted_recomputation(tmp_path):
    store = RunStore(tmp_path / "store")
    spec = make_spec()
    dense = run_train(spec, store=store)
    run = store.run(dense["run_id"])
    scratch = run.more_steps_dir / "checkpoints"
    scratch.mkdir(parents=True)
    (scratch / "latest.json").write_text("{}")  # as a killed recomputation of a step leaves it
    removals, _ = collect_garbage(store, older_than=3600)
    assert [r.what for r in removals] == ["interrupted recomputation"] and not run.more_steps_dir.exists()
    assert run.verified_summary() == dense


def test_a_study_with_train_and_a_rewind_lottery_of_one_spec_trains_the_dense_run_once(tmp_path, trainings):
    from prunelab.experiments.study import Study

    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.rewind": "5it"})
    study = Study(
        [
            Trial("train", spec),
            Trial("lottery", spec, levels=1),
            Trial("lottery", make_spec(**{"prune.rewind": "7it"}), levels=1),
        ],
        store,
    )
    assert study.run(progress=False).ok
    train_id = train_run_id(spec)
    assert [run_id for run_id, _ in trainings].count(train_id) == 1, "the rewind steps are saved while training"
    assert store.run(train_id).summary()["saved_steps"] == [0, 5, 7, 12]


def test_an_interrupted_recomputation_of_a_step_resumes_and_leaves_nothing_behind(tmp_path, monkeypatch, capfd):
    from prunelab.training.loop import TrainingLoop

    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"train.checkpoint_every": "2it"})
    dense = run_train(spec, store=store)
    original = TrainingLoop._save_checkpoint
    crash = {"armed": True}

    def save_then_crash(self, step):
        original(self, step)
        if crash["armed"] and self.checkpoint_dir.parent.name == ".more_steps" and step == 4:
            raise RuntimeError("simulated interruption")

    monkeypatch.setattr(TrainingLoop, "_save_checkpoint", save_then_crash)
    asked = make_spec(**{"train.checkpoint_every": "2it", "train.save_steps": ["7it"]})
    with pytest.raises(RuntimeError, match="simulated"):
        run_train(asked, store=store)
    run = store.run(dense["run_id"])
    assert run.verified_summary() == dense, "the finished run is untouched while its step is recomputed"
    assert (run.more_steps_dir / "checkpoints" / "latest.json").is_file()
    crash["armed"] = False
    capfd.readouterr()
    summary = run_train(asked, store=store)
    assert "resuming from the checkpoint at step 4/7" in capfd.readouterr().err
    assert summary["saved_steps"] == [0, 7, 12] and not run.more_steps_dir.exists()
    reference_store = RunStore(tmp_path / "reference")
    reference_store_run = reference_store.run(run_train(asked, store=reference_store)["run_id"])
    expected = load_file(str(reference_store_run.weights_path(7)))
    assert all(torch.equal(load_file(str(run.weights_path(7)))[k], v) for k, v in expected.items())
    assert not list(store.root.rglob("*.lock")) and not list(store.root.rglob("*.tmp"))


def test_a_study_reusing_a_stored_run_removes_the_lock_file_a_killed_process_left(tmp_path):
    from prunelab.experiments.study import Study

    store = RunStore(tmp_path / "store")
    spec = make_spec()
    dense = run_train(spec, store=store)
    stale = store.lock_path(dense["run_id"])
    stale.touch()  # killed after writing its summary, before unlocking: the kernel freed the lock, the file stays
    result = Study([Trial("train", spec)], store).run(progress=False)
    assert [o.status for o in result.outcomes] == ["stored"]
    assert not stale.exists()


def test_a_lottery_stored_with_its_own_level_0_keeps_using_it(tmp_path, trainings):
    import shutil

    store = RunStore(tmp_path / "store")
    spec = make_spec()
    first = run_lottery(spec, 1, store=store)
    lottery, train = store.run(first["run_id"]), store.run(pointer(store, first["run_id"]))
    shutil.move(train.path, lottery.path / "level_0")  # the layout before level 0 was the train run
    lottery.stage_path.unlink()
    trainings.clear()
    second = run_lottery(spec, 2, store=store)
    assert trainings == [(f"{first['run_id']}/level_2", None)]
    assert [row["test_accuracy"] for row in second["levels"][:2]] == [row["test_accuracy"] for row in first["levels"]]
    assert not train.path.exists() and not lottery.stage_path.exists()


def test_a_recomputation_resumed_past_a_step_now_wanted_starts_over(tmp_path):
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"train.checkpoint_every": "2it"})
    run = store.run(run_train(spec, store=store)["run_id"])
    # a killed attempt at step 10 left a scratch checkpoint at step 8; step 3 is asked for now, with step 10
    bench = Workbench.from_spec(spec)
    scratch = type(run)(run.more_steps_dir, run.run_id)
    bench.train(bench.new_model(), scratch, save_steps=(10,), stop_step=8)
    summary = run_train(
        make_spec(**{"train.checkpoint_every": "2it", "train.save_steps": ["3it", "10it"]}), store=store
    )
    assert summary["saved_steps"] == [0, 3, 10, 12] and not run.more_steps_dir.exists()
    reference = RunStore(tmp_path / "reference")
    expected = reference.run(run_train(make_spec(**{"train.save_steps": ["3it", "10it"]}), store=reference)["run_id"])
    for step in (3, 10):
        want = load_file(str(expected.weights_path(step)))
        assert all(torch.equal(load_file(str(run.weights_path(step)))[k], v) for k, v in want.items()), step
