"""The ``prunelab`` command. Parsing only: every command calls into :mod:`prunelab.experiments`.

Errors take one path: a :class:`~prunelab.errors.UserError`, or an OS error the user causes (permissions,
a full or read-only disk, a bad path), is one line ``prunelab: error: ...`` on stderr and exit code 2;
Ctrl-C and SIGTERM are exit code 130 with a line saying how to resume; anything else is a bug and keeps
its traceback. ``--debug`` prints the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prunelab import distributed
from prunelab.cli import commands
from prunelab.cli.common import setup_logging
from prunelab.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, INTERRUPTED_MESSAGE, describe_error, is_user_error

__all__ = ["main", "build_parser"]

log = logging.getLogger("prunelab")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunelab",
        description="Research on neural-network pruning: lottery tickets, pruning at initialisation, supermasks.",
        epilog="Spec overrides are dotted: --train.lr=0.05 --model.width=2 --dataset.subsample_fraction=0.5",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an error too (user errors are otherwise one line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    handler: Callable[[argparse.Namespace, list[str]], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    if rest and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    try:
        with _sigterm_interrupts():
            if distributed.init_from_environment(_requested_device(args, rest)) and not distributed.is_writer():
                sys.stdout = open(os.devnull, "w")  # under torchrun rank 0 prints the one result; the others train
            setup_logging(getattr(args, "verbose", False), quiet=not distributed.is_writer())
            return handler(args, rest)
    except BrokenPipeError:  # e.g. `prunelab presets | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print(f"prunelab: {INTERRUPTED_MESSAGE}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not is_user_error(error):
            raise  # a bug: the traceback is what to report
        if args.debug:
            traceback.print_exc()
        print(f"prunelab: error: {describe_error(error)}", file=sys.stderr)
        return EXIT_USER_ERROR


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's time limit) stops a command as Ctrl-C does: KeyboardInterrupt
    unwinds through the atomic writes and locks, and the command exits 130 saying how to resume."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (main() called from a thread): leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
