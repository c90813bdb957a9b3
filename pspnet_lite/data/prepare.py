"""Helpers shared by the preparation commands :mod:`.prepare_ade20k`, :mod:`.prepare_voc` and
:mod:`.prepare_cityscapes` (``pspnet-prepare-*``; ``data_scripts/prepare_*.py`` in a clone): resumable
download, checksum, extraction, label conversion, file lists, and the "already prepared" marker (the data
of the paper's §5.2-5.4).

torchvision's ``datasets.utils`` gives the MD5 (used here); its ``download_url`` cannot resume and its
``extract_archive`` shows no progress and uses no extraction filter, so those two are written here:
:func:`download` continues a ``.part`` file with an HTTP ``Range`` request (and starts over if the
server ignores it), :func:`extract` streams tar/zip members with a progress bar, refuses paths that
leave the destination, and leaves a marker so a re-run skips finished archives.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from torchvision.datasets.utils import calculate_md5
from tqdm.auto import tqdm

from ..cli import USER_ERRORS
from .datasets import CITYSCAPES_LABEL_TO_TRAIN, default_root, read_mask

__all__ = [
    "md5sum",
    "verify",
    "download",
    "extract",
    "parallel_map",
    "write_png",
    "write_list",
    "sbd_mat_to_mask",
    "convert_label",
    "prepared_marker",
    "read_marker",
    "write_marker",
    "already_prepared",
    "fetch_archive",
    "finish",
    "run_script",
]

MARKER = ".pspnet_prepared_{name}.json"


def md5sum(path: str | os.PathLike) -> str:
    """MD5 hex digest of a file (torchvision.datasets.utils.calculate_md5)."""
    return calculate_md5(os.fspath(path))


def verify(path: str | os.PathLike, md5: str | None) -> None:
    """Raise ValueError naming the file and both checksums if ``path`` does not have MD5 ``md5``."""
    if md5 is None:
        return
    actual = md5sum(path)
    if actual != md5:
        raise ValueError(f"checksum mismatch for {path}: md5 {actual}, expected {md5}. The file is corrupt or a "
                         f"different version: delete it and run the script again (or pass --no-verify to accept it)")


def _total_size(resp, start: int) -> int | None:
    rng = resp.headers.get("Content-Range")  # "bytes 100-199/200"
    if rng and "/" in rng and not rng.endswith("*"):
        return int(rng.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return None if length is None else int(length) + (start if resp.status == 206 else 0)


def download(url: str, dest: str | os.PathLike, md5: str | None = None, progress: bool = True,
             retries: int = 5, retry_wait: float = 2.0, timeout: float = 60.0, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming an interrupted ``dest.part`` with an HTTP Range request.

    Skips the download when ``dest`` exists (and matches ``md5`` if given). Network errors and
    truncated responses are retried ``retries`` times, each time continuing from the bytes on disk.
    Returns ``dest``; ValueError on a checksum mismatch or an HTTP error status.
    """
    dest = Path(dest)
    if dest.exists():
        verify(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_wait * attempt)
        start = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "pspnet-lite/0.1"}
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                if start and resp.status != 206:  # server ignored the range: start over
                    start = 0
                total = _total_size(resp, start)
                with open(part, "ab" if start else "wb") as f, tqdm(
                        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=dest.name, disable=not progress, mininterval=1.0) as bar:
                    while chunk := resp.read(chunk_size):
                        f.write(chunk)
                        bar.update(len(chunk))
            size = part.stat().st_size
            if total is not None and size < total:
                raise http.client.IncompleteRead(b"", total - size)
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and start:  # nothing left to fetch: the .part is complete
                break
            if e.code < 500 and e.code != 408:
                raise ValueError(f"download of {url} failed: HTTP {e.code} {e.reason}; check the URL or download "
                                 f"the file by hand and pass it with --archive") from None
            last_error = e
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as e:
            last_error = e
    else:
        raise ValueError(f"download of {url} failed after {retries + 1} attempts ({last_error!r}); the partial "
                         f"file {part} is kept: run the script again to resume, or download by hand and pass "
                         f"--archive") from None
    os.replace(part, dest)
    verify(dest, md5)
    return dest


def _inside(dest: Path, name: str) -> bool:
    target = (dest / name).resolve()
    return target == dest or dest in target.parents


