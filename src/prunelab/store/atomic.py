"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

A reader (or a process restarted after ``kill -9``) therefore sees either the old file or the
complete new one, never a truncated file. A ``kill -9`` mid-write can leave the temporary file
(``.<name>.<random>.tmp``, see :data:`~prunelab.store.layout.TEMP_GLOBS`); whoever next takes the run's lock removes it
(:meth:`prunelab.store.RunStore.lock`), and ``prunelab gc`` removes the rest.

Tensor files carry their own checksum (:mod:`prunelab.store.integrity`), recorded by
:func:`atomic_save_tensors` and checked by :func:`load_tensors` / :func:`load_tensor_file`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from safetensors import safe_open

from prunelab import distributed
from prunelab.store.integrity import DIGEST_KEY, INTEGRITY_KEY, DamagedFile, check_digest, digest_of, owning_run, seal
from prunelab.store.layout import RunLayout

if TYPE_CHECKING:  # torch and safetensors.torch are imported by the functions that handle tensors
    import torch

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_yaml",
    "atomic_save_tensors",
    "load_tensors",
    "load_tensor_file",
    "verify_tensor_file",
    "read_json",
]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` (its return value is ignored) then move ``tmp_path`` onto ``path`` atomically.

    Under ``torchrun`` only rank 0 writes (:mod:`prunelab.distributed`): on the other ranks this
    returns ``path`` without touching the file system."""
    path = Path(path)
    if not distributed.is_writer():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # layout.TEMP_GLOBS
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def save_file(tensors: Mapping[str, torch.Tensor], filename: str, metadata: Mapping[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, imported on first use (it imports torch)."""
    from safetensors.torch import save_file as save

    # safetensors annotates plain dicts though it only reads them; shallow copies satisfy it
    save(dict(tensors), filename, metadata=None if metadata is None else dict(metadata))


def atomic_save_tensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Save tensors as safetensors (contiguous CPU copies) with their checksum in the metadata, atomically.

    safetensors streams the file to disk (never the whole file in memory: image caches can be
    gigabytes) through a temporary file of its own, ``.tmpXXXXXX`` beside ours; the run's next lock
    holder and ``prunelab gc`` clean both kinds (:data:`~prunelab.store.layout.TEMP_GLOBS`).
    """
    if not distributed.is_writer():  # atomic_write would not write it: spare the digest
        return Path(path)
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    sealed = seal(cpu, metadata)
    return atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=sealed))


def _missing(path: Path) -> Exception:
    """A missing tensor file is damage when the run holding it has finished (it was written before the
    summary), otherwise simply not there."""
    owner = owning_run(path)
    if owner is not None:
        root, run_id = owner
        if RunLayout(root / run_id).summary_path.is_file():
            return DamagedFile(path, f"missing, although run {run_id} finished with it")
    return FileNotFoundError(f"tensor file not found: {path}")


def _read_checked(path: Path, keep: bool) -> tuple[dict[str, torch.Tensor], dict[str, str], bool]:
    """Read ``path`` tensor by tensor, checking its digest; the tensors are returned when ``keep``."""
    if not path.is_file():
        raise _missing(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            names = sorted(handle.keys())
            kept: dict[str, torch.Tensor] = {}

            def tensors():
                for name in names:
                    tensor = handle.get_tensor(name)
                    if keep:
                        kept[name] = tensor
                    yield name, tensor

            computed = digest_of(tensors(), metadata)
    except DamagedFile:
        raise
    except Exception as error:  # safetensors raises several types for damaged files
        raise DamagedFile(path, f"damaged (not a readable safetensors file: {error})") from error
    verified = check_digest(path, metadata, computed)
    return kept, metadata, verified


def load_tensor_file(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file, after checking its checksum.

    Raises :class:`~prunelab.store.integrity.DamagedFile` (naming the file and how to recover) when the
    file is unreadable, does not match its checksum, or is missing from a finished run.
    """
    tensors, metadata, _ = _read_checked(Path(path), keep=True)
    import torch

    if torch.device(device).type != "cpu":
        tensors = {name: t.to(device) for name, t in tensors.items()}
    return tensors, {k: v for k, v in metadata.items() if k not in (INTEGRITY_KEY, DIGEST_KEY)}


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, checked as :func:`load_tensor_file` does."""
    return load_tensor_file(path, device)[0]


def verify_tensor_file(path: str | os.PathLike) -> bool:
    """Check ``path`` against its checksum without keeping its tensors: True when verified, False when
    it has no checksum (written before checksums were recorded); raises ``DamagedFile`` otherwise."""
    return _read_checked(Path(path), keep=False)[2]


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
