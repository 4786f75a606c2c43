"""Seq2Seq with Luong attention: masking, score functions, fast path, decoding, overfitting, tokenizer."""
from __future__ import annotations

import pytest
import torch

from mlpapers.papers.seq2seq.decoding import greedy_decode
from mlpapers.papers.seq2seq.model import EOS, PAD, GlobalAttention, Seq2Seq
from mlpapers.papers.seq2seq.task import Vocab, make_batch, reversal_accuracy, seq2seq_loss
from mlpapers.papers.seq2seq.tokenizer import detokenize, tokenize

torch.set_num_threads(1)


def _batch(B=3, S=7, H=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    h_t = torch.randn(B, 5, H, generator=g)
    h_s = torch.randn(B, S, H, generator=g)
    lens = torch.tensor([S, 4, 1])[:B]
    mask = torch.arange(S)[None, :] < lens[:, None]
    return h_t, h_s, mask


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_attention_sums_to_one_and_is_zero_on_padding(score):
    torch.manual_seed(0)
    h_t, h_s, mask = _batch()
    c, a = GlobalAttention(score, 8)(h_t, h_s, mask)
    assert torch.allclose(a.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert (a.masked_select(~mask[:, None, :].expand_as(a)) == 0).all()  # exactly zero, not ~1e-9
    assert (a.masked_select(mask[:, None, :].expand_as(a)) > 0).all()
    # padding content cannot leak into the context vector
    h_s2 = h_s.masked_fill(~mask[:, :, None], 1e3)
    att = GlobalAttention(score, 8)
    assert torch.allclose(att(h_t, h_s, mask)[0], att(h_t, h_s2, mask)[0], atol=1e-5)


def test_dot_score_equals_manual_bmm():
    h_t, h_s, mask = _batch()
    att = GlobalAttention("dot", 8)
    e = att.score(h_t, h_s)
    manual = torch.stack([torch.stack([torch.stack([h_t[b, t] @ h_s[b, s] for s in range(7)]) for t in range(5)])
                          for b in range(3)])
    assert torch.allclose(e, manual, atol=1e-5)
    assert torch.allclose(e, torch.bmm(h_t, h_s.transpose(1, 2)), atol=1e-6)


@pytest.mark.parametrize("score", ["general", "concat"])
def test_general_and_concat_scores_match_their_equations(score):
    torch.manual_seed(0)
    h_t, h_s, _ = _batch()
    att = GlobalAttention(score, 8)
    e = att.score(h_t, h_s)
    b, t, s = 1, 2, 3
    if score == "general":
        ref = h_t[b, t] @ att.W_a.weight @ h_s[b, s]  # h_tᵀ W_a h̄_s
    else:
        ref = att.v_a.weight[0] @ torch.tanh(att.W_a.weight @ torch.cat([h_t[b, t], h_s[b, s]]))
    assert torch.allclose(e[b, t, s], ref, atol=1e-5)


def _pairs():
    src = [[4, 5, 6], [7, 8], [9, 4, 5, 6, 7]]
    tgt = [[5, 6, 7, 8], [9], [4, 4, 6]]
    return src, tgt


@pytest.mark.parametrize("attention", ["dot", "general", "concat", "none"])
def test_fast_path_equals_step_by_step_decoder(attention):
    """Teacher forcing as one LSTM call + batched attention == the per-step loop used in decoding."""
    torch.manual_seed(0)
    model = Seq2Seq(12, 12, 6, 8, attention, False, 0.0).eval()
    src, src_len, tgt_in, _ = make_batch(*_pairs())
    fast, a_fast = model(src, src_len, tgt_in)
    memory, state = model.encoder(src, src_len)
    h_tilde, steps, weights = None, [], []
    for t in range(tgt_in.size(1)):
        lg, state, h_tilde, a = model.decoder.step(tgt_in[:, t], state, h_tilde, memory, src != PAD)
        steps.append(lg)
        weights.append(a)
    assert torch.allclose(fast, torch.stack(steps, 1), atol=1e-5)
    if attention != "none":
        assert torch.allclose(a_fast, torch.stack(weights, 1), atol=1e-6)


def test_encoder_final_state_ignores_padding():
    """Packed encoder: a sentence's states do not depend on how much padding its batch has."""
    torch.manual_seed(0)
    model = Seq2Seq(12, 12, 6, 8, "general", False, 0.0).eval()
    src, lens, _, _ = make_batch([[4, 5, 6]], [[4]])
    src_padded = torch.cat([src, torch.full((1, 4), PAD)], 1)
    m1, (h1, c1) = model.encoder(src, lens)
    m2, (h2, c2) = model.encoder(src_padded, lens)
    assert torch.allclose(h1, h2, atol=1e-6) and torch.allclose(m1, m2[:, :3], atol=1e-6)


def test_greedy_stops_at_eos_and_respects_max_len():
    torch.manual_seed(0)
    model = Seq2Seq(12, 12, 6, 8, "dot", True, 0.0).eval()
    src, lens, _, _ = make_batch(*_pairs())
    ys, a = greedy_decode(model, src, lens, max_len=9)
    assert ys.shape[1] <= 9 and a.shape[:2] == ys.shape and a.shape[2] == src.shape[1]
    for row in ys.tolist():  # after a sentence's <eos> only <pad>
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])
    with torch.no_grad():  # rig the output layer to always say <eos>: decoding ends after one step
        model.decoder.W_s.bias.fill_(0).index_fill_(0, torch.tensor([EOS]), 1e4)
    ys, _ = greedy_decode(model, src, lens, max_len=9)
    assert ys.tolist() == [[EOS]] * 3
    with torch.no_grad():  # ... and never <eos>: decoding runs to max_len exactly
        model.decoder.W_s.bias.index_fill_(0, torch.tensor([EOS]), -1e4).index_fill_(0, torch.tensor([5]), 1e4)
    ys, _ = greedy_decode(model, src, lens, max_len=9)
    assert ys.shape == (3, 9) and (ys == 5).all()


