import json

import pytest
import torch

from pspnet_lite import book
from pspnet_lite.train import get_preset
from pspnet_lite.train.distributed import resolve_device


@pytest.mark.parametrize("value, expected", [
    ("0,1,2", [0, 1, 2]), ("[0, 1]", [0, 1]), ([3, 4], [3, 4]), (5, [5]), ("7", [7]), ((1, 2), [1, 2]),
    (None, []), ("", []), ("none", []),
])
def test_parse_list_accepts_every_papermill_form(value, expected):
    assert book.parse_list(value) == expected


def test_parse_list_casts_and_rejects():
    assert book.parse_list("0.5, 1.0", float) == [0.5, 1.0]
    with pytest.raises(ValueError, match="abc"):
        book.parse_list("abc", int)
    with pytest.raises(ValueError, match="cannot read"):
        book.parse_list("[1, 2", int)
    with pytest.raises(ValueError, match="seeds"):  # the error names the chapter parameter
        book.parse_list("0,x", int, "seeds")


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


def _settings(cfg) -> dict:
    """A config's fields without the informational ones (its preset's name and the out_dir derived from it)."""
    return {k: v for k, v in cfg.flat_dict().items() if k not in ("preset", "out_dir")}


def test_chapter_presets_hold_the_chapters_cpu_settings():
    """The chapters' default presets are the CPU settings chapters 01, 05 and 06 spelled out before they were named."""
    assert _settings(get_preset("scenes-observe")) == _settings(get_preset("scenes-lite-fcn", iters=200, val_every=0))
    ablation = dict(image_size=128, crop_size=128, iters=400, batch_size=4, lr=0.02, head_lr_mult=1.0, augment=False,
                    num_train_images=1000, num_val_images=400, val_batch_size=50, val_every=0, ckpt_every=0)
    assert _settings(get_preset("scenes-ablation")) == _settings(get_preset("scenes-lite", **ablation))
    depth = dict(image_size=64, crop_size=64, iters=300, batch_size=8, lr=0.02, num_train_images=1000, scale_min=0.5,
                 scale_max=2.0, num_val_images=100, val_batch_size=50, val_every=0, ckpt_every=0)
    assert _settings(get_preset("scenes-depth")) == _settings(get_preset("scenes-lite", **depth))


def test_preset_config_means_one_thing_in_every_chapter():
    assert book.preset_config("paper", None) == get_preset("ade20k-pspnet50")  # "paper": the data set's paper preset
    assert book.preset_config("paper", "voc").preset == "voc-pspnet101"
    assert book.preset_config("paper", "context_scenes").preset == "ade20k-pspnet50"
    cfg = book.preset_config("scenes-lite", None, iters=None, lr=0.5, bins=())  # None: the preset's
    assert (cfg.iters, cfg.lr, cfg.model.bins, cfg.dataset) == (300, 0.5, (), "context_scenes")
    moved = book.preset_config("scenes-ablation", "ade20k", data_root="/data/ade")
    assert (moved.dataset, moved.image_size, moved.model.num_classes, moved.iters) == ("ade20k", None, None, 400)
    with pytest.raises(ValueError, match="unknown preset 'cpu'.*--list-presets"):  # the old "cpu" names the fix
        book.preset_config("cpu", "context_scenes")


def test_grid_base_config():
    cpu = book.grid_base_config("scenes-ablation", dataset="context_scenes", data_root=None, device="cpu", lr=None,
                                iters=7)
    assert (cpu.iters, cpu.lr, cpu.val_every, cpu.ckpt_every, cpu.device) == (7, 0.02, 0, 0, "cpu")
    paper = book.grid_base_config("paper", dataset="ade20k", data_root="/data/ade", device=torch.device("cpu"))
    assert paper == get_preset("ade20k-pspnet50", data_root="/data/ade", device="cpu", ckpt_every=1000)
    scenes = book.grid_base_config("paper", dataset="context_scenes", data_root=None, device="cpu", image_size=64)
    assert (scenes.model.num_classes, scenes.image_size, scenes.model.backbone) == (None, 64, "resnet50")
    real = book.grid_base_config("scenes-depth", dataset="voc", data_root="/v", device="cpu", image_size=64)
    assert (real.image_size, real.ckpt_every, real.model.num_classes) == (None, 0, None)  # image_size: scenes only


def test_records_like_finds_the_same_grid_with_other_settings(tmp_path):
    """Chapter 05 sets its run next to the stored records of its grid in another precision or iteration count."""
    grid = dict(rows=["baseline", "B1+AVE"], seeds=[0, 1, 2], crop_size=128)
    book.write_record(tmp_path / "05_a_fp32.json", name="a", config=dict(grid, amp="off", iters=300), metrics={},
                      seconds=1)
    book.write_record(tmp_path / "05_b_450.json", name="b", config=dict(grid, amp="bf16", iters=450), metrics={},
                      seconds=1)
    book.write_record(tmp_path / "05_c_same.json", name="c", config=dict(grid, amp="bf16", iters=300), metrics={},
                      seconds=1)
    book.write_record(tmp_path / "05_d_crop.json", name="d", config=dict(grid, crop_size=96, amp="off", iters=300),
                      metrics={}, seconds=1)
    book.write_record(tmp_path / "05_e_rows.json", name="e", config=dict(amp="off", iters=300), metrics={}, seconds=1)
    (tmp_path / "06_other.json").write_text("{}")
    mine = dict(grid, rows=("baseline", "B1+AVE"), amp="bf16", iters=300, out_dir="/elsewhere")  # tuples as lists
    found = book.records_like(tmp_path, "05_*.json", mine, match=("rows", "seeds", "crop_size"), vary=("amp", "iters"))
    assert list(found) == ["05_a_fp32.json", "05_b_450.json"]  # not itself, not another crop, not a record lacking rows
    assert found["05_a_fp32.json"][1] == {"amp": "off"} and found["05_b_450.json"][1] == {"iters": 450}
    assert found["05_b_450.json"][0]["name"] == "b"
    (tmp_path / "05_f_broken.json").write_text("not json")
    with pytest.raises(ValueError, match="05_f_broken.json: not a reproduction record"):
        book.records_like(tmp_path, "05_*.json", mine, match=("rows",), vary=("amp",))
