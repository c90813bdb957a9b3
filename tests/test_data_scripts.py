"""data_scripts/ on small fabricated archives laid out like the real ones (no network), and the
resumable downloader against a local HTTP server."""
import http.server
import importlib.util
import io
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pspnet_lite.data import ADE20K, Cityscapes, VOCAug
from pspnet_lite.data import prepare as P
from pspnet_lite.data.datasets import CITYSCAPES_LABEL_TO_TRAIN, VOC_PALETTE

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*the official split has:UserWarning")
QUIET = ["--quiet", "--workers", "1"]


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "data_scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _jpg(h=20, w=30, seed=0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", rgb)[1].tobytes()


def _png(arr, palette=None) -> bytes:
    im = Image.fromarray(arr)
    if palette is not None:
        im = im.convert("P") if im.mode != "P" else im
        im.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------------------------------------- ADE20K
def make_ade_zip(path: Path) -> dict:
    raws = {}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ADEChallengeData2016/objectInfo150.txt", "Idx\tRatio\tTrain\tVal\tName\n")
        for split, sub, n in (("train", "training", 2), ("val", "validation", 1)):
            for i in range(n):
                stem = f"ADE_{split}_{i + 1:08d}"
                raw = np.random.default_rng(i).integers(0, 151, (20, 30)).astype(np.uint8)
                raw[0, :3] = [0, 1, 150]
                zf.writestr(f"ADEChallengeData2016/images/{sub}/{stem}.jpg", _jpg(seed=i))
                zf.writestr(f"ADEChallengeData2016/annotations/{sub}/{stem}.png", _png(raw))
                raws[(split, i)] = raw
    return raws


def test_prepare_ade20k_from_archive(tmp_path, capsys):
    mod = script("prepare_ade20k")
    archive, root = tmp_path / "ADEChallengeData2016.zip", tmp_path / "ade"
    raws = make_ade_zip(archive)
    with pytest.raises(ValueError, match="checksum mismatch.*7328b3957e407ddae1d3cbf487f149ef"):
        mod.main(["--archive", str(archive), "--root", str(root), *QUIET])
    assert mod.main(["--archive", str(archive), "--root", str(root), "--no-verify", *QUIET]) == 0
    base = root / "ADEChallengeData2016"
    assert (base / "train.txt").read_text().splitlines() == [
        "images/training/ADE_train_00000001.jpg annotations/training/ADE_train_00000001.png",
        "images/training/ADE_train_00000002.jpg annotations/training/ADE_train_00000002.png"]
    assert "ADE20K train: 2 samples  (WARNING: the official split has 20210)" in capsys.readouterr().out
    ds = ADE20K(root, "train")
    for i in range(2):
        mask = ds.load(i)[1]
        raw = raws[("train", i)]
        assert mask[0, :3].tolist() == [255, 0, 149]
        np.testing.assert_array_equal(mask, np.where(raw == 0, 255, raw.astype(np.int64) - 1))
    # idempotent: a second run does nothing; --force redoes it
    stamp = (base / "train.txt").stat().st_mtime_ns
    assert mod.main(["--archive", str(archive), "--root", str(root), "--no-verify", *QUIET]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert (base / "train.txt").stat().st_mtime_ns == stamp
    assert mod.main(["--archive", str(archive), "--root", str(root), "--no-verify", "--force", *QUIET]) == 0
    assert "already prepared" not in capsys.readouterr().out


def test_help_of_every_script(capsys):
    for name in ("prepare_ade20k", "prepare_voc", "prepare_cityscapes"):
        with pytest.raises(SystemExit) as e:
            script(name).main(["--help"])
        assert e.value.code == 0
        assert "--root" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["prepare_ade20k", "prepare_voc", "prepare_cityscapes"])
