"""Seq2Seq experiments as pipeline stages (params sections ``seq2seq_multi30k``, ``seq2seq_reverse``).

* Multi30k German -> English: attention model(s) vs the fixed-vector baseline at equal
  steps; corpus BLEU (sacreBLEU) on test_2016_flickr, BLEU per source-length bucket on the
  union of the 2016/2017 test sets (Luong Fig. 6), attention heatmaps (Luong Fig. 7).
* Synthetic reversal: exact match and token accuracy vs input length, including lengths
  beyond the training range (Bahdanau et al. Fig. 2 analogue).
Scale and deviations from the papers are listed in README.md.
"""
from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, replace
from typing import Literal, Mapping

import numpy as np
import torch

from mlpapers import stats
from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.seq2seq.alignment import alignment_stats
from mlpapers.papers.seq2seq.model import UNK, Seq2Seq
from mlpapers.papers.seq2seq.task import (ReversalTask, TranslationTask, Vocab, corpus_bleu, read_lines,
                                          reversal_accuracy, reversal_pairs, translate)
from mlpapers.papers.seq2seq.tokenizer import detokenize, tokenize, unk_rate
from mlpapers.runner import parallel_map, write_history
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import atomic_write_text, resolve_device, seed_everything, write_csv, write_json

log = logging.getLogger(__name__)

TEST_SETS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")


@dataclass(frozen=True)
class ModelConfig:
    embed: int  # embedding size (source and target)
    hidden: int  # LSTM size per direction; also the attention / h̃ width
    attention: Literal["dot", "general", "concat", "none"]  # Luong Eq. 8 score; none = baseline
    input_feed: bool  # Luong Section 3.3 (per-step loop; off = fast path)
    dropout: float  # on embeddings and on h̃_t before the softmax layer

    def validate(self) -> None:
        if self.embed < 1 or self.hidden < 1:
            raise ValueError("embed and hidden must be >= 1")
        if self.embed > 4096 or self.hidden > 4096:
            raise ValueError("embed and hidden must be <= 4096")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.input_feed and self.attention == "none":
            raise ValueError("input_feed: true needs an attention score (not none)")


@dataclass(frozen=True)
class Multi30kData:
    min_freq: int  # vocabulary: training-split tokens seen at least this often; others -> <unk>
    max_train_len: int  # drop training pairs with more tokens than this on either side
    length_buckets: tuple[int, ...]  # upper edges (source tokens) of BLEU buckets; the last is open
    max_decode_len: int  # decoding stops here if no <eos>
    beam: int  # beam size of the reported decode (1 = greedy); greedy test2016 BLEU is reported beside it
    alpha: float  # length normalisation of the final beam pick: log p(y|x) / |y|^alpha (0 = none)
    heatmap_sentences: tuple[int, ...]  # indices into test_2016_flickr for the attention plot
    test_limit: int  # evaluate on the first N sentences of each test set; 0 = all (tiny runs only)

    def validate(self) -> None:
        if self.min_freq < 1 or self.max_train_len < 1 or self.max_decode_len < 1 or self.test_limit < 0:
            raise ValueError("min_freq, max_train_len and max_decode_len must be >= 1, test_limit >= 0")
        if not 1 <= self.beam <= 64 or not 0 <= self.alpha <= 2:
            raise ValueError(f"beam must be in [1, 64] and alpha in [0, 2], got {self.beam}, {self.alpha}")
        if self.test_limit and max(self.heatmap_sentences, default=0) >= self.test_limit:
            raise ValueError("heatmap_sentences must be < test_limit")
        if list(self.length_buckets) != sorted(set(self.length_buckets)) or not self.length_buckets:
            raise ValueError(f"length_buckets must be strictly increasing, got {list(self.length_buckets)}")


@dataclass(frozen=True)
class Multi30kConfig:
    seeds: tuple[int, ...]
    data: Multi30kData
    models: Mapping[str, ModelConfig]  # variant -> model; "baseline" is the fixed-vector model
    train: TrainConfig

    def validate(self) -> None:
        _check_seeds_and_models(self.seeds, self.models)


