"""Crash-resume checkpoints without pickles.

Layout, in the run's ``checkpoints/`` directory:

* ``latest.safetensors`` — tensors: ``model.<state-dict key>`` (parameters and buffers),
  ``update.<n>`` (every tensor of the update step's state: optimiser moments, learned scores' state,
  a dedicated generator's state, ...) and ``rng.cpu`` / ``rng.cuda.<i>`` (the global generators'
  states as uint8 tensors). Its metadata holds the format tag, the step and a copy of the JSON
  state below, so the file is self-contained.
* ``latest.json`` — the non-tensor state: the step, the update step's state with each tensor
  replaced by a reference to its key (see :func:`encode_state`), and the training loop's
  bookkeeping (best accuracy, eval history, the running training-loss sum).

Both are written atomically (temporary file, fsync, rename): tensors first, the JSON last. The
tensor file carries its checksum (:mod:`prunelab.store.integrity`), which covers the embedded copy
of the state, so the loader always restores from that copy; the JSON is for people and tools, and
a JSON that names another step (a save interrupted between the two renames) only earns a note.

Two generations are kept: before a new checkpoint is written, ``latest.*`` is also made
``previous.*`` (a hard link; a rename where links are not supported). At every moment a complete
generation exists — ``latest.*`` itself until the new one replaces it — so a crash or a full disk
during a save leaves the last good checkpoint usable. The loader takes the newest generation that verifies;
with ``on_damaged`` it reports and deletes a damaged one and falls back to the one before, or to the
start (``None``). The final checkpoint of a training (``keep_previous=False``) drops the previous
generation. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab import distributed
from prunelab.errors import UserError
from prunelab.store.atomic import atomic_save_tensors, atomic_write_json, load_tensor_file, read_json
from prunelab.store.integrity import DamagedFile

__all__ = [
    "CHECKPOINT_FORMAT",
    "GENERATIONS",
    "encode_state",
    "decode_state",
    "Checkpoint",
    "CheckpointError",
    "CheckpointWriteError",
    "checkpoint_paths",
    "generation_paths",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "restore_rng_state",
]

CHECKPOINT_FORMAT = "prunelab.checkpoint/2"
_FORMAT_1 = "prunelab.checkpoint/1"  # update state was an optimiser's only; still read
_MODEL = "model."
_UPDATE = "update."
_OPTIM = "optimizer.state."
_RNG = "rng."


GENERATIONS = ("latest", "previous")  # newest first


class CheckpointError(UserError, ValueError):
    """A checkpoint that exists but cannot be used."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk, a read-only store); the previous one is kept."""


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    update: dict[str, Any]  # the update step's state_dict(), tensors restored
    rng: dict[str, torch.Tensor]
    trainer: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # set when the JSON sidecar was stale or missing
    path: Path | None = None  # the tensor file it was read from


def generation_paths(directory: str | os.PathLike, generation: str) -> tuple[Path, Path]:
    """The tensor file and the JSON sidecar of one checkpoint generation (``latest`` or ``previous``)."""
    directory = Path(directory)
    return directory / f"{generation}.safetensors", directory / f"{generation}.json"


def checkpoint_paths(directory: str | os.PathLike) -> tuple[Path, Path]:
    """The newest generation's files, ``latest.safetensors`` and ``latest.json``."""
    return generation_paths(directory, GENERATIONS[0])


