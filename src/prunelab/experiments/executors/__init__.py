"""Executors run a study's trials: in this process, in local worker processes, on a Ray cluster or as
Slurm jobs. Each trial is an ordinary run in the shared run store, so any executor can resume what
another one left unfinished."""

from __future__ import annotations

from typing import Any

from prunelab.experiments.choices import EXECUTORS
from prunelab.experiments.executors.base import Executor, InProcessExecutor
from prunelab.experiments.executors.local import LocalExecutor, available_cores, default_workers, visible_gpus
from prunelab.experiments.executors.worker import execute_unit, one_line
from prunelab.specs import SpecError
from prunelab.specs.base import check_choice

__all__ = [
    "EXECUTORS",
    "Executor",
    "InProcessExecutor",
    "LocalExecutor",
    "available_cores",
    "default_workers",
    "execute_unit",
    "make_executor",
    "one_line",
    "visible_gpus",
]


def make_executor(
    name: str = "local",
    *,
    workers: int | None = None,
    parallel: int | None = None,
    address: str | None = None,
    ray_num_cpus: float = 1.0,
    ray_num_gpus: float = 0.0,
    slurm_folder: str | None = None,
    **slurm: Any,
) -> Executor:
    """The executor ``name`` with its options. ``local``: ``workers`` processes (default: one per GPU, else
    per core, but no more than ``parallel``, the trials that can run at once; one worker runs in this
    process). ``ray``: ``address``, per-trial
    ``ray_num_cpus``/``ray_num_gpus``. ``slurm``: ``slurm_folder`` for logs and :class:`SlurmExecutor`'s
    options (``partition``, ``time``, ``gpus_per_trial``, ``cpus_per_trial``, ``mem_gb``, ``cluster``)."""
    check_choice(name, EXECUTORS, "executor")
    if name != "local" and workers is not None:
        raise SpecError(
            f"--workers sets the local executor's processes; with --executor {name} "
            + ("use --ray-num-cpus per trial" if name == "ray" else "Slurm runs one job per trial")
        )
    if name != "ray" and (address is not None or ray_num_cpus != 1.0 or ray_num_gpus != 0.0):
        raise SpecError("--address, --ray-num-cpus and --ray-num-gpus apply to --executor ray")
    given = {key: value for key, value in slurm.items() if value is not None}
    if name != "slurm" and (given or slurm_folder is not None):
        raise SpecError("the --slurm-* options apply to --executor slurm")
    if name == "local":
        if workers is not None and workers < 1:
            raise SpecError(f"--workers must be >= 1, got {workers}")
        count = workers if workers is not None else min(default_workers(), max(1, parallel or default_workers()))
        if count == 1:
            return InProcessExecutor()
        return LocalExecutor(count)
    if name == "ray":
        from prunelab.experiments.executors.ray_executor import RayExecutor

        return RayExecutor(address, num_cpus=ray_num_cpus, num_gpus=ray_num_gpus)
    try:
        from prunelab.experiments.executors.slurm_executor import SlurmExecutor
    except ImportError:
        raise SpecError("--executor slurm needs submitit: pip install 'prunelab[slurm]'") from None
    return SlurmExecutor(slurm_folder or "prunelab-slurm", **given)
