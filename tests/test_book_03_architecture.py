"""Chapter 03 (Fig. 3, dilated ResNet, output stride 8, cost, the network written by the reader) runs with tiny
parameters; asserts on its JSON record, its printed checks, and that its worked answers are the code it checks."""
import json
import re
from pathlib import Path

import nbformat
import pytest
from conftest import notebook_text

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_03_architecture(run_notebook, tmp_path):
    out = tmp_path / "o3"
    nb = run_notebook("03_architecture", backbone="lite", depths="resnet50", crop_size=97, time_size=33, time_iters=1,
                      check_size=33, out_dir=str(out))
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["depths"] == ["resnet50"] and record["config"]["crop_size"] == 97
    m = record["metrics"]
    # Fig. 3 from one forward pass of the lite PSPNet at 97: 512-channel map at 13 x 13, four 128-channel levels
    f3 = m["fig3_shapes"]
    assert f3["input"] == [1, 3, 97, 97] and f3["backbone.layer4"] == [1, 512, 13, 13]
    assert [f3[f"ppm.features.{i}"] for i in range(4)] == [[1, 128, b, b] for b in (1, 2, 3, 6)]
    assert f3["ppm"] == [1, 1024, 13, 13] and f3["cls"] == [1, 150, 13, 13] and f3["cls:upsampled"] == [1, 150, 97, 97]
    assert f3["backbone.layer3"] == [1, 256, 13, 13] and f3["aux:upsampled"] == [1, 150, 97, 97]
    # the exercise checks ran (their asserts passed, or papermill would have raised)
    text = notebook_text(nb)
    assert "exercise 4: my_pspnet_forward == PSPNet.forward (lite, input (1, 3, 33, 33))" in text
    assert "exercise 5: your dilated torchvision ResNet-50 maps 97x97 to (1, 2048, 13, 13)" in text
    assert "exercise 5: yours == package full, torchvision option == package contracted" in text
    assert "(1, 1024, 5, 5), (1, 2048, 5, 5)" in text  # stage 3 and 4 at check_size 33, both at 1/8
    # feature-map sizes at 97: stem 49, max-pool 25, stages 2-4 at 13 (output stride 8)
    sizes = {name: shape[2:] for name, shape in m["shapes"].items()}
    assert sizes["backbone.conv1"] == [49, 49] and sizes["backbone.maxpool"] == [25, 25]
    assert sizes["backbone.layer2"] == sizes["backbone.layer3"] == sizes["backbone.layer4"] == [13, 13]
    assert m["output_stride_sizes"]["8"][-1] == 13 and m["output_stride_sizes"]["32"][-1] == 4
    assert m["dilations"]["full"]["stage3"][0] == 2 and m["dilations"]["contracted"]["stage3"][0] == 1
    assert set(m["stems"]) == {"deep", "torchvision"}
    # the counts made on the authors' code (hszhao/semseg) and the reference GMACs, reproduced exactly
    for key, check in m["reference_checks"].items():
        for ours, ref in (("params_train", "ref_params_train"), ("params_infer", "ref_params_infer")):
            assert check[ref] is None or check[ours] == check[ref], (key, ours)
        assert check["gmacs"] == pytest.approx(check["ref_gmacs"], abs=0.05), key
    r50 = m["reference_checks"]["resnet50@473,C=150"]
    assert (r50["params_train"], r50["params_infer"], r50["ref_gmacs"]) == (49_180_908, 46_782_550, 161.9)
    r101 = m["reference_checks"]["resnet101@473,C=150"]
    assert (r101["params_train"], r101["params_infer"], r101["ref_gmacs"]) == (68_173_036, 65_774_678, 230.1)
    # FCN vs PSPNet cost and where the compute goes
    assert m["cost"]["resnet50/PSPNet"]["params"] == 46_782_550
    assert m["cost"]["resnet50/FCN"]["params"] < 46_782_550
    assert abs(sum(m["compute_share"].values()) - 1) < 1e-9 and "cls 3x3 conv" in m["compute_share"]
    assert m["ppm_params"] > 0 and m["cls_conv_params"] > m["ppm_params"]
    assert m["pspnet_minus_fcn_params"] is None  # the lite backbone is not in the cost table (depths=resnet50)
    assert set(m["timing_seconds"]) == {"FCN", "PSPNet"} and all(t > 0 for t in m["timing_seconds"].values())
    assert m["timing_gmacs"]["PSPNet"] > m["timing_gmacs"]["FCN"]
    assert {p.name for p in out.glob("*.png")} == {"fig3.png", "feature_map_sizes.png", "fcn_vs_pspnet_cost.png",
                                                    "compute_by_module.png"}


def test_03_worked_answers_are_the_code_the_chapter_checks():
    """Exercises 4 and 5: the code of each folded Answer is, verbatim, in the check cell that follows it."""
    cells = nbformat.read(Path(__file__).resolve().parents[1] / "book" / "03_architecture.ipynb", as_version=4).cells
    checked = 0
    for cell, nxt in zip(cells, cells[1:]):
        if cell.cell_type == "markdown" and nxt.cell_type == "code" and nxt.source.startswith(
                "# check the worked answer"):
            answer = re.search(r"<summary>Answer</summary>.*?```python\n(.*?)```", cell.source, re.S).group(1)
            assert answer.strip() and answer.strip() in nxt.source, cell.source[:40]
            checked += 1
    assert checked == 2
