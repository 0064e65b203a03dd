"""Export a trained run as an ordinary model: ``prunelab export RUN --out DIR`` and ``load_exported(DIR)``.

Any finished run with a mask — trained, pruned, a lottery level, a branch, a supermask — becomes::

    DIR/
      model.safetensors    the effective weights w ⊙ m as the ordinary model's state dict
      mask.safetensors     the mask (prunelab.masks.Mask)
      sparse.safetensors   the compact form: per masked tensor a bitmap (or int32 positions) and the
                           kept values; every other tensor dense (prunelab.masks.sparse)
      spec.yaml            the run's spec
      export.json          written last: format, source run, shapes, accuracies, each file's size and SHA-256

Nothing is pickled. :func:`load_exported` checks every file against its SHA-256 and rebuilds a registry
model (or returns the state dict of a user model's run), from the dense or the compact form.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from torch import nn

from prunelab.experiments.reading import run_mask, run_spec, run_weights
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.masks.sparse import pack_state, unpack_state
from prunelab.models import build_model
from prunelab.specs import SpecError, from_dict
from prunelab.specs.experiment import ExperimentSpec
from prunelab.specs.model import ModelSpec
from prunelab.store import RunStore, atomic_save_tensors, atomic_write_json, atomic_write_text, load_tensors
from prunelab.training import evaluate

__all__ = ["EXPORT_FORMAT", "ExportLayout", "export_run", "load_exported", "exported_mask"]

EXPORT_FORMAT = "prunelab.export/1"
_FORMS = ("dense", "sparse")


@dataclass(frozen=True)
class ExportLayout:
    """The files of an export directory."""

    path: Path

    @property
    def model_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def mask_path(self) -> Path:
        return self.path / "mask.safetensors"

    @property
    def sparse_path(self) -> Path:
        return self.path / "sparse.safetensors"

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def meta_path(self) -> Path:
        return self.path / "export.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_run(ref: str, out: str | Path, *, store: RunStore | None = None) -> dict[str, Any]:
    """Export the finished run ``ref`` into directory ``out``; returns the ``export.json`` content.

    The exported model is evaluated on the run's test set, and the export fails if its accuracy is not
    the run's own: what is written is exactly the network the run reported on."""
    store = store or RunStore()
    run = store.find(ref)
    if not run.finished:
        raise SpecError(f"run {run.run_id} has not finished; finish it (re-run its command) before exporting")
    summary = run.summary()
    if "final_step" not in summary:
        raise SpecError(
            f"run {run.run_id} ({run.kind}) holds no trained network; export one of its stages "
            "(a lottery's RUN/level_<L>)"
        )
    mask = run_mask(run)
    registry = not run.stage_info().get("user_model")
    state = run_weights(run, summary["final_step"])
    state = {name: (value * mask[name].to(value.dtype) if name in mask else value) for name, value in state.items()}

    meta: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "run_id": run.run_id,
        "kind": run.kind,
        "registry": registry,
        "density": mask.density,
        "kept_weights": mask.num_kept,
        "prunable_weights": mask.num_total,
        "run_test_accuracy": summary.get("test_accuracy"),
    }
    if registry:
        spec = run_spec(run)
        bench = Workbench.from_spec(spec)
        model = _registry_model(spec.model, bench.input_shape, bench.splits.num_classes)
        model.load_state_dict(state, strict=True)
        accuracy = evaluate(model.to(bench.device), bench.test_loader(), device=bench.device).accuracy
        if summary.get("test_accuracy") is not None and accuracy != summary["test_accuracy"]:
            raise RuntimeError(
                f"the exported model of {run.run_id} reaches test accuracy {accuracy}, the run "
                f"reported {summary['test_accuracy']}; nothing was exported (please report this)"
            )
        meta.update(
            {
                "model": spec.model.name,
                "input_shape": list(bench.input_shape),
                "num_classes": bench.splits.num_classes,
                "test_accuracy": accuracy,
            }
        )

    layout = ExportLayout(Path(out))
    atomic_save_tensors(layout.model_path, state, metadata={"format": EXPORT_FORMAT, "run_id": run.run_id})
    mask.save(layout.mask_path)
    tensors, sparse_meta = pack_state(state, mask)
    atomic_save_tensors(
        layout.sparse_path, tensors, metadata={"format": EXPORT_FORMAT, "sparse": json.dumps(sparse_meta)}
    )
    atomic_write_text(layout.spec_path, run.spec_path.read_text(encoding="utf-8"))
    files: dict[str, dict[str, Any]] = {
        path.name: {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in (layout.model_path, layout.mask_path, layout.sparse_path, layout.spec_path)
    }
    meta["files"] = files
    meta["sparse_fraction"] = files[layout.sparse_path.name]["bytes"] / files[layout.model_path.name]["bytes"]
    atomic_write_json(layout.meta_path, meta)
    return meta


def _registry_model(model_spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    # Built from seed 0: every value is then overwritten by the exported state dict.
    return build_model(model_spec, input_shape=tuple(input_shape), num_classes=int(num_classes), seed=0)


def _read_meta(layout: ExportLayout) -> dict[str, Any]:
    if not layout.meta_path.is_file():
        raise SpecError(
            f"{layout.path} is not a prunelab export (no {layout.meta_path.name}); "
            "make one with `prunelab export RUN --out DIR`"
        )
    meta = json.loads(layout.meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise SpecError(f"{layout.meta_path} is not a {EXPORT_FORMAT} export (format {meta.get('format')!r})")
    return meta


def _verified(layout: ExportLayout, meta: dict[str, Any], path: Path) -> Path:
    expected = meta.get("files", {}).get(path.name, {}).get("sha256")
    if not path.is_file():
        raise SpecError(f"{path} is missing from the export; export the run again")
    if expected != _sha256(path):
        raise SpecError(f"{path} is damaged (its SHA-256 differs from {layout.meta_path.name}); export the run again")
    return path


def load_exported(
    path: str | Path, *, form: str = "dense", device: str | torch.device = "cpu"
) -> nn.Module | dict[str, torch.Tensor]:
    """The network of an export directory: an ordinary ``nn.Module`` for a registry model (in train
    mode, like :func:`~prunelab.models.build_model`), the state dict for a user model's run.

    ``form="dense"`` reads ``model.safetensors``, ``"sparse"`` rebuilds the same weights from the compact
    ``sparse.safetensors``. Every file read is checked against the SHA-256 recorded at export."""
    if form not in _FORMS:
        raise SpecError(f"form must be one of {', '.join(_FORMS)}, got {form!r}")
    layout = ExportLayout(Path(path))
    meta = _read_meta(layout)
    if form == "dense":
        state = load_tensors(_verified(layout, meta, layout.model_path))
    else:
        sparse_path = _verified(layout, meta, layout.sparse_path)
        with safe_open(str(sparse_path), framework="pt") as handle:
            sparse_meta = json.loads((handle.metadata() or {})["sparse"])
        state, _ = unpack_state(load_tensors(sparse_path), sparse_meta)
    if not meta["registry"]:
        return {name: value.to(device) for name, value in state.items()}
    spec = from_dict(ExperimentSpec, _spec_data(layout, meta))
    model = _registry_model(spec.model, meta["input_shape"], meta["num_classes"])
    model.load_state_dict(state, strict=True)
    return model.to(device)


def _spec_data(layout: ExportLayout, meta: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(_verified(layout, meta, layout.spec_path).read_text(encoding="utf-8")) or {}


def exported_mask(path: str | Path) -> Mask:
    """The mask of an export directory (checked against its SHA-256)."""
    layout = ExportLayout(Path(path))
    return Mask.load(_verified(layout, _read_meta(layout), layout.mask_path))