def test_bad_values_of_every_script_raise_errors_naming_them(tmp_path, name):
    mod = script(name)
    for workers in ("two", "0", "-1"):
        with pytest.raises(ValueError, match=f"--workers must be a whole number >= 1; got '{workers}'"):
            mod.main(["--root", str(tmp_path / "root"), "--workers", workers, "--quiet"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--root .*file/sub: .*file is a file, not a directory; pass a directory"):
        mod.main(["--root", str(tmp_path / "file" / "sub"), "--quiet"])
    assert not (tmp_path / "root").exists()  # nothing is written before the values are checked


def test_a_script_run_as_a_program_prints_one_error_line(tmp_path):
    missing = tmp_path / "no.zip"
    r = subprocess.run([sys.executable, str(ROOT / "data_scripts" / "prepare_ade20k.py"), "--root",
                        str(tmp_path / "ade"), "--archive", str(missing), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [f"error: archive {missing} does not exist; check the path or leave the option "
                                     f"out to download it"]
    r = subprocess.run([sys.executable, str(ROOT / "data_scripts" / "prepare_cityscapes.py"), "--root",
                        str(tmp_path / "cs"), "--gtfine-zip", str(missing)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith(f"error: --gtfine-zip {missing} does not exist; pass the path of the downloaded "
                               f"gtFine_trainvaltest.zip")


# ------------------------------------------------------------------------------------ VOC 2012 + SBD
VOC_TRAIN, VOC_VAL = ["2007_000032", "2007_000039"], ["2007_000033", "2007_000042"]
SBD_TRAIN, SBD_VAL = ["2007_000032", "2008_000002", "2007_000033"], ["2008_000003"]


def _sbd_mat(seg: np.ndarray) -> bytes:
    from scipy.io import savemat

    boundaries = np.empty((21, 1), dtype=object)  # a cell array of per-class edge maps, as in SBD
    for k in range(21):
        boundaries[k, 0] = np.zeros(seg.shape, np.uint8)
    buf = io.BytesIO()
    savemat(buf, {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.unique(seg[seg > 0]).astype(np.uint8),
                            "Boundaries": boundaries}})
    return buf.getvalue()


def make_voc_archives(tmp_path: Path):
    voc_labels, sbd_labels = {}, {}
    voc_tar, sbd_tgz = tmp_path / "VOCtrainval_11-May-2012.tar", tmp_path / "benchmark.tgz"
    with tarfile.open(voc_tar, "w") as tf:
        d = "VOCdevkit/VOC2012"
        for k, i in enumerate(VOC_TRAIN + VOC_VAL + ["2008_000002"]):  # 2008_000003 only in SBD's img/
            _add(tf, f"{d}/JPEGImages/{i}.jpg", _jpg(seed=k))
        for k, i in enumerate(VOC_TRAIN + VOC_VAL):
            lab = np.random.default_rng(10 + k).integers(0, 21, (20, 30)).astype(np.uint8)
            lab[5, :] = 255  # VOC's object borders
            voc_labels[i] = lab
            _add(tf, f"{d}/SegmentationClass/{i}.png", _png(lab, VOC_PALETTE.repeat(13, 0)[:256]))
        _add(tf, f"{d}/ImageSets/Segmentation/train.txt", ("\n".join(VOC_TRAIN) + "\n").encode())
        _add(tf, f"{d}/ImageSets/Segmentation/val.txt", ("\n".join(VOC_VAL) + "\n").encode())
        _add(tf, f"{d}/Annotations/{VOC_TRAIN[0]}.xml", b"<annotation/>")
    with tarfile.open(sbd_tgz, "w:gz") as tf:
        d = "benchmark_RELEASE/dataset"
        for k, i in enumerate(sorted(set(SBD_TRAIN + SBD_VAL))):
            seg = np.random.default_rng(20 + k).integers(0, 21, (20, 30)).astype(np.uint8)
            sbd_labels[i] = seg
            _add(tf, f"{d}/cls/{i}.mat", _sbd_mat(seg))
            _add(tf, f"{d}/inst/{i}.mat", b"instance labels, not needed")
            _add(tf, f"{d}/img/{i}.jpg", _jpg(seed=30 + k))
        _add(tf, f"{d}/train.txt", ("\n".join(SBD_TRAIN) + "\n").encode())
        _add(tf, f"{d}/val.txt", ("\n".join(SBD_VAL) + "\n").encode())
    return voc_tar, sbd_tgz, voc_labels, sbd_labels


def test_fabricated_sbd_mat_has_the_real_struct_layout(tmp_path):
    from scipy.io import loadmat

    seg = np.arange(600, dtype=np.uint8).reshape(20, 30) % 21
    (tmp_path / "x.mat").write_bytes(_sbd_mat(seg))
    # torchvision.datasets.SBDataset reads it this way
    np.testing.assert_array_equal(loadmat(tmp_path / "x.mat")["GTcls"][0]["Segmentation"][0], seg)
    np.testing.assert_array_equal(P.sbd_mat_to_mask(tmp_path / "x.mat"), seg)


def test_prepare_voc_builds_train_aug(tmp_path, capsys):
    mod = script("prepare_voc")
    voc_tar, sbd_tgz, voc_labels, sbd_labels = make_voc_archives(tmp_path)
    root = tmp_path / "voc"
    args = ["--voc-archive", str(voc_tar), "--sbd-archive", str(sbd_tgz), "--root", str(root), "--no-verify", *QUIET]
    assert mod.main(args) == 0
    base = root / "VOCdevkit" / "VOC2012"
    train_aug = (base / "ImageSets/SegmentationAug/train_aug.txt").read_text().split()
    # (SBD train + SBD val + VOC train) - VOC val
    assert train_aug == ["2007_000032", "2007_000039", "2008_000002", "2008_000003"]
    assert not (root / "benchmark_RELEASE/dataset/inst").exists()
    assert (base / "JPEGImages/2008_000003.jpg").exists()  # copied from SBD's img/
    aug = base / "SegmentationClassAug"
    for i in VOC_TRAIN + VOC_VAL:  # VOC's own labels win, borders kept
        np.testing.assert_array_equal(np.array(Image.open(aug / f"{i}.png")), voc_labels[i])
    for i in ("2008_000002", "2008_000003"):  # SBD-only images come from the .mat files
        np.testing.assert_array_equal(np.array(Image.open(aug / f"{i}.png")), sbd_labels[i])
    assert "VOC aug train_aug: 4 samples  (WARNING: the official split has 10582)" in capsys.readouterr().out
    train, val = VOCAug(root, "train"), VOCAug(root, "val")
    assert len(train) == 4 and len(val) == 2
    np.testing.assert_array_equal(val.load(0)[1], voc_labels["2007_000033"])
    assert train.validate(progress=False)["checked"] == 4
    assert mod.main(args) == 0 and "already prepared" in capsys.readouterr().out


def test_prepare_voc_bad_checksum_names_both(tmp_path):
    voc_tar, sbd_tgz, _, _ = make_voc_archives(tmp_path)
    with pytest.raises(ValueError, match="6cd6e144f989b92b3379bac3b3de84fd"):
        script("prepare_voc").main(["--voc-archive", str(voc_tar), "--sbd-archive", str(sbd_tgz),
                                    "--root", str(tmp_path / "voc"), *QUIET])


# ------------------------------------------------------------------------------------------ Cityscapes
def make_cityscapes_tree(root: Path) -> dict:
    ids = {}
    for split, cities in (("train", ["aachen", "bochum"]), ("val", ["lindau"])):
        for k, city in enumerate(cities):
            stem = f"{city}_000000_000019"
            img = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(img), np.full((16, 34, 3), 80 + k, np.uint8))
            lab = np.arange(34, dtype=np.uint8)[None].repeat(16, 0)  # every labelId 0..33 once per row
            lab[0, 0] = 255 - k  # stray values map to ignore too
            gt = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            gt.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(gt), lab)
            ids[(split, city)] = lab
    return ids


TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
            26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def test_prepare_cityscapes_explains_the_manual_download(tmp_path, capsys):
    assert script("prepare_cityscapes").main(["--root", str(tmp_path / "cs"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "gtFine_trainvaltest.zip" in err and "leftImg8bit_trainvaltest.zip" in err and "login" in err


def test_prepare_cityscapes_converts_label_ids(tmp_path, capsys):
    src = tmp_path / "src"
    ids = make_cityscapes_tree(src)
    root = tmp_path / "cs"
    root.mkdir()
    for sub, zip_name in (("gtFine", "gtFine_trainvaltest.zip"), ("leftImg8bit", "leftImg8bit_trainvaltest.zip")):
        with zipfile.ZipFile(root / zip_name, "w") as zf:  # the zips as downloaded, put in ROOT
            for f in sorted((src / sub).rglob("*.png")):
                zf.write(f, f.relative_to(src).as_posix())
    assert script("prepare_cityscapes").main(["--root", str(root), *QUIET]) == 0
    for (split, city), lab in ids.items():
        out = cv2.imread(str(root / "gtFine" / split / city / f"{city}_000000_000019_gtFine_labelTrainIds.png"),
                         cv2.IMREAD_UNCHANGED)
        expected = np.vectorize(lambda v: TRAIN_ID.get(int(v), 255))(lab)
        np.testing.assert_array_equal(out, expected)
    assert (root / "val.txt").read_text() == ("leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png "
                                              "gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png\n")
    ds = Cityscapes(root, "train")
    assert len(ds) == 2 and ds.samples[0][1].name.endswith("labelTrainIds.png")
    assert ds.load(0)[1][1, :].tolist() == [TRAIN_ID.get(v, 255) for v in range(34)]


def test_label_conversion_in_worker_processes(tmp_path):
    src = tmp_path / "x_gtFine_labelIds.png"
    cv2.imwrite(str(src), np.arange(40, dtype=np.uint8).reshape(5, 8))
    jobs = [("cityscapes", str(src), str(tmp_path / f"out{i}.png")) for i in range(3)]
    P.parallel_map(P.convert_label, jobs, workers=2, progress=False)
    for _, _, dst in jobs:
        np.testing.assert_array_equal(cv2.imread(dst, cv2.IMREAD_UNCHANGED),
                                      CITYSCAPES_LABEL_TO_TRAIN[np.arange(40).reshape(5, 8)])


# ------------------------------------------------------------------------------ resumable download
PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    cut_first = True  # the first full response is cut halfway (a dropped connection)
    honour_range = True
    log: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).log.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng and self.honour_range else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        if type(self).cut_first:
            type(self).cut_first = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"log": [], "cut_first": True, "honour_range": True})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin", handler
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_after_a_dropped_connection(server, tmp_path):
    url, handler = server
    md5 = __import__("hashlib").md5(PAYLOAD).hexdigest()
    out = P.download(url, tmp_path / "file.bin", md5=md5, progress=False, retry_wait=0)
    assert out.read_bytes() == PAYLOAD
    assert handler.log == [None, f"bytes={len(PAYLOAD) // 2}-"]  # second request continues the .part
    assert not (tmp_path / "file.bin.part").exists()
    handler.log.clear()
    P.download(url, out, md5=md5, progress=False)  # present and verified: no request
    assert handler.log == []


def test_download_continues_an_earlier_partial_file(server, tmp_path):
    url, handler = server
    handler.cut_first = False
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1000])
    P.download(url, tmp_path / "file.bin", progress=False, retry_wait=0)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD and handler.log == ["bytes=1000-"]


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    url, handler = server
    handler.cut_first, handler.honour_range = False, False
    (tmp_path / "file.bin.part").write_bytes(b"garbage")
    P.download(url, tmp_path / "file.bin", progress=False, retry_wait=0)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_download_checksum_mismatch_and_http_errors(server, tmp_path):
    url, handler = server
    handler.cut_first = False
    with pytest.raises(ValueError, match="checksum mismatch"):
        P.download(url, tmp_path / "file.bin", md5="0" * 32, progress=False, retry_wait=0)
    with pytest.raises(ValueError, match="failed after 2 attempts"):
        P.download("http://127.0.0.1:9/nothing", tmp_path / "y.bin", progress=False, retries=1, retry_wait=0,
                   timeout=2)


def test_extract_refuses_paths_outside_destination(tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        _add(tf, "../escape.txt", b"x")
    with pytest.raises(ValueError, match="outside"):
        P.extract(bad, tmp_path / "out", progress=False)
    assert not (tmp_path / "escape.txt").exists()


def test_already_prepared_marker_and_force(tmp_path, capsys):
    assert not P.already_prepared(tmp_path, "demo", "Demo")
    P.finish(tmp_path, "demo", "Demo", {"train": 2}, {"train": 3}, "Demo(root=...)", converted=5)
    out = capsys.readouterr().out
    assert "Demo train: 2 samples  (WARNING: the official split has 3)" in out and "Demo ready: Demo(root=...)" in out
    assert P.read_marker(tmp_path, "demo") == {"counts": {"train": 2}, "converted": 5}
    assert P.already_prepared(tmp_path, "demo", "Demo")
    assert "Demo already prepared in" in capsys.readouterr().out
    assert not P.already_prepared(tmp_path, "demo", "Demo", force=True)


def test_run_script_turns_user_errors_into_an_error_line():
    with pytest.raises(SystemExit) as e:
        P.run_script(lambda: 3)
    assert e.value.code == 3

    def bad():
        raise ValueError("archive x.zip does not exist")

    with pytest.raises(SystemExit) as e:
        P.run_script(bad)
    assert e.value.code == "error: archive x.zip does not exist"  # printed to stderr, exit status 1

    def unwritable():
        raise PermissionError("[Errno 13] Permission denied: '/data'")

    with pytest.raises(SystemExit) as e:
        P.run_script(unwritable)
    assert e.value.code == "error: [Errno 13] Permission denied: '/data'"

    def bug():
        raise TypeError("a bug keeps its traceback")

    with pytest.raises(TypeError):
        P.run_script(bug)


def test_fetch_archive_given_or_downloaded(server, tmp_path):
    given = tmp_path / "given.bin"
    with pytest.raises(ValueError, match="given.bin does not exist"):
        P.fetch_archive(given, "http://unused", None, tmp_path / "x")
    given.write_bytes(b"abc")
    with pytest.raises(ValueError, match="checksum mismatch"):
        P.fetch_archive(given, "http://unused", "0" * 32, tmp_path / "x")
    assert P.fetch_archive(given, "http://unused", "0" * 32, tmp_path / "x", verify_md5=False) == given
    url, handler = server
    handler.cut_first = False
    md5 = __import__("hashlib").md5(PAYLOAD).hexdigest()
    out = P.fetch_archive(None, [url], md5, tmp_path / "dl" / "file.bin", progress=False)
    assert out.read_bytes() == PAYLOAD
