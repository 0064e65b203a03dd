"""Fixtures every test gets: a private run store, and one torch thread.

One intra-op thread is the fastest setting for the tiny models the tests train, and it keeps a
shared 2-core machine from thrashing (two threads per process ran the training tests 5–10× slower).
"""

import json
import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
import torch

#: the source tree, put first on a child process's path so that it runs this checkout's prunelab
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Every test writes runs under its own temporary PRUNELAB_HOME, never under ~/.prunelab."""
    path = tmp_path / "home"
    monkeypatch.setenv("PRUNELAB_HOME", str(path))
    return path


def round_half_up(fraction: float, n: int) -> int:
    """Independent reference for the selection rule: the written decimal times n, halves up."""
    return int((Decimal(repr(fraction)) * n).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def subprocess_environment(home: Path) -> dict[str, str]:
    """The environment of a prunelab child process: its own run store, one thread, this checkout's source."""
    env = {**os.environ, "PRUNELAB_HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def checkpoint_step(home: Path, pattern: str = "*") -> int | None:
    """The step of the latest checkpoint of the first run under ``home`` matching ``pattern``; ``None``
    before there is one, or while it is being replaced."""
    for path in home.glob(f"{pattern}/checkpoints/latest.json"):
        try:
            return int(json.loads(path.read_text())["step"])
        except (ValueError, KeyError, OSError):
            return None
    return None
