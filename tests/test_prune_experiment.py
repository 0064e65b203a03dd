"""Pruning-at-initialisation experiments (``run_prune``) on digits with lenet_35_17 and nothing
ignored: 2,240 + 595 + 170 = 3,005 prunable weights (so 0.1 · n = 300.5 tests the half-up rule), and
an MLP, whose FLOPs are one MAC per weight, so the efficiency metrics can be computed by hand."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import round_half_up as rhu
from prunelab.experiments.prune_init import LayerCollapseWarning, densities_from, run_prune
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.specs import SpecError, load_spec
from prunelab.store import RunStore

STRATEGIES = ("random", "magnitude", "snip", "grasp", "grasp_abs", "synflow", "iterative_snip", "ntksap")
BASE = {
    "model.name": "lenet_35_17",
    "train.steps": "10it",
    "train.eval_every": "none",
    "train.progress": "false",
    "prune.ignore": [],
    "prune.iterations": 2,
}
N = 35 * 64 + 17 * 35 + 10 * 17  # 3005 prunable weights
TOTAL_PARAMS = N + 35 + 17 + 10  # plus biases


def make_spec(**overrides):
    return load_spec("digits_lenet_300_100", overrides={**BASE, **overrides})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return RunStore(tmp_path_factory.mktemp("prune") / "store")


def outputs(store, summary):
    run = store.run(summary["run_id"])
    return Mask.load(run.path / "mask.safetensors"), lambda step: load_file(str(run.weights_path(step)))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_single_shot_hits_the_exact_density_and_reports_efficiency(store, strategy):
    spec = make_spec(**{"prune.strategy": strategy})
    summary = run_prune(spec, 0.1, store=store)
    mask, weights = outputs(store, summary)
    kept = rhu(0.1, N)
    assert kept == 301  # 300.5 rounds up
    assert mask.num_total == N and mask.num_kept == kept
    assert summary["density"] == kept / N and summary["kept_weights"] == kept
    assert summary["strategy"] == strategy and summary["experiment"] == "singleshot"
    assert summary["target_density"] == 0.1
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["layer_densities"] == pytest.approx(mask.layer_densities(), abs=0)
    assert summary["layer_collapse"] is bool(mask.collapsed_layers())
    assert summary["collapsed_layers"] == mask.collapsed_layers()
    # an MLP does one MAC per weight: the speed-up is n / kept, the compression counts the biases too
    assert summary["theoretical_speedup"] == pytest.approx(N / kept) and summary["theoretical_speedup"] > 1
    assert summary["compression_ratio"] == pytest.approx(TOTAL_PARAMS / (TOTAL_PARAMS - N + kept))
    # trained from the initial weights under the mask
    init = Workbench.from_spec(spec).new_model().state_dict()
    start, final = weights(0), weights(10)
    for key, value in init.items():
        assert torch.equal(start[key], value * mask[key] if key in mask else value), key
        if key in mask:
            assert not bool(final[key][~mask[key]].any())
    if strategy == "magnitude":  # independent reference: the 301 largest |w| at initialisation
        values = torch.cat([init[n].abs().reshape(-1) for n in mask])
        threshold = torch.sort(values, descending=True).values[kept - 1]
        assert mask == {n: init[n].abs() >= threshold for n in mask}


def test_strategies_give_different_masks(store):
    masks = {
        s: outputs(store, run_prune(make_spec(**{"prune.strategy": s}), 0.1, store=store))[0]
        for s in ("random", "magnitude", "snip", "synflow")
    }
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert masks[a] != masks[b], (a, b)


@pytest.mark.filterwarnings("ignore::prunelab.pruning.selection.LayerCollapseWarning")
def test_layer_collapse_is_detected_reported_and_warned(tmp_path):
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.strategy": "magnitude", "prune.scope": "layerwise", "prune.iterations": 1})
    # layerwise targets: 0.0005 · 2240 = 1.12 → 1, 0.0005 · 595 → 0, 0.0005 · 170 → 0
    with pytest.warns(LayerCollapseWarning, match="hidden.1.weight, fc.weight"):
        summary = run_prune(spec, 0.0005, store=store)
    assert summary["layer_collapse"] is True
    assert summary["collapsed_layers"] == ["hidden.1.weight", "fc.weight"]
    assert summary["layer_densities"] == {"hidden.0.weight": 1 / 2240, "hidden.1.weight": 0.0, "fc.weight": 0.0}
    assert summary["kept_weights"] == 1 and summary["density"] == 1 / N
    assert summary["theoretical_speedup"] == pytest.approx(N / 1)


def test_no_collapse_no_warning(tmp_path, recwarn):
    summary = run_prune(
        make_spec(**{"prune.strategy": "random", "prune.scope": "layerwise"}), 0.5, store=RunStore(tmp_path / "store")
    )
    assert summary["layer_collapse"] is False and summary["collapsed_layers"] == []
    assert not [w for w in recwarn if issubclass(w.category, LayerCollapseWarning)]


def test_multishot_prunes_trained_weights_and_rewinds_to_init(tmp_path):
    store = RunStore(tmp_path / "store")
    spec = make_spec(**{"prune.strategy": "magnitude", "prune.iterations": 1})
    summary = run_prune(spec, 0.2, experiment="multishot", rounds=2, round_steps="5it", store=store)
    mask, weights = outputs(store, summary)
    assert mask.num_kept == rhu(0.2, N) == 601
    assert summary["experiment"] == "multishot" and summary["rounds"] == 2 and summary["round_steps"] == "5it"
    assert summary["density"] == 601 / N
    init = Workbench.from_spec(spec).new_model().state_dict()
    start = weights(0)
    for key, value in init.items():
        assert torch.equal(start[key], value * mask[key] if key in mask else value), key
    # the rounds score briefly trained weights: not the single-shot magnitude mask of the init
    values = torch.cat([init[n].abs().reshape(-1) for n in mask])
    threshold = torch.sort(values, descending=True).values[600]
    assert mask != {n: init[n].abs() >= threshold for n in mask}
    # a different experiment is a different run; the same call is reused
    single = run_prune(spec, 0.2, store=store)
    assert single["run_id"] != summary["run_id"]
    assert run_prune(spec, 0.2, experiment="multishot", rounds=2, round_steps="5it", store=store) == summary


def test_experiment_argument_errors(tmp_path):
    spec = make_spec()
    with pytest.raises(SpecError, match="unknown experiment"):
        run_prune(spec, 0.5, experiment="twoshot", store=RunStore(tmp_path))
    with pytest.raises(SpecError, match="--rounds"):
        run_prune(spec, 0.5, experiment="multishot", rounds=0, store=RunStore(tmp_path))
    with pytest.raises(SpecError, match="counts lottery levels"):  # an option that would be ignored is an error
        run_prune(make_spec(**{"prune.count_rule": "openlth"}), 0.5, store=RunStore(tmp_path))


def test_densities_from():
    assert densities_from(density=[0.5, 0.1]) == [0.5, 0.1]
    assert densities_from(sparsity=[0.9, 0.5, 0.99]) == [0.1, 0.5, 0.01]  # decimal complements, not 0.0999…
    assert densities_from(compression=[0, 1, 2, 2.5]) == pytest.approx([1.0, 0.8, 0.64, 0.8**2.5])
    with pytest.raises(SpecError, match="exactly one"):
        densities_from(density=[0.5], sparsity=[0.5])
    with pytest.raises(SpecError, match="exactly one"):
        densities_from(sparsity=[0.5], compression=[1])
    with pytest.raises(SpecError, match="exactly one"):
        densities_from()
    with pytest.raises(SpecError, match="outside"):
        densities_from(density=[0.0])
    with pytest.raises(SpecError, match="outside"):
        densities_from(compression=[-1])
    with pytest.raises(SpecError, match="outside"):
        densities_from(sparsity=[1.0])
