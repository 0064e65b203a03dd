"""NTK analysis of stored runs: for every mask of a run (a train, prune or branch run, or each level
of a lottery), the empirical NTK on the first N test examples at its saved steps, compared with the
dense network's kernel and with random masks of the same density, with and without the
``1/sqrt(d)`` rescaling of :func:`prunelab.pruning.rescale.ntk_rescale`.

Kernels (trace kernel ``Θ_tr``, :func:`prunelab.analysis.ntk.empirical_ntk`):

* **mask** — the run's network at each requested saved step (its stored weights; pruned weights are
  zero there, and the mask drops their Jacobian columns).
* **dense** — the unpruned network the mask was applied to. A lottery's dense network is its level 0
  (trained alongside, so it exists at every saved step); a prune run's is the seeded initialisation
  of its spec; a branch's is its parent's weights at the branch's start step (none for
  ``--reinitialize`` branches). A prune or branch run has a dense kernel at its start only.
* **random** / **random+rescale** — at the start step only: the dense weights under a uniformly
  random mask keeping the same number of the considered (non-ignored) prunable weights, exact
  count, global scope, seeded; then the same with the kept weights multiplied by ``1/sqrt(d)``, ``d``
  the considered density (:func:`~prunelab.pruning.rescale.ntk_rescale` in ``global`` mode, the
  reference code's rule and prunelab's for ``random_global``; ignored tensors unscaled).

Every kernel gets its trace, extreme eigenvalues and condition number; every pruned kernel its
distances (:func:`prunelab.analysis.ntk.compare_kernels`) from the dense kernel of the same step, and
every trained kernel its kernel distance from the same network's start kernel (how far the kernel
moved in training). Results are written once per setting under ``<run>/ntk/<setting>/`` (JSON and
PNG, atomically) and reused on the next call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunelab.analysis.ntk import compare_kernels, empirical_ntk, kernel_distance, kernel_stats, ntk_eigenvalues
from prunelab.experiments.lottery import derived_seed
from prunelab.experiments.reading import check_registry_run, run_mask, run_spec, run_weights
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.pruning.baselines import random_scores_like
from prunelab.pruning.rescale import ntk_rescale
from prunelab.pruning.selection import match_patterns, select_by_density
from prunelab.specs import ExperimentSpec, SpecError
from prunelab.steps import parse_step
from prunelab.store import Run, RunStore, atomic_write_json, read_json

__all__ = ["NTKSettings", "NTKStudy", "analyse_run", "analyse_runs", "STUDY_FORMAT"]

STUDY_FORMAT = "prunelab.ntk/1"


@dataclass(frozen=True)
class NTKSettings:
    """``batch`` test examples; ``steps``: ``init``, ``final`` or step strings (``1ep``, ``500it``),
    empty for every saved step; ``seed`` of the random masks."""

    batch: int = 100
    steps: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 2:
            raise SpecError(f"--batch is the number of test examples in the kernel, at least 2; got {self.batch!r}")
        for step in self.steps:
            if step not in ("init", "final"):
                parse_step(step)

    def key(self) -> str:
        text = json.dumps({"format": STUDY_FORMAT, **dataclasses.asdict(self)}, sort_keys=True)
        steps = "all" if not self.steps else "-".join(self.steps)
        return f"batch{self.batch}-steps_{steps}-seed{self.seed}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


# --- where things are in the store (the one place that knows the run directory layout) ----------


class _Files:
    """Paths and sub-runs of the run directory layout (through :class:`~prunelab.store.Run` and
    :mod:`prunelab.experiments.reading`)."""

    @staticmethod
    def spec(run: Run) -> ExperimentSpec:
        check_registry_run(run)
        return run_spec(run)

    @staticmethod
    def mask(run: Run) -> Mask:
        return run_mask(run)

    @staticmethod
    def weights(run: Run, step: int, *, effective: bool = True) -> dict[str, torch.Tensor]:
        return run_weights(run, step, flag="--steps", effective=effective)

    @staticmethod
    def saved_steps(run: Run) -> list[int]:
        return run.saved_steps()

    @staticmethod
    def level(run: Run, level: int) -> Run:
        target = (run.stage_info().get("stages") or {}).get(f"level_{level}")
        if isinstance(target, str):  # level 0 of a registry lottery: its spec's train run, in the store root
            return Run(path=run.path.parent / target, run_id=target)
        return Run(path=run.path / f"level_{level}", run_id=f"{run.run_id}/level_{level}")

    @staticmethod
    def output(run: Run, settings: NTKSettings) -> Path:
        return run.path / "ntk" / settings.key()


# --- what to analyse ----------------------------------------------------------------------------


@dataclass
class _Target:
    """One mask: the (sub-)run holding it and how its dense counterpart is found."""

    run: Run
    method: str
    dense: str  # "level0" (lottery), "self" (a dense run), "init" (seeded initialisation), "parent",
    # "frozen" (a supermask's own frozen weights, pruned ones included), "none"
    parent: Run | None = None


def _method_label(summary: dict[str, Any], spec: ExperimentSpec) -> str:
    kind = summary.get("kind")
    if kind == "lottery":
        strategy = summary.get("strategy", spec.prune.strategy)
        label = "IMP" if strategy == "magnitude" else f"lottery:{strategy}"
        return label + (" +rescale" if spec.prune.ntk_rescale else "")
    if kind == "prune":
        return str(summary.get("strategy"))
    if kind == "branch":
        return f"{summary.get('strategy')} (branch)"
    if kind == "supermask":
        method = str(summary.get("method"))
        return f"{method} (lambda={summary.get('rerand_lambda', 0):g})" if method == "iterand" else method
    return "dense"


def _targets(store: RunStore, run: Run, spec: ExperimentSpec) -> list[_Target]:
    summary = run.summary()
    method = _method_label(summary, spec)
    kind = summary.get("kind")
    if kind == "lottery":
        return [
            _Target(_Files.level(run, row["level"]), "dense" if row["level"] == 0 else method, "level0")
            for row in summary["levels"]
        ]
    if kind == "prune":
        return [_Target(run, method, "init")]
    if kind == "branch":
        if (summary.get("args") or {}).get("reinitialize"):
            return [_Target(run, method, "none")]
        return [_Target(run, method, "parent", store.find(summary["parent"]))]
    if kind == "train":
        return [_Target(run, "dense", "self")]
    if kind == "supermask":
        return [_Target(run, method, "frozen")]
    raise SpecError(
        f"run {run.run_id} is a {kind!r} run; the NTK analysis reads train, prune, branch, lottery and supermask runs"
    )


# --- the analysis -------------------------------------------------------------------------------


@dataclass
class NTKStudy:
    """Rows (one per kernel) and where they were written."""

    run_id: str
    settings: NTKSettings
    rows: list[dict[str, Any]]
    directory: Path | None = None
    plots: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STUDY_FORMAT,
            "run_id": self.run_id,
            "settings": dataclasses.asdict(self.settings),
            "rows": self.rows,
            "directory": str(self.directory) if self.directory else None,
            "plots": self.plots,
        }


def _test_examples(bench: Workbench, n: int) -> torch.Tensor:
    """The first ``n`` examples of the test split, as the evaluation loader feeds them."""
    parts, have = [], 0
    for x, _ in bench.test_loader():
        parts.append(x)
        have += len(x)
        if have >= n:
            break
    if have < n:
        raise SpecError(f"--batch {n} is more than the {have} test examples of {bench.spec.dataset.name}")
    return torch.cat(parts)[:n]


def _resolve_steps(settings: NTKSettings, saved: list[int], bench: Workbench, run: Run) -> list[tuple[str, int]]:
    if not saved:
        raise SpecError(f"run {run.run_id} has no saved weights")
    if not settings.steps:
        return [("init" if s == saved[0] else ("final" if s == saved[-1] else f"{s}it"), s) for s in saved]
    out = []
    for text in settings.steps:
        step = saved[0] if text == "init" else saved[-1] if text == "final" else bench.to_iterations(text)
        if step not in saved:
            listed = ", ".join(f"{s}it" for s in saved)
            raise SpecError(
                f"--steps {text}: run {run.run_id} has no weights saved at step {step} (saved: {listed}); "
                "train with --train.save_steps to keep more steps"
            )
        label = text if text in ("init", "final") else f"{step}it"
        if (label, step) not in out:
            out.append((label, step))
    return out


class _Kernels:
    """Computes and caches kernels of one study: the model, the data, the dense references."""

    def __init__(self, bench: Workbench, x: torch.Tensor) -> None:
        self.bench = bench
        self.x = x
        self.model = bench.new_model()

    def kernel(self, weights: dict[str, torch.Tensor], mask: Mask | None) -> torch.Tensor:
        self.model.load_state_dict(weights)
        return empirical_ntk(self.model, self.x, mask=mask).cpu()


def _row(
    method: str,
    run_id: str,
    density: float,
    label: str,
    step: int,
    kernel: torch.Tensor,
    dense: torch.Tensor | None,
    start: torch.Tensor | None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "method": method,
        "run_id": run_id,
        "density": density,
        "step": label,
        "iteration": step,
        "start": start is None,
        **kernel_stats(kernel),
    }
    if dense is not None:
        row.update({f"{k}_dense": v for k, v in compare_kernels(dense, kernel).items()})
    else:
        row.update({f"{k}_dense": None for k in ("kernel_distance", "rel_frobenius", "rel_frobenius_scaled", "scale")})
    row["moved"] = kernel_distance(start, kernel) if start is not None else None
    row["eigenvalues"] = [float(v) for v in ntk_eigenvalues(kernel)]
    return row


def _random_masks(mask: Mask, spec: ExperimentSpec, seed: int) -> Mask:
    """A uniformly random mask keeping as many of the considered weights as ``mask`` does."""
    ignored = match_patterns(spec.prune.ignore, mask, what="ignore") if spec.prune.ignore else set()
    considered = [n for n in mask if n not in ignored]
    total = sum(mask[n].numel() for n in considered)
    kept = sum(int(mask[n].sum()) for n in considered)
    density = kept / total if total else 1.0
    generator = torch.Generator().manual_seed(derived_seed(spec.seed, "ntk-random", seed, repr(density)) % (2**63))
    scores = random_scores_like(mask, generator)
    return select_by_density(
        scores, Mask.ones_like(mask), density, scope="global", ignore=spec.prune.ignore, generator=generator
    )


def _dense_at(
    target: _Target, level0: Run | None, step: int, start: int, bench: Workbench, mask: Mask
) -> dict[str, torch.Tensor] | None:
    """The dense counterpart's weights at ``step``, or None where there is none."""
    if target.dense == "self":
        return _Files.weights(target.run, step)
    if target.dense == "level0":
        assert level0 is not None
        return _Files.weights(level0, step) if step in _Files.saved_steps(level0) else None
    if target.dense == "frozen":  # the weights never train, but IteRand re-draws pruned ones: at every step
        return _Files.weights(target.run, step, effective=False)
    if step != start:
        return None
    if target.dense == "init":
        weights = {k: v.detach().clone() for k, v in bench.new_model().state_dict().items()}
    elif target.dense == "parent":
        assert target.parent is not None
        if start not in _Files.saved_steps(target.parent):
            return None
        weights = _Files.weights(target.parent, start)
    else:
        return None
    own = _Files.weights(target.run, start)
    for name, keep in mask.items():  # the pruned network must be the dense one under the mask
        if not torch.equal(own[name][keep], weights[name][keep]):
            raise SpecError(
                f"run {target.run.run_id}: its start weights are not the dense reference's under its mask "
                f"(tensor {name}); the run was made by another version of the code"
            )
    return weights


