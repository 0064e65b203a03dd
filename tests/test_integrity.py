"""Store integrity: checksummed tensor files, damaged files named with a recovery that works, the
summary schema, a store that tolerates damage, ``verify``/``rm``/``gc``, lock files and temporary
files. The runs are tiny (digits, a 32-16 LeNet, 20 iterations) and called in-process."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from prunelab.cli.main import main
from prunelab.store import (
    DamagedFile,
    RunStore,
    atomic_save_tensors,
    load_tensor_file,
    load_tensors,
    summary_problems,
    verify_tensor_file,
)
from prunelab.store.integrity import DIGEST_KEY, INTEGRITY_KEY, owning_run, tensor_digest

TINY = [
    "--preset",
    "digits_lenet_300_100",
    "--model.name=lenet_32_16",
    "--train.steps=20it",
    "--train.eval_every=none",
    "--no-progress",
]
BRANCH = ["oneshot", "--prune-fraction", "0.5", "--prune-step", "20it"]  # scores the final weights, starts from step 0


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *argv):
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def header_length(path: Path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def flip_data_byte(path: Path, offset_from_end: int = 7) -> None:
    """Flip one bit in the tensor bytes (after the header), as bit rot or a bad copy would."""
    data = bytearray(path.read_bytes())
    position = len(data) - offset_from_end
    assert position >= 8 + header_length(path)
    data[position] ^= 0x10
    path.write_bytes(bytes(data))


def same_file(a: Path, b: Path) -> bool:
    """Same tensors and metadata (safetensors orders its metadata keys differently from run to run)."""
    (ta, ma), (tb, mb) = load_tensor_file(a), load_tensor_file(b)
    return ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def flip_header_text(path: Path, old: bytes, new: bytes) -> None:
    """Change header text of the same length: the header still parses, so only the checksum can tell."""
    assert len(old) == len(new)
    data = path.read_bytes()
    end = 8 + header_length(path)
    assert data.count(old, 0, end) == 1
    path.write_bytes(data[:end].replace(old, new) + data[end:])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with one finished tiny train run and a branch of it; tests copy it and damage the copy."""
    root = tmp_path_factory.mktemp("trained") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNELAB_HOME", str(root))
        assert main([*"train".split(), *TINY, "--json"]) == 0
    run_id = next(p.name for p in root.iterdir() if p.name.startswith("train-"))
    return root, run_id


@pytest.fixture
def store_copy(trained, home):
    root, run_id = trained
    shutil.copytree(root, home)
    return home, run_id


# checksums ------------------------------------------------------------------------------------------
def test_every_tensor_file_carries_a_checksum_of_metadata_index_and_bytes(tmp_path):
    path = tmp_path / "t.safetensors"
    tensors = {
        "b": torch.tensor([True, False, True]),
        "a": torch.arange(6.0).view(2, 3),
        "h": torch.ones(2, dtype=torch.bfloat16),
        "scalar": torch.tensor(7),
        "empty": torch.zeros(0, 3),
    }
    atomic_save_tensors(path, tensors, {"format": "x/1"})
    loaded, metadata = load_tensor_file(path)
    assert metadata == {"format": "x/1"}  # the integrity entries are the store's business
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items()) and verify_tensor_file(path) is True
    raw = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        stored = handle.metadata()
    assert stored[INTEGRITY_KEY] == "sha256/1" and stored[DIGEST_KEY] == tensor_digest(raw, stored)
    # the digest covers names, dtypes, shapes and the other metadata, not only the bytes
    assert tensor_digest({"a": torch.zeros(2)}, {}) != tensor_digest({"b": torch.zeros(2)}, {})
    assert tensor_digest({"a": torch.zeros(2)}, {}) != tensor_digest({"a": torch.zeros(2, 1)}, {})
    assert tensor_digest({"a": torch.zeros(2)}, {}) != tensor_digest({"a": torch.zeros(2, dtype=torch.float64)}, {})
    assert tensor_digest({"a": torch.zeros(2)}, {"k": "1"}) != tensor_digest({"a": torch.zeros(2)}, {"k": "2"})


