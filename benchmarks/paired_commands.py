"""Shared by the benchmarks that time whole ``prunelab`` commands side by side (bench_study, bench_lottery_packed).

Each command runs in a fresh process with this checkout's ``src`` first on the path and a fresh run store, so
start-up, data reading and every store write are counted; pairs alternate and the figure is the median of the
per-pair ratios ``first / second``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def timed_command(args: Sequence[str], *, show_stderr: bool = False) -> float:
    """Wall seconds of ``python -m prunelab ARGS --home <empty store>`` in a fresh process (its stdout dropped,
    its stderr too unless ``show_stderr``).
    ``PRUNELAB_DATA`` defaults to ../shared/data beside the repository."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("PRUNELAB_DATA", str(ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "prunelab", *args, "--home", home],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=None if show_stderr else subprocess.DEVNULL,
        )
        return time.perf_counter() - started


def pair_summary(pairs: Sequence[tuple[float, float]], first: str, second: str) -> dict[str, Any]:
    """Medians of both sides, and median/min/max of the per-pair ratios first / second, with the machine's
    cores and load average."""
    ratios = [a / b for a, b in pairs]
    return {
        "pairs": list(pairs),
        f"median_{first}_s": statistics.median(a for a, _ in pairs),
        f"median_{second}_s": statistics.median(b for _, b in pairs),
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


def summary_line(result: dict[str, Any]) -> str:
    return (
        f"median ratio {result['median_ratio']:.3f} (min {result['min_ratio']:.3f}, max {result['max_ratio']:.3f}); "
        f"load average {' '.join(f'{x:.2f}' for x in result['load_average'])} on {result['cores']} cores"
    )
