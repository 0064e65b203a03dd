"""Supermask runs in the store: the command, what a run holds, names, validation, and kill -9 resume of
an IteRand run to bit-identical weights and scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import checkpoint_step, subprocess_environment
from prunelab.cli.main import main
from prunelab.experiments.supermask import run_supermask, supermask_network, supermask_run_id
from prunelab.experiments.sweeps import supermask_sweep
from prunelab.experiments.workbench import Workbench
from prunelab.masks import Mask
from prunelab.specs import SpecError, load_spec
from prunelab.store import RunStore
from prunelab.supermask import supermask_masks

QUICK = {"train.steps": "2ep", "train.progress": "false", "train.device": "cpu"}


def spec(**overrides):
    return load_spec("digits_lenet_300_100_supermask", overrides={**QUICK, **overrides})


def test_a_run_stores_the_learned_mask_and_the_supermask_state(home):
    s = spec(**{"supermask.density": "0.3"})
    summary = run_supermask(s)
    run = RunStore().run(summary["run_id"])
    assert summary["run_id"] == supermask_run_id(s) and summary["method"] == "edge-popup"
    mask = Mask.load(run.mask_path)
    assert list(mask) == ["hidden.0.weight", "hidden.1.weight", "fc.weight"]
    for name, keep in mask.items():  # exact per-layer counts: round_half_up(0.3 * n)
        assert int(keep.sum()) == int(0.3 * keep.numel() + 0.5), name
    assert summary["density"] == mask.density and summary["rerandomizations"] == 0
    # the final state is the supermask network's: frozen weights, learned scores; its mask is the stored one
    state = load_file(str(run.weights_path(summary["final_step"])))
    assert {"hidden.0.weight", "hidden.0.scores", "hidden.0.tie_break"} <= set(state)
    network = supermask_network(s, Workbench.from_spec(s))
    network.load_state_dict(state)
    assert supermask_masks(network) == mask
    initial = load_file(str(run.weights_path(0)))
    assert torch.equal(initial["hidden.0.weight"], state["hidden.0.weight"])  # weights never trained
    assert not torch.equal(initial["hidden.0.scores"], state["hidden.0.scores"])
    assert summary["test_accuracy"] > 0.5  # 10 classes: far above chance after two epochs on untrained weights
    assert run_supermask(s) == summary  # stored: returned at once


def test_iterand_rerandomises_only_pruned_weights_and_counts_the_draws(home):
    s = spec(**{"supermask.method": "iterand", "supermask.rerand_freq": "5it", "supermask.rerand_lambda": "0.5"})
    summary = run_supermask(s)
    run = RunStore().run(summary["run_id"])
    assert summary["rerandomizations"] == 46 // 5 and summary["rerand_lambda"] == 0.5
    initial, final = load_file(str(run.weights_path(0))), load_file(str(run.weights_path(46)))
    changed = initial["hidden.0.weight"] != final["hidden.0.weight"]
    assert changed.any()
    assert summary["method"] == "iterand" and summary["rerand_freq"] == "5it"


def test_names_ignore_what_a_run_does_not_read():
    base = spec()
    assert supermask_run_id(base) == supermask_run_id(
        load_spec("digits_lenet_300_100_supermask", overrides={**QUICK, "prune.fraction": "0.5"})
    )
    # edge-popup never re-draws: the period a preset carries for IteRand does not rename it
    assert supermask_run_id(base) == supermask_run_id(spec(**{"supermask.rerand_freq": "9it"}))
    assert supermask_run_id(base) != supermask_run_id(spec(**{"supermask.method": "iterand"}))
    assert supermask_run_id(base) != supermask_run_id(spec(**{"supermask.density": "0.3"}))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model.init": "xavier_normal"}, "not a supermask weight law"),
        ({"model.bias_init": "pytorch_default"}, "frozen at zero"),
        ({"model.init": "scaled_signed_constant", "supermask.scale_fan": "kept_fraction"}, "already scales"),
        ({"supermask.rerand_lambda": "0.2"}, "edge-popup does not re-randomise"),
        ({"supermask.density": "0"}, "kept fraction"),
    ],
)
def test_bad_settings_fail_before_anything_is_stored(home, overrides, message):
    with pytest.raises(SpecError, match=message):
        supermask_sweep(spec(**overrides), densities=[0.5], seeds=[0])
    assert not home.exists() or not any(home.iterdir())


def test_the_command_sweeps_densities_with_the_weight_trained_baseline(home, capsys):
    code = main(
        [
            "supermask",
            "--preset",
            "digits_lenet_300_100_supermask",
            "--train.steps=1ep",
            "--no-progress",
            "--density",
            "0.3,0.5",
            "--baseline",
            "--json",
            "--plot",
            str(home / "plots"),
        ]
    )
    assert code == 0
    summaries = json.loads(capsys.readouterr().out)
    assert [s["kind"] for s in summaries] == ["supermask", "supermask", "train"]
    assert (home / "plots" / "accuracy_vs_density.png").read_bytes()[:4] == b"\x89PNG"
    assert not (home / "plots" / "layer_densities.png").exists()  # supermask sweeps plot accuracy only
    assert [round(s["density"], 4) for s in summaries] == [0.3, 0.5, 1.0]
    assert main(["report", "--home", str(home), "--out", str(home / "report"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {r["method"] for r in rows} == {"edge-popup", "train"}


# kill -9 ------------------------------------------------------------------------------------------------
COMMAND = [
    sys.executable,
    "-m",
    "prunelab",
    "supermask",
    "--preset",
    "digits_lenet_300_100_supermask",
    "--method",
    "iterand",
    "--rerand-freq",
    "7it",
    "--rerand-lambda",
    "0.3",
    "--train.steps=6ep",
    "--train.checkpoint_every=1ep",
    "--no-progress",
    "--json",
]
ITERATIONS_PER_EPOCH = 23


def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_iterand_run(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # the uninterrupted reference runs alongside the victim
    reference = subprocess.Popen(
        COMMAND, env=subprocess_environment(clean), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    victim = subprocess.Popen(
        COMMAND, env=subprocess_environment(killed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    try:
        while (checkpoint_step(killed, "supermask-*") or 0) < 2 * ITERATIONS_PER_EPOCH:
            assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait(timeout=30)
    killed_at = checkpoint_step(killed, "supermask-*")
    assert killed_at is not None and killed_at < 6 * ITERATIONS_PER_EPOCH, "finished before it could be killed"
    resumed = subprocess.run(COMMAND, env=subprocess_environment(killed), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    ours, theirs = json.loads(resumed.stdout), json.loads(out)
    assert ours["resumed_from"] == killed_at and ours["run_id"] == theirs["run_id"]
    assert ours["rerandomizations"] == theirs["rerandomizations"] == 6 * ITERATIONS_PER_EPOCH // 7
    final = 6 * ITERATIONS_PER_EPOCH
    a = load_file(str(killed / ours["run_id"] / "weights" / f"step_{final}.safetensors"))
    b = load_file(str(clean / theirs["run_id"] / "weights" / f"step_{final}.safetensors"))
    assert a.keys() == b.keys() and any(k.endswith("scores") for k in a)
    for key in b:
        assert torch.equal(a[key], b[key]), key  # frozen-but-re-drawn weights and the learned scores
    assert ours["test_accuracy"] == theirs["test_accuracy"]
