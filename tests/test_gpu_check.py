"""benchmarks/gpu_check.py runs every step to completion on the CPU (``--device cpu --quick``) and writes its
record; a GPU asked for where there is none, and ``--chapters`` without papermill, are one error line each."""
import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import ENV, ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
STEPS = ["fabricate_data", "train_inprocess", "train_torchrun", "evaluate_slide", "throughput_train",
         "throughput_infer", "throughput_trainer", "multi_gpu_smoke", "throughput_compile"]


def run_script(*argv, env=None, timeout=300):
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=ROOT,
                          env=env or ENV, timeout=timeout)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``--device cpu --quick`` run: (completed process, record)."""
    out = tmp_path_factory.mktemp("gpu_check") / "sub" / "record.json"
    proc = run_script("--device", "cpu", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module (its helpers); PYTHONPATH already names the root, so importing it changes nothing."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_step_runs_and_is_recorded(quick):
    proc, record = quick
    assert record["format"] == "pspnet_lite.gpu_check/1" and record["ok"] is True
    assert record["quick"] is True and record["device"] == "cpu" and record["wall_s"] > 0
    assert list(record["steps"]) == STEPS
    for name, step in record["steps"].items():
        assert step["ok"] is True and "error" not in step and step["seconds"] >= 0, (name, step)
    env = record["env"]
    assert env["torch"] and env["tqdm"] == "installed" and set(env["tf32"]) >= {"cudnn.allow_tf32"}
    data = record["steps"]["fabricate_data"]
    assert (data["train_images"], data["val_images"]) == (8, 2) and data["root"].endswith("ADEChallengeData2016")
    tr = record["steps"]["train_inprocess"]
    assert tr["preset"] == "ade20k-pspnet50" and tr["pretrained"].startswith("none (from scratch")
    assert (tr["iterations"], tr["global_batch"], tr["micro_batch"]) == (2, 4, 2) and len(tr["losses"]) == 2
    run = record["steps"]["train_torchrun"]
    assert run["iterations"] == 1 and run["world_size"] == 1 and "--nproc_per_node=1" in run["command"]
    assert run["nccl_probe"] == dict(run["nccl_probe"], backend="gloo", world_size=1, all_reduce=1.0)
    smoke = record["steps"]["multi_gpu_smoke"]
    assert smoke["skipped"] == "needs 2 GPUs; this machine has 0 (--cpu-smoke rehearses it)"
    ev = record["steps"]["evaluate_slide"]
    assert ev["protocol"] == "authors-ss: ss+flip | slide 32 stride 22 | long side 48 | 8k+1" and ev["views"] == 2
    assert ev["weights"] == "the weights of train_inprocess" and 0 <= ev["miou"] <= 1


def test_the_throughput_rows(quick):
    _, record = quick
    t = record["throughput"]
    assert t["flops_per_train_image"] > 0
    assert [(r["precision"], r["memory_format"], r["compile"]) for r in t["train"]] == [
        ("fp32", "contiguous", False), ("bf16", "contiguous", False), ("bf16", "channels_last", False),
        ("bf16", "channels_last", True)]
    for r in t["train"]:
        assert r["ok"] and r["images_per_s"] > 0 and r["peak_mb"] >= 0, r
        assert (r["global_batch"], r["micro_batch"], r["accumulation_steps"], r["crop"]) == (4, 2, 2, 32)
        frac = r["fraction_of_bf16_peak"]
        assert frac is None or 0 < frac < 1
    assert "tf32" in t["train"][0] and t["train"][3]["compile_backend"] == "eager"
    assert [(r["protocol"], r["forward_passes_per_image"]) for r in t["infer"]] == [
        ("ss", 1), ("ss+flip", 2), ("authors-slide", 8)]
    assert all(r["ok"] and r["images_per_s"] > 0 for r in t["infer"])
    assert record["goal"]["met"] is None and record["goal"]["note"] == "not comparable: quick mode"
    tr = t["trainer"]  # through the trainer: torchrun, JPEG loading in a DataLoader worker, the logged time
    assert tr["ok"] and tr["images_per_s"] > 0 and (tr["processes"], tr["gpus"], tr["images_per_s_per_gpu"]) == (
        1, 0, None)
    assert (tr["global_batch"], tr["micro_batch"], tr["workers_per_rank"], tr["crop"]) == (4, 2, 1, 32)
    assert (tr["iterations"], tr["warmup_iterations"], tr["ddp_sync_bn"]) == (3, 1, False)


def test_the_summary_table(quick):
    proc, _ = quick
    out = proc.stdout
    for name in STEPS:
        result = " skipped " if name == "multi_gpu_smoke" else " ok "  # no 2 GPUs here
        assert f"] {name} ..." in out and any(line.startswith(name) and result in line for line in out.splitlines())
    assert "training throughput: PSPNet lite, crop 32, global batch 4" in out
    assert "authors-slide" in out and "goal (200 training img/s at 473 in bf16" in out and "record: " in out
    assert "through the trainer (torchrun, JPEG loading): " in out


def test_the_two_gpu_smoke_rehearsed_on_two_cpu_processes(tmp_path):
    """--cpu-smoke: the smoke run over 2 gloo processes: micro-batch accumulation (no_sync), a checkpoint every 2
    iterations, rank 1 killed after the checkpoint of iteration 2, torchrun restarts both, they finish from last.pt."""
    out = tmp_path / "smoke.json"
    proc = run_script("--device", "cpu", "--quick", "--only", "multi_gpu_smoke", "--cpu-smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    smoke = json.loads(out.read_text())["steps"]["multi_gpu_smoke"]
    assert smoke["ok"] and "skipped" not in smoke and smoke["backend"] == "gloo" and smoke["iterations"] == 4
    assert (smoke["micro_batch"], smoke["accumulation_steps"], smoke["checkpoint_every"]) == (1, 2, 2)
    assert smoke["killed"] == "rank 1 (SIGKILL) after the checkpoint of iteration 2" and len(smoke["losses"]) == 4
    assert "compile_vs_eager" not in smoke and smoke["summary"].endswith("compile vs eager: GPUs only")


def test_cuda_without_a_gpu_is_one_line():
    proc = run_script("--device", "cuda", env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: --device cuda but no CUDA GPU is visible") and \
        proc.stderr.strip().endswith("run on a GPU machine, or use --device cpu --quick")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_chapters_without_papermill_names_the_install(tmp_path):
    (tmp_path / "papermill.py").write_text("raise ImportError('no papermill here')\n")
    env = {**ENV, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    proc = run_script("--device", "cpu", "--quick", "--chapters", "--out", str(tmp_path / "r.json"), env=env,
                      timeout=120)
    assert proc.returncode == 2 and proc.stdout == "" and not (tmp_path / "r.json").exists()
    assert proc.stderr.strip() == ("error: --chapters needs papermill and a python3 Jupyter kernel: pip install "
                                   "papermill ipykernel (or pip install -e '.[book]')")


def test_peak_table_and_file_names(gpu_check):
    peak = gpu_check.bf16_peak_tflops
    assert peak("NVIDIA H100 80GB HBM3") == 989 and peak("NVIDIA H100 PCIe") == 756 and peak("NVIDIA H100 NVL") == 835
    assert peak("NVIDIA H200") == 989 and peak("NVIDIA GH200 480GB") == 989
    assert peak("NVIDIA A100-SXM4-80GB") == peak("NVIDIA A100 80GB PCIe") == 312
    assert peak("NVIDIA L4") == 121 and peak("NVIDIA L40S") == 362 and peak("NVIDIA A10") == 125
    assert peak("Tesla V100-SXM2-16GB") is None and peak(None) is None
    assert gpu_check.gpu_slug("NVIDIA H200") == "nvidia-h200"
    assert gpu_check.gpu_slug("NVIDIA A100-SXM4-80GB") == "nvidia-a100-sxm4-80gb"
    assert set(gpu_check.CHAPTER_PARAMETERS) == {"01_observations", "04_deep_supervision", "04b_training_recipe",
                                                 "05_ablation", "06_depth_and_multiscale", "07_benchmarks"}
