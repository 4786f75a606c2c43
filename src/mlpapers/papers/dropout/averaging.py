"""Model averaging at test time (Section 7.5, Fig. 11): Monte-Carlo vs the weight-scaling rule.

* Weight scaling (Section 4): one deterministic pass of the net with every weight scaled by
  the retain probability. With inverted dropout (``model.Dropout``) the training-time
  survivors are already scaled by 1/(1 - p), so the weight-scaled net *is* the net in eval
  mode: ``weight_scaled_probs`` = softmax of ``model.eval()(x)``.
* Monte-Carlo averaging: sample k dropout masks (training-mode forward passes, no weight
  update) and average the k predicted class *probabilities*,
  p_MC(y | x) = (1/k) sum_i softmax(f(x; r_i))_y, then take the argmax.
"""
from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def weight_scaled_probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C) class probabilities of the deterministic, weight-scaled net."""
    was = model.training
    model.eval()
    probs = torch.softmax(model(x), dim=-1)
    model.train(was)
    return probs


@torch.no_grad()
def mc_probs(model: torch.nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C) mean of k stochastic passes' class probabilities (dropout masks from torch's RNG)."""
    return mc_curve(model, x, [k])[0]


@torch.no_grad()
def mc_curve(model: torch.nn.Module, x: torch.Tensor, ks: Sequence[int]) -> list[torch.Tensor]:
    """Running MC averages: for each k in ``ks`` (ascending), the mean probability of the first k samples.

    One draw of max(ks) masks serves every k (as a growing ensemble), so the estimates for
    different k within a draw are nested, like adding nets to an ensemble one at a time.
    """
    ks = sorted(ks)
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive, got {list(ks)}")
    was = model.training
    model.train()  # dropout on: each pass samples a fresh thinned net
    total = None
    out = []
    want = iter(ks)
    k_next = next(want)
    for i in range(1, ks[-1] + 1):
        p = torch.softmax(model(x), dim=-1)  # (B, C) probabilities of thinned net i
        total = p if total is None else total + p
        while k_next == i:
            out.append(total / i)
            k_next = next(want, None)
    model.train(was)
    return out


def error(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Test error of argmax predictions."""
    return (probs.argmax(-1) != y).float().mean().item()