@dataclass(frozen=True)
class ReverseData:
    n_symbols: int  # alphabet size (besides the 4 specials)
    train_min_len: int  # training lengths are uniform in [train_min_len, train_max_len]
    train_max_len: int
    test_lengths: tuple[int, ...]  # evaluated lengths; include some > train_max_len
    n_test: int  # test sequences per length
    test_seed: int  # seed of the test sequences (same for every model and seed)
    max_decode_extra: int  # greedy decoding may run to length + this

    def validate(self) -> None:
        if not 1 <= self.train_min_len <= self.train_max_len:
            raise ValueError("need 1 <= train_min_len <= train_max_len")
        if self.n_symbols < 2 or self.n_test < 1 or not self.test_lengths or min(self.test_lengths) < 1:
            raise ValueError("n_symbols >= 2, n_test >= 1 and test_lengths >= 1 required")
        if self.max_decode_extra < 0:
            raise ValueError("max_decode_extra must be >= 0")


@dataclass(frozen=True)
class ReverseConfig:
    seeds: tuple[int, ...]
    data: ReverseData
    models: Mapping[str, ModelConfig]
    train: TrainConfig

    def validate(self) -> None:
        _check_seeds_and_models(self.seeds, self.models)


def _check_seeds_and_models(seeds, models) -> None:
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be non-empty, unique and >= 0, got {list(seeds)}")
    if "baseline" not in models or models["baseline"].attention != "none":
        raise ValueError("models must contain a 'baseline' variant with attention: none")


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    return Seq2Seq(src_vocab, tgt_vocab, cfg.embed, cfg.hidden, cfg.attention, cfg.input_feed, cfg.dropout)


def summaries(per_seed: dict) -> dict:
    """Nested dict of per-seed value lists -> the same nesting of stats.summarize dicts."""
    return {k: summaries(v) if isinstance(v, dict) else stats.summarize(v) for k, v in per_seed.items()}


def paired_all(a: dict, b: dict) -> dict:
    """Nested per-seed lists a, b (same seeds) -> nested stats.paired(a - b) summaries."""
    return {k: paired_all(v, b[k]) if isinstance(v, dict) else stats.paired(v, b[k]) for k, v in a.items() if k in b}


def collect(rows: list[dict]) -> dict:
    """Per-seed result dicts (same nesting) -> one dict of per-seed lists."""
    out: dict = {}
    for k, v in rows[0].items():
        out[k] = collect([r[k] for r in rows]) if isinstance(v, dict) else [r[k] for r in rows]
    return out


# ---------------------------------------------------------------------------- Multi30k


def _prepared(paths: Paths):
    return paths.prepared / "seq2seq_multi30k.json"


def prepare_multi30k(cfg: Multi30kConfig, paths: Paths) -> None:
    """Moses-tokenise (lower-cased), build vocabularies from train only, encode every split."""
    raw = paths.raw / "multi30k"
    toks = {s: {lang: [tokenize(t, lang) for t in read_lines(raw / f"{s}.{lang}.gz")] for lang in ("de", "en")}
            for s in ("train", "val", *TEST_SETS)}
    vde = Vocab.build(toks["train"]["de"], cfg.data.min_freq)
    ven = Vocab.build(toks["train"]["en"], cfg.data.min_freq)
    splits = {s: {"src": [vde.encode(x) for x in d["de"]], "tgt": [ven.encode(y) for y in d["en"]]}
              for s, d in toks.items()}
    unk = {s: {"de": unk_rate(d["src"], UNK), "en": unk_rate(d["tgt"], UNK)} for s, d in splits.items()}
    keep = [i for i, (x, y) in enumerate(zip(splits["train"]["src"], splits["train"]["tgt"]))
            if 0 < len(x) <= cfg.data.max_train_len and 0 < len(y) <= cfg.data.max_train_len]
    splits["train"] = {k: [v[i] for i in keep] for k, v in splits["train"].items()}
    out = {"src_vocab": vde.itos, "tgt_vocab": ven.itos, "unk_rate": unk, "splits": splits}
    atomic_write_text(_prepared(paths), json.dumps(out, separators=(",", ":")))
    log.info("multi30k: vocab de %d, en %d (min_freq %d); %d training pairs; unk rate test2016 de %.3f en %.3f",
             len(vde), len(ven), cfg.data.min_freq, len(keep), unk["test_2016_flickr"]["de"],
             unk["test_2016_flickr"]["en"])


def load_prepared(paths: Paths, with_unk: bool = False):
    with open(_prepared(paths)) as f:
        d = json.load(f)
    out = Vocab(d["src_vocab"]), Vocab(d["tgt_vocab"]), d["splits"]
    return (*out, d["unk_rate"]) if with_unk else out


