"""The trainer: masked training, schedules in use, evaluation cadence, save points, crash resume,
divergence, and the file layout. Everything runs on tiny in-memory data in well under a second."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import prunelab.training.checkpoint as checkpoint_module
from prunelab.masks import Mask
from prunelab.specs.training import TrainingSpec
from prunelab.training import CheckpointError, TrainingDiverged, load_checkpoint, read_metrics, train, weights_path

IN, CLASSES, N, BATCH = 8, 3, 96, 16  # 6 iterations per epoch


class Crash(RuntimeError):
    pass


class TensorLoader:
    """Stand-in for prunelab.data.BatchLoader: epoch e's batches are a pure function of (seed, e, b)."""

    def __init__(self, x, y, batch_size, *, seed=0, shuffle=True, noise=0.0):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.iterations_per_epoch = math.ceil(len(x) / batch_size)
        self.seed, self.shuffle, self.noise = seed, shuffle, noise
        self.crash_at: tuple[int, int] | None = None
        self.poison_at: tuple[int, int] | None = None
        self.short_epoch = False

    def epoch(self, e, start_batch=0):
        n = len(self.x)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 7919 + e))
            if self.shuffle
            else torch.arange(n)
        )
        stop = self.iterations_per_epoch - (1 if self.short_epoch else 0)
        for b in range(start_batch, stop):
            if self.crash_at == (e, b):
                raise Crash(f"simulated crash at epoch {e} batch {b}")
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.x[idx]
            if self.noise:
                gen = torch.Generator().manual_seed(hash((self.seed, e, b)) % (2**31))
                x = x + self.noise * torch.randn(x.shape, generator=gen)
            if self.poison_at == (e, b):
                x = torch.full_like(x, float("nan"))
            yield x, self.y[idx]


def blobs(n=N, seed=0):
    centers = 2.0 * torch.randn(CLASSES, IN, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    x = centers[y] + torch.randn(n, IN, generator=gen)
    return x, y


def loaders(noise=0.1):
    x, y = blobs()
    xt, yt = blobs(48, seed=1)
    return TensorLoader(x, y, BATCH, noise=noise), TensorLoader(xt, yt, 24, shuffle=False)


class Net(nn.Module):
    """A small MLP with batch norm (buffers) and dropout (uses the global RNG)."""

    def __init__(self, seed=0):
        super().__init__()
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(IN, 32)
        self.bn = nn.BatchNorm1d(32, momentum=0.3)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(32, CLASSES)
        torch.random.set_rng_state(gen_state)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.fc1(x)))))


