"""The training loop's update-step seam: a step of one's own gets plan, evaluation, checkpoints with its
own state, resume and divergence checks from the loop; the run directory's layout is spelled out once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunelab.masks import Mask
from prunelab.store import RunLayout, RunStore
from prunelab.training import MaskedStep, StepContext, TrainingDiverged, UpdateStep, load_checkpoint, train
from test_training import Crash, Net, assert_same_state, loaders, quiet, random_mask, spec, state


class NoisySignStep(UpdateStep):
    """Sign-SGD with noise from a generator of its own: its result depends on state the loop knows
    nothing about, so only a checkpointed ``state_dict`` makes a resumed run exact."""

    name = "noisy-sign"

    def __init__(self, seed: int = 7, mask: Mask | None = None) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.mask = mask
        self.updates = 0
        self.lrs: list[float] = []

    def bind(self, context: StepContext) -> None:
        self.model, self.forward = context.model, context.forward
        self.params = [p for p in context.model.parameters() if p.requires_grad]
        self.lr = context.spec.lr

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        self.lrs.append(lr)

    def step(self, x, y, iteration):
        for p in self.params:
            p.grad = None
        loss = torch.nn.functional.cross_entropy(self.forward(x), y)
        loss.backward()
        with torch.no_grad():
            for p in self.params:
                noise = torch.randn(p.shape, generator=self.generator)
                p.sub_(self.lr * (p.grad.sign() + 0.1 * noise))
        self.updates += 1
        return loss.detach()

    def state_dict(self):
        return {"generator": self.generator.get_state(), "updates": self.updates, "shape": (1, 2)}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.updates = state["updates"]
        assert state["shape"] == (1, 2)  # tuples come back as tuples

    def fingerprint(self):
        return {"update": self.name}

    def final_mask(self):
        return self.mask


def run(out_dir, update, s, **kwargs):
    train_loader, test_loader = loaders()
    model = Net()
    result = train(model, train_loader, test_loader, s, out_dir=out_dir, update=update, seed=3, log=quiet, **kwargs)
    return model, result


def test_a_custom_step_resumes_bit_identically_with_its_own_state(tmp_path):
    s = spec(steps="3ep", lr=0.01, eval_every="4it", schedule="cosine")
    reference, ref_result = run(tmp_path / "a", NoisySignStep(), s)
    train_loader, test_loader = loaders()
    train_loader.crash_at = (2, 2)  # dies at step 14; last checkpoint: 12
    with pytest.raises(Crash):
        train(Net(), train_loader, test_loader, s, out_dir=tmp_path / "b", update=NoisySignStep(), seed=3, log=quiet)
    checkpoint = load_checkpoint(tmp_path / "b" / "checkpoints")
    assert checkpoint.step == 12 and checkpoint.update["updates"] == 12
    assert checkpoint.trainer["fingerprint"]["update"] == "noisy-sign"
    step = NoisySignStep(seed=999)  # the checkpoint's generator state wins over a fresh seed
    resumed, result = run(tmp_path / "b", step, s)
    assert result.resumed_from == 12 and step.updates == 18
    assert_same_state(state(resumed), state(reference))
    assert result.history == ref_result.history
    assert step.lrs[0] == pytest.approx(s.lr * 0.5 * (1 + math.cos(math.pi * 12 / 18)))  # the schedule resumes too


def test_the_step_reports_the_final_mask_and_the_loop_checks_its_state(tmp_path):
    model = Net()
    mask = random_mask(model)
    _, result = run(None, NoisySignStep(mask=mask), spec(steps="1ep"))
    assert result.mask is mask
    _, result = run(None, MaskedStep(mask), spec(steps="1ep"))
    assert result.mask == mask

    class Diverging(NoisySignStep):
        def step(self, x, y, iteration):
            loss = super().step(x, y, iteration)
            return loss * float("inf") if iteration == 3 else loss

    with pytest.raises(TrainingDiverged, match="iteration 4 "):
        run(None, Diverging(), spec(steps="1ep"))


def test_a_checkpoint_of_another_step_is_refused(tmp_path):
    run(tmp_path, NoisySignStep(), spec(steps="1ep", lr=0.01))
    with pytest.raises(Exception, match="different run"):
        run(tmp_path, MaskedStep(), spec(steps="1ep", lr=0.01))


def test_update_and_mask_are_exclusive():
    train_loader, test_loader = loaders()
    model = Net()
    with pytest.raises(ValueError, match="either update= or mask="):
        train(
            model,
            train_loader,
            test_loader,
            spec(steps="1ep"),
            out_dir=None,
            update=MaskedStep(),
            mask=random_mask(model),
            log=quiet,
        )


def test_masked_step_resumes_format_1_checkpoints(tmp_path):
    """Runs interrupted before update steps had their own state resume from their checkpoints."""
    import json

    from safetensors.torch import save_file

    s = spec(steps="2ep")
    reference, _ = run(tmp_path / "a", MaskedStep(), s)
    stopped, _ = run(tmp_path / "b", MaskedStep(), s, stop_step=6)
    new = load_checkpoint(tmp_path / "b" / "checkpoints")
    # rewrite the checkpoint the way format 1 stored it: optimizer.state.<index>.<name> + JSON meta
    tensors = {f"model.{k}": v for k, v in new.model.items()}
    tensors.update({f"rng.{k}": v for k, v in new.rng.items()})
    optimizer = new.update["optimizer"]
    plain = {}
    for index, entry in optimizer["state"].items():
        plain[str(index)] = {}
        for name, value in entry.items():
            tensors[f"optimizer.state.{index}.{name}"] = value
    payload = {
        "format": "prunelab.checkpoint/1",
        "step": 6,
        "trainer": new.trainer,
        "optimizer": {"param_groups": optimizer["param_groups"], "state": plain},
    }
    directory = tmp_path / "b" / "checkpoints"
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(directory / "latest.safetensors"),
        metadata={"format": "prunelab.checkpoint/1", "step": "6", "state": json.dumps(payload)},
    )
    (directory / "latest.json").write_text(json.dumps(payload))
    resumed, result = run(tmp_path / "b", MaskedStep(), s)
    assert result.resumed_from == 6
    assert_same_state(state(resumed), state(reference))


def test_the_run_layout_is_the_one_the_trainer_and_the_store_use(tmp_path):
    store = RunStore(tmp_path)
    run_dir = store.run("train-abc")
    assert isinstance(run_dir, RunLayout) and run_dir.run_id == "train-abc" and run_dir.kind == "train"
    model, _ = run(run_dir.path, MaskedStep(), spec(steps="1ep"), save_steps=[2])
    assert run_dir.saved_steps() == [0, 2, 6]
    assert_same_state(load_file(run_dir.weights_path(6)), state(model))
    assert run_dir.metrics_path.is_file() and (run_dir.checkpoints_dir / "latest.safetensors").is_file()
    layout = RunLayout(tmp_path / "x")
    assert layout.weights_path(12) == Path(tmp_path / "x" / "weights" / "step_12.safetensors")
    (layout.weights_dir).mkdir(parents=True)
    (layout.weights_dir / "step_abc.safetensors").write_bytes(b"")
    (layout.weights_dir / "notes.txt").write_text("")
    assert layout.saved_steps() == []