def val_bleu(model: Seq2Seq, cfg: Multi30kConfig, paths: Paths, ven: Vocab, splits: dict, device) -> float:
    """Greedy BLEU on the validation split (the sweep's selection metric; test is never looked at)."""
    cut = cfg.data.test_limit or None
    refs = read_lines(paths.raw / "multi30k" / "val.en.gz")[:cut]
    ids, _ = translate(model, splits["val"]["src"][:cut], cfg.data.max_decode_len, device)
    return corpus_bleu([detokenize(ven.decode(h)) for h in ids], refs)[0]


def train_multi30k_seed(cfg: Multi30kConfig, variant: str, paths: Paths, seed: int) -> tuple[list[dict], dict]:
    """One seed: train, checkpoint, and score on validation (loss, greedy BLEU)."""
    vde, ven, splits = load_prepared(paths)
    mcfg = cfg.models[variant]
    seed_everything(seed)
    model = build_model(mcfg, len(vde), len(ven))
    tr, va = splits["train"], splits["val"]
    task = TranslationTask(model, tr["src"], tr["tgt"], cfg.train.batch_size, (va["src"], va["tgt"]))
    history = fit(task, cfg.train, seed=seed, desc=f"seq2seq_multi30k/{variant}/seed{seed}")
    save_checkpoint(paths.checkpoint("seq2seq_multi30k", variant, f"seed{seed}"), model,
                    model_config=mcfg, train_config=cfg.train, seed=seed)
    val = {"val_loss": history[-1]["val_loss"], "val_bleu_greedy": val_bleu(model, cfg, paths, ven, splits, task.device)}
    return [{"seed": seed, **r} for r in history], val


def train_multi30k(cfg: Multi30kConfig, variant: str, paths: Paths) -> None:
    per_seed = parallel_map(functools.partial(train_multi30k_seed, cfg, variant, paths), cfg.seeds, paths.compute)
    write_history(paths.plots / "seq2seq_multi30k" / f"history_{variant}.csv", sum([h for h, _ in per_seed], []),
                  paths.root)
    # validation numbers of this variant (the learning-rate sweep in the README selects on these)
    write_json(paths.results / "seq2seq_multi30k_train" / f"{variant}.json",
               summaries(collect([v for _, v in per_seed])))


def bucket_name(n: int, edges: tuple[int, ...]) -> str:
    lo = 1
    for e in edges:
        if n <= e:
            return f"{lo}-{e}"
        lo = e + 1
    return f"{lo}+"


def evaluate_multi30k_job(cfg: Multi30kConfig, paths: Paths, job: tuple[str, int]) -> dict:
    """One (variant, seed): beam BLEU on each test set and per length bucket, greedy BLEU on
    test2016, validation loss, alignment diagnostics on test2016, heatmap sentences."""
    variant, seed = job
    mcfg, d = cfg.models[variant], cfg.data
    device = resolve_device(cfg.train.device)
    vde, ven, splits = load_prepared(paths)
    cut = d.test_limit or None
    model = build_model(mcfg, len(vde), len(ven))
    load_checkpoint(paths.checkpoint("seq2seq_multi30k", variant, f"seed{seed}"), model)
    model.to(device).eval()
    res: dict = {}
    hyp_all, ref_all, src_all = [], [], []
    for s in TEST_SETS:
        src, refs = splits[s]["src"][:cut], read_lines(paths.raw / "multi30k" / f"{s}.en.gz")[:cut]
        ids, atts = translate(model, src, d.max_decode_len, device, beam=d.beam, alpha=d.alpha,
                              attention=s == "test_2016_flickr")
        hyps = [detokenize(ven.decode(h)) for h in ids]
        res[f"bleu_{s}"], res["signature"] = corpus_bleu(hyps, refs)
        hyp_all, ref_all, src_all = hyp_all + hyps, ref_all + refs, src_all + src
        if s == "test_2016_flickr":
            g_ids, _ = translate(model, src, d.max_decode_len, device)  # greedy, beside the beam
            res["bleu_greedy_test_2016_flickr"] = corpus_bleu([detokenize(ven.decode(h)) for h in g_ids], refs)[0]
            if atts[0] is not None:
                res["alignment"] = alignment_stats(atts)
                res["heat"] = [{"src": [vde.itos[i] for i in src[k]], "hyp": ven.decode(ids[k]) + ["<eos>"],
                                "weights": atts[k].tolist()} for k in d.heatmap_sentences]
    buckets = [bucket_name(len(x), d.length_buckets) for x in src_all]
    res["bleu_by_length"] = {}
    for b in dict.fromkeys(bucket_name(e, d.length_buckets) for e in (*d.length_buckets, d.length_buckets[-1] + 1)):
        sel = [i for i, bb in enumerate(buckets) if bb == b]
        res["bleu_by_length"][b] = corpus_bleu([hyp_all[i] for i in sel], [ref_all[i] for i in sel])[0] if sel else 0.0
    task = TranslationTask(model, [], [], 1, (splits["val"]["src"], splits["val"]["tgt"]))
    task.device = device
    with torch.no_grad():
        res["val_loss"] = task.evaluate()["val_loss"]
    return res


