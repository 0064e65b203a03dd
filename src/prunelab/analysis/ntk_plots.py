"""Plots of an NTK study's rows (:mod:`prunelab.experiments.ntk`): the kernel spectra of each density
side by side, and the distances from the dense kernel against density, one line per method."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunelab.store.atomic import atomic_write

__all__ = ["plot_spectra", "plot_distance_vs_density", "plot_width_study", "MAX_SPECTRUM_PANELS"]

MAX_SPECTRUM_PANELS = 8
_FIXED_STYLES = {
    "dense": {"color": "black"},
    "random": {"color": "0.55", "linestyle": "--"},
    "random+rescale": {"color": "tab:orange", "linestyle": ":"},
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def _style(method: str, palette: dict[str, str]) -> dict[str, Any]:
    if method in _FIXED_STYLES:
        return dict(_FIXED_STYLES[method])
    if method not in palette:
        colours = ["tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
        palette[method] = colours[len(palette) % len(colours)]
    return {"color": palette[method]}


def _log_density_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("density (% of prunable weights kept, log scale)")


def plot_spectra(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """One panel per density (at most :data:`MAX_SPECTRUM_PANELS`, evenly spread): the eigenvalues of
    every kernel of that density, largest first, with the dense network's start kernel in each."""
    if not rows:
        return None
    plt = _pyplot()
    densities = sorted({round(r["density"], 6) for r in rows if r["method"] != "dense"}, reverse=True) or [1.0]
    if len(densities) > MAX_SPECTRUM_PANELS:
        step = (len(densities) - 1) / (MAX_SPECTRUM_PANELS - 1)
        densities = [densities[round(i * step)] for i in range(MAX_SPECTRUM_PANELS)]
    dense_start = next((r for r in rows if r["method"] == "dense" and r.get("start")), None)
    cols = min(4, len(densities))
    nrows = -(-len(densities) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False, sharey=True)
    palette: dict[str, str] = {}
    for ax, density in zip(axes.flat, densities):
        shown = [r for r in rows if round(r["density"], 6) == density and r["method"] != "dense"]
        if dense_start is not None:
            shown = [dense_start, *shown] if density != 1.0 else [r for r in rows if r["method"] == "dense"]
        for row in shown:
            values = [v for v in row["eigenvalues"] if v > 0]
            style = _style(row["method"], palette)
            if not row.get("start") and row["method"] not in _FIXED_STYLES:
                style["linestyle"] = "-."
            ax.plot(range(1, len(values) + 1), values, linewidth=1.2, label=f"{row['method']} @ {row['step']}", **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"density {100 * density:.3g}%", fontsize=9)
        ax.set_xlabel("eigenvalue index")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=6)
    for ax in axes[:, 0]:
        ax.set_ylabel("eigenvalue of the trace NTK")
    for ax in list(axes.flat)[len(densities) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def plot_distance_vs_density(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Kernel distance and relative Frobenius difference from the dense kernel at the start step,
    and (when trained steps are present) how far each kernel moved in training, against density."""
    start = [r for r in rows if r.get("start") and r.get("kernel_distance_dense") is not None]
    if not start:
        return None
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r.get("moved") is not None:
            run = (r["run_id"], r["method"])
            if run not in last or r["iteration"] > last[run]["iteration"]:
                last[run] = r
    panels = [
        ("kernel_distance_dense", "kernel distance from dense, 1 − cos"),
        ("rel_frobenius_dense", "‖Θ_dense − Θ‖ / ‖Θ_dense‖ (scale included)"),
    ]
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels) + bool(last), figsize=(4.6 * (len(panels) + bool(last)), 3.6), squeeze=False
    )
    palette: dict[str, str] = {}
    for ax, (key, label) in zip(axes[0], panels):
        _lines(ax, start, key, palette)
        ax.set_ylabel(label, fontsize=8)
        ax.set_title("at the start step", fontsize=9)
    if last:
        ax = axes[0][-1]
        _lines(ax, list(last.values()), "moved", palette)
        ax.set_ylabel("kernel distance, start → last step", fontsize=8)
        ax.set_title("movement during training", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def _lines(ax: Any, rows: Sequence[dict[str, Any]], key: str, palette: dict[str, str]) -> None:
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r.get(key) is not None:
            groups[r["method"]].append((100 * r["density"], r[key]))
    for method, points in sorted(groups.items()):
        points.sort(reverse=True)
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            markersize=3,
            label=method,
            **_style(method, palette),
        )
    _log_density_axis(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plot_width_study(table: Sequence[dict[str, Any]], path: str | Path, study: Any) -> Path:
    """The width study (:mod:`prunelab.experiments.ntk_width`): distances of the randomly pruned NTK
    from the dense one against width, one colour per density, rescaled (solid) or not (dashed)."""
    plt = _pyplot()
    limit = any(r.get("distance_to_limit") is not None for r in table)
    panels = [
        ("kernel_distance", "kernel distance from dense, 1 − cos (either scaling)"),
        ("rel_frobenius", "‖Θ_dense − Θ_pruned‖ / ‖Θ_dense‖"),
    ]
    if limit:
        panels.append(("distance_to_limit", "‖Θ_∞ − Θ‖ / ‖Θ_∞‖ (infinite-width kernel)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.0), squeeze=False)
    cmap = plt.get_cmap("viridis")
    densities = sorted({r["density"] for r in table if r["density"] < 1.0}, reverse=True)
    for ax, (key, label) in zip(axes[0], panels):
        if key == "distance_to_limit":
            dense = sorted((r["width"], r[key]) for r in table if r["density"] == 1.0 and r.get(key) is not None)
            ax.plot(
                [w for w, _ in dense], [v for _, v in dense], color="black", marker="o", markersize=3, label="dense"
            )
        for i, density in enumerate(densities):
            colour = cmap(i / max(1, len(densities) - 1))
            for rescale, style in ((True, "-"), (False, "--")):
                if key != "rel_frobenius" and not rescale:
                    continue  # the limit is that of the rescaled network; 1 − cos is blind to the scale
                points = sorted(
                    (r["width"], r[key])
                    for r in table
                    if r["density"] == density and r["rescale"] is rescale and r.get(key) is not None
                )
                if points:
                    ax.plot(
                        [w for w, _ in points],
                        [v for _, v in points],
                        linestyle=style,
                        color=colour,
                        marker="o",
                        markersize=3,
                        label=f"{100 * density:g}%" + ("" if rescale else " no rescale"),
                    )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("hidden width")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=6, ncol=2)
    axes[0][1].legend(fontsize=6, ncol=2)
    if limit:
        axes[0][-1].legend(fontsize=6, ncol=2)
    where = "all layers" if study.prune_input_layer else "all but the input layer"
    fig.suptitle(
        f"random pruning of a {study.depth}-hidden-layer ReLU MLP ({study.parameterization} parameterisation, "
        f"{where} pruned), {study.inputs} inputs, mean of {study.replicates}; dashed: without the 1/sqrt(d) rescaling",
        fontsize=9,
    )
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
