"""Decoding for the Seq2Seq models: batched greedy search and batched beam search.

Luong et al. (2015), Section 4.1: translations are found with a beam search (they use
beam 12 and no length normalisation on WMT'14). We decode with beam 5 and normalise the
final hypothesis score by its length (log p(y|x) / |y|^alpha; alpha = 0 switches it off),
which is what most later systems do; greedy decoding is kept beside it.

Both decoders run a whole batch of sentences at once; beam search keeps the B*K live
hypotheses as one batch of rows for the decoder (row b*K + k is beam k of sentence b).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlpapers.papers.seq2seq.model import BOS, EOS, PAD, Seq2Seq


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: torch.Tensor, src_len: torch.Tensor, max_len: int):
    """Batched greedy decoding from <bos>; a sentence stops at its first <eos>.

    Returns ys (B, L) with L <= max_len (tokens after a sentence's <eos> are <pad>; the
    loop ends as soon as every sentence has emitted <eos>) and attention weights (B, L, S)
    (None for the baseline).
    """
    memory, state = model.encoder(src, src_len)
    mask = src != PAD
    B = src.size(0)
    y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    ys, weights, h_tilde = [], [], None
    for _ in range(max_len):
        logits, state, h_tilde, a = model.decoder.step(y, state, h_tilde, memory, mask)
        y = logits.argmax(-1).masked_fill(done, PAD)  # (B,): finished sentences emit <pad>
        ys.append(y)
        weights.append(a)
        done |= y == EOS
        if bool(done.all()):
            break
    att = None if weights[0] is None else torch.stack(weights, 1)
    return torch.stack(ys, 1), att


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, src_len: torch.Tensor, max_len: int, beam: int = 5,
                alpha: float = 1.0) -> torch.Tensor:
    """Batched beam search; returns ys (B, L), <pad> after each sentence's <eos>.

    Search keeps, per sentence, the ``beam`` prefixes with the highest log-probability;
    a hypothesis that has emitted <eos> stays in the beam with its score frozen (it can
    only be extended by <pad> at log-prob 0). At the end the hypothesis with the highest
    length-normalised score log p(y|x) / |y|^alpha is returned (|y| counts <eos>).
    With beam = 1 this is exactly greedy decoding.
    """
    B, K = src.size(0), beam
    memory, (h, c) = model.encoder(src, src_len)  # (B, S, H), (1, B, H)
    memory = memory.repeat_interleave(K, 0)  # (B*K, S, H)
    mask = (src != PAD).repeat_interleave(K, 0)  # (B*K, S)
    state = (h.repeat_interleave(K, 1), c.repeat_interleave(K, 1))  # (1, B*K, H)
    dev = src.device
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: keep only one alive
    done = torch.zeros(B, K, dtype=torch.bool, device=dev)
    length = torch.zeros(B, K, device=dev)  # tokens emitted up to and including <eos>
    ys = torch.zeros(B, K, 0, dtype=torch.long, device=dev)
    y = torch.full((B * K,), BOS, dtype=torch.long, device=dev)
    h_tilde = None
    base = (torch.arange(B, device=dev) * K)[:, None]  # (B, 1): first row of each sentence
    for _ in range(max_len):
        logits, state, h_tilde, _ = model.decoder.step(y, state, h_tilde, memory, mask)
        logp = F.log_softmax(logits, -1).view(B, K, -1)  # (B, K, V)
        V = logp.size(-1)
        # a finished hypothesis continues only with <pad>, at no cost
        frozen = torch.full((V,), float("-inf"), device=dev)
        frozen[PAD] = 0.0
        logp = torch.where(done[..., None], frozen, logp)
        top, idx = (scores[..., None] + logp).view(B, K * V).topk(K, dim=-1)  # (B, K)
        origin, tok = idx // V, idx % V  # which beam each survivor extends, with which token
        rows = (base + origin).view(-1)  # (B*K,)
        state = (state[0][:, rows], state[1][:, rows])
        h_tilde = None if h_tilde is None else h_tilde[rows]
        prev_done = done.gather(1, origin)
        ys = torch.cat([ys.gather(1, origin[..., None].expand(-1, -1, ys.size(2))), tok[..., None]], -1)
        length = length.gather(1, origin) + (~prev_done).float()
        done = prev_done | (tok == EOS)
        scores = top
        y = tok.view(-1)
        if bool(done.all()):
            break
    norm = scores / length.clamp(min=1) ** alpha  # length-normalised score
    best = norm.argmax(-1)  # (B,)
    return ys[torch.arange(B, device=dev), best]  # (B, L)


@torch.no_grad()
def sequence_logprob(model: Seq2Seq, src: torch.Tensor, src_len: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """log p(y | x) of given outputs ys (B, L) (<pad> after <eos>) under teacher forcing -> (B,)."""
    y_in = torch.cat([torch.full_like(ys[:, :1], BOS), ys[:, :-1]], 1)  # (B, L)
    logits, _ = model(src, src_len, y_in)
    lp = F.log_softmax(logits, -1).gather(-1, ys[..., None]).squeeze(-1)  # (B, L)
    return lp.masked_fill(ys == PAD, 0.0).sum(-1)
