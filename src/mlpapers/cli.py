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


def _experiment(args):
    from mlpapers.experiment import Paths, get_experiment, load_compute, load_config
    from mlpapers.runner import apply_threads

    exp = get_experiment(args.experiment)
    cfg, compute = load_config(exp, args.params), load_compute(args.params)
    apply_threads(compute)  # one shared setting for every paper's stages
    return exp, cfg, Paths(Path(args.root), compute)


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
    from mlpapers.experiment import EXPERIMENTS, get_experiment, load_config

    from mlpapers.experiment import load_compute

    load_compute(args.params)
    for name in EXPERIMENTS:
        load_config(get_experiment(name), args.params)
    print(f"{args.params}: compute + {len(EXPERIMENTS)} sections valid")


def cmd_prepare(args) -> None:
    exp, cfg, paths = _experiment(args)
    if exp.prepare is None:
        raise SystemExit(f"experiment '{exp.name}' has no prepare step")
    exp.prepare(cfg, paths)


def cmd_train(args) -> None:
    exp, cfg, paths = _experiment(args)
    variants = list(exp.variants(cfg))
    if args.variant not in variants:
        raise ConfigError(f"{exp.name}: unknown variant '{args.variant}'; params.yaml defines {variants}")
    exp.train(cfg, args.variant, paths)


def cmd_evaluate(args) -> None:
    exp, cfg, paths = _experiment(args)
    exp.evaluate(cfg, paths)


def cmd_plot(args) -> None:
    exp, cfg, paths = _experiment(args)
    exp.plot(cfg, paths)


def cmd_report(args) -> None:
    from mlpapers.report import write_readme

    write_readme(Path(args.readme), Path(args.root))


def cmd_verify(args) -> int:
    from mlpapers.verify import verify

    return verify(Path(args.root), rev=args.rev, published=args.published, tolerances=Path(args.tolerances))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlpapers", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str, experiment: bool = False):
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        sp.add_argument("--root", default=".", help="repository root (default: .)")
        if experiment:
            sp.add_argument("experiment", help="params.yaml section, e.g. dropout_mnist")
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
    add("evaluate", cmd_evaluate, "evaluate an experiment's checkpoints into metrics/<exp>*.json and plot data", True)
    add("plot", cmd_plot, "draw an experiment's PNG plots from its plot data", True)
    sp = add("report", cmd_report, "regenerate the results section of README.md from metrics/")
    sp.add_argument("--readme", default="README.md")
    sp = add("verify", cmd_verify, "compare workspace metrics with published ones within tolerances; "
             "exit 1 on drift or missing metrics")
    sp.add_argument("--rev", default="HEAD", help="git revision whose committed metrics are the published ones")
    sp.add_argument("--published", default=None, help="a JSON file of published metrics instead of --rev")
    sp.add_argument("--tolerances", default="tolerances.yaml", help="tolerance rules (default: tolerances.yaml)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    t0 = time.perf_counter()
    from mlpapers.data.fetch import FetchError
    from mlpapers.train import NonFiniteLossError

    try:
        rc = args.func(args) or 0
    except (ConfigError, FetchError, NonFiniteLossError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"mlpapers {args.command}: error: {msg}", file=sys.stderr)
        return 2
    log.info("%s done in %.1f s", args.command, time.perf_counter() - t0)
    return rc


if __name__ == "__main__":
    sys.exit(main())
