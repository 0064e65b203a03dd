"""Fixture files in the real on-disk formats of the supported data sets, and a loopback HTTP
server, for the ``tests/test_data_*.py`` modules.

Everything is written with the format's own rules (IDX headers, CIFAR pickle dicts with bytes keys,
JPEG trees made with Pillow) rather than through prunelab's readers, so the tests check the readers
against the formats and not against themselves.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import pickle
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prunelab.data import download

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# --- MNIST IDX ------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: magic 0x0000 0x08 <ndim>, big-endian uint32 dimensions, uint8 values."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    data = idx_bytes(array)
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_mnist_split(directory: Path, prefix: str, n: int, *, gz: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist_arrays(n, seed)
    write_idx(directory / f"{prefix}-images-idx3-ubyte", images, gz=gz)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)
    return images, labels


# --- CIFAR pickles --------------------------------------------------------------------------------


def cifar_arrays(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, num_classes, n)]


def write_cifar_batch(
    path: Path, data: np.ndarray, labels: list[int], *, label_key: bytes = b"labels", protocol: int = 2
) -> None:
    """A batch laid out like the originals: a dict with bytes keys, ``b'data'`` a uint8 N×3072 array
    (red plane, green plane, blue plane), labels a list of ints, file names a list of bytes."""
    batch = {
        b"batch_label": f"fixture batch {path.name}".encode(),
        label_key: labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [label // 5 for label in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar10(root: Path, per_batch: int = 6) -> dict[str, tuple[np.ndarray, list[int]]]:
    directory = root / "cifar-10-batches-py"
    batches = {}
    for seed, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_arrays(per_batch, 10, seed)
        write_cifar_batch(directory / name, *batches[name])
    return batches


def write_cifar100(root: Path, n_train: int = 12, n_test: int = 5) -> dict[str, tuple[np.ndarray, list[int]]]:
    directory = root / "cifar-100-python"
    batches = {"train": cifar_arrays(n_train, 100, 10), "test": cifar_arrays(n_test, 100, 11)}
    for name, (data, labels) in batches.items():
        write_cifar_batch(directory / name, data, labels, label_key=b"fine_labels")
    return batches


# --- image folders --------------------------------------------------------------------------------


def write_image(path: Path, width: int, height: int, seed: int, *, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


TINY_WNIDS = ["n02085620", "n01443537", "n01629819"]  # deliberately unsorted, like the real wnids.txt


def write_tinyimagenet(root: Path, per_class: int = 2) -> Path:
    """A Tiny-ImageNet tree: 3 classes, ``per_class`` training JPEGs each (one greyscale), and one
    validation JPEG per class listed in ``val_annotations.txt``."""
    directory = root / "tiny-imagenet-200"
    directory.mkdir(parents=True)
    (directory / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    seed = 0
    for wnid in TINY_WNIDS:
        for i in range(per_class):
            seed += 1
            mode = "L" if (wnid, i) == (TINY_WNIDS[0], 0) else "RGB"
            write_image(directory / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 64, 64, seed, mode=mode)
        (directory / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i, wnid in enumerate(reversed(TINY_WNIDS)):
        write_image(directory / "val" / "images" / f"val_{i}.JPEG", 64, 64, 100 + i)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (directory / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return directory


def write_imagenet(root: Path, classes: tuple[str, ...] = ("n01440764", "n01443537"), per_class: int = 2) -> Path:
    """ImageNet class folders with JPEGs of assorted sizes and aspect ratios."""
    directory = root / "imagenet"
    sizes = [(40, 30), (30, 44), (64, 64), (50, 20)]
    seed = 0
    for split, count in (("train", per_class), ("val", 1)):
        for wnid in classes:
            for i in range(count):
                seed += 1
                write_image(directory / split / wnid / f"{wnid}_{i}.JPEG", *sizes[seed % len(sizes)], seed)
    return directory


# --- loopback HTTP server -------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@dataclass
class Mirror:
    """A directory served over HTTP on 127.0.0.1; ``PRUNELAB_MIRROR`` points at it."""

    directory: Path
    url: str

    def publish(self, path: Path, *, register: bool = True) -> str:
        """Serve ``path`` under its name; with ``register``, make prunelab expect its real md5."""
        target = self.directory / path.name
        target.write_bytes(path.read_bytes())
        if register:
            download.REMOTES[path.name] = download.Remote(download.REMOTES[path.name].url, md5_of(target))
        return md5_of(target)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/files"
    (served / "files").mkdir()
    monkeypatch.setenv(download.MIRROR_ENV, url)
    for name in ("no_proxy", "NO_PROXY"):  # never route loopback requests through a proxy
        monkeypatch.setenv(name, "*")
    monkeypatch.setattr(download, "REMOTES", dict(download.REMOTES))  # publish() may change entries
    try:
        yield Mirror(served / "files", url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/files"
