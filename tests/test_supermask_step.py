"""The supermask update step on the training loop: scores trained, weights frozen (edge-popup) or
re-drawn on schedule (IteRand), and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

import copy

import pytest
import torch

from prunelab.supermask import SupermaskError, SupermaskStep, supermask_layers, supermask_masks, to_supermask
from prunelab.supermask import step as step_module
from prunelab.training import StepContext, classification_loss, load_checkpoint, train
from test_training import Crash, Net, assert_same_state, loaders, quiet, spec, state


def network(seed: int = 0, **options) -> torch.nn.Module:
    options = {"method": "iterand", "weight_init": "kaiming_normal", **options}
    return to_supermask(Net(), 0.5, generator=torch.Generator().manual_seed(seed), **options)


def bound(step: SupermaskStep, model: torch.nn.Module, s=None) -> SupermaskStep:
    s = s or spec()
    step.bind(StepContext(model, model, s, torch.device("cpu"), 6, classification_loss(s, torch.device("cpu"))))
    return step


def batches(count: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(count)]


def run_steps(step, data, start):
    for i, (x, y) in enumerate(data):
        step.step(x, y, start + i)


def test_the_step_state_round_trips_into_a_fresh_step():
    data = batches(10)
    torch.manual_seed(0)  # dropout draws from the global RNG; both continuations start from the same state
    model = network()
    step = bound(SupermaskStep(rerand_freq="2it", rerand_lambda=0.5, seed=3), model)
    run_steps(step, data[:5], 0)
    saved_model, saved_step = state(model), copy.deepcopy(step.state_dict())
    rng = torch.get_rng_state()
    run_steps(step, data[5:], 5)
    assert step.rerandomizations == 5  # before iterations 1, 3, 5, 7, 9

    torch.set_rng_state(rng)
    twin = network(seed=1)  # other weights and scores: everything must come from the saved state
    other = bound(SupermaskStep(rerand_freq="2it", rerand_lambda=0.5, seed=999), twin)
    twin.load_state_dict(saved_model)
    other.load_state_dict(saved_step)
    assert other.rerandomizations == 2 and torch.equal(other.generator.get_state(), saved_step["generator"])
    run_steps(other, data[5:], 5)
    assert_same_state(state(twin), state(model))
    assert other.final_mask() == supermask_masks(model)


def test_rerandomisation_runs_before_iterations_k_minus_1_2k_minus_1(monkeypatch):
    calls = []
    monkeypatch.setattr(step_module, "rerandomize_", lambda model, fraction, **kw: calls.append(fraction))
    for freq, period in (("3it", 3), ("1ep", 6), (4, 4)):
        calls.clear()
        model = network()
        step = bound(SupermaskStep(rerand_freq=freq, rerand_lambda=0.2), model)
        seen = []
        for i, (x, y) in enumerate(batches(13)):
            before = len(calls)
            step.step(x, y, i)
            if len(calls) > before:
                seen.append(i)
        expected = 13 // period
        assert seen == [k * period - 1 for k in range(1, expected + 1)] and calls == [0.2] * expected


def test_edge_popup_trains_scores_only_and_never_redraws():
    model = network(method="edge-popup")
    weights = {p: layer.weight.clone() for p, layer in supermask_layers(model).items()}
    scores = {p: layer.scores.detach().clone() for p, layer in supermask_layers(model).items()}
    step = bound(SupermaskStep(rerand_freq="1it", rerand_lambda=0.0), model)
    assert {id(p) for group in step.optimizer.param_groups for p in group["params"]} == {
        id(layer.scores) for layer in supermask_layers(model).values()
    }
    run_steps(step, batches(4), 0)
    for path, layer in supermask_layers(model).items():
        assert torch.equal(layer.weight, weights[path]) and not torch.equal(layer.scores, scores[path])
    assert step.rerandomizations == 0


def test_iterand_resumes_bit_identically_after_a_crash(tmp_path):
    s = spec(steps="4ep", eval_every="4it", checkpoint_every="1ep", schedule="cosine")

    def run(out_dir, crash_at=None):
        train_loader, test_loader = loaders()
        train_loader.crash_at = crash_at
        model = network()
        update = SupermaskStep(rerand_freq="5it", rerand_lambda=0.3, seed=4)
        result = train(model, train_loader, test_loader, s, out_dir=out_dir, update=update, seed=5, log=quiet)
        return model, result, update

    reference, ref_result, ref_step = run(tmp_path / "a")
    initial = network()
    assert ref_step.rerandomizations == 4  # before iterations 4, 9, 14, 19 of 24
    assert any(
        not torch.equal(a.weight, b.weight)
        for a, b in zip(supermask_layers(reference).values(), supermask_layers(initial).values())
    )
    with pytest.raises(Crash):
        run(tmp_path / "b", crash_at=(2, 2))  # dies at step 14; last checkpoint: 12
    assert load_checkpoint(tmp_path / "b" / "checkpoints").step == 12
    resumed, result, resumed_step = run(tmp_path / "b")
    assert result.resumed_from == 12 and resumed_step.rerandomizations == 4
    assert_same_state(state(resumed), state(reference))
    assert result.history == ref_result.history
    assert result.mask == supermask_masks(reference) == ref_result.mask


def test_a_checkpoint_of_another_supermask_setting_is_refused(tmp_path):
    def run(update, density=0.5):
        train_loader, test_loader = loaders()
        model = to_supermask(Net(), density, generator=torch.Generator().manual_seed(0))
        train(model, train_loader, test_loader, spec(steps="1ep"), out_dir=tmp_path, update=update, log=quiet)

    run(SupermaskStep())
    with pytest.raises(Exception, match="different run"):
        run(SupermaskStep(), density=0.3)
    with pytest.raises(Exception, match="different run"):
        run(SupermaskStep(rerand_freq="2it", rerand_lambda=0.1))


def test_bad_step_options_fail_clearly():
    with pytest.raises(SupermaskError, match="need rerand_freq"):
        SupermaskStep(rerand_lambda=0.1)
    with pytest.raises(SupermaskError, match="rerand_mu goes with rerand_mode='manual'"):
        SupermaskStep(rerand_freq="10it", rerand_lambda=0.5, rerand_mode="manual")
    with pytest.raises(SupermaskError, match="at least one iteration"):
        SupermaskStep(rerand_freq="0it", rerand_lambda=0.1)
    with pytest.raises(SupermaskError, match=r"must be in \[0, 1\]"):
        SupermaskStep(rerand_freq="10it", rerand_lambda=2.0)
    with pytest.raises(ValueError, match="cannot read step"):
        SupermaskStep(rerand_freq="often", rerand_lambda=0.1)
    with pytest.raises(SupermaskError, match="no supermask layer"):
        bound(SupermaskStep(), Net())
