"""What the forget gates learned, measured as the FoX paper's analysis does (Lin et al. 2025,
Section 4.4 and App. on gate visualisation), on trained checkpoints:

* ``gate_stats``        -- per layer and head: quantiles of f_t over validation tokens, the
                           fraction of f_t > 0.9 (keeps the past) and < 0.1 (forgets it), mean f.
* ``gates_by_token``    -- per head, the mean gate for each *input* token (which characters
                           close or open the head) and the share of the gate's variance that
                           the current token explains (between-token / total variance, R^2).
* ``attention_distance``-- per head, the mean distance sum_j a_ij (i - j) of its attention.
* ``ablation_losses``   -- evaluation-only ablations: trained gates; a per-head *constant* gate
                           with the same mean log f (a data-independent decay, ALiBi-like);
                           no gate (f = 1, FoX becomes NoPE). If the gates were not data
                           dependent, the constant gate would cost nothing.

The half-life ln 0.5 / mean(log f) of earlier versions is not reported: the mean of log f is
dominated by the few near-zero gates (e.g. at spaces, log 0.01 = -4.6), so it reports a
"half-life" below one token even for heads that keep f > 0.9 on most characters.
"""
from __future__ import annotations

import contextlib

import torch

from mlpapers.papers.fox.attention import _decay_logits
from mlpapers.papers.fox.model import LM
from mlpapers.papers.fox.task import position_loss

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@contextlib.contextmanager
def recording(model: LM):
    """Keep every mixer's last log f, q and k (``mixer.last``) while inside the block."""
    mixers = [b.mixer for b in model.blocks]
    for m in mixers:
        m.record = True
    try:
        yield mixers
    finally:
        for m in mixers:
            m.record, m.last = False, {}


@torch.no_grad()
def gate_values(model: LM, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Forget gates f for windows x (N, T): (n_layer, n_head, N * T), float64, token order."""
    per_layer: list[list[torch.Tensor]] = [[] for _ in model.blocks]
    with recording(model) as mixers:
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
            for acc, m in zip(per_layer, mixers):
                acc.append(m.last["log_f"].double().exp().permute(1, 0, 2).flatten(1))  # (H, b*T)
    return torch.stack([torch.cat(a, dim=1) for a in per_layer])


def gate_stats(f: torch.Tensor) -> list[dict]:
    """f (n_layer, n_head, N): one row per layer and head with quantiles, tails and mean of f."""
    qs = torch.quantile(f.float(), torch.tensor(QUANTILES), dim=-1).double()  # (Q, L, H); float: N can be large
    rows = []
    for layer in range(f.shape[0]):
        for head in range(f.shape[1]):
            g = f[layer, head]
            row = {"layer": layer, "head": head, "mean_gate": g.mean().item()}
            row.update({f"q{int(q * 100):02d}": qs[i, layer, head].item() for i, q in enumerate(QUANTILES)})
            row.update({"frac_above_0.9": (g > 0.9).double().mean().item(),
                        "frac_below_0.1": (g < 0.1).double().mean().item()})
            rows.append(row)
    return rows


def gates_by_token(f: torch.Tensor, tokens: torch.Tensor, vocab_size: int) -> tuple[list[dict], list[float]]:
    """Mean gate per input token for every head, and per head the R^2 of f on the token.

    f (n_layer, n_head, N), tokens (N,) the token each gate was computed at. R^2 =
    sum_c n_c (mean_c - mean)^2 / sum (f - mean)^2: the share of the gate's variance that the
    current token alone explains. Returns (rows: layer, head, token, count, mean_gate; R^2 per head).
    """
    count = torch.bincount(tokens, minlength=vocab_size).double()  # (V,)
    flat = f.flatten(0, 1)  # (L*H, N)
    sums = torch.zeros(flat.shape[0], vocab_size, dtype=torch.float64).index_add_(1, tokens, flat)  # (L*H, V)
    means = sums / count.clamp(min=1)
    grand = flat.mean(1, keepdim=True)
    between = (count * (means - grand) ** 2).sum(1)
    total = ((flat - grand) ** 2).sum(1).clamp(min=1e-300)
    r2 = (between / total).tolist()
    rows = []
    for lh in range(flat.shape[0]):
        layer, head = divmod(lh, f.shape[1])
        rows += [{"layer": layer, "head": head, "token": c, "count": int(count[c]), "mean_gate": means[lh, c].item()}
                 for c in range(vocab_size) if count[c] > 0]
    return rows, r2


@torch.no_grad()
def attention_distance(model: LM, x: torch.Tensor) -> list[dict]:
    """Mean attention distance per layer and head: mean_i sum_j a_ij (i - j), over windows x (N, T).

    Softmax-attention variants only (the attention weights a_ij are recomputed from the
    recorded q, k and, for FoX, the decay D). For GLA there are no normalised weights.
    """
    kind = model.cfg.variant
    if kind == "gla":
        return []
    T = x.shape[1]
    dist = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).clamp(min=0).double()  # (T, T): i - j
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    totals = torch.zeros(model.cfg.n_layer, model.cfg.n_head, dtype=torch.float64)
    with recording(model) as mixers:
        model(x)
        for layer, m in enumerate(mixers):
            q, k = m.last["q"].double(), m.last["k"].double()  # (N, H, T, Dh)
            logits = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (N, H, T, T)
            if kind == "fox":
                logits = logits + _decay_logits(m.last["log_f"].double())
            a = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
            totals[layer] = (a * dist).sum(-1).mean((0, 2))  # sum_j a_ij (i - j), mean over i and windows
    return [{"layer": layer, "head": head, "mean_distance": totals[layer, head].item()}
            for layer in range(totals.shape[0]) for head in range(totals.shape[1])]


def constant_log_f(f: torch.Tensor) -> torch.Tensor:
    """Per-head constant log gate for the ablation: mean log f over tokens, f (n_layer, n_head, N) ->
    (n_layer, n_head). The mean of log f (not of f) keeps the mean decay per token,
    prod_t f_t = exp(sum_t log f_t), unchanged."""
    return f.clamp(min=1e-300).log().mean(-1)


@torch.no_grad()
def ablation_losses(model: LM, x: torch.Tensor, y: torch.Tensor, f: torch.Tensor,
                    device: torch.device) -> dict[str, float]:
    """Validation loss (nats/token) of one FoX model with trained / constant / no gates.

    ``f`` (n_layer, n_head, N) are the trained gates on these windows; the constant gate of
    a head is exp(mean log f) of that head, so that the mean decay per token is unchanged.
    """
    mixers = [b.mixer for b in model.blocks]
    const = constant_log_f(f)  # (n_layer, n_head): mean log f per head
    out = {"trained": float(position_loss(model, x, y, device).mean())}
    try:
        for name in ("constant", "none"):
            for layer, m in enumerate(mixers):
                m.log_f_override = const[layer].float() if name == "constant" else torch.zeros(const.shape[1])
            out[name] = float(position_loss(model, x, y, device).mean())
    finally:
        for m in mixers:
            m.log_f_override = None
    return out
