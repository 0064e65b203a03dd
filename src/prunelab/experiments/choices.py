"""The names of the experiments' choices — lottery controls, pruning-at-initialisation experiments,
executors — in a module that imports nothing heavy, so the command line lists them in its parser
and help without importing torch. The modules that implement the choices take the names from here."""

from __future__ import annotations

__all__ = [
    "CONTROLS",
    "PRUNE_EXPERIMENTS",
    "MULTISHOT_ROUNDS",
    "MULTISHOT_ROUND_STEPS",
    "EXECUTORS",
    "REPORT_FORMATS",
    "DEFAULT_REPORT_FORMATS",
]

#: ``shuffle``: each layer's mask permuted (OpenLTH ``randomly_prune --strategy=layerwise``); ``shuffle_global``:
#: the ticket's count over all considered tensors at uniformly random positions (``--strategy=global``).
CONTROLS = ("reinit", "shuffle", "retrain", "shuffle_global")

#: how pruning at initialisation reaches its density: in one shot, or in several
PRUNE_EXPERIMENTS = ("singleshot", "multishot")
#: multishot's prune-rewind-retrain rounds and each round's training length when none are given (they
#: name a multishot run, so the command line, the trials and the stage share them)
MULTISHOT_ROUNDS, MULTISHOT_ROUND_STEPS = 3, "1ep"

#: where a study's trials run
EXECUTORS = ("local", "ray", "slurm")

#: what ``prunelab report`` can write, and what it writes by default
REPORT_FORMATS = ("png", "html", "csv", "parquet")
DEFAULT_REPORT_FORMATS = ("png", "html")
