"""Reports over finished runs: a table and PNG plots of accuracy against density (log-scale density
axis, one line per method, mean ± std over seeds), and per-layer densities per strategy."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prunelab.specs import ExperimentSpec, SpecError, from_dict, semantic_dict
from prunelab.specs.experiment import SECTIONS
from prunelab.store import Run
from prunelab.store.atomic import atomic_write

__all__ = ["collect_points", "config_legend", "aggregate", "plot_accuracy_vs_density", "plot_layer_densities",
           "report_table"]

CONTROL_LABELS = {"reinit": "reinit", "shuffle": "shuffle", "retrain": "retrain", "shuffle_global": "shuffle_global"}


def collect_points(runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One point (method, density, accuracy, seed, layer densities) per trained network."""
    points: list[dict[str, Any]] = []
    runs = list(runs)
    summaries = {run.run_id: run.summary() for run in runs}
    methods = {run.run_id: _method(summaries[run.run_id]) for run in runs}
    labels = _config_labels({run.run_id: (methods[run.run_id], _config_key(run)) for run in runs})
    for run in runs:
        summary = summaries[run.run_id]
        seed = summary.get("seed", 0)
        method = methods[run.run_id] + labels[run.run_id]
        if summary.get("kind") == "lottery":
            for row in summary["levels"]:
                points.append({"method": method, "density": row["density"], "accuracy": row["test_accuracy"],
                               "seed": seed, "run_id": run.run_id})
                for control in CONTROL_LABELS:
                    if control in row:
                        points.append({"method": f"{method} {control}", "density": row["density"],
                                       "accuracy": row[control], "seed": seed, "run_id": run.run_id})
        else:
            points.append({"method": method, "density": summary["density"], "accuracy": summary["test_accuracy"],
                           "seed": seed, "run_id": run.run_id, "layer_densities": summary.get("layer_densities", {})})
    return points


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
        legend.append({"method": name, "runs": sorted(entry["runs"]),
                       "settings": {k: flat[name].get(k) for k in differing}})
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
    """Mean and standard deviation of accuracy per (method, density rounded to 4 significant digits)."""
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    for p in points:
        groups[(p["method"], float(f"{p['density']:.4g}"))].append(p["accuracy"])
    rows = []
    for (method, density), accs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        rows.append({"method": method, "density": density, "mean_accuracy": statistics.fmean(accs),
                     "std_accuracy": statistics.stdev(accs) if len(accs) > 1 else 0.0, "seeds": len(accs)})
    return rows


def report_table(rows: Sequence[dict[str, Any]]) -> str:
    from prunelab.cli.common import format_table

    return format_table(rows, ["method", "density", "mean_accuracy", "std_accuracy", "seeds"])


def _save_figure(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def plot_accuracy_vs_density(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = sorted({r["method"] for r in rows})
    sparse = any(r["density"] < 1.0 for r in rows)
    for method in methods:
        pts = sorted((r for r in rows if r["method"] == method), key=lambda r: -r["density"])
        if sparse and len(pts) == 1 and pts[0]["density"] == 1.0:
            # a dense baseline (e.g. the weight-trained network beside supermasks): a line across the plot
            y, e = 100 * pts[0]["mean_accuracy"], 100 * pts[0]["std_accuracy"]
            ax.axhline(y, linestyle="--", linewidth=1, color="black", label=f"{method} (dense)")
            if e > 0:
                ax.axhspan(y - e, y + e, color="black", alpha=0.08)
            continue
        xs = [100 * r["density"] for r in pts]
        ys = [100 * r["mean_accuracy"] for r in pts]
        es = [100 * r["std_accuracy"] for r in pts]
        line = ax.plot(xs, ys, marker="o", markersize=3, label=method)[0]
        if any(e > 0 for e in es):
            ax.fill_between(xs, [y - e for y, e in zip(ys, es)], [y + e for y, e in zip(ys, es)],
                            color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.invert_xaxis()
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("density (% of prunable weights kept, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    out = _save_figure(fig, Path(path))
    plt.close(fig)
    return out


def plot_layer_densities(points: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Per-layer densities, one panel per strategy, one line per target density."""
    with_layers = [p for p in points if p.get("layer_densities")]
    if not with_layers:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({p["method"] for p in with_layers})
    cols = min(3, len(methods))
    rows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        for p in sorted((p for p in with_layers if p["method"] == method), key=lambda p: -p["density"]):
            layers = list(p["layer_densities"])
            ax.plot(range(len(layers)), [max(p["layer_densities"][n], 1e-6) for n in layers], marker=".",
                    label=f"{100 * p['density']:.3g}%")
        ax.set_yscale("log")
        ax.set_title(method)
        ax.set_xlabel("layer index")
        ax.set_ylabel("layer density")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle("per-layer density (a fully pruned layer is drawn at 1e-6)", fontsize=9)
    fig.tight_layout()
    out = _save_figure(fig, Path(path))
    plt.close(fig)
    return out
