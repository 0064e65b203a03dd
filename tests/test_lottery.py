"""Lottery tickets end to end on scikit-learn digits with a tiny LeNet (lenet_33_17: 2,112 + 561
prunable hidden weights and a 170-weight output layer, chosen so that the counts hit non-integer
and exact-half targets). Every expectation is computed here, independently of prunelab's selection
code: exact per-level counts, nesting, ignored and per-layer rates, rewinding to the saved weights,
random strategies, NTK rescaling, extending and resuming a lottery."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from conftest import round_half_up as rhu
from prunelab.experiments.lottery import run_lottery
from prunelab.experiments.train import run_train
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.specs import SpecError, load_spec
from prunelab.store import RunStore
from prunelab.training.loop import TrainingLoop

BASE = {
    "model.name": "lenet_33_17",
    "train.steps": "30it",  # digits: 1,438 training images, 23 iterations per epoch at batch 64
    "train.eval_every": "none",
    "train.progress": "false",
}
HIDDEN = ("hidden.0.weight", "hidden.1.weight")
OUTPUT = "fc.weight"  # ignored by the digits preset


def make_spec(**overrides):
    return load_spec("digits_lenet_300_100", overrides={**BASE, **overrides})


def alive(mask, names) -> int:
    return sum(int(mask[n].sum()) for n in names)


def counts(mask) -> dict[str, int]:
    return {n: int(m.sum()) for n, m in mask.items()}


def stage_dir(run_dir: Path, stage: str) -> Path:
    """A lottery stage's directory: level 0 is the train run the lottery's stage.json points at."""
    info = run_dir / "stage.json"
    pointers = json.loads(info.read_text()).get("stages", {}) if info.is_file() else {}
    return run_dir.parent / pointers[stage] if stage in pointers else run_dir / stage


def level_mask(run_dir: Path, level: int, control: str | None = None) -> Mask:
    folder = stage_dir(run_dir, f"level_{level}") / (control or "")
    return Mask.load(folder / "mask.safetensors")


def weights(run_dir: Path, stage: str, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(stage_dir(run_dir, stage) / "weights" / f"step_{step}.safetensors"))


def global_magnitude_keep(state, mask, names, n_remove):
    """Independent reference: among the alive weights of ``names`` pooled, keep all but the
    ``n_remove`` smallest |w| (float weights: no ties in practice)."""
    values = torch.cat([state[n].abs().reshape(-1)[mask[n].reshape(-1)] for n in names])
    keep = values.numel() - n_remove
    threshold = torch.sort(values, descending=True).values[keep - 1]
    assert int((values == threshold).sum()) == 1, "tie at the cut-off; the reference would be ambiguous"
    return {n: mask[n] & (state[n].abs() >= threshold) for n in names}


@pytest.fixture(scope="module")
def magnitude(tmp_path_factory):
    """The preset's lottery (magnitude, global, fraction 0.2, fc.weight ignored), three levels, with
    the layer-wise and the global shuffle controls. Shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("magnitude")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNELAB_HOME", str(root / "home"))
        spec = make_spec()
        store = RunStore(root / "store")
        summary = run_lottery(spec, 3, controls=("shuffle", "shuffle_global"), store=store)
    run_dir = store.run(summary["run_id"]).path
    return SimpleNamespace(
        spec=spec,
        store=store,
        summary=summary,
        run_dir=run_dir,
        masks=[level_mask(run_dir, level) for level in range(4)],
    )


# exact counts, nesting, ignore ------------------------------------------------------------------
def test_levels_remove_round_half_up_of_alive_weights_and_nest(magnitude):
    masks = magnitude.masks
    assert masks[0].num_kept == masks[0].num_total == 2112 + 561 + 170
    removed = []
    for level in range(1, 4):
        before, after = alive(masks[level - 1], HIDDEN), alive(masks[level], HIDDEN)
        assert before - after == rhu(0.2, before), f"level {level}"
        removed.append(before - after)
        assert masks[level].is_subset_of(masks[level - 1])
        assert not masks[level - 1].is_subset_of(masks[level])
        assert bool(masks[level][OUTPUT].all()), "the ignored output layer must stay dense"
    # 0.2 · 2673 = 534.6 → 535; 0.2 · 2138 = 427.6 → 428; 0.2 · 1710 = 342
    assert removed == [535, 428, 342]
    for row, mask in zip(magnitude.summary["levels"], masks):
        assert row["density"] == pytest.approx(mask.density, abs=0)


