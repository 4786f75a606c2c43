"""FoX: forgetting attention against the formula (alone and inside the model's mixer),
decoding against the parallel forward, GLA's two forms against each other, the gate
analysis against hand-computed values, the claims table's verdicts on synthetic metrics,
WikiText-2 tokenisation, and learnability."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mlpapers.papers.fox.analysis import (ablation_losses, attention_distance, constant_log_f, gate_stats,
                                          gate_values, gates_by_token)
from mlpapers.papers.fox.attention import (forgetting_attention, forgetting_attention_naive, gla_parallel,
                                           gla_recurrent)
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


# ------------------------------------------------ the gate inside the model (mutant: log f = 0)


def gated_fox(seed=0, T=12, V=11):
    torch.manual_seed(seed)
    model = LM(LMConfig("fox", V, 2, 2, 16, T)).double().eval()
    for b in model.blocks:  # gates far from their init and different per head: decay matters
        torch.nn.init.normal_(b.mixer.fgate.weight, 0.0, 0.5)
        torch.nn.init.normal_(b.mixer.fgate.bias, 0.5, 1.5)
    return model


def test_fox_mixer_equals_naive_formula_with_its_own_gate():
    """The model's mixer = the paper's equation computed by hand from its own weights:
    f_t = sigmoid(w_f^T x_t + b_f), o_i = sum_j softmax_j(q_i.k_j/sqrt(d) + sum_{l=j+1}^i log f_l) v_j."""
    model = gated_fox()
    mixer = model.blocks[0].mixer
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    B, T, C = x.shape
    q, k, v = (t.view(B, T, 2, 8).transpose(1, 2) for t in (x @ mixer.qkv.weight.T).split(C, -1))
    f = torch.sigmoid(x @ mixer.fgate.weight.T + mixer.fgate.bias).transpose(1, 2)  # (B, H, T)
    assert f.min() < 0.5 < f.max()  # non-trivial gates
    o = naive_fox(q, k, v, f.log(), 8 ** -0.5)
    ref = mixer.proj(o.transpose(1, 2).reshape(B, T, C))
    torch.testing.assert_close(mixer(x, None), ref, rtol=1e-10, atol=1e-12)


def test_fox_output_depends_on_its_gate_and_f_one_is_nope():
    model = gated_fox(1)
    idx = torch.randint(0, 11, (2, 12))
    with torch.no_grad():
        out = model(idx)
        nope = LM(LMConfig("transformer_nope", 11, 2, 2, 16, 12)).double().eval()
        nope.load_state_dict({k: v for k, v in model.state_dict().items() if ".fgate." not in k})
        for b in model.blocks:
            b.mixer.log_f_override = torch.zeros(2)  # f = 1
        torch.testing.assert_close(model(idx), nope(idx), rtol=1e-12, atol=1e-12)  # limiting case
        assert (model(idx) - out).abs().max() > 1e-3  # ... and the trained gate did change the output


def test_fast_forgetting_attention_equals_full_decay_matrix_in_float32_at_training_shape():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(12, 4, 64, 32, generator=g) for _ in range(3))
    log_f = F.logsigmoid(3 * torch.randn(12, 4, 64, generator=g))
    torch.testing.assert_close(forgetting_attention(q, k, v, log_f), forgetting_attention_naive(q, k, v, log_f),
                               rtol=1e-5, atol=1e-5)


def test_rope_base_is_used():
    torch.manual_seed(0)
    a = LM(LMConfig("transformer_rope", 11, 1, 2, 16, 12, rope_base=10000.0)).eval()
    b = LM(LMConfig("transformer_rope", 11, 1, 2, 16, 12, rope_base=500000.0)).eval()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(0, 11, (1, 12))
    with torch.no_grad():
        assert (a(idx) - b(idx)).abs().max() > 1e-6


# ------------------------------------------------------------------ gate analysis


def test_gate_values_are_the_sigmoid_of_the_first_layer_gate():
    """Layer 0's gate sees only the current token: f = sigmoid(w_f^T LN(e_x) + b_f), by hand."""
    model = gated_fox(2).float()
    idx = torch.randint(0, 11, (3, 12))
    f = gate_values(model, idx)  # (n_layer, n_head, 36)
    blk = model.blocks[0]
    with torch.no_grad():
        ref = torch.sigmoid(blk.mixer.fgate(blk.ln1(model.wte(idx))))  # (3, 12, H)
    torch.testing.assert_close(f[0].float(), ref.permute(2, 0, 1).flatten(1), rtol=1e-5, atol=1e-6)
    assert f.shape == (2, 2, 36)