def test_a_flipped_bit_anywhere_is_caught_and_names_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    atomic_save_tensors(path, {"w": torch.linspace(-1, 1, 50)}, {"format": "prunelab.weights/1", "step": "20"})
    good = path.read_bytes()
    flip_data_byte(path)
    with pytest.raises(DamagedFile, match=r"w\.safetensors: damaged \(checksum mismatch"):
        load_tensors(path)
    with pytest.raises(DamagedFile):
        verify_tensor_file(path)
    path.write_bytes(good)
    flip_header_text(path, b'"step":"20"', b'"step":"21"')  # parses, names another step
    with pytest.raises(DamagedFile, match="checksum mismatch"):
        load_tensors(path)
    path.write_bytes(good)
    flip_header_text(path, b"prunelab.sha256", b"prunelab.sha257")  # the record itself
    with pytest.raises(DamagedFile, match="checksum record is incomplete"):
        load_tensors(path)
    path.write_bytes(good[:-10])
    with pytest.raises(DamagedFile, match="not a readable safetensors file"):
        load_tensors(path)


def test_files_written_before_checksums_are_read_unverified(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file({"w": torch.ones(3)}, str(path), metadata={"format": "prunelab.mask/1"})
    assert verify_tensor_file(path) is False
    assert torch.equal(load_tensors(path)["w"], torch.ones(3))


def test_owning_run_and_recovery_advice(store_copy):
    home, run_id = store_copy
    weights = home / run_id / "weights" / "step_20.safetensors"
    assert owning_run(weights) == (home, run_id)
    advice = DamagedFile(weights, "damaged").advice
    assert f"prunelab rm {run_id}" in advice and "re-run the command" in advice
    checkpoint = home / run_id / "checkpoints" / "latest.safetensors"
    assert "has finished and does not need it: delete it" in DamagedFile(checkpoint, "x").advice
    (home / run_id / "summary.json").unlink()
    assert "skips it and resumes from the previous checkpoint" in DamagedFile(checkpoint, "x").advice
    assert owning_run(home / "elsewhere.safetensors") is None


# damaged weights of a finished run: a clear error, verify, and a recovery that works ------------------
def test_bit_flip_in_parent_weights_fails_branch_show_verify_and_rerun(capsys, store_copy):
    home, run_id = store_copy
    weights = home / run_id / "weights" / "step_0.safetensors"
    flip_data_byte(weights)
    code, _, err = cli(capsys, "branch", run_id, *BRANCH)
    assert code == 2 and "Traceback" not in err
    assert f"{weights}: damaged (checksum mismatch" in err and f"prunelab rm {run_id}" in err
    assert not any(p.name.startswith("branch-") for p in home.iterdir()), "nothing was trained from damaged weights"
    code, out, _ = cli(capsys, "verify")
    assert code == 1 and f"{weights}: damaged (checksum mismatch" in out and "1 problem(s) in 1 run(s)" in out
    assert f"prunelab rm {run_id}" in out
    code, out, _ = cli(capsys, "show", run_id)
    assert code == 0 and "status   damaged" in out and str(weights) in out
    code, _, err = cli(capsys, "train", *TINY)  # re-running the command does not hand out a damaged result
    assert code == 2 and str(weights) in err


def test_rm_and_rerun_restores_the_exact_result(capsys, store_copy, trained):
    home, run_id = store_copy
    clean = trained[0] / run_id
    reference = cli_json(capsys, "branch", run_id, *BRANCH)
    branch_weights = load_file(
        str(home / reference["run_id"] / "weights" / f"step_{reference['final_step']}.safetensors")
    )
    cli(capsys, "rm", reference["run_id"])
    final = home / run_id / "weights" / "step_20.safetensors"
    flip_data_byte(final)
    assert cli(capsys, "branch", run_id, *BRANCH)[0] == 2
    code, out, _ = cli(capsys, "rm", run_id)
    assert code == 0 and out.strip() == f"removed {run_id}" and not (home / run_id).exists()
    again = cli_json(capsys, "train", *TINY)
    assert again["run_id"] == run_id
    for name in ("step_0", "step_20"):
        assert same_file(home / run_id / "weights" / f"{name}.safetensors", clean / "weights" / f"{name}.safetensors")
    branched = cli_json(capsys, "branch", run_id, *BRANCH)
    assert branched["run_id"] == reference["run_id"] and branched["test_accuracy"] == reference["test_accuracy"]
    ours = load_file(str(home / branched["run_id"] / "weights" / f"step_{branched['final_step']}.safetensors"))
    assert all(torch.equal(ours[k], branch_weights[k]) for k in branch_weights)
    assert cli(capsys, "verify")[0] == 0


def test_deleted_weights_of_a_finished_run_are_damage_not_a_missing_step(capsys, store_copy):
    home, run_id = store_copy
    final = home / run_id / "weights" / "step_20.safetensors"
    final.unlink()
    code, _, err = cli(capsys, "branch", run_id, *BRANCH)
    assert code == 2 and f"{final}: missing, although run {run_id} finished with it" in err
    assert f"prunelab rm {run_id}" in err and "no weights saved" not in err
    code, out, _ = cli(capsys, "verify", run_id)
    assert code == 1 and f"{final}: missing" in out


def test_export_reads_through_the_same_checks(capsys, store_copy, trained, tmp_path):
    home, run_id = store_copy
    mask = home / run_id / "mask.safetensors"
    mask.unlink()  # lost, not "the run has no mask"
    code, _, err = cli(capsys, "export", run_id, "--out", tmp_path / "a")
    assert code == 2 and f"{mask}: missing, although run {run_id} finished with it" in err
    shutil.copy(trained[0] / run_id / "mask.safetensors", mask)
    weights = home / run_id / "weights" / "step_20.safetensors"
    flip_data_byte(weights)
    code, _, err = cli(capsys, "export", run_id, "--out", tmp_path / "b")
    assert code == 2 and f"{weights}: damaged (checksum mismatch" in err
    assert not (tmp_path / "b" / "export.json").exists()


def test_damaged_mask_of_a_lottery_stage_and_its_recovery(capsys, home):
    args = ["lottery", *TINY, "--levels", "1"]
    first = cli_json(capsys, *args)
    lottery = home / first["run_id"]
    dense = json.loads((lottery / "stage.json").read_text())["stages"]["level_0"]  # level 0: the spec's train run
    level0 = home / dense
    originals = {p: load_tensor_file(p) for p in level0.rglob("*.safetensors") if "checkpoints" not in p.parts}
    flip_data_byte(level0 / "mask.safetensors", offset_from_end=3)
    code, _, err = cli(capsys, *args)
    assert code == 2 and f"{level0 / 'mask.safetensors'}: damaged" in err
    assert f"prunelab rm {dense}" in err
    code, out, _ = cli(capsys, "verify", first["run_id"])  # a lottery's verify checks its level 0 too
    assert code == 1 and f"{dense}/mask.safetensors: damaged" in out
    code, out, _ = cli(capsys, "rm", f"{first['run_id']}/level_0")  # the pointer names the train run
    assert code == 0 and (lottery / "level_1" / "summary.json").is_file()
    second = cli_json(capsys, *args)
    strip = lambda rows: [{k: v for k, v in row.items() if k != "wall_seconds"} for row in rows]  # noqa: E731
    assert strip(second["levels"]) == strip(first["levels"])
    for path, (tensors, metadata) in originals.items():
        again, again_metadata = load_tensor_file(path)
        assert again_metadata == metadata and all(torch.equal(again[k], tensors[k]) for k in tensors)


# checkpoints: damaged generations fall back, a full disk keeps the last one ---------------------------
class Crash(RuntimeError):
    pass


def _train_until_crash(capsys, monkeypatch, crash_after: int):
    from prunelab.training.loop import TrainingLoop

    original = TrainingLoop._save_checkpoint

    def save_then_crash(self, step):
        original(self, step)
        if step == crash_after:
            raise Crash(f"killed after the checkpoint of step {crash_after}")

    monkeypatch.setattr(TrainingLoop, "_save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        main(["train", *TINY, "--train.checkpoint_every=5it"])
    monkeypatch.setattr(TrainingLoop, "_save_checkpoint", original)
    capsys.readouterr()


@pytest.mark.parametrize("damage", ["latest", "both"])
def test_damaged_checkpoint_falls_back_to_the_previous_one_or_the_start(capsys, monkeypatch, home, trained, damage):
    clean_root, run_id = trained
    _train_until_crash(capsys, monkeypatch, crash_after=15)
    checkpoints = home / run_id / "checkpoints"
    flip_data_byte(checkpoints / "latest.safetensors")
    if damage == "both":
        flip_data_byte(checkpoints / "previous.safetensors")
    code, out, err = cli(capsys, "train", *TINY, "--train.checkpoint_every=5it", "--json")
    assert code == 0, err
    assert f"checkpoint {checkpoints / 'latest.safetensors'} is damaged (checksum mismatch" in err
    summary = json.loads(out)
    if damage == "latest":
        assert summary["resumed_from"] == 10 and "resuming from the checkpoint at step 10" in err
    else:
        assert summary["resumed_from"] is None and "the run starts over" in err
    for step in (0, 20):  # bit-identical to the uninterrupted run
        name = f"weights/step_{step}.safetensors"
        assert same_file(home / run_id / name, clean_root / run_id / name)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest.json", "latest.safetensors"]


def test_a_final_checkpoint_save_cut_short_is_settled_on_the_next_run(capsys, monkeypatch, home, trained):
    import prunelab.training.checkpoint as checkpoint_module

    clean_root, run_id = trained
    real = checkpoint_module.atomic_write_json

    def die_before_the_last_sidecar(path, obj):
        if obj["step"] == 20:
            raise Crash("killed between the final tensor file and its sidecar")
        return real(path, obj)

    monkeypatch.setattr(checkpoint_module, "atomic_write_json", die_before_the_last_sidecar)
    with pytest.raises(Crash):
        main(["train", *TINY, "--train.checkpoint_every=5it"])
    monkeypatch.setattr(checkpoint_module, "atomic_write_json", real)
    checkpoints = home / run_id / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "latest.json",
        "latest.safetensors",
        "previous.json",
        "previous.safetensors",
    ]
    assert json.loads((checkpoints / "latest.json").read_text())["step"] == 15  # the sidecar of step 20 was lost
    summary = cli_json(capsys, "train", *TINY, "--train.checkpoint_every=5it")
    assert summary["resumed_from"] == 20
    # the files an uninterrupted run leaves: no previous generation, a sidecar naming the last step
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest.json", "latest.safetensors"]
    assert json.loads((checkpoints / "latest.json").read_text())["step"] == 20
    assert same_file(checkpoints / "latest.safetensors", clean_root / run_id / "checkpoints" / "latest.safetensors")


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(capsys, monkeypatch, home, trained):
    import errno

    import prunelab.store.atomic as atomic

    clean_root, run_id = trained
    real = atomic.save_file

    def disk_full_midway(tensors, filename, metadata=None):
        if Path(filename).name.startswith(".latest.safetensors.") and metadata.get("step") == "15":
            real(tensors, filename, metadata=metadata)
            with open(filename, "r+b") as handle:  # half of the file reached the disk
                handle.truncate(os.path.getsize(filename) // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(atomic, "save_file", disk_full_midway)
    code, _, err = cli(capsys, "train", *TINY, "--train.checkpoint_every=5it")
    monkeypatch.setattr(atomic, "save_file", real)
    assert code == 2 and "Traceback" not in err
    checkpoints = home / run_id / "checkpoints"
    assert f"could not write the checkpoint of step 15 to {checkpoints} (No space left on device)" in err
    assert "the last complete checkpoint is kept" in err
    from prunelab.training import load_checkpoint

    assert load_checkpoint(checkpoints).step == 10  # the previous generation, intact
    assert not list(checkpoints.glob("*.tmp"))
    summary = cli_json(capsys, "train", *TINY, "--train.checkpoint_every=5it")
    assert summary["resumed_from"] == 10
    name = "weights/step_20.safetensors"
    assert same_file(home / run_id / name, clean_root / run_id / name)


# summaries: one schema, and a store that tolerates a damaged one --------------------------------------
def test_summary_schema_on_write_and_read(store_copy):
    home, run_id = store_copy
    run = RunStore(home).run(run_id)
    good = run.summary()
    assert summary_problems(good) == []
    with pytest.raises(ValueError, match="density: Input should be less than or equal to 1"):
        run.write_summary({**good, "density": 1.5})
    with pytest.raises(ValueError, match="test_accuracy: Input should be a valid number"):
        run.write_summary({**good, "test_accuracy": "0.9"})
    assert summary_problems({**good, "kind": "lottery", "run_id": "lottery-x"}) == ["a lottery summary needs 'levels'"]
    assert summary_problems({**good, "kind": "lottery", "run_id": "lottery-x/level_1"}) == []  # a stage
    assert summary_problems({**good, "future_field": {"any": "thing"}}) == []  # kinds add their own fields
    assert run.summary() == good  # nothing was written
    for text, problem in (
        ("[1, 2]", "holds a list, not a JSON object"),
        ("{}", "lacks required keys"),
        ('{"run_id": ', "not valid JSON"),
    ):
        run.summary_path.write_text(text)
        with pytest.raises(DamagedFile, match=problem):
            run.summary()


@pytest.mark.parametrize("text", ["[1, 2]", "{}", "{not json", '{"run_id": "x", "kind": "train"}'])
def test_runs_and_report_skip_a_damaged_summary_and_name_it(capsys, home, tmp_path, text):
    train = cli_json(capsys, "train", *TINY)
    other = cli_json(capsys, "train", *TINY, "--seed", "1")
    (home / other["run_id"] / "summary.json").write_text(text)
    code, out, err = cli(capsys, "runs", "--json")
    assert code == 0 and [row["run_id"] for row in json.loads(out)] == [train["run_id"]]
    assert f"skipping run {other['run_id']}: summary.json is damaged" in err
    code, out, err = cli(capsys, "report", "--out", tmp_path / "report", "--json")
    assert code == 0, err
    assert f"skipping run {other['run_id']}" in err and json.loads(out)["rows"][0]["seeds"] == 1
    code, out, err = cli(capsys, "results", "--kind", "train", "--json")
    assert code == 0 and f"skipping run {other['run_id']}: summary.json is damaged" in err
    code, out, _ = cli(capsys, "show", other["run_id"])
    assert code == 0 and "status   damaged" in out and "summary.json: damaged" in out
    assert cli(capsys, "verify")[0] == 1


def test_a_damaged_spec_is_named_too(capsys, store_copy):
    home, run_id = store_copy
    (home / run_id / "spec.yaml").write_text("model: [unclosed\n")
    code, out, err = cli(capsys, "runs")
    assert code == 0 and f"skipping run {run_id}: spec.yaml is damaged (not valid YAML" in err
    (home / run_id / "spec.yaml").write_text("model:\n  no_such_field: 1\n")
    code, out, _ = cli(capsys, "verify")
    assert code == 1 and "spec.yaml: damaged (not a valid spec" in out


# verify ------------------------------------------------------------------------------------------------
def test_verify_a_clean_store_and_one_file(capsys, store_copy):
    home, run_id = store_copy
    code, out, _ = cli(capsys, "verify")
    assert code == 0 and out.startswith("checked 1 run(s), 4 tensor file(s)") and out.rstrip().endswith("no problems")
    code, out, _ = cli(capsys, "verify", run_id, "--json")
    assert code == 0 and json.loads(out)["problems"] == [] and json.loads(out)["tensor_files"] == 4
    flip_data_byte(home / run_id / "checkpoints" / "latest.safetensors")
    code, out, _ = cli(capsys, "verify", "--json")
    data = json.loads(out)
    assert code == 1 and [Path(p["path"]).name for p in data["problems"]] == ["latest.safetensors"]
    assert "has finished and does not need it: delete it" in data["problems"][0]["recovery"]


# rm ---------------------------------------------------------------------------------------------------
def test_rm_refuses_a_run_whose_lock_is_held_and_removes_a_lottery_with_its_stages(capsys, home):
    lottery = cli_json(capsys, "lottery", *TINY, "--levels", "1", "--controls", "reinit")
    run_id = lottery["run_id"]
    store = RunStore(home)
    with store.lock(f"{run_id}/level_1/reinit"):  # as a process training that stage holds it
        code, _, err = cli(capsys, "rm", run_id)
        assert code == 2 and f"run {run_id} is in use" in err and "level_1__reinit.lock" in err
        assert (home / run_id / "level_1" / "reinit" / "summary.json").is_file()  # nothing removed
    dense = json.loads((home / run_id / "stage.json").read_text())["stages"]["level_0"]
    code, out, _ = cli(capsys, "rm", run_id[:12], "--dry-run")
    assert out.strip() == f"would remove {run_id} (with 2 stages)" and (home / run_id).is_dir()
    code, out, _ = cli(capsys, "rm", run_id[:12])
    assert code == 0 and out.strip() == f"removed {run_id} (with 2 stages)"
    # no directory, no trash, no lock file; level 0, the spec's train run, is shared and stays
    assert os.listdir(home) == [dense]
    assert cli(capsys, "rm", run_id)[0] == 2  # no such run any more


# locks and temporary files -----------------------------------------------------------------------------
def test_lock_files_are_removed_on_release_and_temp_files_of_a_killed_holder_swept(home):
    store = RunStore(home)
    run = store.create("train-x", "seed: 0\n")
    litter = [
        run.path / ".summary.json.abc123.tmp",
        run.checkpoints_dir / ".latest.safetensors.def456.tmp",
        run.checkpoints_dir / ".tmpAb3dE9",
    ]  # the last one is safetensors' own
    run.checkpoints_dir.mkdir()
    for path in litter:
        path.write_bytes(b"half a file")
    stage = store.create("train-x/level_0", "seed: 0\n")  # a stage's files are its own lock holder's
    (stage.path / ".mask.safetensors.ghi789.tmp").write_bytes(b"")
    with store.lock("train-x"):
        assert store.lock_path("train-x").is_file()
        assert not any(p.exists() for p in litter)
    assert not store.lock_path("train-x").exists()
    assert (stage.path / ".mask.safetensors.ghi789.tmp").exists()


def _locker(root: str, log: str, rounds: int) -> None:
    store = RunStore(root)
    for _ in range(rounds):
        with store.lock("train-shared"):
            with open(log, "a") as handle:
                handle.write(f"in {os.getpid()}\n")
            time.sleep(0.001)
            with open(log, "a") as handle:
                handle.write(f"out {os.getpid()}\n")


def test_removing_lock_files_keeps_mutual_exclusion(tmp_path):
    """Lock files are unlinked while held; a waiter on the old inode must notice and retry, never
    share the lock with a process that created a fresh file."""
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_locker, args=(str(tmp_path / "store"), str(log), 40)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 3 * 40 * 2
    for enter, leave in zip(lines[::2], lines[1::2]):
        assert enter.startswith("in ") and leave == "out " + enter[3:], "two processes held the lock at once"
    assert not list((tmp_path / "store").glob(".*.lock"))


# gc ------------------------------------------------------------------------------------------------------
def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * 86400
    for item in [path, *path.rglob("*")]:
        os.utime(item, (stamp, stamp))


def test_gc_removes_litter_stale_locks_and_old_unfinished_runs_only(capsys, store_copy):
    home, run_id = store_copy
    store = RunStore(home)
    temp = home / run_id / "weights" / ".step_5.safetensors.x1y2.tmp"
    temp.write_bytes(b"partial")
    stale = store.lock_path("branch-gone")
    stale.write_bytes(b"")
    trash = home / ".trash-0123456789ab"
    (trash / "weights").mkdir(parents=True)
    old = store.create("prune-old", "seed: 0\n")
    (old.checkpoints_dir).mkdir()
    (old.checkpoints_dir / "latest.json").write_text("{}")
    _age(old.path, 10)
    recent = store.create("prune-recent", "seed: 0\n")
    lottery = store.create("lottery-keep", "seed: 0\n")  # unfinished, but one of its stages finished
    stage = store.create("lottery-keep/level_0", "seed: 0\n")
    stage.summary_path.write_text(store.run(run_id).summary_path.read_text())
    _age(lottery.path, 10)
    busy = store.create("prune-busy", "seed: 0\n")
    _age(busy.path, 10)
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    with store.lock("prune-busy"):
        code, out, _ = cli(capsys, "gc", "--older-than", "7d", "--dry-run")
        assert (
            code == 0 and sorted(p.relative_to(home) for p in home.rglob("*") if p.name != ".prune-busy.lock") == before
        )
        assert f"would remove temp file {temp}" in out and f"would remove stale lock {stale}" in out
        assert f"would remove unfinished run {old.path} (prune-old, unchanged for 10.0d)" in out
        assert f"would remove interrupted removal {trash}" in out
        assert "note: run prune-busy is unfinished but in use; left alone" in out
        code, out, _ = cli(capsys, "gc", "--older-than", "7d")
        assert code == 0 and out.splitlines()[-1].startswith(
            "removed 1 interrupted removal, 1 stale lock, 1 unfinished run, 1 temp file under"
        )
    assert not temp.exists() and not stale.exists() and not trash.exists() and not old.path.exists()
    assert recent.path.is_dir() and lottery.path.is_dir() and busy.path.is_dir() and (home / run_id).is_dir()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []
    assert cli(capsys, "gc", "--older-than", "soon")[0] == 2
