"""Checksums of tensor files, and the error for a store file that cannot be trusted.

Every safetensors file the store writes carries its own checksum in its metadata:
``prunelab.integrity = "sha256/1"`` names the scheme and ``prunelab.sha256`` holds the SHA-256 of

    canonical JSON {"metadata": <every other metadata entry>, "tensors": [[name, dtype, shape], ...]}
    followed by the raw bytes of each tensor, tensors in sorted-name order.

The digest covers everything a reader uses (the other metadata, every tensor's name, dtype, shape and
bytes) except itself. Because it is inside the file, file and checksum reach the disk in one
atomic rename: there is no moment at which one exists without the other, so no crash can make a good
file look damaged or a damaged file look good. A file with neither key was written before checksums
were recorded and is accepted unverified; a file with only one of the two (a damaged key) is damaged.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunelab.errors import UserError
from prunelab.store.layout import RunLayout

if TYPE_CHECKING:
    import torch

__all__ = [
    "DamagedFile",
    "INTEGRITY_KEY",
    "DIGEST_KEY",
    "SCHEME",
    "tensor_digest",
    "seal",
    "check_digest",
    "owning_run",
    "recovery_advice",
]

INTEGRITY_KEY = "prunelab.integrity"
DIGEST_KEY = "prunelab.sha256"
SCHEME = "sha256/1"


class DamagedFile(UserError, ValueError):
    """A store file that exists (or must exist) but cannot be trusted: its checksum does not match, it
    cannot be parsed, a finished run lacks it, or a summary breaks the schema. The message names the
    file, what is wrong and how to recover."""

    def __init__(self, path: str | Path, problem: str, advice: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.advice = recovery_advice(self.path) if advice is None else advice
        super().__init__(f"{self.path}: {problem}. {self.advice}".rstrip())


def _tensor_bytes(tensor: torch.Tensor) -> Any:
    """The tensor's bytes as a zero-copy buffer (a NumPy view; the torch-op chain per tensor cost
    more than hashing a ResNet-20 state dict)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu" or not tensor.is_contiguous():
        tensor = tensor.to("cpu").contiguous()
    try:
        return tensor.numpy()
    except TypeError:  # dtypes NumPy lacks (bfloat16, float8): the same bytes, read as uint8
        import torch

        return tensor.reshape(-1).view(torch.uint8).numpy()


def tensor_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """The SHA-256 described in the module docstring (the digest entry itself is left out)."""
    return digest_of(sorted(tensors.items()), metadata)


def digest_of(items: Iterable[tuple[str, torch.Tensor]], metadata: Mapping[str, str]) -> str:
    """:func:`tensor_digest` over ``(name, tensor)`` pairs already sorted by name (tensors may be read
    one at a time, so that checking a large file never holds all of it)."""
    items = list(items)
    index = {
        "metadata": {k: v for k, v in sorted(metadata.items()) if k != DIGEST_KEY},
        "tensors": [[name, str(t.dtype), list(t.shape)] for name, t in items],
    }
    digest = hashlib.sha256(json.dumps(index, sort_keys=True, separators=(",", ":")).encode())
    for _, tensor in items:
        if tensor.numel():
            digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def seal(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> dict[str, str]:
    """``metadata`` plus the integrity entries for a file holding ``tensors``."""
    sealed = {k: v for k, v in (metadata or {}).items() if k not in (INTEGRITY_KEY, DIGEST_KEY)}
    sealed[INTEGRITY_KEY] = SCHEME
    sealed[DIGEST_KEY] = tensor_digest(tensors, sealed)
    return sealed


def check_digest(path: Path, metadata: Mapping[str, str], computed: str | None) -> bool:
    """Raise :class:`DamagedFile` unless ``computed`` (the digest of what was read) matches the one
    recorded in ``metadata``. Returns False for a file written before checksums (nothing to check)."""
    scheme, recorded = metadata.get(INTEGRITY_KEY), metadata.get(DIGEST_KEY)
    if scheme is None and recorded is None:
        return False
    if scheme is None or recorded is None:
        raise DamagedFile(path, "damaged (its checksum record is incomplete)")
    if scheme != SCHEME:
        raise DamagedFile(path, f"damaged or written by a newer prunelab (unknown integrity scheme {scheme!r})")
    if computed != recorded:
        raise DamagedFile(path, "damaged (checksum mismatch: its contents changed after it was written)")
    return True


# which run a file belongs to, and how to recover it ----------------------------------------------


def owning_run(path: str | Path) -> tuple[Path, str] | None:
    """``(store root, run id)`` of the run directory holding ``path``, or None outside any run.

    A run directory is one with a ``spec.yaml`` (written first); the stages of a multi-stage experiment are run
    directories inside their parent's, so the id is the path from the outermost one.
    """
    path = Path(path).absolute()
    runs = [parent for parent in path.parents if RunLayout(parent).spec_path.is_file()]
    if not runs:
        return None
    innermost, outermost = runs[0], runs[0]
    for parent in runs[1:]:  # the stages' chain of parents, without gaps
        if parent == outermost.parent:
            outermost = parent
    return outermost.parent, innermost.relative_to(outermost.parent).as_posix()


def _home_flag(root: Path) -> str:
    from prunelab.store.runs import home_dir

    try:
        default = home_dir().resolve()
    except OSError:  # pragma: no cover - an unreadable home
        default = None
    return "" if root.resolve() == default else f" --home {shlex.quote(str(root))}"


def recovery_advice(path: Path) -> str:
    """What to do about a damaged or missing ``path``, from where it lives in the store."""
    owner = owning_run(path)
    if owner is None:
        return "Delete it and run the command that wrote it again."
    root, run_id = owner
    home = _home_flag(root)
    run = RunLayout(root / run_id)
    path = Path(path).absolute()
    if run.checkpoints_dir in path.parents:
        if run.summary_path.is_file():
            return (
                f"It is a crash-resume checkpoint of run {run_id}, which has finished and does not need it: delete it"
            )
        return (
            f"It is a crash-resume checkpoint of run {run_id}: re-running the run's command skips it and "
            "resumes from the previous checkpoint, or from the start"
        )
    if path == run.summary_path and run.stage_dirs():
        return (
            f"Delete it and re-run the command of run {run_id}: the summary is rebuilt from the run's finished "
            "stages without training them again"
        )
    return (
        f"It belongs to run {run_id}: remove the run with `prunelab rm {run_id}{home}` (`prunelab show "
        f"{run_id}{home}` prints its spec first) and re-run the command that created it, which computes it again"
    )
