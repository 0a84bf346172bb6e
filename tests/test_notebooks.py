"""The example notebooks run top to bottom in a real kernel (nbclient), offline, on the local model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.helpers import is_stylesheet

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: An Oxen commit id: a 128-bit hash in hex without leading zeros (one id in 16 has 31 digits).
OXEN_ID = "[1-9a-f][0-9a-f]{0,31}"


def run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Execute ``path`` in a fresh kernel started from its folder; return the executed notebook."""
    pytest.importorskip(
        "xllamacpp", reason="the local extra is not installed (pip install -e '.[local]'); CI installs it"
    )
    import nbformat
    from nbclient import NotebookClient

    # The kernel inherits this environment: no key (conftest removed it), this checkout importable
    # even without an install, and no user IPython profile.
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), pythonpath])))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return notebook


def outputs(cell) -> str:
    """Everything a cell showed, as text: streams and the text/plain and text/html of displays."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        for kind in ("text/plain", "text/html"):
            parts.append(output.get("data", {}).get(kind, ""))
    return "".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path: Path):
    cells = json.loads(path.read_text())["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)


@pytest.mark.kernel
@pytest.mark.local
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_offline_on_the_local_model(path: Path, tmp_path, monkeypatch):
    notebook = run(path, tmp_path, monkeypatch)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:  # only a cell tagged to fail on purpose may show an error
        failed = [o for o in cell.outputs if o["output_type"] == "error"]
        assert bool(failed) == ("raises-exception" in cell.metadata.get("tags", [])), cell.source
    shown = "".join(outputs(cell) for cell in code)
    assert "local model" in shown, (
        f"{path.name} must say, in one visible output line, that it uses the local model when "
        "OXEN_API_KEY is unset (issue 5)"
    )
    check = CHECKS.get(path.name)
    if check is not None:
        check({"".join(cell.source).splitlines()[0]: cell for cell in code})


def _context_notebook(cells: dict) -> None:
    """05: ``{sales:5}`` is a bounded summary of the million rows; ``{Err}`` the failed cell."""
    dry = outputs(cells["%%oxen --dry-run -o plan"])
    assert "DataFrame: 1,000,000 rows × 3 columns" in dry and "price (float64, 1,234 missing)" in dry
    assert "dry run, nothing sent · local · 1 message · " in dry and "free" in dry
    sent = outputs(cells["print(session.messages[0].content)"])
    assert sent.startswith("Why did this fail, and how do I fix it? The notebook cell In[")
    assert "failed with KeyError: 'price_eur'" in sent and 'sales["price_eur"].mean()' in sent
    assert "frame in pandas …" in sent and "raised while handling" not in sent and "\x1b[" not in sent
    frame = cells["frame = session.to_dataframe()"].outputs[0]["data"]["text/plain"]
    assert frame.count("user") == 2  # {Err} and %oxen fix were sent; the dry run was not
    assert "local · " in outputs(cells["%%oxen --new"]) and "local · " in outputs(cells["%oxen fix"])


def _prototyping_notebook(cells: dict) -> None:
    """02: the estimate sends nothing, a checkpointed map resumes without sending, the result commits."""
    assert "estimate, nothing sent · local · 30 rows · " in outputs(
        cells["more = pd.concat([reviews] * 5, ignore_index=True)  # 30 rows; 200,000 work the same way"]
    )
    resumed = outputs(cells["runs = Path(tempfile.mkdtemp())"])
    assert "30 rows; resumed: 0 requests sent the second time" in resumed and "manifest.json" in resumed
    committed = outputs(cells["import importlib.util"])
    assert re.fullmatch(rf"committed {OXEN_ID}\n", committed), committed


def _evaluate_notebook(cells: dict) -> None:
    """06: the dry run sends nothing, the summary marks a best variant with intervals, the paired
    comparison and the plot are shown, the commit reads back the same summary."""
    assert "estimate, nothing sent · 24 requests · $0.0000" in outputs(
        cells['s = Session(cache=Path(tempfile.mkdtemp()) / "responses.sqlite", temperature=0)']
    )
    summary = outputs(cells["ev = s.evaluate("])
    assert "evaluation · 12 rows × 2 variants" in summary and "★" in summary and "95 % interval" in summary
    assert "<details" in summary and "<summary>all rows (12)</summary>" in summary
    assert re.search(
        r"vs \w+ on choice: \d+ wins, \d+ losses, \d+ ties\. ", outputs(cells["a, b = ev.variants[:2]"])
    )
    assert "score against cost" in outputs(cells['ev.plot(scorer="choice")'])  # the Axes (Agg here: no PNG)
    committed = outputs(cells["import importlib.util"])
    assert re.search(rf"committed {OXEN_ID}; read back 24 rows, same summary: True\n", committed), committed


CHECKS = {
    "02-prompt-prototyping.ipynb": _prototyping_notebook,
    "05-context.ipynb": _context_notebook,
    "06-evaluate.ipynb": _evaluate_notebook,
}


@pytest.mark.kernel
@pytest.mark.local
def test_quickstart_shows_the_magic_the_panel_and_the_dataframe(tmp_path, monkeypatch):
    notebook = run(ROOT / "notebooks" / "01-quickstart.ipynb", tmp_path, monkeypatch)
    cells = {
        "".join(cell.source).splitlines()[0]: cell for cell in notebook.cells if cell.cell_type == "code"
    }
    first = outputs(notebook.cells[1])
    assert first.strip() == (
        "OXEN_API_KEY is not set: using the embedded local model (SmolLM2-135M-Instruct), offline."
    )
    magic = cells["%%oxen -t 0"]
    html = [o for o in magic.outputs if "text/html" in o.get("data", {}) and not is_stylesheet(o)]
    assert len(html) >= 2 and "<p>" in html[0]["data"]["text/html"]  # the reply, then the footer
    assert any(is_stylesheet(o) for o in magic.outputs)  # its code is coloured by the stylesheet
    assert outputs(magic).count("local · ") >= 1
    assert "answer holds" in outputs(cells['print(f"answer holds {len(answer.split())} words")'])
    panel = cells["from oxen_notebook import ChatPanel"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in panel.outputs)
    assert outputs(cells['panel.send("Suggest a name for a friendly robot.")']).strip() == "True"
    frame = outputs(cells["df = session.to_dataframe()"])
    for source in ("magic", "api", "panel"):
        assert source in frame
    assert "$0.0000" in outputs(cells["session.usage_summary()"])
