"""examples/notebook.ipynb: valid nbformat 4 JSON whose code cells run top to bottom."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .examples_harness import EXAMPLES

NOTEBOOK = EXAMPLES / "notebook.ipynb"


def _notebook() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return data


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def test_notebook_is_valid_nbformat_4() -> None:
    """The file has the nbformat 4.5 shape Jupyter needs: ids, sources, empty outputs."""
    nb = _notebook()
    assert nb["nbformat"] == 4
    assert nb["nbformat_minor"] >= 5
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids)
    for cell in nb["cells"]:
        assert cell["cell_type"] in {"markdown", "code"}
        assert isinstance(cell["metadata"], dict)
        assert isinstance(cell["source"], (str, list))
        if cell["cell_type"] == "code":
            assert cell["execution_count"] is None
            assert cell["outputs"] == []  # committed without outputs
    assert sum(cell["cell_type"] == "code" for cell in nb["cells"]) >= 5


@pytest.mark.model
@pytest.mark.timeout(600)
def test_notebook_code_cells_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Executed as plain Python from examples/: real flag server, two real models, comparisons."""
    monkeypatch.chdir(EXAMPLES)
    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    cells = [c for c in _notebook()["cells"] if c["cell_type"] == "code"]
    try:
        for number, cell in enumerate(cells, 1):
            exec(compile(_source(cell), f"notebook.ipynb[code cell {number}]", "exec"), namespace)
        rows = namespace["rows"]
        assert {r.variant for r in rows} == {"stable", "canary"}
        assert all(r.text for r in rows)
    finally:
        # Stop whatever an earlier failing cell left running.
        for name in ("client", "canary", "stable"):
            obj = namespace.get(name)
            stop = getattr(obj, "close", None) or getattr(obj, "stop", None)
            if stop is not None:
                stop()
        server = namespace.get("server")
        if server is not None:
            server.close()