def random_mask(model, density=0.4, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return Mask(
        {
            n: torch.rand(p.shape, generator=gen) < density
            for n, p in model.named_parameters()
            if n.endswith("weight") and p.dim() > 1
        }
    )


def spec(**kw):
    base = dict(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=BATCH,
        steps="4ep",
        schedule="multistep",
        milestones=("2ep",),
        eval_every="1ep",
        checkpoint_every="1ep",
        progress=False,
        device="cpu",
        eval_batch_size=24,
    )
    base.update(kw)
    return TrainingSpec(**base)


def quiet(_msg):
    pass


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# masked training --------------------------------------------------------------------------------
OPTIMIZERS = {
    "sgd-momentum-wd": dict(optimizer="sgd", momentum=0.9, weight_decay=1e-3),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": dict(optimizer="adam", lr=0.01, momentum=0.0, weight_decay=1e-3, schedule="cosine", warmup="3it"),
    "adamw": dict(optimizer="adamw", lr=0.01, momentum=0.0, weight_decay=0.1, betas=(0.8, 0.99)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_pruned_weights_and_optimizer_state_stay_exactly_zero(name, tmp_path):
    train_loader, test_loader = loaders()
    model = Net()
    mask = random_mask(model)
    initial = state(model)
    train(
        model, train_loader, test_loader, spec(steps="2ep", **OPTIMIZERS[name]), out_dir=tmp_path, mask=mask, log=quiet
    )
    params = dict(model.named_parameters())
    for pname, keep in mask.items():
        assert torch.count_nonzero(params[pname][~keep]) == 0, pname
        assert not torch.equal(params[pname][keep], initial[pname][keep])  # the kept weights did train
    # optimiser state from the checkpoint: momentum buffers / Adam moments are zero at pruned positions
    ckpt = load_checkpoint(tmp_path / "checkpoints")
    index = {pname: i for i, (pname, _) in enumerate(model.named_parameters())}
    for pname, keep in mask.items():
        entry = ckpt.update["optimizer"]["state"][index[pname]]
        buffers = [v for k, v in entry.items() if k != "step" and torch.is_tensor(v)]
        assert buffers, entry.keys()
        for buffer in buffers:
            assert torch.count_nonzero(buffer[~keep]) == 0, (pname, name)
    # the weights saved at step 0 are already masked
    step0 = load_file(weights_path(tmp_path, 0))
    for pname, keep in mask.items():
        assert torch.count_nonzero(step0[pname][~keep]) == 0


def test_mask_with_explicit_prunable_parameters():
    train_loader, test_loader = loaders()
    model = Net()
    prunable = {"first": model.fc1.weight}
    keep = torch.rand(model.fc1.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.3
    train(
        model,
        train_loader,
        None,
        spec(steps="1ep"),
        out_dir=None,
        mask=Mask({"first": keep}),
        prunable=prunable,
        log=quiet,
    )
    assert torch.count_nonzero(model.fc1.weight[~keep]) == 0
    assert torch.count_nonzero(model.fc.weight) == model.fc.weight.numel()


# the schedule and hyper-parameters are honoured --------------------------------------------------
def test_learning_rate_is_applied_per_step(tmp_path):
    train_loader, test_loader = loaders()
    ipe = train_loader.iterations_per_epoch
    # gamma=0 after the milestone: plain SGD stops moving; warm-up: the first update has lr 0
    s = spec(
        steps="3ep", momentum=0.0, weight_decay=0.0, milestones=("2ep",), gamma=0.0, warmup="4it", save_steps=("2ep",)
    )
    model = Net()
    result = train(model, train_loader, test_loader, s, out_dir=tmp_path, save_steps=[1, 2], log=quiet)
    w = {step: load_file(weights_path(tmp_path, step)) for step in (0, 1, 2, 2 * ipe, 3 * ipe)}
    assert torch.equal(w[0]["fc.weight"], w[1]["fc.weight"])  # lr(0) = 0
    assert not torch.equal(w[1]["fc.weight"], w[2]["fc.weight"])  # lr(1) = 0.05/4
    assert torch.equal(w[2 * ipe]["fc.weight"], w[3 * ipe]["fc.weight"])  # lr = 0 after the milestone
    assert [r["lr"] for r in result.history] == [0.0, 0.05, 0.0, 0.0]


def test_label_smoothing_enters_the_training_loss():
    x, y = blobs()
    loader = TensorLoader(x, y, BATCH, shuffle=False)
    for smoothing in (0.0, 0.3):
        model = Net()
        model.drop.p = 0.0
        expected = nn.functional.cross_entropy(model(x[:BATCH]), y[:BATCH], label_smoothing=smoothing).item()
        s = spec(steps="1it", eval_every="1it", label_smoothing=smoothing)
        result = train(model, loader, None, s, out_dir=None, log=quiet)
        assert result.train_loss == pytest.approx(expected, rel=1e-6)


# evaluation cadence and results ------------------------------------------------------------------
def test_eval_cadence_and_metrics_file(tmp_path):
    train_loader, test_loader = loaders()
    result = train(Net(), train_loader, test_loader, spec(steps="10it", eval_every="3it"), out_dir=tmp_path, log=quiet)
    assert [r["step"] for r in result.history] == [0, 3, 6, 9, 10]
    assert result.history[0]["train_loss"] is None and all(r["train_loss"] > 0 for r in result.history[1:])
    assert read_metrics(tmp_path / "metrics.jsonl") == result.history
    assert set(result.history[0]) == {"step", "epoch", "lr", "train_loss", "test_loss", "test_accuracy"}
    assert result.history[-1]["epoch"] == pytest.approx(10 / 6)
    assert result.final_step == 10 and result.test_accuracy == result.history[-1]["test_accuracy"]
    accs = [r["test_accuracy"] for r in result.history]
    assert result.best_accuracy == max(accs) and result.best_step == result.history[accs.index(max(accs))]["step"]
    assert 0.0 <= result.test_accuracy <= 1.0 and result.resumed_from is None and result.wall_seconds > 0
    only_end = train(Net(), train_loader, test_loader, spec(steps="10it", eval_every=None), out_dir=None, log=quiet)
    assert [r["step"] for r in only_end.history] == [10]


def test_training_learns_the_toy_problem():
    train_loader, test_loader = loaders()
    result = train(Net(), train_loader, test_loader, spec(steps="3ep"), out_dir=None, log=quiet)
    assert result.test_accuracy > 0.9 and result.history[0]["test_accuracy"] < result.test_accuracy


def test_out_dir_none_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_loader, test_loader = loaders()
    result = train(Net(), train_loader, test_loader, spec(steps="1ep"), out_dir=None, save_steps=[2], log=quiet)
    assert result.final_step == 6 and result.test_loss > 0
    assert list(tmp_path.iterdir()) == []


def test_save_steps_produce_files_at_the_right_steps(tmp_path):
    train_loader, test_loader = loaders()
    model = Net()
    train(
        model,
        train_loader,
        test_loader,
        spec(steps="3ep", save_steps=("2ep",)),
        out_dir=tmp_path,
        save_steps=[3, "1ep2it"],
        log=quiet,
    )
    files = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert files == sorted(f"step_{s}.safetensors" for s in (0, 3, 8, 12, 18))
    final = load_file(weights_path(tmp_path, 18))
    assert_same_state(final, state(model))
    assert "bn.running_mean" in final and "bn.num_batches_tracked" in final
    assert int(final["bn.num_batches_tracked"]) == 18
    assert int(load_file(weights_path(tmp_path, 8))["bn.num_batches_tracked"]) == 8
    with pytest.raises(ValueError, match="after the end of training"):
        train(Net(), train_loader, test_loader, spec(steps="1ep"), out_dir=None, save_steps=[7], log=quiet)


def test_bf16_autocast_runs():
    train_loader, test_loader = loaders()
    result = train(Net(), train_loader, test_loader, spec(steps="1ep", bf16=True), out_dir=None, log=quiet)
    assert math.isfinite(result.train_loss) and math.isfinite(result.test_loss)


def test_compile_flag_keeps_the_uncompiled_module_for_state(tmp_path, monkeypatch):
    wrapped = []

    class Wrapper(nn.Module):  # stands in for torch._dynamo's OptimizedModule (state keys get a prefix)
        def __init__(self, module):
            super().__init__()
            self._orig_mod = module

        def forward(self, x):
            return self._orig_mod(x)

    def fake_compile(module, **kwargs):
        wrapped.append(module)
        return Wrapper(module)

    monkeypatch.setattr(torch, "compile", fake_compile)
    train_loader, test_loader = loaders()
    model = Net()
    train(model, train_loader, test_loader, spec(steps="1ep", compile=True), out_dir=tmp_path, log=quiet)
    assert wrapped == [model]
    assert set(load_file(weights_path(tmp_path, 6))) == set(model.state_dict())
    assert set(load_checkpoint(tmp_path / "checkpoints").model) == set(model.state_dict())


@pytest.mark.slow
def test_real_torch_compile_runs():
    train_loader, test_loader = loaders()
    result = train(Net(), train_loader, test_loader, spec(steps="1ep", compile=True), out_dir=None, log=quiet)
    assert math.isfinite(result.test_loss)


def test_progress_goes_to_stderr_and_stdout_stays_clean(capsys):
    train_loader, test_loader = loaders()
    train(Net(), train_loader, test_loader, spec(steps="1ep", progress=True), out_dir=None)
    out, err = capsys.readouterr()
    assert out == ""
    assert "train" in err and "step 6/6" in err


def test_loader_checks(tmp_path):
    train_loader, test_loader = loaders()
    with pytest.raises(ValueError, match="batch size"):
        train(Net(), train_loader, test_loader, spec(batch_size=32), out_dir=None, log=quiet)
    train_loader.short_epoch = True
    with pytest.raises(RuntimeError, match="declares 6 iterations"):
        train(Net(), train_loader, test_loader, spec(steps="2ep"), out_dir=None, log=quiet)


def test_tensorboard_flag(tmp_path):
    train_loader, test_loader = loaders()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="tensorboard"):
            train(Net(), train_loader, test_loader, spec(steps="1ep", tensorboard=True), out_dir=tmp_path, log=quiet)
        assert not (tmp_path / "weights").exists()  # failed before training
    else:  # pragma: no cover - depends on the environment
        train(Net(), train_loader, test_loader, spec(steps="1ep", tensorboard=True), out_dir=tmp_path, log=quiet)
        assert any((tmp_path / "tensorboard").iterdir())


# crash resume -------------------------------------------------------------------------------------
def _run(out_dir, s, *, crash_at=None, poison_at=None, mask=True, save_steps=(), log=quiet, **kwargs):
    train_loader, test_loader = loaders()
    train_loader.crash_at, train_loader.poison_at = crash_at, poison_at
    model = Net()
    result = train(
        model,
        train_loader,
        test_loader,
        s,
        out_dir=out_dir,
        mask=random_mask(model) if mask else None,
        seed=5,
        save_steps=save_steps,
        log=log,
        **kwargs,
    )
    return model, result


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    # evaluation and checkpoint cadences deliberately out of step, so the train-loss sum spans a resume
    s = spec(steps="5ep", eval_every="4it", checkpoint_every="1ep", schedule="cosine", warmup="5it")
    reference, ref_result = _run(tmp_path / "a", s, save_steps=[9])
    with pytest.raises(Crash):
        _run(tmp_path / "b", s, crash_at=(2, 3), save_steps=[9])  # dies at step 15; last checkpoint: 12
    assert load_checkpoint(tmp_path / "b" / "checkpoints").step == 12
    messages = []
    resumed, result = _run(tmp_path / "b", s, save_steps=[9], log=messages.append)
    assert result.resumed_from == 12 and any("resuming from the checkpoint at step 12" in m for m in messages)
    assert_same_state(state(resumed), state(reference))
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()
    assert result.history == ref_result.history
    assert (result.best_accuracy, result.best_step, result.train_loss) == (
        ref_result.best_accuracy,
        ref_result.best_step,
        ref_result.train_loss,
    )
    for name in os.listdir(tmp_path / "a" / "weights"):
        assert_same_state(load_file(tmp_path / "a" / "weights" / name), load_file(tmp_path / "b" / "weights" / name))
    # a finished run resumes at its end without training again
    again, finished = _run(tmp_path / "b", s, save_steps=[9])
    assert finished.resumed_from == 30 and finished.history == ref_result.history
    assert_same_state(state(again), state(reference))


def test_resume_when_the_sidecar_write_was_interrupted(tmp_path, monkeypatch):
    s = spec(steps="3ep", optimizer="adam", momentum=0.0, lr=0.01)
    reference, _ = _run(tmp_path / "a", s)
    real = checkpoint_module.atomic_write_json
    calls = []

    def dying_write(path, obj):
        calls.append(obj["step"])
        if len(calls) == 2:
            raise Crash("killed between the tensor file and the JSON sidecar")
        return real(path, obj)

    monkeypatch.setattr(checkpoint_module, "atomic_write_json", dying_write)
    with pytest.raises(Crash):
        _run(tmp_path / "b", s)
    monkeypatch.setattr(checkpoint_module, "atomic_write_json", real)
    directory = tmp_path / "b" / "checkpoints"
    # step 6 was kept as previous.*; step 12's tensor file is complete, its sidecar still the old one
    assert json.loads((directory / "previous.json").read_text())["step"] == 6
    assert json.loads((directory / "latest.json").read_text())["step"] == 6
    assert load_checkpoint(directory).step == 12
    messages = []
    resumed, result = _run(tmp_path / "b", s, log=messages.append)
    assert result.resumed_from == 12 and any("names step 6" in m for m in messages)
    assert_same_state(state(resumed), state(reference))


def test_checkpoint_of_another_run_is_refused(tmp_path):
    _run(tmp_path, spec(steps="1ep"))
    with pytest.raises(CheckpointError, match="different run"):
        _run(tmp_path, spec(steps="1ep", lr=0.2))


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path

sys.path.insert(0, {test_dir!r})
import torch
import test_training

torch.set_num_threads(1)
out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
original = test_training.TensorLoader.epoch


def epoch(self, e, start_batch=0):
    for b, batch in enumerate(original(self, e, start_batch), start=start_batch):
        if e * self.iterations_per_epoch + b == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally blocks: like kill -9 from outside
        yield batch


test_training.TensorLoader.epoch = epoch
test_training._run(out, test_training.spec(steps="4ep", eval_every="5it", checkpoint_every="4it"))
"""


def test_kill_9_and_resume(tmp_path):
    s = spec(steps="4ep", eval_every="5it", checkpoint_every="4it")
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(test_dir=str(Path(__file__).parent)))
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), "14"], capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert load_checkpoint(tmp_path / "b" / "checkpoints").step == 12
    resumed, result = _run(tmp_path / "b", s)  # resume in this process
    assert result.resumed_from == 12
    reference, _ = _run(tmp_path / "a", s)
    assert_same_state(state(resumed), state(reference))
    assert_same_state(load_file(weights_path(tmp_path / "b", 24)), state(reference))
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()


# divergence -----------------------------------------------------------------------------------------
def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path):
    s = spec(steps="3ep")
    # the loss of iteration 12 (epoch 1, batch 5) is NaN; step 12 would be a checkpoint
    with pytest.raises(TrainingDiverged, match=r"nan at iteration 12 of 18") as info:
        _run(tmp_path, s, poison_at=(1, 5))
    error = info.value
    assert error.iteration == 12 and math.isnan(error.loss) and error.checkpoint_step == 6
    assert "warm-up" in str(error) and "lower train.lr" in str(error).lower()
    ckpt = load_checkpoint(tmp_path / "checkpoints")
    assert ckpt.step == 6 and ckpt.note is None
    assert all(torch.isfinite(v).all() for v in ckpt.model.values() if v.is_floating_point())
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [0, 6]
    assert not weights_path(tmp_path, 12).exists()
    # and training resumes cleanly from it once the cause is gone
    _, result = _run(tmp_path, s)
    assert result.resumed_from == 6 and result.final_step == 18


def test_divergence_without_out_dir():
    with pytest.raises(TrainingDiverged, match="iteration 3 "):
        _run(None, spec(steps="1ep", eval_every=None), poison_at=(0, 2))


# starting late (rewinding) and stopping early -----------------------------------------------------
def test_start_step_continues_data_order_and_schedule(tmp_path):
    """Plain SGD keeps no optimiser state, so restarting from the step-k weights at start_step=k must
    reproduce the uninterrupted run exactly (dropout is removed so the global RNG plays no part)."""
    s = spec(steps="3ep", momentum=0.0, weight_decay=0.0, schedule="cosine", warmup="4it", eval_every="4it")
    train_loader, test_loader = loaders()
    full = Net()
    full.drop = nn.Identity()
    train(full, train_loader, test_loader, s, out_dir=tmp_path / "a", save_steps=[7], log=quiet)
    late = Net()
    late.drop = nn.Identity()
    late.load_state_dict(load_file(weights_path(tmp_path / "a", 7)))
    result = train(late, train_loader, test_loader, s, out_dir=tmp_path / "b", start_step=7, log=quiet)
    assert_same_state(state(late), state(full))
    assert [r["step"] for r in result.history] == [7, 8, 12, 16, 18]
    assert result.history[0]["train_loss"] is None
    assert sorted(p.name for p in (tmp_path / "b" / "weights").iterdir()) == [
        "step_18.safetensors",
        "step_7.safetensors",
    ]


def test_stop_step_ends_early_and_a_later_call_continues(tmp_path):
    s = spec(steps="3ep", schedule="cosine")
    reference, _ = _run(tmp_path / "a", s)
    stopped, result = _run(tmp_path / "b", s, stop_step=10)
    assert result.final_step == 10 and result.history[-1]["step"] == 10
    assert load_checkpoint(tmp_path / "b" / "checkpoints").step == 10
    assert_same_state(load_file(weights_path(tmp_path / "b", 10)), state(stopped))
    assert result.history[-1]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 10 / 18)))
    continued, rest = _run(tmp_path / "b", s)  # the schedule always spanned 3ep: continuing is exact
    assert rest.resumed_from == 10
    assert_same_state(state(continued), state(reference))
    with pytest.raises(ValueError, match="start_step"):
        _run(None, s, stop_step=19)
