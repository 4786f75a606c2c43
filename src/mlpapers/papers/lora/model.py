"""LoRA: Low-Rank Adaptation of Large Language Models.

Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang, Chen. ICLR 2022. arXiv:2106.09685.

What is implemented (Section 4.1):

* ``LoRALinear`` wraps a frozen ``nn.Linear`` (W0) and adds, on chosen row blocks of its
  output, the low-rank update of eq. (3):   h = W0 x + ΔW x = W0 x + (α/r) B A x,
  with A ∈ R^{r×k} drawn from a Gaussian and B ∈ R^{d×r} initialised to zero, so that
  ΔW = BA = 0 at the start of training (the adapted model *is* the pretrained one).
* Row blocks exist because the FoX trunk computes q, k, v with one fused matrix
  W_qkv = [W_q; W_k; W_v] (3C × C): adapting "W_q and W_v" (Section 7.1, Table 5) means one
  (A, B) pair for rows [0, C) and another for rows [2C, 3C); W_k stays exactly W0.
* ``merge_lora`` builds the plain model with W = W0 + (α/r) B A (Section 4.1, "No Additional
  Inference Latency"): the same class, parameter count and forward path as the base model.

Deviations: the base model is the project's 4-layer character Transformer (not GPT-3 or
RoBERTa); ``A`` is drawn from N(0, 1/k) (the paper says "random Gaussian" without a scale;
1/k keeps Ax at the scale of x); biases stay frozen (the paper's LoRA adapts only weights).
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

Targets = Literal["qv", "all"]


class LoRALinear(nn.Module):
    """h = W0 x + (α/r) Σ_blocks B_i A_i x  on output rows [lo_i, hi_i)  (eq. 3).

    ``base`` is frozen (``requires_grad=False``); only the A_i, B_i are parameters that train.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, blocks: list[tuple[int, int]] | None = None):
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)  # W0 (and its bias) frozen: they receive no gradient updates
        d_out, k = base.weight.shape
        self.blocks = list(blocks) if blocks is not None else [(0, d_out)]
        if any(not 0 <= lo < hi <= d_out for lo, hi in self.blocks) or \
                any(b[0] < a[1] for a, b in zip(self.blocks, self.blocks[1:])):
            raise ValueError(f"row blocks {self.blocks} must be sorted, disjoint and inside [0, {d_out})")
        self.r, self.alpha, self.scale = r, alpha, alpha / r  # the α/r scaling of Section 4.1
        # A: random Gaussian, N(0, 1/k); B: zero, so ΔW = BA = 0 at initialisation (Section 4.1)
        self.A = nn.ParameterList(nn.Parameter(torch.randn(r, k) / k ** 0.5) for _ in self.blocks)  # (r, k)
        self.B = nn.ParameterList(nn.Parameter(torch.zeros(hi - lo, r)) for lo, hi in self.blocks)  # (d_i, r)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r) B A on the adapted rows, 0 elsewhere: (d_out, k)."""
        dw = torch.zeros_like(self.base.weight)
        for (lo, hi), A, B in zip(self.blocks, self.A, self.B):
            dw[lo:hi] = self.scale * (B @ A)
        return dw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)  # W0 x (+ b): (..., d_out)
        pieces, at = [], 0
        for (lo, hi), A, B in zip(self.blocks, self.A, self.B):
            if lo > at:  # rows without an adapter: no update
                pieces.append(h.new_zeros(*h.shape[:-1], lo - at))
            pieces.append(self.scale * ((x @ A.t()) @ B.t()))  # (α/r) B (A x): two thin matmuls, (..., hi-lo)
            at = hi
        if at < h.shape[-1]:
            pieces.append(h.new_zeros(*h.shape[:-1], h.shape[-1] - at))
        return h + torch.cat(pieces, dim=-1)

    def merged(self) -> nn.Linear:
        """A plain nn.Linear with W = W0 + (α/r) B A (and the base bias)."""
        lin = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.base.weight + self.delta_weight())
            if self.base.bias is not None:
                lin.bias.copy_(self.base.bias)
        return lin.to(self.base.weight.device)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, blocks={self.blocks}"


def adapt(model: nn.Module, targets: Targets, r: int, alpha: float) -> nn.Module:
    """Freeze every parameter of a FoX-trunk LM and put LoRA on the target matrices, in place.

    ``qv``: W_q and W_v of every attention layer (the paper's GPT-3 choice, Section 7.1).
    ``all``: W_q, W_k, W_v, W_o and both MLP matrices of every block.
    Embeddings, LayerNorms and the (tied) output layer stay frozen.
    """
    if targets not in ("qv", "all"):
        raise ValueError(f"targets must be 'qv' or 'all', got {targets!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.blocks:
        mixer = block.mixer
        C = mixer.proj.in_features
        qkv_blocks = [(0, C), (2 * C, 3 * C)] if targets == "qv" else [(0, C), (C, 2 * C), (2 * C, 3 * C)]
        mixer.qkv = LoRALinear(mixer.qkv, r, alpha, qkv_blocks)  # rows of W_qkv = [W_q; W_k; W_v]
        if targets == "all":
            mixer.proj = LoRALinear(mixer.proj, r, alpha)  # W_o
            block.mlp[0] = LoRALinear(block.mlp[0], r, alpha)  # W_fc (4C × C)
            block.mlp[2] = LoRALinear(block.mlp[2], r, alpha)  # W_proj (C × 4C)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LoRALinear replaced by its merged nn.Linear (W0 + (α/r) BA):
    the base architecture, so inference costs exactly what the base model costs."""
    out = copy.deepcopy(model)
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                merged = child.merged()
                if isinstance(module, nn.Sequential):
                    module[int(child_name)] = merged
                else:
                    setattr(module, child_name, merged)
    for p in out.parameters():
        p.requires_grad_(True)
    return out


def trainable(model: nn.Module) -> int:
    """Parameters that receive updates (``requires_grad``); tied weights counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_param_count(n_layer: int, d_model: int, targets: Targets, r: int) -> int:
    """The closed form: each adapted d×k matrix adds r (d + k) parameters (A: r×k, B: d×r).

    ``qv``: 2 matrices C×C per layer -> 4 r C;  ``all``: q, k, v, o (C×C) and the MLP's
    4C×C and C×4C -> 4·2rC + 2·5rC = 18 r C per layer.
    """
    C = d_model
    per_layer = 2 * r * (C + C) if targets == "qv" else 4 * r * (C + C) + 2 * r * (4 * C + C)
    return n_layer * per_layer
