"""``prunelab report``: the standard figures, the self-contained HTML page (checked as text here and
rendered by headless Chromium in the ``browser`` tests), the CSV/Parquet export and the command's flags,
over one tiny study of every kind built once for the module."""

from __future__ import annotations

import base64
import csv
import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import pytest
import yaml

from prunelab.analysis.report_export import EXPORT_COLUMNS
from prunelab.cli.main import main

STUDY = """
pai:
  kind: prune
  preset: digits_lenet_300_100
  model: &model {name: lenet_32_16}
  train: &train {steps: 20it, eval_every: none}
  density: 0.5
  grid:
    prune.strategy: [magnitude, synflow]
    seed: [1, 2]
lottery:
  kind: lottery
  preset: digits_lenet_300_100
  model: *model
  train: *train
  levels: 1
  controls: [reinit]
  grid: {seed: [1, 2]}
masks:
  kind: supermask
  preset: digits_lenet_300_100_supermask
  model: *model
  train: *train
  grid:
    supermask.method: [edge-popup, iterand]
    seed: [1, 2]
dense:
  kind: train
  preset: digits_lenet_300_100
  model: *model
  train: *train
  grid: {seed: [1, 2]}
"""
EXPERIMENTS = ("pai", "lottery", "masks", "dense")
ALL_FIGURES = ["accuracy_vs_density.png", "lottery_levels.png", "supermask_density.png", "layer_densities.png"]
PNG = b"\x89PNG\r\n\x1a\n"


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A store holding every experiment of :data:`STUDY` (16 tiny trainings), and the study file."""
    root = tmp_path_factory.mktemp("study")
    file = root / "study.yaml"
    file.write_text(STUDY)
    home = root / "home"
    for name in EXPERIMENTS:
        assert main(["run", str(file), name, "--home", str(home), "--workers", "1", "--no-progress", "--json"]) == 0
    return file, home


@pytest.fixture
def store(study, tmp_path):
    """A copy of the study's store that a test may change."""
    home = tmp_path / "store"
    shutil.copytree(study[1], home)
    return home


def report_json(capsys, home, out, *argv):
    code, stdout, err = cli(capsys, "report", "--home", home, "--out", out, *argv, "--json")
    assert code == 0, err
    return json.loads(stdout)


