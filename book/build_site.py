"""Build the executed book as an offline static site: ``python book/build_site.py --out DIR [--quick]``.

View it with ``python -m http.server -d DIR`` and open http://127.0.0.1:8000/. The site is an index page and
one page per chapter with its outputs and figures, links to the previous and next chapter, and maths
rendered by a MathJax copied into ``DIR/_static/mathjax``. No page loads a script, font or stylesheet from
the internet.

Why nbconvert with a small index, after trying the three candidates offline on these chapters:

* mystmd / jupyter-book 2 (Node): ``myst build --html`` downloads its site template from the MyST API
  at build time (``book-theme``), so it fails without internet, and the theme it would download is
  another web application to ship.
* mkdocs-jupyter: builds offline, but renders each notebook with nbconvert underneath, adds mkdocs,
  mkdocs-material and their dependencies, still loads mermaid from a CDN through nbconvert's template,
  and leaves maths to the theme (a MathJax we would bundle anyway).
* nbconvert alone (installed with JupyterLab): its "lab" template blocks let us drop every CDN script
  (require.js, the widget manager, mermaid) and point MathJax at a local copy. MathJax 2.7 comes from the
  PyPI package ``jupyter-server-mathjax`` (the book extra), which the Jupyter server uses for the same job.

Widgets need a kernel, so a page shows the static picture each explorer puts beside its live view
(``image/png`` is preferred to the widget view, and the notebooks' widget state is dropped, so no widget
script is requested).

Every chapter is executed with papermill. By default with its own parameters, so the chapters reuse their
run caches under ``runs/`` (a first full build trains what the caches lack: chapter 05 takes longest).
``--quick`` runs each chapter with the tiny parameters its test uses (``tests/test_book_NN_*.py``), with
results under ``runs/site-quick/``: the whole book in a few minutes, for CI. The site is written to a
temporary folder beside ``DIR`` and moved into place only when every chapter has built; a failure names
the chapter and the cell that broke, and leaves a previous site in ``DIR`` as it was.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupyter_server_mathjax
import nbformat
import papermill
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from traitlets.config import Config

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
QUICK_OUT = "runs/site-quick"  # results of --quick runs (relative to the repository root)
_TINY = dict(iters=2, batch_size=2, crop_size=64, image_size=64, num_train_images=8, num_val_images=4, workers=0)
QUICK: dict[str, dict] = {  # the tiny parameters of each chapter's test
    "00_introduction": dict(num_images=2, image_size=64),
    "01_observations": dict(iters=2, batch_size=2, crop_size=64, num_train_images=8, num_val_images=8, rf_images=2),
    "02_pyramid_pooling": dict(crop_size=64, num_images=4, iters=2, batch_size=2, image_size=64, num_train_images=4,
                               num_val_images=2),
    "03_architecture": dict(backbone="lite", depths="resnet50", crop_size=97, time_size=33, time_iters=1,
                            check_size=33),
    "04_deep_supervision": dict(alphas="0,0.4", seeds="0,1", iters=2, batch_size=2, crop_size=64, num_train_images=8,
                                num_val_images=4),
    "04b_training_recipe": dict(iters=2, finetune_iters=2, batch_size=4, crop_size=48, crops="64", bn_batches="2,4",
                                frozen_at="2", seeds="0", image_size=64, num_train_images=8, num_val_images=2, jobs=1),
    "05_ablation": dict(_TINY, rows="baseline,B1236+AVE+DR", seeds="0,1", num_val_images=24),  # claims need 2 seeds
    "06_depth_and_multiscale": dict(_TINY, backbones="lite@8,lite-1121@4", seeds="0,1"),
    "07_benchmarks": dict(iters=2, batch_size=2, crop_size=48, image_size=64, num_train_images=8, num_val_images=4,
                          eval_batch_size=4, num_show=2),
    "07b_pitfalls": dict(iters=2, batch_size=4, crop_size=57, image_size=64, num_train_images=8, num_val_images=4,
                         fake_images=3, large_side=65, eval_batch_size=4),
    "08_performance": dict(crop_size=33, batch_size=2, profile_steps=1, precisions="fp32",
                           memory_formats="contiguous,channels_last", bench_warmup=0, bench_iters=1,
                           bench_isolate=False, syncbn_procs=2, syncbn_iters=8),
    "09_what_the_book_shows": {},  # reads the stored records in results/: seconds, nothing to shrink
}
MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"
MATHJAX_PARTS = ("MathJax.js", "LICENSE", "config", "extensions", "jax", "fonts", "localization/en")
MATHJAX_URL = "_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"  # the package ships STIX-Web fonts
# what a page may show of an output, best first: the static picture before the live widget (no kernel here)
PRIORITY = ["text/html", "text/markdown", "image/svg+xml", "image/png", "image/jpeg", "text/latex", "text/plain",
            "application/vnd.jupyter.widget-view+json"]
STYLE = """
.book-nav { display: flex; gap: 1.5em; justify-content: space-between; max-width: 1100px; margin: 0.5em auto;
            padding: 0.6em 1em; font: 14px sans-serif; border-bottom: 1px solid #ddd; }
.book-nav a { text-decoration: none; color: #1a5fb4; }
"""
PAGE = r"""{%- extends 'lab/index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock html_head_js_requirejs %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block html_head_js_mathjax %}
<script>window.MathJax = {
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}},
  displayAlign: "center", messageStyle: "none"};</script>
<script src="{{ resources.mathjax_url }}"></script>
<link rel="icon" href="data:,">
{% endblock html_head_js_mathjax %}
{% block extra_css %}<style type="text/css">{{ resources.book_style }}</style>{% endblock extra_css %}
{% block body_header %}{{ super() }}{{ resources.book_nav }}{% endblock body_header %}
{% block body_footer %}{{ resources.book_nav }}{{ super() }}{% endblock body_footer %}
"""
# The front page: what each chapter teaches, in one line (the README's table says what each one shows).
TAKEAWAYS = {
    "00_introduction": ("§1, §5.2", "What scene parsing asks for, the three data sets, and mIoU and pixel accuracy "
                        "computed by hand."),
    "01_observations": ("§3.1, Fig. 2", "A dilated FCN fails in the three ways the paper names, and its receptive "
                        "field is far smaller in practice than on paper."),
    "02_pyramid_pooling": ("§3.2, Fig. 3", "The pyramid pooling module built step by step on a trained network's "
                           "features: what each bin size keeps and what it throws away."),
    "03_architecture": ("§3.3, Fig. 3", "Fig. 3 drawn from a real forward pass; you write PSPNet's forward and turn a "
                        "ResNet into output stride 8 yourself."),
    "04_deep_supervision": ("§4, Table 2", "The auxiliary loss and its weight, tested where optimisation is the "
                            "bottleneck: a deep, narrow network, over 5 seeds."),
    "04b_training_recipe": ("§5.1, Table 4", "The training recipe piece by piece: poly LR, the 10x head, every "
                            "augmentation step, BN batch and crop size."),
    "05_ablation": ("§5.2, Table 1", "Which of Table 1's claims a from-scratch CPU run shows, declared before the "
                    "runs and decided by paired intervals over 5 seeds."),
    "06_depth_and_multiscale": ("Table 3, Fig. 5", "Deeper backbones and multi-scale testing: what they buy when "
                                "trained from scratch, with intervals, next to the paper's numbers."),
    "07_benchmarks": ("Tables 4-8", "The evaluation protocols of ADE20K, VOC and Cityscapes, and the paper's "
                      "numbers next to ours."),
    "07b_pitfalls": ("§5", "The mistakes behind most 'my mIoU is N points below the paper' reports, each made on "
                     "purpose and measured, with the package's guard."),
    "08_performance": ("-", "Where a training step spends its time, and what AMP, channels-last and compile buy."),
    "09_what_the_book_shows": ("all", "The claims ledger: every claim of the paper, the chapter that tests it, and "
                               "its verdict from the stored records."),
}
FRONT_FIGURES = (  # (file in results/, caption), shown when present
    ("03_fig3.png", "Fig. 3 of the paper, drawn by chapter 03 from a real forward pass of the package's PSPNet: "
                    "every shape on it is a tensor's."),
    ("05_gallery_cpu.png", "FCN, one-bin and four-bin networks on ContextScenes, picked by rule in chapter 05 "
                           "(stored record, CPU run)."),
)
INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title><link rel="icon" href="data:,">
<style>body {{ font: 16px/1.5 sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; color: #222; }}
a {{ color: #1a5fb4; }} .note {{ color: #666; font-size: 14px; }} figure {{ margin: 1.5em 0; }}
figure img {{ max-width: 100%; border: 1px solid #ddd; }} figcaption {{ color: #444; font-size: 14px; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border-bottom: 1px solid #ddd; padding: 0.4em;
text-align: left; vertical-align: top; }} td.time {{ white-space: nowrap; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; }}</style></head>
<body><h1>{title}</h1>
<p class="lead">A book that teaches the <b>Pyramid Scene Parsing Network</b> (PSPNet, Zhao et al., CVPR 2017) by
building it: every part of the network, its loss, its training recipe and its evaluation protocols is written in
front of you, checked against the importable package <code>pspnet_lite</code>, trained on a laptop CPU on a small
synthetic data set (ContextScenes), and each claim of the paper is tested with intervals over several seeds. The same
notebooks, with other parameters, are the GPU reproduction on ADE20K, PASCAL VOC 2012 and Cityscapes.</p>
<p><b>For whom.</b> You know Python and NumPy, have trained a small network in PyTorch (a module, a loss, an
optimiser step), and know what a convolution and a ResNet are. No segmentation background is needed; no GPU is
needed to read and run the book.</p>
{figures}
<h2>The chapters</h2>
<p>This site was executed{how}. Each page shows the code, its outputs and figures; the interactive explorers show a
picture of their state (run the notebooks in JupyterLab to move their controls). Run time: each chapter's default
run with papermill on a 2-core CPU, from an empty run cache (<code>results/book_run_times.json</code>).</p>
<table><thead><tr><th>chapter</th><th>paper</th><th>what you take away</th><th>CPU run time</th></tr></thead>
<tbody>
{items}
</tbody></table>
<h2>Results</h2>
<p><a href="results.html">What the project has measured</a>, next to the paper's numbers, record by record, and
<a href="{closing}">the closing chapter</a>: which of the paper's claims the book shows, which it does not, and what a
GPU run on the real data would add.</p>
<h2>Run the book yourself</h2>
<pre><code>git clone &lt;this repository&gt; &amp;&amp; cd pspnet-book
# set up, then train PSPNet on ContextScenes with the built-in default (minutes on a CPU)
python3 -m venv .venv &amp;&amp; .venv/bin/pip install -q -e ".[dev]" &amp;&amp; .venv/bin/python -m pspnet_lite.train
# the tests (CPU only, offline; the chapters run with tiny parameters)
.venv/bin/python -m pytest
# read and run the chapters
.venv/bin/jupyter lab book/
# or run one from the shell, with parameters
.venv/bin/papermill book/05_ablation.ipynb out.ipynb -p seeds 20,21,22,23,24
# this site
.venv/bin/python book/build_site.py --out site</code></pre>
<p>The executed notebooks are in <a href="notebooks/">notebooks/</a>.</p>
<p class="note">Built {date} by <code>python book/build_site.py</code>.</p>
</body></html>
"""
RESULTS_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Results</title><link rel="icon" href="data:,">
<style>body {{ font: 15px/1.5 sans-serif; max-width: 75em; margin: 2em auto; padding: 0 1em; color: #222; }}
a {{ color: #1a5fb4; }} table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 0.3em;
vertical-align: top; font-size: 14px; }} figure img {{ max-width: 100%; }} code {{ background: #f6f6f6; }}</style>
</head><body><nav class="book-nav"><a href="index.html">Contents</a></nav>
{body}
<h2>The figures of the stored records</h2>
{figures}
</body></html>
"""
EXTERNAL = re.compile(r"""<script[^>]*\ssrc=["']?(?:https?:)?//|<link[^>]*\shref=["']?(?:https?:)?//|"""
                      r"""url\(\s*["']?(?:https?:)?//|@import\s+(?:url\()?["']?(?:https?:)?//""", re.I)


class ChapterError(RuntimeError):
    """A chapter failed to execute or to render; the message names the chapter and the cell."""


def chapters(book: Path, names: list[str] | None = None) -> list[Path]:
    """The chapter notebooks ``NN_topic.ipynb`` (and ``NNb_topic.ipynb``) of ``book``, in order (only ``names``
    when given)."""
    found = sorted(p for p in book.glob("[0-9][0-9]*_*.ipynb"))  # 04b_* sorts between 04_* and 05_*
    if names is None:
        return found
    by_name = {p.stem: p for p in found}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}; the book has {sorted(by_name)}")
    return [by_name[n] for n in names]


def title_of(nb) -> str:
    """A chapter's title: the first level-1 heading of its markdown cells (else its file name)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return match.group(1).strip()
    return nb.metadata.get("title", "chapter")


def parameters_for(name: str, quick: bool) -> dict:
    """papermill parameters of chapter ``name``: none (its defaults), or with ``quick`` the tiny ones."""
    if not quick:
        return {}
    out = f"{QUICK_OUT}/{name}"
    extra = {"runs_dir": f"{out}/runs"} if name == "02_pyramid_pooling" else {}
    return {**QUICK.get(name, {}), "out_dir": out, **extra}


def execute(path: Path, dest: Path, quick: bool, timeout: int) -> Path:
    """Run chapter ``path`` with papermill into ``dest``/name.ipynb; a failure is a ChapterError naming the cell."""
    out = dest / path.name
    try:
        papermill.execute_notebook(str(path), str(out), parameters=parameters_for(path.stem, quick),
                                   kernel_name="python3", cwd=str(dest), progress_bar=False,
                                   execution_timeout=timeout)
    except papermill.PapermillExecutionError as err:
        first = next((line for line in err.source.splitlines() if line.strip()), "")
        raise ChapterError(f"chapter {path.stem}: cell {err.cell_index} (execution count {err.exec_count}, "
                           f"starting {first[:60]!r}) failed: {err.ename}: {err.evalue}") from None
    except Exception as err:  # a kernel that died, a timeout: still name the chapter
        raise ChapterError(f"chapter {path.stem}: execution failed: {type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}") from None
    return out


def exporter() -> HTMLExporter:
    """nbconvert's lab HTML exporter with the book's page template: no CDN script, local MathJax."""
    config = Config({"NbConvertBase": {"display_data_priority": PRIORITY}})
    export = HTMLExporter(config=config, template_name="lab", extra_loaders=[DictLoader({"book_page.j2": PAGE})])
    export.template_file = "book_page.j2"
    export.mathjax_url = MATHJAX_URL
    return export


def nav(pages: list[tuple[str, str]], index: int) -> str:
    """The navigation bar of page ``index`` of ``pages`` [(file, title)]: contents, previous, next."""
    links = ['<a href="index.html">Contents</a>', "<span></span>", "<span></span>"]
    if index > 0:
        links[1] = f'<a href="{pages[index - 1][0]}">&larr; {html.escape(pages[index - 1][1])}</a>'
    if index + 1 < len(pages):
        links[2] = f'<a href="{pages[index + 1][0]}">{html.escape(pages[index + 1][1])} &rarr;</a>'
    return f'<nav class="book-nav">{"".join(links)}</nav>'


def render(executed: list[Path], site: Path) -> list[tuple[str, str]]:
    """Write one HTML page per executed chapter into ``site``, and the executed notebook beside it in
    ``site/notebooks``; returns [(file, title)]."""
    notebooks = [nbformat.read(p, as_version=4) for p in executed]
    pages = [(f"{p.stem}.html", title_of(nb)) for p, nb in zip(executed, notebooks)]
    export = exporter()
    for k, (path, nb) in enumerate(zip(executed, notebooks)):
        nb.metadata.pop("widgets", None)  # no widget state: the page asks for no widget script
        nb.metadata["title"] = pages[k][1]
        try:
            body, _ = export.from_notebook_node(nb, resources={"book_nav": nav(pages, k), "book_style": STYLE})
        except Exception as err:
            raise ChapterError(f"chapter {path.stem}: rendering failed: {type(err).__name__}: {err}") from None
        (site / pages[k][0]).write_text(body, encoding="utf-8")
        (site / "notebooks").mkdir(exist_ok=True)
        shutil.copy2(path, site / "notebooks" / path.name)
    return pages


def run_times(root: Path = ROOT) -> dict[str, str]:
    """Each chapter's measured default run time (``results/book_run_times.json``) as text, e.g. ``"3.6 min"``."""
    path = root / "results" / "book_run_times.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text())["metrics"]
    shown = {}
    for name, m in metrics.items():
        seconds = m["seconds"]
        shown[name] = f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
    for name in [n for n in shown if n.endswith(" (cached)")]:  # a chapter that caches its training
        first = name.removesuffix(" (cached)")
        if first in shown:
            shown[first] = f"{shown[first]} (first run), {shown.pop(name)} cached"
    return shown


def copy_figures(site: Path, names: list[str], root: Path = ROOT) -> list[str]:
    """Copy ``results/<name>`` of each existing name into ``site/results``; returns the names copied."""
    copied = []
    for name in names:
        source = root / "results" / name
        if source.is_file():
            (site / "results").mkdir(exist_ok=True)
            shutil.copy2(source, site / "results" / name)
            copied.append(name)
    return copied


def figure_html(name: str, caption: str) -> str:
    return (f'<figure><img src="results/{html.escape(name)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def write_index(site: Path, pages: list[tuple[str, str]], quick: bool, root: Path = ROOT) -> None:
    """The site's front page: what the book teaches and for whom, a figure, each chapter with its takeaway and CPU
    run time, the results and the closing chapter, and how to run the book."""
    times = run_times(root)
    rows = []
    for file, title in pages:
        name = file.removesuffix(".html")
        paper, takeaway = TAKEAWAYS.get(name, ("", ""))
        rows.append(f'<tr><td><a href="{file}">{html.escape(title)}</a></td><td>{html.escape(paper)}</td>'
                    f'<td>{html.escape(takeaway)}</td><td class="time">{html.escape(times.get(name, "-"))}</td></tr>')
    shown = copy_figures(site, [name for name, _ in FRONT_FIGURES], root)
    figures = "\n".join(figure_html(name, caption) for name, caption in FRONT_FIGURES if name in shown)
    how = (" with tiny parameters (a quick build: the numbers on the chapter pages are not the book's; the figures "
           "on this page are the stored records')") if quick else " with each chapter's default parameters"
    closing = next((f for f, _ in pages if f.startswith("09_")), pages[-1][0])
    (site / "index.html").write_text(INDEX.format(title="PSPNet, the book", how=how, items="\n".join(rows),
                                                  figures=figures, closing=closing,
                                                  date=time.strftime("%Y-%m-%d %H:%M")), encoding="utf-8")


def write_results_page(site: Path, root: Path = ROOT) -> None:
    """``results.html``: results/README.md rendered, and every figure of results/ below it."""
    import mistune  # installed with nbconvert

    source = root / "results" / "README.md"
    body = mistune.html(source.read_text(encoding="utf-8")) if source.is_file() else "<p>No results yet.</p>"
    names = copy_figures(site, sorted(p.name for p in (root / "results").glob("*.png")), root)
    figures = "\n".join(figure_html(name, name) for name in names)
    (site / "results.html").write_text(RESULTS_PAGE.format(body=body, figures=figures), encoding="utf-8")


def copy_mathjax(site: Path) -> None:
    """Copy the parts of MathJax 2.7 the pages load into ``site/_static/mathjax``."""
    if not (MATHJAX / "MathJax.js").is_file():
        raise FileNotFoundError(f"MathJax not found in {MATHJAX}; install the book extra: pip install -e '.[book]'")
    for part in MATHJAX_PARTS:
        source, target = MATHJAX / part, site / "_static" / "mathjax" / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)


def external_references(site: Path) -> list[str]:
    """Every script, stylesheet or font a page of ``site`` would fetch from another host (should be none)."""
    found = []
    for page in sorted(site.glob("*.html")):
        found += [f"{page.name}: {m.group(0)}" for m in EXTERNAL.finditer(page.read_text(encoding="utf-8"))]
    return found


def build(out: Path, book: Path = BOOK, quick: bool = False, names: list[str] | None = None, jobs: int = 1,
          timeout: int = 3600, log=print) -> Path:
    """Execute and render the book into ``out``, replacing what is there only when everything has built."""
    out = Path(out).resolve()
    paths = chapters(book, names)
    if not paths:
        raise ValueError(f"no chapters (NN_topic.ipynb) in {book}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        executed_dir, site = staging / "executed", staging / "site"
        executed_dir.mkdir()
        site.mkdir()

        def run(path: Path) -> Path:
            start = time.perf_counter()
            done = execute(path, executed_dir, quick, timeout)
            log(f"{path.stem}: executed in {time.perf_counter() - start:.0f} s")
            return done

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            executed = list(pool.map(run, paths))
        pages = render(executed, site)
        write_index(site, pages, quick)
        write_results_page(site)
        copy_mathjax(site)
        external = external_references(site)
        if external:
            raise ChapterError(f"pages load from the internet: {external[:3]}")
        _replace(site, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _replace(site: Path, out: Path) -> None:
    """Move the new ``site`` to ``out``; a previous site there is removed only after the move."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    site.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the site (replaced only when the build succeeds)")
    p.add_argument("--quick", action="store_true", help="run every chapter with tiny parameters (minutes; CI)")
    p.add_argument("--chapters", default=None,
                   help="comma list of chapters to build, e.g. 00_introduction,02_pyramid_pooling (default: all)")
    p.add_argument("--book", default=str(BOOK), help="folder of the chapter notebooks (default: this book)")
    p.add_argument("--jobs", type=int, default=1, help="chapters executed at once (default 1)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run (default 3600)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    names = [n.strip() for n in args.chapters.split(",") if n.strip()] if args.chapters else None
    start = time.perf_counter()
    try:
        out = build(Path(args.out), Path(args.book), args.quick, names, args.jobs, args.timeout)
    except (ChapterError, ValueError, FileNotFoundError) as err:
        print(f"build_site: error: {err}; {args.out} is left as it was", file=sys.stderr)
        return 1
    print(f"site written to {out} in {time.perf_counter() - start:.0f} s; view it with: "
          f"python -m http.server -d {out}  (then open http://127.0.0.1:8000/)")
    print(json.dumps({"pages": sorted(p.name for p in out.glob("*.html"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
