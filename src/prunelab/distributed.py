"""Data-parallel runs under ``torchrun``: who writes, and how ranks agree.

``torchrun --nproc_per_node N -m prunelab train ...`` starts N copies of a command; each is a *rank* of
one process group (``init_from_environment``, called by the command line: gloo on the CPU, NCCL on
CUDA with rank ``r`` on ``cuda:<local rank>``). Every rank trains its slice of each global batch;
**rank 0 alone writes the run store** — specs, weights, masks, checkpoints, metrics and summaries —
and the others read what it wrote. This module is the one place that says so: the store's writes,
locks and stages ask :func:`is_writer`, and :func:`barrier` keeps ranks in step at the end of every
stage, so all of them see the same store.

The state lives in ``torch.distributed`` itself (no globals here): without a process group every
function is the single-process answer (rank 0 of 1, a writer, barriers are no-ops). A process that
has not imported ``torch.distributed`` cannot be in a process group, so the answers come without
importing torch: commands that never touch a tensor (``prunelab --help``, ``prunelab runs``) start fast.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "active",
    "rank",
    "world_size",
    "local_rank",
    "is_writer",
    "barrier",
    "init_from_environment",
    "all_reduce_sum",
    "broadcast_tensors",
    "agree",
]


def _dist() -> Any:
    """``torch.distributed`` if this process has imported it (a process group needs it), else ``None``."""
    return sys.modules.get("torch.distributed")


def active() -> bool:
    """Whether this process is one rank of a process group of more than one."""
    dist = _dist()
    return dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return _dist().get_rank() if active() else 0


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_writer() -> bool:
    """True on the one process that writes files (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    if active():
        _dist().barrier()


def init_from_environment(device: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1); returns
    whether this process is now one of several ranks. ``device`` (``cpu``, ``cuda``, ``auto``) picks
    the backend: NCCL when CUDA is used, gloo otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return active()
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return active()
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run without torchrun")
    cuda = torch.cuda.is_available() and (device or "auto") != "cpu"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return active()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over all ranks, in place (itself without a process group)."""
    if active():
        dist = _dist()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_tensors(tensors: list[torch.Tensor]) -> None:
    """Give every rank rank 0's values of ``tensors`` (in place; bool tensors through uint8)."""
    if not active():
        return
    import torch

    dist = _dist()
    for tensor in tensors:
        if tensor.dtype == torch.bool:
            carrier = tensor.to(torch.uint8)
            dist.broadcast(carrier, src=0)
            tensor.copy_(carrier.bool())
        else:
            dist.broadcast(tensor, src=0)


def agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a decision only the writer can make, e.g. under the run's lock)."""
    if not active():
        return flag
    import torch

    carrier = torch.tensor([int(flag)], dtype=torch.uint8, device=_collective_device())
    _dist().broadcast(carrier, src=0)
    return bool(carrier.item())


def _collective_device() -> torch.device:
    import torch

    return torch.device("cuda", torch.cuda.current_device()) if _dist().get_backend() == "nccl" else torch.device("cpu")
