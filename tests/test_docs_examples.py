"""The Python examples in the user guides run as written (so the docs cannot rot)."""

import re
from pathlib import Path

import pytest

from prunelab.models import registry

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize(
    "page", ["lottery.md", "api.md", "pai.md", "models.md", "supermask.md", "ntk.md", "studies.md"]
)
def test_guide_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # PRUNELAB_HOME and one torch thread come from conftest
    for table in ("_NAMED", "_OPTIONS"):  # models.md registers a model: keep it out of later tests
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python example"
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks:  # blocks of one page build on each other, as a reader runs them
        exec(compile(block, f"{page}", "exec"), namespace)
