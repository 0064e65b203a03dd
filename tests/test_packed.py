"""Packed training: K models trained together equal K separate trainings (weights within 1e-5, masks
kept, batch-norm statistics per model, per-model learning rates), a packed run resumes bit for bit,
a model that diverges fails alone, and each model lands as its own run that an unpacked command reuses."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from prunelab.cli.main import main
from prunelab.data import BatchLoader, PackedLoader
from prunelab.experiments import packing
from prunelab.experiments.executors import InProcessExecutor
from prunelab.experiments.packing import AUTO_PACK_CPU
from prunelab.experiments.study import Study, pack, resolve_pack
from prunelab.experiments.sweeps import lottery_points, train_points
from prunelab.experiments.train import run_train
from prunelab.experiments.trial import Trial
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.specs import SpecError, load_spec
from prunelab.store import RunStore
from prunelab.training import TrainingDiverged, train
from prunelab.training.masked_step import MaskedStep
from prunelab.training.packed import Lane, train_packed
from prunelab.training.packed_step import PackedStep

TOLERANCE = 1e-5


def quiet(_message: str) -> None:
    pass


def base_spec(model: str = "lenet_300_100", **train: object):
    values = {
        "model.name": model,
        "train.progress": "false",
        "train.steps": "12it",
        "train.eval_every": "6it",
        "train.checkpoint_every": "6it",
    }
    values.update({f"train.{k}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in train.items()})
    return load_spec("digits_lenet_300_100", None, values)


def lanes_and_references(spec, seeds, *, lrs=None, density=0.5, out=None):
    """Packed lanes and, for each, a deep copy trained alone with ``train``."""
    lanes, references = [], []
    for k, seed in enumerate(seeds):
        s = spec.with_seed(seed)
        if lrs is not None:
            s = s.updated(train=dataclasses.replace(s.train, lr=lrs[k]))
        bench = Workbench.from_spec(s)
        model = bench.new_model()
        prunable = bench.prunable(model)
        generator = torch.Generator().manual_seed(100 + seed)
        mask = Mask({n: torch.rand(p.shape, generator=generator) < density for n, p in prunable.items()})
        alone = copy.deepcopy(model)
        try:
            result = train(
                alone,
                bench.train_loader(),
                bench.test_loader(),
                s.train,
                out_dir=None,
                mask=mask,
                prunable=bench.prunable(alone),
                seed=seed,
                log=quiet,
            )
        except TrainingDiverged as error:
            result = error
        references.append((alone, result))
        lanes.append(
            Lane(
                model,
                bench.train_loader(),
                bench.test_loader(),
                s.train,
                out_dir=None if out is None else out / f"lane{k}",
                mask=mask,
                prunable=prunable,
                seed=seed,
                log=quiet,
            )
        )
    return lanes, references


def assert_close(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if sa[key].is_floating_point():
            assert torch.allclose(sa[key], sb[key], rtol=0, atol=TOLERANCE), key
        else:
            assert torch.equal(sa[key], sb[key]), key


def assert_masked(lane: Lane) -> None:
    for name, keep in lane.mask.items():
        assert int((lane.prunable[name].detach()[~keep] != 0).sum()) == 0, name


@pytest.mark.parametrize(
    "optimizer, extra",
    [
        ("sgd", {"momentum": 0.9, "weight_decay": 1e-3, "nesterov": True}),
        ("adam", {"momentum": 0.0, "weight_decay": 1e-3}),
        ("adamw", {"momentum": 0.0, "weight_decay": 1e-2}),
    ],
)
def test_packed_models_equal_separate_trainings_with_their_own_masks_and_learning_rates(optimizer, extra):
    lrs = [0.05, 0.02, 0.08] if optimizer == "sgd" else [0.002, 0.001, 0.003]
    spec = base_spec(optimizer=optimizer, schedule="cosine", warmup="3it", **extra)
    lanes, references = lanes_and_references(spec, [1, 2, 3], lrs=lrs)
    results = train_packed(lanes)
    for lane, result, (alone, reference) in zip(lanes, results, references):
        assert not isinstance(result, Exception), result
        assert_close(lane.model, alone)
        assert_masked(lane)
        assert [r["step"] for r in result.history] == [r["step"] for r in reference.history] == [0, 6, 12]
        assert result.test_accuracy == pytest.approx(reference.test_accuracy, abs=1e-3)
        assert result.train_loss == pytest.approx(reference.train_loss, abs=1e-4)


def test_the_models_are_evaluated_together_as_each_alone(monkeypatch):
    calls = []
    evaluate = PackedStep.evaluate
    monkeypatch.setattr(
        PackedStep, "evaluate", lambda self, *a, **k: calls.append(self.lanes) or evaluate(self, *a, **k)
    )
    spec = base_spec(momentum=0.9)
    lanes, references = lanes_and_references(spec, [1, 2, 3])
    results = train_packed(lanes)
    assert calls == [3, 3]  # steps 6 and 12 (step 0 is evaluated before the pack starts)
    for result, (_, reference) in zip(results, references):
        for packed_row, alone_row in zip(result.history, reference.history):
            assert packed_row["test_loss"] == pytest.approx(alone_row["test_loss"], abs=1e-5)
            assert packed_row["test_accuracy"] == alone_row["test_accuracy"]


def test_equal_learning_rates_take_torch_optims_own_update():
    spec = base_spec(momentum=0.9)
    lanes, references = lanes_and_references(spec, [4, 5])
    for lane, _result, (alone, _) in zip(lanes, train_packed(lanes), references):
        assert_close(lane.model, alone)


def test_a_packed_step_of_unbound_masked_steps_says_to_bind_them():
    models = [torch.nn.Linear(4, 2) for _ in range(2)]
    with pytest.raises(ValueError, match="bind each to its model"):
        PackedStep(models, [MaskedStep(), MaskedStep()], base_spec().train, torch.device("cpu"))


def test_large_models_pack_in_smaller_groups(monkeypatch):
    import prunelab.training.packed as packed

    spec = base_spec(momentum=0.9)
    lanes, references = lanes_and_references(spec, [1, 2, 3])
    size = sum(p.numel() for p in lanes[0].model.parameters())
    monkeypatch.setattr(packed, "PACKED_PARAMETERS", 2 * size)  # room for two at a time
    groups = []
    run = packed._run_packed
    monkeypatch.setattr(packed, "_run_packed", lambda loops: groups.append(len(loops)) or run(loops))
    train_packed(lanes)
    assert groups == [2]  # and the third alone
    for lane, (alone, _) in zip(lanes, references):
        assert_close(lane.model, alone)


def test_batch_norm_keeps_running_statistics_per_model():
    spec = base_spec("cifar_resnet_8", lr=0.01, momentum=0.9, steps="6it", eval_every="3it")
    lanes, references = lanes_and_references(spec, [1, 2], lrs=[0.01, 0.02], density=0.7)
    train_packed(lanes)
    for lane, (alone, _) in zip(lanes, references):
        assert_close(lane.model, alone)
        assert int(lane.model.state_dict()["bn.num_batches_tracked"]) == 6
    first, second = (lane.model.state_dict()["bn.running_mean"] for lane in lanes)
    assert not torch.allclose(first, second)  # each model its own statistics


def test_packed_loader_stacks_the_lanes_batches_exactly():
    bench = Workbench.from_spec(base_spec())
    loaders = [BatchLoader(bench.splits.train, 64, order_seed=seed, augment_seed=seed) for seed in (1, 2, 3)]
    for (x, y), *alone in zip(PackedLoader(loaders).epoch(1, 2), *(loader.epoch(1, 2) for loader in loaders)):
        for k, (xk, yk) in enumerate(alone):
            assert torch.equal(x[k], xk) and torch.equal(y[k], yk)


def train_alone(lane: Lane, **options):
    """Train a lane's model by the ordinary trainer, as an unpacked command would."""
    return train(
        lane.model,
        lane.train_loader,
        lane.test_loader,
        lane.spec,
        out_dir=lane.out_dir,
        mask=lane.mask,
        prunable=lane.prunable,
        seed=lane.seed,
        log=quiet,
        **options,
    )


