"""One error path: every error a user can fix is one line ``prunelab: error: ...`` and exit code 2 (the
traceback only with ``--debug``), SIGTERM is Ctrl-C, and every input of a command is checked against its
model and data before anything is trained or stored."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from prunelab.cli import main as cli_main
from prunelab.cli.main import main
from prunelab.data.errors import DataError
from prunelab.errors import UserError, describe_error, is_user_error
from prunelab.pruning.selection import MaskSelectionError
from prunelab.specs import SpecError
from prunelab.steps import StepError
from prunelab.store import DamagedFile, RunBusy, RunNotFound, RunStore
from prunelab.supermask.errors import SupermaskError
from prunelab.training import TrainingDiverged
from prunelab.training.checkpoint import CheckpointError, CheckpointWriteError
from prunelab.training.device import DeviceError

DIGITS = [
    "--preset",
    "digits_lenet_300_100",
    "--model.name=lenet_32_16",
    "--train.steps=1ep",
    "--train.eval_every=none",
    "--no-progress",
]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The error of a failed command: exactly one ``prunelab: error:`` line and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("prunelab: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def stored_runs(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) if home.is_dir() else []


# the one base class ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls",
    [
        SpecError,
        DataError,
        DamagedFile,
        RunNotFound,
        RunBusy,
        CheckpointError,
        CheckpointWriteError,
        MaskSelectionError,
        SupermaskError,
        TrainingDiverged,
        StepError,
        DeviceError,
    ],
)
def test_every_user_facing_error_derives_from_user_error(cls):
    assert issubclass(cls, UserError)


def test_os_errors_a_user_causes_are_user_errors_described_in_one_line():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/store/run/checkpoints/latest.safetensors")
    assert is_user_error(full)
    text = describe_error(full)
    assert "/store/run/checkpoints/latest.safetensors" in text and "re-run the same command" in text
    assert is_user_error(PermissionError(errno.EACCES, "Permission denied", "/store"))
    assert not is_user_error(ValueError("a bug")) and not is_user_error(BrokenPipeError(errno.EPIPE, "pipe"))


# the command line ------------------------------------------------------------------------------------
def _failing_handler(error: BaseException):
    def handler(args, rest):
        raise error

    return handler


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A bare ValueError is a programming error, not bad input: the CLI no longer hides it."""
    monkeypatch.setattr(
        cli_main.commands,
        "REGISTRY",
        [lambda sub: sub.add_parser("boom").set_defaults(handler=_failing_handler(ValueError("internal")))],
    )
    with pytest.raises(ValueError, match="internal"):
        main(["boom"])


def test_user_errors_are_one_line_and_debug_adds_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(
        cli_main.commands,
        "REGISTRY",
        [lambda sub: sub.add_parser("boom").set_defaults(handler=_failing_handler(SpecError("bad --thing; use 1")))],
    )
    code, _, err = run_cli(capsys, "boom")
    assert code == 2 and err == "prunelab: error: bad --thing; use 1\n"
    code, _, err = run_cli(capsys, "--debug", "boom")
    assert code == 2 and "Traceback" in err and err.endswith("prunelab: error: bad --thing; use 1\n")


def test_a_store_that_cannot_be_written_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(capsys, "train", *DIGITS, "--home", blocker / "store")
    line = one_error_line(err)
    assert code == 2 and "not a directory" in line and str(blocker) in line and "--home" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_store_is_one_line(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, "train", *DIGITS, "--home", store)
    finally:
        store.chmod(0o755)
    assert code == 2 and "permission denied" in one_error_line(err)


def test_diverged_training_is_one_line_naming_the_step_and_leaves_no_run(home, capsys):
    code, _, err = run_cli(capsys, "train", *DIGITS, "--train.lr=1e6")
    line = one_error_line(err)
    assert code == 2 and "diverged" in line and "at iteration" in line and "Lower train.lr" in line
    assert stored_runs(home) == []
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize("command", ["lottery", "prune"])
def test_a_diverged_lottery_or_prune_run_leaves_no_run(command, home, capsys):
    extra = ["--levels", "1"] if command == "lottery" else ["--strategy", "magnitude", "--density", "0.5"]
    code, _, err = run_cli(capsys, command, *DIGITS, "--train.lr=1e9", *extra)
    assert code == 2 and "training diverged" in one_error_line(err)
    assert stored_runs(home) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize(
    "device, message",
    [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"), ("mps", "unknown device 'mps'")],
)
def test_an_unavailable_device_is_one_line(device, message, home, capsys):
    code, _, err = run_cli(capsys, "train", *DIGITS, "--device", device)
    assert code == 2 and message in one_error_line(err)
    assert stored_runs(home) == []


def test_a_summary_holding_a_list_and_one_that_is_empty_are_one_line(home, capsys):
    code, out, _ = run_cli(capsys, "train", *DIGITS, "--json")
    run_id = json.loads(out)["run_id"]
    for text in ("[]", "{}"):
        (home / run_id / "summary.json").write_text(text)
        code, _, err = run_cli(capsys, "report", run_id, "--out", home.parent / "report")
        assert code == 2 and "no finished runs to report" in one_error_line(err)
        code, out, _ = run_cli(capsys, "show", run_id)
        assert code == 0 and "status   damaged" in out and "None" not in out


# SIGTERM -----------------------------------------------------------------------------------------------
def test_sigterm_stops_training_like_ctrl_c_and_the_same_command_resumes(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "PRUNELAB_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    command = [
        sys.executable,
        "-m",
        "prunelab",
        "train",
        "--preset",
        "digits_lenet_300_100",
        "--train.steps=8ep",
        "--train.checkpoint_every=1ep",
        "--train.eval_every=none",
        "--no-progress",
        "--json",
    ]
    victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(home.glob("train-*/checkpoints/latest.json")):
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)
    _, err = victim.communicate(timeout=60)
    assert victim.returncode == 130, err
    assert "prunelab: interrupted; re-run the same command to resume" in err and "Traceback" not in err
    assert not list(home.glob("train-*/summary.json"))
    assert not list(home.rglob("*.tmp")) and not list(home.glob(".*.lock"))  # the writes and the lock unwound
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed_from"] is not None and summary["resumed_from"] > 0 and summary["final_step"] == 8 * 23