def test_level_mask_is_global_magnitude_of_the_previous_levels_trained_weights(magnitude):
    masks, run_dir = magnitude.masks, magnitude.run_dir
    for level in (1, 2, 3):
        trained = weights(run_dir, f"level_{level - 1}", 30)
        before = alive(masks[level - 1], HIDDEN)
        expected = global_magnitude_keep(trained, masks[level - 1], HIDDEN, rhu(0.2, before))
        for name in HIDDEN:
            assert torch.equal(masks[level][name], expected[name]), f"level {level} {name}"


def test_rewind_zero_starts_every_level_from_init_times_mask(magnitude):
    init = Workbench.from_spec(magnitude.spec).new_model().state_dict()
    run_dir = magnitude.run_dir
    start0 = weights(run_dir, "level_0", 0)
    assert set(start0) == set(init)
    for key in init:
        assert torch.equal(start0[key], init[key]), key
    for level in (1, 2, 3):
        mask = magnitude.masks[level]
        start = weights(run_dir, f"level_{level}", 0)
        final = weights(run_dir, f"level_{level}", 30)
        for key, value in init.items():
            expected = value * mask[key] if key in mask else value
            assert torch.equal(start[key], expected), f"level {level} {key}"
            if key in mask:  # trained under the mask: pruned weights stay exactly zero
                assert not bool(final[key][~mask[key]].any())
        assert not torch.equal(final["hidden.0.weight"], start["hidden.0.weight"])


def test_shuffle_control_keeps_per_layer_counts_at_new_positions(magnitude):
    init = Workbench.from_spec(magnitude.spec).new_model().state_dict()
    for level in (1, 2, 3):
        ticket = magnitude.masks[level]
        shuffled = level_mask(magnitude.run_dir, level, "shuffle")
        assert counts(shuffled) == counts(ticket)
        for name in HIDDEN:
            assert not torch.equal(shuffled[name], ticket[name]), f"level {level} {name} was not shuffled"
        start = weights(magnitude.run_dir, f"level_{level}/shuffle", 0)
        for name in shuffled:
            assert torch.equal(start[name], init[name] * shuffled[name])


def test_shuffle_global_control_keeps_the_ticket_count_over_the_pruned_layers_only(magnitude):
    """OpenLTH's randomly_prune --strategy=global: the ticket's kept count at uniformly random positions
    of all pruned tensors pooled; the ignored output layer stays dense; rewound weights."""
    init = Workbench.from_spec(magnitude.spec).new_model().state_dict()
    moved = 0
    for level in (1, 2, 3):
        ticket = magnitude.masks[level]
        shuffled = level_mask(magnitude.run_dir, level, "shuffle_global")
        assert alive(shuffled, HIDDEN) == alive(ticket, HIDDEN) and bool(shuffled[OUTPUT].all())
        assert shuffled != level_mask(magnitude.run_dir, level, "shuffle")
        moved += counts(shuffled) != counts(ticket)
        # hidden.0 holds 2112 of the 2673 pooled positions: its share of the kept weights is that fraction
        share = int(shuffled["hidden.0.weight"].sum()) / alive(ticket, HIDDEN)
        assert share == pytest.approx(2112 / 2673, abs=0.05)
        start = weights(magnitude.run_dir, f"level_{level}/shuffle_global", 0)
        for name in shuffled:
            assert torch.equal(start[name], init[name] * shuffled[name])
    assert moved == 3, "a global shuffle does not keep the ticket's per-layer counts"