def interrupt_packed(lanes, monkeypatch, at_step: int) -> None:
    """Train the lanes packed and interrupt them (Ctrl-C) at their ``at_step``-th packed step."""
    calls = {"n": 0}
    step = PackedStep.step

    def dying(self, x, y):
        calls["n"] += 1
        if calls["n"] == at_step:
            raise KeyboardInterrupt
        return step(self, x, y)

    monkeypatch.setattr(PackedStep, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        train_packed(lanes)
    monkeypatch.setattr(PackedStep, "step", step)


def test_a_packed_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    spec = base_spec(momentum=0.9, steps="15it", eval_every="4it", checkpoint_every="5it", schedule="cosine")
    reference, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "a")
    train_packed(reference)
    lanes, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "b")
    interrupt_packed(lanes, monkeypatch, at_step=13)  # after the checkpoint of step 10
    resumed, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "b")
    results = train_packed(resumed)
    for k, (lane, result, ref) in enumerate(zip(resumed, results, reference)):
        assert result.resumed_from == 10
        for key, value in lane.model.state_dict().items():
            assert torch.equal(value, ref.model.state_dict()[key]), key
        a, b = tmp_path / "a" / f"lane{k}", tmp_path / "b" / f"lane{k}"
        assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
        for name in sorted(p.name for p in (a / "weights").iterdir()):
            left, right = load_file(a / "weights" / name), load_file(b / "weights" / name)
            assert all(torch.equal(left[n], right[n]) for n in left), name


