"""The cases of the bad-input table (scripts/bad_inputs.py runs them): one ``Case`` per
hostile-but-realistic input or fault, with the workspace mutation that sets it up, the
``mlpapers`` command to run and what its error line must name.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import shutil
import signal
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
MIRROR = Path(os.environ.get("MLPAPERS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets")
NAN, INF = float("nan"), float("inf")
TIMEOUT = 90.0
STALE = object()


@dataclasses.dataclass
class Case:
    name: str
    cls: str  # the class of bad input
    argv: list[str]  # mlpapers arguments (--root/--params added where the command takes them)
    setup: Callable[[Path], Any] | None = None  # mutate the workspace; may return STALE
    expect: str = "error"  # "error" or "ok"
    names: tuple[str, ...] = ()  # the error line must contain each ({ws} is the workspace)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    child: Callable[[Path], None] | None = None  # runs in the child before main (monkeypatching)
    special: Callable[[Path, "Case"], dict] | None = None  # runs instead of the forked CLI
    check_ok: Callable[[Path], bool] | None = None  # for expect == "ok"
    ok_rc: int = 0  # for expect == "ok": the right exit status (verify: 1 on drift)


# ---------------------------------------------------------------------------- params helpers

TINY = yaml.safe_load((ROOT / "tests" / "params_tiny.yaml").read_text())
TINY["compute"]["workers"] = 1
STAGE = {  # a train command per section (bad params must fail before any work)
    "dropout_toy": ["train", "dropout_toy", "plain"],
    "dropout_mnist": ["train", "dropout_mnist", "plain"],
    "fox": ["train", "fox", "transformer"],
    "seq2seq_multi30k": ["train", "seq2seq_multi30k", "baseline"],
    "seq2seq_reverse": ["train", "seq2seq_reverse", "baseline"],
}


def write_params(ws: Path, params: dict) -> None:
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_param(dotted: str, value: Any) -> Callable[[Path], Any]:
    def setup(ws: Path):
        p = copy.deepcopy(TINY)
        *head, last = dotted.split(".")
        d = p
        for k in head:
            if not isinstance(d, dict) or k not in d:
                return STALE
            d = d[k]
        if not isinstance(d, dict) or last not in d:
            return STALE
        d[last] = value
        write_params(ws, p)

    return setup


def raw_params(text: str | bytes) -> Callable[[Path], None]:
    def setup(ws: Path):
        (ws / "params.yaml").write_bytes(text.encode() if isinstance(text, str) else text)

    return setup


def param_case(dotted: str, value: Any, cls: str = "params: value", command: list[str] | None = None) -> Case:
    section = dotted.split(".")[0]
    return Case(f"{dotted}={value!r}", cls, command or STAGE.get(section, ["check-params"]),
                set_param(dotted, value), names=(dotted,))


# ---------------------------------------------------------------------------- file helpers

def mutate(rel: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def setup(ws: Path):
        p = ws / rel
        p.write_bytes(fn(p.read_bytes()))

    return setup


def write(rel: str, data: str | bytes) -> Callable[[Path], None]:
    def setup(ws: Path):
        p = ws / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)

    return setup


def remove(rel: str) -> Callable[[Path], None]:
    def setup(ws: Path):
        p = ws / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return setup


def chain(*fns: Callable[[Path], Any]) -> Callable[[Path], Any]:
    def setup(ws: Path):
        for f in fns:
            if f(ws) is STALE:
                return STALE

    return setup


def raw(dataset: str, folder: str | None = None) -> Callable[[Path], None]:
    """Copy a dataset's files from the offline mirror into ws/data/raw/<dataset>/."""
    def setup(ws: Path):
        src, dst = MIRROR / (folder or dataset), ws / "data" / "raw" / dataset
        dst.mkdir(parents=True, exist_ok=True)
        for p in src.iterdir():
            if p.is_file():
                shutil.copy(p, dst / p.name)

    return setup


