"""Selection rules, schedules, layerwise shuffling and NTK rescaling (no models involved)."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from prunelab.masks import Mask
from prunelab.pruning import (
    MaskSelectionError,
    NoRevivalWarning,
    density_schedule,
    ntk_rescale,
    ntk_scale_factors,
    prune_fraction,
    randomize_global,
    randomize_layerwise,
    round_half_up,
    select_by_density,
    select_counts,
    target_count,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_scores(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = gen(seed)
    return {n: torch.rand(s, generator=g) for n, s in shapes.items()}


def dense(shapes: dict[str, tuple[int, ...]]) -> Mask:
    return Mask({n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()})


def expected(d: float, n: int) -> int:
    return math.floor(Fraction(repr(d)) * n + Fraction(1, 2))


# rounding ---------------------------------------------------------------------------------------
def test_round_half_up_rule():
    assert [round_half_up(x) for x in (0.5, 1.5, 2.5, 2.4999, 3.5, 0.0, 7.0)] == [1, 2, 3, 2, 4, 0, 7]
    assert target_count(0.5, 5) == 3  # 2.5 → 3, not banker's 2
    assert target_count(0.25, 6) == 2  # 1.5 → 2
    assert target_count(0.285, 100) == 29  # 0.285·100 is 28.4999… in binary floating point
    assert target_count(0.45, 10) == 5
    assert target_count(1.0, 17) == 17 and target_count(0.0, 17) == 0


# exact counts -----------------------------------------------------------------------------------
SHAPES = [
    {"a": (10,)},
    {"a": (3, 4), "b": (5,)},
    {"a": (6, 2, 3, 3), "b": (7, 11), "c": (1,)},
    {"a": (2,), "b": (3,), "c": (5,)},
]
DENSITIES = [0.0, 0.01, 0.05, 0.1, 0.25, 0.3, 0.45, 0.5, 0.55, 0.75, 0.9, 0.99, 1.0]


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("d", DENSITIES)
def test_select_by_density_global_exact_count(shapes, d):
    mask = select_by_density(rand_scores(shapes), dense(shapes), d, scope="global", generator=gen())
    assert mask.num_kept == expected(d, mask.num_total)
    assert list(mask) == list(shapes)


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("d", DENSITIES)
def test_select_by_density_layerwise_exact_count(shapes, d):
    mask = select_by_density(rand_scores(shapes), dense(shapes), d, scope="layerwise", generator=gen())
    for row in mask.layer_report():
        assert row["kept"] == expected(d, row["total"]), row


def test_keeps_highest_scores_and_prune_highest_keeps_lowest():
    scores = {"a": torch.arange(10.0)}
    kept = select_by_density(scores, dense({"a": (10,)}), 0.3)
    assert torch.nonzero(kept["a"]).flatten().tolist() == [7, 8, 9]
    kept = select_by_density(scores, dense({"a": (10,)}), 0.3, prune_highest=True)
    assert torch.nonzero(kept["a"]).flatten().tolist() == [0, 1, 2]


def test_global_vs_layerwise_on_hand_made_example():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([10.0, 20.0, 30.0, 40.0])}
    current = dense({"a": (4,), "b": (4,)})
    g = select_by_density(scores, current, 0.5, scope="global")
    assert g["a"].tolist() == [False] * 4 and g["b"].tolist() == [True] * 4
    assert g.collapsed_layers() == ["a"]
    lw = select_by_density(scores, current, 0.5, scope="layerwise")
    assert lw["a"].tolist() == [False, False, True, True]
    assert lw["b"].tolist() == [False, False, True, True]


# never revive -----------------------------------------------------------------------------------
@pytest.mark.parametrize("prune_highest", [False, True])
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_never_revive_and_nesting(prune_highest, scope):
    shapes = {"a": (20, 5), "b": (50,)}
    current = Mask({n: torch.rand(s, generator=gen(1)) < 0.6 for n, s in shapes.items()})
    # pruned weights get the most attractive scores in either direction: they still must not return
    scores = {
        n: torch.where(current[n], torch.rand(s, generator=gen(2)), 1e9 * (-1 if prune_highest else 1))
        for n, s in shapes.items()
    }
    mask = select_by_density(scores, current, 0.3, scope=scope, prune_highest=prune_highest, generator=gen())
    assert mask.is_subset_of(current)
    if scope == "global":
        assert mask.num_kept == expected(0.3, 150)
    else:
        assert [r["kept"] for r in mask.layer_report()] == [30, 15]


def test_target_above_alive_keeps_all_alive_with_warning():
    current = Mask({"a": torch.tensor([True, False, False, True, False])})
    with pytest.warns(NoRevivalWarning, match="never revived"):
        mask = select_by_density({"a": torch.ones(5)}, current, 0.8)
    assert mask == current
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_by_density({"a": torch.ones(5)}, current, 0.4) == current  # exactly the alive count


def test_infinite_scores_on_alive_weights_do_not_revive_pruned_ones():
    current = Mask({"a": torch.tensor([True, True, False, False])})
    scores = {"a": torch.tensor([-math.inf, -math.inf, 5.0, 6.0])}
    mask = select_by_density(scores, current, 0.25)
    assert mask["a"].sum() == 1 and mask.is_subset_of(current)


# ties -------------------------------------------------------------------------------------------
def test_ties_are_broken_randomly_and_reproducibly():
    scores = {"a": torch.ones(1000)}
    current = dense({"a": (1000,)})
    m1 = select_by_density(scores, current, 0.5, generator=gen(7))
    m2 = select_by_density(scores, current, 0.5, generator=gen(7))
    m3 = select_by_density(scores, current, 0.5, generator=gen(8))
    assert m1.num_kept == 500
    assert m1 == m2 and m1 != m3
    kept = m1["a"]
    assert 200 < int(kept[:500].sum()) < 300  # scattered over both halves, not a contiguous block
    runs = int((kept[1:] != kept[:-1]).sum()) + 1
    assert runs > 300  # a random half of 1000 has ~500 runs; index-order ties would give 2


def test_ties_only_randomised_at_the_cutoff():
    scores = {"a": torch.tensor([5.0, 1.0, 1.0, 1.0, 1.0, 0.0])}
    for seed in range(5):
        m = select_by_density(scores, dense({"a": (6,)}), 0.5, generator=gen(seed))["a"]
        assert m[0] and not m[5] and int(m[1:5].sum()) == 2


# ignore -----------------------------------------------------------------------------------------
def test_ignored_tensors_untouched_and_excluded_from_counts():
    shapes = {"conv.weight": (4, 5), "fc.weight": (10,)}
    current = dense(shapes)
    current = Mask({"conv.weight": current["conv.weight"], "fc.weight": torch.arange(10) % 3 != 0})
    mask = select_by_density(rand_scores(shapes), current, 0.25, ignore=["fc.*"])
    assert torch.equal(mask["fc.weight"], current["fc.weight"])
    assert int(mask["conv.weight"].sum()) == 5  # 0.25 · 20, fc not counted
    pf = prune_fraction(rand_scores(shapes), current, 0.5, ignore="fc.weight")
    assert torch.equal(pf["fc.weight"], current["fc.weight"]) and int(pf["conv.weight"].sum()) == 10


def test_ignore_pattern_matching_nothing_is_an_error():
    with pytest.raises(MaskSelectionError, match="matches no prunable tensor.*fc.weight"):
        select_by_density({"fc.weight": torch.ones(3)}, dense({"fc.weight": (3,)}), 0.5, ignore=["fc.wieght"])


def test_everything_ignored_returns_current():
    current = dense({"a": (3,)})
    assert select_by_density({}, current, 0.0, ignore=["*"]) == current


# edge densities ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_density_one_and_zero(scope):
    shapes = {"a": (4, 3), "b": (7,)}
    assert select_by_density(rand_scores(shapes), dense(shapes), 1.0, scope=scope) == dense(shapes)
    empty = select_by_density(rand_scores(shapes), dense(shapes), 0.0, scope=scope)
    assert empty.num_kept == 0 and empty.collapsed_layers() == ["a", "b"]


def test_tiny_density():
    shapes = {"a": (100,), "b": (100,)}
    one = select_by_density(rand_scores(shapes), dense(shapes), 0.005)  # 1.0 → keep exactly one weight
    assert one.num_kept == 1 and len(one.collapsed_layers()) == 1
    zero = select_by_density(rand_scores(shapes), dense(shapes), 0.002)  # 0.4 → 0
    assert zero.num_kept == 0 and zero.collapsed_layers() == ["a", "b"]
    lw = select_by_density(rand_scores(shapes), dense(shapes), 0.004, scope="layerwise")  # 0.4 per layer
    assert lw.collapsed_layers() == ["a", "b"]


# validation -------------------------------------------------------------------------------------
def test_nan_scores_error_names_the_tensor():
    scores = {"a": torch.ones(4), "b": torch.tensor([1.0, math.nan, 2.0])}
    with pytest.raises(MaskSelectionError, match="'b'.*NaN"):
        select_by_density(scores, dense({"a": (4,), "b": (3,)}), 0.5)
    # NaN only at already-pruned positions is harmless: those weights are not ranked
    current = Mask({"a": torch.ones(4, dtype=torch.bool), "b": torch.tensor([True, False, True])})
    assert select_by_density(scores, current, 0.5).is_subset_of(current)


@pytest.mark.parametrize("d", [-0.1, 1.5, math.nan, "half"])
def test_bad_density(d):
    with pytest.raises(MaskSelectionError, match="density"):
        select_by_density({"a": torch.ones(2)}, dense({"a": (2,)}), d)


def test_bad_fraction_scope_names_and_shapes():
    current = dense({"a": (2, 2)})
    with pytest.raises(MaskSelectionError, match="fraction"):
        prune_fraction({"a": torch.ones(2, 2)}, current, 1.0)
    with pytest.raises(MaskSelectionError, match="rate for 'a'"):
        prune_fraction({"a": torch.ones(2, 2)}, current, 0.2, rates={"a": 1.2})
    with pytest.raises(MaskSelectionError, match="scope"):
        select_by_density({"a": torch.ones(2, 2)}, current, 0.5, scope="local")
    with pytest.raises(MaskSelectionError, match="shape"):
        select_by_density({"a": torch.ones(4)}, current, 0.5)
    with pytest.raises(MaskSelectionError, match="no scores"):
        select_by_density({}, current, 0.5)
    with pytest.raises(MaskSelectionError, match="not in the mask"):
        select_by_density({"a": torch.ones(2, 2), "z": torch.ones(1)}, current, 0.5)
    assert issubclass(MaskSelectionError, ValueError)


@pytest.mark.parametrize("rate", [None, [0.5], "half", object()])
def test_a_rate_that_is_no_number_is_named(rate):
    with pytest.raises(MaskSelectionError, match="rate for 'a' must be a number"):
        prune_fraction({"a": torch.ones(2, 2)}, dense({"a": (2, 2)}), 0.2, rates={"a": rate})


@pytest.mark.parametrize("rate", ["0.5", np.float32(0.5), torch.tensor(0.5), Fraction(1, 2)])
def test_a_rate_may_be_anything_float_reads(rate):
    kept = prune_fraction({"a": torch.arange(4.0).reshape(2, 2)}, dense({"a": (2, 2)}), 0.2, rates=[("a", rate)])
    assert kept["a"].tolist() == [[False, False], [True, True]]


# prune_fraction (lottery level step) -----------------------------------------------------------
@pytest.mark.parametrize("f", [0.0, 0.1, 0.2, 0.25, 0.5, 0.9])
def test_prune_fraction_counts_and_nesting(f):
    shapes = {"a": (8, 8), "b": (30,), "c": (6,)}
    current = Mask({n: torch.rand(s, generator=gen(3)) < 0.7 for n, s in shapes.items()})
    alive = {n: int(m.sum()) for n, m in current.items()}
    g = prune_fraction(rand_scores(shapes), current, f, scope="global", generator=gen())
    assert g.is_subset_of(current)
    total = sum(alive.values())
    assert g.num_kept == total - expected(f, total)
    lw = prune_fraction(rand_scores(shapes), current, f, scope="layerwise", generator=gen())
    assert lw.is_subset_of(current)
    for n in shapes:
        assert int(lw[n].sum()) == alive[n] - expected(f, alive[n])


def test_prune_fraction_rates_global_scope():
    shapes = {"conv.weight": (40,), "mid.weight": (60,), "fc.weight": (20,)}
    scores = {"conv.weight": torch.full((40,), 1.0), "mid.weight": torch.arange(60.0) + 2, "fc.weight": torch.zeros(20)}
    # global at 0.2 over conv+mid (100 alive → remove 20: all of them from conv, the lowest pool scores);
    # fc, though it has the lowest scores of all, loses exactly round(0.1 · 20) = 2 at its own rate
    m = prune_fraction(scores, dense(shapes), 0.2, scope="global", rates={"fc.*": 0.1}, generator=gen())
    assert [r["kept"] for r in m.layer_report()] == [20, 60, 18]
    # rates as (pattern, fraction) pairs; first matching pattern wins
    m2 = prune_fraction(scores, dense(shapes), 0.2, rates=(("fc.weight", 0.5), ("fc.*", 0.1)), generator=gen())
    assert int(m2["fc.weight"].sum()) == 10
    # layerwise scope: every tensor on its own, fc at its rate
    m3 = prune_fraction(scores, dense(shapes), 0.2, scope="layerwise", rates={"fc.*": 0.1}, generator=gen())
    assert [r["kept"] for r in m3.layer_report()] == [32, 48, 18]
    # ignore wins over a rate
    m4 = prune_fraction(scores, dense(shapes), 0.2, rates={"fc.*": 0.1}, ignore=["fc.*"], generator=gen())
    assert int(m4["fc.weight"].sum()) == 20
    with pytest.raises(MaskSelectionError, match="rates pattern 'out.weight'"):
        prune_fraction(scores, dense(shapes), 0.2, rates={"out.weight": 0.1})


def test_prune_fraction_repeated_levels_follow_the_geometric_count():
    shapes = {"a": (1000,)}
    current = dense(shapes)
    counts = []
    for level in range(5):
        current = prune_fraction(rand_scores(shapes, level), current, 0.2, generator=gen(level))
        counts.append(current.num_kept)
    assert counts == [800, 640, 512, 410, 328]  # 409.6 → 410, 328


def test_select_counts_copies_per_layer_counts():
    shapes = {"a": (10,), "b": (10,)}
    m = select_counts(rand_scores(shapes), dense(shapes), {"a": 3}, generator=gen())
    assert int(m["a"].sum()) == 3 and int(m["b"].sum()) == 10


# schedules --------------------------------------------------------------------------------------
def test_density_schedule_values():
    assert density_schedule(0.25, 2) == pytest.approx([0.5, 0.25])
    exp = density_schedule(0.01, 4)
    assert exp == pytest.approx([0.01 ** (k / 4) for k in range(1, 5)]) and exp[-1] == 0.01
    assert density_schedule(0.2, 4, "linear") == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert density_schedule(0.1, 3, "linear")[-1] == 0.1
    assert density_schedule(0.3, 1) == [0.3]
    assert density_schedule(0.0, 3) == [0.0, 0.0, 0.0]
    assert density_schedule(0.125, 2, start=0.5) == pytest.approx([0.25, 0.125])
    assert density_schedule(0.1, 2, "linear", start=0.5) == pytest.approx([0.3, 0.1])
    ratios = [b / a for a, b in zip([1.0, *exp], exp)]
    assert ratios == pytest.approx([ratios[0]] * 4)  # the same fraction of the alive weights each time


@pytest.mark.parametrize("args", [(0.5, 0), (0.5, 2.0), (1.5, 2), (-0.1, 2), (0.6, 2, "exponential", 0.5)])
def test_density_schedule_errors(args):
    with pytest.raises(MaskSelectionError):
        density_schedule(*args)
    with pytest.raises(MaskSelectionError, match="schedule"):
        density_schedule(0.5, 2, "cosine")


# randomize_layerwise ----------------------------------------------------------------------------
def test_randomize_layerwise_keeps_counts_and_moves_positions():
    shapes = {"a": (20, 10), "b": (100,)}
    ref = select_by_density(rand_scores(shapes), dense(shapes), 0.3, generator=gen())
    s1 = randomize_layerwise(ref, gen(1))
    assert [r["kept"] for r in s1.layer_report()] == [r["kept"] for r in ref.layer_report()]
    assert s1 != ref and s1.overlap(ref) < 0.6
    assert s1 == randomize_layerwise(ref, gen(1)) and s1 != randomize_layerwise(ref, gen(2))
    kept_b = randomize_layerwise(ref, gen(3), ignore=["b"])
    assert torch.equal(kept_b["b"], ref["b"]) and int(kept_b["a"].sum()) == int(ref["a"].sum())


def test_randomize_global_keeps_the_considered_total_but_not_the_layer_counts():
    shapes = {"a": (40, 10), "b": (200,), "fc": (30,)}
    ref = select_by_density(rand_scores(shapes), dense(shapes), 0.2, ignore=["fc"], generator=gen())
    shuffled = randomize_global(ref, gen(1), ignore=["fc"])
    kept = lambda m: int(m["a"].sum()) + int(m["b"].sum())  # noqa: E731
    assert kept(shuffled) == kept(ref) == 120 and torch.equal(shuffled["fc"], ref["fc"])
    assert shuffled == randomize_global(ref, gen(1), ignore=["fc"]) and shuffled != randomize_global(
        ref, gen(2), ignore=["fc"]
    )
    # uniform over the 600 pooled positions: over many draws each tensor gets its size's share
    share_a = sum(int(randomize_global(ref, gen(s), ignore=["fc"])["a"].sum()) for s in range(200)) / 200
    assert share_a == pytest.approx(120 * 400 / 600, rel=0.03)
    # a layer-wise shuffle would keep 'a' at exactly its own count; the global one moves weights across
    counts_a = {int(randomize_global(ref, gen(s), ignore=["fc"])["a"].sum()) for s in range(20)}
    assert len(counts_a) > 3
    # nothing ignored: the ignored-by-IMP tensor takes part too (OpenLTH's default)
    everything = randomize_global(ref, gen(1))
    assert sum(int(m.sum()) for m in everything.values()) == ref.num_kept and not bool(everything["fc"].all())


# NTK rescaling ----------------------------------------------------------------------------------
def test_ntk_rescale_values():
    w = {"a": torch.arange(1.0, 9.0), "b": torch.full((4,), 2.0)}
    mask = Mask({"a": torch.tensor([1, 1, 0, 0, 0, 0, 0, 0]), "b": torch.tensor([1, 1, 1, 1])})
    out = ntk_rescale(w, mask)
    assert torch.allclose(out["a"], torch.tensor([2.0, 4.0, 0, 0, 0, 0, 0, 0]))  # d = 1/4 → ×2
    assert torch.equal(out["b"], w["b"])  # dense layer unchanged
    assert torch.equal(w["a"], torch.arange(1.0, 9.0))  # inputs untouched
    glob = ntk_rescale(w, mask, mode="global")  # considered: 6 of 12 kept → ×√2 everywhere
    assert torch.allclose(glob["a"], torch.tensor([1.0, 2.0, 0, 0, 0, 0, 0, 0]) * math.sqrt(2))
    assert torch.allclose(glob["b"], torch.full((4,), 2.0 * math.sqrt(2)))
    assert ntk_scale_factors(mask) == pytest.approx({"a": 2.0, "b": 1.0})
    assert ntk_scale_factors(Mask({"a": torch.zeros(3)})) == {"a": 0.0}
    assert ntk_scale_factors(Mask({"a": torch.zeros(3)}), mode="global") == {"a": 0.0}
    with pytest.raises(MaskSelectionError, match="mode"):
        ntk_scale_factors(mask, mode="overall")


def test_ntk_global_mode_is_one_factor_from_the_considered_density_ignored_unscaled():
    # The reference (Random-Pruning-NTK, random_rescale_global): kept weights × 1/sqrt(1 - p), p the
    # pruned fraction of the considered weights; ignored tensors keep factor 1.
    a = torch.zeros(100, dtype=torch.bool)
    a[:25] = True  # 25 % density
    mask = Mask({"a": a, "fc": torch.ones(10, dtype=torch.bool)})
    assert ntk_scale_factors(mask, mode="global", ignore=["fc"]) == {"a": 2.0, "fc": 1.0}
    assert ntk_scale_factors(mask, mode="per_layer", ignore=["fc"]) == {"a": 2.0, "fc": 1.0}
    # without the ignore the dense fc is considered: 35 of 110 kept → one factor sqrt(110/35)
    assert ntk_scale_factors(mask, mode="global") == pytest.approx(
        {"a": math.sqrt(110 / 35), "fc": math.sqrt(110 / 35)}
    )
    # two considered tensors of one size at 25 % and 75 %: global pools them (50 % → √2 for both),
    # per-layer does not (2 and 1/sqrt(0.75))
    b = torch.zeros(100, dtype=torch.bool)
    b[:75] = True
    two = Mask({"a": a, "b": b, "fc": torch.ones(10, dtype=torch.bool)})
    assert ntk_scale_factors(two, mode="global", ignore="fc") == pytest.approx(
        {"a": math.sqrt(2), "b": math.sqrt(2), "fc": 1.0}
    )
    assert ntk_scale_factors(two, ignore="fc") == pytest.approx({"a": 2.0, "b": 1 / math.sqrt(0.75), "fc": 1.0})
    w = {"a": torch.full((100,), 3.0), "b": torch.ones(100), "fc": torch.full((10,), -1.0)}
    out = ntk_rescale(w, two, mode="global", ignore="fc")
    assert torch.equal(out["fc"], w["fc"])
    assert torch.allclose(out["a"], 3.0 * a * math.sqrt(2)) and torch.allclose(out["b"], b * math.sqrt(2))
    with pytest.raises(MaskSelectionError, match="matches no prunable tensor"):
        ntk_scale_factors(mask, mode="global", ignore="fc.weight")


def test_ntk_rescale_does_not_compound_across_levels():
    g = gen(0)
    w0 = {"a": torch.randn(100, generator=g)}
    m1 = select_by_density(rand_scores({"a": (100,)}, 1), dense({"a": (100,)}), 0.64)
    m2 = select_by_density(rand_scores({"a": (100,)}, 2), m1, 0.16)
    level1 = ntk_rescale(w0, m1)
    level2 = ntk_rescale(w0, m2)
    assert torch.allclose(level1["a"], w0["a"] * m1["a"] / 0.8)
    assert torch.allclose(level2["a"], w0["a"] * m2["a"] / 0.4)  # 1/sqrt(0.16), relative to dense
    compounded = ntk_rescale(level1, m2)["a"]  # the wrong rule: rescaling the previous level's weights
    assert not torch.allclose(compounded, level2["a"])
    kept = m2["a"]
    assert torch.allclose(level2["a"][kept].abs() / w0["a"][kept].abs(), torch.full((16,), 2.5))


# the OpenLTH count rule --------------------------------------------------------------------------
LENET = {"fc_layers.0.weight": (300, 784), "fc_layers.1.weight": (100, 300), "fc.weight": (10, 100)}


def openlth_kept(levels: int, fraction: float = 0.2) -> list[int]:
    """Independent re-derivation of open_lth's pruning/sparse_global.py: remaining = the mask's sum
    over every prunable tensor (the ignored output layer, 1,000 weights, included); to prune =
    ceil(f · remaining); the threshold is the sorted alive |w| at that index and only |w| > threshold
    survives, so one more goes. Returns the considered (hidden) kept counts of levels 0..levels."""
    considered, ignored = 784 * 300 + 300 * 100, 100 * 10
    kept = [considered]
    for _ in range(levels):
        sorted_index = math.ceil(fraction * (kept[-1] + ignored))  # np.ceil(...).astype(int), float64
        kept.append(kept[-1] - (sorted_index + 1))
    return kept


def test_openlth_count_rule_on_lenet_300_100_with_fc_ignored():
    weights = {n: torch.randn(s, generator=gen(i)) for i, (n, s) in enumerate(LENET.items())}
    hidden = ("fc_layers.0.weight", "fc_layers.1.weight")
    reference = openlth_kept(16)
    assert [reference[level] for level in (1, 8, 16)] == [211959, 43655, 6486]  # pinned
    exact_kept, openlth, exact = [265200], dense(LENET), dense(LENET)
    for level in range(1, 17):
        magnitudes = {n: w.abs() for n, w in weights.items()}
        openlth = prune_fraction(
            magnitudes, openlth, 0.2, ignore=["fc.weight"], count_rule="openlth", generator=gen(level)
        )
        exact = prune_fraction(magnitudes, exact, 0.2, ignore=["fc.weight"], generator=gen(level))
        assert sum(int(openlth[n].sum()) for n in hidden) == reference[level], f"level {level}"
        assert bool(openlth["fc.weight"].all()) and bool(exact["fc.weight"].all())
        exact_kept.append(sum(int(exact[n].sum()) for n in hidden))
        assert exact_kept[-1] == exact_kept[-2] - expected(0.2, exact_kept[-2])
        if level in (1, 8, 16):  # the smallest |w| went: strictly above the threshold survives
            alive = torch.cat([weights[n].abs()[openlth[n]] for n in hidden])
            gone = torch.cat([weights[n].abs()[~openlth[n]] for n in hidden])
            assert float(gone.max()) < float(alive.min())
    assert [exact_kept[level] for level in (1, 8, 16)] == [212160, 44494, 7465]
    # level 16: OpenLTH keeps 979 hidden weights (13.1 %) fewer than the exact rule
    assert exact_kept[16] - reference[16] == 979 and round(1 - reference[16] / exact_kept[16], 3) == 0.131


def test_openlth_count_rule_without_ignore_and_its_limits():
    shapes = {"a": (50,), "b": (30,)}
    scores = rand_scores(shapes)
    # ceil(0.25 · 80) + 1 = 21 removed (exact: round(0.25 · 80) = 20)
    assert prune_fraction(scores, dense(shapes), 0.25, count_rule="openlth").num_kept == 59
    assert prune_fraction(scores, dense(shapes), 0.25).num_kept == 60
    # fraction 0 still removes the one weight at the threshold index 0, as sparse_global does
    assert prune_fraction(scores, dense(shapes), 0.0, count_rule="openlth").num_kept == 79
    with pytest.raises(MaskSelectionError, match="global scope and no per-layer rates"):
        prune_fraction(scores, dense(shapes), 0.2, count_rule="openlth", scope="layerwise")
    with pytest.raises(MaskSelectionError, match="global scope and no per-layer rates"):
        prune_fraction(scores, dense(shapes), 0.2, count_rule="openlth", rates={"a": 0.1})
    with pytest.raises(MaskSelectionError, match="count_rule"):
        prune_fraction(scores, dense(shapes), 0.2, count_rule="ceil")


# the NumPy selection path equals the plain PyTorch rule it replaced -------------------------------------
def _keep_top_plain(values: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """The rule written plainly: keep what is above the k-th largest value (torch.kthvalue) and a
    random subset (one randperm over the ties, in index order) of what equals it."""
    m = values.numel()
    if k >= m:
        return torch.ones(m, dtype=torch.bool)
    if k <= 0:
        return torch.zeros(m, dtype=torch.bool)
    threshold = torch.kthvalue(values, m - k + 1).values
    keep = values > threshold
    need = k - int(keep.sum())
    ties = torch.nonzero(values == threshold).reshape(-1)
    if need < ties.numel():
        ties = ties[torch.randperm(ties.numel(), generator=generator)[:need]]
    keep[ties] = True
    return keep


def _select_plain(scores, current, density, scope, prune_highest, generator):
    """select_by_density without the shared machinery: gather each group's alive scores, keep the top
    ``round_half_up(d · n)`` (capped at the alive count), scatter back tensor by tensor."""
    groups = [list(current)] if scope == "global" else [[n] for n in current]
    out = {}
    for names in groups:
        alive = [current[n].reshape(-1) for n in names]
        values = torch.cat([scores[n].reshape(-1).to(torch.float64)[a] for n, a in zip(names, alive)])
        values = -values if prune_highest else values
        k = min(target_count(density, sum(current[n].numel() for n in names)), values.numel())
        keep, start = _keep_top_plain(values, k, generator), 0
        for n, a in zip(names, alive):
            new = torch.zeros_like(a)
            new[a] = keep[start : start + int(a.sum())]
            start += int(a.sum())
            out[n] = new.reshape(current[n].shape)
    return Mask(out)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("prune_highest", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selection_equals_the_plain_rule_with_ties_and_partial_masks(scope, prune_highest, dtype):
    g = torch.Generator().manual_seed(7)
    shapes = {"a": (40, 30), "b": (7, 5, 3, 3), "c": (13,)}
    for trial in range(6):
        # few distinct values: ties at every cut-off; some tensors partly or fully pruned already
        scores = {n: torch.randint(0, 6 + 20 * (trial % 2), s, generator=g).to(dtype) for n, s in shapes.items()}
        current = Mask({n: torch.rand(s, generator=g) < (1.0, 0.6, 0.1)[trial % 3] for n, s in shapes.items()})
        if trial == 5:
            scores["b"][~current["b"]] = float("nan")  # pruned weights may score NaN
        for density in (0.05, 0.3, 0.9):
            seed = 100 * trial + int(density * 100)
            ga, gb = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoRevivalWarning)
                got = select_by_density(
                    scores, current, density, scope=scope, prune_highest=prune_highest, generator=ga
                )
            assert got == _select_plain(scores, current, density, scope, prune_highest, gb)
            assert torch.equal(ga.get_state(), gb.get_state())  # the same draws for the ties