def test_a_packed_run_resumed_alone_keeps_its_arithmetic(tmp_path, monkeypatch):
    """Whichever way a packed run is resumed — alone, by plain ``train`` — it finishes bit for bit as the
    uninterrupted packed run (a conv model: its single-model kernels differ from the packed ones)."""
    spec = base_spec("conv2", momentum=0.9, steps="12it", eval_every="4it", checkpoint_every="4it")
    reference, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "a")
    train_packed(reference)
    lanes, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "b")
    interrupt_packed(lanes, monkeypatch, at_step=7)
    resumed, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "b")
    first = train_packed(resumed[:1])[0]  # alone in a pack
    lane = resumed[1]  # by the ordinary trainer, as an unpacked command would
    second = train_alone(lane)
    for result, lane, ref in zip((first, second), resumed, reference):
        assert result.resumed_from == 4
        for key, value in lane.model.state_dict().items():
            assert torch.equal(value, ref.model.state_dict()[key]), key


def test_a_packed_run_killed_before_its_first_checkpoint_restarts_packed(tmp_path, monkeypatch):
    spec = base_spec("conv2", momentum=0.9, steps="8it", eval_every="4it", checkpoint_every="4it")
    reference, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "a")
    train_packed(reference)
    assert not any((tmp_path / "a" / f"lane{k}" / "checkpoints" / "packed").exists() for k in (0, 1))
    lanes, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "b")
    interrupt_packed(lanes, monkeypatch, at_step=1)
    assert (tmp_path / "b" / "lane1" / "checkpoints" / "packed").exists()
    again, _ = lanes_and_references(spec, [1, 2], out=tmp_path / "b")
    lane = again[1]  # restarted alone by the ordinary trainer
    train_alone(lane)
    for key, value in lane.model.state_dict().items():
        assert torch.equal(value, reference[1].model.state_dict()[key]), key
    assert not (tmp_path / "b" / "lane1" / "checkpoints" / "packed").exists()


def test_a_run_begun_alone_is_finished_alone(tmp_path):
    spec = base_spec("conv2", momentum=0.9, steps="8it", eval_every="4it", checkpoint_every="4it")
    lanes, _ = lanes_and_references(spec, [1, 2], out=tmp_path)
    lane = lanes[0]
    train_alone(lane, stop_step=4)  # an unpacked run, stopped at 4
    reference, _ = lanes_and_references(spec, [1], out=tmp_path / "alone")
    ref = reference[0]
    train_alone(ref)
    again, _ = lanes_and_references(spec, [1, 2], out=tmp_path)
    train_packed(again)  # lane 0 resumes from its unpacked checkpoint: it goes on unpacked
    for key, value in again[0].model.state_dict().items():
        assert torch.equal(value, ref.model.state_dict()[key]), key


def test_a_diverging_model_fails_alone():
    spec = base_spec(momentum=0.9)
    lanes, references = lanes_and_references(spec, [1, 2, 3], lrs=[0.05, 1e9, 0.05])
    results = train_packed(lanes)
    assert isinstance(references[1][1], TrainingDiverged) and isinstance(results[1], TrainingDiverged)
    assert results[1].iteration == references[1][1].iteration
    for k in (0, 2):
        assert_close(lanes[k].model, references[k][0])
        assert results[k].final_step == 12


def test_pack_groups_trials_that_share_data_architecture_and_length():
    spec = base_spec()
    seeds = [Trial("train", spec.with_seed(s)) for s in range(5)]
    conv = Trial("train", spec.updated(model=dataclasses.replace(spec.model, name="conv2")))
    longer = Trial("train", spec.updated(train=dataclasses.replace(spec.train, steps="20it")))
    faster = Trial("train", spec.updated(train=dataclasses.replace(spec.train, lr=0.5)))  # its own rate: packs
    units = pack([*seeds[:2], conv, *seeds[2:], longer, faster], 4)
    assert [[t.run_id for t in unit] for unit in units] == [
        [t.run_id for t in seeds[:4]],
        [conv.run_id],
        [seeds[4].run_id, faster.run_id],
        [longer.run_id],
    ]
    assert [len(u) for u in pack(seeds, 1)] == [1] * 5
    assert resolve_pack("auto", seeds) >= 2
    with pytest.raises(SpecError, match="--pack"):
        resolve_pack("0", seeds)


