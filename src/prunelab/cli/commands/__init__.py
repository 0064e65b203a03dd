"""One module per command; each exposes ``register(subparsers)``."""

from prunelab.cli.commands import (branch, demo, export, lottery, ntk, presets, prune, report, results, run, runs,
                                   supermask, train)

REGISTRY = [
    train.register, lottery.register, branch.register, prune.register, supermask.register, export.register,
    run.register, results.register, report.register, ntk.register, presets.register, runs.register, demo.register,
]
