"""Experiment files: extends, grids, overrides, errors naming file/experiment/key; configs/ dry-runs without data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import prunelab.data.loading
import prunelab.experiments.workbench
from prunelab.cli.main import main
from prunelab.experiments.experiment_file import ExperimentFile
from prunelab.specs import SpecError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

BASE = """
base:
  kind: prune
  preset: digits_lenet_300_100
  train: {steps: 1ep, lr: 0.05}
  density: 0.1
  grid:
    prune.strategy: [snip, synflow]
    seed: [1, 2]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_a_grid_is_the_cross_product_in_written_order(tmp_path):
    points = ExperimentFile(write(tmp_path, BASE)).points("base")
    assert [p.values for p in points] == [{"prune.strategy": s, "seed": n} for s in ("snip", "synflow") for n in (1, 2)]
    assert [(p.trial.spec.prune.strategy, p.trial.spec.seed, p.trial.density) for p in points] == [
        ("snip", 1, 0.1),
        ("snip", 2, 0.1),
        ("synflow", 1, 0.1),
        ("synflow", 2, 0.1),
    ]
    assert all(p.trial.spec.train.lr == 0.05 and p.trial.spec.train.steps == "1ep" for p in points)


def test_extends_deep_merges_and_a_replaced_density_spelling_drops_the_inherited_one(tmp_path):
    path = write(
        tmp_path,
        BASE
        + """
longer:
  extends: base
  train: {steps: 2ep}
  grid:
    compression: [1, 2]
""",
    )
    points = ExperimentFile(path).points("longer")
    assert len(points) == 8
    first = points[0].trial
    assert first.spec.train.steps == "2ep" and first.spec.train.lr == 0.05  # merged, not replaced
    assert sorted({p.trial.density for p in points}) == [0.8**2, 0.8]  # compression replaced density


def test_what_a_kind_inherits_but_does_not_read_is_left_out(tmp_path):
    path = write(
        tmp_path,
        """
masks:
  kind: supermask
  preset: digits_lenet_300_100_supermask
  grid: {supermask.density: [0.3, 0.5], seed: [1, 2]}
dense:
  extends: masks
  kind: train
""",
    )
    points = ExperimentFile(path).points("dense")
    assert [p.values for p in points] == [{"seed": 1}, {"seed": 2}]
    assert {p.trial.kind for p in points} == {"train"}


def test_overrides_set_keys_and_pin_a_grid_axis(tmp_path):
    points = ExperimentFile(write(tmp_path, BASE)).points("base", {"seed": "2", "train.lr": "0.02", "density": "0.3"})
    assert [p.values for p in points] == [
        {"prune.strategy": "snip", "seed": "2"},
        {"prune.strategy": "synflow", "seed": "2"},
    ]
    assert all(p.trial.spec.seed == 2 and p.trial.spec.train.lr == 0.02 and p.trial.density == 0.3 for p in points)


def test_a_branch_experiment_branches_its_own_train_run(tmp_path):
    path = write(
        tmp_path,
        """
mark:
  kind: branch
  preset: digits_lenet_300_100
  branch: {strategy: snip, prune_fraction: 0.9}
  grid: {branch.randomize_layerwise: [false, true]}
""",
    )
    points = ExperimentFile(path).points("mark")
    parents = {p.trial.parent_id for p in points}
    assert len(parents) == 1 and parents.pop().startswith("train-")
    assert [p.trial.branch.randomize_layerwise for p in points] == [False, True]


@pytest.mark.parametrize(
    "text, name, message",
    [
        (
            BASE + "bad:\n  extends: base\n  trian: {lr: 0.1}\n",
            "bad",
            "experiment 'bad': unknown key 'trian'. Did you mean 'train'",
        ),
        (
            BASE + "bad:\n  extends: base\n  train: {lrr: 0.1}\n",
            "bad",
            "experiment 'bad': grid point .*unknown key 'train.lrr'",
        ),
        (
            BASE + "bad:\n  extends: base\n  grid: {seed: [1, x]}\n",
            "bad",
            "grid point prune.strategy=snip, seed=x: seed='x'",
        ),
        (
            BASE + "bad:\n  extends: base\n  grid: {prune.strategy: [snp]}\n",
            "bad",
            "prune.strategy=snp, seed=1: unknown pruning strategy 'snp'. Did you mean 'snip'",
        ),
        (BASE + "bad:\n  extends: base\n  grid: {seed: 3}\n", "bad", "grid key 'seed' must list its values"),
        (BASE + "bad:\n  extends: base\n  grid: {seed: [1, 1]}\n", "bad", "grid key 'seed' lists 1 twice"),
        (BASE + "bad:\n  extends: base\n  levels: 3\n", "bad", "levels is not read by a prune experiment"),
        (
            BASE + "bad:\n  extends: base\n  supermask: {density: 0.3}\n",
            "bad",
            "supermask is not read by a prune experiment",
        ),
        ("a:\n  extends: b\n  kind: train\nb:\n  extends: a\n", "a", "extends forms a cycle: a -> b -> a"),
        (
            "a:\n  extends: bse\n  kind: train\nbase:\n  kind: train\n",
            "a",
            "experiment 'a' extends 'bse'.*Did you mean 'base'",
        ),
        ("a:\n  kind: lotery\n", "a", "unknown kind 'lotery'. Did you mean 'lottery'"),
        ("a:\n  kind: lottery\n", "a", "a lottery needs levels"),
        ("a:\n  kind: lottery\n  levels: 2\n  grid: {levels: [1, 2]}\n", "a", "grid key 'levels' cannot vary"),
        (
            "a:\n  kind: branch\n  parent: train-x\n  branch: {prune_fraction: 0.5}\n  seed: 1\n",
            "a",
            "seed is not read by a branch",
        ),
        ("a:\n  kind: branch\n  branch: {prune_fraction: 0.5}\n  prune: {strategy: snip}\n", "a", "under branch:"),
        (
            "a:\n  kind: prune\n  density: 0.1\n  sparsity: 0.9\n",
            "a",
            "exactly one of density, sparsity or compression",
        ),
        (BASE, "bsae", "no experiment 'bsae'.*Did you mean 'base'"),
    ],
)
def test_errors_name_the_file_the_experiment_and_the_key(tmp_path, text, name, message):
    path = write(tmp_path, text)
    with pytest.raises(SpecError, match=message) as error:
        ExperimentFile(path).points(name)
    assert str(error.value).startswith(str(path))


def test_the_command_reports_a_bad_file_in_one_line(tmp_path, capsys):
    path = write(tmp_path, BASE + "bad:\n  extends: base\n  trian: {lr: 0.1}\n")
    assert main(["run", str(path), "bad", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown key 'trian'" in err and str(path) in err


@pytest.fixture
def no_data(monkeypatch):
    """Computing run ids and stored states must not read any data set."""

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run loaded data")

    monkeypatch.setattr(prunelab.experiments.workbench, "_cached_splits", refuse)
    monkeypatch.setattr(prunelab.data.loading, "load_dataset", refuse)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_parses_and_dry_runs_without_data(path, no_data, capsys, home):
    experiments = ExperimentFile(path)
    assert experiments.names
    assert main(["run", str(path), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [row["experiment"] for row in listing] == experiments.names
    for name in experiments.names:
        assert main(["run", str(path), name, "--dry-run", "--json"]) == 0, name
        plan = json.loads(capsys.readouterr().out)
        assert plan and {row["state"] for row in plan} == {"missing"}
        assert len({row["run_id"] for row in plan}) == len(plan)
    assert not home.exists() or not any(home.iterdir())  # a dry run writes nothing
