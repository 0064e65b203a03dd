"""Content-addressed run directories, atomic writes, checksummed tensor files and locks."""

from prunelab.store.atomic import (
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    load_tensor_file,
    load_tensors,
    read_json,
    verify_tensor_file,
)
from prunelab.store.integrity import DamagedFile
from prunelab.store.layout import RunLayout
from prunelab.store.runs import SUMMARY_KEYS, Run, RunBusy, RunNotFound, RunStore, home_dir
from prunelab.store.summary import summary_problems

__all__ = [
    "DamagedFile",
    "Run",
    "RunBusy",
    "RunLayout",
    "RunNotFound",
    "RunStore",
    "SUMMARY_KEYS",
    "atomic_save_tensors",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_yaml",
    "home_dir",
    "load_tensor_file",
    "load_tensors",
    "read_json",
    "summary_problems",
    "verify_tensor_file",
]
