"""Fixtures every test gets: a private run store, and one torch thread.

One intra-op thread is the fastest setting for the tiny models the tests train, and it keeps a
shared 2-core machine from thrashing (two threads per process ran the training tests 5–10× slower).
"""

from decimal import ROUND_HALF_UP, Decimal

import pytest
import torch


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
