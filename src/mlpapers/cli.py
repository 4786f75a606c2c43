"""The ``mlpapers`` console script. Every DVC stage is one call of it.

Each subcommand parses its arguments, loads and validates its params section (so bad
params fail before any work), seeds, and calls one library function.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from mlpapers.config import ConfigError

log = logging.getLogger("mlpapers")


def _experiment(args, outputs: tuple[str, ...] = ()):
    """Load and check everything a stage needs before any work: its params section (ranges,
    devices), the shared compute section, the raw files it may read (registry hashes) and
    the writability of the folders it writes."""
    from mlpapers.experiment import Paths, get_experiment, load_compute, load_config
    from mlpapers.runner import apply_threads, effective_threads

    exp = get_experiment(args.experiment)
    cfg, compute = load_config(exp, args.params), load_compute(args.params)
    effective_threads(compute)  # MLPAPERS_NUM_THREADS checked before any work
    check_devices(cfg, exp.name)
    paths = Paths(Path(args.root), compute)
    if not paths.root.is_dir():
        raise ConfigError(f"--root {paths.root}: not a folder; run from the repository root or fix --root")
    verify_raw_inputs(paths)
    if outputs:
        from mlpapers.utils import check_writable

        check_writable([getattr(paths, o) for o in outputs])
    apply_threads(compute)  # one shared setting for every paper's stages
    return exp, cfg, paths


def check_devices(cfg, where: str) -> None:
    """Every ``device`` field of the config names a device this machine has (before any work)."""
    import dataclasses

    from mlpapers.utils import resolve_device

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "device" and isinstance(value, str):
            resolve_device(value, key=f"{where}.device")
        elif dataclasses.is_dataclass(value):
            check_devices(value, f"{where}.{f.name}")


def verify_raw_inputs(paths) -> None:
    """Outside DVC, re-check every registered raw file present against the registry (size and
    SHA-256) before a stage may read it; DVC already checks its tracked data/raw outputs.
    ``MLPAPERS_VERIFY_RAW=1`` forces the check, ``0`` skips it."""
    import os

    from mlpapers.data.fetch import verify_raw

    flag = os.environ.get("MLPAPERS_VERIFY_RAW", "")
    if flag == "0" or (flag != "1" and os.environ.get("DVC_STAGE")):
        return
    checked = verify_raw(paths.raw)
    if checked:
        log.debug("%d raw files match the registry", len(checked))


def cmd_fetch(args) -> None:
    from mlpapers.data.fetch import fetch_dataset

    for name in args.datasets:
        fetch_dataset(name, Path(args.root) / "data" / "raw", mirror=args.mirror)


def cmd_datasets(args) -> None:
    from mlpapers.data.registry import DATASETS

    for ds in DATASETS.values():
        print(f"{ds.name}  ({ds.license})  {ds.homepage}")
        for f in ds.files:
            where = f.url or f"{f.archive.url} :: {f.archive.member}"
            print(f"  {f.name:32s} {f.size:>10,d} B  sha256 {f.sha256}\n  {'':32s} {where}")
        if ds.note:
            print(f"  note: {ds.note}")


def cmd_check_params(args) -> None:
    from mlpapers.experiment import EXPERIMENTS, get_experiment, load_compute, load_config
    from mlpapers.runner import effective_threads

    effective_threads(load_compute(args.params))
    for name in EXPERIMENTS:
        load_config(get_experiment(name), args.params)
    print(f"{args.params}: compute + {len(EXPERIMENTS)} sections valid")


def cmd_prepare(args) -> None:
    exp, cfg, paths = _experiment(args, ("prepared",))
    if exp.prepare is None:
        raise ConfigError(f"experiment '{exp.name}' has no prepare step")
    exp.prepare(cfg, paths)


def cmd_train(args) -> None:
    from mlpapers.experiment import get_experiment, load_config

    exp = get_experiment(args.experiment)
    variants = list(exp.variants(load_config(exp, args.params)))
    if args.variant not in variants:
        raise ConfigError(f"{exp.name}: unknown variant '{args.variant}'; params.yaml defines {variants}")
    exp, cfg, paths = _experiment(args, ("models", "plots", "results"))
    from mlpapers import distributed

    n = paths.compute.processes
    if n > 1 or distributed.active():
        check_batches(cfg, exp.name, distributed.world_size() if distributed.active() else n)
    if n > 1 and not distributed.active():  # re-launch this very command as n torchrun ranks
        return distributed.launch(args.argv, n)
    try:
        exp.train(cfg, args.variant, paths)
    except Exception as e:
        if not distributed.peer_lost(e):
            raise
        print(f"mlpapers train: error: rank {distributed.rank()} lost contact with another rank (it died, was "
              f"killed or failed; see its message); stopping without writing ({_first_line(e)})", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()


def check_batches(cfg, where: str, processes: int) -> None:
    """Every ``batch_size`` of the config splits evenly over the data-parallel processes."""
    import dataclasses

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "batch_size" and isinstance(value, int) and value % processes:
            raise ConfigError(f"{where}.batch_size: got {value}, which does not split evenly over "
                              f"compute.processes = {processes}; use a multiple of {processes}")
        elif dataclasses.is_dataclass(value):
            check_batches(value, f"{where}.{f.name}", processes)


def cmd_evaluate(args) -> None:
    exp, cfg, paths = _experiment(args, ("metrics", "results", "plots"))
    exp.evaluate(cfg, paths)
    split_results(paths, exp.name)
    if not args.no_plot:  # one stage per experiment's evaluation: numbers, plot data, then the figures
        exp.plot(cfg, paths)


def split_results(paths, name: str) -> None:
    """``metrics/<name>.json`` as the evaluate function wrote it becomes ``results/<name>.json``
    (every number: git-tracked detail); ``metrics/<name>.json`` keeps the paper's ``headline``
    keys (its pipeline.yaml): what ``dvc exp show`` and ``dvc metrics diff`` show."""
    from mlpapers.pipeline import headline_patterns, select
    from mlpapers.utils import read_json, write_json

    full = read_json(paths.metrics / f"{name}.json")
    patterns = headline_patterns(name)
    headline = select(full, patterns)
    if patterns and not headline:
        raise ConfigError(f"papers' pipeline.yaml headline.{name}: no key of {paths.metrics / f'{name}.json'} "
                          f"matches {patterns}; fix the patterns")
    paths.results.mkdir(parents=True, exist_ok=True)
    write_json(paths.results / f"{name}.json", full)
    write_json(paths.metrics / f"{name}.json", headline)


def cmd_speed(args) -> None:
    from mlpapers.experiment import EXPERIMENTS, get_experiment

    exp, cfg, paths = _experiment(args, ("results",))
    if exp.speed is None:
        raise ConfigError(f"experiment '{exp.name}' measures no speed; those that do: "
                          f"{', '.join(n for n in EXPERIMENTS if get_experiment(n).speed)}")
    exp.speed(cfg, paths)


def cmd_plot(args) -> None:
    exp, cfg, paths = _experiment(args, ("plots",))
    exp.plot(cfg, paths)


def cmd_report(args) -> None:
    from mlpapers.report import write_readme
    from mlpapers.utils import check_writable

    check_writable([Path(args.readme).parent])
    write_readme(Path(args.readme), Path(args.root))


def cmd_sample(args) -> None:
    import torch

    from mlpapers.papers.fox.sample import sample

    torch.set_num_threads(args.threads)  # one token at a time: small matmuls, extra threads only add overhead
    print(sample(Path(args.root), args.model, args.seed, args.prompt, args.tokens, args.temperature,
                 args.top_k or None, args.sampling_seed, args.window, args.device))


def cmd_translate(args) -> None:
    import torch

    from mlpapers.papers.seq2seq.translate import run

    torch.set_num_threads(args.threads)
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for line in run(Path(args.root), Path(args.params), args.model, args.seed, sentences, args.beam, args.alpha,
                    args.max_len, args.strict, args.device):
        print(line)


def cmd_dvc_yaml(args) -> int:
    from mlpapers.pipeline import generated_files
    from mlpapers.utils import atomic_write_text

    root = Path(args.root)
    changed = [p for p, text in generated_files(root).items()
               if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if args.write:
        for p, text in generated_files(root).items():
            if p in changed:
                atomic_write_text(p, text)
                print(f"wrote {p}")
        return 0
    for p in changed:
        print(f"{p}: stale; run `mlpapers dvc-yaml --write`", file=sys.stderr)
    if not changed:
        print("dvc.yaml, tolerances.yaml and tests/params_tiny.yaml match the papers' pipeline.yaml files")
    return 1 if changed else 0


def cmd_ci_stages(args) -> None:
    from mlpapers.config import load_yaml
    from mlpapers.pipeline import ci_plan, ci_stages

    print(" ".join(ci_plan(load_yaml(Path(args.root) / "dvc.yaml", "dvc.yaml"), ci_stages())))


def cmd_verify(args) -> int:
    from mlpapers.verify import verify

    return verify(Path(args.root), rev=args.rev, published=args.published, tolerances=Path(args.tolerances))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlpapers", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show the full traceback of any error (or MLPAPERS_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str, experiment: bool = False, params: bool = True):
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
        sp.add_argument("--root", default=".", help="repository root (default: .)")
        if experiment:
            sp.add_argument("experiment", help="params.yaml section, e.g. dropout_mnist")
        if params:
            sp.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        return sp

    sp = add("fetch", cmd_fetch, "download dataset files into data/raw/<dataset>/, verifying SHA-256 "
             "(looks in $MLPAPERS_DATA_MIRROR first)")
    sp.add_argument("datasets", nargs="+", help="dataset names (see `mlpapers datasets`)")
    sp.add_argument("--mirror", default=None, help="mirror folder (default: $MLPAPERS_DATA_MIRROR)")
    add("datasets", cmd_datasets, "list the dataset registry: files, sizes, SHA-256, URLs, licenses")
    add("check-params", cmd_check_params, "validate every params.yaml section against its dataclass")
    add("prepare", cmd_prepare, "turn raw files into the experiment's prepared data (data/prepared/)", True)
    sp = add("train", cmd_train, "train one variant of an experiment for every seed (models/, plots/<exp>/history_*)", True)
    sp.add_argument("variant", help="variant name from the experiment's params section")
    sp = add("evaluate", cmd_evaluate, "evaluate an experiment's checkpoints into results/<exp>.json (every "
             "number), metrics/<exp>.json (headline), plot data and its PNG plots", True)
    sp.add_argument("--no-plot", action="store_true", help="skip drawing the PNGs (`mlpapers plot` draws them)")
    add("speed", cmd_speed, "measure CPU training/inference throughput of an experiment's models on this "
        "machine into results/<exp>_speed.json (interleaved rounds; not byte-stable by nature)", True)
    add("plot", cmd_plot, "redraw an experiment's PNG plots from its plot data, without evaluating again "
        "(the evaluate stage draws them too)", True)
    sp = add("report", cmd_report, "regenerate the results section of README.md from results/")
    sp.add_argument("--readme", default="README.md")
    sp = add("sample", cmd_sample, "generate text from a trained FoX/Transformer LM checkpoint "
             "(models/fox/<model>/seed<seed>.pt), as nanoGPT's sample.py", params=False)
    sp.add_argument("--model", default="fox", help="variant: fox, transformer, transformer_rope, transformer_nope, gla")
    sp.add_argument("--seed", type=int, default=0, help="training seed of the checkpoint (default: 0)")
    sp.add_argument("--prompt", default="\n", help="start text; every character must be in the vocabulary")
    sp.add_argument("--tokens", type=int, default=500, help="new tokens to generate (default: 500)")
    sp.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy (default: 0.8)")
    sp.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens; 0 = all, 1 = greedy")
    sp.add_argument("--sampling-seed", type=int, default=1337, help="seed of the draws (default: 1337)")
    sp.add_argument("--window", type=int, default=None, help="condition on the last N tokens only "
                    "(default: the training length for transformer, the whole text otherwise)")
    sp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    sp.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    sp = add("translate", cmd_translate, "translate German sentences (arguments, or one per stdin line) to "
             "English with a trained Multi30k Seq2Seq checkpoint, decoding as the evaluate stage does")
    sp.add_argument("sentences", nargs="*", help="German sentences (default: read lines from stdin)")
    sp.add_argument("--model", default="attn_general", help="variant: attn_general or baseline (default: attn_general)")
    sp.add_argument("--seed", type=int, default=0, help="training seed of the checkpoint (default: 0)")
    sp.add_argument("--beam", type=int, default=None, help="beam size; 1 = greedy (default: seq2seq_multi30k.data.beam)")
    sp.add_argument("--alpha", type=float, default=None, help="length normalisation (default: seq2seq_multi30k.data.alpha)")
    sp.add_argument("--max-len", type=int, default=None, help="longest output (default: seq2seq_multi30k.data.max_decode_len)")
    sp.add_argument("--strict", action="store_true", help="fail on words outside the vocabulary instead of <unk>")
    sp.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    sp.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    sp = add("dvc-yaml", cmd_dvc_yaml, "check (or --write) dvc.yaml, tolerances.yaml and tests/params_tiny.yaml "
             "against the papers' pipeline.yaml and tiny.yaml files")
    sp.add_argument("--write", action="store_true", help="regenerate the stale files")
    add("ci-stages", cmd_ci_stages, "print the stages CI reruns from scratch, dependencies first: every paper's `ci` "
        "stages (pipeline.yaml) and the stages making the data and models they need")
    sp = add("verify", cmd_verify, "compare workspace metrics with published ones within tolerances; "
             "exit 1 on drift or missing metrics")
    sp.add_argument("--rev", default="HEAD", help="git revision whose committed metrics are the published ones")
    sp.add_argument("--published", default=None, help="a JSON file of published metrics instead of --rev")
    sp.add_argument("--tolerances", default="tolerances.yaml", help="tolerance rules (default: tolerances.yaml)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every expected failure (bad params, bad or missing files, hash
    mismatch, read-only or full disk, out of memory) is one line on stderr naming the key or
    file and the fix, exit status 2; an unexpected one (a bug) is one line, exit status 1. A
    traceback only with ``--debug`` or ``MLPAPERS_DEBUG=1``."""
    import os

    from mlpapers import distributed

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train` re-launches itself under torchrun
    debug = getattr(args, "debug", False) or os.environ.get("MLPAPERS_DEBUG", "") not in ("", "0")
    quiet = not distributed.is_main()  # ranks > 0 of a torchrun job log warnings only
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    t0 = time.perf_counter()
    from mlpapers.lifeline import Terminated, die_with_parent, raise_on_sigterm

    previous = raise_on_sigterm()
    try:
        if os.environ.get("DVC_STAGE"):  # a stage's outputs are written only by a live stage
            die_with_parent()
        rc = args.func(args) or 0
    except (KeyboardInterrupt, Terminated) as e:
        print(f"mlpapers {args.command}: stopped ({'interrupted' if isinstance(e, KeyboardInterrupt) else e}); "
              "outputs are written atomically, so nothing half-written was left", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    except Exception as e:
        from mlpapers.errors import describe

        msg, rc = describe(e)
        if debug:
            import traceback

            traceback.print_exc()
        elif rc == 1:
            msg += f"; {_save_traceback(e, Path(getattr(args, 'root', '.')))}"
        print(f"mlpapers {args.command}: error: {msg}", file=sys.stderr)
        return rc
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)
    if rc == 0:
        log.info("%s done in %.1f s", args.command, time.perf_counter() - t0)
    return rc


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _save_traceback(e: BaseException, root: Path) -> str:
    """An unexpected error's traceback goes to logs/mlpapers-error.log (git-ignored), not the screen."""
    import traceback

    path = root / "logs" / "mlpapers-error.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(e)))
        return f"traceback in {path} (or run with --debug)"
    except OSError:
        return "run with --debug (or MLPAPERS_DEBUG=1) for the traceback"


if __name__ == "__main__":
    sys.exit(main())