# validate before work -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["lottery", "--levels", "1", "--rates", "nosuch=0.5"], "rates pattern 'nosuch' matches no prunable tensor"),
        (["lottery", "--levels", "1", "--ignore", "nosuch*"], "ignore pattern 'nosuch*' matches no prunable tensor"),
        (["lottery", "--levels", "1", "--scope", "layerwise", "--count-rule", "openlth"], "count_rule='openlth'"),
        (["lottery", "--levels", "1", "--strategy", "random_global", "--scope", "layerwise"], "scope='global'"),
        (["lottery", "--levels", "1", "--strategy", "snip"], "scores with training data"),
        (["lottery", "--levels", "-1"], "levels must be >= 0"),
        (["lottery", "--levels", "1", "--rewind", "100ep"], "after the end of training"),
        (["lottery", "--levels", "1", "--controls", "reinti"], "Did you mean 'reinit'"),
        (["lottery", "--levels", "2", "--seeds", "1,2", "--ignore", "nosuch"], "matches no prunable tensor"),
        (["train", "--train.steps=0it"], "trains nothing"),
        (["train", "--save-steps", "100ep"], "after the end of training"),
        (["train", "--seeds", "1,2", "--save-steps", "100ep"], "after the end of training"),
        (["prune", "--strategy", "snip", "--density", "0.1", "--prune.ignore=nosuch"], "ignore pattern 'nosuch'"),
        (["prune", "--strategy", "random_global", "--density", "0.1", "--scope", "layerwise"], "scope='global'"),
        (["prune", "--strategy", "synflow", "--density", "0.1", "--prune.options={tmeperature: 1}"], "no option"),
        (
            [
                "prune",
                "--strategy",
                "magnitude",
                "--density",
                "0.1,0.2",
                "--experiment",
                "multishot",
                "--round-steps",
                "100ep",
            ],
            "--round-steps 100ep",
        ),
    ],
)
def test_bad_input_fails_before_anything_trains_or_is_stored(args, message, home, capsys):
    command, rest = args[0], args[1:]
    steps = [a for a in DIGITS if not a.startswith("--train.steps")] if "--train.steps=0it" in rest else DIGITS
    code, _, err = run_cli(capsys, command, *steps, *rest)
    assert code == 2 and message in one_error_line(err)
    assert "step 0/" not in err and "level 0" not in err  # nothing trained
    assert stored_runs(home) == []


def test_a_branch_from_an_unsaved_step_fails_before_training(home, capsys):
    code, out, _ = run_cli(capsys, "train", *DIGITS, "--json")
    parent = json.loads(out)["run_id"]
    code, _, err = run_cli(capsys, "branch", parent, "oneshot", "--prune-fraction", "0.5", "--prune-step", "5it")
    assert code == 2 and "--prune-step: run" in one_error_line(err) and "(saved: 0it, 23it)" in err
    code, _, err = run_cli(capsys, "branch", parent, "oneshot", "--prune-fraction", "0.5", "--ignore", "nosuch")
    assert code == 2 and "ignore pattern 'nosuch'" in one_error_line(err)
    assert stored_runs(home) == [parent]


