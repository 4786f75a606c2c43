"""Seq2Seq tests that fail when the code is wrong: padding in the loss, the decoder's initial
state, a known alignment learned by attention, beam search, alignment diagnostics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mlpapers.papers.seq2seq.alignment import alignment_stats
from mlpapers.papers.seq2seq.decoding import beam_search, greedy_decode, sequence_logprob
from mlpapers.papers.seq2seq.model import EOS, PAD, Seq2Seq
from mlpapers.papers.seq2seq.task import make_batch, seq2seq_loss

torch.set_num_threads(1)


def _pairs():
    src = [[4, 5, 6, 7, 8], [7, 8], [9, 4, 5]]
    tgt = [[5, 6, 7, 8], [9], [4, 4, 6, 9, 10, 11]]
    return src, tgt


@pytest.mark.parametrize("attention", ["general", "none"])
def test_loss_counts_real_target_tokens_only(attention):
    """Batch loss (summed) == sum of each pair's loss computed alone (no padding anywhere)."""
    torch.manual_seed(0)
    model = Seq2Seq(12, 12, 6, 8, attention, False, 0.0).eval()
    src, tgt = _pairs()
    total = seq2seq_loss(model, make_batch(src, tgt), reduction="sum")
    alone = sum(seq2seq_loss(model, make_batch([x], [y]), reduction="sum") for x, y in zip(src, tgt))
    assert torch.allclose(total, alone, atol=1e-4)
    n = sum(len(y) + 1 for y in tgt)  # + <eos>
    assert torch.allclose(seq2seq_loss(model, make_batch(src, tgt)), total / n, atol=1e-6)


def test_decoder_starts_from_forward_and_backward_final_states():
    """h_0 = tanh(W [->h_S; <-h_1]), c_0 = W' [->c_S; <-c_1], against a step-by-step reference LSTM."""
    torch.manual_seed(0)
    model = Seq2Seq(12, 12, 6, 8, "general", False, 0.0).eval()
    enc = model.encoder
    src, lens, _, _ = make_batch([[4, 5, 6, 7], [8, 9]], [[4], [4]])
    _, (h0, c0) = enc(src, lens)
    rnn = enc.rnn
    for b in range(2):
        x = enc.embed(src[b, : lens[b]])  # (S, E), no padding

        def run(seq, sfx):
            h, c = torch.zeros(8), torch.zeros(8)
            for x_t in seq:  # LSTM cell equations, PyTorch gate order i, f, g, o
                z = getattr(rnn, f"weight_ih_l0{sfx}") @ x_t + getattr(rnn, f"bias_ih_l0{sfx}") \
                    + getattr(rnn, f"weight_hh_l0{sfx}") @ h + getattr(rnn, f"bias_hh_l0{sfx}")
                i, f, g, o = z.chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            return h, c

        hf, cf = run(x, "")  # forward direction, ends at the last real token
        hb, cb = run(x.flip(0), "_reverse")  # backward direction, ends at the first token
        ref_h = torch.tanh(enc.init_h(torch.cat([hf, hb])))
        ref_c = enc.init_c(torch.cat([cf, cb]))
        assert torch.allclose(h0[0, b], ref_h, atol=1e-5) and torch.allclose(c0[0, b], ref_c, atol=1e-5)