class _Page(HTMLParser):
    """The parts of the report page the tests look at: images, table rows, details elements and the
    attributes that could load something from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.details: list[str] = []
        self.rows: list[list[str]] = []
        self.urls: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        links = [attrs[key] for key in ("src", "href") if key in attrs]
        self.urls += [link for link in links if not link.startswith(("#", "data:"))]
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "details":
            self.details.append(attrs["id"])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_the_html_page_embeds_every_figure_the_table_and_every_runs_spec(study, tmp_path, capsys):
    file, home = study
    out = tmp_path / "report"
    code, table, err = cli(capsys, "report", "--home", home, "--out", out, "--title", "tiny study")
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == sorted(ALL_FIGURES)
    page = parse_page(out / "report.html")
    # every figure is in the page as a data URI holding exactly the PNG file's bytes; nothing is fetched
    assert len(page.images) == len(ALL_FIGURES)
    embedded = [base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in page.images]
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert sorted(embedded) == sorted((out / name).read_bytes() for name in ALL_FIGURES)
    assert page.urls == []
    text = (out / "report.html").read_text()
    assert "<link" not in text and not re.search(r"<script[^>]+src=", text)
    # the table: the same cells as the command's own table, row by row
    printed = [re.split(r"\s{2,}", line.strip()) for line in table.split("\n\n")[0].splitlines()[2:]]
    html_rows = [row[:5] for row in page.rows if len(row) == 6][1:]
    assert html_rows == printed and len(printed) == 8  # IMP x2, IMP reinit, 2 masks, 2 strategies, train
    # every run: a details element (the target of the table's links) with its spec.yaml, escaped
    run_ids = sorted(p.name for p in home.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert sorted(page.details) == [f"run-{run_id}" for run_id in run_ids]
    for run_id in run_ids:
        assert html.escape((home / run_id / "spec.yaml").read_text(), quote=False) in text
        assert f'href="#run-{run_id}"' in text


def test_odd_run_names_and_titles_are_escaped(store, tmp_path, capsys):
    prune = next(p for p in sorted(store.iterdir()) if p.name.startswith("prune-"))
    odd = 'prune-<img src=x onerror="alert(1)">&\'q'
    prune.rename(store / odd)
    title = '<script>alert("title")</script> & co'
    out = tmp_path / "report"
    report = report_json(capsys, store, out, "--title", title)
    assert any(odd in row["run_ids"] for row in report["rows"])
    text = (out / "report.html").read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert str(markupsafe.escape(title)) in text and str(markupsafe.escape(odd)) in text
    assert "&lt;script&gt;alert(" in text and "&lt;img src=x onerror=" in text
    page = parse_page(out / "report.html")
    assert f"run-{odd}" in page.details and len(page.images) == len(ALL_FIGURES)


def test_the_csv_has_one_row_per_network(study, tmp_path, capsys):
    file, home = study
    out = tmp_path / "report"
    report = report_json(capsys, home, out, "--format", "csv")
    assert report["csv"] == str(out / "metrics.csv") and report["html"] is None and report["plots"] == []
    with open(out / "metrics.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == EXPORT_COLUMNS
        rows = list(reader)
    assert len(rows) == 4 + 2 * (2 + 1) + 4 + 2  # prune, lottery levels 0 and 1 and level 1's reinit, masks, dense
    assert {row["kind"] for row in rows} == {"prune", "lottery", "supermask", "train"}
    for lottery in (p for p in home.iterdir() if p.name.startswith("lottery-")):
        summary = json.loads((lottery / "summary.json").read_text())
        mine = {(row["stage"], row["control"]): row for row in rows if row["run_id"] == lottery.name}
        assert set(mine) == {("level_0", ""), ("level_1", ""), ("level_1/reinit", "reinit")}
        level = summary["levels"][1]
        assert float(mine[("level_1", "")]["test_accuracy"]) == level["test_accuracy"]
        assert float(mine[("level_1/reinit", "reinit")]["test_accuracy"]) == level["reinit"]
        assert mine[("level_1/reinit", "reinit")]["method"] == "IMP reinit"
        assert mine[("level_1", "")]["seed"] == str(summary["seed"])
        stage = json.loads((lottery / "level_1" / "summary.json").read_text())
        assert json.loads(mine[("level_1", "")]["layer_densities"]) == stage["layer_densities"]
    prunes = [row for row in rows if row["kind"] == "prune"]
    assert sorted((row["strategy"], row["seed"]) for row in prunes) == [
        ("magnitude", "1"),
        ("magnitude", "2"),
        ("synflow", "1"),
        ("synflow", "2"),
    ]
    assert all(row["target_density"] == "0.5" and float(row["density"]) <= 1 for row in prunes)
    masks = {row["method"] for row in rows if row["kind"] == "supermask"}
    assert masks == {"edge-popup", "iterand (lambda=0.1)"}


def test_parquet_holds_the_csv_table(study, tmp_path, capsys):
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "report"
    report_json(capsys, study[1], out, "--format", "csv", "--parquet")
    frame = pandas.read_parquet(out / "metrics.parquet")
    assert list(frame.columns) == list(EXPORT_COLUMNS) and len(frame) == 16
    table = pandas.read_csv(out / "metrics.csv")
    assert frame["test_accuracy"].tolist() == table["test_accuracy"].tolist()
    assert str(frame["seed"].dtype) == "Int64" and frame["level"].isna().sum() == 10


def test_parquet_without_pandas_fails_clearly_and_writes_nothing(study, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # an import of it now fails
    out = tmp_path / "report"
    code, stdout, err = cli(capsys, "report", "--home", study[1], "--out", out, "--format", "png,parquet")
    assert code == 2 and stdout == "" and "prunelab[parquet]" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_format_flags_choose_the_files(study, tmp_path, capsys):
    home = study[1]
    only_html = report_json(capsys, home, tmp_path / "a", "--format", "html")
    assert only_html["plots"] == [] and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["report.html"]
    assert len(parse_page(tmp_path / "a" / "report.html").images) == len(ALL_FIGURES)  # embedded all the same
    report_json(capsys, home, tmp_path / "b", "--no-html", "--csv")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted([*ALL_FIGURES, "metrics.csv"])
    default = report_json(capsys, home, tmp_path / "c")
    assert default["html"] == str(tmp_path / "c" / "report.html") and len(default["plots"]) == len(ALL_FIGURES)
    assert default["csv"] is None and not (tmp_path / "c" / "metrics.csv").exists()
    code, _, err = cli(capsys, "report", "--home", home, "--out", tmp_path / "d", "--format", "png,pdf")
    assert code == 2 and "--format takes a comma-separated list of png, html, csv, parquet; got 'png,pdf'" in err


def test_a_study_file_chooses_its_experiments_runs_and_figures(study, tmp_path, capsys):
    file, home = study
    report = report_json(capsys, home, tmp_path / "pai", file, "pai", "--csv")
    assert {row["method"] for row in report["rows"]} == {"magnitude", "synflow"}
    assert sorted(Path(p).name for p in report["plots"]) == ["accuracy_vs_density.png", "layer_densities.png"]
    report = report_json(capsys, home, tmp_path / "masks", file, "masks", "dense")
    assert {row["method"] for row in report["rows"]} == {"edge-popup", "iterand (lambda=0.1)", "train"}
    assert "supermask_density.png" in {Path(p).name for p in report["plots"]}
    assert "lottery_levels.png" not in {Path(p).name for p in report["plots"]}
    everything = report_json(capsys, home, tmp_path / "all", file)  # no names: every experiment of the file
    assert sorted(Path(p).name for p in everything["plots"]) == sorted(ALL_FIGURES)
    assert sum(row["seeds"] for row in everything["rows"]) == 16
    # an experiment none of whose trials is stored: a warning for it, then the one-line error
    bigger = tmp_path / "bigger.yaml"
    data = yaml.safe_load(STUDY)
    data["pai"]["train"] = {"steps": "21it", "eval_every": "none"}
    bigger.write_text(yaml.safe_dump(data))
    code, _, err = cli(capsys, "report", "--home", home, "--out", tmp_path / "none", bigger, "pai")
    assert code == 2 and "4 of 4 trials" in err and f"no finished runs to report for pai of {bigger}" in err
    code, _, err = cli(capsys, "report", "--home", home, tmp_path / "absent.yaml")
    assert code == 2 and "no experiment file" in err


# ---- headless Chromium ----------------------------------------------------------------------------------

#: put first in <head>: records script errors, failed loads and console.error calls, then on load writes
#: what it found (and how many images decoded) into <body>'s data attributes, which --dump-dom prints
CHECK = """<script>
window.__errors = [];
window.addEventListener("error", function (event) {
  window.__errors.push(String(event.message || (event.target && (event.target.src || event.target.tagName))));
}, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !img.complete || img.naturalWidth === 0; });
  document.body.dataset.images = String(images.length);
  document.body.dataset.broken = String(broken.length);
  document.body.dataset.errors = JSON.stringify(window.__errors);
});
</script>"""


def render_in_chromium(page: Path, tmp_path: Path) -> dict[str, str]:
    """``page`` with :data:`CHECK` injected, loaded in headless Chromium; the check's findings."""
    checked = page.with_name(f"checked-{page.name}")
    checked.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>\n" + CHECK, 1), encoding="utf-8")
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--virtual-time-budget=10000",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body, done.stdout[:2000]
    found = dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(1)))
    assert "images" in found, f"the check did not run: {done.stdout[:500]}"
    return {key: html.unescape(value) for key, value in found.items()}


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_chromium_renders_the_page_without_errors_and_every_figure_loads(study, tmp_path, capsys):
    out = tmp_path / "report"
    report_json(capsys, study[1], out, "--csv")
    found = render_in_chromium(out / "report.html", tmp_path)
    assert found == {"images": str(len(ALL_FIGURES)), "broken": "0", "errors": "[]"}
    # the check sees what it is there for: a damaged figure and a script error
    page = (out / "report.html").read_text()
    damaged = out / "damaged.html"
    damaged.write_text(
        page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1).replace(
            "</body>", "<script>notAFunction();</script></body>"
        )
    )
    found = render_in_chromium(damaged, tmp_path)
    assert found["broken"] == "1" and "notAFunction" in found["errors"]


def test_a_damaged_lottery_stage_is_named_and_its_level_still_reported(store, tmp_path, capsys):
    lottery = next(p for p in sorted(store.iterdir()) if p.name.startswith("lottery-"))
    (lottery / "level_1" / "summary.json").write_text("{not json")
    code, out, err = cli(capsys, "report", "--home", store, "--out", tmp_path / "r", "--kind", "lottery", "--csv")
    assert code == 0, err
    assert f"run {lottery.name}/level_1: summary.json is damaged" in err
    with open(tmp_path / "r" / "metrics.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["run_id"] == lottery.name]
    level = json.loads((lottery / "summary.json").read_text())["levels"][1]
    assert [float(row["test_accuracy"]) for row in rows if row["level"] == "1" and not row["control"]] == [
        level["test_accuracy"]
    ]


def test_kind_with_run_ids_is_an_error(study, tmp_path, capsys):
    run_id = next(p.name for p in sorted(study[1].iterdir()) if p.name.startswith("prune-"))
    code, out, err = cli(capsys, "report", run_id, "--kind", "prune", "--home", study[1], "--out", tmp_path / "r")
    assert code == 2 and out == "" and "--kind chooses among all runs or a study's" in err
    assert not (tmp_path / "r").exists()