def extract(archive: str | os.PathLike, dest: str | os.PathLike, include: Callable[[str], bool] | None = None,
            progress: bool = True, force: bool = False) -> Path:
    """Extract a .zip / .tar / .tar.gz / .tgz ``archive`` into ``dest`` (members where ``include(name)``).

    Writes ``dest/.extracted_<archive name>`` when done; a later call returns at once unless ``force``.
    Member paths that would land outside ``dest`` raise ValueError.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / f".extracted_{archive.name}"
    if marker.exists() and not force:
        return dest
    root = dest.resolve()
    size = archive.stat().st_size
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"extract {archive.name}",
              disable=not progress, mininterval=1.0) as bar:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not _inside(root, info.filename):
                        raise ValueError(f"{archive}: member {info.filename!r} would be written outside {dest}")
                    if include is None or include(info.filename):
                        zf.extract(info, dest)
                    bar.update(info.compress_size)
        elif tarfile.is_tarfile(archive):
            with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
                for member in tf:
                    if not _inside(root, member.name):
                        raise ValueError(f"{archive}: member {member.name!r} would be written outside {dest}")
                    if include is None or include(member.name):
                        tf.extract(member, dest, filter="data")
                    bar.update(raw.tell() - bar.n)
        else:
            raise ValueError(f"{archive} is neither a zip nor a tar archive; is the download complete?")
        bar.update(size - bar.n)
    marker.write_text(f"{archive}\n")
    return dest


def _call(args):
    fn, item = args
    return fn(item)


def parallel_map(fn: Callable, items: Sequence, workers: int = 1, desc: str = "", progress: bool = True) -> list:
    """``[fn(x) for x in items]`` with a progress bar, in ``workers`` processes when > 1 (``fn`` must be
    a module-level function)."""
    items = list(items)
    bar = dict(total=len(items), desc=desc, disable=not progress, mininterval=1.0)
    if workers <= 1 or len(items) < 2:
        return [fn(x) for x in tqdm(items, **bar)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_call, [(fn, x) for x in items], chunksize=16), **bar))


def write_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a uint8 HxW label array as a single-channel PNG (atomic: temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(os.fspath(tmp), np.ascontiguousarray(mask, dtype=np.uint8)):
        raise ValueError(f"could not write {path}; is the disk full or read-only?")
    os.replace(tmp, path)


def write_list(path: str | os.PathLike, lines: Iterable[str]) -> int:
    """Write one entry per line; returns the number of lines."""
    lines = list(lines)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))
    return len(lines)


def sbd_mat_to_mask(path: str | os.PathLike) -> np.ndarray:
    """SBD ``cls/<id>.mat`` -> uint8 HxW class ids 0..20 (struct ``GTcls.Segmentation``; scipy, lazily)."""
    try:
        from scipy.io import loadmat  # lazy: scipy is the optional [data] extra, needed for SBD's .mat files only
    except ImportError:
        raise ImportError("converting SBD labels needs scipy: pip install 'pspnet-lite[data]'") from None
    try:
        gt = loadmat(os.fspath(path), squeeze_me=True, struct_as_record=False)["GTcls"]
        seg = np.asarray(gt.Segmentation)
    except (KeyError, AttributeError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not an SBD class label file (GTcls.Segmentation): {e!r}") from None
    if seg.ndim != 2 or seg.min() < 0 or seg.max() > 255:
        raise ValueError(f"{path}: GTcls.Segmentation has shape {seg.shape} / range outside 0..255")
    return seg.astype(np.uint8)


VOC_VALID = np.r_[0:21, 255]


def convert_label(job: tuple[str, str, str]) -> str:
    """Write one converted label PNG. ``job = (kind, source, dest)`` with kind
    "voc" (VOC palette PNG -> its indices), "sbd" (SBD .mat -> GTcls.Segmentation) or
    "cityscapes" (``*_labelIds.png`` -> ``*_labelTrainIds.png``, 19 classes, rest 255)."""
    kind, src, dst = job
    if kind == "cityscapes":
        mask = CITYSCAPES_LABEL_TO_TRAIN[read_mask(src)]
    elif kind in ("voc", "sbd"):
        mask = read_mask(src) if kind == "voc" else sbd_mat_to_mask(src)
        bad = np.setdiff1d(np.unique(mask), VOC_VALID)
        if bad.size:
            raise ValueError(f"{src}: label value {int(bad[0])} outside 0..20 and 255")
    else:
        raise ValueError(f"unknown label kind {kind!r}")
    write_png(dst, mask)
    return dst


def prepared_marker(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / MARKER.format(name=name)


def read_marker(root: str | os.PathLike, name: str) -> dict | None:
    """The marker a finished preparation left in ``root`` (its counts), or None."""
    p = prepared_marker(root, name)
    return json.loads(p.read_text()) if p.exists() else None


def write_marker(root: str | os.PathLike, name: str, info: dict) -> None:
    prepared_marker(root, name).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a directory tree if it exists (used by --force before rebuilding converted labels)."""
    if Path(path).exists():
        shutil.rmtree(path)