# smaller points ----------------------------------------------------------------------------------------
def test_show_never_prints_none_and_runs_json_has_every_key_for_unfinished_runs(home, capsys):
    code, out, _ = run_cli(capsys, "train", *DIGITS, "--json")
    run_id = json.loads(out)["run_id"]
    code, out, _ = run_cli(capsys, "show", run_id)
    assert code == 0 and "None" not in out and "resumed_from     -" in out
    RunStore(home).create("train-000000000000", (home / run_id / "spec.yaml").read_text())
    code, out, _ = run_cli(capsys, "runs", "--json")
    rows = {row["run_id"]: row for row in json.loads(out)}
    keys = {"run_id", "kind", "status", "test_accuracy", "density", "wall_seconds", "model", "dataset"}
    assert set(rows[run_id]) == keys and set(rows["train-000000000000"]) == keys
    unfinished = rows["train-000000000000"]
    assert unfinished["status"] == "unfinished" and unfinished["test_accuracy"] is None


def test_a_fresh_lottery_does_not_say_it_reuses_the_levels_it_just_trained(capsys):
    code, _, err = run_cli(capsys, "lottery", *DIGITS, "--levels", "2")
    assert code == 0 and "reusing" not in err
    code, _, err = run_cli(capsys, "lottery", *DIGITS, "--levels", "2")
    assert code == 0 and "reusing finished run lottery-" in err


def test_the_stored_spec_of_a_train_run_has_no_pruning_section(home, capsys):
    code, out, _ = run_cli(capsys, "train", *DIGITS, "--prune.fraction=0.5", "--json")
    stored = yaml.safe_load((home / json.loads(out)["run_id"] / "spec.yaml").read_text())
    assert "prune" not in stored and "supermask" not in stored


def test_a_config_can_come_from_a_pipe(home, capsys):
    read, write = os.pipe()
    os.write(write, b"seed: 7\n")
    os.close(write)
    try:
        code, out, err = run_cli(capsys, "train", *DIGITS, "--config", f"/dev/fd/{read}", "--json")
    finally:
        os.close(read)
    assert code == 0, err
    assert json.loads(out)["seed"] == 7


def test_report_names_its_default_directory_after_the_report(tmp_path, monkeypatch, capsys):
    code, out, _ = run_cli(capsys, "train", *DIGITS, "--json")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "report", "--json")
    assert code == 0 and all(Path(p).parent == Path("prunelab-report-all") for p in json.loads(out)["plots"])
    code, out, _ = run_cli(capsys, "report", "--kind", "train", "--title", "LeNet on digits!", "--json")
    assert code == 0 and (tmp_path / "prunelab-report-lenet-on-digits" / "accuracy_vs_density.png").is_file()


def test_report_says_what_each_config_label_stands_for(tmp_path, capsys):
    for lr in ("0.05", "0.02"):
        code, _, err = run_cli(
            capsys, "prune", *DIGITS, "--strategy", "magnitude", "--density", "0.5", f"--train.lr={lr}"
        )
        assert code == 0, err
    code, out, _ = run_cli(capsys, "report", "--out", tmp_path / "report", "--json")
    report = json.loads(out)
    assert {row["method"] for row in report["rows"]} == {"magnitude [config 1]", "magnitude [config 2]"}
    assert [(c["method"], c["settings"]) for c in report["configs"]] == [
        ("magnitude [config 1]", {"train.lr": 0.02}),
        ("magnitude [config 2]", {"train.lr": 0.05}),
    ]
    code, out, _ = run_cli(capsys, "report", "--out", tmp_path / "report")
    assert "magnitude [config 1]: train.lr=0.02 (1 run(s): prune-" in out


def test_a_full_disk_outside_a_checkpoint_is_one_line(monkeypatch, home, capsys):
    from prunelab.store.runs import Run

    def full(self, summary):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.summary_path))

    monkeypatch.setattr(Run, "write_summary", full)
    code, _, err = run_cli(capsys, "train", *DIGITS)
    line = one_error_line(err)
    assert code == 2 and "no space left on device" in line and "summary.json" in line and "re-run" in line


def test_a_worker_reports_whether_a_trial_failed_with_a_user_error(home):
    """What travels back from a worker process, a Ray task or a Slurm job: the flag and the bare message."""
    from prunelab.experiments.executors import execute_unit
    from prunelab.experiments.trial import Trial
    from prunelab.specs import load_spec

    spec = load_spec(
        "digits_lenet_300_100",
        None,
        {"model.name": "lenet_32_16", "train.steps": "1ep", "train.eval_every": "none", "train.lr": "1e9"},
    )
    [outcome] = execute_unit({"trials": [Trial("train", spec).to_data()], "store": str(home), "quiet": True})
    assert not outcome["ok"] and outcome["user_error"]
    assert outcome["error"].startswith("TrainingDiverged: ") and outcome["message"].startswith("training diverged")
    assert stored_runs(home) == []


def test_permission_denied_on_the_store_is_one_line(monkeypatch, home, capsys):
    """A store the user may not write (simulated: as root, chmod does not stop writes)."""

    def refuse(self, run_id, spec_yaml, *, extra=None):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self.root / run_id))

    monkeypatch.setattr(RunStore, "create", refuse)
    code, _, err = run_cli(capsys, "train", *DIGITS)
    line = one_error_line(err)
    assert code == 2 and "permission denied" in line and str(home) in line and "--home" in line
