"""Real-browser tests (``python -m pytest -m browser``): chapter 02 in JupyterLab, and the built site, in Chromium.

They use Debian's chromium (``apt-get install -y chromium``, /usr/bin/chromium), started by the test and driven
by playwright over the DevTools protocol; without it they skip. Every process a test starts (JupyterLab, a
static file server, Chromium) runs in its own process group and is stopped by the test through its PID.
"""
import base64
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import BOOK, ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# the tiny parameters of tests/test_book_02_pyramid_pooling.py
TINY_02 = dict(crop_size=64, num_images=4, iters=2, batch_size=2, image_size=64, num_train_images=4, num_val_images=2)
# MathJax 2 probes web-font support with a font at about:blank, which Chromium reports; nothing is missing
HARMLESS = ("Access to font at 'about:blank'",)


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}); install it with: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as api:
        yield api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started, by its PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    assert proc.poll() is not None, f"process {proc.pid} is still running"


def wait_for_url(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with status {proc.returncode}"
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2)
            return
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def chromium(api, tmp_path):
    """Headless Chromium started here (its PID known), connected to over the DevTools protocol."""
    proc = subprocess.Popen([str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'chromium'}",
                             "--window-size=1400,1000", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in proc.stderr:
            if match := re.search(r"DevTools listening on (ws://\S+)", line):
                break
        else:
            raise RuntimeError(f"chromium exited with status {proc.wait()} before listening")
        browser = api.chromium.connect_over_cdp(match.group(1))
        try:
            yield browser.contexts[0]
        finally:
            browser.close()
    finally:
        stop(proc)


def console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and not m.text.startswith(HARMLESS) and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    return errors


# --------------------------------------------------------------------------------------------------
# JupyterLab: open chapter 02, run all cells, drive every control


def tiny_chapter(folder: Path, runs: Path) -> Path:
    """Chapter 02 (its jupytext pair, as in book/) with its parameters cell set to the tests' tiny values."""
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(BOOK / "02_pyramid_pooling.ipynb")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {**TINY_02, "runs_dir": str(runs / "cache"), "out_dir": str(runs / "out")}
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in values.items())
    path = folder / "02_pyramid_pooling.ipynb"
    jupytext.write(nb, path)
    jupytext.write(nb, path.with_suffix(".py"), fmt="py:percent")
    return path


LAB_SETTINGS = {  # every cell in the page (so the test reaches the explorers), the notebook's kernel, no news
    "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


@contextlib.contextmanager
def jupyterlab(root: Path, token: str):
    port = free_port()
    settings = root / ".lab-settings" / "@jupyterlab"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
               f"--LabApp.user_settings_dir={root / '.lab-settings'}"]
    if os.geteuid() == 0:  # CI runs as root
        command.append("--allow-root")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(root / "jupyterlab.log", "w"), env=env,
                            start_new_session=True)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/api/status?token={token}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def picture(explorer) -> str:
    """The src (a data: URL) of the explorer's figure, or "" when it shows none."""
    images = explorer.locator(".widget-output img")
    return images.first.get_attribute("src") if images.count() else ""


