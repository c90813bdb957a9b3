"""Shared test fixtures. Everything runs on the CPU, offline, in seconds."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


@pytest.fixture
def one_torch_thread():
    """Train on one torch thread (tiny models: faster, and the same numbers however busy the machine is)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def run_notebook(tmp_path):
    """Execute ``book/<name>.ipynb`` with papermill and the given parameters; return the executed notebook.

    Chapters run in ``tmp_path`` as working directory, so a chapter that depends on the working directory
    fails here. Pass ``out_dir=str(tmp_path / ...)`` in the parameters to keep results out of the repo.
    """
    papermill = pytest.importorskip("papermill")

    def run(name: str, timeout: int = 600, **parameters):
        output = tmp_path / f"{name}.out.ipynb"
        return papermill.execute_notebook(
            str(BOOK / f"{name}.ipynb"), str(output), parameters=parameters, kernel_name="python3",
            cwd=str(tmp_path), progress_bar=False, execution_timeout=timeout,
        )

    return run


def notebook_text(nb) -> str:
    """All text outputs of an executed notebook, for asserting on what a reader sees."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k == "text/plain")
    return "\n".join(parts)
