"""Data-parallel training under torchrun (2 CPU processes, gloo): the same weights as one process with the
same global batch, rank 0 alone writing the store, masks computed once, and exact resume after the
whole job is killed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import checkpoint_step, subprocess_environment
from prunelab.data import Augmentation, BatchLoader, load_dataset
from prunelab.specs import DatasetSpec

TRAIN = [
    "train",
    "--preset",
    "digits_lenet_300_100",
    "--train.steps=40ep",
    "--train.checkpoint_every=1ep",
    "--save-steps=46it",
    "--no-progress",
    "--json",
]
FINAL = 40 * 23  # digits: 1,438 training images at batch 64


def _free_port() -> int:
    """A port nobody listens on now (fixed ports clash when two test runs share a machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(args: list[str], home: Path, port: int | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port or _free_port()),
        "-m",
        "prunelab",
        *args,
    ]


def _single(args: list[str], home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunelab", *args],
        env=subprocess_environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _weights(home: Path, run_id: str, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(home / run_id / "weights" / f"step_{step}.safetensors"))


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own, so killing the
    launcher's process group would leave them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        found += frontier
    return found


def _kill_job(pid: int) -> None:
    """SIGKILL a torchrun job and all its workers at once: a lost node."""
    for victim in [pid, *_descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_shards_of_a_batch_are_the_batch_with_its_augmentation():
    splits = load_dataset(DatasetSpec(name="synthetic", synthetic_shape=(3, 8, 8), synthetic_train_size=37))
    train = dataclasses.replace(splits.train, augmentation=Augmentation(pad=2, flip=True))
    whole = BatchLoader(train, 10, order_seed=3, augment_seed=4)
    parts = [BatchLoader(train, 10, order_seed=3, augment_seed=4, shard=(r, 3)) for r in range(3)]
    for e in range(2):
        for (x, y), *shards in zip(whole.epoch(e), *(p.epoch(e) for p in parts)):
            assert torch.equal(torch.cat([s[0] for s in shards]), x) and torch.equal(
                torch.cat([s[1] for s in shards]), y
            )
    assert whole.global_batch_size(3) == 7 and parts[0].iterations_per_epoch == whole.iterations_per_epoch


def test_two_processes_train_the_single_process_weights_and_resume_exactly(tmp_path):
    single, whole, killed = tmp_path / "single", tmp_path / "whole", tmp_path / "killed"
    # side by side: one process, an uninterrupted two-process run, and one killed (a lost node) after a checkpoint
    reference = subprocess.Popen(
        [sys.executable, "-m", "prunelab", *TRAIN],
        env=subprocess_environment(single),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ddp = subprocess.Popen(
        _torchrun(TRAIN, whole),
        env=subprocess_environment(whole),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = subprocess.Popen(
        _torchrun(TRAIN, killed), env=subprocess_environment(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    try:
        while (checkpoint_step(killed) or 0) < 23:
            assert victim.poll() is None, victim.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        _kill_job(victim.pid)
    finally:
        if victim.poll() is None:
            _kill_job(victim.pid)
        victim.wait(timeout=30)
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-3000:]
    run_id = json.loads(out)["run_id"]
    out, err = ddp.communicate(timeout=300)
    assert ddp.returncode == 0, err[-3000:]
    summary = json.loads(out)  # one JSON document: the other rank prints nothing
    assert summary["run_id"] == run_id and summary["final_step"] == FINAL
    assert [p.name for p in whole.iterdir() if not p.name.startswith(".")] == [run_id]  # rank 0 alone wrote
    # the same global batch on one process: the same weights up to float reassociation (which grows slowly)
    for step, tolerance in ((46, 1e-5), (FINAL, 1e-4)):
        ours, theirs = _weights(whole, run_id, step), _weights(single, run_id, step)
        assert ours.keys() == theirs.keys()
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], rtol=tolerance, atol=tolerance)
    # resuming the killed job gives the uninterrupted two-process run bit for bit
    killed_at = checkpoint_step(killed) or 0
    assert 23 <= killed_at < FINAL, "the job finished before it could be killed"
    resumed = subprocess.run(
        _torchrun(TRAIN, killed), env=subprocess_environment(killed), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["resumed_from"] == killed_at
    again = _weights(killed, run_id, FINAL)
    for key in ours:
        assert torch.equal(again[key], ours[key]), key
    history = [json.loads(line) for line in (killed / run_id / "metrics.jsonl").read_text().splitlines()]
    assert [r["test_accuracy"] for r in history] == [
        json.loads(line)["test_accuracy"] for line in (whole / run_id / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_a_mask_is_computed_once_and_every_rank_trains_it(tmp_path):
    args = [
        "prune",
        "--preset",
        "digits_lenet_300_100",
        "--train.steps=1ep",
        "--strategy",
        "snip",
        "--density",
        "0.1",
        "--no-progress",
        "--json",
    ]
    reference = _single(args, tmp_path / "single")
    assert reference.returncode == 0, reference.stderr
    ddp = subprocess.run(
        _torchrun(args, tmp_path / "ddp"),
        env=subprocess_environment(tmp_path / "ddp"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = json.loads(ddp.stdout), json.loads(reference.stdout)
    assert a["run_id"] == b["run_id"] and a["kept_weights"] == b["kept_weights"]
    mask_a = load_file(str(tmp_path / "ddp" / a["run_id"] / "mask.safetensors"))
    mask_b = load_file(str(tmp_path / "single" / b["run_id"] / "mask.safetensors"))
    assert all(torch.equal(mask_a[k], mask_b[k]) for k in mask_b)
    assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.01
