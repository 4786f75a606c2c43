"""Every expected failure of a command -> one line naming the key or file, and an exit status.

``describe(exc) -> (message, status)``: status 2 for bad input (params, files, disks,
memory), 1 for anything unexpected (a bug: the CLI saves its traceback to a log file).
"""
from __future__ import annotations

import errno
import json
import zlib
from concurrent.futures.process import BrokenProcessPool

import yaml

BAD_INPUT = 2
BUG = 1


def one_line(text: str, limit: int = 600) -> str:
    """Collapse a (possibly multi-line) message into one line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _oserror(e: OSError) -> str:
    name = e.filename if e.filename is not None else ""
    if e.filename2 is not None:
        name = f"{name} -> {e.filename2}"
    where = f"{name}: " if name else ""
    why = e.strerror or str(e)
    fix = {
        errno.ENOENT: "not found; run the stage that produces it (`dvc repro`) or check the path",
        errno.ENOSPC: "no space left on the device; free space and re-run",
        errno.EDQUOT: "disk quota exceeded; free space and re-run",
        errno.EACCES: "permission denied; fix the permissions of the file or folder",
        errno.EPERM: "operation not permitted; fix the permissions of the file or folder",
        errno.EROFS: "read-only file system; run from a writable checkout",
        errno.EISDIR: "is a folder, expected a file; check the path",
        errno.ENOTDIR: "a part of the path is not a folder; check the path",
    }.get(e.errno)
    return f"{where}{fix}" if fix else f"{where}{why}"


def describe(e: BaseException) -> tuple[str, int]:
    from mlpapers.config import ConfigError
    from mlpapers.data.fetch import FetchError
    from mlpapers.train import EmptyDataError, NonFiniteLossError
    from mlpapers.utils import DataFileError

    if isinstance(e, (ConfigError, FetchError, DataFileError, NonFiniteLossError, EmptyDataError)):
        return one_line(str(e)), BAD_INPUT
    if isinstance(e, KeyError):  # unknown experiment names and the like (library lookups)
        return one_line(e.args[0] if e.args else repr(e)), BAD_INPUT
    if isinstance(e, yaml.YAMLError):
        return one_line(f"invalid YAML: {e}"), BAD_INPUT
    if isinstance(e, json.JSONDecodeError):
        return one_line(f"invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); re-run the stage that "
                        "writes the file (`dvc repro`)"), BAD_INPUT
    if isinstance(e, UnicodeDecodeError):
        return one_line(f"a file is not UTF-8 text ({e.reason}); re-fetch or restore it"), BAD_INPUT
    if isinstance(e, OSError) and not isinstance(e, BrokenProcessPool):
        return one_line(_oserror(e)), BAD_INPUT
    if isinstance(e, (EOFError, zlib.error)):
        return one_line(f"a compressed or binary input file is truncated or corrupt ({type(e).__name__}: {e}); "
                        "restore data/raw with `mlpapers fetch <dataset>` (or `dvc checkout`) and re-run"), BAD_INPUT
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and
                                       any(s in str(e) for s in ("out of memory", "can't allocate memory",
                                                                 "not enough memory"))):
        return one_line(f"out of memory ({e}); lower the model or data sizes in params, or compute.workers"), BAD_INPUT
    if isinstance(e, BrokenProcessPool):
        return one_line("a worker process died (killed, or out of memory); lower compute.workers or the sizes "
                        "in params and re-run"), BAD_INPUT
    return one_line(f"unexpected {type(e).__name__}: {e}"), BUG
