"""The Transformer encoder-decoder, from scratch.

Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser, Polosukhin. "Attention Is All You
Need", NeurIPS 2017, arXiv:1706.03762.

* ``attention``         -- §3.2.1, Eq. (1): Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V, with
                           masked (illegal) connections set to -inf before the softmax.
* ``MultiHeadAttention``-- §3.2.2: h heads of width d_k = d_v = d_model / h, concatenated and
                           projected by W^O; an optional cache of past keys/values for decoding.
* ``FeedForward``       -- §3.3, Eq. (2): FFN(x) = max(0, x W_1 + b_1) W_2 + b_2.
* ``sinusoid``          -- §3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...);
                           ``positions="learned"`` is the Table 3 (E) alternative.
* ``EncoderLayer`` / ``DecoderLayer`` -- §3.1 stacks with post-norm residuals
                           LayerNorm(x + Dropout(Sublayer(x))) (§5.4 residual dropout).
* ``Transformer``       -- §3.4: embeddings multiplied by √d_model; the target embedding and
                           the pre-softmax linear share one matrix (the paper also shares the
                           source embedding through a joint BPE vocabulary; our de/en word
                           vocabularies are separate, so only the target side is tied).

The decoder runs either over a whole target (teacher forcing, causal mask) or one token at a
time with a key/value cache (``decode_step``); tests check both give the same outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mlpapers.papers.seq2seq.model import PAD  # the Seq2Seq vocabularies' ids (PAD, UNK, BOS, EOS)


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int  # model width (paper base: 512)
    n_heads: int  # h (paper: 8); d_k = d_v = d_model / h
    n_layers: int  # N, encoder and decoder each (paper: 6)
    d_ff: int  # inner FFN width (paper: 2048 = 4 d_model)
    dropout: float  # P_drop on sub-layer outputs and on embeddings + positions (paper: 0.1)
    positions: Literal["sinusoidal", "learned"]  # §3.5 vs Table 3 row (E)
    max_len: int  # longest sequence a learned position table holds

    def validate(self) -> None:
        for k, lo, hi in (("d_model", 2, 4096), ("n_heads", 1, 64), ("n_layers", 1, 48), ("d_ff", 1, 16384),
                          ("max_len", 2, 4096)):
            v = getattr(self, k)
            if not lo <= v <= hi:
                raise ValueError(f"{k} must be in [{lo}, {hi}], got {v}")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ValueError(f"d_model ({self.d_model}) must be even and divisible by n_heads ({self.n_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be sinusoidal or learned, got {self.positions!r}")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Eq. (1): softmax(Q Kᵀ / √d_k) V. q (..., T, d_k), k/v (..., S, d_k), mask broadcastable
    to (..., T, S), True where attending is allowed -> (..., T, d_v)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # illegal connections -> -inf (§3.2.3)
    return torch.softmax(scores, dim=-1) @ v


class MultiHeadAttention(nn.Module):
    """§3.2.2: MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.h, self.d_k = n_heads, d_model // n_heads
        self.W_q = nn.Linear(d_model, d_model)  # the h matrices W_i^Q side by side
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of x (B, S, d_model) -> two (B, h, S, d_k)."""
        return self.split(self.W_k(x)), self.split(self.W_v(x))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                memory: torch.Tensor | None = None) -> torch.Tensor:
        """Queries from x (B, T, d); keys/values from ``memory`` (cross-attention), given ``kv``, or x."""
        if kv is None:
            kv = self.kv(x if memory is None else memory)
        out = attention(self.split(self.W_q(x)), *kv, mask)  # (B, h, T, d_k)
        B, _, T, _ = out.shape
        return self.W_o(out.transpose(1, 2).reshape(B, T, self.h * self.d_k))  # Concat(heads) W^O


class FeedForward(nn.Module):
    """Eq. (2): FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to each position separately."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.W_1, self.W_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W_2(F.relu(self.W_1(x)))


class EncoderLayer(nn.Module):
    """§3.1: self-attention, then FFN; each as LayerNorm(x + Dropout(Sublayer(x)))."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.attn, self.ffn = MultiHeadAttention(c.d_model, c.n_heads), FeedForward(c.d_model, c.d_ff)
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, mask)))
        return self.ln2(x + self.drop(self.ffn(x)))


class DecoderLayer(nn.Module):
    """§3.1: masked self-attention, attention over the encoder output, FFN; post-norm residuals."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads)
        self.cross_attn = MultiHeadAttention(c.d_model, c.n_heads)
        self.ffn = FeedForward(c.d_model, c.d_ff)
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(c.d_model) for _ in range(3))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, y: torch.Tensor, self_mask, cross_kv, src_mask, self_kv=None) -> torch.Tensor:
        y = self.ln1(y + self.drop(self.self_attn(y, self_mask, kv=self_kv)))
        y = self.ln2(y + self.drop(self.cross_attn(y, src_mask, kv=cross_kv)))
        return self.ln3(y + self.drop(self.ffn(y)))


