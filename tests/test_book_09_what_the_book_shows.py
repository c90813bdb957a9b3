"""Chapter 09 (the claims ledger) runs in seconds on the stored records and on a folder without them; the ledger
reads declared claims and intervals in the direction the paper claims."""
import json

import pytest

from pspnet_lite.book import ledger

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_09_reads_the_stored_records(run_notebook, tmp_path):
    out = tmp_path / "o9"
    run_notebook("09_what_the_book_shows", out_dir=str(out))
    record = json.loads((out / "record.json").read_text())
    rows = {r["claim"]: r for r in record["ledger"]}
    assert len(rows) == len(ledger.LEDGER)
    assert rows["dimension reduction helps"]["verdict"] == "not tested here"
    full = rows["the full PSPNet beats the dilated FCN"]
    stored = json.loads((ledger.resolve_path("results") / "05_ablation_cpu_context_scenes.json").read_text())
    c3 = next(c for c in stored["claims"] if c["name"] == "C3")
    assert (full["verdict"], full["mean"], full["seeds"]) == (c3["verdict"], c3["mean"], len(c3["seeds"]))
    assert [s["step"] for s in record["table4_steps"]] == ["+DA", "+AL", "+PSP", "ResNet269", "+MS"]
    assert record["table4_steps"][2]["paper"] == 4.45 and (out / "table4_waterfall.png").is_file()


def test_09_without_records_names_what_is_missing(run_notebook, tmp_path):
    out = tmp_path / "o9"
    run_notebook("09_what_the_book_shows", results_dir=str(tmp_path / "empty"), out_dir=str(out))
    record = json.loads((out / "record.json").read_text())
    missing = [r for r in record["ledger"] if r["verdict"].startswith("no record")]
    assert missing and all("is missing (run chapter" in r["verdict"] for r in missing)


def test_an_interval_is_read_in_the_claimed_direction(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"intervals": {"a - b": {"mean": -3.0, "ci95": [-5.0, -1.0],
                                                                         "seeds": 3}}}))
    smaller_is_better = ledger.Entry("b beats a", "x", "04b", "r.json", "a - b", interval=-1)
    row = ledger.read_entry(smaller_is_better, tmp_path)
    assert row["verdict"] == "shown (uncorrected)" and row["mean"] == 3.0 and row["ci95"] == [1.0, 5.0]
    larger = ledger.read_entry(ledger.Entry("a beats b", "x", "04b", "r.json", "a - b", interval=+1), tmp_path)
    assert larger["verdict"] == "reversed (uncorrected)"
    absent = ledger.read_entry(ledger.Entry("c", "x", "05", "r.json", "C1"), tmp_path)
    assert absent["verdict"] == "r.json has no claim 'C1'"
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not a JSON record"):
        ledger.read_entry(ledger.Entry("c", "x", "05", "bad.json", "C1"), tmp_path)