def evaluate_multi30k(cfg: Multi30kConfig, paths: Paths) -> None:
    d = cfg.data
    _, _, splits, unk = load_prepared(paths, with_unk=True)
    cut = d.test_limit or None
    jobs = [(v, seed) for v in cfg.models for seed in cfg.seeds]
    results = parallel_map(functools.partial(evaluate_multi30k_job, cfg, paths), jobs, paths.compute)
    union = [x for s in TEST_SETS for x in splits[s]["src"][:cut]]
    names = list(results[0]["bleu_by_length"])
    out: dict = {"sacrebleu_signature": results[0]["signature"], "decode": {"beam": d.beam, "alpha": d.alpha},
                 "unk_rate": unk, "bucket_sizes": {b: sum(bucket_name(len(x), d.length_buckets) == b for x in union)
                                                  for b in names}}
    per_seed: dict = {}
    heat = None
    for v in cfg.models:
        rows = [r for (vv, _), r in zip(jobs, results) if vv == v]
        if heat is None and "heat" in rows[0]:  # tuned attention model, first seed
            heat = {"variant": v, "seed": cfg.seeds[0], "sentences": rows[0]["heat"]}
        per_seed[v] = collect([{k: x for k, x in r.items() if k not in ("heat", "signature")} for r in rows])
        out[v] = summaries(per_seed[v])
    for v in cfg.models:
        if v == "baseline":
            continue
        diff = paired_all({k: x for k, x in per_seed[v].items() if k != "alignment"}, per_seed["baseline"])
        b = per_seed[v]["bleu_by_length"]
        base = per_seed["baseline"]["bleu_by_length"]
        # does attention's gain grow from the shortest to the longest bucket (Luong Fig. 6)?
        diff["gain_long_minus_short"] = stats.paired(np.subtract(b[names[-1]], base[names[-1]]),
                                                     np.subtract(b[names[0]], base[names[0]]))
        out[f"{v}_minus_baseline"] = diff
        if "alignment" in per_seed[v]:
            al = per_seed[v]["alignment"]
            out[v]["alignment"]["entropy_minus_uniform"] = stats.paired(al["entropy"], al["uniform_entropy"])
        fed = [w for w in cfg.models if w != v and cfg.models[w] == replace(cfg.models[v], input_feed=True)]
        if not cfg.models[v].input_feed and fed:  # input feeding (Luong §3.3) at equal steps
            out[f"{fed[0]}_minus_{v}"] = paired_all({"bleu_test_2016_flickr": per_seed[fed[0]]["bleu_test_2016_flickr"]},
                                                   per_seed[v])
    curve = [{"variant": v, "bucket": b, "order": i, "n": out["bucket_sizes"][b],
              "bleu": out[v]["bleu_by_length"][b]["mean"], "bleu_std": _nan0(out[v]["bleu_by_length"][b]["std"])}
             for v in cfg.models for i, b in enumerate(names)]
    write_json(paths.metrics / "seq2seq_multi30k.json", out)
    write_csv(paths.plots / "seq2seq_multi30k" / "bleu_by_length.csv", curve)
    if heat is not None:
        write_json(paths.plots / "seq2seq_multi30k" / "attention.json", heat, digits=4)


def _nan0(x: float) -> float:
    return 0.0 if x != x else x


# -------------------------------------------------------------------------- reversal


def train_reverse_seed(cfg: ReverseConfig, variant: str, paths: Paths, seed: int) -> list[dict]:
    mcfg, d = cfg.models[variant], cfg.data
    seed_everything(seed)
    model = build_model(mcfg, 4 + d.n_symbols, 4 + d.n_symbols)
    task = ReversalTask(model, d.n_symbols, d.train_min_len, d.train_max_len, cfg.train.batch_size)
    history = fit(task, cfg.train, seed=seed, desc=f"seq2seq_reverse/{variant}/seed{seed}")
    save_checkpoint(paths.checkpoint("seq2seq_reverse", variant, f"seed{seed}"), model,
                    model_config=mcfg, train_config=cfg.train, seed=seed)
    return [{"seed": seed, **r} for r in history]


