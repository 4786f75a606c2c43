"""Seq2Seq experiments as pipeline stages (params sections ``seq2seq_multi30k``, ``seq2seq_reverse``).

* Multi30k German -> English: attention model(s) vs the fixed-vector baseline at equal
  steps; corpus BLEU (sacreBLEU) on test_2016_flickr, BLEU per source-length bucket on the
  union of the 2016/2017 test sets (Luong Fig. 6), attention heatmaps (Luong Fig. 7).
* Synthetic reversal: exact match and token accuracy vs input length, including lengths
  beyond the training range (Bahdanau et al. Fig. 2 analogue).
Scale and deviations from the papers are listed in README.md.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
import torch

from mlpapers.experiment import Experiment, Paths
from mlpapers.papers.seq2seq.model import Seq2Seq
from mlpapers.papers.seq2seq.task import (ReversalTask, TranslationTask, Vocab, corpus_bleu, detokenize,
                                          read_lines, reversal_accuracy, reversal_pairs, tokenize, translate)
from mlpapers.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from mlpapers.utils import atomic_write_text, mean_std, resolve_device, seed_everything, write_csv, write_json

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
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.input_feed and self.attention == "none":
            raise ValueError("input_feed: true needs an attention score (not none)")


@dataclass(frozen=True)
class Multi30kData:
    min_freq: int  # vocabulary: training-split tokens seen at least this often; others -> <unk>
    max_train_len: int  # drop training pairs with more tokens than this on either side
    length_buckets: tuple[int, ...]  # upper edges (source tokens) of BLEU buckets; the last is open
    max_decode_len: int  # greedy decoding stops here if no <eos>
    heatmap_sentences: tuple[int, ...]  # indices into test_2016_flickr for the attention plot
    test_limit: int  # evaluate on the first N sentences of each test set; 0 = all (tiny runs only)

    def validate(self) -> None:
        if self.min_freq < 1 or self.max_train_len < 1 or self.max_decode_len < 1 or self.test_limit < 0:
            raise ValueError("min_freq, max_train_len and max_decode_len must be >= 1, test_limit >= 0")
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
        if "baseline" not in self.models:
            raise ValueError("models must contain a 'baseline' variant (attention: none)")


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


@dataclass(frozen=True)
class ReverseConfig:
    seeds: tuple[int, ...]
    data: ReverseData
    models: Mapping[str, ModelConfig]
    train: TrainConfig

    def validate(self) -> None:
        if "baseline" not in self.models:
            raise ValueError("models must contain a 'baseline' variant (attention: none)")


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    return Seq2Seq(src_vocab, tgt_vocab, cfg.embed, cfg.hidden, cfg.attention, cfg.input_feed, cfg.dropout)


def paired_diffs(out: dict, per_seed: dict, keys: list[tuple[str, ...]]) -> None:
    """out['<variant>_minus_baseline'][key] = mean_std over seeds of variant - baseline (same seeds)."""
    for v in [v for v in per_seed if v != "baseline"]:
        d: dict = {}
        for key in keys:
            diff = mean_std(np.subtract(per_seed[v][key], per_seed["baseline"][key]))
            node = d
            for k in key[:-1]:
                node = node.setdefault(k, {})
            node[key[-1]] = diff
        out[f"{v}_minus_baseline"] = d


# ---------------------------------------------------------------------------- Multi30k


def _prepared(paths: Paths):
    return paths.prepared / "seq2seq_multi30k.json"


def prepare_multi30k(cfg: Multi30kConfig, paths: Paths) -> None:
    """Tokenise (lower-cased, regex), build vocabularies from train only, encode every split."""
    raw = paths.raw / "multi30k"
    toks = {s: {lang: [tokenize(t.lower()) for t in read_lines(raw / f"{s}.{lang}.gz")] for lang in ("de", "en")}
            for s in ("train", "val", *TEST_SETS)}
    vde = Vocab.build(toks["train"]["de"], cfg.data.min_freq)
    ven = Vocab.build(toks["train"]["en"], cfg.data.min_freq)
    splits = {s: {"src": [vde.encode(x) for x in d["de"]], "tgt": [ven.encode(y) for y in d["en"]]}
              for s, d in toks.items()}
    keep = [i for i, (x, y) in enumerate(zip(splits["train"]["src"], splits["train"]["tgt"]))
            if 0 < len(x) <= cfg.data.max_train_len and 0 < len(y) <= cfg.data.max_train_len]
    splits["train"] = {k: [v[i] for i in keep] for k, v in splits["train"].items()}
    out = {"src_vocab": vde.itos, "tgt_vocab": ven.itos, "splits": splits}
    atomic_write_text(_prepared(paths), json.dumps(out, separators=(",", ":")))
    log.info("multi30k: vocab de %d, en %d (min_freq %d); %d training pairs", len(vde), len(ven),
             cfg.data.min_freq, len(keep))


def load_prepared(paths: Paths):
    with open(_prepared(paths)) as f:
        d = json.load(f)
    return Vocab(d["src_vocab"]), Vocab(d["tgt_vocab"]), d["splits"]


def train_multi30k(cfg: Multi30kConfig, variant: str, paths: Paths) -> None:
    vde, ven, splits = load_prepared(paths)
    mcfg, rows = cfg.models[variant], []
    for seed in cfg.seeds:
        seed_everything(seed)
        model = build_model(mcfg, len(vde), len(ven))
        tr, va = splits["train"], splits["val"]
        task = TranslationTask(model, tr["src"], tr["tgt"], cfg.train.batch_size, (va["src"], va["tgt"]))
        history = fit(task, cfg.train, seed=seed, desc=f"seq2seq_multi30k/{variant}/seed{seed}")
        rows += [{"seed": seed, **r} for r in history]
        save_checkpoint(paths.models / "seq2seq_multi30k" / variant / f"seed{seed}.pt", model,
                        model_config=mcfg, train_config=cfg.train, seed=seed)
    write_csv(paths.plots / "seq2seq_multi30k" / f"history_{variant}.csv", rows)


def bucket_name(n: int, edges: tuple[int, ...]) -> str:
    lo = 1
    for e in edges:
        if n <= e:
            return f"{lo}-{e}"
        lo = e + 1
    return f"{lo}+"


def evaluate_multi30k(cfg: Multi30kConfig, paths: Paths) -> None:
    device = resolve_device(cfg.train.device)
    vde, ven, splits = load_prepared(paths)
    cut = cfg.data.test_limit or None
    refs = {s: read_lines(paths.raw / "multi30k" / f"{s}.en.gz")[:cut] for s in TEST_SETS}
    splits = {**splits, **{s: {k: v[:cut] for k, v in splits[s].items()} for s in TEST_SETS}}
    edges = cfg.data.length_buckets
    # union of the three test sets, bucketed by source length (our tokens)
    union_src = [x for s in TEST_SETS for x in splits[s]["src"]]
    union_ref = [r for s in TEST_SETS for r in refs[s]]
    buckets = [bucket_name(len(x), edges) for x in union_src]
    names = [bucket_name(e, edges) for e in edges] + [bucket_name(edges[-1] + 1, edges)]
    out: dict = {"bucket_sizes": {b: buckets.count(b) for b in names}}
    per_seed: dict = {}
    curve, heat = [], None
    for variant, mcfg in cfg.models.items():
        scores: dict = {"val_loss": [], **{f"bleu_{s}": [] for s in TEST_SETS}, "bleu_by_length": {b: [] for b in names}}
        for seed in cfg.seeds:
            model = build_model(mcfg, len(vde), len(ven))
            load_checkpoint(paths.models / "seq2seq_multi30k" / variant / f"seed{seed}.pt", model)
            model.to(device)
            hyp_all = []
            for s in TEST_SETS:
                ids, atts = translate(model, splits[s]["src"], cfg.data.max_decode_len, device)
                hyps = [detokenize(ven.decode(h)) for h in ids]
                bleu, sig = corpus_bleu(hyps, refs[s])
                scores[f"bleu_{s}"].append(bleu)
                hyp_all += hyps
                if s == "test_2016_flickr" and atts[0] is not None:  # diagnostic: weight on source token 1
                    scores.setdefault("attention_on_first_token", []).append(float(np.mean([w[:, 0].mean() for w in atts])))
                if s == "test_2016_flickr" and heat is None and atts[0] is not None:
                    heat = {"variant": variant, "seed": seed, "sentences": [
                        {"src": [vde.itos[i] for i in splits[s]["src"][k]], "hyp": ven.decode(ids[k]) + ["<eos>"],
                         "weights": atts[k].tolist()} for k in cfg.data.heatmap_sentences]}
            for b in names:
                sel = [i for i, bb in enumerate(buckets) if bb == b]
                scores["bleu_by_length"][b].append(corpus_bleu([hyp_all[i] for i in sel], [union_ref[i] for i in sel])[0]
                                                   if sel else float("nan"))
            task = TranslationTask(model, [], [], 1, (splits["val"]["src"], splits["val"]["tgt"]))
            task.device = device
            model.eval()
            with torch.no_grad():
                scores["val_loss"].append(task.evaluate()["val_loss"])
        out["sacrebleu_signature"] = sig
        per_seed[variant] = {(k,): v for k, v in scores.items() if k != "bleu_by_length"}
        per_seed[variant].update({("bleu_by_length", b): v for b, v in scores["bleu_by_length"].items()})
        out[variant] = {k: mean_std(v) for k, v in scores.items() if k != "bleu_by_length"}
        out[variant]["bleu_by_length"] = {b: mean_std(v) for b, v in scores["bleu_by_length"].items()}
        for i, b in enumerate(names):
            s = out[variant]["bleu_by_length"][b]
            curve.append({"variant": variant, "bucket": b, "order": i, "n": out["bucket_sizes"][b],
                          "bleu": s["mean"], "bleu_std": s["std"]})
    paired_diffs(out, per_seed, [("bleu_test_2016_flickr",)] + [("bleu_by_length", b) for b in names])
    write_json(paths.metrics / "seq2seq_multi30k.json", out)
    write_csv(paths.plots / "seq2seq_multi30k" / "bleu_by_length.csv", curve)
    if heat is not None:
        write_json(paths.plots / "seq2seq_multi30k" / "attention.json", heat, digits=4)


# -------------------------------------------------------------------------- reversal


def train_reverse(cfg: ReverseConfig, variant: str, paths: Paths) -> None:
    mcfg, d, rows = cfg.models[variant], cfg.data, []
    vocab = 4 + d.n_symbols
    for seed in cfg.seeds:
        seed_everything(seed)
        model = build_model(mcfg, vocab, vocab)
        task = ReversalTask(model, d.n_symbols, d.train_min_len, d.train_max_len, cfg.train.batch_size)
        history = fit(task, cfg.train, seed=seed, desc=f"seq2seq_reverse/{variant}/seed{seed}")
        rows += [{"seed": seed, **r} for r in history]
        save_checkpoint(paths.models / "seq2seq_reverse" / variant / f"seed{seed}.pt", model,
                        model_config=mcfg, train_config=cfg.train, seed=seed)
    write_csv(paths.plots / "seq2seq_reverse" / f"history_{variant}.csv", rows)


def reversal_test_set(d: ReverseData):
    """length -> (sources, reversed targets), from test_seed only."""
    g = torch.Generator().manual_seed(d.test_seed)
    return {L: reversal_pairs(d.n_test, torch.full((d.n_test,), L), d.n_symbols, g) for L in d.test_lengths}


def evaluate_reverse(cfg: ReverseConfig, paths: Paths) -> None:
    device = resolve_device(cfg.train.device)
    d = cfg.data
    tests = reversal_test_set(d)
    out: dict = {"train_lengths": {"min": d.train_min_len, "max": d.train_max_len}}
    per_seed, curve = {}, []
    in_range = [L for L in d.test_lengths if d.train_min_len <= L <= d.train_max_len]
    beyond = [L for L in d.test_lengths if L > d.train_max_len]
    for variant, mcfg in cfg.models.items():
        acc = {(f"L{L:02d}", m): [] for L in d.test_lengths for m in ("exact", "token")}
        for seed in cfg.seeds:
            model = build_model(mcfg, 4 + d.n_symbols, 4 + d.n_symbols)
            load_checkpoint(paths.models / "seq2seq_reverse" / variant / f"seed{seed}.pt", model)
            model.to(device)
            for L, (src, tgt) in tests.items():
                hyps, _ = translate(model, src, L + d.max_decode_extra, device)
                exact, tok = reversal_accuracy(hyps, tgt)
                acc[(f"L{L:02d}", "exact")].append(exact)
                acc[(f"L{L:02d}", "token")].append(tok)
        # averages over the in-range and beyond-range lengths, per seed
        for name, Ls in (("in_range", in_range), ("beyond", beyond)):
            for m in ("exact", "token"):
                if Ls:
                    acc[(name, m)] = list(np.mean([acc[(f"L{L:02d}", m)] for L in Ls], axis=0))
        per_seed[variant] = acc
        out[variant] = {}
        for (k, m), v in acc.items():
            out[variant].setdefault(k, {})[m] = mean_std(v)
        for L in d.test_lengths:
            e, t = out[variant][f"L{L:02d}"]["exact"], out[variant][f"L{L:02d}"]["token"]
            curve.append({"variant": variant, "length": L, "exact": e["mean"], "exact_std": e["std"],
                          "token": t["mean"], "token_std": t["std"]})
    keys = [k for k in per_seed["baseline"] if k[0] in ("in_range", "beyond")]
    paired_diffs(out, per_seed, keys)
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