def flip_byte(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


def flip_weight_byte(data: bytes) -> bytes:
    """Flip one byte inside the first tensor's bytes of a torch zip checkpoint."""
    import io
    import struct

    zf = zipfile.ZipFile(io.BytesIO(data))
    info = next(i for i in zf.infolist() if "/data/" in i.filename and not i.filename.endswith(".pkl"))
    n, m = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    at = info.header_offset + 30 + n + m + 1
    b = bytearray(data)
    b[at] ^= 0x40
    return bytes(b)


CKPT = "models/dropout_toy/plain/seed0.pt"
METRICS = "metrics/dropout_toy.json"
EVAL = ["evaluate", "dropout_toy"]


# ---------------------------------------------------------------------------- the cases

def cases() -> list[Case]:
    from bad_input_faults import (concurrent_train, disk_full_free, enospc_on_write, estimate_first,
                                  kill_parent_dvc, not_a_zip, raise_bug, readonly, registry_with, signal_stage,
                                  tiny_memory, wrong_member, zip_bomb, zip_slip)

    out: list[Case] = []
    # --- params: TrainConfig values, every section (these keys are shared and stay)
    train_bad = [("lr", INF), ("lr", NAN), ("lr", -0.1), ("lr", 0.0), ("lr", 1e9), ("momentum", 2.0),
                 ("momentum", -0.1), ("beta2", 1.5), ("beta2", 1.0), ("weight_decay", -0.1), ("steps", 0),
                 ("steps", -5), ("steps", 10**9), ("batch_size", 0), ("warmup_steps", -1), ("warmup_steps", 10**6),
                 ("min_lr_ratio", 2.0), ("grad_clip", -1.0), ("grad_clip", INF), ("eval_every", -1),
                 ("device", "tpu"), ("device", "cuda:99"), ("optimizer", "adam"), ("schedule", "step"),
                 ("precision", "fp16"), ("lr", "fast"), ("steps", 1.5), ("batch_size", True)]
    for key, value in train_bad:
        out.append(param_case(f"dropout_toy.train.{key}", value))
    for section in ("dropout_mnist", "fox", "seq2seq_multi30k", "seq2seq_reverse"):
        for key, value in [("lr", INF), ("momentum", 2.0), ("beta2", 1.5), ("weight_decay", -0.1), ("steps", 0)]:
            out.append(param_case(f"{section}.train.{key}", value))
    # --- seeds, every section
    for section in STAGE:
        for value in ([], [0, 0], [-1], [2**40]):
            out.append(param_case(f"{section}.seeds", value, "params: seeds"))
    # --- compute and environment
    out += [param_case("compute.threads", 0, "params: compute"), param_case("compute.workers", -1, "params: compute"),
            param_case("compute.threads", NAN, "params: compute")]
    for value in ("abc", "0", "-1", "1.5"):
        out.append(Case(f"MLPAPERS_NUM_THREADS={value}", "environment", STAGE["dropout_toy"],
                        names=("MLPAPERS_NUM_THREADS",), env={"MLPAPERS_NUM_THREADS": value}))
    # --- paper params (keys may change as the papers are rewritten: missing key -> stale case)
    paper = [("dropout_toy.models.dropout.max_norm", NAN), ("dropout_toy.models.dropout.max_norm", -1.0),
             ("dropout_toy.models.dropout.p_hidden", 1.0), ("dropout_toy.models.dropout.p_input", -0.1),
             ("dropout_toy.models.dropout.hidden", 0), ("dropout_toy.models.dropout.depth", 0),
             ("dropout_toy.models.plain.hidden", 10**12),
             ("dropout_toy.data.noise", -0.3), ("dropout_toy.data.noise", NAN), ("dropout_toy.data.n_train", 0),
             ("dropout_toy.data.n_test", 0), ("dropout_mnist.data.sizes", []), ("dropout_mnist.data.sizes", [0]),
             ("dropout_mnist.data.sizes", [10**6]), ("dropout_mnist.data.train_set", "huge"),
             ("fox.model.n_head", 0), ("fox.model.d_model", 0), ("fox.model.n_layer", 0), ("fox.model.context", 0),
             ("fox.data.val_fraction", 1.5), ("fox.data.val_fraction", 0.0), ("fox.eval.eval_windows", 0),
             ("fox.variants", []), ("fox.variants", ["transformer", "transformer"]),
             ("seq2seq_multi30k.models.attn_general.dropout", 2.0), ("seq2seq_multi30k.models.attn_general.hidden", 0),
             ("seq2seq_multi30k.models.attn_general.attention", "bogus"), ("seq2seq_multi30k.data.min_freq", 0),
             ("seq2seq_reverse.data.n_symbols", 0), ("seq2seq_reverse.data.train_min_len", 0),
             ("seq2seq_reverse.data.train_max_len", 1), ("seq2seq_reverse.data.n_test", 0),
             ("seq2seq_reverse.data.test_lengths", []), ("seq2seq_reverse.models.attn_dot.dropout", -0.5)]
    for key, value in paper:
        out.append(param_case(key, value, "params: paper"))
    # --- the params file itself
    cp = ["check-params"]
    text_cases = [
        ("duplicate section", "compute: {threads: 1, workers: 1}\ncompute: {threads: 2, workers: 1}\n", "written twice"),
        ("duplicate nested key", "compute:\n  threads: 1\n  threads: 2\n  workers: 1\n", "written twice"),
        ("alias", "a: &x {threads: 1, workers: 1}\ncompute: *x\n", "aliases"),
        ("anchor only", "compute: &x {threads: 1, workers: 1}\n", "anchors"),
        ("merge key", "compute:\n  <<: {threads: 1}\n  workers: 1\n", "merge keys"),
        ("billion laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                           "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n", "anchors"),
        ("unclosed bracket", "compute:\n  threads: [1, 2\n  workers: 1\n", "YAML syntax error"),
        ("bad indentation", "compute:\n  threads: 1\n workers: 1\n", "YAML syntax error"),
        ("tab indentation", "compute:\n\tthreads: 1\n", "YAML syntax error"),
        ("top-level list", "- compute\n- fox\n", "expected a mapping"),
        ("empty file", "", "expected a mapping"),
        ("not utf-8", b"compute: {threads: 1, workers: 1}\n# caf\xe9\xff\n", "UTF-8"),
        ("python tag", "compute: !!python/object/apply:os.system ['true']\n", "YAML"),
    ]
    for name, text, msg in text_cases:
        out.append(Case(f"params file: {name}", "params: file", cp, raw_params(text), names=("params.yaml", msg)))
    out += [
        Case("params file missing", "params: file", ["check-params", "--params", "nope.yaml"], names=("nope.yaml",)),
        Case("params: unknown key", "params: file", STAGE["dropout_toy"], chain(set_param("dropout_toy.train.lr", 0.01), mutate("params.yaml", lambda b: b.replace(
                 b"  train:\n", b"  train:\n    learning_rate: 0.1\n", 1))), names=("learning_rate",)),
        Case("params: section missing", "params: file", STAGE["fox"],
             chain(set_param("fox.seeds", [0]), mutate("params.yaml", lambda b: b.replace(b"\nfox:", b"\nfoxx:"))),
             names=("'fox' is missing",)),
        Case("params: section is a list", "params: file", STAGE["dropout_toy"],
             raw_params("compute: {threads: 1, workers: 1}\ndropout_toy: [1, 2]\n"), names=("dropout_toy",)),
    ]
    # --- files the stages read
    out += [
        Case("checkpoint truncated", "files: checkpoint", EVAL, mutate(CKPT, lambda b: b[:100]), names=(CKPT,)),
        Case("checkpoint empty", "files: checkpoint", EVAL, mutate(CKPT, lambda b: b""), names=(CKPT,)),
        Case("checkpoint random bytes", "files: checkpoint", EVAL, mutate(CKPT, lambda b: os.urandom(len(b))), names=(CKPT,)),
        Case("checkpoint weight byte flipped", "files: checkpoint", EVAL, mutate(CKPT, flip_weight_byte),
             names=(CKPT, "checksum")),
        Case("checkpoint missing", "files: checkpoint", EVAL, remove(CKPT), names=(CKPT,)),
        Case("checkpoint is a folder", "files: checkpoint", EVAL, chain(remove(CKPT), lambda ws: (ws / CKPT).mkdir()),
             names=(CKPT,)),
        Case("checkpoint of another model", "files: checkpoint", EVAL, set_param("dropout_toy.models.plain.hidden", 16),
             names=(CKPT, "does not match")),
        Case("metrics invalid JSON (report)", "files: metrics", ["report", "--readme", "README.md"],
             write(METRICS, "{not json"), names=(METRICS, "invalid JSON")),
        Case("metrics empty (report)", "files: metrics", ["report", "--readme", "README.md"], write(METRICS, ""),
             names=(METRICS,)),
        Case("metrics not UTF-8 (report)", "files: metrics", ["report", "--readme", "README.md"],
             write(METRICS, b"\xff\xfe{}"), names=(METRICS,)),
        Case("metrics missing (report)", "files: metrics", ["report", "--readme", "README.md"], remove(METRICS),
             names=(METRICS,)),
        Case("metrics invalid JSON (verify)", "files: metrics", ["verify", "--published", "pub.json"],
             chain(write("pub.json", "{}"), write(METRICS, "{oops")), names=(METRICS,)),
        Case("README without markers", "files: readme", ["report", "--readme", "README.md"],
             write("README.md", "# no markers\n"), names=("README.md", "markers")),
        Case("README missing", "files: readme", ["report", "--readme", "NOPE.md"], names=("NOPE.md",)),
        Case("--published invalid JSON", "files: published", ["verify", "--published", "pub.json"],
             write("pub.json", "{oops"), names=("pub.json", "invalid JSON")),
        Case("--published a list", "files: published", ["verify", "--published", "pub.json"],
             write("pub.json", "[1, 2]"), names=("pub.json",)),
        Case("--published missing", "files: published", ["verify", "--published", "nope.json"], names=("nope.json",)),
        Case("--published drifted metric", "files: published", ["verify", "--published", "pub.json"],
             write("pub.json", '{"dropout_toy.json": {"plain": {"test_acc": {"mean": 0.0}}}}'), expect="ok", ok_rc=1),
        Case("--rev outside git", "files: published", ["verify", "--rev", "HEAD"], names=("git",)),
    ]
    pub = write("pub.json", "{}")
    for name, text, msg in [("syntax error", "rules: [\n", "YAML syntax error"), ("no rules", "rulez: []\n", "'rules:'"),
                            ("negative abs", "rules:\n  - {pattern: '*', abs: -1}\n", "abs"),
                            ("nan rel", "rules:\n  - {pattern: '*', rel: .nan}\n", "rel"),
                            ("rule without pattern", "rules:\n  - {abs: 1}\n", "pattern"),
                            ("rule without tolerance", "rules:\n  - {pattern: '*'}\n", "abs and/or rel"),
                            ("unknown rule key", "rules:\n  - {pattern: '*', abss: 1}\n", "unknown key"),
                            ("empty file", "", "'rules:'")]:
        out.append(Case(f"tolerances: {name}", "files: tolerances", ["verify", "--published", "pub.json",
                                                                     "--tolerances", "tol.yaml"],
                        chain(pub, write("tol.yaml", text)), names=("tol.yaml", msg)))
    out.append(Case("tolerances missing", "files: tolerances", ["verify", "--published", "pub.json", "--tolerances",
                                                                "nope.yaml"], pub, names=("nope.yaml",)))
    # --- raw data
    ts, mn = "data/raw/tinyshakespeare/input.txt", "data/raw/mnist/t10k-labels-idx1-ubyte.gz"
    out += [
        Case("raw text tampered (prepare fox)", "raw data", ["prepare", "fox"],
             chain(raw("tinyshakespeare"), mutate(ts, lambda b: b.replace(b"First", b"Fist", 1))), names=(ts,)),
        Case("raw text truncated (prepare fox)", "raw data", ["prepare", "fox"],
             chain(raw("tinyshakespeare"), mutate(ts, lambda b: b[:1000])), names=(ts,)),
        Case("raw gzip byte flipped (prepare mnist)", "raw data", ["prepare", "dropout_mnist"],
             chain(raw("mnist"), mutate(mn, flip_byte)), names=(mn,)),
        Case("raw gzip truncated (prepare mnist)", "raw data", ["prepare", "dropout_mnist"],
             chain(raw("mnist"), mutate(mn, lambda b: b[:-100])), names=(mn,)),
        Case("raw gzip bytes appended (prepare mnist)", "raw data", ["prepare", "dropout_mnist"],
             chain(raw("mnist"), mutate(mn, lambda b: b + b"junk")), names=(mn,)),
        Case("raw gzip corrupt under DVC (no re-check)", "raw data", ["prepare", "dropout_mnist"],
             chain(raw("mnist"), mutate(mn, lambda b: b[:-100])), names=("data/raw",), env={"DVC_STAGE": "x"}),
        Case("raw file missing (prepare mnist)", "raw data", ["prepare", "dropout_mnist"],
             chain(raw("mnist"), remove(mn)), names=("t10k-labels-idx1-ubyte.gz",)),
        Case("raw multi30k tampered (prepare seq2seq)", "raw data", ["prepare", "seq2seq_multi30k"],
             chain(raw("multi30k"), mutate("data/raw/multi30k/val.de.gz", flip_byte)),
             names=("data/raw/multi30k/val.de.gz",)),
        Case("raw mnist intact (prepare mnist)", "raw data", ["prepare", "dropout_mnist"], raw("mnist"), expect="ok",
             check_ok=lambda ws: (ws / "data/prepared/mnist.npz").is_file()),
    ]
    # --- fetching
    def mirror_with(rel: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
        def setup(ws: Path):
            m = ws / "mirror" / "tinyshakespeare"
            m.mkdir(parents=True)
            (m / "input.txt").write_bytes(fn((MIRROR / "tinyshakespeare" / "input.txt").read_bytes()))

        return setup

    fetch = ["fetch", "tinyshakespeare", "--mirror", "mirror"]
    out += [
        Case("mirror file wrong size", "fetch", fetch, mirror_with("input.txt", lambda b: b + b"x"), names=("input.txt",)),
        Case("mirror file same size, wrong bytes", "fetch", fetch, mirror_with("input.txt", flip_byte),
             names=("tinyshakespeare/input.txt", "SHA-256")),
        Case("mirror file huge", "fetch", fetch, mirror_with("input.txt", lambda b: b * 50), names=("input.txt",)),
        Case("unknown dataset", "fetch", ["fetch", "nope"], names=("nope",)),
        Case("archive bomb (50 MiB from ~50 KB)", "fetch", ["fetch", "evil", "--mirror", ""],
             child=registry_with(zip_bomb), names=("big.bin", "registry")),
        Case("archive path traversal", "fetch", ["fetch", "evil", "--mirror", ""], child=registry_with(zip_slip),
             names=("outside",)),
        Case("archive member missing", "fetch", ["fetch", "evil", "--mirror", ""], child=registry_with(wrong_member),
             names=("b.txt",)),
        Case("archive not a zip", "fetch", ["fetch", "evil", "--mirror", ""], child=registry_with(not_a_zip),
             names=("evil/a.txt",)),
        Case("raw tampered, fetch repairs it", "fetch", ["fetch", "tinyshakespeare", "--mirror", str(MIRROR)],
             chain(raw("tinyshakespeare"), mutate(ts, flip_byte)), expect="ok",
             check_ok=lambda ws: hashlib.sha256((ws / ts).read_bytes()).digest()
             == hashlib.sha256((MIRROR / "tinyshakespeare/input.txt").read_bytes()).digest()),
    ]
    # --- disks
    out += [
        Case("models/ read-only (train)", "disk", STAGE["dropout_toy"], child=readonly("models"), names=("models",)),
        Case("plots/ read-only (train)", "disk", STAGE["dropout_toy"], child=readonly("plots"), names=("plots",)),
        Case("metrics/ read-only (evaluate)", "disk", EVAL, child=readonly("metrics"), names=("metrics",)),
        Case("data/prepared missing parent read-only (prepare)", "disk", ["prepare", "dropout_mnist"],
             raw("mnist"), child=readonly("data"), names=("data/prepared",)),
        Case("README folder read-only (report)", "disk", ["report", "--readme", "README.md"], child=readonly("."),
             names=("cannot write",)),
        Case("disk full before training", "disk", STAGE["dropout_toy"], child=disk_full_free, names=("MiB free",)),
        Case("disk full before evaluating", "disk", EVAL, child=disk_full_free, names=("MiB free",)),
        Case("disk fills while writing a checkpoint", "disk", STAGE["dropout_toy"], child=enospc_on_write,
             names=("seed0.pt", "no space left")),
        Case("--root is a file", "disk", ["train", "dropout_toy", "plain", "--root", "params.yaml"],
             names=("--root",)),
    ]
    # --- resources, kills, concurrency, usage, bugs
    out += [
        Case("model bigger than memory", "resources", STAGE["dropout_toy"], child=tiny_memory,
             names=("out of memory", "params")),
        Case("huge steps: estimate first", "resources", [], special=estimate_first, expect="ok"),
        Case("dvc killed mid-stage: child stops", "faults", [], special=kill_parent_dvc, expect="ok"),
        Case("SIGTERM mid-training", "faults", [], special=signal_stage(signal.SIGTERM), expect="ok"),
        Case("Ctrl-C mid-training", "faults", [], special=signal_stage(signal.SIGINT), expect="ok"),
        Case("two trains of one variant at once", "faults", [], special=concurrent_train, expect="ok"),
        Case("unknown experiment", "usage", ["train", "nope", "plain"], names=("nope",)),
        Case("unknown variant", "usage", ["train", "dropout_toy", "nope"], names=("nope",)),
        Case("prepare on an experiment without one", "usage", ["prepare", "dropout_toy"], names=("dropout_toy",)),
        Case("unknown command", "usage", ["frobnicate"], names=("frobnicate",)),
        Case("a bug: one line, traceback in logs/", "bugs", ["datasets"], child=raise_bug,
             names=("unexpected TypeError", "mlpapers-error.log")),
        Case("control: valid tiny train", "control", STAGE["dropout_toy"], expect="ok"),
        Case("control: check-params", "control", ["check-params"], expect="ok"),
    ]
    return out


