"""FoX: forgetting attention against the formula, decoding against the parallel forward,
GLA's two forms against each other, WikiText-2 tokenisation, and learnability."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlpapers.papers.fox.attention import forgetting_attention, gla_parallel, gla_recurrent
from mlpapers.papers.fox.model import LM, VARIANTS, LMConfig, cache_bytes, count_params
from mlpapers.papers.fox.task import EOS, UNK, char_corpus, wikitext_corpus, wikitext_words, windows

torch.set_num_threads(1)
WT2_VALID = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "wikitext-2" / "wiki.valid.tokens"


def naive_fox(q, k, v, log_f, scale):
    """The paper's formula, one query at a time: o_i = sum_{j<=i} softmax_j(q_i.k_j*scale + sum_{l=j+1}^i log f_l) v_j."""
    B, H, T, D = q.shape
    out = torch.zeros_like(v)
    for i in range(T):
        logits = []
        for j in range(i + 1):
            decay = log_f[:, :, j + 1 : i + 1].sum(-1)  # D_ij = sum_{l=j+1}^{i} log f_l, (B, H)
            logits.append((q[:, :, i] * k[:, :, j]).sum(-1) * scale + decay)
        w = torch.softmax(torch.stack(logits, -1), -1)  # (B, H, i+1)
        out[:, :, i] = (w[..., None] * v[:, :, : i + 1]).sum(2)
    return out


def rand_qkvf(B=2, H=3, T=7, D=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, T, D, generator=g, dtype=dtype, requires_grad=True) for _ in range(3))
    log_f = F.logsigmoid(torch.randn(B, H, T, generator=g, dtype=dtype) + 1).requires_grad_()
    return q, k, v, log_f


def test_forgetting_attention_equals_naive_formula_values_and_grads():
    q, k, v, log_f = rand_qkvf()
    fast = forgetting_attention(q, k, v, log_f)
    ref = naive_fox(q, k, v, log_f, 1 / math.sqrt(q.shape[-1]))
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(ref)
    g_fast = torch.autograd.grad((fast * w).sum(), (q, k, v, log_f))
    g_ref = torch.autograd.grad((ref * w).sum(), (q, k, v, log_f))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert g_fast[3].abs().sum() > 0  # the gate does receive a gradient


def test_forgetting_attention_explicit_scale_is_not_applied_to_decay():
    q, k, v, log_f = rand_qkvf(seed=1)
    torch.testing.assert_close(forgetting_attention(q, k, v, log_f, scale=0.3), naive_fox(q, k, v, log_f, 0.3))