def common_args(ap, name: str, download: bool = True) -> None:
    """The options every prepare script shares (``download=False``: no download/checksum options).

    Read them with :func:`parse_args`, which also checks the values argparse cannot word well."""
    ap.add_argument("--root", type=Path, default=default_root(name),
                    help=f"where the prepared data set goes (default: $PSPNET_DATA/{name} or ./data/{name})")
    ap.add_argument("--force", action="store_true", help="rebuild even if ROOT is already prepared")
    if download:
        ap.add_argument("--download-dir", type=Path, default=None,
                        help="where archives are downloaded / resumed (default: ROOT/downloads)")
        ap.add_argument("--no-verify", action="store_true", help="skip the MD5 check of the archives")
        ap.add_argument("--delete-archives", action="store_true", help="delete downloaded archives afterwards")
    ap.add_argument("--workers", default=str(min(8, os.cpu_count() or 1)), metavar="N",
                    help="processes for label conversion (default: min(8, cores))")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def _check_dir(flag: str, path: Path | None) -> None:
    """ValueError if ``path`` (to be created if missing) is, or lies under, an existing file."""
    if path is None:
        return
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{flag} {path}: {existing} is a file, not a directory; pass a directory "
                         f"(it is created if missing)")


def parse_args(ap: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``ap.parse_args(argv)``, then the checks argparse cannot word well: ``--workers`` is a whole
    number >= 1, ``--root`` and ``--download-dir`` are (or can be made) directories. A bad value raises
    a ValueError naming it (one ``error:`` line under :func:`run_script`)."""
    args = ap.parse_args(argv)
    try:
        workers = int(args.workers)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"--workers must be a whole number >= 1; got {args.workers!r} (e.g. --workers 4)")
    args.workers = workers
    _check_dir("--root", args.root)
    _check_dir("--download-dir", getattr(args, "download_dir", None))
    return args


def check_count(name: str, split: str, found: int, expected: int) -> str:
    """A one-line count report, flagged when it differs from the official number."""
    flag = "" if found == expected else f"  (WARNING: the official split has {expected})"
    return f"{name} {split}: {found} samples{flag}"


def already_prepared(root: str | os.PathLike, name: str, label: str, force: bool = False) -> bool:
    """True, after saying so, when ``root`` holds a finished preparation of ``name`` and ``force`` is off.

    Every prepare script starts with ``if P.already_prepared(root, NAME, "ADE20K", args.force): return 0``,
    so a re-run is a no-op and ``--force`` redoes the work.
    """
    done = read_marker(root, name)
    if done and not force:
        print(f"{label} already prepared in {root} ({done.get('counts', done)}); nothing to do (use --force to redo)")
        return True
    return False


def fetch_archive(given: str | os.PathLike | None, urls: str | Sequence[str], md5: str | None,
                  dest: str | os.PathLike, verify_md5: bool = True, progress: bool = True) -> Path:
    """The archive a prepare script works on: ``given`` (``--archive``; must exist, MD5-checked unless
    ``verify_md5`` is off) or else downloaded to ``dest`` from the first of ``urls`` that answers
    (resumable, see :func:`download`). A checksum mismatch stops at once; other failures try the next URL.
    """
    md5 = md5 if verify_md5 else None
    if given is not None:
        given = Path(given)
        if not given.is_file():
            raise ValueError(f"archive {given} does not exist; check the path or leave the option out to download it")
        if md5 is not None:
            print(f"verifying {given}")
            verify(given, md5)
        return given
    urls = [urls] if isinstance(urls, str) else list(urls)
    for k, url in enumerate(urls):
        print(f"downloading {url} -> {dest}")
        try:
            return download(url, dest, md5=md5, progress=progress)
        except ValueError as e:
            if k == len(urls) - 1 or "checksum" in str(e):
                raise
            print(f"{e}\ntrying the next mirror")
    raise ValueError("no download URL given")


def finish(root: str | os.PathLike, name: str, label: str, counts: dict, expected: dict, ready: str,
           **info) -> None:
    """The end of every prepare script: print each split's count against the official one, write the
    "already prepared" marker (counts plus ``info``), and print how to load the result (``ready``)."""
    for split, n in counts.items():
        print(check_count(label, split, n, expected[split]))
    write_marker(root, name, {"counts": counts, **info})
    print(f"{label} ready: {ready}")


def run_script(main: Callable[[], int]) -> None:
    """``if __name__ == "__main__": P.run_script(main)``: exit with ``main()``'s status; a user error
    (:data:`pspnet_lite.cli.USER_ERRORS`: a bad value, a missing or unwritable path, a failed download,
    a wrong checksum) ends the script with one line ``error: <message>`` and status 1 instead of a
    traceback."""
    try:
        sys.exit(main())
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