def test_gate_stats_hand_computed():
    f = torch.tensor([[[0.05, 0.5, 0.95, 0.95, 0.2]]], dtype=torch.float64)  # 1 layer, 1 head, 5 tokens
    (row,) = gate_stats(f)
    assert row["mean_gate"] == pytest.approx(0.53)
    assert row["frac_above_0.9"] == pytest.approx(0.4) and row["frac_below_0.1"] == pytest.approx(0.2)
    assert row["q50"] == pytest.approx(0.5) and row["q25"] == pytest.approx(0.2) and row["q75"] == pytest.approx(0.95)


def test_gates_by_token_hand_computed():
    f = torch.tensor([[[0.2, 0.8, 0.4, 0.6]]], dtype=torch.float64)
    rows, r2 = gates_by_token(f, torch.tensor([0, 1, 0, 1]), vocab_size=3)
    assert [(r["token"], r["count"]) for r in rows] == [(0, 2), (1, 2)]  # token 2 never occurs
    assert [r["mean_gate"] for r in rows] == pytest.approx([0.3, 0.7])
    assert r2 == pytest.approx([0.8])  # between 0.16 / total 0.20


def test_attention_distance_limits():
    T = 9
    nope = LM(LMConfig("transformer_nope", 7, 1, 1, 8, T))
    with torch.no_grad():
        nope.blocks[0].mixer.qkv.weight[:8] = 0  # q = 0: uniform attention over j <= i
    (row,) = attention_distance(nope, torch.randint(0, 7, (2, T)))
    assert row["mean_distance"] == pytest.approx((T - 1) / 4)  # mean_i of i/2
    fox = LM(LMConfig("fox", 7, 1, 1, 8, T))
    with torch.no_grad():
        fox.blocks[0].mixer.fgate.bias.fill_(-40.0)  # f -> 0: attends to itself only
    (row,) = attention_distance(fox, torch.randint(0, 7, (2, T)))
    assert row["mean_distance"] == pytest.approx(0.0, abs=1e-9)


def test_constant_gate_is_the_geometric_mean():
    f = torch.tensor([[[0.01, 1.0], [0.5, 0.5]]], dtype=torch.float64)  # 1 layer, 2 heads, 2 tokens
    torch.testing.assert_close(constant_log_f(f), torch.tensor([[math.log(0.1), math.log(0.5)]], dtype=torch.float64))


def test_ablation_constant_gate_keeps_the_mean_log_gate_and_restores_the_model():
    model = gated_fox(3).float()
    x = torch.randint(0, 11, (4, 12))
    y = torch.randint(0, 11, (4, 12))
    f = gate_values(model, x)
    out = ablation_losses(model, x, y, f, torch.device("cpu"))
    assert len({round(v, 6) for v in out.values()}) == 3  # three different models
    assert all(b.mixer.log_f_override is None for b in model.blocks)
    # a model whose gates are already constant per head is unchanged by the constant ablation
    for b in model.blocks:
        torch.nn.init.zeros_(b.mixer.fgate.weight)
    out = ablation_losses(model, x, y, gate_values(model, x), torch.device("cpu"))
    assert out["constant"] == pytest.approx(out["trained"], rel=1e-5)


# ------------------------------------------------------ claims table on synthetic metrics


