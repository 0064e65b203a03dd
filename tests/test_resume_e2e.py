"""Crash-resume end to end: ``python -m prunelab train`` is killed with SIGKILL after a couple of
epochs' checkpoints, re-run with the same command, and must finish with weights bit-for-bit equal to
an uninterrupted run's (and the same evaluation history)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import checkpoint_step, subprocess_environment

COMMAND = [
    sys.executable,
    "-m",
    "prunelab",
    "train",
    "--preset",
    "digits_lenet_300_100",
    "--train.steps=20ep",
    "--train.checkpoint_every=1ep",
    "--no-progress",
    "--json",
]
ITERATIONS_PER_EPOCH = 23  # 1,438 digits training images at batch 64
FINAL = 20 * ITERATIONS_PER_EPOCH


def metrics(run_dir: Path) -> list[dict]:
    keep = ("step", "epoch", "lr", "train_loss", "test_loss", "test_accuracy")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: record.get(k) for k in keep} for record in map(json.loads, lines)]


def test_killed_training_resumes_to_bit_identical_weights(tmp_path):
    killed_home, clean_home = tmp_path / "killed", tmp_path / "clean"
    logs = tmp_path / "logs"
    logs.mkdir()
    # the uninterrupted reference trains alongside (each process uses one thread)
    with open(logs / "clean.out", "w") as clean_out, open(logs / "clean.err", "w") as clean_err:
        clean = subprocess.Popen(COMMAND, env=subprocess_environment(clean_home), stdout=clean_out, stderr=clean_err)
        try:
            with open(logs / "killed.err", "w") as killed_err:
                victim = subprocess.Popen(
                    COMMAND, env=subprocess_environment(killed_home), stdout=subprocess.DEVNULL, stderr=killed_err
                )
                deadline = time.monotonic() + 90
                try:
                    while True:
                        step = checkpoint_step(killed_home, "train-*")
                        if step is not None and step >= 2 * ITERATIONS_PER_EPOCH:
                            break
                        assert victim.poll() is None, f"training exited early: {(logs / 'killed.err').read_text()}"
                        assert time.monotonic() < deadline, "no checkpoint after 90 s"
                        time.sleep(0.02)
                    os.kill(victim.pid, signal.SIGKILL)
                finally:
                    if victim.poll() is None:
                        victim.kill()
                    victim.wait(timeout=30)
            assert victim.returncode == -signal.SIGKILL
            [run_dir] = list(killed_home.glob("train-*"))
            assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"
            killed_at = checkpoint_step(killed_home, "train-*")
            assert killed_at is not None and 2 * ITERATIONS_PER_EPOCH <= killed_at < FINAL

            resumed = subprocess.run(
                COMMAND, env=subprocess_environment(killed_home), capture_output=True, text=True, timeout=120
            )
            assert resumed.returncode == 0, resumed.stderr
            assert clean.wait(timeout=120) == 0, (logs / "clean.err").read_text()
        finally:
            if clean.poll() is None:
                clean.kill()
                clean.wait()

    summary = json.loads(resumed.stdout)
    reference = json.loads((logs / "clean.out").read_text())
    assert f"resuming from the checkpoint at step {killed_at}/{FINAL}" in resumed.stderr
    assert summary["resumed_from"] == killed_at > 0
    assert reference["resumed_from"] is None
    assert summary["run_id"] == reference["run_id"] == run_dir.name
    assert summary["final_step"] == reference["final_step"] == FINAL

    clean_dir = clean_home / reference["run_id"]
    for step in (0, FINAL):
        ours = load_file(str(run_dir / "weights" / f"step_{step}.safetensors"))
        theirs = load_file(str(clean_dir / "weights" / f"step_{step}.safetensors"))
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), f"step {step}: {key}"
    # the evaluation history (and the training-loss averages) continue exactly where they stopped
    assert metrics(run_dir) == metrics(clean_dir)
    assert len(metrics(run_dir)) == 21  # step 0 and every epoch
    for key in ("test_accuracy", "test_loss", "train_loss", "best_accuracy", "best_step"):
        assert summary[key] == reference[key], key
