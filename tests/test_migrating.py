"""docs/migrating.md runs: every prunelab command it gives for a reference command works.

The guide marks each reference command with ``<!-- migrate: ID -->`` (``ID none`` when prunelab has no
equivalent), followed by a ``text`` block with the reference command line(s) ("theirs") and ``bash`` or
``python`` blocks with prunelab's ("ours"). Each codebase's commands run here in document order, in-process
through ``prunelab.cli.main.main``, at digits scale: the paper-scale data, model and training length are
replaced by overrides (digits, LeNet-300-100 or Conv-2, two iterations) and the saved steps that branches
read are mapped to small ones. Every flag, preset, strategy and value the guide writes is still parsed and
used, so renaming a flag or a preset fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from prunelab.cli.main import main
from prunelab.models import build_model
from prunelab.specs import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "migrating.md"

#: reference command lines mapped per codebase section (a README's commands and the variants it describes)
EXPECTED_COMMANDS = {
    "Random-Pruning-NTK (OpenLTH)": 6,
    "NTK-SAP": 16,
    '"Missing the Mark" (OpenLTH fork)': 21,
    "iterand": 9,
    "lth (Lottery Ticket replication)": 8,
}
#: the entries without a prunelab command (set-up steps), each saying why in the guide
WITHOUT_EQUIVALENT = {"rpn-install", "ntksap-install", "iterand-install"}

SPEC_COMMANDS = ("train", "lottery", "prune", "supermask")
EXECUTOR_COMMANDS = (*SPEC_COMMANDS, "run")
#: overrides that shrink any paper-scale spec to digits and two iterations (a documented value is replaced)
SHRINK = {
    "dataset.name": "digits",
    "dataset.normalization": "dataset",
    "dataset.mean": "",
    "dataset.std": "",
    "dataset.crop_padding": "none",
    "dataset.image_size": "none",
    "model.name": "lenet_300_100",
    "model.conv_bias": "none",
    "train.steps": "2it",
    "train.batch_size": "32",
    "train.milestones": "",
    "train.warmup": "0it",
    "train.eval_every": "none",
}
#: a parent trained this long has every step below saved (branches score and start at these)
PARENT_STEPS = "4it"
STEP_MAP = {"1000it": "1it", "2000it": "2it", "3000it": "3it", "5000it": "1it", "160ep": "4it", "1ep": "1it"}
#: one grid point of each experiment-file experiment the guide runs (same selection for run and results)
GRID_POINT = {
    "conv6_lambda": ["--seed=1", "--supermask.rerand_lambda=0.1"],
    "conv6_weights": ["--seed=1", "--model.width=0.5"],
}
#: a list of pruning targets runs its first two values
TARGET_FLAGS = ("--density", "--sparsity", "--compression")
#: the Python example at digits scale: (what the guide writes, what runs here)
PYTHON_SHRINK = [("784", "64"), ('"mnist"', '"digits"'), ('"1200it"', '"2it"'), ("levels=15", "levels=1")]


@dataclass
class Entry:
    id: str
    section: str
    theirs: list[str]
    ours: list[tuple[str, str]]  # (language, code)
    without_equivalent: bool
    notes: str


def _joined_lines(code: str) -> list[str]:
    return [line.strip() for line in code.replace("\\\n", " ").splitlines() if line.strip()]


def guide_entries() -> list[Entry]:
    text = GUIDE.read_text(encoding="utf-8")
    markers = list(re.finditer(r"<!-- migrate: ([\w-]+)( none)? -->", text))
    entries = []
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        chunk = text[marker.end() : end].split("\n## ", 1)[0]
        section = re.findall(r"^## (.+)$", text[: marker.start()], re.MULTILINE)[-1]
        blocks = re.findall(r"^```(\w+)[^\n]*\n(.*?)^```", chunk, re.DOTALL | re.MULTILINE)
        assert blocks and blocks[0][0] == "text", f"{marker.group(1)}: the reference command comes first, as text"
        entries.append(
            Entry(
                marker.group(1),
                section,
                _joined_lines(blocks[0][1]),
                [(lang, code) for lang, code in blocks[1:] if lang in ("bash", "python")],
                bool(marker.group(2)),
                chunk,
            )
        )
    return entries


ENTRIES = guide_entries()


def test_the_guide_maps_every_reference_command():
    counts: dict[str, int] = {}
    for entry in ENTRIES:
        counts[entry.section] = counts.get(entry.section, 0) + len(entry.theirs)
        assert entry.without_equivalent or entry.ours, f"{entry.id} has no prunelab command"
        assert not (entry.without_equivalent and entry.ours), f"{entry.id} is marked none but gives a command"
    assert counts == EXPECTED_COMMANDS
    assert {e.id for e in ENTRIES if e.without_equivalent} == WITHOUT_EQUIVALENT
    assert len({e.id for e in ENTRIES}) == len(ENTRIES)


def _map_steps(token: str) -> str:
    return re.sub(r"(?<![\w.])(\d+(?:it|ep))\b", lambda m: STEP_MAP.get(m.group(1), m.group(1)), token)


def _shrunk(argv: list[str], *, parent: bool) -> list[str]:
    """The documented arguments at digits scale: SHRINK replaces or adds spec values, saved steps get small."""
    command = argv[0]
    shrink = dict(SHRINK)
    if any(token.startswith("cifar_conv") for token in argv):
        shrink["model.name"] = "conv2"  # keeps the Conv-N presets' per-layer rate patterns meaningful
    if parent:
        shrink["train.steps"] = PARENT_STEPS
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token.startswith("configs/"):
            token = str(ROOT / token)
        key = token[2:].split("=", 1)[0]
        if command in (*SPEC_COMMANDS, "run", "results") and key in shrink:
            value = token.split("=", 1)[1] if "=" in token else next(tokens)
            if key == "model.name":
                _check_model(value)  # the guide's architecture exists, though a small one trains here
            token = f"--{key}={shrink.pop(key)}"
        elif token in TARGET_FLAGS and command == "prune":
            out += [token, ",".join(next(tokens).split(",")[:2])]
            continue
        elif token == "--device":
            next(tokens)
            out += ["--device", "cpu"]  # the guide's --device cuda, on a machine without one
            continue
        out.append(_map_steps(token))
    lists_experiments = command == "run" and len([t for t in argv[1:] if not t.startswith("-")]) == 1
    if command in (*SPEC_COMMANDS, "run", "results") and not lists_experiments:
        out += [f"--{key}={value}" for key, value in shrink.items()]
        names = [t for t in argv[1:] if not t.startswith("-")]
        if command in ("run", "results"):
            out += GRID_POINT.get(names[-1], [])
    if command == "lottery":
        out += ["--levels", "1"]
    if command in EXECUTOR_COMMANDS:
        out += ["--workers", "1"]
    return [*out, "--json"]


def _check_model(name: str) -> None:
    build_model(ModelSpec(name=name), input_shape=(3, 64, 64), num_classes=10, seed=0)


class Shell:
    """Runs the guide's bash lines: ``prunelab ...`` and ``NAME=$(prunelab ... --json | python -c ...)``."""

    def __init__(self, capsys, home: Path):
        self.capsys, self.home, self.vars = capsys, home, {}

    def run(self, line: str, entry: str) -> None:
        assignment = re.fullmatch(r"(\w+)=\$\((prunelab .*?) \| python -c .*\)", line)
        words = shlex.split(assignment.group(2) if assignment else line, comments=True)
        assert words[0] == "prunelab", f"{entry}: not a prunelab command: {line}"
        argv = [self.vars.get(w[1:], w) if w.startswith("$") else w for w in words[1:]]
        if "--help" in argv:
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            assert exit_info.value.code == 0, f"{entry}: {line}"
            assert "usage: prunelab" in self.capsys.readouterr().out
            return
        argv = _shrunk(argv, parent=bool(assignment))
        self.capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as rejected:  # argparse refused an argument (a renamed or removed flag)
            code = rejected.code
        out, err = self.capsys.readouterr()
        assert code == 0, f"{entry}: {line}\nran as: prunelab {shlex.join(argv)}\n{err[-3000:]}"
        result = json.loads(out)
        self.check_stored(argv, result, entry)
        if assignment:
            self.vars[assignment.group(1)] = result["run_id"]

    def check_stored(self, argv: list[str], result, entry: str) -> None:
        home = Path(argv[argv.index("--home") + 1]) if "--home" in argv else self.home
        if argv[0] == "results":
            assert result["rows"] and result["found"] == result["total"], entry
            return
        if "--dry-run" in argv:  # a note's claim that an experiment-file command is the run just made
            assert result and {row["state"] for row in result} == {"stored"}, f"{entry}: {result}"
            return
        if argv[0] == "run" and isinstance(result, list) and result and "experiment" in result[0]:
            assert {row["experiment"] for row in result} >= {"conv6_lambda", "conv6_weights"}, entry
            return
        rows = result if isinstance(result, list) else [result]
        assert rows, f"{entry}: no result"
        for row in rows:
            assert row.get("status", "finished") != "failed", f"{entry}: {row}"
            assert (home / row["run_id"] / "summary.json").is_file(), f"{entry}: {row['run_id']} is not stored"