def _format_1_optimizer_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """An optimiser ``state_dict`` from a format-1 checkpoint, which stored tensors as
    ``optimizer.state.<param index>.<name>`` and the rest as JSON (tuples read back as lists)."""
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta.get("state", {}).items()}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            index, name = key[len(_OPTIM) :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        for name, value in group.items():
            if name != "params" and isinstance(value, list):
                group[name] = tuple(value)
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _check_json(obj: Any, what: str) -> None:
    try:
        json.dumps(obj)
    except TypeError as error:
        raise CheckpointError(f"cannot store the {what} as JSON ({error})") from error


# nested state (the update step's) ------------------------------------------------------------------
_TENSOR, _TUPLE, _ITEMS = "$tensor", "$tuple", "$items"


def encode_state(state: Any, tensors: dict[str, torch.Tensor], prefix: str = _UPDATE) -> Any:
    """``state`` as JSON-able data, every tensor moved into ``tensors`` under ``prefix<n>``.

    Nested dicts, lists, tuples and scalars are kept; a tensor becomes ``{"$tensor": key}``, a tuple
    ``{"$tuple": [...]}`` and a dict with a non-string key (an optimiser's per-parameter state is
    keyed by index) or a key starting with ``$`` ``{"$items": [[key, value], ...]}``, so that
    :func:`decode_state` gives back exactly the structure ``load_state_dict`` expects.
    """
    if torch.is_tensor(state):
        key = f"{prefix}{len(tensors)}"
        tensors[key] = state
        return {_TENSOR: key}
    if isinstance(state, tuple):
        return {_TUPLE: [encode_state(v, tensors, prefix) for v in state]}
    if isinstance(state, list):
        return [encode_state(v, tensors, prefix) for v in state]
    if isinstance(state, Mapping):
        if all(isinstance(k, str) and not k.startswith("$") for k in state):
            return {k: encode_state(v, tensors, prefix) for k, v in state.items()}
        return {_ITEMS: [[k, encode_state(v, tensors, prefix)] for k, v in state.items()]}
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise CheckpointError(
        f"cannot store a {type(state).__name__} in a checkpoint (only tensors, numbers, "
        "strings, lists, tuples and dicts)"
    )


def decode_state(data: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode_state`."""
    if isinstance(data, list):
        return [decode_state(v, tensors) for v in data]
    if isinstance(data, dict):
        if set(data) == {_TENSOR}:
            key = data[_TENSOR]
            if key not in tensors:
                raise CheckpointError(f"the checkpoint's state refers to tensor {key!r}, which it does not hold")
            return tensors[key]
        if set(data) == {_TUPLE}:
            return tuple(decode_state(v, tensors) for v in data[_TUPLE])
        if set(data) == {_ITEMS}:
            return {(tuple(k) if isinstance(k, list) else k): decode_state(v, tensors) for k, v in data[_ITEMS]}
        return {k: decode_state(v, tensors) for k, v in data.items()}
    return data


# random number generators -----------------------------------------------------------------------
def rng_state(cuda: bool = False) -> dict[str, torch.Tensor]:
    """The global torch generator states (CPU, plus every CUDA device when ``cuda``)."""
    states = {"cpu": torch.get_rng_state()}
    if cuda and torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda.{index}"] = state
    return states


def restore_rng_state(states: Mapping[str, torch.Tensor], *, rank: int | None = None) -> None:
    """Set the global generators to ``states``; ``rank`` picks that rank's from a data-parallel
    checkpoint (keys ``rank<r>.cpu``, ``rank<r>.cuda.<i>``)."""
    if rank is not None:
        prefix = f"rank{rank}."
        own = {k[len(prefix) :]: v for k, v in states.items() if k.startswith(prefix)}
        if not own:
            raise CheckpointError(
                f"the checkpoint holds no generator state for rank {rank}: it was written "
                "by another number of processes"
            )
        states = own
    if "cpu" in states:
        torch.set_rng_state(states["cpu"].to("cpu", torch.uint8))
    cuda = [states[k] for k in sorted((k for k in states if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise CheckpointError(
                f"the checkpoint holds RNG states for {len(cuda)} CUDA device(s) but "
                f"{torch.cuda.device_count()} are visible"
            )
        torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in cuda])


# save / load ------------------------------------------------------------------------------------
def _unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share storage (tied weights): copy the repeats."""
    seen: set[tuple[str, int]] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        key = (str(tensor.device), tensor.untyped_storage().data_ptr())
        if tensor.numel() and key in seen:
            tensor = tensor.clone()
        seen.add(key)
        out[name] = tensor
    return out


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    step: int,
    model: nn.Module,
    update: Mapping[str, Any],
    trainer: Mapping[str, Any] | None = None,
    rng: Mapping[str, torch.Tensor] | None = None,
    keep_previous: bool = True,
) -> Path:
    """Keep ``latest.*`` as ``previous.*``, then write ``latest.safetensors`` and ``latest.json``
    atomically; returns the JSON path. ``keep_previous=False`` (the last checkpoint of a training)
    removes the previous generation once the new one is complete.

    ``update`` is the update step's ``state_dict()`` (nested tensors and JSON-able values); ``rng`` the
    generator states to store (default: this process's CPU generator, :func:`rng_state`). Raises
    :class:`CheckpointWriteError` when the files cannot be written; the last complete checkpoint is
    then kept. Under ``torchrun`` only rank 0 touches the files."""
    tensor_path, json_path = checkpoint_paths(directory)
    old_tensors, old_json = generation_paths(directory, GENERATIONS[1])
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if not torch.is_tensor(value):
            raise CheckpointError(f"model state entry {name!r} is not a tensor ({type(value).__name__})")
        tensors[_MODEL + name] = value
    encoded_update = encode_state(update, tensors)
    for name, value in (rng if rng is not None else rng_state()).items():
        tensors[_RNG + name] = value
    payload = {"format": CHECKPOINT_FORMAT, "step": int(step), "update": encoded_update, "trainer": dict(trainer or {})}
    _check_json(payload, "trainer state")
    metadata = {"format": CHECKPOINT_FORMAT, "step": str(int(step)), "state": json.dumps(payload)}
    if not distributed.is_writer():
        return json_path
    try:
        if tensor_path.exists():  # the current generation becomes the previous one
            _keep_as(tensor_path, old_tensors)
            if json_path.exists():
                _keep_as(json_path, old_json)
            else:
                old_json.unlink(missing_ok=True)
        atomic_save_tensors(tensor_path, _unshared(tensors), metadata=metadata)
        atomic_write_json(json_path, payload)
        if not keep_previous:  # the sidecar first: a stray one never outlives its tensor file
            old_json.unlink(missing_ok=True)
            old_tensors.unlink(missing_ok=True)
    except OSError as error:
        raise CheckpointWriteError(
            f"could not write the checkpoint of step {int(step)} to {Path(directory)} "
            f"({error.strerror or error}); the last complete checkpoint is kept: free some space (or make the "
            "store writable) and re-run the command to resume from it"
        ) from error
    return json_path


def _keep_as(source: Path, target: Path) -> None:
    """Make ``target`` the file ``source`` is, atomically: a hard link, so that ``source`` stays in
    place (``latest.*`` is complete at every moment, and readers of ``latest.json`` always find one)
    until the new generation replaces it; a rename where the file system has no hard links."""
    if target.exists() and os.path.samefile(source, target):  # already (a save whose sidecar was lost)
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # a kill leaves a swept temp file
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        os.replace(source, target)
        return
    os.replace(temporary, target)
    temporary.unlink(missing_ok=True)  # rename() between two links of one file does nothing


def read_checkpoint(tensor_path: str | os.PathLike, json_path: str | os.PathLike | None = None) -> Checkpoint:
    """One checkpoint generation, checked against its checksum (:class:`DamagedFile` if it fails).
    Tensors are loaded on the CPU."""
    tensor_path = Path(tensor_path)
    tensors, metadata = load_tensor_file(tensor_path)
    fmt = metadata.get("format")
    if fmt not in (CHECKPOINT_FORMAT, _FORMAT_1) or "state" not in metadata:
        raise CheckpointError(f"{tensor_path} is not a prunelab checkpoint (format tag {fmt!r})")
    try:
        payload = json.loads(metadata["state"])
        step = int(metadata["step"])
    except (ValueError, KeyError) as error:  # only a file written without a checksum can get here
        raise DamagedFile(tensor_path, f"damaged (its embedded state is unreadable: {error})") from error
    note = None
    json_path = Path(json_path) if json_path is not None else None
    if json_path is not None:
        if json_path.exists():
            try:
                sidecar = read_json(json_path)
            except ValueError:
                sidecar = None
            found = sidecar.get("step") if isinstance(sidecar, dict) else "unreadable"
            if found != step:
                note = (
                    f"{json_path.name} names step {found} but {tensor_path.name} holds step {step} (the last save was "
                    "interrupted between the two files); using the state embedded in the tensor file"
                )
        else:
            note = f"{json_path.name} is missing; using the state embedded in {tensor_path.name}"
    if int(payload["step"]) != step:
        raise CheckpointError(f"{tensor_path} is inconsistent: metadata step {step}, state step {payload['step']}")
    model = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    if fmt == _FORMAT_1:  # a masked-training checkpoint written before update steps had their own state
        optimizer_tensors = {k: v for k, v in tensors.items() if k.startswith(_OPTIM)}
        update = {"optimizer": _format_1_optimizer_state(optimizer_tensors, payload["optimizer"])}
    else:
        update = decode_state(payload["update"], tensors)
    rng = {k[len(_RNG) :]: v for k, v in tensors.items() if k.startswith(_RNG)}
    return Checkpoint(
        step=step,
        model=model,
        update=update,
        rng=rng,
        trainer=dict(payload.get("trainer", {})),
        note=note,
        path=tensor_path,
    )


def load_checkpoint(
    directory: str | os.PathLike, *, on_damaged: Callable[[str], None] | None = None
) -> Checkpoint | None:
    """The newest checkpoint generation in ``directory`` that verifies, or ``None`` when there is none.

    Without ``on_damaged`` a damaged generation raises :class:`~prunelab.store.DamagedFile`. With it,
    ``on_damaged(message)`` is called, the damaged generation is deleted (so that the next save cannot
    keep it as the previous one in place of a good one) and the next older generation is tried;
    ``None`` then means "start over". A JSON sidecar without its tensor file is ignored.
    """
    damaged = False
    for generation in GENERATIONS:
        tensor_path, json_path = generation_paths(directory, generation)
        if not tensor_path.exists():
            continue
        try:
            return read_checkpoint(tensor_path, json_path)
        except DamagedFile as error:
            if on_damaged is None:
                raise
            if distributed.is_writer():  # every rank skips it; rank 0 removes it
                tensor_path.unlink(missing_ok=True)
                json_path.unlink(missing_ok=True)
            damaged = True
            on_damaged(f"checkpoint {tensor_path} is {error.problem}; removed it")
    if damaged and on_damaged is not None:
        on_damaged(f"no usable checkpoint is left in {Path(directory)}; the run starts over")
    return None
