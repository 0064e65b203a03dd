"""A minimal standalone PyTorch script doing the work of
``prunelab train --preset mnist10k_lenet_300_100 --train.steps=400it``: the baseline of
``bench_end_to_end.py``.

Same data (MNIST's 10,000 test digits from ``$PRUNELAB_DATA/mnist-10k``, split 8,000/2,000), same
model (LeNet-300-100, Kaiming-normal weights, zero biases), same optimiser (SGD, lr 0.1, no
momentum), batch 128, 400 iterations, an evaluation of the 2,000 test images (batches of 1,000) at
step 0, after every epoch of 63 iterations and at the end, and the final weights written to a
safetensors file. Nothing else: no spec, no store, no checkpoints, no metrics file.

    python benchmarks/standalone_lenet.py [--steps 400] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn


def read_idx(path: Path, header_ints: int) -> torch.Tensor:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return torch.frombuffer(bytearray(data[4 * header_ints :]), dtype=torch.uint8)


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)
        generator = torch.Generator().manual_seed(0)
        for layer in (self.fc1, self.fc2, self.fc):
            with torch.no_grad():
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features), generator=generator)
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc(F.relu(self.fc2(x)))


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for x, y in zip(images.split(1000), labels.split(1000)):
            logits = model(x)
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
    model.train()
    return correct / len(labels), loss / len(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", help="directory for the final weights (default: a temporary one)")
    args = parser.parse_args()
    started = time.perf_counter()
    root = Path(os.environ.get("PRUNELAB_DATA", Path.home() / ".prunelab" / "data")) / "mnist-10k"
    images = read_idx(root / "t10k-images-idx3-ubyte.gz", 4).view(-1, 1, 28, 28)
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz", 2).long()
    split = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = split[:8000].sort().values, split[8000:].sort().values
    normalise = lambda u8: (u8.float() / 255 - 0.1307) / 0.3081  # noqa: E731
    # index_select, as prunelab does: the baseline should not lose time to a slower idiom
    train_x, train_y = images.index_select(0, train_idx), labels.index_select(0, train_idx)
    test_x, test_y = normalise(images.index_select(0, test_idx)), labels.index_select(0, test_idx)

    torch.manual_seed(0)
    model = LeNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batch_size, per_epoch = 128, math.ceil(8000 / 128)
    print(f"step 0: test accuracy {evaluate(model, test_x, test_y)[0]:.2%}", file=sys.stderr)
    step, epoch = 0, 0
    while step < args.steps:
        order = torch.randperm(8000, generator=torch.Generator().manual_seed(epoch))
        for batch in range(per_epoch):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            x, y = normalise(train_x.index_select(0, index)), train_y.index_select(0, index)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            step += 1
            if step == args.steps or step % per_epoch == 0:
                accuracy, loss = evaluate(model, test_x, test_y)
                print(f"step {step}: test loss {loss:.4f}, test accuracy {accuracy:.2%}", file=sys.stderr)
            if step == args.steps:
                break
        epoch += 1
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or scratch)
        out.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), str(out / "weights.safetensors"))
    print(f"trained {step} steps in {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
