"""Fetch dataset files into ``data/raw/<dataset>/``, verified by SHA-256, atomically.

Order of sources for each file: the mirror folder named by ``MLPAPERS_DATA_MIRROR``
(``<mirror>/<dataset folder>/<file>``), then the canonical URL. Bytes go to a temporary
file beside the target and are renamed into place only once the hash matches, so a
failed, interrupted or mismatching fetch leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from mlpapers.data.registry import DATASETS, Dataset, RemoteFile

log = logging.getLogger(__name__)
MIRROR_ENV = "MLPAPERS_DATA_MIRROR"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A file could not be fetched or did not match its registered hash."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise FetchError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def fetch_dataset(name: str, root: str | Path = "data/raw", mirror: str | None = None) -> list[Path]:
    """Fetch every file of dataset ``name``; returns their paths. Already-valid files are kept."""
    ds = get_dataset(name)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    out_dir = Path(root) / ds.name
    out_dir.mkdir(parents=True, exist_ok=True)
    return [fetch_file(ds, f, out_dir, mirror) for f in ds.files]


def fetch_file(ds: Dataset, rf: RemoteFile, out_dir: Path, mirror: str | None) -> Path:
    target = out_dir / rf.name
    if target.is_file() and sha256_file(target) == rf.sha256:
        log.info("%s: present, hash ok", target)
        return target
    tmp = _tempfile(out_dir, rf.name)
    try:
        source = _copy_to(tmp, ds, rf, mirror)
        actual = sha256_file(tmp)
        if actual != rf.sha256:
            raise FetchError(
                f"{ds.name}/{rf.name}: SHA-256 mismatch for the copy from {source}\n"
                f"  expected {rf.sha256}\n  actual   {actual}\n"
                "The file is corrupt, truncated or a different version; nothing was written. "
                f"Replace it in the mirror ({MIRROR_ENV}) with the canonical file, or delete it there to download."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s: fetched from %s, sha256 ok", target, source)
    return target


def _tempfile(folder: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    return Path(tmp)


def _copy_to(tmp: Path, ds: Dataset, rf: RemoteFile, mirror: str | None) -> str:
    """Fill ``tmp`` from the mirror or the network; returns where it came from."""
    if mirror:
        local = Path(mirror) / ds.folder / rf.name
        if local.is_file():
            shutil.copyfile(local, tmp)
            return str(local)
        log.warning("%s: not in mirror %s, trying the canonical URL", rf.name, mirror)
    url = rf.url or (rf.archive.url if rf.archive else None)
    hint = f"place the file at <mirror>/{ds.folder}/{rf.name} and set {MIRROR_ENV}=<mirror>"
    if url is None:
        raise FetchError(f"{ds.name}/{rf.name}: no URL registered; {hint}")
    try:
        if rf.archive is None:
            _download(url, tmp)
        else:
            with tempfile.TemporaryDirectory(dir=tmp.parent) as scratch:
                archive = Path(scratch) / PurePosixPath(url).name
                _download(url, archive)
                if rf.archive.sha256 and sha256_file(archive) != rf.archive.sha256:
                    raise FetchError(f"{url}: archive SHA-256 mismatch (expected {rf.archive.sha256})")
                member = safe_extract_member(archive, rf.archive.member, Path(scratch) / "x")
                shutil.move(member, tmp)
    except (OSError, zipfile.BadZipFile) as e:  # URLError is an OSError
        raise FetchError(f"{ds.name}/{rf.name}: download from {url} failed ({e}); {hint}") from e
    return url


def _download(url: str, dest: Path, timeout: float = 60.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f, CHUNK)


def _safe_path(dest: Path, name: str) -> Path:
    """Resolve archive member ``name`` under ``dest``; refuse absolute or escaping paths."""
    dest = dest.resolve()
    target = (dest / name).resolve()
    if PurePosixPath(name).is_absolute() or not target.is_relative_to(dest):
        raise FetchError(f"archive member '{name}' would be written outside {dest}; refusing to extract")
    return target


def safe_extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract a zip archive, refusing members that escape ``dest`` (zip-slip)."""
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        targets = [(info, _safe_path(dest, info.filename)) for info in zf.infolist()]  # check all first
        out = []
        for info, target in targets:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            out.append(target)
    return out


def safe_extract_member(archive: str | Path, member: str, dest: str | Path) -> Path:
    """Extract one member of a zip archive (zip-slip checked)."""
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        if member not in zf.namelist():
            raise FetchError(f"{archive}: member '{member}' not found")
        target = _safe_path(dest, member)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    return target