def _run_section(section: str, capsys, home: Path) -> None:
    shell = Shell(capsys, home)
    for entry in (e for e in ENTRIES if e.section == section):
        for lang, code in entry.ours:
            if lang == "bash":
                for line in _joined_lines(code):
                    shell.run(line, entry.id)
            else:
                _run_python(code, entry.id)
        for same in re.findall(r"`prunelab (run configs/[^`]+)` is the same run", entry.notes):
            shell.run(f"prunelab {same} --dry-run", entry.id)


def _run_python(code: str, entry: str) -> None:
    for written, small in PYTHON_SHRINK:
        assert written in code, f"{entry}: the example no longer has {written!r}; update PYTHON_SHRINK"
        code = code.replace(written, small)
    namespace: dict = {"__name__": "__migrating__"}
    exec(compile(code, f"migrating.md:{entry}", "exec"), namespace)
    assert len(namespace["result"].levels) == 2  # the dense level and one pruned level


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_guide_links_resolve():
    for page, anchor in re.findall(r"\]\(([\w./]*?\.md)?#([\w-]+)\)", GUIDE.read_text(encoding="utf-8")):
        target = (GUIDE.parent / page) if page else GUIDE
        headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.MULTILINE)
        assert anchor in {_slug(h) for h in headings}, f"{page or 'migrating.md'}#{anchor}"
    for page in re.findall(r"\]\(([\w./]+\.md)\)", GUIDE.read_text(encoding="utf-8")):
        assert (GUIDE.parent / page).is_file(), page


def test_the_experiment_files_the_notes_name_plan_their_trials(capsys, home):
    """The notes' ``prunelab run configs/...`` commands (one grid point or a whole grid) resolve: a dry run."""
    commands = re.findall(r"`prunelab (run configs/[^`]+)`", GUIDE.read_text(encoding="utf-8"))
    assert len(commands) >= 9
    for command in commands:
        argv = shlex.split(command)
        argv[1] = str(ROOT / argv[1])
        assert main([*argv, "--dry-run", "--json"]) == 0, command
        assert json.loads(capsys.readouterr().out), command


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the guide's relative --home/--data-root land in the test's directory
    return tmp_path


@pytest.mark.parametrize(
    "section", list(EXPECTED_COMMANDS), ids=["random_pruning_ntk", "ntk_sap", "missing_the_mark", "iterand", "lth"]
)
def test_translated_commands_run(section, workdir, capsys, home):
    """One codebase's commands in document order (the branches need the parent trained before them)."""
    _run_section(section, capsys, home)
