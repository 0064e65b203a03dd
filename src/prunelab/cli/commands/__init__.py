"""One module per command; each exposes ``register(subparsers)``."""

from prunelab.cli.commands import demo, presets, runs, train

REGISTRY = [train.register, presets.register, runs.register, demo.register]
