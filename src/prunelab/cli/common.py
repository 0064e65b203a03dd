"""Helpers shared by CLI commands: spec arguments, logging to stderr, output formatting."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from prunelab.analysis.tables import format_table
from prunelab.specs import ExperimentSpec, SpecError, load_spec, parse_override_args

__all__ = [
    "add_spec_arguments",
    "spec_from_args",
    "seeds_from_args",
    "floats_from",
    "print_json",
    "format_table",
    "setup_logging",
    "add_executor_arguments",
    "run_study",
    "EXIT_TRIALS_FAILED",
]

#: exit code of a command some of whose trials failed (the others finished and are stored)
EXIT_TRIALS_FAILED = 1


def setup_logging(verbose: bool = False, *, quiet: bool = False) -> None:
    """Log lines on stderr: debug with ``verbose``, warnings only when ``quiet`` (torchrun ranks > 0)."""
    logging.basicConfig(
        level=logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO),
        format="%(message)s",
        stream=sys.stderr,
        force=True,
    )


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("spec")
    group.add_argument("--preset", help="named preset (see `prunelab presets`)")
    group.add_argument("--config", help="YAML spec file (may name a `preset:`); applied after the preset")
    group.add_argument("--seed", type=int, help="replicate seed (same as --seed=N override)")
    group.add_argument("--device", help="auto, cpu, cuda or cuda:N (same as --train.device)")
    group.add_argument("--data-root", help="data root (default: $PRUNELAB_DATA or ~/.prunelab/data)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--home", help="run store root (default: $PRUNELAB_HOME or ~/.prunelab/runs)")
    parser.add_argument("--json", action="store_true", help="print only the summary JSON on stdout")


def spec_from_args(args: argparse.Namespace, overrides: Sequence[str]) -> ExperimentSpec:
    shortcuts = []
    if args.seed is not None:
        shortcuts.append(f"--seed={args.seed}")
    if args.device:
        shortcuts.append(f"--train.device={args.device}")
    if args.data_root:
        shortcuts.append(f"--dataset.root={args.data_root}")
    if args.no_progress:
        shortcuts.append("--train.progress=false")
    # a shortcut flag and its dotted form for the same field, with different values, is an error
    values: dict[str, Any] = parse_override_args([*overrides, *shortcuts])
    if args.json and not sys.stderr.isatty():
        values.setdefault("train.progress", "false")
    return load_spec(args.preset, args.config, values)


def seeds_from_args(args: argparse.Namespace, default: int) -> list[int]:
    """Replicate seeds from --seeds 1,2,3, --replicates N (0..N-1) or --replicate K; else ``default``."""
    given = [name for name in ("seeds", "replicates", "replicate") if getattr(args, name, None) is not None]
    if len(given) > 1:
        raise SpecError(
            f"use only one of --seeds, --replicates, --replicate (got {', '.join('--' + g for g in given)})"
        )
    if getattr(args, "seeds", None):
        try:
            return [int(part) for part in args.seeds.split(",") if part.strip()]
        except ValueError:
            raise SpecError(f"--seeds takes comma-separated integers, got {args.seeds!r}") from None
    if getattr(args, "replicates", None) is not None:
        if args.replicates < 1:
            raise SpecError("--replicates must be >= 1")
        return list(range(args.replicates))
    if getattr(args, "replicate", None) is not None:
        return [args.replicate]
    return [default]


def floats_from(text: str | None, flag: str) -> list[float]:
    """``'0.1,0.03'`` → ``[0.1, 0.03]``; ``None`` or ``''`` → ``[]``."""
    if not text:
        return []
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor`` and its options, for commands that run several trials (lists, seeds, grids)."""
    from prunelab.experiments.choices import EXECUTORS

    g = parser.add_argument_group("executor (how the trials of lists, seeds and grids run)")
    g.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: worker processes on this machine (default); ray: tasks on a Ray cluster; slurm: jobs "
        "through submitit",
    )
    g.add_argument(
        "--workers",
        type=int,
        help="local: worker processes (default: one per GPU, else per core, at most "
        "the trials that can run at once; 1 runs everything in this process)",
    )
    g.add_argument(
        "--pack",
        default="auto",
        metavar="K|auto",
        help="train up to K trials that share a data set, an architecture and a training length together, "
        "in lock-step (each still its own run; results equal within float tolerance); auto (default): "
        "sized to the device and model (on a CPU only small fully connected models gain); 1: each trial alone",
    )
    g.add_argument(
        "--address", help="ray: the cluster to join, auto or HOST:PORT (default: start a local Ray instance)"
    )
    g.add_argument("--ray-num-cpus", type=float, help="ray: CPUs per trial (default 1; also its torch threads)")
    g.add_argument("--ray-num-gpus", type=float, help="ray: GPUs per trial (default 0)")
    g.add_argument("--slurm-partition", help="slurm: the partition the jobs go to")
    g.add_argument(
        "--slurm-time", help="slurm: time limit of one trial's job: minutes, HH:MM:SS or D-HH:MM:SS (default 60)"
    )
    g.add_argument("--slurm-gpus-per-trial", type=int, help="slurm: GPUs per job (default 0)")
    g.add_argument("--slurm-cpus-per-trial", type=int, help="slurm: CPUs per job, also its torch threads (default 1)")
    g.add_argument("--slurm-mem-gb", type=float, help="slurm: memory per job in GB (default: the partition's)")
    g.add_argument("--slurm-logs", help="slurm: folder of submitit's job files and logs (default prunelab-slurm/)")
    g.add_argument(
        "--slurm-cluster",
        choices=("slurm", "local", "debug"),
        help="slurm: submitit's back end (default: Slurm when sbatch is available); local runs the jobs as "
        "local processes, to try a study before the cluster",
    )


