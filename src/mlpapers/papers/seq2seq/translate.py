"""Translate German sentences to English with a trained Multi30k Seq2Seq model.

``mlpapers translate --model attn_general --seed 0 "Ein Mann fährt Fahrrad."`` (or one sentence
per stdin line) loads ``models/seq2seq_multi30k/<model>/seed<seed>.pt`` (``seq2seq_multi30k_train``),
rebuilds the model from the config stored in the checkpoint, and decodes exactly as the
``seq2seq_multi30k_evaluate`` stage does: lower-cased Moses tokenisation (``tokenizer.py``), the
training-split vocabulary of ``data/prepared/seq2seq_multi30k.json`` (``seq2seq_multi30k_prepare``),
``task.translate`` (beam search with length normalisation |y|^alpha; beam 1 = greedy; Luong et
al. 2015, Section 4.1), then ``ven.decode`` and the English Moses detokeniser. Beam, alpha and the
length limit default to ``seq2seq_multi30k.data`` in params.yaml, i.e. the evaluated decode.

Words outside the source vocabulary become ``<unk>`` as in evaluation (the model was trained
with it); they are reported, and ``strict`` makes them an error instead.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from mlpapers.config import ConfigError
from mlpapers.experiment import Paths
from mlpapers.papers.seq2seq.experiments import load_prepared
from mlpapers.papers.seq2seq.model import UNK, Seq2Seq
from mlpapers.papers.seq2seq.task import Vocab, translate
from mlpapers.papers.seq2seq.tokenizer import detokenize, tokenize
from mlpapers.train import load_checkpoint
from mlpapers.utils import DataFileError

log = logging.getLogger(__name__)

EXPERIMENT, TRAIN_STAGE, PREPARE_STAGE = "seq2seq_multi30k", "seq2seq_multi30k_train", "seq2seq_multi30k_prepare"


def _fetch_hint(stage: str) -> str:
    return (f"run `dvc pull {stage}` (or `dvc checkout {stage}` when the DVC cache already holds it) "
            f"to get the trained files, or `dvc repro {stage}` to make them")


def load_translator(paths: Paths, variant: str, seed: int) -> tuple[Seq2Seq, Vocab, Vocab]:
    """(model, German vocabulary, English vocabulary) of one trained checkpoint."""
    path = paths.checkpoint(EXPERIMENT, variant, f"seed{seed}")
    if not path.is_file():
        have = sorted(f"{p.parent.name}/{p.stem}" for p in path.parent.parent.glob("*/seed*.pt"))
        where = f" (found: {', '.join(have)})" if have else ""
        raise DataFileError(f"{path}: checkpoint not found{where}; {_fetch_hint(TRAIN_STAGE)}")
    prepared = paths.prepared / f"{EXPERIMENT}.json"
    if not prepared.is_file():
        raise DataFileError(f"{prepared}: vocabularies not found; {_fetch_hint(PREPARE_STAGE)}")
    vde, ven, _ = load_prepared(paths)
    payload = load_checkpoint(path)  # checks the weights against their stored checksum
    mc = payload["meta"]["model_config"]  # the config travels with the weights (nanoGPT)
    model = Seq2Seq(len(vde), len(ven), mc["embed"], mc["hidden"], mc["attention"], mc["input_feed"], mc["dropout"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise DataFileError(f"{path}: does not fit the vocabularies of {prepared} ({str(e).splitlines()[0]}); "
                            f"models and prepared data come from different runs: `dvc repro {TRAIN_STAGE}`") from e
    return model.eval(), vde, ven


def encode(sentences: list[str], vde: Vocab, strict: bool = False) -> list[list[int]]:
    """German text -> source ids (lower-cased Moses tokens; unknown words -> <unk>)."""
    src, unknown = [], []
    for i, s in enumerate(sentences):
        toks = tokenize(s, "de")
        if not toks:
            raise ConfigError(f"sentence {i + 1}: empty; give a German sentence")
        src.append(vde.encode(toks))
        unknown += [t for t, k in zip(toks, src[-1]) if k == UNK]
    if unknown:
        msg = f"{len(unknown)} word(s) not in the German vocabulary of {len(vde)}: {', '.join(map(repr, unknown[:20]))}"
        if strict:
            raise ConfigError(msg)
        log.warning("%s; translated as <unk>, as in evaluation", msg)
    return src


def translate_text(model: Seq2Seq, vde: Vocab, ven: Vocab, sentences: list[str], beam: int, alpha: float,
                   max_len: int, device: torch.device = torch.device("cpu"), strict: bool = False) -> list[str]:
    """English translations, decoded exactly as ``evaluate_multi30k_job`` decodes the test sets."""
    ids, _ = translate(model.to(device), encode(sentences, vde, strict), max_len, device, beam=beam, alpha=alpha)
    return [detokenize(ven.decode(h)) for h in ids]


def run(root: Path, params: Path, variant: str, seed: int, sentences: list[str], beam: int | None = None,
        alpha: float | None = None, max_len: int | None = None, strict: bool = False, device: str = "cpu") -> list[str]:
    """What ``mlpapers translate`` prints: decoding settings from params.yaml unless overridden."""
    from mlpapers.experiment import get_experiment, load_config
    from mlpapers.utils import resolve_device

    d = load_config(get_experiment(EXPERIMENT), params).data
    beam, alpha, max_len = beam or d.beam, d.alpha if alpha is None else alpha, max_len or d.max_decode_len
    if not 1 <= beam <= 64 or not 0 <= alpha <= 2 or max_len < 1:
        raise ConfigError(f"--beam must be in [1, 64], --alpha in [0, 2], --max-len >= 1; got {beam}, {alpha}, {max_len}")
    model, vde, ven = load_translator(Paths(Path(root)), variant, seed)
    log.info("%s/%s/seed%d: %d sentence(s), beam %d, alpha %g", EXPERIMENT, variant, seed, len(sentences), beam, alpha)
    return translate_text(model, vde, ven, sentences, beam, alpha, max_len, resolve_device(device, "--device"), strict)
