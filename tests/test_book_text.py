"""The book's text conventions, chapter by chapter: paper quotes and maths beside the code, exercises whose hints
and worked answers are folded away (``<details>``), and text that speaks of the project only."""
import re
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]*_*.ipynb"))
# The maths each chapter must write out (a LaTeX fragment that only that formula uses), from the paper.
MATHS = {
    "00_introduction": [r"\mathrm{IoU}"],  # IoU and pixel accuracy (§5.2)
    "01_observations": [r"r_"],  # the receptive-field recursion
    "02_pyramid_pooling": [r"\lfloor", r"\rceil"],  # the adaptive pooling window of each bin
    "04_deep_supervision": [r"L_{aux}"],  # L = L_main + alpha L_aux
    "04b_training_recipe": [r"power"],  # poly learning rate
    "07_benchmarks": [r"\lceil"],  # the sliding-window stride and window count
    "07b_pitfalls": [r"x_{\text{Caffe}}"],  # the two normalisations: the package's and the Caffe release's
}


def markdown_cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]


@pytest.fixture(params=CHAPTERS, ids=lambda p: p.stem)
def chapter(request) -> tuple[str, list[str]]:
    return request.param.stem, markdown_cells(request.param)


def test_the_book_has_its_chapters():
    names = [p.stem for p in CHAPTERS]
    assert names.index("04b_training_recipe") == names.index("04_deep_supervision") + 1
    assert len(names) >= 10


def test_paper_quotes_sit_beside_the_code(chapter):
    name, cells = chapter
    quoting = [c for c in cells if re.search(r'^> "[^"]{20,}', c, re.M)]
    assert quoting, f"{name}: no verbatim paper quote (a markdown line '> \"...\" (§N)')"
    assert all(re.search(r"\((?:paper, )?(?:§|Table|Fig)", c) for c in quoting), f"{name}: a quote without its (§N)"


def test_maths_is_written_in_latex(chapter):
    name, cells = chapter
    text = "\n".join(cells)
    assert "$$" in text or re.search(r"\$[^$\n]+\$", text), f"{name}: no LaTeX"
    for fragment in MATHS.get(name, []):
        assert fragment in text, f"{name}: the maths should include {fragment!r}"
    displays = re.findall(r"\$\$(.*?)\$\$", text, re.S)
    assert not any(re.search("[<>]", d) for d in displays), f"{name}: use \\lt/\\gt inside maths"


def test_exercises_fold_their_hints_and_answers(chapter):
    name, cells = chapter
    start = next((i for i, c in enumerate(cells) if c.lstrip().startswith("## Exercises")), None)
    assert start is not None, f"{name}: no '## Exercises' cell"
    exercises = [c for c in cells[start + 1:] if re.match(r"\*\*\d+\.\*\*", c.lstrip())]
    assert len(exercises) >= 2, f"{name}: at least two exercises, one cell each"
    for k, cell in enumerate(exercises, 1):
        assert cell.lstrip().startswith(f"**{k}.**"), f"{name}: exercises are numbered 1, 2, ... ({cell[:40]!r})"
        assert "<details><summary>Hint</summary>" in cell, f"{name}, exercise {k}: no folded hint"
        assert "<details><summary>Answer</summary>" in cell, f"{name}, exercise {k}: no folded worked answer"
        assert cell.count("<details>") == cell.count("</details>"), f"{name}, exercise {k}: unclosed <details>"
        hint, answer = (re.search(rf"<summary>{w}</summary>(.*?)</details>", cell, re.S).group(1).strip()
                        for w in ("Hint", "Answer"))
        assert len(hint) > 20 and len(answer) > 40, f"{name}, exercise {k}: hint or answer is empty"


def test_the_text_speaks_of_the_project_only(chapter):
    name, cells = chapter
    text = "\n".join(cells).lower()
    for phrase in ("this session", "no gpu was available", "when this chapter was written", "at the time of writing"):
        assert phrase not in text, f"{name}: {phrase!r}; say 'not yet measured on a GPU'"
