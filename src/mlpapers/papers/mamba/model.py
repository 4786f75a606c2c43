"""Mamba (S6) and Mamba-2 (SSD) language models with the FoX benchmark's interface.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", arXiv:2312.00752;
Dao & Gu, "Transformers are SSMs" (Mamba-2), arXiv:2405.21060.

The Mamba block (§3.4, Figure 3): x -> in_proj to (x, z) of width E*D -> causal depthwise conv1d
-> SiLU -> selective SSM -> times SiLU(z) -> out_proj. The SSM's parameters are input-dependent
(§3.2, Algorithm 2): B = s_B(x) = Linear_N(x), C = s_C(x) = Linear_N(x),
Delta = tau_Delta(Parameter + s_Delta(x)) with s_Delta = a rank-R projection broadcast to the D
channels and tau_Delta = softplus. A is S4D-real (A_n = -(n+1)), kept as log(-A).

* ``mamba``  -- S6: A diagonal (D x N), Delta per channel (the Mamba paper).
* ``mamba2`` -- the same block with Mamba-2's SSD layer: A a scalar per head, Delta per head,
                B, C shared by the heads (n_groups = 1). Simplified block: Mamba-2's parallel
                in_proj and extra gated RMSNorm are not used (see README).

The LM: token embedding, ``n_blocks`` pre-norm residual blocks x + Mixer(RMSNorm(x)), final
RMSNorm, output layer tied to the embedding -- the FoX trunk with the (attention + MLP) layer
replaced by Mamba blocks (the paper stacks 2 Mamba blocks per Transformer layer, §4.2 / App. E.2).
``forward(idx)``, ``init_cache()``, ``step(idx, cache, pos)`` match ``mlpapers.papers.fox.model.LM``
so that FoX's evaluation code runs unchanged; the decoding cache is the conv window and the SSM state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mlpapers.papers.mamba.ssm import s6_scan, s6_step, ssd_chunked, ssd_step

VARIANTS: tuple[str, ...] = ("mamba", "mamba2")


@dataclass(frozen=True)
class MambaLMConfig:
    variant: str  # "mamba" (S6) or "mamba2" (SSD)
    vocab_size: int
    n_blocks: int
    d_model: int
    d_state: int  # N
    expand: int  # E: inner width E * d_model
    d_conv: int  # causal conv1d kernel width
    n_head: int  # mamba2 only: heads of the SSD layer (scalar A and Delta per head)
    chunk: int  # mamba2 only: chunk length of the SSD parallel form
    dt_min: float = 0.001  # Delta initialised log-uniform in [dt_min, dt_max] (App. E / official code)
    dt_max: float = 0.1


class MambaMixer(nn.Module):
    """One Mamba block (§3.4) without its residual and norm: (B, T, C) -> (B, T, C)."""

    def __init__(self, cfg: MambaLMConfig):
        super().__init__()
        self.cfg, D, N = cfg, cfg.expand * cfg.d_model, cfg.d_state
        self.D, self.N, self.k = D, N, cfg.d_conv
        self.ssd = cfg.variant == "mamba2"
        self.H = cfg.n_head if self.ssd else D  # Delta entries per token: one per head or per channel
        self.R = math.ceil(cfg.d_model / 16)  # rank of s_Delta (official default: ceil(D_model / 16))
        self.in_proj = nn.Linear(cfg.d_model, 2 * D, bias=False)  # x branch and gate z
        self.conv = nn.Conv1d(D, D, cfg.d_conv, groups=D, padding=cfg.d_conv - 1)  # depthwise, causal by padding
        self.x_proj = nn.Linear(D, self.R + 2 * N, bias=False)  # s_Delta (rank R), s_B, s_C
        self.dt_proj = nn.Linear(self.R, self.H, bias=True)  # broadcast to channels/heads; bias = "Parameter"
        n = torch.arange(1, N + 1, dtype=torch.float32)
        if self.ssd:  # Mamba-2: A_h = -U[1, 16] per head (official init), kept as log(-A)
            A = torch.linspace(1, 16, self.H)
        else:  # S4D-real: A_{d,n} = -n (the Mamba paper's default, §3.6)
            A = n.repeat(D, 1)
        self.A_log = nn.Parameter(A.log())
        self.Dskip = nn.Parameter(torch.ones(self.H))  # the D x skip of Algorithm 2 (per channel / head)
        self.out_proj = nn.Linear(D, cfg.d_model, bias=False)

    def reset_dt(self) -> None:
        """Delta's bias: softplus^{-1} of dt ~ log-uniform [dt_min, dt_max]; weights U(+-R^-1/2) (official init)."""
        cfg = self.cfg
        nn.init.uniform_(self.dt_proj.weight, -self.R**-0.5, self.R**-0.5)
        dt = torch.exp(torch.rand(self.H) * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def _ssm_inputs(self, u: torch.Tensor):
        """u (B, T, D) after conv + SiLU -> Delta (B, T, H), B (B, T, N), C (B, T, N)  (Algorithm 2 lines 2-4)."""
        dt, Bm, Cm = self.x_proj(u).split([self.R, self.N, self.N], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # tau_Delta(Parameter + s_Delta(x))
        return delta, Bm, Cm

    def _ssm(self, u, delta, Bm, Cm, h0=None):
        A = -torch.exp(self.A_log.float()).to(u.dtype)  # (D, N) or (H,), negative
        if self.ssd:
            Bt, T, D = u.shape
            y, h = ssd_chunked(u.view(Bt, T, self.H, D // self.H), delta, A, Bm, Cm, self.Dskip, self.cfg.chunk, h0)
            return y.reshape(Bt, T, D), h  # (B, T, H, P) -> (B, T, D)
        return s6_scan(u, delta, A, Bm, Cm, self.Dskip, h0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (B, T, D) each
        u = F.silu(self.conv(u.transpose(1, 2))[..., :T].transpose(1, 2))  # causal conv1d, SiLU
        y, _ = self._ssm(u, *self._ssm_inputs(u))
        return self.out_proj(y * F.silu(z))  # gate: y * SiLU(z)

    def step(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        """x (B, 1, C); cache: "conv" = the last d_conv - 1 conv inputs (B, D, k-1), "h" = SSM state."""
        u, z = self.in_proj(x[:, 0]).chunk(2, dim=-1)  # (B, D)
        if "conv" not in cache:  # empty past = the zero padding of the parallel conv
            cache["conv"] = u.new_zeros(u.shape[0], self.D, self.k - 1)
            cache["h"] = u.new_zeros(u.shape[0], self.H, self.D // self.H, self.N) if self.ssd else \
                u.new_zeros(u.shape[0], self.D, self.N)
        window = torch.cat([cache["conv"], u[:, :, None]], dim=-1)  # (B, D, k): inputs t-k+1..t
        cache["conv"] = window[:, :, 1:]
        u = F.silu((window * self.conv.weight[:, 0]).sum(-1) + self.conv.bias)  # (B, D)
        delta, Bm, Cm = self._ssm_inputs(u)
        A = -torch.exp(self.A_log.float()).to(u.dtype)
        if self.ssd:
            y, cache["h"] = ssd_step(u.view(len(u), self.H, -1), delta, A, Bm, Cm, self.Dskip, cache["h"])
            y = y.reshape(len(u), self.D)
        else:
            y, cache["h"] = s6_step(u, delta, A, Bm, Cm, self.Dskip, cache["h"])
        return self.out_proj(y * F.silu(z))[:, None]


class MambaBlock(nn.Module):
    """Pre-norm residual block: x + Mixer(RMSNorm(x))."""

    def __init__(self, cfg: MambaLMConfig):
        super().__init__()
        self.norm, self.mixer = nn.RMSNorm(cfg.d_model), MambaMixer(cfg)

    def forward(self, x):
        return x + self.mixer(self.norm(x))

    def step(self, x, cache):
        return x + self.mixer.step(self.norm(x), cache)


class MambaLM(nn.Module):
    def __init__(self, cfg: MambaLMConfig):
        super().__init__()
        if cfg.variant not in VARIANTS:
            raise ValueError(f"unknown variant '{cfg.variant}'; choose from {VARIANTS}")
        if cfg.variant == "mamba2" and (cfg.expand * cfg.d_model) % cfg.n_head:
            raise ValueError(f"inner width {cfg.expand * cfg.d_model} must split into n_head={cfg.n_head} heads")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(MambaBlock(cfg) for _ in range(cfg.n_blocks))
        self.ln_f = nn.RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # weight tying, as the FoX trunk
        for m in self.modules():  # the FoX trunk's init: N(0, 0.02) for linear and embedding weights
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        for b in self.blocks:
            nn.init.normal_(b.mixer.out_proj.weight, 0.0, 0.02 / math.sqrt(2 * cfg.n_blocks))  # residual scaling
            b.mixer.reset_dt()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> logits (B, T, V). No positions: order comes from the conv and the recurrence."""
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def init_cache(self) -> list[dict]:
        return [{} for _ in self.blocks]

    def step(self, idx: torch.Tensor, cache: list[dict], pos: int) -> torch.Tensor:
        """Recurrent decoding: token ids (B,) -> logits (B, V); ``pos`` is unused (no positions)."""
        x = self.wte(idx[:, None])
        for block, c in zip(self.blocks, cache):
            x = block.step(x, c)
        return self.head(self.ln_f(x))[:, 0]
