"""The ``prunelab`` command. Parsing only: every command calls into :mod:`prunelab.experiments`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from prunelab import distributed
from prunelab.cli import commands
from prunelab.cli.common import setup_logging
from prunelab.specs import SpecError
from prunelab.store import RunNotFound

__all__ = ["main", "build_parser"]

log = logging.getLogger("prunelab")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunelab",
        description="Research on neural-network pruning: lottery tickets, pruning at initialisation, supermasks.",
        epilog="Spec overrides are dotted: --train.lr=0.05 --model.width=2 --dataset.subsample_fraction=0.5",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if distributed.init_from_environment(_requested_device(args, rest)) and not distributed.is_writer():
        sys.stdout = open(os.devnull, "w")  # under torchrun rank 0 prints the one result; the others train
    setup_logging(getattr(args, "verbose", False), quiet=not distributed.is_writer())
    handler: Callable[[argparse.Namespace, list[str]], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    if rest and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        return handler(args, rest)
    except (SpecError, RunNotFound, FileNotFoundError, ValueError) as error:
        print(f"prunelab: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `prunelab presets | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("prunelab: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


def _requested_device(args: argparse.Namespace, rest: Sequence[str]) -> str | None:
    """The device a command asks for (``--device`` or ``--train.device``), to pick torchrun's backend."""
    for index, item in enumerate(rest):
        if item.startswith("--train.device="):
            return item.split("=", 1)[1]
        if item == "--train.device" and index + 1 < len(rest):
            return rest[index + 1]
    return getattr(args, "device", None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
