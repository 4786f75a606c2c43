"""Moses tokenisation and detokenisation (sacremoses), as Luong et al. and Multi30k papers use.

Luong et al. (2015), Section 4.1: WMT text tokenised with the Moses tokenizer; BLEU on
tokenised text (``multi-bleu``) and, as is standard now, sacreBLEU on detokenised text.
We lower-case (the usual Multi30k setting), Moses-tokenise each side with its language's
rules (no HTML escaping, so ``&`` stays ``&``), and detokenise hypotheses with the English
Moses detokeniser before sacreBLEU scores them against the raw references. ``<unk>`` is a
token of its own, so the detokeniser puts spaces around it.
"""
from __future__ import annotations

import functools

from sacremoses import MosesDetokenizer, MosesTokenizer


@functools.lru_cache(maxsize=None)
def _tok(lang: str) -> MosesTokenizer:
    return MosesTokenizer(lang=lang)


@functools.lru_cache(maxsize=None)
def _detok(lang: str) -> MosesDetokenizer:
    return MosesDetokenizer(lang=lang)


def tokenize(text: str, lang: str) -> list[str]:
    """'Ein Mann, der lächelt.' -> ['ein', 'mann', ',', 'der', 'lächelt', '.'] (lower-cased Moses)."""
    return _tok(lang).tokenize(text.lower(), escape=False)


def detokenize(tokens: list[str], lang: str = "en") -> str:
    """Moses detokenisation: ['a', 'man', "'s", 'hat', '.'] -> "a man's hat." """
    return _detok(lang).detokenize(tokens)


def unk_rate(sentences: list[list[int]], unk: int) -> float:
    """Fraction of tokens mapped to <unk> (ids lists)."""
    n = sum(len(s) for s in sentences)
    return sum(t == unk for s in sentences for t in s) / max(n, 1)
