"""Export of trained runs: the exported model is the run's network (same test accuracy), the compact
form is small and exact, files are checked, and a supermask run is branched from like any other."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunelab import load_exported
from prunelab.cli.main import main
from prunelab.experiments.branch import OneShotBranch, run_oneshot_branch
from prunelab.experiments.export import export_run, exported_mask
from prunelab.experiments.prune_init import run_prune
from prunelab.experiments.supermask import run_supermask
from prunelab.experiments.train import run_train
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.specs import SpecError, load_spec
from prunelab.store import RunStore
from prunelab.training import evaluate

QUICK = {"train.steps": "2ep", "train.progress": "false", "train.device": "cpu"}


def accuracy(model, spec):
    bench = Workbench.from_spec(spec)
    return evaluate(model, bench.test_loader()).accuracy


def test_a_pruned_run_exports_to_a_plain_model_with_the_same_accuracy_and_a_small_sparse_form(tmp_path):
    spec = load_spec("digits_lenet_300_100", overrides={**QUICK, "prune.strategy": "magnitude"})
    summary = run_prune(spec, 0.1)
    meta = export_run(summary["run_id"], tmp_path / "out")
    assert meta["test_accuracy"] == meta["run_test_accuracy"] == summary["test_accuracy"]
    dense = load_exported(tmp_path / "out")
    sparse = load_exported(tmp_path / "out", form="sparse")
    assert type(dense).__name__ == "LeNet" and not any(k.endswith("scores") for k in dense.state_dict())
    for key, value in dense.state_dict().items():
        assert torch.equal(value, sparse.state_dict()[key]), key
    assert accuracy(dense, spec) == summary["test_accuracy"]
    mask = exported_mask(tmp_path / "out")
    assert all(torch.count_nonzero(dense.get_parameter(n)[~m]) == 0 for n, m in mask.items())
    # the acceptance bound: at 10% density the compact form is at most ~15% of the dense file
    assert meta["sparse_fraction"] <= 0.15, meta["files"]


def test_a_supermask_run_exports_its_effective_weights_and_can_be_branched_from(tmp_path):
    spec = load_spec("digits_lenet_300_100_supermask", overrides=QUICK)
    summary = run_supermask(spec)
    meta = export_run(summary["run_id"], tmp_path / "sm")
    model = load_exported(tmp_path / "sm")
    assert accuracy(model, spec) == summary["test_accuracy"] == meta["test_accuracy"]
    assert exported_mask(tmp_path / "sm") == Mask.load(RunStore().run(summary["run_id"]).mask_path)
    # pruned further and trained like any other run: the branch starts from the learned mask (never revived)
    branch = run_oneshot_branch(
        summary["run_id"],
        OneShotBranch(strategy="magnitude", prune_fraction=0.75, prune_step=f"{summary['final_step']}it"),
    )
    branch_mask = Mask.load(RunStore().run(branch["run_id"]).mask_path)
    assert branch_mask.is_subset_of(exported_mask(tmp_path / "sm"))
    assert branch_mask.num_kept == round(0.25 * branch_mask.num_total)


def test_lottery_levels_export_and_the_lottery_itself_says_which_to_use(tmp_path, capsys):
    assert (
        main(
            [
                "lottery",
                "--preset",
                "digits_lenet_300_100",
                "--train.steps=1ep",
                "--levels",
                "1",
                "--no-progress",
                "--json",
            ]
        )
        == 0
    )
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    with pytest.raises(SpecError, match="level_<L>"):
        export_run(run_id, tmp_path / "x")
    assert main(["export", f"{run_id}/level_1", "--out", str(tmp_path / "l1")]) == 0
    out = capsys.readouterr().out
    assert "sparse.safetensors" in out and "of_dense" in out
    assert exported_mask(tmp_path / "l1").density == pytest.approx(0.8, abs=0.01)


def test_damaged_or_missing_files_are_detected_never_used(tmp_path):
    summary = run_train(load_spec("digits_lenet_300_100", overrides=QUICK))
    export_run(summary["run_id"], tmp_path / "e")
    path = tmp_path / "e" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in a weight
    path.write_bytes(bytes(data))
    with pytest.raises(SpecError, match="damaged"):
        load_exported(tmp_path / "e")
    assert isinstance(load_exported(tmp_path / "e", form="sparse"), nn.Module)  # the other form is intact
    (tmp_path / "e" / "sparse.safetensors").unlink()
    with pytest.raises(SpecError, match="missing"):
        load_exported(tmp_path / "e", form="sparse")
    with pytest.raises(SpecError, match="not a prunelab export"):
        load_exported(tmp_path)


def test_a_user_model_run_exports_a_state_dict(tmp_path):
    from prunelab.api import lottery

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    lottery(
        net,
        "digits",
        train={"lr": 0.05, "batch_size": 64, "steps": "1ep", "progress": False},
        levels=1,
        store=tmp_path / "store",
        run_name="mine",
    )
    store = RunStore(tmp_path / "store")
    meta = export_run("mine/level_1", tmp_path / "u", store=store)
    state = load_exported(tmp_path / "u")
    assert meta["registry"] is False and isinstance(state, dict) and set(state) == set(net.state_dict())
    with pytest.raises(SpecError, match="user model"):
        run_oneshot_branch("mine/level_1", OneShotBranch(prune_fraction=0.5), store=store)
