"""book/build_site.py: an offline site of executed chapters, built in a staging folder, failures named by cell.

These tests build a small book of two generated notebooks (seconds); tests/test_browser.py builds real chapters
and opens them in Chromium.
"""
import importlib.util
import subprocess
import sys

import nbformat
import pytest
from conftest import BOOK, ROOT

papermill = pytest.importorskip("papermill")
spec = importlib.util.spec_from_file_location("build_site", BOOK / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)

KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def write_book(folder, breaking: bool = False):
    """Two chapters: maths and a figure, then one that breaks in its third cell when ``breaking``."""
    folder.mkdir(parents=True, exist_ok=True)
    maths = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL})
    maths.cells = [nbformat.v4.new_markdown_cell("# 00 · Maths\n\nIoU is $\\frac{TP}{TP + FP + FN}$.\n\n$$a^2 + b^2$$"),
                   nbformat.v4.new_code_cell("size = 3", metadata={"tags": ["parameters"]}),
                   nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot(range(size))\nplt.show()")]
    nbformat.write(maths, folder / "00_maths.ipynb")
    second = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL})
    second.cells = [nbformat.v4.new_markdown_cell("# 01 · Second"), nbformat.v4.new_code_cell("x = 1"),
                    nbformat.v4.new_code_cell("1 / 0" if breaking else "print('second chapter', x)")]
    nbformat.write(second, folder / "01_second.ipynb")
    return folder


def run_cli(*args):
    return subprocess.run([sys.executable, str(BOOK / "build_site.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_site_has_an_index_pages_with_figures_navigation_and_local_maths(tmp_path):
    site = tmp_path / "site"
    done = run_cli("--out", site, "--book", write_book(tmp_path / "book"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"python -m http.server -d {site}" in done.stdout
    index = (site / "index.html").read_text()
    assert '<a href="00_maths.html">00 · Maths</a>' in index and '<a href="01_second.html">01 · Second</a>' in index
    page = (site / "00_maths.html").read_text()
    assert page.count('<nav class="book-nav">') == 2 and 'href="01_second.html"' in page  # top and bottom
    assert 'src="data:image/png;base64,' in page  # the figure, inside the page
    assert 'src="_static/mathjax/MathJax.js?config=' in page and (site / "_static/mathjax/MathJax.js").is_file()
    assert "$\\frac{TP}{TP + FP + FN}$" in page  # left for MathJax to typeset in the browser
    assert "second chapter 1" in (site / "01_second.html").read_text()
    assert build_site.external_references(site) == []
    assert not list(tmp_path.glob(".site.building-*"))  # the staging folder is gone


def test_a_failing_chapter_is_named_with_its_cell_and_the_old_site_stays(tmp_path):
    site = tmp_path / "site"
    assert run_cli("--out", site, "--book", write_book(tmp_path / "good")).returncode == 0
    before = {p.name: p.read_bytes() for p in site.glob("*.html")}
    done = run_cli("--out", site, "--book", write_book(tmp_path / "bad", breaking=True))
    assert done.returncode == 1
    assert ("build_site: error: chapter 01_second: cell 2 (execution count 2, starting '1 / 0') failed: "
            f"ZeroDivisionError: division by zero; {site} is left as it was") in done.stderr
    assert {p.name: p.read_bytes() for p in site.glob("*.html")} == before
    assert not list(tmp_path.glob(".site.*"))
    bad = run_cli("--out", site, "--book", tmp_path / "good", "--chapters", "07_nothing")
    assert bad.returncode == 1 and "unknown chapter(s) ['07_nothing']" in bad.stderr


def test_external_references_are_found(tmp_path):
    (tmp_path / "a.html").write_text('<script src="https://cdn.example/x.js"></script><a href="https://paper">x</a>'
                                     "<style>@import url('//fonts.example/css');</style>")
    found = build_site.external_references(tmp_path)
    assert len(found) == 2 and all(f.startswith("a.html: ") for f in found)  # links to read elsewhere are fine


def test_quick_parameters_are_the_chapters_own():
    chapters = build_site.chapters(BOOK)
    assert {p.stem for p in chapters} == set(build_site.QUICK)  # every chapter has its tiny parameters
    for path in chapters:
        declared = set(papermill.inspect_notebook(str(path)))
        given = set(build_site.parameters_for(path.stem, quick=True))
        assert given <= declared, f"{path.stem}: {sorted(given - declared)} are not parameters of the chapter"
    assert build_site.parameters_for("05_ablation", quick=False) == {}  # a full build: the chapters' defaults


def test_front_page_has_a_takeaway_and_a_run_time_for_every_chapter_and_a_results_page(tmp_path):
    names = [p.stem for p in build_site.chapters(BOOK)]
    assert sorted(build_site.TAKEAWAYS) == sorted(names), "book/build_site.py TAKEAWAYS: one line per chapter"
    times = build_site.run_times()
    assert [n for n in names if n not in times] == [], "measure it: python benchmarks/time_chapters.py"
    assert times["02_pyramid_pooling"].endswith("cached")  # first run and cached run, both shown
    site = tmp_path / "site"
    site.mkdir()
    pages = [(f"{n}.html", n) for n in names]
    build_site.write_index(site, pages, quick=True)
    build_site.write_results_page(site)
    index = (site / "index.html").read_text()
    assert index.count("<tr><td>") == len(names) and "results.html" in index and "09_what_the_book_shows" in index
    shown = [name for name, _ in build_site.FRONT_FIGURES if (site / "results" / name).is_file()]
    assert shown and all(f'src="results/{name}"' in index for name in shown)
    results = (site / "results.html").read_text()
    assert "<table>" in results and "<h2>" in results  # results/README.md rendered, tables and all
    assert build_site.external_references(site) == []
