import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from prunelab.experiments.stage import run_stage
from prunelab.masks import Mask
from prunelab.store import RunNotFound, RunStore, atomic_save_tensors, atomic_write_json, load_tensors, read_json
from prunelab.store.atomic import atomic_write


def test_atomic_write_keeps_old_file_when_writer_crashes(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"v": 1})

    def crash(tmp: Path) -> None:
        tmp.write_text('{"v": 2, "trunc')
        raise RuntimeError("simulated crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left behind


def test_tensor_round_trip_and_corrupt_file_error(tmp_path):
    path = tmp_path / "w.safetensors"
    atomic_save_tensors(path, {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([True, False])})
    loaded = load_tensors(path)
    assert torch.equal(loaded["a"], torch.arange(6.0).view(2, 3)) and loaded["b"].dtype == torch.bool
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="w.safetensors"):
        load_tensors(path)


def test_mask_save_load_and_statistics(tmp_path):
    m = Mask({"a": torch.tensor([1, 0, 1, 1]), "b": torch.zeros(2, 2)})
    assert (m.num_kept, m.num_total, m.density) == (3, 8, 3 / 8)
    assert m.collapsed_layers() == ["b"]
    m.save(tmp_path / "m.safetensors")
    assert Mask.load(tmp_path / "m.safetensors") == m
    other = Mask({"a": torch.tensor([1, 1, 0, 1]), "b": torch.zeros(2, 2)})
    assert m.overlap(other) == pytest.approx(2 / 4)
    assert (m & other).is_subset_of(m) and not m.is_subset_of(other)
    atomic_save_tensors(tmp_path / "plain.safetensors", {"a": torch.ones(2)})
    with pytest.raises(ValueError, match="not a prunelab mask"):
        Mask.load(tmp_path / "plain.safetensors")


def test_stage_runs_once_and_is_reused(tmp_path):
    store = RunStore(tmp_path)
    calls = []

    def body(run):
        calls.append(run.run_id)
        return {"test_accuracy": 0.5, "test_loss": 1.0, "density": 1.0}

    first = run_stage(store, "train-abc", "seed: 0\n", body)
    second = run_stage(store, "train-abc", "seed: 0\n", body)
    assert calls == ["train-abc"] and first == second
    assert first["kind"] == "train" and "wall_seconds" in first
    assert store.find("abc").run_id == "train-abc"
    with pytest.raises(RunNotFound, match="prunelab runs"):
        store.find("zzz")


def test_summary_requires_keys(tmp_path):
    run = RunStore(tmp_path).create("train-x", "seed: 0\n")
    with pytest.raises(ValueError, match="lacks required keys"):
        run.write_summary({"run_id": "train-x"})


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from prunelab.experiments.stage import run_stage
    from prunelab.store import RunStore

    root, log = sys.argv[1], Path(sys.argv[2])

    def body(run):
        with log.open("a") as f:
            f.write("trained\\n")
        time.sleep(1.5)
        return {"test_accuracy": 0.9, "test_loss": 0.1, "density": 1.0}

    print(json.dumps(run_stage(RunStore(root), "train-lock", "seed: 0\\n", body)))
    """
)


def test_lock_makes_concurrent_starts_train_once(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    log = tmp_path / "log.txt"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "runs"), str(log)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert log.read_text().count("trained") == 1
    assert outputs[0] == outputs[1]
