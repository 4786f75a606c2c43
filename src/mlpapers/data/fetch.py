"""Fetch dataset files into ``data/raw/<dataset>/``, verified by SHA-256, atomically.

Order of sources for each file: the mirror folder named by ``MLPAPERS_DATA_MIRROR``
(``<mirror>/<dataset folder>/<file>``), then the canonical URL. Bytes go to a temporary
file beside the target and are renamed into place only once the hash matches, so a
failed, interrupted or mismatching fetch leaves nothing behind. No copy, download or
archive extraction writes more than the registry's declared size (a zip bomb stops there).
``verify_raw`` re-checks files already in ``data/raw/`` before a stage reads them.
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
            size = local.stat().st_size
            if size != rf.size:
                raise FetchError(f"{local}: {size:,d} bytes, but the registry says {ds.name}/{rf.name} has "
                                 f"{rf.size:,d}; nothing was written. Replace it in the mirror ({MIRROR_ENV}) with "
                                 "the canonical file, or delete it there to download")
            with open(local, "rb") as src, open(tmp, "wb") as dst:
                _copy_limited(src, dst, rf.size, str(local))
            return str(local)
        log.warning("%s: not in mirror %s, trying the canonical URL", rf.name, mirror)
    url = rf.url or (rf.archive.url if rf.archive else None)
    hint = f"place the file at <mirror>/{ds.folder}/{rf.name} and set {MIRROR_ENV}=<mirror>"
    if url is None:
        raise FetchError(f"{ds.name}/{rf.name}: no URL registered; {hint}")
    try:
        if rf.archive is None:
            _download(url, tmp, max_bytes=rf.size)
        else:
            with tempfile.TemporaryDirectory(dir=tmp.parent) as scratch:
                archive = Path(scratch) / PurePosixPath(url).name
                _download(url, archive)
                if rf.archive.sha256 and sha256_file(archive) != rf.archive.sha256:
                    raise FetchError(f"{url}: archive SHA-256 mismatch (expected {rf.archive.sha256})")
                member = safe_extract_member(archive, rf.archive.member, Path(scratch) / "x", max_bytes=rf.size)
                shutil.move(member, tmp)
    except (OSError, zipfile.BadZipFile) as e:  # URLError is an OSError
        raise FetchError(f"{ds.name}/{rf.name}: download from {url} failed ({e}); {hint}") from e
    return url


MAX_ARCHIVE = 2 << 30  # an archive download stops here (no archive in the registry comes near it)


def _download(url: str, dest: Path, timeout: float = 60.0, max_bytes: int = MAX_ARCHIVE) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
        _copy_limited(r, f, max_bytes, url)


def _copy_limited(src, dst, max_bytes: int, what: str) -> int:
    """Copy at most ``max_bytes``; one byte more is an error (written bytes stay <= max_bytes)."""
    written = 0
    while True:
        block = src.read(min(CHUNK, max_bytes - written + 1))
        if not block:
            return written
        if written + len(block) > max_bytes:
            raise FetchError(f"{what}: larger than the registry's declared {max_bytes:,d} bytes; stopped there "
                             "(a different version, or an archive bomb); nothing was kept")
        dst.write(block)
        written += len(block)


def _safe_path(dest: Path, name: str) -> Path:
    """Resolve archive member ``name`` under ``dest``; refuse absolute or escaping paths."""
    dest = dest.resolve()
    target = (dest / name).resolve()
    if PurePosixPath(name).is_absolute() or not target.is_relative_to(dest):
        raise FetchError(f"archive member '{name}' would be written outside {dest}; refusing to extract")
    return target


def safe_extract(archive: str | Path, dest: str | Path, max_bytes: int = MAX_ARCHIVE) -> list[Path]:
    """Extract a zip archive, refusing members that escape ``dest`` (zip-slip) and stopping once
    ``max_bytes`` in all have been written (whatever the headers claim)."""
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        targets = [(info, _safe_path(dest, info.filename)) for info in zf.infolist()]  # check all first
        declared = sum(info.file_size for info, _ in targets)
        if declared > max_bytes:
            raise FetchError(f"{archive}: members declare {declared:,d} bytes, over the limit of {max_bytes:,d}; "
                             "refusing to extract")
        out, left = [], max_bytes
        for info, target in targets:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                left -= _copy_limited(src, dst, left, f"{archive}::{info.filename}")
            out.append(target)
    return out


def safe_extract_member(archive: str | Path, member: str, dest: str | Path, max_bytes: int = MAX_ARCHIVE) -> Path:
    """Extract one member of a zip archive (zip-slip checked), writing at most ``max_bytes``
    (the registry's size of the member): the header's size is checked first, then the bytes."""
    dest = Path(dest)
    with zipfile.ZipFile(archive) as zf:
        if member not in zf.namelist():
            raise FetchError(f"{archive}: member '{member}' not found")
        info = zf.getinfo(member)
        if info.file_size > max_bytes:
            raise FetchError(f"{archive}::{member}: declares {info.file_size:,d} bytes, but the registry says "
                             f"{max_bytes:,d}; refusing to extract (a different version, or an archive bomb)")
        target = _safe_path(dest, member)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            _copy_limited(src, dst, max_bytes, f"{archive}::{member}")
    return target


def verify_raw(raw: str | Path) -> list[Path]:
    """Re-check the size and SHA-256 of every registered file present under ``raw`` (data/raw).

    Raises ``FetchError`` naming the first file that differs from the registry, so a stage
    never reads tampered or truncated raw data. Returns the files checked."""
    raw = Path(raw)
    checked = []
    for ds in DATASETS.values():
        for rf in ds.files:
            path = raw / ds.name / rf.name
            if not path.is_file():
                continue
            size = path.stat().st_size
            if size != rf.size or sha256_file(path) != rf.sha256:
                raise FetchError(f"{path}: does not match the registry ({size:,d} bytes; expected {rf.size:,d} bytes "
                                 f"and SHA-256 {rf.sha256[:12]}...): it was modified, truncated or corrupted; "
                                 f"restore it with `mlpapers fetch {ds.name}` (or `dvc checkout`)")
            checked.append(path)
    return checked
