"""MaskedParameters and apply_mask: in-place masking of weights and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelab.masks import Mask, MaskedParameters, apply_mask


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _mask(model: nn.Module, density: float = 0.5) -> Mask:
    gen = torch.Generator().manual_seed(1)
    return Mask(
        {n: torch.rand(p.shape, generator=gen) < density for n, p in model.named_parameters() if n.endswith("weight")}
    )


def test_apply_to_weights_zeroes_exactly_the_pruned_weights():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = _mask(model)
    masked = MaskedParameters(dict(model.named_parameters()), mask)
    assert masked.pruned_nonzero() > 0
    masked.apply_to_weights()
    assert masked.pruned_nonzero() == 0
    for name, param in model.named_parameters():
        if name in mask:
            keep = mask[name]
            assert torch.equal(param[keep], before[name][keep])
            assert bool((param[~keep] == 0).all())
        else:  # biases are not in the mask and stay untouched
            assert torch.equal(param, before[name])
    assert len(masked) == 2 and masked.names == ["0.weight", "2.weight"]
    assert "kept" in repr(masked)


def test_apply_to_gradients_masks_and_skips_missing_grads():
    model = _model()
    mask = _mask(model)
    masked = MaskedParameters(dict(model.named_parameters()), mask)
    masked.apply_to_gradients()  # no grads at all: nothing to do, no error
    model(torch.randn(4, 6)).sum().backward()
    model[0].weight.grad = None  # one parameter without a gradient
    masked.apply_to_gradients()
    assert model[0].weight.grad is None
    grad = model[2].weight.grad
    assert bool((grad[~mask["2.weight"]] == 0).all())
    assert bool((grad[mask["2.weight"]] != 0).any())


def test_masks_are_converted_once_to_the_parameter_dtype():
    model = _model().to(torch.float64)
    masked = MaskedParameters(dict(model.named_parameters()), _mask(model))
    assert all(m.dtype == torch.float64 and m.device == p.device for m, p in zip(masked.masks, masked.params))


def test_mask_errors_name_the_problem():
    model = _model()
    params = dict(model.named_parameters())
    with pytest.raises(KeyError, match="not among the parameters"):
        MaskedParameters(params, {"nope.weight": torch.ones(5, 6, dtype=torch.bool)})
    with pytest.raises(ValueError, match="does not match parameter"):
        MaskedParameters(params, {"0.weight": torch.ones(6, 5, dtype=torch.bool)})


def test_apply_mask_on_module_and_on_mapping():
    model = _model()
    mask = _mask(model)
    apply_mask(model, mask)
    assert bool((model[0].weight[~mask["0.weight"]] == 0).all())
    other = _model()
    params = {"0.weight": other[0].weight, "2.weight": other[2].weight}
    apply_mask(params, mask)
    assert torch.equal(other[0].weight, model[0].weight)


def test_empty_mask_is_a_no_op():
    model = _model()
    masked = MaskedParameters(dict(model.named_parameters()), Mask({}))
    masked.apply_to_weights()
    masked.apply_to_gradients()
    assert len(masked) == 0