def synthetic_metrics(fox_ppl, ref_ppl, ratios=(1.0, 1.01, 0.99, 1.02), loss=(1.885, 1.887, 1.884), ref_config=True):
    from mlpapers import stats

    s = lambda v: stats.summarize(v)  # noqa: E731
    g = lambda a, b: stats.summarize([100 * (y - x) / y for x, y in zip(a, b)])  # noqa: E731
    params = {"total": 1000, "forget_gate": 5, "forget_gate_pct": 0.5}
    variants = {v: {"params": params, "val_loss": s(loss), "val_ppl": s(p)}
                for v, p in (("transformer", ref_ppl), ("transformer_rope", ref_ppl), ("transformer_nope", ref_ppl),
                             ("fox", fox_ppl))}
    change = s([-1.0, -1.2, -0.9])
    return {"setup": {"context": 64, "corpus": "tinyshakespeare", "steps": 2000, "batch_size": 12},
            "variants": variants, "nanogpt": {"estimate_se": 0.01, "reference_config": ref_config},
            "comparisons": {"fox_vs_transformer": g(fox_ppl, ref_ppl), "fox_vs_transformer_rope": g(fox_ppl, ref_ppl),
                            "fox_vs_transformer_nope": g(fox_ppl, ref_ppl), "rope_seed_std_pct": 1.0},
            "extrapolation": {"fox": {"16x": {"change_beyond_L_vs_L_pct": change, "windows": 100}}},
            "decode": {"fox": {"tokens": 8, "cache_bytes": {"1": 10, "4": 40, "8": 80},
                               "max_abs_diff_fp64": s([1e-14] * 3), "rel_diff_fp64": s([1e-15, 2e-15, 1e-15]),
                               "max_abs_diff_fp32": s([1e-4] * 3), "max_abs_logit": s([10.0] * 3)}},
            "gates": {"fox": {"trained_vs_constant": g(fox_ppl, [p * 1.2 for p in fox_ppl]),
                              "trained_vs_none": g(fox_ppl, [p * 3 for p in fox_ppl]), "r2_token": s([0.5, 0.6, 0.55])}},
            "throughput": {"fox_over_rope": stats.ratio(list(ratios), [1.0] * len(ratios)), "rounds": len(ratios),
                           "precision": "fp32", "threads": 1}}


def claim_rows(m):
    from mlpapers.papers.fox.report import claims_table

    return {line.split(" | ")[0].lstrip("| "): line.split(" | ")[-1].rstrip(" |") for line in claims_table(m).splitlines()
            if line.startswith("| ") and not line.startswith("| Claim")}


def row(rows, start):
    (v,) = [r for k, r in rows.items() if k.startswith(start)]
    return v


def test_claims_verdicts_on_synthetic_metrics():
    better = claim_rows(synthetic_metrics([5.0, 5.1, 4.9], [5.5, 5.6, 5.4]))
    assert row(better, "Perplexity").startswith("direction (> 0): **holds**; size (> 9.9%): **does not hold**")
    assert row(better, "No positional") == "**holds**"
    assert row(better, "The forget gate helps") == "**holds**"
    assert row(better, "Our `transformer`") == "**holds**"  # 1.885 within 1.96 * 0.01 of 1.88
    assert row(better, "Small parameter") == "**holds**"
    assert row(better, "16x length") == "**holds**"
    assert row(better, "FoX (Recurrent)").startswith("fox: **does not hold**")
    assert row(better, "FoX decodes") == "**holds**"
    assert row(better, "Meaningful") == "**holds**"
    assert row(better, "FoX trains") == "**holds**"  # ratios ~1.0 > 0.95
    worse = claim_rows(synthetic_metrics([6.0, 6.1, 5.9], [5.5, 5.6, 5.45], ratios=(0.90, 0.91, 0.89, 0.9),
                                         loss=(1.95, 1.96, 1.94)))
    assert row(worse, "Perplexity").startswith("direction (> 0): **does not hold**")
    assert row(worse, "No positional") == "**does not hold**"  # -9% < -1% noise
    assert row(worse, "Our `transformer`") == "**does not hold**"
    assert row(worse, "FoX trains") == "**does not hold**"
    noisy = claim_rows(synthetic_metrics([5.0, 6.0, 5.2], [5.5, 5.3, 5.6], ratios=(0.8, 1.2, 0.9, 1.1), ref_config=False))
    assert row(noisy, "Perplexity").startswith("direction (> 0): **inconclusive**")
    assert row(noisy, "FoX trains") == "**inconclusive**"
    assert row(noisy, "Our `transformer`").startswith("not tested")
