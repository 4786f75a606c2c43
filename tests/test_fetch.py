"""Fetching: mirror hit, download, hash mismatch, interruption, zip-slip. No network."""
import hashlib
import zipfile

import pytest

from mlpapers.data import fetch as F
from mlpapers.data.registry import DATASETS, Archive, Dataset, RemoteFile

PAYLOAD = b"hello, reproducible world\n" * 100


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A registry entry 'toyset' with one file; returns (source file, dataset)."""
    src = tmp_path / "source" / "a.txt"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    ds = Dataset("toyset", "CC0", "-", (RemoteFile("a.txt", sha(PAYLOAD), len(PAYLOAD), src.as_uri()),))
    monkeypatch.setitem(DATASETS, "toyset", ds)
    monkeypatch.delenv(F.MIRROR_ENV, raising=False)
    return src, ds


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_mirror_hit_copies_and_verifies(fake, tmp_path):
    mirror = tmp_path / "mirror" / "toyset"
    mirror.mkdir(parents=True)
    (mirror / "a.txt").write_bytes(PAYLOAD)
    (path,) = F.fetch_dataset("toyset", tmp_path / "raw", mirror=str(tmp_path / "mirror"))
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path / "raw" / "toyset") == ["a.txt"]


def test_download_when_not_in_mirror(fake, tmp_path):
    (path,) = F.fetch_dataset("toyset", tmp_path / "raw", mirror=str(tmp_path / "empty-mirror"))
    assert path.read_bytes() == PAYLOAD


def test_hash_mismatch_names_file_and_hashes_and_leaves_nothing(fake, tmp_path):
    mirror = tmp_path / "mirror" / "toyset"
    mirror.mkdir(parents=True)
    (mirror / "a.txt").write_bytes(PAYLOAD[:-1] + b"?")
    with pytest.raises(F.FetchError) as e:
        F.fetch_dataset("toyset", tmp_path / "raw", mirror=str(tmp_path / "mirror"))
    msg = str(e.value)
    assert "toyset/a.txt" in msg and sha(PAYLOAD) in msg and sha(PAYLOAD[:-1] + b"?") in msg
    assert F.MIRROR_ENV in msg
    assert leftovers(tmp_path / "raw" / "toyset") == []


def test_existing_corrupt_file_is_replaced_not_trusted(fake, tmp_path):
    out = tmp_path / "raw" / "toyset"
    out.mkdir(parents=True)
    (out / "a.txt").write_bytes(b"stale")
    F.fetch_dataset("toyset", tmp_path / "raw")
    assert (out / "a.txt").read_bytes() == PAYLOAD


def test_interrupted_download_leaves_no_file(fake, tmp_path, monkeypatch):
    def broken(url, dest, timeout=60.0, max_bytes=None):
        dest.write_bytes(PAYLOAD[:10])  # half a file, then the connection drops
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(F, "_download", broken)
    with pytest.raises(F.FetchError, match="download from .* failed"):
        F.fetch_dataset("toyset", tmp_path / "raw")
    assert leftovers(tmp_path / "raw" / "toyset") == []


def test_keyboard_interrupt_also_cleans_up(fake, tmp_path, monkeypatch):
    def interrupted(url, dest, timeout=60.0, max_bytes=None):
        dest.write_bytes(PAYLOAD[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(F, "_download", interrupted)
    with pytest.raises(KeyboardInterrupt):
        F.fetch_dataset("toyset", tmp_path / "raw")
    assert leftovers(tmp_path / "raw" / "toyset") == []


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(F.FetchError, match="unknown dataset 'nope'.*mnist"):
        F.get_dataset("nope")


def test_archive_member_is_extracted_and_verified(monkeypatch, tmp_path):
    zpath = tmp_path / "bundle.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("bundle/inner.txt", PAYLOAD)
    rf = RemoteFile("inner.txt", sha(PAYLOAD), len(PAYLOAD), archive=Archive(zpath.as_uri(), "bundle/inner.txt", sha(zpath.read_bytes())))
    monkeypatch.setitem(DATASETS, "zipset", Dataset("zipset", "CC0", "-", (rf,)))
    (path,) = F.fetch_dataset("zipset", tmp_path / "raw", mirror="")
    assert path.read_bytes() == PAYLOAD
    assert leftovers(tmp_path / "raw" / "zipset") == ["inner.txt"]


@pytest.mark.parametrize("evil", ["../escape.txt", "a/../../escape.txt", "/tmp/abs-escape.txt"])
def test_zip_slip_is_refused_before_anything_is_written(tmp_path, evil):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(evil, b"pwned")
    dest = tmp_path / "out"
    with pytest.raises(F.FetchError, match="outside"):
        F.safe_extract(zpath, dest)
    assert not (tmp_path / "escape.txt").exists()
    assert not (dest / "ok.txt").exists()  # all members are checked before any is written


def test_safe_extract_writes_nested_members(tmp_path):
    zpath = tmp_path / "good.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("d/e/f.txt", b"x")
    out = F.safe_extract(zpath, tmp_path / "out")
    assert [p.read_bytes() for p in out] == [b"x"]


def test_real_mirror_files_match_the_registry(mirror, tmp_path):
    """Every registered file that the offline mirror holds has the registered hash and size."""
    checked = 0
    for ds in DATASETS.values():
        for rf in ds.files:
            p = mirror / ds.folder / rf.name
            if p.is_file():
                assert p.stat().st_size == rf.size, p
                assert F.sha256_file(p) == rf.sha256, p
                checked += 1
    assert checked >= 10
