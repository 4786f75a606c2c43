"""Encoder-decoder with Luong global attention (decoding: ``decoding.py``).

Sutskever, Vinyals, Le. "Sequence to Sequence Learning with Neural Networks", NeurIPS 2014,
arXiv:1409.3215 -- the fixed-vector encoder-decoder (our ``attention="none"`` baseline).
Luong, Pham, Manning. "Effective Approaches to Attention-based Neural Machine Translation",
EMNLP 2015, arXiv:1508.04025 -- global attention (Section 3.1), score functions (Eq. 8),
attentional hidden state (Eq. 5) and input feeding (Section 3.3).

Implemented from scratch:

* ``Encoder`` -- a one-layer *bidirectional LSTM* (the paper stacks 4 unidirectional
  LSTM layers and reverses the source). The annotations [->h_s; <-h_s] are projected to
  the decoder width, giving the source states h̄_s that attention reads; the final
  forward and backward states initialise the decoder.
* ``GlobalAttention`` -- a_t(s) = softmax_s score(h_t, h̄_s) (Eq. 7) with
      dot:     h_tᵀ h̄_s
      general: h_tᵀ W_a h̄_s
      concat:  v_aᵀ tanh(W_a [h_t; h̄_s])
  and c_t = Σ_s a_t(s) h̄_s. Padding positions are masked to -inf before the softmax, so
  their weight is exactly 0.
* ``Decoder`` -- a one-layer LSTM; h̃_t = tanh(W_c [c_t; h_t]) (Eq. 5) and
  p(y_t | y_<t, x) = softmax(W_s h̃_t) (Eq. 6). With ``input_feed`` h̃_{t-1} is concatenated
  to the input embedding (Section 3.3, Fig. 4), which forces a per-step loop; without it
  the decoder runs as one LSTM call over the whole target and attention as batched
  matrix products (the fast path). ``states`` stops before W_s, so the loss can apply
  the softmax layer to real (non-padding) target positions only. The baseline (``attention="none"``) uses
  h̃_t = tanh(W_c h_t): same layers, but the decoder sees the source only through the
  encoder's final state (Sutskever et al.).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # special ids shared by every vocabulary
Score = Literal["dot", "general", "concat", "none"]


class Encoder(nn.Module):
    """Bidirectional LSTM over the source; returns h̄ (B, S, H) and the decoder's initial (h, c)."""

    def __init__(self, vocab: int, embed: int, hidden: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, hidden, bias=False)  # [->h_s; <-h_s] -> h̄_s
        self.init_h = nn.Linear(2 * hidden, hidden)  # final states -> decoder h_0
        self.init_c = nn.Linear(2 * hidden, hidden)  # final cells  -> decoder c_0

    def forward(self, src: torch.Tensor, src_len: torch.Tensor):
        x = self.drop(self.embed(src))  # (B, S, E)
        # packing makes the backward direction start at each sentence's last real token
        packed = pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.rnn(packed)  # h, c: (2, B, H): forward and backward final states
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, 2H)
        memory = self.proj(out)  # h̄_s: (B, S, H)
        h0 = torch.tanh(self.init_h(torch.cat([h[0], h[1]], -1)))[None]  # (1, B, H)
        c0 = self.init_c(torch.cat([c[0], c[1]], -1))[None]  # (1, B, H)
        return memory, (h0, c0)


class GlobalAttention(nn.Module):
    """Luong global attention, Eq. (7)-(8): scores over all source positions, masked softmax."""

    def __init__(self, score: Score, hidden: int):
        super().__init__()
        if score not in ("dot", "general", "concat"):
            raise ValueError(f"attention score must be dot, general or concat, got {score!r}")
        self.score_fn = score
        if score == "general":
            self.W_a = nn.Linear(hidden, hidden, bias=False)
        elif score == "concat":
            self.W_a = nn.Linear(2 * hidden, hidden, bias=False)  # W_a [h_t; h̄_s]
            self.v_a = nn.Linear(hidden, 1, bias=False)

    def score(self, h_t: torch.Tensor, h_s: torch.Tensor) -> torch.Tensor:
        """h_t (B, T, H), h̄_s (B, S, H) -> scores (B, T, S)."""
        if self.score_fn == "dot":
            return h_t @ h_s.transpose(1, 2)  # h_tᵀ h̄_s
        if self.score_fn == "general":
            return h_t @ self.W_a(h_s).transpose(1, 2)  # h_tᵀ (W_a h̄_s)
        # concat: split W_a = [W_1 W_2] so W_a [h_t; h̄_s] = W_1 h_t + W_2 h̄_s, broadcast over (T, S)
        H = h_t.size(-1)
        q = F.linear(h_t, self.W_a.weight[:, :H])[:, :, None, :]  # (B, T, 1, H)
        k = F.linear(h_s, self.W_a.weight[:, H:])[:, None, :, :]  # (B, 1, S, H)
        return self.v_a(torch.tanh(q + k)).squeeze(-1)  # v_aᵀ tanh(...): (B, T, S)

    def forward(self, h_t: torch.Tensor, h_s: torch.Tensor, mask: torch.Tensor):
        """mask (B, S) is True on real source tokens. Returns c_t (B, T, H) and a_t (B, T, S)."""
        e = self.score(h_t, h_s).masked_fill(~mask[:, None, :], float("-inf"))
        a = torch.softmax(e, dim=-1)  # exp(-inf) = 0: padding gets exactly zero weight
        return a @ h_s, a  # c_t = Σ_s a_t(s) h̄_s: (B, T, H)


