"""Forgetting Transformer (FoX) and its baselines on one shared pre-norm decoder trunk.

Lin, Nikishin, He, Courville. "Forgetting Transformer: Softmax Attention with a Forget
Gate." ICLR 2025. arXiv:2503.02130.

Variants (``LMConfig.variant``), identical except for the token mixer / positions:

* ``transformer``       -- learned absolute position embeddings (the seed's baseline);
                           cannot run past ``block_size`` positions.
* ``transformer_rope``  -- rotary position embeddings (RoPE) on q and k, base ``rope_base``
                           (params ``fox.model.rope_base``; the official FoX code uses
                           500,000 for its L=16k Transformer baseline).
* ``transformer_nope``  -- no positional information at all (causal mask only).
* ``fox``               -- forgetting attention (Section 2), no positional embedding.
* ``gla``               -- scalar-gated linear attention, O(1) recurrent state (what the
                           seed's "FoX (Recurrent)" computed), with a per-head RMSNorm on its
                           output as in GLA/RetNet, no positional embedding.

The FoX (Pro) extras (QK-norm, output gate, output norm, KV-shift) are not implemented.
Every model decodes incrementally (``init_cache`` + ``step``) with exactly the function of
the parallel ``forward``: KV cache (+ running cumulative log gate c_t for fox), or the GLA
state S_t.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mlpapers.papers.fox.attention import forgetting_attention, gla_parallel

Variant = Literal["transformer", "transformer_rope", "transformer_nope", "fox", "gla"]
VARIANTS: tuple[str, ...] = ("transformer", "transformer_rope", "transformer_nope", "fox", "gla")


@dataclass(frozen=True)
class LMConfig:
    variant: str  # one of VARIANTS
    vocab_size: int
    n_layer: int
    n_head: int
    d_model: int
    block_size: int  # positions of the learned absolute table (transformer only)
    rope_base: float = 10000.0  # RoPE theta_i = base^(-2i/d_head) (transformer_rope only)


def rope_cos_sin(positions: torch.Tensor, dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, dim) for rotate-half RoPE: theta_i = base^(-2i/dim)."""
    inv = base ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim)  # (dim/2,)
    ang = positions.float()[:, None] * inv[None, :]  # (T, dim/2)
    ang = torch.cat([ang, ang], dim=-1)  # (T, dim)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D) rotated by position: x * cos + rotate_half(x) * sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


class Mixer(nn.Module):
    """Multi-head causal token mixer: softmax attention, forgetting attention or GLA."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.kind, self.n_head, self.d_head = cfg.variant, cfg.n_head, cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.gated = self.kind in ("fox", "gla")
        if self.gated:
            # forget gate f_t = sigmoid(w_f^T x_t + b_f), one scalar per head (Eq. 4)
            self.fgate = nn.Linear(cfg.d_model, cfg.n_head, bias=True)
        if self.kind == "gla":
            self.out_norm = nn.RMSNorm(self.d_head, elementwise_affine=False)
        self.record = False  # when True, keep the last log_f, q, k for the gate/attention analysis
        self.last: dict[str, torch.Tensor] = {}
        # evaluation-only ablation: a fixed log f per head (H,) used instead of the trained gate
        self.log_f_override: torch.Tensor | None = None

    def _split(self, x: torch.Tensor):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        # (B, T, C) -> (B, H, T, Dh)
        return [t.view(B, T, self.n_head, self.d_head).transpose(1, 2) for t in (q, k, v)]

    def _log_f(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fgate(x)  # w_f^T x_t + b_f, (B, T, H); log f_t in float32 even under bf16 autocast
        log_f = F.logsigmoid(z.to(torch.promote_types(z.dtype, torch.float32))).transpose(1, 2)  # (B, H, T)
        if self.log_f_override is not None:  # ablation: the same constant log f at every token
            log_f = self.log_f_override.to(log_f)[None, :, None].expand_as(log_f)
        if self.record:
            self.last["log_f"] = log_f.detach()
        return log_f

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        B, H, T, Dh = y.shape
        if self.kind == "gla":
            y = self.out_norm(y)
        return self.proj(y.transpose(1, 2).reshape(B, T, H * Dh))  # (B, H, T, Dh) -> (B, T, C)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        q, k, v = self._split(x)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.record:
            self.last.update(q=q.detach(), k=k.detach())
        if self.kind == "fox":
            y = forgetting_attention(q, k, v, self._log_f(x))  # softmax(QK^T/sqrt(d) + D) V
        elif self.kind == "gla":
            y = gla_parallel(q, k, v, self._log_f(x))  # ((QK^T/sqrt(d)) ⊙ exp(D)) V
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self._merge(y)

    def step(self, x: torch.Tensor, cache: dict, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """One new token x (B, 1, C); ``cache`` holds this layer's past (updated in place)."""
        q, k, v = self._split(x)  # (B, H, 1, Dh)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        scale = self.d_head ** -0.5
        if self.kind == "gla":
            f = self._log_f(x).exp().to(q.dtype)[..., None]  # (B, H, 1, 1)
            S = cache.get("S")
            S = k.transpose(-2, -1) @ v if S is None else f * S + k.transpose(-2, -1) @ v  # S_t = f_t S_{t-1} + k_t v_t^T
            cache["S"] = S  # (B, H, Dh, Dh): constant size
            return self._merge(scale * (q @ S))
        cache["k"] = k if "k" not in cache else torch.cat([cache["k"], k], dim=2)  # (B, H, t, Dh)
        cache["v"] = v if "v" not in cache else torch.cat([cache["v"], v], dim=2)
        logits = q @ cache["k"].transpose(-2, -1)  # (B, H, 1, t)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) * scale  # softmax in >= fp32
        if self.kind == "fox":
            log_f = self._log_f(x)  # (B, H, 1)
            c_t = log_f if "c" not in cache else cache["c"][..., -1:] + log_f  # c_t = c_{t-1} + log f_t
            cache["c"] = c_t if "c" not in cache else torch.cat([cache["c"], c_t], dim=-1)  # (B, H, t)
            logits = logits + (c_t[..., None] - cache["c"][..., None, :])  # + D_tj = c_t - c_j
        y = torch.softmax(logits, dim=-1).to(v.dtype) @ cache["v"]  # (B, H, 1, Dh)
        return self._merge(y)


