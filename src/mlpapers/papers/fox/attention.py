"""Forgetting attention (FoX, Lin et al., ICLR 2025, arXiv 2503.02130, Section 2) and the
gated linear attention recurrence the seed called "FoX (Recurrent)".

Paper notation (Section 2, Eq. 4-6): a scalar forget gate per head and token,
f_t = sigmoid(w_f^T x_t + b_f), enters the attention logits as a data-dependent decay

    c_t  = sum_{l <= t} log f_l                      (cumulative log forget gate)
    D_ij = c_i - c_j = sum_{l=j+1}^{i} log f_l  if j <= i,   -inf otherwise
    O    = softmax(Q K^T * scale + D) V,            scale = 1 / sqrt(d_head)

so o_i = sum_j exp(q_i^T k_j * scale + D_ij) v_j / sum_j exp(...): with f = 1 (log f = 0)
it is ordinary causal softmax attention. D is not scaled by ``scale``.

Gated linear attention with the same scalar gate (the seed's "recurrent" model; a
RetNet / Mamba-2 style scalar-decay special case of GLA, Yang et al. 2023):

    S_t = f_t S_{t-1} + k_t v_t^T,    o_t = scale * S_t^T q_t        (recurrent, O(1) state)
    O   = ((Q K^T * scale) ⊙ exp(D)) V   with exp(-inf) = 0           (parallel, same function)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _decay_logits(log_f: torch.Tensor) -> torch.Tensor:
    """D (B, H, T, T) in float32 (or float64): D_ij = c_i - c_j for j <= i, -inf above the diagonal."""
    c = torch.cumsum(log_f.to(torch.promote_types(log_f.dtype, torch.float32)), dim=-1)  # c_t = sum_{l<=t} log f_l, (B, H, T)
    d = c[..., :, None] - c[..., None, :]  # D_ij = c_i - c_j, (B, H, T, T)
    T = log_f.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=log_f.device).tril()
    # the upper triangle must be masked explicitly: there c_i - c_j >= 0 would *add* weight
    return d.masked_fill(~causal, float("-inf"))


def forgetting_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                         scale: float | None = None) -> torch.Tensor:
    """O = softmax(Q K^T * scale + D) V (FoX Eq. 5-6), without building the T x T matrix D.

    Softmax over j is unchanged by a term constant in j, and c_i is constant along row i, so

        softmax_j(q_i.k_j * scale + c_i - c_j) = softmax_j(q_i.k_j * scale - c_j)   (j <= i).

    The remaining column bias -c_j is one more feature dimension: q'_i = [q_i * scale, 1, 0],
    k'_j = [k_j, -c_j, 0] gives q'_i.k'_j = q_i.k_j * scale - c_j, and causal SDPA with scale 1
    (the fused kernel, no float mask) computes the rest; v gets zero columns so all three share
    one head size (the trailing 0 keeps it even). Gradients reach ``log_f`` through c.

    q, k, v: (B, H, T, D); log_f: (B, H, T), log of the forget gate (<= 0); returns (B, H, T, D).
    """
    if q.shape[:-1] != k.shape[:-1] or k.shape != v.shape[:-1] + (k.shape[-1],) or log_f.shape != q.shape[:-1]:
        raise ValueError(f"shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"log_f {tuple(log_f.shape)}: expected (B,H,T,D) x3 and (B,H,T)")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    c = torch.cumsum(log_f.to(torch.promote_types(log_f.dtype, torch.float32)), dim=-1)  # c_t, (B, H, T)
    c = c.to(q.dtype)[..., None]  # (B, H, T, 1)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    q2 = torch.cat([q * scale, one, zero], dim=-1)  # (B, H, T, D+2)
    k2 = torch.cat([k, -c, zero], dim=-1)  # q2 . k2 = q.k * scale - c_j
    v2 = torch.cat([v, zero, zero], dim=-1)
    return F.scaled_dot_product_attention(q2, k2, v2, is_causal=True, scale=1.0)[..., : v.shape[-1]]


def forgetting_attention_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                               scale: float | None = None) -> torch.Tensor:
    """The same function with the full decay matrix D added to the logits (the paper's Eq. 5 as written)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    mask = _decay_logits(log_f).to(q.dtype)  # (B, H, T, T), added to the logits
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def gla_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                 scale: float | None = None) -> torch.Tensor:
    """Parallel form of the scalar-gated linear attention: O = ((Q K^T * scale) ⊙ exp(D)) V."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    decay = _decay_logits(log_f).exp().to(q.dtype)  # exp(c_i - c_j) below the diagonal, 0 above
    scores = (q @ k.transpose(-2, -1)) * scale * decay  # (B, H, T, T), no softmax
    return scores @ v  # (B, H, T, D)


def gla_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_f: torch.Tensor,
                  scale: float | None = None, state: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Recurrent form, one token at a time: S_t = f_t S_{t-1} + k_t v_t^T, o_t = scale * S_t^T q_t.

    Returns (O of shape (B, H, T, D), final state S of shape (B, H, D, D)). The state's size
    does not depend on T: this is the O(1)-memory decoding of the seed's claim.
    """
    B, H, T, Dk = q.shape
    scale = Dk ** -0.5 if scale is None else scale
    S = q.new_zeros(B, H, Dk, v.shape[-1]) if state is None else state
    f = log_f.exp().to(q.dtype)  # (B, H, T)
    out = []
    for t in range(T):
        S = f[..., t, None, None] * S + k[..., t, :, None] * v[..., t, None, :]  # (B, H, Dk, Dv)
        out.append(scale * (q[..., t, None, :] @ S).squeeze(-2))  # (B, H, Dv)
    return torch.stack(out, dim=2), S