def train_reverse(cfg: ReverseConfig, variant: str, paths: Paths) -> None:
    per_seed = parallel_map(functools.partial(train_reverse_seed, cfg, variant, paths), cfg.seeds, paths.compute)
    write_history(paths.plots / "seq2seq_reverse" / f"history_{variant}.csv", sum(per_seed, []), paths.root)


def reversal_test_set(d: ReverseData):
    """length -> (sources, reversed targets), from test_seed only."""
    g = torch.Generator().manual_seed(d.test_seed)
    return {L: reversal_pairs(d.n_test, torch.full((d.n_test,), L), d.n_symbols, g) for L in d.test_lengths}


def evaluate_reverse_job(cfg: ReverseConfig, paths: Paths, job: tuple[str, int]) -> dict:
    """One (variant, seed): greedy exact match and token accuracy per test length."""
    variant, seed = job
    d = cfg.data
    device = resolve_device(cfg.train.device)
    model = build_model(cfg.models[variant], 4 + d.n_symbols, 4 + d.n_symbols)
    load_checkpoint(paths.checkpoint("seq2seq_reverse", variant, f"seed{seed}"), model)
    model.to(device)
    res = {}
    for L, (src, tgt) in reversal_test_set(d).items():
        hyps, _ = translate(model, src, L + d.max_decode_extra, device)
        exact, tok = reversal_accuracy(hyps, tgt)
        res[f"L{L:02d}"] = {"exact": exact, "token": tok}
    in_range = [L for L in d.test_lengths if d.train_min_len <= L <= d.train_max_len]
    beyond = [L for L in d.test_lengths if L > d.train_max_len]
    for name, Ls in (("in_range", in_range), ("beyond", beyond)):
        if Ls:
            res[name] = {m: float(np.mean([res[f"L{L:02d}"][m] for L in Ls])) for m in ("exact", "token")}
    # token-accuracy drop from the shortest to the longest in-range length
    res["drop"] = {"token": res[f"L{min(in_range):02d}"]["token"] - res[f"L{max(in_range):02d}"]["token"]}
    return res


def evaluate_reverse(cfg: ReverseConfig, paths: Paths) -> None:
    d = cfg.data
    jobs = [(v, seed) for v in cfg.models for seed in cfg.seeds]
    results = parallel_map(functools.partial(evaluate_reverse_job, cfg, paths), jobs, paths.compute)
    out: dict = {"train_lengths": {"min": d.train_min_len, "max": d.train_max_len}}
    per_seed = {v: collect([r for (vv, _), r in zip(jobs, results) if vv == v]) for v in cfg.models}
    curve = []
    for v in cfg.models:
        out[v] = summaries(per_seed[v])
        for L in d.test_lengths:
            e, t = out[v][f"L{L:02d}"]["exact"], out[v][f"L{L:02d}"]["token"]
            curve.append({"variant": v, "length": L, "exact": e["mean"], "exact_std": _nan0(e["std"]),
                          "token": t["mean"], "token_std": _nan0(t["std"])})
    for v in cfg.models:
        if v != "baseline":
            out[f"{v}_minus_baseline"] = paired_all({k: per_seed[v][k] for k in ("in_range", "beyond", "drop")
                                                     if k in per_seed[v]}, per_seed["baseline"])
    write_json(paths.metrics / "seq2seq_reverse.json", out)
    write_csv(paths.plots / "seq2seq_reverse" / "accuracy_vs_length.csv", curve)


def _report():  # plotting libraries are imported only by the plot and report stages
    from mlpapers.papers.seq2seq import report

    return report


MULTI30K = Experiment(
    name="seq2seq_multi30k", config=Multi30kConfig, variants=lambda cfg: list(cfg.models),
    train=train_multi30k, evaluate=evaluate_multi30k,
    plot=lambda cfg, paths: _report().plot_multi30k(cfg, paths), report=lambda paths: _report().multi30k_markdown(paths),
    prepare=prepare_multi30k,
)
REVERSE = Experiment(
    name="seq2seq_reverse", config=ReverseConfig, variants=lambda cfg: list(cfg.models),
    train=train_reverse, evaluate=evaluate_reverse,
    plot=lambda cfg, paths: _report().plot_reverse(cfg, paths), report=lambda paths: _report().reverse_markdown(paths),
)
