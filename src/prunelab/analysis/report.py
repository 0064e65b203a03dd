"""Reports over finished runs: the networks they trained (one point per run, lottery level and control),
a table of mean ± std over seeds, and the standard figures as PNG: accuracy against density (log-scale
density axis, one line per method), per-layer densities of the masks, lottery levels with their
controls, supermask density sweeps beside the dense baseline. Figures are drawn on
:class:`matplotlib.figure.Figure` objects, never through pyplot's global state."""

from __future__ import annotations

import io
import json
import logging
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

from prunelab.analysis.tables import format_table
from prunelab.specs import ExperimentSpec, SpecError, from_dict, semantic_dict
from prunelab.specs.experiment import SECTIONS
from prunelab.store import DamagedFile, Run, RunLayout, RunStore, atomic_write_bytes

__all__ = [
    "METRICS",
    "TABLE_COLUMNS",
    "ReportFigure",
    "aggregate",
    "collect_points",
    "config_legend",
    "plot_accuracy_vs_density",
    "plot_layer_densities",
    "report_table",
    "standard_figures",
]

log = logging.getLogger("prunelab")

CONTROL_LABELS = {"reinit": "reinit", "shuffle": "shuffle", "retrain": "retrain", "shuffle_global": "shuffle_global"}


def collect_points(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One point per trained network of the runs: a run's own, or each level and control of a lottery.

    A point holds the run's id, the ``stage`` inside it (``level_2``, ``level_2/reinit``; ``""`` for the
    run itself), ``kind``, the ``method`` it is drawn and averaged as, ``strategy``, ``level``,
    ``control``, ``seed``, ``dataset``, ``model``, ``density``, ``test_accuracy`` and the other metrics
    of :data:`METRICS`, and ``layer_densities`` (the per-layer density of its mask, as its summary
    records it; ``{}`` for a dense run)."""
    points: list[dict[str, Any]] = []
    runs = list(runs)
    summaries = {run.run_id: run.summary() for run in runs}
    methods = {run.run_id: _method(summaries[run.run_id]) for run in runs}
    labels = _config_labels({run.run_id: (methods[run.run_id], _config_key(run)) for run in runs})
    for run in runs:
        summary = summaries[run.run_id]
        method = methods[run.run_id] + labels[run.run_id]
        common = {
            "run_id": run.run_id,
            "kind": summary.get("kind", run.kind),
            "seed": summary.get("seed", 0),
            "strategy": summary.get("strategy") or summary.get("method"),
            **_network(run),
        }
        if summary.get("kind") == "lottery":
            stages = _stage_summaries(run)
            for row in summary["levels"]:
                level = row["level"]
                name, stage = stages.get((level, None), ("", row))  # without its stage: the lottery's row
                points.append(
                    _point(
                        common,
                        method,
                        stage,
                        stage=name,
                        level=level,
                        density=row["density"],
                        accuracy=row["test_accuracy"],
                    )
                )
                for control in CONTROL_LABELS:
                    if control in row:
                        name, stage = stages.get((level, control), ("", {}))
                        points.append(
                            _point(
                                common,
                                f"{method} {control}",
                                stage,
                                stage=name,
                                level=level,
                                control=control,
                                density=row["density"],
                                accuracy=row[control],
                            )
                        )
        else:
            points.append(
                _point(common, method, summary, stage="", density=summary["density"], accuracy=summary["test_accuracy"])
            )
    return points


def _network(run: Run) -> dict[str, Any]:
    """The data set and model a run trained, by name, from its spec (``None`` for a user's own model)."""
    data = run.spec_data()
    return {
        section: (data.get(section) or {}).get("name") if isinstance(data.get(section), dict) else None
        for section in ("dataset", "model")
    }


#: the metrics a point carries besides its test accuracy and density (``None`` when a run lacks one)
METRICS = ("target_density", "test_loss", "best_accuracy", "best_step", "final_step", "wall_seconds")


def _point(
    common: dict[str, Any],
    method: str,
    summary: dict[str, Any],
    *,
    stage: str,
    density: float,
    accuracy: float | None,
    level: int | None = None,
    control: str | None = None,
) -> dict[str, Any]:
    return {
        **common,
        "stage": stage,
        "method": method,
        "level": level,
        "control": control,
        "density": density,
        "test_accuracy": accuracy,
        **{key: summary.get(key) for key in METRICS},
        "layer_densities": summary.get("layer_densities") or {},
    }


def _stage_summaries(run: Run) -> dict[tuple[int, str | None], tuple[str, dict[str, Any]]]:
    """A lottery's stages by ``(level, control)``: each one's name (``level_1/reinit``) and its summary.
    Stages inside the run record their level and control; a stage kept as a run of its own (level 0, its
    spec's train run) is named by the lottery's ``stage.json`` ``stages`` pointers. A damaged stage is
    named on stderr and left out: the lottery's own summary still gives its accuracy."""
    found: dict[tuple[int, str | None], tuple[str, dict[str, Any]]] = {}
    pending = list(run.stage_dirs())
    while pending:
        path = pending.pop()
        pending += RunLayout(path).stage_dirs()
        name = path.relative_to(run.path).as_posix()
        summary = _stage_summary(Run(path, f"{run.run_id}/{name}"))
        if summary is not None and isinstance(summary.get("level"), int):
            found[(summary["level"], summary.get("control"))] = (name, summary)
    store = RunStore(run.path.parent)
    for name, target in (run.stage_info().get("stages") or {}).items():
        level = _LEVEL_STAGE.fullmatch(name)
        summary = _stage_summary(store.run(target)) if level and isinstance(target, str) else None
        if level and summary is not None:
            found[(int(level.group(1)), None)] = (name, summary)
    return found


_LEVEL_STAGE = re.compile(r"level_(\d+)")


def _stage_summary(stage: Run) -> dict[str, Any] | None:
    if not stage.finished:
        return None
    try:
        return stage.summary()
    except DamagedFile as error:
        log.warning(
            "prunelab: warning: run %s: %s is %s; its level's metrics come from the lottery's summary",
            stage.run_id,
            error.path.name,
            error.problem,
        )
        return None


def _method(summary: dict[str, Any]) -> str:
    """What a run's points are labelled with: the lottery's or pruning strategy, the supermask method."""
    kind = summary.get("kind", "train")
    if kind == "lottery":
        strategy = summary.get("strategy", "magnitude")
        return "IMP" if strategy == "magnitude" else f"lottery:{strategy}"
    if kind == "supermask":
        method = str(summary.get("method", "supermask"))
        if method == "iterand":  # lambda = 0 is IteRand's own edge-popup baseline: keep the two apart
            return f"iterand (lambda={summary.get('rerand_lambda', 0.1):g})"
        return method
    method = summary.get("strategy") or kind
    return f"{method} (multishot)" if summary.get("experiment") == "multishot" else str(method)


def _config_key(run: Run) -> str:
    """What a run's settings are apart from its seed, its method and its density: runs of one method that
    differ in anything else are different experiments and must not be averaged as replicates. Specs are
    compared by the fields that differ from their defaults, among the sections the run's kind reads."""
    data = run.spec_data()
    try:
        spec = from_dict(ExperimentSpec, data)
    except SpecError:
        settings: Any = data
    else:
        settings = semantic_dict(spec.for_kind(run.kind) if run.kind in SECTIONS else spec)
        settings.pop("seed", None)
        settings.get("prune", {}).pop("strategy", None)
        for key in ("method", "density"):
            settings.get("supermask", {}).pop(key, None)
    stage = json.loads(run.stage_path.read_text()) if run.stage_path.is_file() else {}
    for key in ("density", "method", "parent", "stages"):  # the x axis, the label, per-seed parents and level 0s
        stage.pop(key, None)
    args = {k: v for k, v in (stage.pop("args", None) or {}).items() if k not in ("prune_fraction", "strategy")}
    if args:
        stage["args"] = args
    return json.dumps([settings, stage], sort_keys=True, default=str)


def config_legend(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """What each ``[config N]`` label of :func:`collect_points` stands for: per labelled method and
    configuration, its runs and the settings in which the configurations of that method differ
    (dotted names, ``None`` where a configuration leaves a setting at its default)."""
    runs = list(runs)
    methods = {run.run_id: _method(run.summary()) for run in runs}
    keys = {run.run_id: _config_key(run) for run in runs}
    labels = _config_labels({rid: (methods[rid], keys[rid]) for rid in methods})
    configs: dict[str, dict[str, Any]] = {}
    for rid, label in labels.items():
        if label:
            entry = configs.setdefault(methods[rid] + label, {"base": methods[rid], "key": keys[rid], "runs": []})
            entry["runs"].append(rid)
    flat = {name: _flatten(json.loads(entry["key"])) for name, entry in configs.items()}
    legend = []
    for name, entry in sorted(configs.items()):
        siblings = [flat[other] for other, e in configs.items() if e["base"] == entry["base"]]
        names = sorted({k for f in siblings for k in f})
        differing = [k for k in names if len({json.dumps(f.get(k), sort_keys=True) for f in siblings}) > 1]
        legend.append(
            {"method": name, "runs": sorted(entry["runs"]), "settings": {k: flat[name].get(k) for k in differing}}
        )
    return legend


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``[settings, stage]`` of :func:`_config_key` as dotted names (stage arguments as ``args.*``)."""
    if isinstance(value, list) and not prefix and len(value) == 2:
        return {**_flatten(value[0], ""), **_flatten(value[1], "")}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _config_labels(configs: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Per run: '' when every run of its method shares one configuration, else ' [config 1]', ' [config 2]',
    ... numbering that method's distinct configurations."""
    by_method: dict[str, list[str]] = defaultdict(list)
    for method, key in configs.values():
        by_method[method].append(key)
    numbers = {method: {key: i + 1 for i, key in enumerate(sorted(set(keys)))} for method, keys in by_method.items()}
    return {
        run_id: (f" [config {numbers[method][key]}]" if len(numbers[method]) > 1 else "")
        for run_id, (method, key) in configs.items()
    }


def aggregate(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation of test accuracy per (method, density rounded to 4 significant digits),
    with the ids of the runs that went into each row (a network without an accuracy is left out)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        if p["test_accuracy"] is not None:
            groups[(p["method"], _rounded(p["density"]))].append(p)
    rows = []
    for (method, density), members in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        accs = [p["test_accuracy"] for p in members]
        rows.append(
            {
                "method": method,
                "density": density,
                "mean_accuracy": statistics.fmean(accs),
                "std_accuracy": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "seeds": len(accs),
                "run_ids": list(dict.fromkeys(p["run_id"] for p in members)),
            }
        )
    return rows


def _rounded(density: float) -> float:
    return float(f"{density:.4g}")


#: the columns of the report's table, on the command line and in the HTML page
TABLE_COLUMNS = ("method", "density", "mean_accuracy", "std_accuracy", "seeds")


def report_table(rows: Sequence[dict[str, Any]]) -> str:
    return format_table(rows, TABLE_COLUMNS)


@dataclass(frozen=True)
class ReportFigure:
    """One figure of a report: its file name, a caption and the PNG bytes."""

    name: str
    caption: str
    png: bytes = field(repr=False)


def standard_figures(points: Sequence[dict[str, Any]], title: str = "") -> list[ReportFigure]:
    """The figures a set of runs calls for: accuracy against density over every network; when there are
    lotteries, their levels with the controls; when there are supermasks, their density sweep beside the
    dense baseline; the per-layer densities of the masks."""
    figures = [
        ReportFigure(
            "accuracy_vs_density.png",
            "Test accuracy against density, every method (mean ± std over seeds)",
            png_bytes(accuracy_vs_density_figure(aggregate(points), title)),
        )
    ]
    lottery = lottery_levels_figure(points, title)
    if lottery is not None:
        figures.append(
            ReportFigure(
                "lottery_levels.png",
                "Lottery tickets: test accuracy per level, with the controls (mean ± std over seeds)",
                png_bytes(lottery),
            )
        )
    supermask = supermask_density_figure(points, title)
    if supermask is not None:
        figures.append(
            ReportFigure(
                "supermask_density.png",
                "Supermasks: test accuracy against density, "
                "edge-popup and IteRand beside the dense network (mean ± std over seeds)",
                png_bytes(supermask),
            )
        )
    layers = layer_densities_figure(points)
    if layers is not None:
        figures.append(
            ReportFigure("layer_densities.png", "Per-layer density of the masks (mean over seeds)", png_bytes(layers))
        )
    return figures


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def _save_figure(fig: Figure, path: Path) -> Path:
    return atomic_write_bytes(path, png_bytes(fig))


def plot_accuracy_vs_density(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    return _save_figure(accuracy_vs_density_figure(rows, title), Path(path))


def plot_layer_densities(points: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    fig = layer_densities_figure(points)
    return None if fig is None else _save_figure(fig, Path(path))


def _band(ax: Any, xs: Sequence[float], rows: Sequence[dict[str, Any]], label: str) -> None:
    """A line of mean accuracies (in %) with a band of ±1 standard deviation where there are several seeds."""
    ys = [100 * r["mean_accuracy"] for r in rows]
    es = [100 * r["std_accuracy"] for r in rows]
    line = ax.plot(xs, ys, marker="o", markersize=3, label=label)[0]
    if any(e > 0 for e in es):
        ax.fill_between(
            xs, [y - e for y, e in zip(ys, es)], [y + e for y, e in zip(ys, es)], color=line.get_color(), alpha=0.2
        )


def accuracy_vs_density_figure(rows: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Log-scale density axis (dense on the left), one line per method; a method with only a dense point
    among sparse ones (the weight-trained network beside supermasks) is a dashed line across the plot."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    methods = sorted({r["method"] for r in rows})
    sparse = any(r["density"] < 1.0 for r in rows)
    for method in methods:
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: -r["density"])
        if sparse and len(pts) == 1 and pts[0]["density"] == 1.0:
            y, e = 100 * pts[0]["mean_accuracy"], 100 * pts[0]["std_accuracy"]
            ax.axhline(y, linestyle="--", linewidth=1, color="black", label=f"{method} (dense)")
            if e > 0:
                ax.axhspan(y - e, y + e, color="black", alpha=0.08)
            continue
        _band(ax, [100 * r["density"] for r in pts], pts, method)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("density (% of prunable weights kept, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def layer_densities_figure(points: Sequence[dict[str, Any]]) -> Figure | None:
    """Per-layer densities of the masks, one panel per method, one line per density (averaged over seeds;
    dense networks, and controls, which keep or reshuffle their level's mask, are left out)."""
    groups: dict[tuple[str, float], list[dict[str, float]]] = defaultdict(list)
    for p in points:
        if p.get("layer_densities") and p.get("control") is None and p["density"] < 1.0:
            groups[(p["method"], _rounded(p["density"]))].append(p["layer_densities"])
    if not groups:
        return None
    methods = sorted({method for method, _ in groups})
    cols = min(3, len(methods))
    rows = math.ceil(len(methods) / cols)
    fig = Figure(figsize=(5 * cols, 3.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, method in zip(axes.flat, methods):
        mine = sorted(((k, v) for k, v in groups.items() if k[0] == method), key=lambda kv: -kv[0][1])
        for (_, density), found in mine:
            layers = list(found[0])
            means = [statistics.fmean(d.get(n, 0.0) for d in found) for n in layers]
            ax.plot(range(len(layers)), [max(m, 1e-6) for m in means], marker=".", label=f"{100 * density:.3g}%")
        ax.set_yscale("log")
        ax.set_title(method)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer index")
        ax.set_ylabel("layer density")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(methods) :]:
        ax.axis("off")
    fig.suptitle("per-layer density (a fully pruned layer is drawn at 1e-6)", fontsize=9)
    fig.tight_layout()
    return fig


def lottery_levels_figure(points: Sequence[dict[str, Any]], title: str = "") -> Figure | None:
    """Test accuracy per lottery level, one line per lottery method and one per control (mean ± std over
    seeds); the ticks also give each level's density when every lottery shares it."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for p in points:
        if p["kind"] == "lottery" and p["level"] is not None and p["test_accuracy"] is not None:
            groups[(p["method"], p["level"])].append(p)
    if not groups:
        return None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for method in sorted({m for m, _ in groups}):
        levels = sorted(level for m, level in groups if m == method)
        rows = [_mean_std([p["test_accuracy"] for p in groups[(method, level)]]) for level in levels]
        _band(ax, levels, rows, method)
    densities: dict[int, set[float]] = defaultdict(set)
    for (_, level), found in groups.items():
        densities[level].update(_rounded(p["density"]) for p in found)
    levels = sorted(densities)
    ax.set_xticks(levels)
    if all(len(densities[level]) == 1 for level in levels):
        ax.set_xticklabels([f"{level}\n{100 * next(iter(densities[level])):.3g}%" for level in levels])
        ax.set_xlabel("lottery level (density kept)")
    else:
        ax.set_xlabel("lottery level")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: lottery levels" if title else "lottery levels")
    return fig


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean_accuracy": statistics.fmean(values),
        "std_accuracy": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def supermask_density_figure(points: Sequence[dict[str, Any]], title: str = "") -> Figure | None:
    """The supermask methods against density, with the dense weight-trained runs of the same model and
    data set as a baseline across the plot."""
    masks = [p for p in points if p["kind"] == "supermask"]
    if not masks:
        return None
    networks = {(p["dataset"], p["model"]) for p in masks}
    dense = [p for p in points if p["kind"] == "train" and (p["dataset"], p["model"]) in networks]
    heading = f"{title}: supermasks" if title else "supermasks (untrained weights)"
    return accuracy_vs_density_figure(aggregate(masks + dense), heading)
