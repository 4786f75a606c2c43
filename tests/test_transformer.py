"""Transformer (Vaswani et al. 2017): masks, cached decoding, Eq. (1), §3.5 positions, Eq. (3) schedule."""
from __future__ import annotations

import math

import pytest
import torch

from mlpapers.papers.seq2seq.decoding import beam_search, greedy_decode
from mlpapers.papers.seq2seq.model import BOS, EOS, PAD
from mlpapers.papers.transformer.model import MultiHeadAttention, Transformer, TransformerConfig, attention, sinusoid
from mlpapers.papers.transformer.task import Harness, Schedule, TransformerTask, noam_lr

V_SRC, V_TGT = 23, 19


def make(positions: str = "sinusoidal", seed: int = 0, heads: int = 4) -> Transformer:
    torch.manual_seed(seed)
    m = Transformer(TransformerConfig(32, heads, 2, 48, 0.0, positions, 40), V_SRC, V_TGT)
    for p in m.parameters():  # make the pad rows non-zero too: masks, not zero weights, must do the work
        p.data.add_(0.05 * torch.randn_like(p))
    return m.eval()


def tokens(B: int, T: int, V: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, V, (B, T), generator=g)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_causal_mask_future_tokens_do_not_change_the_past(positions):
    m = make(positions)
    src, tgt = tokens(3, 7, V_SRC, 1), tokens(3, 9, V_TGT, 2)
    out = m(src, tgt)
    for t in (0, 4, 7):
        tgt2 = tgt.clone()
        tgt2[:, t + 1 :] = tokens(3, 9, V_TGT, 3)[:, t + 1 :]  # change only the future of position t
        out2 = m(src, tgt2)
        torch.testing.assert_close(out2[:, : t + 1], out[:, : t + 1], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out2[:, t + 1 :], out[:, t + 1 :], atol=1e-3)  # the future did change


def test_padding_contents_do_not_change_real_positions():
    """Source and target <pad> positions: whatever token ids sit there, real outputs stay the same."""
    m = make()
    src, tgt = tokens(2, 8, V_SRC, 4), tokens(2, 6, V_TGT, 5)
    src[0, 5:], tgt[0, 4:] = PAD, PAD
    out = m(src, tgt)
    # put real token ids where the pads are, but keep the masks of the padded batch
    src_mask = (src != PAD)[:, None, None, :]
    noisy_src = torch.where(src == PAD, tokens(2, 8, V_SRC, 6), src)
    x = m.embed(noisy_src, m.src_embed)
    for layer in m.enc:
        x = layer(x, src_mask)
    mem = x
    noisy_tgt = torch.where(tgt == PAD, tokens(2, 6, V_TGT, 7), tgt)
    T = tgt.size(1)
    self_mask = torch.ones(T, T, dtype=torch.bool).tril()[None, None] & (tgt != PAD)[:, None, None, :]
    y = m.embed(noisy_tgt, m.tgt_embed)
    for layer in m.dec:
        y = layer(y, self_mask, layer.cross_attn.kv(mem), src_mask)
    out2 = m.logits(y)
    real = tgt != PAD
    torch.testing.assert_close(out2[real], out[real], atol=1e-5, rtol=1e-5)


