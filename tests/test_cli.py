"""The ``prunelab`` command, called in-process through ``prunelab.cli.main.main`` (stdout and stderr
captured), plus one ``python -m prunelab`` subprocess. Every run is tiny (digits, a few dozen
iterations) and lives in the test's own ``PRUNELAB_HOME``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunelab.cli.main import main
from prunelab.specs import get_preset, to_dict

TINY = [
    "--preset",
    "digits_lenet_300_100",
    "--model.name=lenet_32_16",
    "--train.steps=20it",
    "--train.eval_every=none",
    "--no-progress",
]
REQUIRED_PRESETS = (
    "digits_lenet_300_100",
    "synthetic_lenet_300_100",
    "mnist_lenet_300_100",
    "mnist10k_lenet_300_100",
    "cifar_resnet_20",
    "cifar_vgg_16",
    "cifar_conv2",
    "tinyimagenet_resnet_18",
    "imagenet_resnet_50",
)
SUMMARY_KEYS = ("run_id", "kind", "test_accuracy", "test_loss", "density", "wall_seconds")
PNG = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out), err  # the whole of stdout must be one JSON document


def train_tiny(capsys):
    summary, _ = run_json(capsys, "train", *TINY)
    return summary


def test_train_json_then_reuse(capsys, home):
    summary, err = run_json(capsys, "train", "--preset", "digits_lenet_300_100", "--train.steps=1ep")
    for key in SUMMARY_KEYS:
        assert key in summary, key
    assert summary["kind"] == "train" and summary["run_id"].startswith("train-")
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["test_loss"] > 0
    assert summary["density"] == 1.0 and summary["wall_seconds"] > 0
    assert summary["final_step"] == 23  # 1 epoch of 1,438 images at batch 64
    assert "step 23/23" in err  # logs go to stderr
    run_dir = home / summary["run_id"]
    assert (run_dir / "summary.json").is_file()
    final = run_dir / "weights" / "step_23.safetensors"
    stamp = final.stat().st_mtime_ns

    again, err = run_json(capsys, "train", "--preset", "digits_lenet_300_100", "--train.steps=1ep")
    assert again == summary  # the stored summary, wall time included
    assert "reusing finished run" in err and summary["run_id"] in err
    assert "step 23/23" not in err
    assert final.stat().st_mtime_ns == stamp


def test_train_table_output(capsys):
    code, out, _ = run_cli(capsys, "train", *TINY)
    assert code == 0
    header, rule, row = out.strip().splitlines()
    assert header.split() == ["run_id", "test_accuracy", "test_loss", "density", "final_step", "wall_seconds"]
    assert row.startswith("train-") and row.split()[3] == "1.0000" and row.split()[4] == "20"


@pytest.mark.parametrize(
    ("override", "hint"),
    [("--train.lrr=0.1", "lr"), ("--trian.steps=1ep", "--train.steps"), ("--train.optimiser=sgd", "optimizer")],
)
def test_unknown_override_exits_2_and_names_the_closest_key(capsys, home, override, hint):
    code, out, err = run_cli(capsys, "train", "--preset", "digits_lenet_300_100", override)
    assert code == 2 and out == ""
    assert f"prunelab: error: unknown override '{override.split('=')[0]}'" in err
    assert hint in err.split("Did you mean ", 1)[1].split("?", 1)[0]
    assert not home.exists() or not any(home.iterdir())


def test_unknown_preset_names_the_closest(capsys):
    code, out, err = run_cli(capsys, "train", "--preset", "digits_lenet")
    assert code == 2 and out == ""
    assert "unknown preset 'digits_lenet'" in err and "digits_lenet_300_100" in err
    code, _, err = run_cli(capsys, "lottery", "--preset", "mnist_lenet_300", "--levels", "1")
    assert code == 2 and "mnist_lenet_300_100" in err


def test_presets_lists_the_required_presets(capsys):
    rows, _ = run_json(capsys, "presets")
    names = [row["preset"] for row in rows]
    assert set(REQUIRED_PRESETS) <= set(names)
    assert all(row["description"] for row in rows)
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0 and all(name in out for name in REQUIRED_PRESETS)
    code, out, _ = run_cli(capsys, "presets", "digits_lenet_300_100")
    assert code == 0 and yaml.safe_load(out) == to_dict(get_preset("digits_lenet_300_100"))


def test_runs_and_show(capsys, home):
    summary = train_tiny(capsys)
    run_id = summary["run_id"]
    rows, _ = run_json(capsys, "runs")
    assert [(r["run_id"], r["kind"], r["status"]) for r in rows] == [(run_id, "train", "finished")]
    assert rows[0]["test_accuracy"] == summary["test_accuracy"]
    assert (rows[0]["model"], rows[0]["dataset"]) == ("lenet_32_16", "digits")
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and run_id in out and "finished" in out
    assert json.loads(run_cli(capsys, "runs", "--kind", "lottery", "--json")[1]) == []

    for ref in (run_id[:10], run_id.split("-", 1)[1][:6], str(home / run_id)):
        code, out, _ = run_cli(capsys, "show", ref)
        assert code == 0, ref
        assert f"run      {run_id}" in out and "status   finished" in out and "spec.yaml:" in out
        assert "lenet_32_16" in out
    shown, _ = run_json(capsys, "show", run_id[:10])
    assert shown == summary
    code, _, err = run_cli(capsys, "show", "nothing-like-it")
    assert code == 2 and "no run 'nothing-like-it'" in err


def test_lottery_json(capsys):
    summary, _ = run_json(capsys, "lottery", *TINY, "--levels", "1", "--controls", "reinit")
    assert summary["kind"] == "lottery" and summary["run_id"].startswith("lottery-")
    assert [row["level"] for row in summary["levels"]] == [0, 1]
    assert summary["levels"][0]["density"] == 1.0 and summary["levels"][1]["density"] < 1.0
    assert 0.0 <= summary["levels"][1]["reinit"] <= 1.0
    assert summary["controls"] == ["reinit"] and summary["model"] == "lenet_32_16"
    code, _, err = run_cli(capsys, "lottery", *TINY, "--levels", "1", "--controls", "reinti")
    assert code == 2 and "unknown control 'reinti'" in err and "'reinit'" in err


def test_branch_json(capsys):
    parent = train_tiny(capsys)
    summary, _ = run_json(
        capsys, "branch", parent["run_id"], "oneshot", "--prune-fraction", "0.5", "--ignore", "fc.weight"
    )
    assert summary["kind"] == "branch" and summary["parent"] == parent["run_id"]
    assert summary["args"] == {"prune_fraction": 0.5, "ignore": ["fc.weight"]}
    # --ignore keeps fc.weight (160 weights) dense; the other 2,560 keep exactly half
    assert summary["kept_weights"] == 1280 + 160 and summary["density"] == (1280 + 160) / (2560 + 160)
    code, _, err = run_cli(
        capsys, "branch", parent["run_id"], "oneshot", "--prune-fraction", "0.5", "--prune-step", "3it"
    )
    assert code == 2 and "saved: 0it, 20it" in err
    code, _, err = run_cli(
        capsys, "branch", parent["run_id"], "oneshot", "--prune-fraction", "0.5", "--model-init", "standard_normal"
    )
    assert code == 2 and "--reinitialize" in err


def test_prune_with_plots_then_report(capsys, tmp_path):
    plots = tmp_path / "plots"
    summaries, _ = run_json(
        capsys,
        "prune",
        *TINY,
        "--strategy",
        "magnitude,synflow",
        "--density",
        "0.5,0.2",
        "--iterations",
        "2",
        "--plot",
        str(plots),
    )
    assert [(s["strategy"], s["target_density"]) for s in summaries] == [
        ("magnitude", 0.5),
        ("magnitude", 0.2),
        ("synflow", 0.5),
        ("synflow", 0.2),
    ]
    assert len({s["run_id"] for s in summaries}) == 4
    for name in ("accuracy_vs_density.png", "layer_densities.png"):
        assert (plots / name).read_bytes()[:8] == PNG, name

    out_dir = tmp_path / "report"
    report, _ = run_json(capsys, "report", *[s["run_id"] for s in summaries[:2]], "--out", str(out_dir))
    # densities are over all prunable weights: the preset's ignored fc.weight (160) stays dense
    assert [s["kept_weights"] for s in summaries[:2]] == [1280 + 160, 512 + 160]
    assert [(r["method"], r["density"], r["seeds"]) for r in report["rows"]] == [
        ("magnitude", float(f"{1440 / 2720:.4g}"), 1),
        ("magnitude", float(f"{672 / 2720:.4g}"), 1),
    ]
    assert (out_dir / "accuracy_vs_density.png").read_bytes()[:8] == PNG
    assert (out_dir / "layer_densities.png").is_file()
    code, out, _ = run_cli(capsys, "report", summaries[2]["run_id"][:12], "--out", str(tmp_path / "r2"))
    assert code == 0 and "synflow" in out and (tmp_path / "r2" / "accuracy_vs_density.png").is_file()


def test_prune_density_flags_are_exclusive(capsys):
    code, out, err = run_cli(capsys, "prune", *TINY, "--strategy", "magnitude", "--density", "0.5", "--sparsity", "0.5")
    assert code == 2 and out == "" and "exactly one of --density, --sparsity or --compression" in err


def test_python_dash_m_prunelab(tmp_path):
    env = {**os.environ, "PRUNELAB_HOME": str(tmp_path / "home")}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "prunelab", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: prunelab")
    for command in ("train", "lottery", "branch", "prune", "report", "presets", "runs", "show"):
        assert command in done.stdout
    bare = subprocess.run([sys.executable, "-m", "prunelab"], capture_output=True, text=True, env=env, timeout=120)
    assert bare.returncode == 2 and "usage: prunelab" in bare.stderr


def test_report_keeps_runs_with_different_settings_apart(tmp_path, monkeypatch, capsys):
    """Two prune runs that differ in training length are different experiments, not two seeds."""
    from prunelab.cli.main import main

    monkeypatch.setenv("PRUNELAB_HOME", str(tmp_path / "home"))
    common = [
        "prune",
        "--preset",
        "digits_lenet_300_100",
        "--strategy",
        "magnitude",
        "--density",
        "0.5",
        "--train.eval_every=none",
        "--no-progress",
        "--json",
    ]
    assert main([*common, "--train.steps=1ep"]) == 0
    assert main([*common, "--train.steps=2ep"]) == 0
    assert main([*common, "--train.steps=2ep", "--seed=1"]) == 0
    capsys.readouterr()
    assert main(["report", "--kind", "prune", "--out", str(tmp_path / "rep"), "--json"]) == 0
    rows = __import__("json").loads(capsys.readouterr().out)["rows"]
    assert sorted(r["seeds"] for r in rows) == [1, 2]
    assert all("[config" in r["method"] for r in rows)
