"""Fetching missing data files: checksummed, atomic downloads and safe archive extraction.

Downloads go through ``urllib`` to a temporary file beside the target and are renamed into place
only after the MD5 digest matches, so an interrupted or corrupted download never leaves a file that
looks complete. ``PRUNELAB_MIRROR=<base URL>`` fetches every file from ``<base URL>/<file name>``
instead of its canonical address (a local mirror, or a loopback server in the tests).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from prunelab.data.errors import DataError
from prunelab.store.atomic import atomic_write

__all__ = [
    "Remote",
    "REMOTES",
    "MIRROR_ENV",
    "TIMEOUT_SECONDS",
    "url_for",
    "fetch",
    "extract_archive",
    "missing_files_error",
]

MIRROR_ENV = "PRUNELAB_MIRROR"
TIMEOUT_SECONDS = 10.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """A downloadable file: its canonical URL and the MD5 digest of its bytes."""

    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: Canonical sources by file name. Tests (or users) may point entries elsewhere.
REMOTES: dict[str, Remote] = {
    remote.filename: remote
    for remote in (
        Remote(_MNIST + "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        Remote(_MNIST + "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        Remote(_MNIST + "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        Remote(_MNIST + "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
        Remote("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
        Remote("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de"),
    )
}


def missing_files_error(dataset: str, directory: Path, missing: Iterable[str], reason: str) -> DataError:
    """The error for absent files: where they were expected, which ones, why they were not fetched,
    and how to supply them."""
    names = ", ".join(missing)
    return DataError(
        f"{dataset}: {directory} lacks {names}. {reason} Put the files there, or set the data root to a "
        f"directory whose {directory.name}/ has them, with --data-root DIR (or PRUNELAB_DATA=DIR)."
    )


def url_for(filename: str) -> str:
    """Where ``filename`` is downloaded from: ``$PRUNELAB_MIRROR/<filename>`` if set, else its
    canonical URL."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return f"{mirror.rstrip('/')}/{filename}"
    return REMOTES[filename].url


def _stream(url: str, timeout: float) -> Iterator[bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read(_CHUNK):
            yield chunk


def fetch(
    filename: str,
    directory: Path,
    *,
    dataset: str,
    missing: Iterable[str],
    missing_from: Path,
    timeout: float = TIMEOUT_SECONDS,
) -> Path:
    """Download ``filename`` into ``directory`` and verify its MD5; return the file's path.

    ``missing`` are the files the caller lacks in ``missing_from`` (what the download provides),
    named in the error if the download fails. Raises :class:`DataError` on a network failure, an
    HTTP error or a checksum mismatch; nothing is left behind.
    """
    remote = REMOTES[filename]
    url = url_for(filename)
    target = directory / filename
    missing = list(missing)

    def write(tmp: Path) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        chunks = _stream(url, timeout)
        with open(tmp, "wb") as out:
            while True:
                try:
                    chunk = next(chunks, None)
                except urllib.error.HTTPError as error:
                    error.close()  # it holds the open response
                    reason = f"Downloading {url} failed: the server answered HTTP {error.code} {error.reason}."
                    raise missing_files_error(dataset, missing_from, missing, reason) from error
                except (
                    urllib.error.URLError,
                    OSError,
                    http.client.HTTPException,
                ) as error:  # no route, refused, timeout, cut off
                    cause = getattr(error, "reason", None) or error
                    reason = f"Downloading {url} failed ({cause}); the network may be unavailable."
                    raise missing_files_error(dataset, missing_from, missing, reason) from error
                if chunk is None:
                    break
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != remote.md5:
            raise DataError(
                f"{dataset}: checksum mismatch for {filename} downloaded from {url}: expected md5 {remote.md5}, "
                f"got {digest.hexdigest()}. The file was discarded; retry, or place a good copy at {target}."
            )

    directory.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, write)


def _check_member(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{archive}: refusing to extract member {name!r}: it would land outside the target directory")


def extract_archive(archive: Path, into: Path) -> None:
    """Extract a ``.tar.gz``/``.tar`` or ``.zip`` archive into ``into``.

    Members with absolute paths or ``..`` components are refused (the whole archive is rejected),
    as are links and device files in tar archives. Files are unpacked into a temporary directory and
    then moved into place one by one, so an interrupted extraction leaves no half-written file.
    Existing files are kept.
    """
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=into))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(archive, name)
                zf.extractall(staging)
        else:
            try:
                with tarfile.open(archive) as tf:
                    members = tf.getmembers()
                    for member in members:
                        _check_member(archive, member.name)
                        if not (member.isfile() or member.isdir()):
                            raise DataError(
                                f"{archive}: refusing to extract {member.name!r}: only regular files and "
                                "directories are allowed"
                            )
                    tf.extractall(staging, members=members, filter="data")
            except tarfile.TarError as error:
                raise DataError(
                    f"{archive} is not a readable tar or zip archive ({error}); delete it and download again"
                ) from error
        for source in sorted(staging.rglob("*")):
            if source.is_file():
                target = into / source.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_archive_files(
    dataset: str, root: Path, directory: Path, needed: Iterable[str], archive: str, *, download: bool
) -> None:
    """Make sure ``needed`` exist under ``directory``: if any is missing, download ``archive`` into
    ``root`` (checksummed), unpack it and delete it; errors name the directory and the files."""
    needed = list(needed)
    missing = [name for name in needed if not (directory / name).exists()]
    if not missing:
        return
    if not download:
        raise missing_files_error(dataset, directory, missing, "Downloading is off (dataset.download=false).")
    archive_path = fetch(archive, root, dataset=dataset, missing=missing, missing_from=directory)
    extract_archive(archive_path, root)
    archive_path.unlink()
    still = [name for name in needed if not (directory / name).exists()]
    if still:
        raise missing_files_error(dataset, directory, still, f"The downloaded {archive} did not contain them.")
