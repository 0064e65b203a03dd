"""The command line starts without importing torch (or pydantic) when a command does not need them,
and the lazily re-exported public API behaves like the eager one did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "pydantic", "numpy", "matplotlib", "prunelab.experiments.study", "prunelab.training")


def _imported_after(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter; which of HEAVY it imported, and its exit code."""
    probe = (
        "import json, sys\n"
        "code = 0\n"
        "try:\n" + "".join(f"    {line}\n" for line in code.splitlines()) + "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "sys.__stdout__.write('\\n' + "
        f"json.dumps({{'code': code, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC, "PRUNELAB_HOME": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["lottery", "--help"],
        ["prune", "--help"],
        ["supermask", "--help"],
        ["ntk", "--help"],
        ["runs"],
        ["presets"],
    ],
)
def test_commands_that_touch_no_tensor_do_not_import_torch(argv, tmp_path):
    result = _imported_after(f"from prunelab.cli.main import main\ncode = main({argv!r})", tmp_path)
    assert result["code"] == 0
    assert result["heavy"] == []


def test_listing_stored_runs_does_not_import_torch(tmp_path):
    run = tmp_path / "runs" / "train-0123456789ab"
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text("model: {name: lenet_300_100}\ndataset: {name: mnist10k}\n")
    (run / "summary.json").write_text(
        json.dumps(
            {
                "run_id": run.name,
                "kind": "train",
                "test_accuracy": 0.9,
                "test_loss": 0.3,
                "density": 1.0,
                "wall_seconds": 2.0,
            }
        )
    )
    code = (
        "import io, contextlib\nfrom prunelab.cli.main import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n    code = main(['runs'])\nassert 'lenet_300_100' in out.getvalue()"
    )
    result = _imported_after(code, tmp_path)
    assert result["code"] == 0
    assert set(result["heavy"]) <= {"pydantic"}  # the summary is checked against its schema


def test_importing_the_package_and_the_cli_imports_no_torch(tmp_path):
    assert _imported_after("import prunelab\nimport prunelab.cli.main", tmp_path)["heavy"] == []


def test_specs_whose_values_already_fit_are_built_without_pydantic(tmp_path):
    code = "from prunelab.specs import load_spec\nload_spec('mnist10k_lenet_300_100', None, {'train.steps': '400it'})"
    assert _imported_after(code, tmp_path)["heavy"] == []


def test_values_that_need_coercion_are_still_coerced():
    from prunelab.specs import SpecError, TrainingSpec, from_dict

    spec = from_dict(TrainingSpec, {"lr": 1, "betas": [1, 0.5], "milestones": ["80ep"], "data_order_seed": None})
    assert type(spec.lr) is float and spec.betas == (1.0, 0.5) and type(spec.betas[0]) is float
    assert spec.milestones == ("80ep",) and spec.data_order_seed is None
    with pytest.raises(SpecError, match="train.lr"):
        from_dict(TrainingSpec, {"lr": [1]}, where="train")


def test_help_still_lists_the_choices(capsys):
    from prunelab.cli.main import main

    for argv, names in (
        (["lottery", "--help"], ("reinit", "shuffle_global")),
        (["prune", "--help"], ("singleshot", "multishot", "'all'")),
        (["train", "--help"], ("local", "ray", "slurm")),
        (["ntk", "--help"], ("64,128,256", "per_layer")),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert all(name in out for name in names), (argv, out)


def test_the_public_api_is_importable_by_name():
    import prunelab
    import prunelab.analysis

    for package in (prunelab, prunelab.analysis):  # __all__ is spelt out for static tools; it must match the table
        assert sorted(package.__all__) == sorted(package._MODULE_OF)

    for name in prunelab.__all__:
        assert getattr(prunelab, name) is not None
        assert name in dir(prunelab)
    from prunelab import Mask, RunStore, train  # noqa: F401  (the usual form)
    from prunelab.masks import Mask as Direct

    assert Mask is Direct
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        prunelab.no_such_name  # noqa: B018
