"""``--executor ray``: each unit is a Ray task (``pip install 'prunelab[ray]'``).

Without an address a local Ray instance is started (all cores of this machine); ``address="auto"``
joins the cluster this machine belongs to, ``HOST:PORT`` a given one. Every task asks for
``num_cpus`` CPUs (its torch threads) and ``num_gpus`` GPUs (Ray sets ``CUDA_VISIBLE_DEVICES``). Ray
retries a task whose worker died; the retried trial resumes from its last checkpoint. The run store
must be the same path on every node (a shared file system), and prunelab installed on every node.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from typing import Any

from prunelab.experiments.executors.base import Executor
from prunelab.experiments.executors.worker import execute_unit
from prunelab.specs import SpecError

__all__ = ["RayExecutor"]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SpecError("--executor ray needs Ray: pip install 'prunelab[ray]'") from None
    return ray


class RayExecutor(Executor):
    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        init: dict[str, Any] | None = None,
    ) -> None:
        if num_cpus <= 0 or num_gpus < 0:
            raise SpecError(f"--ray-num-cpus must be > 0 and --ray-num-gpus >= 0, got {num_cpus} and {num_gpus}")
        self._ray = ray = _import_ray()
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address, **(init or {"include_dashboard": False, "log_to_driver": False}))
        elif address is not None:
            raise SpecError("Ray is already initialised in this process; leave --address out")
        self.num_cpus, self.num_gpus = float(num_cpus), float(num_gpus)
        self.threads = max(1, math.floor(self.num_cpus))
        self._task = ray.remote(execute_unit).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus)
        resources = ray.cluster_resources()
        slots = [resources.get("CPU", 0) / self.num_cpus]
        if self.num_gpus:
            slots.append(resources.get("GPU", 0) / self.num_gpus)
        if min(slots) < 1:
            raise SpecError(
                f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} "
                f"GPUs: no room for one trial of {self.num_cpus:g} CPUs and {self.num_gpus:g} GPUs"
            )
        self.capacity = int(min(slots))

    def describe(self) -> str:
        return (
            f"ray: {self.capacity} trial(s) at once, {self.num_cpus:g} CPU(s)"
            + (f" and {self.num_gpus:g} GPU(s)" if self.num_gpus else "")
            + " each"
        )

    def submit(self, unit: dict[str, Any]) -> Future:
        return self._task.remote(unit).future()

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def abort(self) -> None:
        self.close()  # shutting the local instance down stops its tasks; a cluster's tasks finish and are kept
