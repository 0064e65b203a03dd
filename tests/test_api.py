"""``prunelab.api.lottery`` on a user's own ``nn.Module`` (not in the registry) and scikit-learn
digits as in-memory tensors: level rows, exact densities, controls, custom score functions, and
resumable stages in a store directory."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits
from torch import nn

import prunelab.experiments.module_bench as module_bench
from conftest import round_half_up as rhu
from prunelab import api

N_WEIGHTS = 64 * 24 + 24 * 10  # 1776 prunable weights (the two Linear weights)
TRAIN = {"steps": "30it", "batch_size": 64, "lr": 0.05, "momentum": 0.9, "eval_every": None, "progress": False}


class TinyMLP(nn.Module):
    def __init__(self, hidden: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def abs_score(ctx):
    """A user's score function: |w| (the same ranking as the built-in magnitude)."""
    return {n: p.detach().abs() for n, p in ctx.params.items()}


def smallest_first(ctx):
    """A user's score function that keeps the smallest weights."""
    return {n: -p.detach().abs() for n, p in ctx.params.items()}


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def new_model(hidden: int = 24) -> TinyMLP:
    torch.manual_seed(0)
    return TinyMLP(hidden)


@pytest.fixture
def trainings(monkeypatch):
    """Counts the networks actually trained."""
    calls = []
    original = module_bench.train

    def counting(*args, **kwargs):
        calls.append(kwargs.get("out_dir"))
        return original(*args, **kwargs)

    monkeypatch.setattr(module_bench, "train", counting)
    return calls


@pytest.fixture(scope="module")
def magnitude(data):
    return api.lottery(new_model(), data, train=TRAIN, levels=2, prune={"fraction": 0.2}, controls=("reinit",))


def expected_densities():
    kept = [N_WEIGHTS]
    for _ in range(2):
        kept.append(kept[-1] - rhu(0.2, kept[-1]))
    assert kept == [1776, 1421, 1137]
    return [k / N_WEIGHTS for k in kept]


def test_user_module_lottery_rows(magnitude):
    rows = magnitude.levels
    assert [row["level"] for row in rows] == [0, 1, 2]
    assert [row["density"] for row in rows] == expected_densities()
    for row in rows:
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert ("reinit" in row) == (row["level"] > 0)
    assert rows[0]["test_accuracy"] > 0.3  # it learned something in 30 iterations
    masks = magnitude.masks
    assert list(masks[0]) == ["body.1.weight", "head.weight"]
    assert masks[2].is_subset_of(masks[1]) and masks[1].is_subset_of(masks[0])
    summary = magnitude.summary()
    assert summary["kind"] == "lottery" and summary["density"] == rows[-1]["density"]
    assert "reinit" in magnitude.table()


def test_the_callers_model_is_not_modified(data):
    model = new_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    api.lottery(model, data, train={**TRAIN, "steps": "5it"}, levels=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_custom_score_function_is_used_as_the_level_strategy(data, magnitude):
    same = api.lottery(new_model(), data, train=TRAIN, levels=2, prune={"fraction": 0.2}, strategy=abs_score)
    assert [row["density"] for row in same.levels] == expected_densities()
    for level in (1, 2):  # |w| ranks exactly like the built-in magnitude
        assert same.masks[level] == magnitude.masks[level]

    other = api.lottery(new_model(), data, train=TRAIN, levels=2, prune={"fraction": 0.2}, strategy=smallest_first)
    assert [row["density"] for row in other.levels] == expected_densities()
    assert other.masks[1] != magnitude.masks[1]
    assert other.masks[2].is_subset_of(other.masks[1])


def test_custom_score_function_removes_what_it_ranks_lowest(data, tmp_path):
    result = api.lottery(
        new_model(),
        data,
        train=TRAIN,
        levels=1,
        strategy=smallest_first,
        store=tmp_path / "store",
        run_name="lottery-smallest",
    )
    trained = load_file(str(tmp_path / "store" / "lottery-smallest" / "level_0" / "weights" / "step_30.safetensors"))
    mask = result.masks[1]
    kept = torch.cat([trained[n].abs()[mask[n]] for n in mask])
    removed = torch.cat([trained[n].abs()[~mask[n]] for n in mask])
    assert removed.numel() == rhu(0.2, N_WEIGHTS)
    assert float(removed.min()) > float(kept.max())  # the largest |w| went


def test_store_makes_levels_resumable_and_extendable(data, tmp_path, trainings, magnitude):
    store = tmp_path / "store"
    kwargs = dict(train=TRAIN, prune={"fraction": 0.2}, controls=("reinit",), store=store)
    first = api.lottery(new_model(), data, levels=2, **kwargs)
    assert len(trainings) == 5  # levels 0-2 and a reinit control at levels 1 and 2
    assert all(path is not None and str(path).startswith(str(store)) for path in trainings)
    # stored or in memory, the same computation
    assert [m for m in first.masks.values()] == [m for m in magnitude.masks.values()]
    assert [row["test_accuracy"] for row in first.levels] == [row["test_accuracy"] for row in magnitude.levels]

    trainings.clear()
    again = api.lottery(new_model(), data, levels=2, **kwargs)
    assert trainings == []
    assert again.levels == first.levels and again.run_id == first.run_id

    more = api.lottery(new_model(), data, levels=3, **kwargs)
    assert len(trainings) == 2 and all("level_3" in str(p) for p in trainings)
    assert more.levels[:3] == first.levels


def test_invalid_arguments(data):
    with pytest.raises(TypeError, match="TrainingSpec"):
        api.lottery(new_model(), data, train=["steps"], levels=1)
    with pytest.raises(TypeError, match="data must be"):
        api.lottery(new_model(), (1, 2, 3), train=TRAIN, levels=1)


def test_store_run_id_distinguishes_models(data, tmp_path):
    train = {**TRAIN, "steps": "5it"}
    api.lottery(new_model(24), data, train=train, levels=1, store=tmp_path / "store")
    wider = api.lottery(new_model(48), data, train=train, levels=1, store=tmp_path / "store")
    assert tuple(wider.masks[1]["body.1.weight"].shape) == (48, 64)
