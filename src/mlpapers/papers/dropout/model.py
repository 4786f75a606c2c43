"""Dropout: A Simple Way to Prevent Neural Networks from Overfitting.

Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov. JMLR 15 (2014) 1929-1958.
https://jmlr.org/papers/v15/srivastava14a.html

Implemented from scratch:

* ``GaussianDropout`` -- Section 10: multiplicative N(1, sigma^2) noise, sigma^2 = p/(1-p)
  in our drop convention (the paper's (1-p)/p with p = retain).
* ``Dropout`` -- Section 4, Eq. (1)-(4): r_j ~ Bernoulli(1 - p), y~ = r * y. The paper
  keeps units with probability (1 - p) at training time and scales the *weights* by
  (1 - p) at test time (Section 4 / Fig. 2). We use the equivalent "inverted" form: survivors
  are scaled by 1/(1 - p) during training and the test-time network is the identity, so the
  expected activation is the same in both modes.
* ``max_norm_`` -- Section 5.1: after each update the incoming weight vector of every
  hidden unit is projected onto the ball ||w||_2 <= c.
* ``MLP`` -- the feed-forward nets of Sections 6.1 and 7.4 (ReLU, dropout on the input
  and on every hidden layer).

Note: the paper's p is the probability of *retaining* a unit; we follow PyTorch and the
issue and use p = probability of *dropping* it (paper p = 0.8 at the input is our 0.2).
"""
from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    """Inverted dropout: train: y = x * r / (1 - p), r_j ~ Bernoulli(1 - p); eval: y = x."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        r = torch.empty_like(x).bernoulli_(keep)  # r_j ~ Bernoulli(1 - p)   (Eq. 2)
        return x * r / keep  # E[y] = x: no rescaling needed at test time

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GaussianDropout(nn.Module):
    """Multiplicative Gaussian noise (Section 10): train: y = x * r, r ~ N(1, sigma^2); eval: y = x.

    The paper sets sigma^2 = (1 - p_keep) / p_keep for retain probability p_keep, so that each
    unit's noise has the mean (1) and variance of inverted Bernoulli dropout r' / p_keep,
    r' ~ Bernoulli(p_keep). In our drop-probability convention p = 1 - p_keep this reads
    sigma^2 = p / (1 - p). Like the inverted Bernoulli form, nothing is rescaled at test time.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.sigma = (self.p / (1.0 - self.p)) ** 0.5  # sigma^2 = (1 - p_keep) / p_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        r = 1.0 + self.sigma * torch.randn_like(x)  # r_j ~ N(1, sigma^2)
        return x * r

    def extra_repr(self) -> str:
        return f"p={self.p}, sigma={self.sigma:.4f}"


NOISES = {"bernoulli": Dropout, "gaussian": GaussianDropout}


@torch.no_grad()
def max_norm_(linear: nn.Linear, c: float) -> None:
    """Project each unit's incoming weights onto ||w||_2 <= c (Section 5.1), in place.

    ``linear.weight`` is (out, in): row i is the incoming weight vector of unit i.
    """
    norms = linear.weight.norm(dim=1, keepdim=True)  # (out, 1)
    linear.weight.mul_(torch.clamp(c / (norms + 1e-12), max=1.0))


class MLP(nn.Module):
    """in -> [Dropout(p_input)] -> (Linear -> ReLU -> Dropout(p_hidden)) x depth -> Linear."""

    def __init__(self, n_in: int, n_hidden: int, depth: int, n_out: int, p_input: float, p_hidden: float,
                 noise: str = "bernoulli"):
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {list(NOISES)}, got {noise!r}")
        self.input_dropout = NOISES[noise](p_input)
        dims = [n_in] + [n_hidden] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropouts = nn.ModuleList(NOISES[noise](p_hidden) for _ in range(depth))
        self.out = nn.Linear(dims[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x)[-1])  # (B, n_out) logits

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's output after ReLU and dropout noise (Fig. 8 reads these)."""
        h, out = self.input_dropout(x), []  # (B, n_in)
        for linear, drop in zip(self.hidden, self.dropouts):
            h = drop(torch.relu(linear(h)))  # (B, n_hidden)
            out.append(h)
        return out

    def apply_max_norm(self, c: float) -> None:
        """Max-norm on every layer, the output layer included (as in the paper's nets)."""
        for linear in [*self.hidden, self.out]:
            max_norm_(linear, c)