def sinusoid(n: int, d: int) -> torch.Tensor:
    """§3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) -> (n, d)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]  # (n, 1)
    inv = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # 1 / 10000^(2i/d): (d/2,)
    pe = torch.zeros(n, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)
    return pe.float()


class Transformer(nn.Module):
    """Encoder-decoder of §3; ``forward`` is teacher forcing, ``decode_step`` one cached step."""

    def __init__(self, c: TransformerConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.c = c
        self.src_embed = nn.Embedding(src_vocab, c.d_model, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, c.d_model, padding_idx=PAD)  # also the pre-softmax W (§3.4)
        for e in (self.src_embed, self.tgt_embed):  # N(0, d^-1/2): logits = h Eᵀ start at unit scale
            nn.init.normal_(e.weight, std=c.d_model ** -0.5)
            e.weight.data[PAD].zero_()
        if c.positions == "sinusoidal":
            self.register_buffer("pe", sinusoid(c.max_len, c.d_model), persistent=False)
        else:  # Table 3 (E): learned positional embeddings
            self.pos = nn.Embedding(c.max_len, c.d_model)
            nn.init.normal_(self.pos.weight, std=c.d_model ** -0.5)
        self.enc = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_layers))
        self.dec = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_layers))
        self.drop = nn.Dropout(c.dropout)  # §5.4: on the sums of embeddings and positions
        self.out_bias = nn.Parameter(torch.zeros(tgt_vocab))

    def positions(self, start: int, n: int) -> torch.Tensor:
        if start + n > self.c.max_len:
            raise ValueError(f"sequence of {start + n} tokens is longer than max_len={self.c.max_len}")
        return self.pe[start : start + n] if self.c.positions == "sinusoidal" else self.pos.weight[start : start + n]

    def embed(self, tokens: torch.Tensor, table: nn.Embedding, start: int = 0) -> torch.Tensor:
        """§3.4 + §3.5: Emb(x) · √d_model + PE -> dropout. tokens (B, T) -> (B, T, d)."""
        x = table(tokens) * math.sqrt(self.c.d_model) + self.positions(start, tokens.size(1))
        return self.drop(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, d) and the key mask (B, 1, 1, S) (False on <pad>)."""
        src_mask = (src != PAD)[:, None, None, :]
        x = self.embed(src, self.src_embed)
        for layer in self.enc:
            x = layer(x, src_mask)
        return x, src_mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, T) -> decoder states (B, T, d). Position t sees positions <= t only."""
        T = tgt_in.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).tril()  # (T, T): j <= t
        self_mask = causal[None, None] & (tgt_in != PAD)[:, None, None, :]  # (B, 1, T, T)
        y = self.embed(tgt_in, self.tgt_embed)
        for layer in self.dec:
            y = layer(y, self_mask, layer.cross_attn.kv(memory), src_mask)
        return y

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Pre-softmax linear tied to the target embedding (§3.4): h Eᵀ + b."""
        return F.linear(h, self.tgt_embed.weight, self.out_bias)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, src_mask = self.encode(src)
        return self.logits(self.decode(tgt_in, memory, src_mask))  # (B, T, V)

    # ---------------------------------------------------------------- incremental decoding

    def cross_cache(self, memory: torch.Tensor) -> torch.Tensor:
        """Every decoder layer's cross-attention keys and values, computed once per sentence,
        packed batch-first: (B, S, N·2·d) (so a beam search can repeat and reorder rows)."""
        B, S, d = memory.shape
        kvs = [t.transpose(1, 2).reshape(B, S, d) for layer in self.dec for t in layer.cross_attn.kv(memory)]
        return torch.cat(kvs, -1)

    def empty_cache(self, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Self-attention keys and values of no tokens yet: two (N, B, h, 0, d_k) tensors."""
        h, d_k = self.c.n_heads, self.c.d_model // self.c.n_heads
        z = torch.zeros(self.c.n_layers, batch, h, 0, d_k, device=device)
        return z, z.clone()

    def decode_step(self, y_prev: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], packed: torch.Tensor,
                    src_mask: torch.Tensor):
        """One step: y_prev (B,) at position t = tokens already cached -> logits (B, V), new cache.

        ``cache`` holds, per layer, the keys/values of positions 0..t-1 (N, B, h, t, d_k);
        the new token attends to those and to itself, which is what the causal mask allows
        in ``decode``. ``src_mask`` is (B, S), True on real source tokens.
        """
        k_cache, v_cache = cache
        t = k_cache.size(3)
        B, S, _ = packed.shape
        h, d_k = self.c.n_heads, self.c.d_model // self.c.n_heads
        cross = packed.view(B, S, self.c.n_layers, 2, h, d_k).permute(2, 3, 0, 4, 1, 5)  # (N, 2, B, h, S, d_k)
        key_mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        y = self.embed(y_prev[:, None], self.tgt_embed, start=t)  # (B, 1, d)
        new_k, new_v = [], []
        for i, layer in enumerate(self.dec):
            k, v = layer.self_attn.kv(y)  # (B, h, 1, d_k)
            k, v = torch.cat([k_cache[i], k], 2), torch.cat([v_cache[i], v], 2)  # (B, h, t+1, d_k)
            new_k.append(k)
            new_v.append(v)
            y = layer(y, None, (cross[i, 0], cross[i, 1]), key_mask, self_kv=(k, v))
        return self.logits(y[:, 0]), (torch.stack(new_k), torch.stack(new_v))
