import json

import pytest
import torch

from pspnet_lite import book


@pytest.mark.parametrize("value, expected", [
    ("0,1,2", [0, 1, 2]), ("[0, 1]", [0, 1]), ([3, 4], [3, 4]), (5, [5]), ("7", [7]), ((1, 2), [1, 2]),
    (None, []),
])
def test_parse_list_accepts_every_papermill_form(value, expected):
    assert book.parse_list(value) == expected


def test_parse_list_casts_and_rejects():
    assert book.parse_list("0.5, 1.0", float) == [0.5, 1.0]
    with pytest.raises(ValueError, match="abc"):
        book.parse_list("abc", int)
    with pytest.raises(ValueError, match="cannot read"):
        book.parse_list("[1, 2", int)


def test_resolve_path_is_relative_to_the_repo_root(tmp_path):
    assert book.resolve_path("runs/x") == book.repo_root() / "runs" / "x"
    assert book.resolve_path(tmp_path) == tmp_path
    assert (book.repo_root() / "pspnet_lite").is_dir()


def test_pick_device():
    assert book.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert book.pick_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="no CUDA"):
            book.pick_device("cuda")
        with pytest.raises(ValueError, match="device='cpu'"):
            book.pick_device(torch.device("cuda", 0))
    assert book.pick_device(torch.device("cpu")) == torch.device("cpu")
    from pspnet_lite.distributed import resolve_device

    assert book.pick_device("auto") == resolve_device("auto")  # one rule for notebooks and command lines


def test_write_record_is_complete_json(tmp_path):
    path = book.write_record(tmp_path / "r.json", name="t", config={"a": 1}, metrics={"miou": 0.5}, seconds=1.234)
    record = json.loads(path.read_text())
    assert record["config"] == {"a": 1} and record["metrics"] == {"miou": 0.5}
    assert record["seconds"] == 1.23 and record["hardware"]["cpu_count"] >= 1
    assert not list(tmp_path.glob("*.tmp"))


def test_setup_seeds_and_prints(capsys):
    device = book.setup("cpu", seed=3)
    first = torch.rand(2)
    book.setup("cpu", seed=3)
    assert torch.equal(first, torch.rand(2)) and device.type == "cpu"
    assert "torch" in capsys.readouterr().out