def test_summary_json_rows(magnitude):
    on_disk = magnitude.store.run(magnitude.summary["run_id"]).summary()
    assert on_disk == magnitude.summary
    assert on_disk["kind"] == "lottery" and on_disk["controls"] == ["shuffle", "shuffle_global"]
    rows = on_disk["levels"]
    assert [row["level"] for row in rows] == [0, 1, 2, 3]
    densities = [row["density"] for row in rows]
    assert densities[0] == 1.0 and densities == sorted(densities, reverse=True) and len(set(densities)) == 4
    for row in rows:
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert ("shuffle" in row) == ("shuffle_global" in row) == (row["level"] > 0)
        if row["level"]:
            assert 0.0 <= row["shuffle"] <= 1.0 and 0.0 <= row["shuffle_global"] <= 1.0
    assert on_disk["density"] == rows[-1]["density"] and on_disk["test_accuracy"] == rows[-1]["test_accuracy"]


# per-layer rates and layerwise scope ------------------------------------------------------------
def test_layerwise_scope_and_rates_give_exact_per_tensor_counts(tmp_path):
    spec = make_spec(
        **{"prune.scope": "layerwise", "prune.fraction": 0.5, "prune.ignore": [], "prune.rates": {"fc.weight": 0.1}}
    )
    summary = run_lottery(spec, 2, store=RunStore(tmp_path / "store"))
    run_dir = RunStore(tmp_path / "store").run(summary["run_id"]).path
    masks = [level_mask(run_dir, level) for level in range(3)]
    for level in (1, 2):
        for name in masks[0]:
            before, after = int(masks[level - 1][name].sum()), int(masks[level][name].sum())
            rate = 0.1 if name == OUTPUT else 0.5
            assert before - after == rhu(rate, before), f"level {level} {name}"
        assert masks[level].is_subset_of(masks[level - 1])
    # hidden.1: 0.5 · 561 = 280.5 → 281 removed (half up); fc: 17 then 0.1 · 153 = 15.3 → 15
    assert counts(masks[1]) == {"hidden.0.weight": 1056, "hidden.1.weight": 280, "fc.weight": 153}
    assert counts(masks[2]) == {"hidden.0.weight": 528, "hidden.1.weight": 140, "fc.weight": 138}


def test_rates_under_global_scope_prune_their_tensor_on_its_own(tmp_path):
    spec = make_spec(**{"prune.ignore": [], "prune.rates": {"fc.weight": 0.1}})
    store = RunStore(tmp_path / "store")
    summary = run_lottery(spec, 1, store=store)
    run_dir = store.run(summary["run_id"]).path
    dense, mask = level_mask(run_dir, 0), level_mask(run_dir, 1)
    assert int(mask[OUTPUT].sum()) == 170 - 17
    assert alive(dense, HIDDEN) - alive(mask, HIDDEN) == rhu(0.2, 2673) == 535
    expected = global_magnitude_keep(weights(run_dir, "level_0", 30), dense, HIDDEN, 535)
    for name in HIDDEN:  # one pooled ranking over the tensors without a rate
        assert torch.equal(mask[name], expected[name])


