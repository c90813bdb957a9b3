"""The package's layout by role: no import cycle, arrows point down, small modules, honest imports, lint."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pspnet_lite"
NETWORK = {"backbone", "ppm", "model", "losses", "weights", "labels"}  # the paper's network and its weights
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names of the project modules a ``from ... import ...`` statement reads."""
    if node.level:
        base = current.split(".") if is_package else current.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    return [n for n in names if n.startswith("pspnet_lite")]


def import_graph() -> dict[str, set[str]]:
    """Module -> project modules it imports at module level or anywhere (every import counts)."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                edges |= {n for n in resolve(name, path.name == "__init__.py", node) if n in mods}
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in mods}
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    # a package's __init__ importing its own submodules is not a cycle of roles: leave those edges out
    graph = {n: {m for m in e if not n.startswith(m + ".")} for n, e in import_graph().items()}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_network_imports_nothing_above_it():
    for name, edges in import_graph().items():
        if name.split(".")[-1] in NETWORK and name.count(".") == 1:
            above = {e for e in edges if e.split(".")[1] not in NETWORK}
            assert not above, f"{name} (the network) imports {sorted(above)}"


def test_training_and_scoring_do_not_import_the_book_or_the_command_lines():
    for name, edges in import_graph().items():
        if name.startswith(("pspnet_lite.train", "pspnet_lite.data", "pspnet_lite.metrics", "pspnet_lite.inference",
                            "pspnet_lite.cityscapes_metrics", "pspnet_lite.submission")):
            bad = {e for e in edges if e.startswith(("pspnet_lite.book", "pspnet_lite.evaluate",
                                                      "pspnet_lite.predict", "pspnet_lite.bench"))}
            assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_the_line_limit(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (limit {MAX_LINES}): split it by role"


def test_function_level_imports_are_deliberately_lazy():
    """An import inside a function is allowed only for a heavy optional dependency, with a ``lazy`` comment."""
    unexplained = []
    for name, path in modules().items():
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    window = " ".join(source[max(0, inner.lineno - 3): inner.end_lineno])
                    if "lazy" not in window:
                        unexplained.append(f"{name}:{inner.lineno}: {source[inner.lineno - 1].strip()}")
    assert not unexplained, "function-level imports without a '# lazy: why' comment:\n" + "\n".join(unexplained)


def test_nothing_cites_a_file_readers_do_not_have():
    hits = [str(p.relative_to(ROOT)) for p in [*ROOT.glob("pspnet_lite/**/*.py"), *ROOT.glob("book/*.py"),
                                                 *ROOT.glob("*.md"), *ROOT.glob("results/*.md"),
                                                 *ROOT.glob("data_scripts/*.py"), *ROOT.glob("benchmarks/*.py")]
            if "REFERENCES" in p.read_text()]
    assert not hits, f"these cite REFERENCES.md, which is not in the repository: {hits}"


def test_ruff_check_passes():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    done = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