def test_forget_gate_one_is_causal_softmax_attention():
    q, k, v, _ = rand_qkvf(seed=2)
    zero = torch.zeros(q.shape[:-1], dtype=q.dtype)
    torch.testing.assert_close(forgetting_attention(q, k, v, zero),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_strong_forgetting_attends_to_self_only():
    q, k, v, _ = rand_qkvf(seed=3)
    very = torch.full(q.shape[:-1], -1e4, dtype=q.dtype)  # f -> 0: D_ij -> -inf for j < i
    torch.testing.assert_close(forgetting_attention(q, k, v, very), v.detach())


def test_forgetting_attention_rejects_bad_shapes():
    q, k, v, log_f = rand_qkvf()
    with pytest.raises(ValueError, match="log_f"):
        forgetting_attention(q, k, v, log_f[..., :-1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_causality(variant):
    torch.manual_seed(0)
    model = LM(LMConfig(variant, 11, 2, 2, 16, 12)).double().eval()
    idx = torch.randint(0, 11, (1, 12))
    alt = idx.clone()
    alt[0, 7] = (idx[0, 7] + 1) % 11
    a, b = model(idx), model(alt)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=0)  # nothing before t changes
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-6  # ... and t itself does


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_decoding_equals_parallel_forward(variant):
    torch.manual_seed(1)
    model = LM(LMConfig(variant, 13, 2, 2, 16, 24)).double().eval()
    for mixer in (b.mixer for b in model.blocks):  # gates away from their init so decay matters
        if mixer.gated:
            torch.nn.init.normal_(mixer.fgate.bias, 1.0, 1.0)
    idx = torch.randint(0, 13, (2, 24))
    full = model(idx)
    cache = model.init_cache()
    steps = torch.stack([model.step(idx[:, t], cache, t) for t in range(24)], 1)
    torch.testing.assert_close(steps, full, rtol=1e-9, atol=1e-9)


def test_cache_memory_linear_for_fox_constant_for_gla():
    sizes = {}
    for variant in ("fox", "gla"):
        model = LM(LMConfig(variant, 5, 2, 2, 8, 4)).eval()
        cache, sizes[variant] = model.init_cache(), []
        with torch.no_grad():
            for t in range(8):
                model.step(torch.tensor([t % 5]), cache, t)
                sizes[variant].append(cache_bytes(cache))
    per_token = 2 * (2 * 8 + 2) * 4  # layers * (k + v + c per head) * 4 bytes
    assert [b - a for a, b in zip(sizes["fox"], sizes["fox"][1:])] == [per_token] * 7
    assert set(sizes["gla"]) == {2 * 2 * 4 * 4 * 4}  # layers * heads * d_head^2 * 4 bytes


def test_absolute_positions_refuse_to_extrapolate():
    model = LM(LMConfig("transformer", 5, 1, 1, 8, 4))
    with pytest.raises(ValueError, match="cannot extrapolate"):
        model(torch.zeros(1, 5, dtype=torch.long))


def test_gla_recurrent_equals_parallel():
    q, k, v, log_f = rand_qkvf(seed=4)
    rec, S = gla_recurrent(q, k, v, log_f)
    torch.testing.assert_close(rec, gla_parallel(q, k, v, log_f))
    # chunked: run the recurrence over two halves, carrying the state
    a, S1 = gla_recurrent(q[:, :, :3], k[:, :, :3], v[:, :, :3], log_f[:, :, :3])
    b, S2 = gla_recurrent(q[:, :, 3:], k[:, :, 3:], v[:, :, 3:], log_f[:, :, 3:], state=S1)
    torch.testing.assert_close(torch.cat([a, b], 2), rec)
    torch.testing.assert_close(S2, S)


def test_forget_gate_overhead_and_init():
    model = LM(LMConfig("fox", 65, 4, 4, 128, 64))
    counts = count_params(model)
    assert counts["forget_gate"] == 4 * (128 * 4 + 4)  # Linear(d_model, n_heads) with bias per layer
    assert counts["total"] == sum(p.numel() for p in LM(LMConfig("transformer_nope", 65, 4, 4, 128, 64)).parameters()) + counts["forget_gate"]
    gate = model.blocks[0].mixer.fgate
    assert torch.all(gate.bias == 0) and 0.015 < gate.weight.std() < 0.025


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_overfits_one_batch(variant):
    torch.manual_seed(0)
    model = LM(LMConfig(variant, 16, 2, 2, 32, 16))
    x = torch.randint(0, 16, (4, 17))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, f"{variant}: loss {loss.item():.3f} after 150 steps on one batch"


# ------------------------------------------------------------------------- data


def test_char_corpus_split_is_contiguous():
    text = "abcdefghij" * 10
    train, val, chars = char_corpus(text, 0.1)
    assert len(train) == 90 and len(val) == 10 and "".join(chars[i] for i in val) == text[90:]
    x, y = windows(torch.from_numpy(train), 8)
    assert x.shape == (11, 8) and torch.equal(x[0, 1:], y[0, :-1])


def test_wikitext_fixture(tmp_path):
    (tmp_path / "wiki.train.tokens").write_text(" \n = Title = \n the cat sat on the Mat . \n The dog <unk> . \n")
    (tmp_path / "wiki.valid.tokens").write_text(" the bird sat . \n")
    train, val, vocab = wikitext_corpus(tmp_path, 5)
    assert vocab == [UNK, EOS, "the", "=", "."]  # 'The' counts as 'the' (3); ties broken by first occurrence
    words = wikitext_words(tmp_path / "wiki.train.tokens")
    assert words[:5] == [EOS, "=", "title", "=", EOS] and words.count(EOS) == 4
    stoi = {w: i for i, w in enumerate(vocab)}
    assert val.tolist() == [stoi["the"], 0, 0, stoi["."], stoi[EOS]]  # bird, sat -> <unk>
    assert len(train) == len(words)


def test_wikitext_missing_train_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="training split"):
        wikitext_corpus(tmp_path, 10)


@pytest.mark.skipif(not WT2_VALID.is_file(), reason="WikiText-2 mirror not present")
def test_wikitext_real_validation_split():
    words = wikitext_words(WT2_VALID)
    assert len(words) == 217646  # the PyTorch word_language_model count (tokens + one <eos> per line)
    assert all(w == w.lower() for w in words[:5000])