class Decoder(nn.Module):
    """LSTM decoder; attentional state h̃_t = tanh(W_c [c_t; h_t]) (Eq. 5), logits W_s h̃_t (Eq. 6)."""

    def __init__(self, vocab: int, embed: int, hidden: int, attention: Score, input_feed: bool, dropout: float):
        super().__init__()
        if input_feed and attention == "none":
            raise ValueError("input_feed needs attention (it feeds h̃_{t-1}, which is tanh(W_c h_t) without it)")
        self.input_feed = input_feed
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.LSTM(embed + (hidden if input_feed else 0), hidden, batch_first=True)
        self.attn = None if attention == "none" else GlobalAttention(attention, hidden)
        self.W_c = nn.Linear(hidden if self.attn is None else 2 * hidden, hidden, bias=False)
        self.W_s = nn.Linear(hidden, vocab)

    def attentional(self, h: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor):
        """h_t (B, T, H) -> h̃_t (B, T, H) and attention weights (B, T, S) (None for the baseline)."""
        if self.attn is None:
            return torch.tanh(self.W_c(h)), None  # no context: the fixed-vector model
        c, a = self.attn(h, memory, mask)
        return torch.tanh(self.W_c(torch.cat([c, h], -1))), a  # h̃_t = tanh(W_c [c_t; h_t])

    def step(self, y_prev: torch.Tensor, state, h_tilde: torch.Tensor | None, memory, mask):
        """One decoding step. y_prev (B,), h̃_{t-1} (B, H) or None -> logits (B, V), state, h̃_t, a_t (B, S)."""
        x = self.drop(self.embed(y_prev))[:, None, :]  # (B, 1, E)
        if self.input_feed:  # input feeding: [y_{t-1}; h̃_{t-1}]
            if h_tilde is None:
                h_tilde = x.new_zeros(x.size(0), self.W_s.in_features)
            x = torch.cat([x, h_tilde[:, None, :]], -1)  # (B, 1, E + H)
        h, state = self.rnn(x, state)  # (B, 1, H)
        h_tilde, a = self.attentional(h, memory, mask)
        logits = self.W_s(self.drop(h_tilde))[:, 0]  # (B, V)
        return logits, state, h_tilde[:, 0], None if a is None else a[:, 0]

    def states(self, tgt_in: torch.Tensor, memory, mask, state):
        """Teacher forcing: tgt_in (B, T) = <bos> y_1 .. y_{T-1} -> h̃ (B, T, H), weights (B, T, S).

        The softmax layer W_s is left to the caller, so the loss can apply it to real
        (non-padding) target positions only: it is the most expensive matmul of a step.
        """
        if not self.input_feed:  # fast path: one LSTM call, batched attention
            h, _ = self.rnn(self.drop(self.embed(tgt_in)), state)  # (B, T, H)
            return self.attentional(h, memory, mask)
        h_tildes, weights, h_tilde = [], [], None
        for t in range(tgt_in.size(1)):  # input feeding makes step t depend on h̃_{t-1}
            x = self.drop(self.embed(tgt_in[:, t]))[:, None, :]  # (B, 1, E)
            if h_tilde is None:
                h_tilde = x.new_zeros(x.size(0), self.W_s.in_features)
            h, state = self.rnn(torch.cat([x, h_tilde[:, None, :]], -1), state)  # [y_{t-1}; h̃_{t-1}]
            ht, a = self.attentional(h, memory, mask)
            h_tilde = ht[:, 0]
            h_tildes.append(ht)
            weights.append(a)
        att = None if self.attn is None else torch.cat(weights, 1)
        return torch.cat(h_tildes, 1), att

    def forward(self, tgt_in: torch.Tensor, memory, mask, state):
        """Teacher forcing -> logits (B, T, V) = W_s h̃_t (Eq. 6), weights (B, T, S)."""
        h_tilde, a = self.states(tgt_in, memory, mask, state)
        return self.W_s(self.drop(h_tilde)), a


class Seq2Seq(nn.Module):
    """Encoder + decoder; ``attention="none"`` is the Sutskever-style baseline."""

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int, hidden: int, attention: Score,
                 input_feed: bool, dropout: float):
        super().__init__()
        self.encoder = Encoder(src_vocab, embed, hidden, dropout)
        self.decoder = Decoder(tgt_vocab, embed, hidden, attention, input_feed, dropout)

    def forward(self, src, src_len, tgt_in):
        memory, state = self.encoder(src, src_len)
        return self.decoder(tgt_in, memory, src != PAD, state)

    def states(self, src, src_len, tgt_in):
        """h̃ (B, T, H) and attention (B, T, S) under teacher forcing (no softmax layer)."""
        memory, state = self.encoder(src, src_len)
        return self.decoder.states(tgt_in, memory, src != PAD, state)
