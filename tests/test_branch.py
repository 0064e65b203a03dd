"""One-shot branches of a finished tiny train run (digits, lenet_35_17: 2,240 + 595 = 2,835 prunable
hidden weights, the 170-weight output layer ignored with --ignore fc.weight). The parent saves its weights at
steps 0, 10 and 30; expectations (exact counts, magnitude masks, starting weights) are computed here."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from conftest import round_half_up as rhu
from prunelab.experiments.branch import OneShotBranch, run_oneshot_branch
from prunelab.experiments.scoring import split_strategy_name
from prunelab.experiments.train import run_train
from prunelab.masks import Mask
from prunelab.specs import SpecError, load_spec
from prunelab.store import RunStore

BASE = {"model.name": "lenet_35_17", "train.steps": "30it", "train.eval_every": "none", "train.progress": "false"}
HIDDEN = ("hidden.0.weight", "hidden.1.weight")
OUTPUT = "fc.weight"
N_HIDDEN = 35 * 64 + 17 * 35  # 2835


def counts(mask) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in mask.items()}


def top_magnitude(state, names, keep):
    """Independent reference: the ``keep`` largest |w| over ``names`` pooled (dense start)."""
    values = torch.cat([state[n].abs().reshape(-1) for n in names])
    threshold = torch.sort(values, descending=True).values[keep - 1]
    assert int((values == threshold).sum()) == 1
    return {n: state[n].abs() >= threshold for n in names}


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("branch") / "store")
    summary = run_train(
        load_spec("digits_lenet_300_100", overrides={**BASE, "train.save_steps": ["10it"]}), store=store
    )
    run = store.run(summary["run_id"])
    assert run.saved_steps() == [0, 10, 30]
    return SimpleNamespace(
        store=store,
        run=run,
        id=summary["run_id"],
        weights={s: load_file(str(run.weights_path(s))) for s in (0, 10, 30)},
    )


@pytest.fixture(scope="module")
def plain(parent):
    """Lottery-style branch: score the final weights, start from step 0, remove 90%."""
    summary = run_oneshot_branch(
        parent.id, OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.9, prune_step="30it"), store=parent.store
    )
    return branch_view(parent, summary)


def branch_view(parent, summary):
    run = parent.store.run(summary["run_id"])
    return SimpleNamespace(
        summary=summary,
        run=run,
        mask=Mask.load(run.path / "mask.safetensors"),
        weights=lambda step: load_file(str(run.weights_path(step))),
    )


def test_density_is_one_minus_prune_fraction_with_the_round_rule(parent, plain):
    mask = plain.mask
    # 0.1 · 2835 = 283.5 → 284 (1 - 0.9 computed in binary, 0.0999…98, would give 283)
    kept = sum(int(mask[n].sum()) for n in HIDDEN)
    assert kept == rhu(0.1, N_HIDDEN) == 284
    assert bool(mask[OUTPUT].all())
    assert plain.summary["density"] == mask.density == (284 + 170) / (N_HIDDEN + 170)
    assert plain.summary["kept_weights"] == 284 + 170
    assert plain.summary["parent"] == parent.id and plain.summary["final_step"] == 30


def test_half_up_count_at_prune_fraction_half(parent):
    summary = run_oneshot_branch(parent.id, OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5), store=parent.store)
    mask = branch_view(parent, summary).mask
    assert sum(int(mask[n].sum()) for n in HIDDEN) == rhu(0.5, N_HIDDEN) == 1418  # 1417.5 → 1418


def test_plain_branch_scores_prune_step_and_starts_from_state_step(parent, plain):
    expected = top_magnitude(parent.weights[30], HIDDEN, 284)
    for name in HIDDEN:
        assert torch.equal(plain.mask[name], expected[name])
    start = plain.weights(0)
    for key, value in parent.weights[0].items():
        assert torch.equal(start[key], value * plain.mask[key] if key in plain.mask else value), key
    final = plain.weights(30)
    for name in plain.mask:
        assert not bool(final[name][~plain.mask[name]].any())


def test_branch_at_a_saved_intermediate_step(parent):
    summary = run_oneshot_branch(
        parent.id,
        OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, prune_step="10it", state_step="10it"),
        store=parent.store,
    )
    view = branch_view(parent, summary)
    expected = top_magnitude(parent.weights[10], HIDDEN, 1418)
    for name in HIDDEN:
        assert torch.equal(view.mask[name], expected[name])
    start = view.weights(10)
    for key, value in parent.weights[10].items():
        assert torch.equal(start[key], value * view.mask[key] if key in view.mask else value), key
    assert view.run.saved_steps() == [10, 30]
    assert summary["final_step"] == 30


def test_start_step_zero_trains_the_full_schedule_from_the_weights_of_the_state_step(parent):
    """The fork's oneshot: the weights come from --state-step, the schedule and the data order start at
    --start-step (its default 0). Here: weights of step 10, 30 steps from step 0."""
    branch = OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, prune_step="10it", state_step="10it", start_step="0it")
    view = branch_view(parent, run_oneshot_branch(parent.id, branch, store=parent.store))
    rewound = branch_view(
        parent,
        run_oneshot_branch(
            parent.id,
            OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, prune_step="10it", state_step="10it"),
            store=parent.store,
        ),
    )
    assert view.mask == rewound.mask  # the same scoring; only where training starts differs
    assert view.run.saved_steps() == [0, 10, 30] and rewound.run.saved_steps() == [10, 30]  # the parent saves 10it
    start = view.weights(0)
    for key, value in parent.weights[10].items():
        assert torch.equal(start[key], value * view.mask[key] if key in view.mask else value), key
    assert torch.equal(start["hidden.0.weight"], rewound.weights(10)["hidden.0.weight"])
    assert not torch.equal(view.weights(30)["hidden.0.weight"], rewound.weights(30)["hidden.0.weight"])
    assert view.summary["final_step"] == 30 and view.summary["args"]["start_step"] == "0it"


def test_new_branch_options_keep_existing_branch_ids(parent, plain):
    import hashlib
    import json

    args = {"prune_fraction": 0.9, "prune_step": "30it", "ignore": [OUTPUT]}
    assert plain.summary["args"] == args  # start_step=None and randomize_global=False are defaults: not in the key
    text = json.dumps({"parent": parent.id, "branch": "oneshot", "args": args}, sort_keys=True)
    assert plain.summary["run_id"] == f"branch-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def test_randomize_global_keeps_the_total_count_not_the_layer_counts(parent, plain):
    summary = run_oneshot_branch(
        parent.id,
        OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.9, prune_step="30it", randomize_global=True),
        store=parent.store,
    )
    view = branch_view(parent, summary)
    assert sum(counts(view.mask)[n] for n in HIDDEN) == 284 and bool(view.mask[OUTPUT].all())
    assert counts(view.mask) != counts(plain.mask)  # magnitude's layer counts are not kept
    # positions are uniform over the 2,835 pooled hidden weights: hidden.0 holds 2,240 of them
    assert int(view.mask["hidden.0.weight"].sum()) == pytest.approx(284 * 2240 / N_HIDDEN, abs=20)
    start = view.weights(0)
    for name in view.mask:
        assert torch.equal(start[name], parent.weights[0][name] * view.mask[name])
    with pytest.raises(SpecError, match="two different shuffles"):
        OneShotBranch(prune_fraction=0.5, randomize_layerwise=True, randomize_global=True)
    with pytest.raises(ValueError, match="'<N>it'"):  # as for --prune-step and --state-step
        OneShotBranch(prune_fraction=0.5, start_step="ten")


def test_cli_start_step_and_randomize_global_flags(parent, capsys):
    import json

    from prunelab.cli.main import main

    argv = [
        "branch",
        parent.id,
        "oneshot",
        "--prune-fraction",
        "0.9",
        "--prune-step",
        "30it",
        "--ignore",
        OUTPUT,
        "--randomize-global",
        "--home",
        str(parent.store.root),
        "--json",
    ]
    assert main(argv) == 0  # the API branch of the test above: reused, not retrained
    summary = json.loads(capsys.readouterr().out)
    assert summary["args"] == {
        "prune_fraction": 0.9,
        "prune_step": "30it",
        "ignore": [OUTPUT],
        "randomize_global": True,
    }
    assert (
        main(
            [
                "branch",
                parent.id,
                "oneshot",
                "--prune-fraction",
                "0.5",
                "--prune-step",
                "10it",
                "--state-step",
                "10it",
                "--start-step",
                "0it",
                "--ignore",
                OUTPUT,
                "--home",
                str(parent.store.root),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["args"]["start_step"] == "0it"


def test_missing_step_error_lists_the_saved_steps(parent):
    with pytest.raises(SpecError, match=r"--prune-step.*step 7 \(saved: 0it, 10it, 30it\)"):
        run_oneshot_branch(
            parent.id, OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, prune_step="7it"), store=parent.store
        )
    with pytest.raises(SpecError, match=r"--state-step.*saved: 0it, 10it, 30it"):
        run_oneshot_branch(
            parent.id, OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, state_step="20it"), store=parent.store
        )


def test_argument_validation():
    with pytest.raises(SpecError, match="--reinitialize"):
        OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, model_init="standard_normal")
    with pytest.raises(SpecError, match="unknown --model-init"):
        OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, model_init="nope", reinitialize=True)
    with pytest.raises(SpecError, match="prune-fraction"):
        OneShotBranch(ignore=(OUTPUT,), prune_fraction=1.0)
    OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5, model_init="standard_normal", reinitialize=True)


def test_randomize_layerwise_keeps_per_layer_counts(parent, plain):
    summary = run_oneshot_branch(
        parent.id,
        OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.9, prune_step="30it", randomize_layerwise=True),
        store=parent.store,
    )
    view = branch_view(parent, summary)
    assert counts(view.mask) == counts(plain.mask)
    for name in HIDDEN:
        assert not torch.equal(view.mask[name], plain.mask[name])
    start = view.weights(0)
    for name in view.mask:
        assert torch.equal(start[name], parent.weights[0][name] * view.mask[name])


@pytest.mark.parametrize("model_init", [None, "standard_normal"])
def test_reinitialize_changes_the_starting_weights(parent, plain, model_init):
    branch = OneShotBranch(
        ignore=(OUTPUT,), prune_fraction=0.9, prune_step="30it", reinitialize=True, model_init=model_init
    )
    view = branch_view(parent, run_oneshot_branch(parent.id, branch, store=parent.store))
    assert view.mask == plain.mask  # scoring is unchanged; only the starting weights differ
    start = view.weights(0)
    for key, value in parent.weights[0].items():
        if key in view.mask:
            kept = view.mask[key]
            assert not bool(start[key][~kept].any())
            assert not torch.equal(start[key][kept], value[kept]), key
        elif key.endswith("weight"):
            assert not torch.equal(start[key], value), key
    # the kept positions were chosen from the parent's trained weights, so the fresh values there are
    # an unbiased sample of the re-initialisation: the preset's fan-in scaled init, or N(0, 1)
    alive = start["hidden.0.weight"][view.mask["hidden.0.weight"]]
    expected_std = 1.0 if model_init == "standard_normal" else float(parent.weights[0]["hidden.0.weight"].std())
    assert float(alive.std()) == pytest.approx(expected_std, rel=0.15)


@pytest.mark.parametrize("spelling", ["snip5", "snip"])
def test_snip_branch(parent, spelling):
    if spelling == "snip5":
        assert split_strategy_name("snip5") == ("snip", 5)
        assert split_strategy_name("graspabs32") == ("grasp_abs", 32)
        assert split_strategy_name("synflow") == ("synflow", None)
        branches = [
            OneShotBranch(ignore=(OUTPUT,), strategy="snip5", prune_fraction=0.5),
            OneShotBranch(ignore=(OUTPUT,), strategy="snip", prune_fraction=0.5, examples_per_class=5),
        ]
    else:
        branches = [OneShotBranch(ignore=(OUTPUT,), strategy="snip", prune_fraction=0.5)]
    views = [branch_view(parent, run_oneshot_branch(parent.id, b, store=parent.store)) for b in branches]
    for view in views:
        assert view.summary["density"] == view.mask.density
        assert sum(int(view.mask[n].sum()) for n in HIDDEN) == 1418 and bool(view.mask[OUTPUT].all())
        assert 0.0 <= view.summary["test_accuracy"] <= 1.0
    if spelling == "snip5":  # the suffix means 5 examples per class, exactly like the explicit option
        assert views[0].mask == views[1].mask
        ten = branch_view(
            parent,
            run_oneshot_branch(
                parent.id, OneShotBranch(ignore=(OUTPUT,), strategy="snip", prune_fraction=0.5), store=parent.store
            ),
        )
        assert ten.mask != views[0].mask
        # and it is not magnitude pruning
        assert (
            views[0].mask
            != branch_view(
                parent,
                run_oneshot_branch(parent.id, OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.5), store=parent.store),
            ).mask
        )


def test_finished_branch_is_reused(parent, plain, monkeypatch):
    import prunelab.experiments.branch as branch_module

    monkeypatch.setattr(branch_module.Workbench, "from_spec", lambda spec: pytest.fail("retrained a finished branch"))
    again = run_oneshot_branch(
        parent.id[:12], OneShotBranch(ignore=(OUTPUT,), prune_fraction=0.9, prune_step="30it"), store=parent.store
    )
    assert again == plain.summary
