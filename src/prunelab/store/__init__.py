"""Content-addressed run directories, atomic writes and locks."""

from prunelab.store.atomic import (
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    load_tensors,
    read_json,
)
from prunelab.store.layout import RunLayout
from prunelab.store.runs import SUMMARY_KEYS, Run, RunNotFound, RunStore, home_dir

__all__ = [
    "Run", "RunLayout", "RunNotFound", "RunStore", "SUMMARY_KEYS", "atomic_save_tensors", "atomic_write_bytes",
    "atomic_write_json", "atomic_write_text", "atomic_write_yaml", "home_dir", "load_tensors", "read_json",
]