def changed(page, explorer, before: str, what: str, timeout: float = 60) -> str:
    """Wait until the explorer's figure differs from ``before``; returns the new one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = picture(explorer)
        if now and now != before:
            return now
        page.wait_for_timeout(200)
    raise AssertionError(f"changing {what} did not change the figure within {timeout} s")


def set_slider(page, slider, value: int) -> None:
    readout = slider.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def test_chapter_02_in_jupyterlab_every_control_redraws(playwright_api, tmp_path):
    token = secrets.token_hex(16)
    tiny_chapter(tmp_path, tmp_path / "runs")
    with jupyterlab(tmp_path, token) as url, chromium(playwright_api, tmp_path) as context:
        page = context.new_page()
        errors = console_errors(page)
        page.goto(f"{url}/lab/tree/02_pyramid_pooling.ipynb?token={token}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
        try:
            page.locator(".jp-OutputArea-output", has_text="chapter ran in").wait_for(timeout=150_000)
        except Exception:
            page.screenshot(path=tmp_path / "jupyterlab.png")  # what the page showed, for the failure report
            raise AssertionError(f"the chapter did not finish; see {tmp_path / 'jupyterlab.png'}") from None
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                            has_text="Traceback").count() == 0

        pooling = page.locator(".pspnet-pooling-explorer")
        figure = picture(pooling)
        assert figure.startswith("data:image/png")
        for what, act in [("the image", lambda: pooling.locator("select").first.select_option(index=1)),
                          ("the bins", lambda: pooling.locator("select[multiple]").select_option(["1", "4"])),
                          ("the pooling", lambda: pooling.get_by_role("button", name="max").click()),
                          ("the upsampling", lambda: pooling.get_by_role("button", name="nearest").click())]:
            act()
            figure = changed(page, pooling, figure, what)
        pooling.locator("select[multiple]").select_option([])  # no bins: the figure is cleared
        page.wait_for_function("(e) => !e.querySelector('.widget-output img')", arg=pooling.element_handle(),
                               timeout=30_000)
        assert "pick at least one bin size" in pooling.inner_text()

        pixel = page.locator(".pspnet-pixel-explorer")
        figure = picture(pixel)
        assert figure.startswith("data:image/png")
        sliders = pixel.locator(".widget-slider")
        steps = [("the image", lambda: pixel.locator("select").select_option(index=2)),
                 ("the row", lambda: set_slider(page, sliders.nth(0), 1)),
                 ("the column", lambda: set_slider(page, sliders.nth(1), 6))]
        steps += [(f"level {k}", lambda k=k: pixel.locator("input[type=checkbox]").nth(k).click()) for k in range(4)]
        for what, act in steps:
            act()
            figure = changed(page, pixel, figure, what)
        boxes = pixel.locator("input[type=checkbox]")
        on = [str(b) for k, b in enumerate((1, 2, 3, 6)) if boxes.nth(k).is_checked()]
        assert f"with levels {', '.join(on) or 'none'};" in pixel.inner_text()  # the status follows the boxes
        assert errors == [], errors


# --------------------------------------------------------------------------------------------------
# The built site: every chapter page renders its figures, and the widgets' static pictures show


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The quick site of the whole book (every chapter with its test's tiny parameters)."""
    out = tmp_path_factory.mktemp("site") / "site"
    done = subprocess.run([sys.executable, str(BOOK / "build_site.py"), "--out", str(out), "--quick", "--jobs", "2"],
                          capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@contextlib.contextmanager
def served(site: Path):
    """``site`` served on 127.0.0.1 by python's http.server, stopped by its PID."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "-d", str(site), "--bind", "127.0.0.1", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


def explorer_pictures(notebook: Path) -> list[str]:
    """The data: URLs of the pictures the explorers of an executed notebook carry beside their live view."""
    nb = nbformat.read(notebook, as_version=4)
    return [f"data:image/png;base64,{out['data']['image/png']}" for cell in nb.cells for out in cell.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {}) and "image/png" in out["data"]]


def test_built_site_pages_render_their_figures(playwright_api, site, tmp_path):
    with served(site) as url, chromium(playwright_api, tmp_path) as context:
        page = context.new_page()
        errors = console_errors(page)
        outside: list[str] = []
        local = (f"{url}/", "data:", "about:blank")  # about:blank: MathJax's font probe
        page.on("request", lambda r: r.url.startswith(local) or outside.append(r.url))
        page.goto(f"{url}/")
        links = page.locator("table a")
        chapters = [links.nth(k).get_attribute("href") for k in range(links.count())]
        assert chapters == [f"{p.stem}.html" for p in sorted(BOOK.glob("[0-9][0-9]*_*.ipynb"))]
        for href in ["00_introduction.html", "02_pyramid_pooling.html"]:
            page.goto(f"{url}/{href}")
            page.wait_for_load_state("load")
            figures = page.locator(".jp-OutputArea-output img")
            assert figures.count() >= 2, f"{href} shows {figures.count()} figures"
            sizes = page.evaluate("[...document.querySelectorAll('.jp-OutputArea-output img')]"
                                  ".map(i => [i.complete, i.naturalWidth])")
            assert all(done and width > 0 for done, width in sizes), f"{href}: a figure did not render"
            assert page.locator("nav.book-nav a", has_text="Contents").count() == 2
        pictures = explorer_pictures(site / "notebooks" / "02_pyramid_pooling.ipynb")
        assert len(pictures) == 2  # the bin-size and the pixel-context explorers
        shown = page.evaluate("[...document.querySelectorAll('img')].filter(i => i.naturalWidth > 0 &&"
                              " i.getBoundingClientRect().width > 100).map(i => i.src)")
        for png in pictures:
            assert png in shown, "an explorer's static picture is not on the page"
            base64.b64decode(png.split(",", 1)[1], validate=True)
        assert not page.locator(".jupyter-widgets").count()  # no empty widget area
        assert outside == [], f"the site fetched from elsewhere: {outside}"
        assert errors == [], errors
    assert json.loads((site / "notebooks" / "02_pyramid_pooling.ipynb").read_text())["cells"]


def test_front_page_shows_a_figure_every_chapter_its_takeaway_and_run_time(playwright_api, site, tmp_path):
    times = json.loads((ROOT / "results" / "book_run_times.json").read_text())["metrics"]
    with served(site) as url, chromium(playwright_api, tmp_path) as context:
        page = context.new_page()
        errors = console_errors(page)
        page.goto(f"{url}/")
        page.wait_for_load_state("load")
        widths = page.evaluate("[...document.querySelectorAll('figure img')].map(i => i.naturalWidth)")
        assert widths and all(w > 0 for w in widths), f"front-page figures: {widths}"
        rows = page.locator("tbody tr")
        chapters = sorted(BOOK.glob("[0-9][0-9]*_*.ipynb"))
        assert rows.count() == len(chapters)
        for k, path in enumerate(chapters):
            takeaway, run_time = rows.nth(k).locator("td").nth(2).inner_text(), rows.nth(k).locator("td").nth(3)
            assert len(takeaway) > 40, f"{path.stem}: no takeaway on the front page"
            assert path.stem in times, f"{path.stem}: no measured run time in results/book_run_times.json"
            assert re.match(r"\d+(\.\d)? (s|min)", run_time.inner_text()), run_time.inner_text()
        for text in ("For whom", "Run the book yourself", "pip install", "jupyter lab", "papermill",
                     "python -m pytest"):
            assert text in page.inner_text("body"), f"the front page does not say {text!r}"
        page.get_by_role("link", name="What the project has measured").click()
        page.wait_for_load_state("load")
        assert "Table 1" in page.inner_text("body") and page.locator("figure img").count() >= 5
        assert errors == [], errors


# Words that only prose has: a formula that contains one (outside \text{...}) is English typeset as maths.
PROSE_WORDS = {"the", "and", "of", "on", "to", "is", "in", "with", "for", "from", "by", "at", "are", "that",
               "this", "than", "each", "not", "or", "as", "we", "its", "it", "be", "was", "which", "when", "where"}
TEXT_COMMANDS = re.compile(r"\\(?:text\w*|mathrm|mbox|operatorname\*?|math\w+|label|tag)\s*\{[^{}]*\}")


def prose_in(tex: str) -> list[str]:
    """The prose words of a formula's TeX source, outside text commands, sub/superscripts and command names."""
    bare = re.sub(r"[_^]\{[^{}]*\}", " ", TEXT_COMMANDS.sub(" ", tex))  # H_{in}, x^{out}: labels, not prose
    bare = re.sub(r"\\[A-Za-z]+", " ", bare)
    return [w for w in re.findall(r"[A-Za-z']+", bare) if w.lower() in PROSE_WORDS]


def formulas_in_markdown(notebook: Path) -> list[str]:
    """The TeX of every $...$ and $$...$$ in a notebook's markdown cells (code spans and blocks left out)."""
    found = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"```.*?```|`[^`\n]*`", " ", cell.source, flags=re.S)
        text = text.replace("\\$", " ")
        displays = re.findall(r"\$\$(.+?)\$\$", text, re.S)
        text = re.sub(r"\$\$.+?\$\$", " ", text, flags=re.S)
        found += displays + re.findall(r"\$(.+?)\$", text, re.S)
    return [f.strip() for f in found]