class Block(nn.Module):
    """Pre-norm block: x + Mixer(LN(x)), then x + MLP(LN(x)) (4x GELU MLP)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.mixer = Mixer(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model))

    def forward(self, x, rope):
        x = x + self.mixer(self.ln1(x), rope)
        return x + self.mlp(self.ln2(x))

    def step(self, x, cache, rope):
        x = x + self.mixer.step(self.ln1(x), cache, rope)
        return x + self.mlp(self.ln2(x))


class LM(nn.Module):
    """Decoder-only language model; the output layer shares the token embedding (as nanoGPT)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        if cfg.variant not in VARIANTS:
            raise ValueError(f"unknown variant '{cfg.variant}'; choose from {VARIANTS}")
        if cfg.d_model % cfg.n_head or (cfg.d_model // cfg.n_head) % 2:
            raise ValueError(f"d_model={cfg.d_model} must split into n_head={cfg.n_head} heads of even size")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.variant == "transformer" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 n_layer)
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))
            if name.endswith("fgate.bias"):
                nn.init.zeros_(p)  # the paper's code: gate weights N(0, 0.02), bias 0

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def _rope(self, positions: torch.Tensor):
        if self.cfg.variant != "transformer_rope":
            return None
        return rope_cos_sin(positions, self.cfg.d_model // self.cfg.n_head, self.cfg.rope_base)

    def _embed(self, idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            if int(pos[-1]) >= self.cfg.block_size:
                raise ValueError(f"learned absolute positions cover {self.cfg.block_size} tokens; "
                                 f"position {int(pos[-1])} does not exist (this variant cannot extrapolate)")
            x = x + self.wpe(pos)
        return x

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, V)."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        x, rope = self._embed(idx, pos), self._rope(pos)
        for block in self.blocks:
            x = block(x, rope)
        return self.head(self.ln_f(x))

    def init_cache(self) -> list[dict]:
        return [{} for _ in self.blocks]

    def step(self, idx: torch.Tensor, cache: list[dict], pos: int) -> torch.Tensor:
        """Incremental decoding: token ids (B,) at position ``pos`` -> logits (B, V)."""
        p = torch.tensor([pos], device=idx.device)
        x, rope = self._embed(idx[:, None], p), self._rope(p)
        for block, c in zip(self.blocks, cache):
            x = block.step(x, c, rope)
        return self.head(self.ln_f(x))[:, 0]


def cache_bytes(cache: list[dict]) -> int:
    """Bytes held by a decoding cache (keys, values, cumulative gates or GLA states)."""
    return sum(t.numel() * t.element_size() for layer in cache for t in layer.values())


def count_params(model: nn.Module) -> dict[str, int]:
    """Total parameters (tied weights once) and those of the forget gates."""
    total = sum(p.numel() for p in model.parameters())
    gate = sum(p.numel() for n, p in model.named_parameters() if ".fgate." in n)
    return {"total": total, "forget_gate": gate}
