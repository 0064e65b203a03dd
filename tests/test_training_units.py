"""Trainer building blocks: schedules, optimisers, devices, evaluation, checkpoint files, metrics files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from prunelab.specs.training import TrainingSpec
from prunelab.store import DamagedFile
from prunelab.training import (
    build_optimizer,
    evaluate,
    load_checkpoint,
    lr_at_step,
    make_lr_schedule,
    read_metrics,
    resolve_device,
    save_checkpoint,
)
from prunelab.training.checkpoint import decode_state, encode_state
from prunelab.training.metrics import TENSORBOARD_HINT, MetricsWriter, load_summary_writer, truncate_metrics


# schedules ----------------------------------------------------------------------------------------
def test_constant_schedule():
    assert lr_at_step(0, lr=0.3) == 0.3
    assert lr_at_step(10_000, lr=0.3, schedule="constant", total_steps=5) == 0.3


def test_multistep_schedule_from_step_strings():
    spec = TrainingSpec(lr=0.1, steps="4ep", schedule="multistep", milestones=("3ep", "2ep"), gamma=0.1)
    lr = make_lr_schedule(spec, iterations_per_epoch=10)
    assert lr(0) == 0.1 and lr(19) == 0.1
    assert lr(20) == pytest.approx(0.01) and lr(29) == pytest.approx(0.01)
    assert lr(30) == pytest.approx(0.001) and lr(39) == pytest.approx(0.001)


def test_cosine_schedule_reaches_zero_at_the_end():
    spec = TrainingSpec(lr=0.2, steps="100it", schedule="cosine")
    lr = make_lr_schedule(spec, iterations_per_epoch=7)
    assert lr(0) == 0.2
    assert lr(50) == pytest.approx(0.1)
    assert lr(25) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert lr(100) == pytest.approx(0.0, abs=1e-15)


def test_linear_warmup_then_schedule():
    spec = TrainingSpec(lr=0.4, steps="2ep", schedule="cosine", warmup="10it")
    lr = make_lr_schedule(spec, iterations_per_epoch=25)
    assert lr(0) == 0.0
    assert lr(5) == pytest.approx(0.2)
    assert lr(10) == pytest.approx(0.4)  # cosine starts at the end of the warm-up
    assert lr(30) == pytest.approx(0.2)  # halfway between 10 and 50
    assert lr(50) == pytest.approx(0.0, abs=1e-15)
    multistep = make_lr_schedule(
        TrainingSpec(lr=1.0, steps="100it", schedule="multistep", milestones=("5it",), warmup="10it"), 10
    )
    assert (
        multistep(4) == pytest.approx(0.4)
        and multistep(5) == pytest.approx(0.05)
        and multistep(10) == pytest.approx(0.1)
    )


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError):
        lr_at_step(-1, lr=0.1)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at_step(0, lr=0.1, schedule="linear")


# optimisers ---------------------------------------------------------------------------------------
def _params():
    return [nn.Parameter(torch.zeros(3))]


def test_sgd_hyperparameters():
    opt = build_optimizer(
        _params(), TrainingSpec(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    )
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.05, 0.9, True, 5e-4)
    assert group["dampening"] == 0 and group["foreach"] is True


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_hyperparameters(name, cls):
    opt = build_optimizer(_params(), TrainingSpec(optimizer=name, lr=3e-4, betas=(0.8, 0.95), weight_decay=0.01))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"], group["foreach"]) == (
        3e-4,
        (0.8, 0.95),
        0.01,
        True,
    )


def test_adamw_weight_decay_is_decoupled_and_adam_is_l2():
    # one step with a zero gradient: AdamW shrinks the weight by lr*wd, Adam's L2 term goes through the moments
    for name, expected in (("adamw", 1.0 - 0.1 * 0.5), ("adam", 1.0 - 0.1)):
        p = nn.Parameter(torch.ones(1))
        opt = build_optimizer([p], TrainingSpec(optimizer=name, lr=0.1, weight_decay=0.5))
        p.grad = torch.zeros(1)
        opt.step()
        assert p.item() == pytest.approx(expected, rel=1e-5), name


def test_optimizer_errors():
    with pytest.raises(ValueError, match="momentum > 0"):
        build_optimizer(_params(), TrainingSpec(nesterov=True))
    with pytest.raises(ValueError, match="SGD only"):  # rejected when the spec is built
        TrainingSpec(optimizer="adam", nesterov=True, momentum=0.9)
    with pytest.raises(ValueError, match="SGD only"):
        TrainingSpec(optimizer="adamw", momentum=0.9)
    with pytest.raises(ValueError, match="no parameters"):
        build_optimizer([], TrainingSpec())


# devices ------------------------------------------------------------------------------------------
def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_cuda_unavailable_is_an_error():
    for text in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device(text)


# evaluation ---------------------------------------------------------------------------------------
class _Pick(nn.Module):
    """Predicts the argmax of its input; the logits are the input itself."""

    def forward(self, x):
        return x


def test_evaluate_accuracy_and_loss_on_a_toy_case():
    x = torch.eye(4).repeat(3, 1) * 5.0  # 12 examples, the prediction of row i is i % 4
    y = torch.arange(12) % 4
    y[:3] = (y[:3] + 1) % 4  # three wrong labels
    expected_loss = torch.nn.functional.cross_entropy(x, y).item()
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    model = _Pick().train()
    result = evaluate(model, batches)
    assert result.accuracy == pytest.approx(9 / 12) and result.examples == 12
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    assert model.training  # mode restored
    split = evaluate(model, batches, batch_size=2, device="cpu")
    assert split.accuracy == result.accuracy and split.loss == pytest.approx(result.loss, rel=1e-6)

    class Loader:
        def epoch(self, e, start_batch=0):
            assert e == 0
            return iter(batches)

    assert evaluate(model, Loader()).accuracy == result.accuracy
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [])


def test_evaluate_uses_eval_mode_and_no_grad():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            seen.append((self.training, torch.is_grad_enabled()))
            return x * self.w

    evaluate(Probe(), [(torch.randn(3, 2), torch.zeros(3, dtype=torch.int64))], bf16=True)
    assert seen == [(False, False)]


# checkpoints --------------------------------------------------------------------------------------
def _trained_optimizer(name: str):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    opt = build_optimizer(
        list(model.parameters()), TrainingSpec(optimizer=name, lr=0.01, momentum=0.9 if name == "sgd" else 0.0)
    )
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizer_state_round_trips_through_tensors_and_json(name):
    _, opt = _trained_optimizer(name)
    tensors = {}
    meta = json.loads(json.dumps(encode_state(opt.state_dict(), tensors)))
    restored = decode_state(meta, tensors)
    original = opt.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    assert set(restored["state"]) == set(original["state"])
    for index, entry in original["state"].items():
        for key, value in entry.items():
            assert (
                torch.equal(restored["state"][index][key], value)
                if torch.is_tensor(value)
                else restored["state"][index][key] == value
            )


def test_checkpoint_round_trip_and_stale_sidecar(tmp_path):
    model, opt = _trained_optimizer("adam")
    save_checkpoint(tmp_path, step=7, model=model, update={"optimizer": opt.state_dict()}, trainer={"best_step": 3})
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 7 and loaded.trainer == {"best_step": 3} and loaded.note is None
    assert set(loaded.model) == set(model.state_dict())
    assert all(torch.equal(loaded.model[k], v) for k, v in model.state_dict().items())
    assert torch.equal(loaded.rng["cpu"], torch.get_rng_state())
    fresh_model, fresh_opt = _trained_optimizer("adam")
    fresh_opt.load_state_dict(loaded.update["optimizer"])
    # a sidecar naming another step (a save interrupted between the two files) is detected
    sidecar = json.loads((tmp_path / "latest.json").read_text())
    sidecar["step"] = 5
    (tmp_path / "latest.json").write_text(json.dumps(sidecar))
    stale = load_checkpoint(tmp_path)
    assert stale.step == 7 and "names step 5" in stale.note
    (tmp_path / "latest.json").unlink()
    assert "missing" in load_checkpoint(tmp_path).note
    assert not any(p.suffix == ".tmp" for p in tmp_path.iterdir())


def test_load_checkpoint_missing_and_broken(tmp_path):
    assert load_checkpoint(tmp_path) is None
    # a sidecar without its tensor file is what a save interrupted while rotating leaves: nothing to resume
    (tmp_path / "latest.json").write_text("{}")
    assert load_checkpoint(tmp_path) is None
    (tmp_path / "latest.safetensors").write_bytes(b"garbage")
    with pytest.raises(DamagedFile, match=r"latest\.safetensors: damaged \(not a readable safetensors file"):
        load_checkpoint(tmp_path)
    messages = []
    assert load_checkpoint(tmp_path, on_damaged=messages.append) is None  # falls back to the start
    assert "latest.safetensors is damaged" in messages[0] and "starts over" in messages[-1]
    assert not (tmp_path / "latest.safetensors").exists()


# metrics files -------------------------------------------------------------------------------------
def test_metrics_truncation_drops_later_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsWriter(path) as writer:
        for step in (0, 5, 10, 15):
            writer.write({"step": step, "test_accuracy": step / 100})
    with open(path, "a") as handle:
        handle.write('{"step": 20, "test_acc')  # a line torn by kill -9
    assert [r["step"] for r in read_metrics(path)] == [0, 5, 10, 15]
    truncate_metrics(path, 10)
    assert [r["step"] for r in read_metrics(path)] == [0, 5, 10]
    assert path.read_text().endswith("\n")


def test_tensorboard_is_optional():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="prunelab\\[tensorboard\\]"):
            load_summary_writer()
        assert "pip install" in TENSORBOARD_HINT
    else:  # pragma: no cover - depends on the environment
        assert load_summary_writer().__name__ == "SummaryWriter"


# documentation ------------------------------------------------------------------------------------
def test_the_example_in_docs_training_md_runs(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text(encoding="utf-8")
    example = re.findall(r"```python\n(.*?)```", text, re.S)[-1]
    exec(compile(example, "docs/training.md", "exec"), {"__name__": "docs_example"})  # one thread: conftest
    assert "accuracy" in capsys.readouterr().out