# rewinding --------------------------------------------------------------------------------------
def test_rewinding_restores_exactly_the_weights_of_the_rewind_step(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.rewind": "5it"})
    summary = run_lottery(spec, 1, store=store)
    run_dir = store.run(summary["run_id"]).path
    calls = _count_training(monkeypatch)
    dense = run_train(make_spec(**{"train.save_steps": ["5it"]}), store=store)
    assert calls == [], "level 0 is this train run, which saved the rewind step"
    assert stage_dir(run_dir, "level_0") == store.run(dense["run_id"]).path
    at_step_5 = load_file(str(store.run(dense["run_id"]).weights_path(5)))

    # the rewind weights are those an uninterrupted dense training has at step 5
    monkeypatch.undo()
    reference = run_train(make_spec(**{"train.steps": "5it"}), store=RunStore(tmp_path / "reference"))
    rewind = load_file(str(RunStore(tmp_path / "reference").run(reference["run_id"]).weights_path(5)))
    assert set(rewind) == set(at_step_5)
    for key in rewind:
        assert torch.equal(rewind[key], at_step_5[key]), key
    init = Workbench.from_spec(spec).new_model().state_dict()
    assert not torch.equal(rewind["hidden.0.weight"], init["hidden.0.weight"]), "5 steps must move the weights"

    mask = level_mask(run_dir, 1)
    assert mask.num_kept < mask.num_total
    level1 = weights(run_dir, "level_1", 5)
    for key in rewind:
        expected = rewind[key] * mask[key] if key in mask else rewind[key]
        assert torch.equal(level1[key], expected), key
    # the level starts at the rewind step: no step-0 weights, and it trains to the end of the schedule
    assert sorted(p.name for p in (run_dir / "level_1" / "weights").iterdir()) == [
        "step_30.safetensors",
        "step_5.safetensors",
    ]
    assert store.run(f"{summary['run_id']}/level_1").summary()["final_step"] == 30
    assert not (run_dir / "pretrain").exists()


# random strategies and NTK rescaling ------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["random", "random_global", "random_layerwise"])
def test_random_level_strategies_exact_counts_and_seeding(tmp_path, strategy, magnitude):
    spec = make_spec(**{"prune.strategy": strategy})

    def masks_for(spec, store_dir, levels):
        store = RunStore(store_dir)
        run_dir = store.run(run_lottery(spec, levels, store=store)["run_id"]).path
        return run_dir, [level_mask(run_dir, level) for level in range(levels + 1)]

    run_dir, masks = masks_for(spec, tmp_path / "a", 2)
    for level in (1, 2):
        before = alive(masks[level - 1], HIDDEN)
        assert before - alive(masks[level], HIDDEN) == rhu(0.2, before)
        assert masks[level].is_subset_of(masks[level - 1]) and bool(masks[level][OUTPUT].all())
        reference = global_magnitude_keep(
            weights(run_dir, f"level_{level - 1}", 30), masks[level - 1], HIDDEN, rhu(0.2, before)
        )
        if strategy == "random_layerwise":  # magnitude's per-layer counts, random positions
            for name in HIDDEN:
                assert int(masks[level][name].sum()) == int(reference[name].sum())
        assert any(not torch.equal(masks[level][n], reference[n]) for n in HIDDEN), "not random"
    if strategy == "random_layerwise":  # level 0 is the same dense training as the magnitude lottery's
        assert counts(masks[1]) == counts(magnitude.masks[1])

    _, again = masks_for(spec, tmp_path / "b", 1)
    assert again[1] == masks[1]
    _, other = masks_for(spec.with_seed(1), tmp_path / "c", 1)
    assert other[1] != masks[1]


def test_ntk_rescale_random_global_defaults_to_the_reference_global_factor(tmp_path):
    """Random-Pruning-NTK's random_rescale_global: w_rewind ⊙ m_L / sqrt(d_L) with one d_L, the kept
    fraction of the considered (hidden) weights; the ignored output layer unscaled; never compounded."""
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.strategy": "random_global", "prune.ntk_rescale": True})
    assert spec.prune.ntk_rescale_mode == "auto" and spec.prune.resolved_ntk_rescale_mode == "global"
    summary = run_lottery(spec, 2, store=store)
    run_dir = store.run(summary["run_id"]).path
    init = Workbench.from_spec(spec).new_model().state_dict()
    considered = 2112 + 561
    for level in (1, 2):
        mask = level_mask(run_dir, level)
        start = weights(run_dir, f"level_{level}", 0)
        factor = 1 / math.sqrt(alive(mask, HIDDEN) / considered)
        for key, value in init.items():
            if key not in mask or key == OUTPUT:
                assert torch.equal(start[key], value), key
                continue
            torch.testing.assert_close(start[key], value * mask[key] * factor, rtol=1e-6, atol=0)
        per_layer = [int(mask[n].sum()) / mask[n].numel() for n in HIDDEN]
        assert per_layer[0] != per_layer[1]  # so the global factor differs from the per-layer ones
    # level 2 is computed from the rewind weights: its factor is 1/sqrt(d_2), not 1/sqrt(d_1 · d_2)
    d2 = alive(level_mask(run_dir, 2), HIDDEN) / considered
    assert d2 == pytest.approx(0.64, abs=0.001)
    kept = level_mask(run_dir, 2)["hidden.0.weight"]
    ratio = weights(run_dir, "level_2", 0)["hidden.0.weight"][kept] / init["hidden.0.weight"][kept]
    torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / math.sqrt(d2)), rtol=1e-6, atol=0)


