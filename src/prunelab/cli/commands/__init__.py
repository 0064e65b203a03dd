"""One module per command; each exposes ``register(subparsers)``."""

from prunelab.cli.commands import (
    branch,
    demo,
    export,
    gc,
    lottery,
    ntk,
    presets,
    prune,
    report,
    results,
    rm,
    run,
    runs,
    supermask,
    train,
    verify,
)

REGISTRY = [
    train.register,
    lottery.register,
    branch.register,
    prune.register,
    supermask.register,
    export.register,
    run.register,
    results.register,
    report.register,
    ntk.register,
    presets.register,
    runs.register,
    verify.register,
    rm.register,
    gc.register,
    demo.register,
]
