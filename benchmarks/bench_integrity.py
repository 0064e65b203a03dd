"""What checksums cost: saving and loading a CIFAR ResNet-20's weights and a checkpoint of it, with
the checksum (prunelab.store) and without (plain safetensors), side by side. A load is followed by a
copy of every tensor (what ``load_state_dict`` does with it).

Each pair writes (or reads) the same tensors both ways, alternating; the table gives medians of
the per-pair times and ratios. The plain write goes through the same atomic temp-file + fsync +
rename, so the difference is the checksum alone. ``--size-mb`` adds a larger synthetic file.

    python benchmarks/bench_integrity.py [--repeats 15] [--size-mb 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from prunelab.models import build_model
from prunelab.specs import ModelSpec
from prunelab.store import atomic_save_tensors, load_tensors
from prunelab.store.atomic import atomic_write
from prunelab.store.integrity import tensor_digest


def cases(size_mb: float) -> dict[str, dict[str, torch.Tensor]]:
    model = build_model(ModelSpec(name="cifar_resnet_20"), input_shape=(3, 32, 32), num_classes=10, seed=0)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    checkpoint = {f"model.{k}": v for k, v in weights.items()}
    checkpoint.update({f"update.{i}": torch.randn_like(p) for i, p in enumerate(model.parameters())})  # momentum
    out = {"ResNet-20 weights": weights, "ResNet-20 checkpoint": checkpoint}
    if size_mb:
        out[f"{size_mb:g} MB synthetic"] = {"w": torch.randn(int(size_mb * 1e6 / 4))}
    return out


def used(tensors: dict[str, torch.Tensor]) -> None:
    """Copy every tensor, as ``load_state_dict`` does: safetensors maps files lazily, so a load that
    never touches the bytes would cost nothing and compare nothing."""
    for tensor in tensors.values():
        tensor.clone()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size-mb", type=float, default=0.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, tensors in cases(args.size_mb).items():
            sealed, plain = Path(directory) / "sealed.safetensors", Path(directory) / "plain.safetensors"
            size = sum(t.numel() * t.element_size() for t in tensors.values())
            save_pairs, load_pairs, digests = [], [], []
            for _ in range(args.repeats + 1):  # the first pair warms the caches and is dropped
                save_pairs.append(
                    (
                        timed(lambda: atomic_save_tensors(sealed, tensors)),
                        timed(lambda: atomic_write(plain, lambda tmp: save_file(tensors, str(tmp)))),
                    )
                )
                load_pairs.append(
                    (timed(lambda: used(load_tensors(sealed))), timed(lambda: used(load_file(str(plain)))))
                )
                digests.append(timed(lambda: tensor_digest(tensors, {})))
            save_pairs, load_pairs, digests = save_pairs[1:], load_pairs[1:], digests[1:]
            rows.append(
                {
                    "case": name,
                    "megabytes": round(size / 1e6, 2),
                    "save_ms": round(1e3 * statistics.median(a for a, _ in save_pairs), 2),
                    "plain_save_ms": round(1e3 * statistics.median(b for _, b in save_pairs), 2),
                    "load_ms": round(1e3 * statistics.median(a for a, _ in load_pairs), 2),
                    "plain_load_ms": round(1e3 * statistics.median(b for _, b in load_pairs), 2),
                    "load_ratio": round(statistics.median(a / b for a, b in load_pairs), 2),
                    "digest_ms": round(1e3 * statistics.median(digests), 2),
                    "digest_mb_per_s": round(size / 1e6 / statistics.median(digests)),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
