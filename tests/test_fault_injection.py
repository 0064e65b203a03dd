"""Fault injection: a lottery with controls is killed with SIGKILL at random moments (inside training,
between stages, in the middle of a checkpoint or summary write), then completed by running the same
command once more. The result must be bit-identical to an uninterrupted lottery's, and nothing may be
left behind: no temporary file, no lock file, no file an uninterrupted run does not have.

Each attempt is ``prunelab.cli.main.main`` in a forked child of this process (imports and the loaded
data set are inherited, so an attempt costs no start-up), its output in a log file; the parent kills
it after a random delay drawn from a seeded generator. The default suite kills a small lottery 3 times; the slow
one kills a 3-level
lottery with two controls 20 times."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunelab.cli.main import main
from prunelab.experiments.workbench import Workbench
from prunelab.specs import load_spec

# --workers 1: the trials run in the command's own process (the default executor would start a pool)
SMALL = [
    "lottery",
    "--preset",
    "digits_lenet_300_100",
    "--model.name=lenet_32_16",
    "--train.steps=1ep",
    "--train.checkpoint_every=4it",
    "--levels",
    "2",
    "--controls",
    "reinit",
    "--no-progress",
    "--json",
    "--workers",
    "1",
]
LARGE = [
    "lottery",
    "--preset",
    "digits_lenet_300_100",
    "--train.steps=2ep",
    "--train.checkpoint_every=5it",
    "--levels",
    "3",
    "--controls",
    "reinit,shuffle",
    "--no-progress",
    "--json",
    "--workers",
    "1",
]
VOLATILE = ("wall_seconds", "resumed_from")  # how long it took and where it resumed, not what it computed


def _child(argv: list[str], log: str) -> None:
    os.setpgrp()  # killed as a job: with any process it starts
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def attempt(argv: list[str], home: Path, log: Path, kill_after: float | None) -> tuple[bool, float]:
    """Run the command in a forked child; kill it after ``kill_after`` seconds unless it finished.
    Returns whether it was killed, and how long it ran."""
    child = multiprocessing.get_context("fork").Process(target=_child, args=([*argv, "--home", str(home)], str(log)))
    started = time.perf_counter()
    child.start()
    child.join(kill_after)
    if child.exitcode is None:
        with suppress(ProcessLookupError):  # (it may finish in the meantime: then it was not killed)
            os.killpg(child.pid, signal.SIGKILL)
        child.join(60)
    killed = child.exitcode == -signal.SIGKILL
    assert killed or child.exitcode == 0, log.read_text()[-3000:]
    return killed, time.perf_counter() - started


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def metrics(path: Path) -> list[dict]:
    keep = ("step", "epoch", "lr", "train_loss", "test_loss", "test_accuracy")
    return [{k: record.get(k) for k in keep} for record in map(json.loads, path.read_text().splitlines())]


def files(home: Path) -> set[str]:
    return {p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()}


def assert_identical(killed: Path, clean: Path) -> None:
    assert files(killed) == files(clean), "files differ (litter, or something missing)"
    for name in sorted(files(clean)):
        ours, theirs = killed / name, clean / name
        if name.endswith(".safetensors"):
            a, b = load_file(str(ours)), load_file(str(theirs))
            assert a.keys() == b.keys(), name
            for key in b:
                assert torch.equal(a[key], b[key]), f"{name}: {key}"
        elif name.endswith("summary.json"):
            assert strip(json.loads(ours.read_text())) == strip(json.loads(theirs.read_text())), name
        elif name.endswith("metrics.jsonl"):
            assert metrics(ours) == metrics(theirs), name
        elif name.endswith(("spec.yaml", "stage.json")):
            assert ours.read_bytes() == theirs.read_bytes(), name


def kill_and_complete(tmp_path: Path, argv: list[str], kills: int, seed: int) -> list[float]:
    """Kill ``kills`` attempts at random moments, complete, compare; returns the kill delays."""
    clean, victim, logs = tmp_path / "clean", tmp_path / "killed", tmp_path / "logs"
    logs.mkdir()
    Workbench.from_spec(load_spec("digits_lenet_300_100"))  # the data set, loaded once for every child
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # the first optimiser imports torch._dynamo (s)
    _, total = attempt(argv, clean, logs / "clean.log", None)
    _, reuse = attempt(argv, clean, logs / "reuse.log", None)  # start-up, reading and checking finished stages
    rng = random.Random(seed)
    delays: list[float] = []
    finished = False
    for number in range(6 * kills):
        if len(delays) == kills:
            break
        if finished:  # the remaining kills fall while a re-run reads and checks the finished stages
            # (in its first half: a re-run of finished stages can be quicker than the timed one)
            delay = rng.uniform(0.0, 0.5 * reuse)
        else:  # past the start-up, a random share of the lottery: 0.6 of it over all kills on average
            delay = reuse + rng.uniform(0.0, 1.2 * total / kills)
        killed, _ = attempt(argv, victim, logs / f"attempt-{number}.log", delay)
        if killed:
            delays.append(delay)
        finished = finished or not killed
    assert len(delays) == kills
    killed, _ = attempt(argv, victim, logs / "complete.log", None)
    assert not killed
    assert not list(victim.rglob("*.tmp")), "temporary files left behind"
    assert not list(victim.glob(".*.lock")), "lock files left behind"
    assert_identical(victim, clean)
    return delays


def test_three_kills_of_a_small_lottery_then_completion_is_bit_identical(tmp_path):
    kill_and_complete(tmp_path, SMALL, kills=3, seed=0)


@pytest.mark.slow
def test_twenty_kills_of_a_three_level_lottery_with_controls_then_completion_is_bit_identical(tmp_path):
    kill_and_complete(tmp_path, LARGE, kills=20, seed=2024)
