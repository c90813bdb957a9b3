"""Every chapter is an .ipynb + percent .py pair (jupytext), in sync, committed without outputs."""
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

BOOK = Path(__file__).resolve().parents[1] / "book"
NOTEBOOKS = sorted(BOOK.glob("[0-9][0-9]*_*.ipynb"))  # 04b_* between 04_* and 05_*


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync_and_clean(path):
    script = path.with_suffix(".py")
    assert script.exists(), f"{path.name} has no jupytext pair; run: jupytext --sync {path}"
    nb, py = jupytext.read(path), jupytext.read(script)
    assert _cells(nb) == _cells(py), f"{path.name} and {script.name} drifted; run: jupytext --sync {path}"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    # what JupyterLab writes for its default kernel: any other name marks the notebook modified on opening
    assert nb.metadata["kernelspec"]["display_name"] == py.metadata["kernelspec"]["display_name"] == \
        "Python 3 (ipykernel)"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters' (papermill)"


def test_every_chapter_script_has_a_notebook():
    for script in BOOK.glob("[0-9][0-9]*_*.py"):
        assert script.with_suffix(".ipynb").exists(), f"{script.name} has no .ipynb; run: jupytext --sync {script}"
