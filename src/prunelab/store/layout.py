"""The layout of a run directory, spelled out once.

Every file a run holds is named here and nowhere else; the trainer, the experiments, the reports
and the command line all go through :class:`RunLayout` (a :class:`~prunelab.store.runs.Run` is a
layout with an id)::

    <run>/
      spec.yaml                       the resolved spec (written first)
      stage.json                      what else names the stage (density, branch arguments, ...)
      metrics.jsonl                   one JSON record per evaluation
      mask.safetensors                the run's mask (input or, for supermasks, learned)
      weights/step_<N>.safetensors    the state dict at each saved step
      checkpoints/latest.*            the crash-resume checkpoint (previous.*: the generation before it)
      tensorboard/                    optional event files
      summary.json                    written last: its presence means "finished"
      .more_steps/                    while a finished run recomputes weights of steps it did not save: a
                                      scratch training (weights/, checkpoints/) up to the last such step
      <stage>/                        the stages of a multi-stage experiment are run directories inside it

Every ``*.safetensors`` file carries its checksum (:mod:`prunelab.store.integrity`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout", "TEMP_GLOBS"]

_WEIGHTS_PREFIX = "step_"
_TENSOR_SUFFIX = ".safetensors"
# Temporary files of interrupted writes: prunelab.store.atomic.atomic_write's ".<name>.<random>.tmp", and
# the ".tmpXXXXXX" through which safetensors' save_file writes (that one, inside ours).
TEMP_GLOBS = (".*.tmp", ".tmp??????")


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory (nothing is created or read by constructing it)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(os.fspath(self.path)))

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def stage_path(self) -> Path:
        return self.path / "stage.json"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def mask_path(self) -> Path:
        return self.path / f"mask{_TENSOR_SUFFIX}"

    @property
    def weights_dir(self) -> Path:
        return self.path / "weights"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def more_steps_dir(self) -> Path:
        """Scratch space of a finished run recomputing the weights of steps it did not save."""
        return self.path / ".more_steps"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    def weights_path(self, step: int) -> Path:
        """Where the weights saved at ``step`` live."""
        return self.weights_dir / f"{_WEIGHTS_PREFIX}{int(step)}{_TENSOR_SUFFIX}"

    def saved_steps(self) -> list[int]:
        """The steps whose weights are saved, in increasing order."""
        if not self.weights_dir.is_dir():
            return []
        steps = []
        for item in self.weights_dir.glob(f"{_WEIGHTS_PREFIX}*{_TENSOR_SUFFIX}"):
            number = item.name[len(_WEIGHTS_PREFIX) : -len(_TENSOR_SUFFIX)]
            if number.isdigit():
                steps.append(int(number))
        return sorted(steps)

    @property
    def packed_marker(self) -> Path:
        """Present while a run the packed trainer started has no checkpoint yet (its checkpoints say so
        themselves), so that it restarts with the packed arithmetic whoever restarts it."""
        return self.checkpoints_dir / "packed"

    @property
    def bookkeeping(self) -> frozenset[str]:
        """The files a run has before any work is done: a run holding only these produced nothing."""
        return frozenset({self.spec_path.name, self.stage_path.name})

    @property
    def own_dirs(self) -> tuple[Path, ...]:
        """The directories whose files belong to this run alone (stages inside it are runs of their own)."""
        scratch = RunLayout(self.more_steps_dir)
        return (
            self.path,
            self.weights_dir,
            self.checkpoints_dir,
            scratch.path,
            scratch.weights_dir,
            scratch.checkpoints_dir,
        )

    def tensor_files(self) -> list[Path]:
        """Every tensor file the run holds: mask, saved weights, checkpoints."""
        files = [self.mask_path] if self.mask_path.is_file() else []
        for directory in (self.weights_dir, self.checkpoints_dir):
            if directory.is_dir():
                files += sorted(directory.glob(f"*{_TENSOR_SUFFIX}"))
        return files

    def temp_files(self) -> list[Path]:
        """Temporary files of interrupted atomic writes in the run's own directories."""
        found = {f for d in self.own_dirs if d.is_dir() for g in TEMP_GLOBS for f in d.glob(g) if f.is_file()}
        return sorted(found)

    def stage_dirs(self) -> list[Path]:
        """The run directories of this run's stages (directories inside it with a spec.yaml)."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.is_dir() and RunLayout(p).spec_path.is_file())