def analyse_run(
    ref: str, settings: NTKSettings = NTKSettings(), *, store: RunStore | None = None, recompute: bool = False
) -> NTKStudy:
    """The NTK analysis of one run (every level of a lottery), written under ``<run>/ntk/`` and
    reused when it exists (``recompute=True`` computes it again)."""
    from prunelab.analysis.ntk_plots import plot_distance_vs_density, plot_spectra

    store = store or RunStore()
    run = store.find(ref)
    if not run.finished:
        raise SpecError(f"run {run.run_id} has not finished; finish it (re-run its command) first")
    directory = _Files.output(run, settings)
    result_path = directory / "ntk.json"
    if result_path.is_file() and not recompute:
        data = read_json(result_path)
        return NTKStudy(run.run_id, settings, data["rows"], directory, data.get("plots", []))
    spec = _Files.spec(run)
    bench = Workbench.from_spec(spec)
    x = _test_examples(bench, settings.batch)
    kernels = _Kernels(bench, x)
    targets = _targets(store, run, spec)
    level0 = targets[0].run if targets and targets[0].dense == "level0" else None
    dense_cache: dict[int, torch.Tensor] = {}
    rows: list[dict[str, Any]] = []
    for target in targets:
        mask = _Files.mask(target.run)
        saved = _Files.saved_steps(target.run)
        steps = _resolve_steps(settings, saved, bench, target.run)
        start = saved[0]
        start_kernel: torch.Tensor | None = None
        for label, step in steps:
            dense_weights = _dense_at(target, level0, step, start, bench, mask)
            dense_kernel = None
            if dense_weights is not None:
                if target.dense in ("level0", "self") and step in dense_cache:
                    dense_kernel = dense_cache[step]
                else:
                    dense_kernel = kernels.kernel(dense_weights, None)
                    if target.dense in ("level0", "self"):
                        dense_cache[step] = dense_kernel
            is_dense = mask.density == 1.0
            kernel = (
                dense_kernel
                if is_dense and dense_kernel is not None
                else kernels.kernel(_Files.weights(target.run, step), mask)
            )
            if step == start:
                start_kernel = kernel
            rows.append(
                _row(
                    target.method,
                    target.run.run_id,
                    mask.density,
                    label,
                    step,
                    kernel,
                    None if is_dense else dense_kernel,
                    start_kernel if step != start else None,
                )
            )
            if step == start and dense_weights is not None and dense_kernel is not None and not is_dense:
                rows.extend(
                    _random_rows(kernels, dense_weights, mask, spec, settings, target, label, step, dense_kernel)
                )
    study = NTKStudy(run.run_id, settings, rows, directory)
    spectra = plot_spectra(rows, directory / "spectra.png", title=f"NTK spectra: {run.run_id}")
    distance = plot_distance_vs_density(
        rows, directory / "distance_vs_density.png", title=f"NTK vs dense: {run.run_id}"
    )
    study.plots = [str(p) for p in (spectra, distance) if p]
    atomic_write_json(result_path, study.to_json())
    return study


