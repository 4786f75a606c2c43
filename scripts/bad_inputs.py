"""The bad-input table (issue 10): >= 100 hostile-but-realistic inputs and faults, one row each.

    python scripts/bad_inputs.py            # every case; prints the table and a summary
    python scripts/bad_inputs.py -k seeds   # only cases whose name contains 'seeds'
    python scripts/bad_inputs.py --markdown table.md

Each case mutates a fresh copy of a tiny workspace (tests/params_tiny.yaml with one worker,
dropout_toy trained for 6 steps and evaluated), runs one ``mlpapers`` command in a forked
child (stdout/stderr captured, killed after a timeout) and checks: the exit status; exactly
one error line and no traceback; that the line names the key or file; that nothing the
command was not meant to write changed (tracked outputs: everything but logs/).

Outcomes: ``clear error`` (what we want for bad input), ``ok`` (a control or a fault the
pipeline recovers from, correctly accepted), ``unclear error`` (non-zero exit, but no single
line naming the key/file), ``traceback``, ``silently wrong`` (bad input accepted: exit 0),
``hang``, ``lost`` (a tracked output changed or vanished), ``stale case`` (the params key
the case targets no longer exists: paper params change; not a failure).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_input_cases import MIRROR, ROOT, STALE, TIMEOUT, TINY, Case, cases, write_params  # noqa: E402


# ---------------------------------------------------------------------------- running

def snapshot(ws: Path) -> dict[str, str]:
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file() and "logs" not in p.relative_to(ws).parts}


WITH_PARAMS = {"train", "evaluate", "prepare", "plot", "check-params"}


def full_argv(case: Case, ws: Path) -> list[str]:
    argv = list(case.argv)
    if not argv:
        return argv
    if argv[0] in WITH_PARAMS and "--params" not in argv:
        argv += ["--params", "params.yaml"]
    if argv[0] in WITH_PARAMS | {"report", "verify", "fetch", "datasets"} and "--root" not in argv:
        argv += ["--root", "."]
    return argv


def run_forked(case: Case, ws: Path) -> dict:
    out_path = ws.parent / f"{ws.name}.out"
    pid = os.fork()
    if pid == 0:  # child
        try:
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(ws)
            os.environ.update(case.env)
            os.environ.pop("DVC_STAGE", None) if "DVC_STAGE" not in case.env else None
            if case.child:
                case.child(ws)
            from mlpapers.cli import main

            rc = main(full_argv(case, ws))
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            rc = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            return {"rc": rc, "out": out_path.read_text(errors="replace"), "hang": False}
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return {"rc": "timeout", "out": out_path.read_text(errors="replace"), "hang": True}


def judge(case: Case, ws: Path, before: dict[str, str], res: dict) -> dict:
    out = res["out"]
    err_lines = [ln for ln in out.splitlines() if ": error: " in ln]
    line = err_lines[0] if err_lines else ""
    traceback = "Traceback (most recent call last)" in out
    one_line = res.get("one_line", len(err_lines) == 1)
    names = res.get("names", all(n.replace("{ws}", str(ws)) in line for n in case.names))
    after = snapshot(ws)
    lost = [k for k, v in before.items() if after.get(k) != v and not k.startswith(("mirror", "data/prepared"))]
    if case.expect == "ok":  # outputs may legitimately be rewritten (same bytes: a deterministic rerun)
        lost = [k for k in before if k not in after and not k.startswith("mirror")]
    rc = res["rc"]
    if res["hang"]:
        outcome = "hang"
    elif lost:
        outcome = "lost"
    elif traceback:
        outcome = "traceback"
    elif case.expect == "ok":
        ok = res.get("expect_ok_override", rc == case.ok_rc and (case.check_ok is None or case.check_ok(ws)))
        outcome = "ok" if ok else "unclear error"
    elif rc == 0:
        outcome = "silently wrong"
    elif one_line and names:
        outcome = "clear error"
    else:
        outcome = "unclear error"
    if case.expect == "ok" and not err_lines:
        one_line = "-"  # nothing to report: the command succeeded (or stopped as it should)
    return {"case": case.name, "class": case.cls, "rc": rc, "one_line": one_line, "traceback": traceback,
            "hang": res["hang"], "silent": outcome == "silently wrong", "lost": ", ".join(lost[:3]),
            "outcome": outcome, "message": line.split(": error: ", 1)[-1][:160] if line else out.strip()[-160:]}


def run_case(case: Case, base: Path, scratch: Path, i: int) -> dict:
    ws = scratch / f"case{i:03d}"
    shutil.copytree(base, ws, symlinks=True)
    if case.setup is not None and case.setup(ws) is STALE:
        shutil.rmtree(ws, ignore_errors=True)
        return {"case": case.name, "class": case.cls, "rc": "-", "one_line": "-", "traceback": "-", "hang": "-",
                "silent": "-", "lost": "", "outcome": "stale case", "message": "key not in params (paper changed)"}
    before = snapshot(ws)
    res = case.special(ws, case) if case.special else run_forked(case, ws)
    row = judge(case, ws, before, res)
    shutil.rmtree(ws, ignore_errors=True)
    return row


def build_base(scratch: Path) -> Path:
    base = scratch / "base"
    base.mkdir()
    write_params(base, TINY)
    shutil.copy(ROOT / "tolerances.yaml", base / "tolerances.yaml")
    shutil.copy(ROOT / "README.md", base / "README.md")
    for argv in (["train", "dropout_toy", "plain"], ["train", "dropout_toy", "dropout"], ["evaluate", "dropout_toy"]):
        res = run_forked(Case("base", "base", argv), base)
        if res["rc"] != 0:
            raise SystemExit(f"building the base workspace failed: {argv}\n{res['out']}")
    (scratch / "base.out").unlink(missing_ok=True)
    return base


def yn(v: Any) -> str:
    return "yes" if v is True else "no" if v is False else str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--markdown", default=None, help="also write the table as markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    os.environ.setdefault("MLPAPERS_DATA_MIRROR", str(MIRROR))
    os.environ.pop("DVC_STAGE", None)
    os.environ["MLPAPERS_NUM_THREADS"] = "1"
    # import everything once (torch, the papers, matplotlib); the forked children share it
    import mlpapers.cli  # noqa: F401
    import mlpapers.errors  # noqa: F401
    import mlpapers.report  # noqa: F401
    import mlpapers.verify  # noqa: F401
    from mlpapers.experiment import EXPERIMENTS, get_experiment

    for name in EXPERIMENTS:
        get_experiment(name)

    selected = [c for c in cases() if args.k in c.name or args.k in c.cls]
    scratch = Path(tempfile.mkdtemp(prefix="mlpapers-bad-inputs-"))
    t0 = time.time()
    try:
        base = build_base(scratch)
        rows = []
        for i, case in enumerate(selected):
            row = run_case(case, base, scratch, i)
            rows.append(row)
            print(f"[{i + 1:3d}/{len(selected)}] {row['outcome']:14s} {case.name}: {row['message']}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    cols = ["case", "class", "rc", "one_line", "traceback", "hang", "silent", "lost", "outcome"]
    head = ["case", "class", "exit", "one-line?", "traceback?", "hang?", "silently wrong?", "lost?", "outcome"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        table.append("| " + " | ".join(yn(r[c]) if c != "lost" else (r[c] or "no") for c in cols) + " |")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    summary = [f"{len(rows)} cases in {time.time() - t0:.0f} s:"] + [f"  {k:15s} {v}" for k, v in sorted(counts.items())]
    print("\n".join(table))
    print("\n".join(summary))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(table) + "\n\n" + "\n".join(summary) + "\n")
    bad = sum(counts.get(k, 0) for k in ("silently wrong", "hang", "traceback", "lost", "unclear error"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