def test_every_chapter_page_typesets_its_maths_and_no_prose(playwright_api, site, tmp_path):
    import test_book_text

    chapters = sorted(BOOK.glob("[0-9][0-9]*_*.ipynb"))
    problems: list[str] = []
    with served(site) as url, chromium(playwright_api, tmp_path) as context:
        page = context.new_page()
        errors = console_errors(page)
        for path in chapters:
            page.goto(f"{url}/{path.stem}.html")
            page.wait_for_function("!!(window.MathJax && window.MathJax.isReady)", timeout=60_000)
            page.evaluate("new Promise(done => MathJax.Hub.Queue(() => done(true)))")  # after the first typeset
            typeset = page.evaluate("[...document.querySelectorAll('.jp-MarkdownCell script[type^=\"math/tex\"]')]"
                                    ".map(s => s.textContent.trim())")
            expected = formulas_in_markdown(site / "notebooks" / path.name)
            if sorted(typeset) != sorted(expected):
                missing = sorted(set(expected) - set(typeset))[:3]
                extra = sorted(set(typeset) - set(expected))[:3]
                problems.append(f"{path.stem}: {len(typeset)} formulas typeset, {len(expected)} written; "
                                f"not typeset {missing}, typeset but not written as maths {extra}")
            everywhere = page.evaluate("[...document.querySelectorAll('script[type^=\"math/tex\"]')]"
                                       ".map(s => s.textContent)")
            prose = [tex for tex in everywhere if prose_in(tex)]
            if prose:
                problems.append(f"{path.stem}: prose typeset as maths: {prose[:3]}")
            for fragment in test_book_text.MATHS.get(path.stem, []):
                if not any(fragment in tex for tex in typeset):
                    problems.append(f"{path.stem}: its formula with {fragment!r} is not typeset")
            if page.locator(".MathJax_Error, merror, .merror").count():
                problems.append(f"{path.stem}: MathJax reports an error in a formula")
        assert errors == [], errors
    assert problems == [], "\n".join(problems)