def test_auto_packs_on_a_cpu_only_small_fully_connected_models(monkeypatch):
    small = [Trial("train", base_spec(device="cpu").with_seed(s)) for s in range(3)]  # 50,200 weights
    assert resolve_pack("auto", small) == AUTO_PACK_CPU
    conv = base_spec("conv2", device="cpu")
    assert resolve_pack("auto", [Trial("train", conv.with_seed(s)) for s in range(3)]) == 1
    assert resolve_pack("auto", [*small, Trial("train", conv)]) == 1  # one limit for the study: the smallest
    assert resolve_pack("4", [Trial("train", conv)]) == 4  # a number is the user's choice
    monkeypatch.setattr(packing, "AUTO_PACK_CPU_MAX_WEIGHTS", 50_199)  # LeNet-300-100 on digits is now too big
    assert resolve_pack("auto", small) == 1


def test_each_packed_trial_is_its_own_run_which_an_unpacked_command_reuses(home, tmp_path):
    spec = base_spec(momentum=0.9)
    packed = Study(train_points(spec, [1, 2, 3]), RunStore(home)).run(InProcessExecutor(), progress=False)
    alone = Study(train_points(spec, [1, 2, 3]), RunStore(tmp_path / "alone")).run(
        InProcessExecutor(), progress=False, pack=1
    )
    assert packed.ok and alone.ok
    for a, b in zip(packed.outcomes, alone.outcomes):
        assert a.run_id == b.run_id
        files = {str(p.relative_to(home / a.run_id)) for p in (home / a.run_id).rglob("*")}
        assert files == {
            str(p.relative_to(tmp_path / "alone" / b.run_id)) for p in (tmp_path / "alone" / b.run_id).rglob("*")
        }
        weights_a = RunStore(home).run(a.run_id).load_weights(12)
        weights_b = RunStore(tmp_path / "alone").run(b.run_id).load_weights(12)
        assert all(torch.allclose(weights_a[n], weights_b[n], rtol=0, atol=TOLERANCE) for n in weights_a)
        assert a.summary["test_accuracy"] == pytest.approx(b.summary["test_accuracy"], abs=1e-3)
    again = run_train(spec.with_seed(2), store=RunStore(home))  # an unpacked request: the stored run, not trained
    assert again == packed.outcomes[1].summary


def test_lottery_controls_and_seeds_of_one_level_train_together(home, tmp_path):
    spec = base_spec(momentum=0.9, steps="6it", eval_every="null")
    points = lottery_points(spec, 1, ["reinit", "shuffle"], [1, 2])
    packed = Study(points, RunStore(home)).run(InProcessExecutor(), progress=False)
    alone = Study(points, RunStore(tmp_path / "alone")).run(InProcessExecutor(), progress=False, pack=1)
    assert packed.ok and alone.ok and len(packed.outcomes) == 10
    for a, b in zip(packed.outcomes, alone.outcomes):
        assert a.run_id == b.run_id
        assert a.summary["test_accuracy"] == pytest.approx(b.summary["test_accuracy"], abs=1e-3)
        assert a.summary["density"] == b.summary["density"]


def test_pack_option_on_the_command_line(capsys, home):
    assert (
        main(
            [
                "train",
                "--preset",
                "digits_lenet_300_100",
                "--train.steps=3it",
                "--no-progress",
                "--seeds",
                "1,2",
                "--pack",
                "0",
            ]
        )
        == 2
    )
    assert "--pack must be >= 1" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--preset",
                "digits_lenet_300_100",
                "--train.steps=3it",
                "--no-progress",
                "--seeds",
                "1,2",
                "--pack",
                "2",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert len(list(RunStore(home).root.glob("train-*"))) == 2


def test_a_failing_trial_of_a_packed_unit_fails_alone(home):
    spec = base_spec(momentum=0.9)
    diverging = spec.updated(train=dataclasses.replace(spec.train, lr=1e9)).with_seed(7)
    trials = [Trial("train", spec.with_seed(1)), Trial("train", diverging), Trial("train", spec.with_seed(2))]
    assert len(pack(trials, 8)) == 1
    result = Study(trials, RunStore(home)).run(InProcessExecutor(), progress=False)
    assert [o.status for o in result.outcomes] == ["done", "failed", "done"]
    assert "TrainingDiverged" in result.outcomes[1].error
    assert all(RunStore(home).run(t.run_id).finished for t in (trials[0], trials[2]))