def _random_rows(
    kernels: _Kernels,
    dense_weights: dict[str, torch.Tensor],
    mask: Mask,
    spec: ExperimentSpec,
    settings: NTKSettings,
    target: _Target,
    label: str,
    step: int,
    dense_kernel: torch.Tensor,
) -> list[dict[str, Any]]:
    random = _random_masks(mask, spec, settings.seed)
    plain = {k: v.clone() for k, v in dense_weights.items()}
    for name, keep in random.items():
        plain[name] = plain[name] * keep.to(plain[name].dtype)
    rescaled = dict(plain)
    # the rule prunelab applies to random_global lottery levels (ntk_rescale_mode auto): one factor
    # 1/sqrt(d) from the considered density, ignored tensors unscaled, as the reference code does
    rescaled.update(ntk_rescale({n: dense_weights[n] for n in random}, random, mode="global", ignore=spec.prune.ignore))
    return [
        _row(
            method, target.run.run_id, random.density, label, step, kernels.kernel(weights, random), dense_kernel, None
        )
        for method, weights in (("random", plain), ("random+rescale", rescaled))
    ]


def analyse_runs(
    refs: Sequence[str],
    settings: NTKSettings = NTKSettings(),
    *,
    store: RunStore | None = None,
    out: str | Path | None = None,
    recompute: bool = False,
) -> tuple[list[NTKStudy], list[str]]:
    """:func:`analyse_run` for each run; with several runs (or ``out``), plots of all their rows
    together in ``out`` (default ``prunelab-ntk``)."""
    from prunelab.analysis.ntk_plots import plot_distance_vs_density, plot_spectra

    if not refs:
        raise SpecError("give at least one run (id, unique prefix or directory); list them with `prunelab runs`")
    store = store or RunStore()
    studies = [analyse_run(ref, settings, store=store, recompute=recompute) for ref in refs]
    plots: list[str] = []
    if len(studies) > 1 or out is not None:
        folder = Path(out if out is not None else "prunelab-ntk")
        rows = [row for study in studies for row in study.rows]
        for path in (
            plot_spectra(rows, folder / "spectra.png", title="NTK spectra"),
            plot_distance_vs_density(rows, folder / "distance_vs_density.png", title="NTK vs dense"),
        ):
            if path:
                plots.append(str(path))
    return studies, plots