def _executor(args: argparse.Namespace, parallel: int) -> Any:
    from prunelab.experiments.executors import make_executor

    slurm = {
        "partition": args.slurm_partition,
        "time": args.slurm_time,
        "gpus_per_trial": args.slurm_gpus_per_trial,
        "cpus_per_trial": args.slurm_cpus_per_trial,
        "mem_gb": args.slurm_mem_gb,
        "cluster": args.slurm_cluster,
    }
    ray = {
        key: value
        for key, value in (("ray_num_cpus", args.ray_num_cpus), ("ray_num_gpus", args.ray_num_gpus))
        if value is not None
    }
    return make_executor(
        args.executor,
        workers=args.workers,
        parallel=parallel,
        address=args.address,
        slurm_folder=args.slurm_logs,
        **ray,
        **slurm,
    )


def run_study(args: argparse.Namespace, study: Any, *, progress: bool = True) -> Any:
    """Run ``study`` on the executor the arguments choose; the live progress and the failures go to stderr.
    A study of one requested trial (a lottery with its levels, say) that failed with an error the user can
    fix raises it, so the command ends as any user error does: one line, exit code 2."""
    study.check()  # every trial against its model and data, before the executor starts or anything trains
    pending = len(study.pending())
    pack = getattr(args, "pack", "auto")
    with _executor(args, study.width(pack)) as executor:
        if pending > 1:
            print(f"study: {len(study.entries)} trials, {pending} to run on {executor.describe()}", file=sys.stderr)
        result = study.run(executor, progress=progress, pack=pack)
    failure = result.user_failure() if study.single else None
    if failure is not None:
        raise failure
    if study.single:  # the progress left these to the command (see above); other failures came with them
        for outcome in result.outcomes:
            if outcome.status == "failed" and outcome.user_error:
                print(f"study: FAILED {outcome.run_id} ({outcome.label}): {outcome.error}", file=sys.stderr)
    if pending > 1 or not result.ok:
        print(f"study: {result.totals()}", file=sys.stderr)
    return result
