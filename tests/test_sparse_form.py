"""The compact form of a masked state dict: exact round trip, the smaller encoding, the sizes."""

from __future__ import annotations

import pytest
import torch

from prunelab.masks.sparse import pack_state, unpack_state


def _bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors.values())


def test_round_trip_is_exact_and_keeps_the_key_order():
    g = torch.Generator().manual_seed(0)
    state = {
        "a.weight": torch.randn(30, 17, generator=g),
        "a.bias": torch.randn(30, generator=g),
        "b.weight": torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64),
    }
    mask = {"a.weight": torch.rand(30, 17, generator=g) < 0.3, "b.weight": torch.rand(5, 3, 3, 3, generator=g) < 0.5}
    tensors, meta = pack_state(state, mask)
    restored, restored_mask = unpack_state(tensors, meta)
    assert list(restored) == list(state)
    for name, value in state.items():
        expected = value * mask[name] if name in mask else value
        assert restored[name].dtype == value.dtype and torch.equal(restored[name], expected)
    assert all(torch.equal(restored_mask[n], mask[n]) for n in mask)


def test_bits_are_packed_little_endian_within_a_byte():
    keep = torch.tensor([True, False, True, True, False, False, False, False, True])  # 9 weights: 2 bytes
    tensors, meta = pack_state({"w": torch.arange(9.0)}, {"w": keep})
    assert meta["sparse"]["w"] == {"shape": [9], "encoding": "bitmap", "kept": 4}
    assert tensors["w/positions"].tolist() == [0b00001101, 0b00000001]
    assert tensors["w/values"].tolist() == [0.0, 2.0, 3.0, 8.0]


def test_the_smaller_encoding_is_chosen():
    n = 6400
    sparse = torch.zeros(n, dtype=torch.bool)
    sparse[::100] = True  # 64 kept: 256 index bytes < 800 bitmap bytes
    dense = torch.zeros(n, dtype=torch.bool)
    dense[::10] = True  # 640 kept: bitmap
    tensors, meta = pack_state({"s": torch.ones(n), "d": torch.ones(n)}, {"s": sparse, "d": dense})
    assert meta["sparse"]["s"]["encoding"] == "index" and tensors["s/positions"].dtype == torch.int32
    assert meta["sparse"]["d"]["encoding"] == "bitmap"
    restored, _ = unpack_state(tensors, meta)
    assert torch.equal(restored["s"], sparse.float()) and torch.equal(restored["d"], dense.float())


def test_ten_percent_density_takes_about_an_eighth_of_the_dense_bytes():
    g = torch.Generator().manual_seed(1)
    state = {"w": torch.randn(1000, 1000, generator=g)}
    tensors, _ = pack_state(state, {"w": torch.rand(1000, 1000, generator=g) < 0.1})
    assert _bytes(tensors) / _bytes(state) == pytest.approx(0.125 / 4 + 0.1, abs=0.002)


def test_damaged_compact_forms_are_refused():
    tensors, meta = pack_state({"w": torch.ones(16)}, {"w": torch.arange(16) % 2 == 0})
    tensors["w/values"] = tensors["w/values"][:-1]
    with pytest.raises(ValueError, match="inconsistent"):
        unpack_state(tensors, meta)
    with pytest.raises(KeyError, match="does not hold"):
        pack_state({"w": torch.ones(2)}, {"v": torch.ones(2, dtype=torch.bool)})