def test_ntk_rescale_per_layer_mode_uses_each_tensors_density(tmp_path):
    store = RunStore(tmp_path / "store")
    spec = make_spec(
        **{"prune.strategy": "random_global", "prune.ntk_rescale": True, "prune.ntk_rescale_mode": "per_layer"}
    )
    run_dir = store.run(run_lottery(spec, 1, store=store)["run_id"]).path
    init = Workbench.from_spec(spec).new_model().state_dict()
    mask, start = level_mask(run_dir, 1), weights(run_dir, "level_1", 0)
    for key in HIDDEN:
        density = int(mask[key].sum()) / mask[key].numel()
        assert density < 1
        torch.testing.assert_close(start[key], init[key] * mask[key] / math.sqrt(density), rtol=1e-6, atol=0)
    assert torch.equal(start[OUTPUT], init[OUTPUT])  # ignored: factor 1


def test_ntk_rescale_mode_names_runs_without_renaming_old_ones():
    from prunelab.experiments.lottery import lottery_run_id
    from prunelab.specs import SpecError
    from prunelab.specs.base import canonical_hash

    def legacy_id(spec):  # how runs were named before ntk_rescale_mode existed: fields at their defaults dropped
        return f"lottery-{canonical_hash(spec, kind='lottery')}"

    for overrides in ({}, {"prune.ntk_rescale": True}, {"prune.strategy": "random_global"}):
        spec = make_spec(**overrides)
        assert lottery_run_id(spec) == legacy_id(spec), overrides  # same rule as before: same name
    rescaled = make_spec(**{"prune.strategy": "random_global", "prune.ntk_rescale": True})
    explicit = make_spec(
        **{"prune.strategy": "random_global", "prune.ntk_rescale": True, "prune.ntk_rescale_mode": "global"}
    )
    per_layer = make_spec(
        **{"prune.strategy": "random_global", "prune.ntk_rescale": True, "prune.ntk_rescale_mode": "per_layer"}
    )
    # auto resolves to the reference's global rule for random_global: named as such, not as the old per-layer runs
    assert lottery_run_id(rescaled) == lottery_run_id(explicit) != legacy_id(rescaled)
    assert lottery_run_id(per_layer) not in (lottery_run_id(rescaled), legacy_id(rescaled))
    with pytest.raises(SpecError, match="needs prune.ntk_rescale=true"):
        make_spec(**{"prune.ntk_rescale_mode": "global"})
    with pytest.raises(SpecError, match="ntk_rescale_mode must be one of"):
        make_spec(**{"prune.ntk_rescale": True, "prune.ntk_rescale_mode": "layer"})


def test_cli_shortcuts_for_count_rule_and_rescale_mode():
    import argparse

    from prunelab.cli.commands.lottery import add_pruning_flags, pruning_overrides

    parser = argparse.ArgumentParser()
    add_pruning_flags(parser)
    args = parser.parse_args(["--count-rule", "openlth", "--ntk-rescale-mode", "per_layer"])
    assert set(pruning_overrides(args)) == {
        "--prune.count_rule=openlth",
        "--prune.ntk_rescale_mode=per_layer",
        "--prune.ntk_rescale=true",
    }  # a mode implies rescaling
    assert pruning_overrides(parser.parse_args([])) == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--count-rule", "ceil"])


