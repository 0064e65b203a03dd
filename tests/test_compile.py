"""``train.compile``: the compiled forward trains under masks and supermasks like the eager one, and a
machine where torch.compile cannot compile gets one clear error."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunelab.supermask import SupermaskStep, supermask_masks, to_supermask
from prunelab.training import CompileUnavailable, train
from test_training import CLASSES, IN, loaders, quiet, random_mask, spec

SRC = str(Path(__file__).resolve().parents[1] / "src")


class Plain(nn.Module):
    """An MLP without dropout, so compiled and eager runs draw no random numbers and can be compared."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.fc1, self.fc = nn.Linear(IN, 32), nn.Linear(32, CLASSES)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.fc1(x)))


def _fake_compile_raising(error: Exception):
    class Failing(nn.Module):  # what torch.compile's wrapper does when its back end cannot compile
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self._orig_mod = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise error

    return lambda module, **kwargs: Failing(module)


def test_a_compiler_failure_is_one_clear_error(monkeypatch):
    from torch._inductor.exc import InvalidCxxCompiler

    monkeypatch.setattr(torch, "compile", _fake_compile_raising(InvalidCxxCompiler("/nonexistent/c++")))
    train_loader, test_loader = loaders()
    with pytest.raises(CompileUnavailable, match="needs a working C\\+\\+ compiler.*without --train.compile"):
        train(Plain(), train_loader, test_loader, spec(steps="1ep", compile=True), out_dir=None, log=quiet)


def test_other_errors_of_a_compiled_model_pass_through(monkeypatch):
    monkeypatch.setattr(torch, "compile", _fake_compile_raising(RuntimeError("shape mismatch")))
    train_loader, test_loader = loaders()
    with pytest.raises(RuntimeError, match="shape mismatch") as raised:
        train(Plain(), train_loader, test_loader, spec(steps="1ep", compile=True), out_dir=None, log=quiet)
    assert not isinstance(raised.value, CompileUnavailable)


@pytest.mark.slow
def test_without_a_cxx_compiler_the_command_fails_in_one_line(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "PRUNELAB_HOME": str(tmp_path),
        "CXX": "/nonexistent/c++",
        "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prunelab",
            "train",
            "--preset",
            "digits_lenet_300_100",
            "--train.steps=2it",
            "--train.compile=true",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("prunelab: error:")]
    assert len(errors) == 1 and "C++ compiler" in errors[0] and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_compiled_masked_run_respects_its_mask_and_matches_the_eager_one():
    train_loader, test_loader = loaders()
    results, models = {}, {}
    for compiled in (False, True):
        model = Plain()
        mask = random_mask(model, density=0.3)
        results[compiled] = train(
            model, train_loader, test_loader, spec(steps="2ep", compile=compiled), mask=mask, out_dir=None, log=quiet
        )
        models[compiled] = model
        for name, keep in mask.items():
            weight = dict(model.named_parameters())[name]
            assert torch.all(weight[~keep] == 0), name  # pruned weights stay exactly zero under compile
    assert all(torch.isfinite(p).all() for p in models[True].parameters())
    for (name, eager), compiled in zip(models[False].state_dict().items(), models[True].state_dict().values()):
        assert torch.allclose(eager, compiled, atol=1e-4, rtol=1e-4), name  # float reordering only
    assert abs(results[True].test_accuracy - results[False].test_accuracy) <= 0.05


@pytest.mark.slow
def test_a_compiled_supermask_run_learns_scores_like_the_eager_one():
    train_loader, test_loader = loaders()
    masks, results = {}, {}
    for compiled in (False, True):
        model = to_supermask(Plain(), 0.5, generator=torch.Generator().manual_seed(1), weight_init="kaiming_normal")
        frozen = {name: p.detach().clone() for name, p in model.named_parameters() if name.endswith("weight")}
        step = SupermaskStep()
        results[compiled] = train(
            model,
            train_loader,
            test_loader,
            spec(steps="2ep", compile=compiled, momentum=0.9),
            update=step,
            out_dir=None,
            log=quiet,
        )
        masks[compiled] = supermask_masks(model)
        for name, weight in frozen.items():  # edge-popup trains scores only
            assert torch.equal(dict(model.named_parameters())[name], weight), name
        assert math.isfinite(results[compiled].test_loss)
    assert masks[True].density == pytest.approx(masks[False].density)
    agree = sum(int((masks[True][n] == masks[False][n]).sum()) for n in masks[True]) / masks[True].num_total
    assert agree > 0.95  # scores close: the same subnet up to ties broken by float rounding
    assert abs(results[True].test_accuracy - results[False].test_accuracy) <= 0.1
