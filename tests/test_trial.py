"""Trials: one run-id rule for every kind (existing ids pinned), plain-data round trips, prerequisites."""

from __future__ import annotations

import dataclasses

import pytest

from prunelab.experiments.branch import OneShotBranch
from prunelab.experiments.trial import Trial
from prunelab.specs import SpecError, load_spec


def digits(**overrides: str):
    return load_spec("digits_lenet_300_100", overrides={"seed": "3", "train.steps": "2ep", **overrides})


def snip(spec):
    return spec.updated(prune=dataclasses.replace(spec.prune, strategy="snip"))


# Computed with the per-kind functions before Trial existed (train_run_id, lottery_run_id, prune_run_id,
# branch_run_id, supermask_run_id): a trial must name the same runs.
PINNED = [
    (lambda: Trial("train", digits()), "train-8b9e76f937e2"),
    (lambda: Trial("lottery", digits(), levels=3, controls=("reinit",)), "lottery-1e2f70ffbc1d"),
    (lambda: Trial("lottery", digits(), level=2, control="reinit"), "lottery-1e2f70ffbc1d/level_2/reinit"),
    (lambda: Trial("prune", snip(digits()), density=0.1), "prune-661c3a843d67"),
    (
        lambda: Trial("prune", snip(digits()), density=0.05, experiment="multishot", rounds=2, round_steps="5it"),
        "prune-56e85405e6e4",
    ),
    (
        lambda: Trial(
            "branch", digits(), branch=OneShotBranch(strategy="synflow", prune_fraction=0.9, randomize_layerwise=True)
        ),
        "branch-c00e315c2b5d",
    ),
    (
        lambda: Trial(
            "supermask",
            load_spec("digits_lenet_300_100_supermask", overrides={"seed": "3", "supermask.density": "0.3"}),
        ),
        "supermask-568ef5c9d1be",
    ),
]


@pytest.mark.parametrize("make, run_id", PINNED)
def test_every_kind_keeps_its_run_id_and_survives_plain_data(make, run_id):
    trial = make()
    assert trial.run_id == run_id
    again = Trial.from_data(trial.to_data())
    assert again == trial and again.run_id == run_id


def test_a_multishot_trial_names_the_run_with_the_defaults_run_prune_uses():
    spec = snip(digits())
    assert (
        Trial("prune", spec, density=0.1, experiment="multishot").run_id
        == Trial("prune", spec, density=0.1, experiment="multishot", rounds=3, round_steps="1ep").run_id
    )


def test_prerequisites_of_a_lottery_and_of_a_branch():
    spec = digits()
    lottery = Trial("lottery", spec, levels=2, controls=("reinit", "shuffle"))
    base = lottery.run_id
    assert [t.run_id for t in lottery.needs()] == [
        Trial("train", spec).run_id,
        f"{base}/level_1",
        f"{base}/level_2",
        f"{base}/level_1/reinit",
        f"{base}/level_1/shuffle",
        f"{base}/level_2/reinit",
        f"{base}/level_2/shuffle",
    ]
    assert [t.run_id for t in Trial("lottery", spec, level=2).needs()] == [f"{base}/level_1"]
    assert [t.run_id for t in Trial("lottery", spec, level=2, control="reinit").needs()] == [f"{base}/level_2"]
    assert Trial("lottery", spec, level=0).needs() == []
    branch = Trial("branch", spec, branch=OneShotBranch(prune_fraction=0.5))
    assert [t.run_id for t in branch.needs()] == [Trial("train", spec).run_id] == [branch.parent_id]
    assert Trial("branch", spec, parent="train-abc", branch=OneShotBranch(prune_fraction=0.5)).needs() == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "trian"}, "Did you mean 'train'"),
        ({"kind": "train", "density": 0.1}, "a train trial does not take density"),
        ({"kind": "prune"}, "needs a target density"),
        ({"kind": "prune", "density": 1.5}, "outside"),
        ({"kind": "prune", "density": 0.1, "rounds": 2}, "apply to experiment=multishot"),
        ({"kind": "lottery"}, "give levels or level"),
        ({"kind": "lottery", "level": 0, "control": "reinit"}, "level >= 1"),
        ({"kind": "lottery", "levels": 2, "controls": ("reinti",)}, "Did you mean 'reinit'"),
        ({"kind": "branch"}, "needs its branch arguments"),
    ],
)
def test_bad_trials_fail_with_the_reason(kwargs, message):
    with pytest.raises(SpecError, match=message):
        Trial(spec=digits(), **kwargs)


def test_data_free_checks_catch_a_misspelt_strategy():
    trial = Trial("prune", digits(**{"prune.strategy": "snp"}), density=0.1)
    with pytest.raises(SpecError, match="Did you mean 'snip'"):
        trial.check()


def test_describe_names_what_sets_a_trial_apart():
    spec = digits()
    assert Trial("lottery", spec, levels=0).describe() == "lottery of 0 levels"
    assert Trial("lottery", spec, levels=2, controls=("reinit",)).describe() == "lottery of 2 levels + reinit"
    assert Trial("lottery", spec, level=0).describe() == "level 0"
    assert Trial("lottery", spec, level=1, control="reinit").describe() == "level 1 reinit"
    branch = OneShotBranch(strategy="synflow", prune_fraction=0.9)
    assert Trial("branch", spec, branch=branch).describe() == "branch synflow f=0.9"
    assert Trial("prune", snip(spec), density=0.1, experiment="multishot").describe() == "snip d=0.1 multishot"
    assert Trial("train", spec).describe() == "train"


@pytest.mark.parametrize("kwargs", [{"levels": -1}, {"level": -1}])
def test_a_negative_lottery_level_is_refused(kwargs):
    with pytest.raises(SpecError, match="must be >= 0"):
        Trial("lottery", digits(), **kwargs)
