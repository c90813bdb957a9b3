"""benchmarks/time_chapters.py: times a chapter's default papermill run from an empty cache (and a cached re-run),
writes the record the README's table of run times comes from, and merges with --update."""
import importlib.util
import json

import pytest
from conftest import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def time_chapters():
    spec = importlib.util.spec_from_file_location("time_chapters", ROOT / "benchmarks" / "time_chapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(module, *argv):
    return module.main(module.get_args_parser().parse_args(list(argv)))


def test_times_a_first_and_a_cached_run_and_updates_the_record(time_chapters, tmp_path):
    pytest.importorskip("papermill")
    out = tmp_path / "times.json"
    times = run(time_chapters, "--chapters", "00_introduction", "--cached", "00_introduction", "--out", str(out),
                "--work", str(tmp_path / "w1"))
    assert list(times) == ["00_introduction", "00_introduction (cached)"]
    record = json.loads(out.read_text())
    first = record["metrics"]["00_introduction"]
    assert first["seconds"] > 0 and first["minutes"] == pytest.approx(first["seconds"] / 60, abs=0.01)
    assert "papermill book/00_introduction.ipynb" in first["command"] and str(tmp_path / "w1") in first["command"]
    assert record["seconds"] == first["seconds"]  # the total counts first runs only
    assert (tmp_path / "w1" / "00_introduction.out.ipynb").is_file()
    # --update keeps the other entries; the kept work folder must start empty
    stored = dict(record["metrics"], **{"99_elsewhere": {"seconds": 5.0, "minutes": 0.08}})
    out.write_text(json.dumps(dict(record, metrics=stored)))
    with pytest.raises(SystemExit, match="exists: a first run needs an empty cache"):
        run(time_chapters, "--chapters", "00_introduction", "--out", str(out), "--work", str(tmp_path / "w1"))
    run(time_chapters, "--chapters", "00_introduction", "--update", "--out", str(out), "--work", str(tmp_path / "w2"))
    merged = json.loads(out.read_text())
    assert set(merged["metrics"]) == {"00_introduction", "00_introduction (cached)", "99_elsewhere"}
    assert str(tmp_path / "w2") in merged["metrics"]["00_introduction"]["command"]
    assert merged["seconds"] == pytest.approx(merged["metrics"]["00_introduction"]["seconds"] + 5.0)


def test_chapters_are_in_book_order_and_unknown_names_are_listed(time_chapters):
    names = [p.stem for p in time_chapters.chapters(None)]
    assert names.index("04_deep_supervision") < names.index("04b_training_recipe") < names.index("05_ablation")
    with pytest.raises(SystemExit, match=r"unknown chapter\(s\) \['05_ablation_typo'\]; the book has"):
        time_chapters.chapters("05_ablation_typo")