def test_attention_learns_a_fixed_permutation():
    """Synthetic task with a known alignment: y_t = x_{perm[t]}. After a short training the
    attention argmax at target step t must sit on source position perm[t] (and the output be right)."""
    torch.manual_seed(0)
    perm = [3, 0, 5, 1, 4, 2]
    g = torch.Generator().manual_seed(0)
    model = Seq2Seq(14, 14, 16, 32, "general", False, 0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(250):
        x = torch.randint(4, 14, (32, 6), generator=g).tolist()
        loss = seq2seq_loss(model, make_batch(x, [[s[p] for p in perm] for s in x]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.randint(4, 14, (100, 6), generator=torch.Generator().manual_seed(1)).tolist()
    y = [[s[p] for p in perm] for s in x]
    ys, a = greedy_decode(model, *make_batch(x, y)[:2], max_len=8)
    assert np.mean([r[:6] == t for r, t in zip(ys.tolist(), y)]) > 0.9
    hit = (a[:, :6].argmax(-1) == torch.tensor(perm)).float().mean()  # (B, 6) argmax vs perm[t]
    assert hit > 0.9, f"attention argmax on the aligned source token only {hit:.2f} of the time"


@pytest.mark.parametrize("attention,feed", [("general", False), ("dot", True), ("none", False)])
def test_beam_one_equals_greedy(attention, feed):
    torch.manual_seed(1)
    model = Seq2Seq(12, 12, 6, 8, attention, feed, 0.0).eval()
    src, lens, _, _ = make_batch(*_pairs())
    greedy, _ = greedy_decode(model, src, lens, max_len=9)
    assert torch.equal(beam_search(model, src, lens, max_len=9, beam=1), greedy)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_scores_at_least_greedy_and_is_batch_invariant(seed):
    torch.manual_seed(seed)
    model = Seq2Seq(12, 12, 6, 8, "general", False, 0.0).eval()
    src, lens, _, _ = make_batch(*_pairs())
    greedy, _ = greedy_decode(model, src, lens, max_len=9)
    beam = beam_search(model, src, lens, max_len=9, beam=5, alpha=0.0)  # raw log-probability
    assert (sequence_logprob(model, src, lens, beam) >= sequence_logprob(model, src, lens, greedy) - 1e-5).all()
    for b in range(3):  # each sentence alone gives the same hypothesis
        alone = beam_search(model, src[b : b + 1, : lens[b]], lens[b : b + 1], max_len=9, beam=5, alpha=0.0)
        row, ref = alone[0].tolist(), beam[b].tolist()
        cut = lambda r: r[: r.index(EOS) + 1] if EOS in r else r  # noqa: E731
        assert cut(row) == cut(ref)
    assert all(t == PAD for r in beam.tolist() if EOS in r for t in r[r.index(EOS) + 1:])


def test_alignment_stats_see_both_collapses():
    diag = [np.eye(5)]  # perfect monotone alignment
    s = alignment_stats(diag)
    assert s["argmax_corr"] == pytest.approx(1.0) and s["first"] == pytest.approx(0.2)
    assert s["entropy"] == pytest.approx(0.0, abs=1e-9) and s["uniform_entropy"] == pytest.approx(np.log(5))
    first = np.zeros((4, 6))
    first[:, 0] = 1
    last = np.zeros((4, 6))
    last[:, -1] = 1
    assert alignment_stats([first])["first"] == 1 and alignment_stats([first])["argmax_corr"] == 0
    assert alignment_stats([last])["last"] == 1 and alignment_stats([last])["argmax_corr"] == 0
    uni = np.full((3, 4), 0.25)
    assert alignment_stats([uni])["entropy"] == pytest.approx(np.log(4))


def _naive_beam(model, src, src_len, max_len, K, alpha):
    """Reference beam search for one sentence: every hypothesis rescored from scratch."""
    beams = [([], 0.0, False)]  # (tokens, log p, finished)
    for _ in range(max_len):
        cands = []
        for ys, sc, done in beams:
            if done:
                cands.append((ys + [PAD], sc, True))
                continue
            logits, _ = model(src, src_len, torch.tensor([[2] + ys]))  # <bos> y_<t
            logp = torch.log_softmax(logits[0, -1], -1).tolist()
            cands += [(ys + [v], sc + lp, v == EOS) for v, lp in enumerate(logp)]
        beams = sorted(cands, key=lambda c: -c[1])[:K]
        if all(d for _, _, d in beams):
            break
    length = lambda ys: ys.index(EOS) + 1 if EOS in ys else len(ys)  # noqa: E731
    best = max(beams, key=lambda c: c[1] / length(c[0]) ** alpha)[0]
    return best[: length(best)]


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_beam_search_equals_naive_reference(seed):
    torch.manual_seed(seed)
    model = Seq2Seq(12, 12, 6, 8, "general", True, 0.0).eval()
    src, lens, _, _ = make_batch(*_pairs())
    with torch.no_grad():
        torch.nn.init.normal_(model.decoder.W_s.weight, std=0.5)  # peaky enough for beams to reorder
        beam = beam_search(model, src, lens, max_len=6, beam=3, alpha=1.0).tolist()
        for b in range(3):
            ref = _naive_beam(model, src[b : b + 1, : lens[b]], lens[b : b + 1], 6, 3, 1.0)
            got = beam[b][: beam[b].index(EOS) + 1] if EOS in beam[b] else beam[b]
            assert got == ref


def _multi30k_metrics(gain: list[float], corr: list[float], first: list[float]) -> dict:
    """A metrics file shaped like evaluate_multi30k's, from synthetic per-seed numbers."""
    from mlpapers import stats
    from mlpapers.papers.seq2seq.experiments import paired_all, summaries

    base = {"bleu_test_2016_flickr": [10.0, 11.0, 12.0], "bleu_greedy_test_2016_flickr": [9.0, 10.0, 11.0],
            "bleu_test_2017_flickr": [9.0, 9.5, 10.0], "bleu_test_2017_mscoco": [7.0, 7.5, 8.0],
            "val_loss": [3.0, 3.1, 3.2], "bleu_by_length": {"1-10": [12.0, 13.0, 14.0], "11+": [8.0, 9.0, 10.0]}}
    att = {k: [x + g for x, g in zip(v, gain)] if isinstance(v, list) else {b: [x + g for x, g in zip(w, gain)]
                                                                           for b, w in v.items()}
           for k, v in base.items()}
    att["alignment"] = {"argmax_corr": corr, "first": first, "last": [0.1, 0.1, 0.1], "entropy": [1.0, 1.1, 1.2],
                        "uniform_entropy": [2.5, 2.5, 2.5]}
    m = {"sacrebleu_signature": "sig", "decode": {"beam": 5, "alpha": 1.0},
         "unk_rate": {"test_2016_flickr": {"de": 0.06, "en": 0.03}}, "bucket_sizes": {"1-10": 5, "11+": 5},
         "attn_general": summaries(att), "baseline": summaries(base)}
    m["attn_general"]["alignment"]["entropy_minus_uniform"] = stats.paired([1.0, 1.1, 1.2], [2.5, 2.5, 2.5])
    diff = paired_all({k: v for k, v in att.items() if k != "alignment"}, base)
    diff["gain_long_minus_short"] = stats.paired([0.0, 0.1, -0.1], [0.0, 0.0, 0.0])
    m["attn_general_minus_baseline"] = diff
    return m


def test_multi30k_claims_table_verdicts(tmp_path):
    from mlpapers.experiment import Paths
    from mlpapers.papers.seq2seq import report
    from mlpapers.utils import write_json

    import shutil

    from conftest import ROOT

    paths = Paths(tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # the caption reads steps, batch and width
    write_json(paths.results / "seq2seq_multi30k.json", _multi30k_metrics([6.0, 6.5, 7.0], [0.8, 0.85, 0.9],
                                                                         [0.1, 0.12, 0.11]))
    md = report.multi30k_markdown(paths)
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    beats = next(v for k, v in rows.items() if "beats no attention" in k)
    assert beats.endswith("**holds** |")
    assert next(v for k, v in rows.items() if "+5 BLEU" in k).endswith("**holds** |")
    assert next(v for k, v in rows.items() if "long sources" in k).endswith("**inconclusive** |")
    assert "**holds** (all four parts must hold)" in md
    # collapse onto the first token: the alignment claim must not hold
    write_json(paths.results / "seq2seq_multi30k.json", _multi30k_metrics([-1.0, -0.5, -0.8], [0.0, 0.01, -0.01],
                                                                         [0.8, 0.79, 0.82]))
    md = report.multi30k_markdown(paths)
    assert "**does not hold** (all four parts must hold)" in md
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    assert next(v for k, v in rows.items() if "beats no attention" in k).endswith("**does not hold** |")
