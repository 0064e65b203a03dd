"""Downloads against a loopback HTTP server: success with checksum, mismatch, HTTP error, no network,
and safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from data_fixtures import Mirror, closed_port_url, mirror, write_cifar10, write_mnist_split, write_tinyimagenet  # noqa: F401
from prunelab.data import DataError, download, load_dataset
from prunelab.specs import DatasetSpec

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def spec(name: str, root: Path, **kw: object) -> DatasetSpec:
    return DatasetSpec(name=name, root=str(root), **kw)  # type: ignore[arg-type]


def publish_mnist(tmp_path: Path, mirror: Mirror, *, register: bool = True) -> None:
    source = tmp_path / "source"
    write_mnist_split(source, "train", 8, gz=True, seed=0)
    write_mnist_split(source, "t10k", 3, gz=True, seed=1)
    for name in MNIST_FILES:
        mirror.publish(source / f"{name}.gz", register=register)


def test_url_for_uses_the_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    assert download.url_for("cifar-10-python.tar.gz") == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert (
        download.url_for("t10k-images-idx3-ubyte.gz")
        == "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"
    )
    monkeypatch.setenv(download.MIRROR_ENV, "http://127.0.0.1:1/m/")
    assert download.url_for("tiny-imagenet-200.zip") == "http://127.0.0.1:1/m/tiny-imagenet-200.zip"


def test_mnist_downloads_and_verifies(tmp_path: Path, mirror: Mirror) -> None:
    publish_mnist(tmp_path, mirror)
    root = tmp_path / "root"
    splits = load_dataset(spec("mnist", root))
    assert (len(splits.train), len(splits.test)) == (8, 3)
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)  # no temp files
    again = load_dataset(spec("mnist", root, download=False))  # now served from disk
    assert again.train.labels.tolist() == splits.train.labels.tolist()


def test_mnist10k_downloads_the_test_files(tmp_path: Path, mirror: Mirror) -> None:
    publish_mnist(tmp_path, mirror)
    load_dataset(spec("mnist10k", tmp_path / "root"))  # 3 images: split 2/1
    assert sorted(p.name for p in (tmp_path / "root" / "mnist-10k").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


def test_checksum_mismatch_names_file_and_digests(tmp_path: Path, mirror: Mirror) -> None:
    publish_mnist(tmp_path, mirror, register=False)  # prunelab still expects the canonical md5s
    served = (mirror.directory / "t10k-images-idx3-ubyte.gz").read_bytes()
    actual = hashlib.md5(served).hexdigest()
    with pytest.raises(DataError) as info:
        load_dataset(spec("mnist10k", tmp_path / "root"))
    message = str(info.value)
    assert "checksum mismatch for t10k-images-idx3-ubyte.gz" in message
    assert "9fb629c4189551a2d022fa330f9573f3" in message and actual in message
    assert list((tmp_path / "root" / "mnist-10k").iterdir()) == []  # nothing half-written is left


def test_http_error_names_expected_files(tmp_path: Path, mirror: Mirror) -> None:
    with pytest.raises(DataError, match=r"server answered HTTP 404") as info:
        load_dataset(spec("mnist10k", tmp_path / "root"))
    assert "t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz)" in str(info.value)


def test_no_network_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(download.MIRROR_ENV, closed_port_url())
    monkeypatch.setenv("no_proxy", "*")
    started = time.monotonic()
    with pytest.raises(DataError) as info:
        load_dataset(spec("cifar10", tmp_path / "root"))
    assert time.monotonic() - started < download.TIMEOUT_SECONDS
    message = str(info.value)
    assert str(tmp_path / "root" / "cifar-10-batches-py") in message
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch" in message
    assert "the network may be unavailable" in message and "--data-root" in message and "PRUNELAB_DATA" in message
    assert not (tmp_path / "root" / "cifar-10-python.tar.gz").exists()


def test_cifar10_archive_is_downloaded_and_extracted(tmp_path: Path, mirror: Mirror) -> None:
    write_cifar10(tmp_path / "source", per_batch=2)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "source" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    mirror.publish(archive)
    root = tmp_path / "root"
    splits = load_dataset(spec("cifar10", root))
    assert (len(splits.train), len(splits.test)) == (10, 2)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # archive and staging removed


def test_tinyimagenet_zip_is_downloaded_and_extracted(tmp_path: Path, mirror: Mirror) -> None:
    source = write_tinyimagenet(tmp_path / "source")
    archive = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            zf.write(path, path.relative_to(source.parent).as_posix())
    mirror.publish(archive)
    splits = load_dataset(spec("tinyimagenet", tmp_path / "root", num_workers=0))
    assert (len(splits.train), len(splits.test)) == (6, 3)


def _tar_with(tmp_path: Path, name: str, *, symlink: bool = False) -> Path:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo(name)
        if symlink:
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tf.addfile(info)
        else:
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
    return archive


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/absolute.txt", "ok/../../escape.txt"])
def test_archive_members_outside_the_target_are_refused(tmp_path: Path, name: str) -> None:
    into = tmp_path / "into"
    with pytest.raises(DataError, match=r"evil.tar.gz: refusing to extract member .*outside the target"):
        download.extract_archive(_tar_with(tmp_path, name), into)
    assert not (tmp_path / "escape.txt").exists() and list(into.iterdir()) == []
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(name, b"evil")
    with pytest.raises(DataError, match=r"evil.zip: refusing to extract member"):
        download.extract_archive(archive, into)


def test_archive_links_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"only regular files and directories"):
        download.extract_archive(_tar_with(tmp_path, "link", symlink=True), tmp_path / "into")


def test_damaged_archive(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DataError, match=r"broken.tar.gz is not a readable tar or zip archive"):
        download.extract_archive(archive, tmp_path / "into")