# the OpenLTH count rule -------------------------------------------------------------------------
def test_openlth_count_rule_counts_the_ignored_layer_and_removes_one_more(tmp_path):
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.count_rule": "openlth"})
    summary = run_lottery(spec, 2, store=store)
    run_dir = store.run(summary["run_id"]).path
    masks = [level_mask(run_dir, level) for level in range(3)]
    removed = []
    for level in (1, 2):
        before = alive(masks[level - 1], HIDDEN)
        # open_lth sparse_global: ceil(f · all remaining, the ignored 170 included) as a sorted index, + 1
        removed.append(before - alive(masks[level], HIDDEN))
        assert removed[-1] == math.ceil(0.2 * (before + 170)) + 1
        assert bool(masks[level][OUTPUT].all()) and masks[level].is_subset_of(masks[level - 1])
        expected = global_magnitude_keep(
            weights(run_dir, f"level_{level - 1}", 30), masks[level - 1], HIDDEN, removed[-1]
        )
        for name in HIDDEN:
            assert torch.equal(masks[level][name], expected[name])
    # 0.2 · (2673 + 170) = 568.6 → 569, + 1; 0.2 · (2103 + 170) = 454.6 → 455, + 1 (the exact rule: 535, 428)
    assert removed == [570, 456]
    with pytest.raises(SpecError, match="count_rule must be one of"):
        make_spec(**{"prune.count_rule": "ceil"})


# extending and resuming -------------------------------------------------------------------------
def _count_training(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = Workbench.train

    def counting(self, model, run, **kwargs):
        calls.append(
            ("level_0" if run.kind == "train" else run.run_id.split("/", 1)[1]) if run is not None else "<memory>"
        )  # a lottery's level 0 is its spec's train run
        return original(self, model, run, **kwargs)

    monkeypatch.setattr(Workbench, "train", counting)
    return calls


def test_raising_levels_trains_only_the_new_level_and_its_controls(tmp_path, monkeypatch):
    calls = _count_training(monkeypatch)
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"train.steps": "10it"})
    first = run_lottery(spec, 2, controls=("reinit",), store=store)
    assert calls == ["level_0", "level_1", "level_1/reinit", "level_2", "level_2/reinit"]
    run_dir = store.run(first["run_id"]).path
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("summary.json") if p.parent != run_dir}

    calls.clear()
    second = run_lottery(spec, 3, controls=("reinit",), store=store)
    assert calls == ["level_3", "level_3/reinit"]
    assert second["run_id"] == first["run_id"]
    assert second["levels"][:3] == first["levels"]
    assert [row["level"] for row in second["levels"]] == [0, 1, 2, 3]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "a finished stage was rewritten"
    assert store.run(first["run_id"]).summary()["levels"] == second["levels"]

    calls.clear()
    assert run_lottery(spec, 3, controls=("reinit",), store=store)["levels"] == second["levels"]
    assert calls == []


class Crash(RuntimeError):
    pass


def test_interrupted_lottery_resumes_inside_level_2_and_reuses_earlier_levels(tmp_path, monkeypatch, magnitude):
    original = TrainingLoop._save_checkpoint
    crash = {"armed": True}

    def save_then_crash(self, step):
        original(self, step)
        if crash["armed"] and self.checkpoint_dir.parent.name == "level_2" and step == 10:
            raise Crash("simulated interruption")

    monkeypatch.setattr(TrainingLoop, "_save_checkpoint", save_then_crash)
    calls = _count_training(monkeypatch)
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"train.checkpoint_every": "10it"})  # not semantic: same run as the fixture's
    with pytest.raises(Crash):
        run_lottery(spec, 2, store=store)
    assert calls == ["level_0", "level_1", "level_2"]
    run_id = f"lottery-{spec.run_hash('lottery')}"
    assert run_id == magnitude.summary["run_id"]
    assert store.run(f"{run_id}/level_1").finished and not store.run(f"{run_id}/level_2").finished
    assert (store.run(f"{run_id}/level_2").path / "checkpoints" / "latest.json").is_file()

    crash["armed"] = False
    calls.clear()
    summary = run_lottery(spec, 2, store=store)
    assert calls == ["level_2"]
    level2 = store.run(f"{run_id}/level_2").summary()
    assert level2["resumed_from"] == 10
    # identical to the uninterrupted lottery of the shared fixture
    assert level_mask(store.run(run_id).path, 2) == magnitude.masks[2]
    resumed = weights(store.run(run_id).path, "level_2", 30)
    reference = weights(magnitude.run_dir, "level_2", 30)
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    assert summary["levels"][2]["test_accuracy"] == magnitude.summary["levels"][2]["test_accuracy"]
