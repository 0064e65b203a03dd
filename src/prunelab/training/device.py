"""Turning ``train.device`` ("auto", "cpu", "cuda", "cuda:N") into a ``torch.device``."""

from __future__ import annotations

import re

import torch

from prunelab import distributed
from prunelab.errors import UserError

__all__ = ["DeviceError", "UnknownDevice", "resolve_device"]

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


class DeviceError(UserError, RuntimeError):
    """A device that is not available on this machine."""


class UnknownDevice(DeviceError, ValueError):
    """A device name prunelab does not know."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or ``None``) picks ``cuda`` when available, else ``cpu``; asking for CUDA on a
    machine without it is an error rather than a silent fall-back to the CPU. Under ``torchrun``,
    ``cuda`` means this rank's GPU, ``cuda:<LOCAL_RANK>``."""
    if isinstance(device, torch.device):
        text = str(device)
    else:
        text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA_RE.match(text)
    if not match:
        raise UnknownDevice(f"unknown device {device!r} (train.device): use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {text!r} was requested but CUDA is not available "
            f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda or 'no'}); "
            "use train.device=cpu or train.device=auto"
        )
    index = int(match.group(1)) if match.group(1) is not None else None
    if index is None and distributed.active():  # under torchrun each rank has its own GPU
        index = distributed.local_rank()
    if index is not None and index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {text!r} was requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return torch.device(text)
