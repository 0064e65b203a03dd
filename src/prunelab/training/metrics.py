"""Training metrics: JSON lines in ``metrics.jsonl`` and, optionally, TensorBoard event files."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunelab import distributed
from prunelab.store.atomic import atomic_write_text

__all__ = ["MetricsWriter", "read_metrics", "truncate_metrics", "load_summary_writer"]

TENSORBOARD_HINT = (
    "train.tensorboard=true needs the optional TensorBoard package: pip install 'prunelab[tensorboard]' "
    "(or set train.tensorboard=false)"
)


def load_summary_writer() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, imported only when asked for."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # torch raises ImportError when the tensorboard package is missing
        raise ImportError(f"{TENSORBOARD_HINT} ({error})") from error
    return SummaryWriter


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file; a torn last line (from a killed process) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_metrics(path: str | os.PathLike, last_step: int) -> None:
    """Keep only the records with ``step <= last_step`` (atomically), so a resumed run that repeats
    the steps after its checkpoint leaves no duplicates."""
    path = Path(path)
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if isinstance(r.get("step"), int) and r["step"] <= last_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


class MetricsWriter:
    """Appends one JSON object per line (flushed and fsynced per record: records are rare) and mirrors
    numeric fields to TensorBoard scalars when a log directory is given."""

    def __init__(
        self,
        path: str | os.PathLike | None,
        *,
        tensorboard_dir: str | os.PathLike | None = None,
        purge_step: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._tb = None
        if tensorboard_dir is not None:
            writer_cls = load_summary_writer()
            self._tb = writer_cls(log_dir=str(tensorboard_dir), purge_step=purge_step)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        if not distributed.is_writer():  # under torchrun rank 0 keeps the metrics
            return
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(dict(record)) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        if self._tb is not None:
            step = int(record["step"])
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, global_step=step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