@pytest.mark.parametrize("attention,input_feed", [("general", False), ("concat", True), ("none", False)])
def test_overfits_a_handful_of_pairs(attention, input_feed):
    torch.manual_seed(0)
    src, tgt = _pairs()
    model = Seq2Seq(12, 12, 16, 32, attention, input_feed, 0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = make_batch(src, tgt)
    for _ in range(150):
        loss = seq2seq_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02
    ys, _ = greedy_decode(model.eval(), batch[0], batch[1], max_len=10)
    hyps = [row[: row.index(EOS)] if EOS in row else row for row in ys.tolist()]
    assert hyps == tgt


def test_moses_tokenizer_and_vocab():
    assert tokenize("Ein Mann, der lächelt.", "de") == ["ein", "mann", ",", "der", "lächelt", "."]
    assert tokenize("A man's \"big\" hat & co.", "en") == ["a", "man", "'s", '"', "big", '"', "hat", "&", "co", "."]
    assert detokenize(["a", "man", "'s", '"', "big", '"', "hat", ",", "isn", "'t", "it", "?"]) == \
        "a man's \"big\" hat, isn't it?"
    assert detokenize(["a", "<unk>", "dog", "<unk>", "."]) == "a <unk> dog <unk>."  # <unk> not glued to a word
    v = Vocab.build([["a", "b"], ["a", "c"]], min_freq=2)
    assert v.itos[4:] == ["a"] and v.encode(["a", "b"]) == [4, 1]
    assert v.decode([4, 1, EOS, 4]) == ["a", "<unk>"]


def test_reversal_accuracy():
    exact, tok = reversal_accuracy([[1, 2, 3], [1, 2]], [[1, 2, 3], [1, 3, 3]])
    assert exact == 0.5 and tok == pytest.approx((1 + 1 / 3) / 2)