def test_source_padding_length_does_not_matter():
    """A sentence padded to a longer batch gives the same outputs as on its own."""
    m = make()
    src, tgt = tokens(1, 5, V_SRC, 8), tokens(1, 6, V_TGT, 9)
    padded = torch.cat([src, torch.full((1, 4), PAD)], 1)
    torch.testing.assert_close(m(padded, tgt), m(src, tgt), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_cached_decoding_equals_full_forward(positions):
    m = make(positions)
    src = tokens(3, 7, V_SRC, 10)
    src[1, 4:] = PAD
    tgt = torch.cat([torch.full((3, 1), BOS), tokens(3, 8, V_TGT, 11)], 1)
    full = m(src, tgt)  # (B, T, V)
    h = Harness(m)
    memory, cache = h.encoder(src, (src != PAD).sum(1))
    steps = []
    for t in range(tgt.size(1)):
        logits, cache, _, _ = h.decoder.step(tgt[:, t], cache, None, memory, src != PAD)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_greedy_and_beam_harness_run_and_beam1_is_greedy():
    m = make()
    src = tokens(4, 6, V_SRC, 12)
    src[2, 3:] = PAD
    h = Harness(m)
    ys, att = greedy_decode(h, src, (src != PAD).sum(1), 12)
    assert att is None and ys.shape[0] == 4
    yb = beam_search(h, src, (src != PAD).sum(1), 12, beam=1)
    torch.testing.assert_close(yb, ys)
    y5 = beam_search(h, src, (src != PAD).sum(1), 12, beam=4)
    assert y5.shape[0] == 4 and ((y5 == EOS).any(1) | (y5.size(1) == 12)).all()


def test_attention_equals_naive_eq1():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5, generator=g) > 0.3
    mask[..., 0] = True  # every query may see at least one key
    out = attention(q, k, v, mask)
    ref = torch.zeros_like(out)
    for b in range(2):
        for hh in range(3):
            for i in range(5):
                s = torch.tensor([float(q[b, hh, i] @ k[b, hh, j]) / math.sqrt(8) if mask[b, 0, i, j] else -math.inf
                                  for j in range(5)])
                w = torch.exp(s - s.max())
                w = w / w.sum()
                ref[b, hh, i] = sum(w[j] * v[b, hh, j] for j in range(5))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_multihead_equals_per_head_loop():
    """§3.2.2: Concat(head_1..head_h) W^O with head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3)
    x, mem = torch.randn(2, 4, 12), torch.randn(2, 6, 12)
    out = mha(x, None, memory=mem)
    heads = []
    for i in range(3):
        sl = slice(4 * i, 4 * (i + 1))
        Q = x @ mha.W_q.weight[sl].T + mha.W_q.bias[sl]
        K = mem @ mha.W_k.weight[sl].T + mha.W_k.bias[sl]
        Vv = mem @ mha.W_v.weight[sl].T + mha.W_v.bias[sl]
        heads.append(torch.softmax(Q @ K.transpose(1, 2) / 2.0, -1) @ Vv)
    ref = mha.W_o(torch.cat(heads, -1))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_positional_encoding_matches_section_3_5():
    pe = sinusoid(50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6)


def test_warmup_schedule_matches_eq3():
    s = Schedule("noam", 40, 1.0)
    for step in (1, 10, 39, 40, 41, 100, 1000):
        ref = 64 ** -0.5 * min(step ** -0.5, step * 40 ** -1.5)
        assert noam_lr(step, 64, s) == pytest.approx(ref, rel=1e-12)
    assert noam_lr(40, 64, s) == max(noam_lr(t, 64, s) for t in range(1, 200))  # peak at warmup
    c = Schedule("constant", 40, 1.0)
    assert noam_lr(1, 64, c) == noam_lr(500, 64, c) == pytest.approx(noam_lr(40, 64, s))


@pytest.mark.parametrize("optimizer,steps", [("adamw", 1), ("sgd", 5)])
def test_scheduled_updates_equal_the_optimizer_at_the_scheduled_rate(optimizer, steps):
    """The after_step rescaling gives the parameters the optimiser reaches with lr = Eq. (3).

    Adam runs one step only: key biases get exactly-zero gradients up to rounding, and Adam
    turns such noise into full-size updates, so two equal computations drift apart later."""
    from mlpapers.train import TrainConfig, fit

    src = [[4, 5, 6], [7, 8], [9, 10, 11, 12]] * 4
    tgt = [[5, 6], [7, 8, 9], [10]] * 4
    sched = Schedule("noam", 3, 1.0)
    cfg = TrainConfig(steps=steps, batch_size=4, lr=1e-3, optimizer=optimizer, momentum=0.9, beta2=0.98,
                      weight_decay=0.0, schedule="constant", warmup_steps=0, min_lr_ratio=1.0, grad_clip=0.0,
                      eval_every=0, precision="fp32", device="cpu")
    m = make()
    task = TransformerTask(m, src, tgt, 4, None, 0.1, sched, cfg.lr, snapshot_steps=(1,))
    fit(task, cfg, seed=0)
    ref = make()
    opt = (torch.optim.Adam(ref.parameters(), lr=1.0, betas=(0.9, 0.98)) if optimizer == "adamw"
           else torch.optim.SGD(ref.parameters(), lr=1.0, momentum=0.9))
    ref_task = TransformerTask(ref, src, tgt, 4, None, 0.1, sched, cfg.lr)
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        for gr in opt.param_groups:
            gr["lr"] = noam_lr(step + 1, 32, sched)
        ref.train()
        batch = ref_task.train_batch(step, gen)
        opt.zero_grad()
        ref_task.loss(batch).backward()
        opt.step()
    for p, r in zip(m.parameters(), ref.parameters()):
        torch.testing.assert_close(p, r, atol=1e-5, rtol=1e-4)
    assert set(task.snapshots) == {1}
