"""dashboards/: the stability notebook executed top to bottom against a real finished study (nbclient,
a real IPython kernel), so it never goes stale."""

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ARTIFACTS, REPO

pytestmark = pytest.mark.integration


def test_stability_notebook_runs_on_a_study(grid_study, monkeypatch):
    workdir, _, uri = grid_study
    monkeypatch.setenv("GANLAB_STUDY", "grid")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    notebook = nbformat.read(REPO / "dashboards" / "stability_analysis.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored clean
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 7  # map, verdicts, D accuracy, oscillation, samples, parallel coordinates, own view
    text = "".join(o.get("text", "") for o in outputs)
    assert "study 'grid': 8 trials" in text and "no confirmation phase" in text
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("rate converged" in t and "seeds" in t for t in tables)  # the stability table
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, ARTIFACTS / "stability_analysis.executed.ipynb")
