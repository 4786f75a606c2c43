"""Sample text from a trained FoX / Transformer language model (as nanoGPT's ``sample.py``).

``mlpapers sample --model fox --seed 0 --prompt "ROMEO:" --tokens 300`` loads
``models/fox/<model>/seed<seed>.pt`` (written by the ``fox_train`` stage), rebuilds the model
from the config stored in the checkpoint, encodes the prompt with the vocabulary of
``data/prepared/fox/vocab.json`` (``fox_prepare``) and draws tokens one at a time:

    p(x_t | x_<t) = softmax(z_t / T) restricted to the top-k logits z_t    (T: temperature)

T = 0 (or top-k = 1) is greedy decoding, argmax_v z_t[v]. Draws come from a
``torch.Generator`` seeded with ``sampling_seed`` only, so a fixed seed gives the same text.

Context: models without a position table (fox, gla, transformer_nope, transformer_rope)
decode incrementally with their cache (``LM.step``, equal to the parallel forward) over the
whole text, i.e. past the training length L, which is what FoX is meant to handle; the
learned-position ``transformer`` has no position >= L, so, like nanoGPT, it conditions on the
last L tokens only (one full forward per token). ``window`` forces that cropping for any model.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from mlpapers.config import ConfigError
from mlpapers.experiment import Paths
from mlpapers.papers.fox.model import LM, VARIANTS, LMConfig
from mlpapers.train import load_checkpoint
from mlpapers.utils import DataFileError

log = logging.getLogger(__name__)

TRAIN_STAGE, PREPARE_STAGE = "fox_train", "fox_prepare"


def _fetch_hint(stage: str) -> str:
    return (f"run `dvc pull {stage}` (or `dvc checkout {stage}` when the DVC cache already holds it) "
            f"to get the trained files, or `dvc repro {stage}` to make them")


def load_model(paths: Paths, variant: str, seed: int) -> LM:
    """The checkpoint of (variant, seed), rebuilt from the model config stored inside it."""
    if variant not in VARIANTS:
        raise ConfigError(f"--model {variant!r}: not a FoX variant; choose from {', '.join(VARIANTS)}")
    path = paths.checkpoint("fox", variant, f"seed{seed}")
    if not path.is_file():
        have = sorted(p.stem for p in path.parent.glob("seed*.pt"))
        where = f" (found: {', '.join(have)})" if have else ""
        raise DataFileError(f"{path}: checkpoint not found{where}; {_fetch_hint(TRAIN_STAGE)}")
    payload = load_checkpoint(path)  # checks the weights against their stored checksum
    model = LM(LMConfig(**payload["meta"]["model_config"]))  # nanoGPT: the config travels with the weights
    model.load_state_dict(payload["model"])
    return model.eval()


def load_vocab(paths: Paths, vocab_size: int) -> list[str]:
    path = paths.prepared / "fox" / "vocab.json"
    if not path.is_file():
        raise DataFileError(f"{path}: vocabulary not found; {_fetch_hint(PREPARE_STAGE)}")
    vocab = json.loads(path.read_text(encoding="utf-8"))
    if len(vocab) != vocab_size:
        raise DataFileError(f"{path}: {len(vocab)} tokens, but the checkpoint was trained on {vocab_size}; "
                            f"the prepared data and the models come from different runs: `dvc repro {TRAIN_STAGE}`")
    return vocab


def is_char_level(vocab: list[str]) -> bool:
    return all(len(t) == 1 for t in vocab)


def encode(text: str, vocab: list[str]) -> list[int]:
    """Prompt -> ids: characters (Tiny Shakespeare) or lower-cased words (WikiText-2).
    A token outside the vocabulary is an error naming it (there is no <unk> in a char vocabulary)."""
    stoi = {t: i for i, t in enumerate(vocab)}
    tokens = list(text) if is_char_level(vocab) else text.lower().split()
    missing = sorted({t for t in tokens if t not in stoi})
    if missing:
        shown = ", ".join(repr(t) for t in missing[:20])
        raise ConfigError(f"prompt: {len(missing)} token(s) not in the model's vocabulary of {len(vocab)}: {shown}"
                            + (f"; allowed characters: {''.join(vocab)!r}" if is_char_level(vocab) else ""))
    if not tokens:
        raise ConfigError("prompt: empty; give at least one token (e.g. --prompt $'\\n')")
    return [stoi[t] for t in tokens]


def decode(ids: list[int], vocab: list[str]) -> str:
    return ("" if is_char_level(vocab) else " ").join(vocab[i] for i in ids)


def pick(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> int:
    """One token from logits (V,): greedy at temperature 0, else softmax(z / T) over the top k."""
    if temperature == 0 or top_k == 1:
        return int(logits.argmax())
    z = logits.double() / temperature  # (V,), float64 so the draw does not depend on fp32 rounding of exp
    if top_k is not None and top_k < z.numel():
        kth = torch.topk(z, top_k).values[-1]
        z = z.masked_fill(z < kth, float("-inf"))
    return int(torch.multinomial(torch.softmax(z, -1), 1, generator=generator))


@torch.no_grad()
def generate(model: LM, prompt: list[int], tokens: int, temperature: float = 1.0, top_k: int | None = None,
             sampling_seed: int = 0, window: int | None = None) -> list[int]:
    """``tokens`` new ids after ``prompt``. ``window`` (default: L for the learned-position
    transformer, none otherwise) crops the context to the last ``window`` tokens."""
    if temperature < 0 or tokens < 0 or (top_k is not None and top_k < 1):
        raise ConfigError(f"--temperature and --tokens must be >= 0, --top-k >= 1; got {temperature}, {tokens}, {top_k}")
    if model.cfg.variant == "transformer":
        window = min(window or model.cfg.block_size, model.cfg.block_size)
    gen = torch.Generator().manual_seed(sampling_seed)
    dev = next(model.parameters()).device
    ids = list(prompt)
    if window is None:  # incremental decoding over the whole text (KV cache / GLA state)
        cache = model.init_cache()
        for t, i in enumerate(ids[:-1]):
            model.step(torch.tensor([i], device=dev), cache, t)
        for _ in range(tokens):
            logits = model.step(torch.tensor([ids[-1]], device=dev), cache, len(ids) - 1)[0]  # (V,)
            ids.append(pick(logits.float().cpu(), temperature, top_k, gen))
    else:  # nanoGPT: condition on the last `window` tokens, one full forward per token
        for _ in range(tokens):
            x = torch.tensor([ids[-window:]], device=dev)  # (1, <= window)
            ids.append(pick(model(x)[0, -1].float().cpu(), temperature, top_k, gen))
    return ids[len(prompt):]


def sample(root: Path, variant: str, seed: int, prompt: str, tokens: int, temperature: float,
           top_k: int | None, sampling_seed: int, window: int | None = None, device: str = "cpu") -> str:
    """Prompt + continuation as text (what ``mlpapers sample`` prints)."""
    from mlpapers.utils import resolve_device

    paths = Paths(Path(root))
    model = load_model(paths, variant, seed).to(resolve_device(device, key="--device"))
    vocab = load_vocab(paths, model.cfg.vocab_size)
    ids = encode(prompt, vocab)
    log.info("fox/%s/seed%d: %d prompt tokens, %d new (temperature %g, top-k %s, sampling seed %d)",
             variant, seed, len(ids), tokens, temperature, top_k, sampling_seed)
    out = generate(model, ids, tokens, temperature, top_k, sampling_seed, window)
    return prompt + ("" if is_char_level(vocab) else " ") + decode(out, vocab)
