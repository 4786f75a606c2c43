"""Speed benchmark (prints numbers; not a test, not a pipeline stage).

    python -m mlpapers.papers.fox.bench [--rounds 10] [--nanogpt PATH/TO/nanoGPT]

1. Attention alone at the training shape (B=12, H=4, T=64, d=32), forward + backward:
   causal SDPA, FoX as implemented (column bias as an extra feature, fused causal SDPA),
   FoX with the full T x T decay matrix D as a float mask (the paper's Eq. as written).
2. One AdamW training step of every variant at nanoGPT's shakespeare_char CPU config
   (4 layers x 4 heads x 128, context 64, batch 12): training tokens per CPU-second.
3. With ``--nanogpt``: the same step of nanoGPT's own ``GPT`` (dropout 0, bias False as its
   config; imported from a checkout you provide, for this measurement only) next to ours.

Timings are CPU time of this single-threaded process (``time.process_time``), in
interleaved rounds (each round times every contender once), because the machine may be
shared: contention stretches wall time much more than CPU time. Ratios are per round,
summarised with ``mlpapers.stats.ratio`` (mean, std, 95% t interval over rounds).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from mlpapers import stats
from mlpapers.papers.fox.attention import forgetting_attention, forgetting_attention_naive
from mlpapers.papers.fox.model import LM, VARIANTS, LMConfig


def rounds_of(fns: dict, rounds: int, reps: int) -> dict[str, list[float]]:
    """CPU seconds per call of every fn, one list entry per interleaved round."""
    for f in fns.values():  # warm-up
        f()
    out = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.process_time()
            for _ in range(reps):
                f()
            out[k].append((time.process_time() - t) / reps)
    return out


def attention_fns(B=12, H=4, T=64, D=32) -> dict:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, T, D, generator=g, requires_grad=True) for _ in range(3))
    log_f = F.logsigmoid(torch.randn(B, H, T, generator=g)).requires_grad_()
    return {
        "sdpa_causal": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward(),
        "fox": lambda: forgetting_attention(q, k, v, log_f).sum().backward(),
        "fox_full_D": lambda: forgetting_attention_naive(q, k, v, log_f).sum().backward(),
    }


def step_fn(model: torch.nn.Module, loss_of):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1)

    def step():
        loss = loss_of(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3, help="training steps per round and contender")
    ap.add_argument("--nanogpt", default=None, help="path of a nanoGPT checkout (for its model.py)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    t = rounds_of(attention_fns(), args.rounds, 20)
    print("attention fwd+bwd at (B=12, H=4, T=64, d=32), CPU ms per call (mean over rounds):")
    for k, v in t.items():
        print(f"  {k:12s} {1e3 * sum(v) / len(v):7.3f}")
    for k in ("fox", "fox_full_D"):
        print(f"  speed {k}/sdpa_causal: {stats.fmt(stats.ratio(t['sdpa_causal'], t[k]), 3)} over rounds")

    B, T, V = 12, 64, 65
    xy = torch.randint(0, V, (B, T + 1))
    x, y = xy[:, :-1], xy[:, 1:]
    ours = lambda m: F.cross_entropy(m(x).flatten(0, 1), y.flatten())  # noqa: E731
    fns = {v: step_fn(LM(LMConfig(v, V, 4, 4, 128, T)), ours) for v in VARIANTS}
    if args.nanogpt:
        sys.path.insert(0, args.nanogpt)
        from model import GPT, GPTConfig  # nanoGPT's model.py, from the checkout given

        ng = GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False))
        fns["nanogpt"] = step_fn(ng, lambda m: m(x, targets=y)[1])  # its own loss over all positions
    t = rounds_of(fns, args.rounds, args.reps)
    print(f"training step at 4x4x128, context {T}, batch {B}: tokens per CPU-second (mean over rounds)")
    for k, v in t.items():
        print(f"  {k:17s} {B * T * len(v) / sum(v):9,.0f}")
    print(f"  fox/rope speed: {stats.fmt(stats.ratio(t['transformer_rope'], t['fox']), 3)} over rounds")
    if "nanogpt" in t:
        print(f"  ours (transformer)/nanoGPT speed: {stats.fmt(stats.ratio(t['nanogpt'], t['transformer']), 3)} over rounds")


if __name__ == "__main__":
    main()
