"""`mlpapers translate`: the tokenizer round trip, the same decode as the evaluate stage (beam
search on each sentence alone, Moses detokenised), params defaults, clear errors.
Tiny random checkpoints written in tmp dirs (no trained models needed)."""
import io
import json

import pytest
import torch

from conftest import ROOT
from mlpapers.cli import main
from mlpapers.config import ConfigError
from mlpapers.experiment import Paths
from mlpapers.papers.seq2seq.decoding import beam_search, greedy_decode
from mlpapers.papers.seq2seq.experiments import ModelConfig
from mlpapers.papers.seq2seq.model import EOS, UNK, Seq2Seq
from mlpapers.papers.seq2seq.task import SPECIALS, Vocab
from mlpapers.papers.seq2seq.tokenizer import detokenize, tokenize
from mlpapers.papers.seq2seq.translate import encode, load_translator, translate_text
from mlpapers.train import save_checkpoint

DE = SPECIALS + "ein mann , der lächelt . zwei hunde spielen im schnee fährt fahrrad".split()
EN = SPECIALS + "a man , who smiles . two dogs play in the snow rides bike 's".split()
SENTENCES = ["Ein Mann, der lächelt.", "Zwei Hunde spielen im Schnee.", "Ein Mann fährt Fahrrad."]
MC = ModelConfig(embed=8, hidden=12, attention="general", input_feed=False, dropout=0.0)


def tiny_model() -> Seq2Seq:
    torch.manual_seed(0)
    model = Seq2Seq(len(DE), len(EN), MC.embed, MC.hidden, MC.attention, MC.input_feed, MC.dropout)
    with torch.no_grad():  # larger than the default init: varied, non-empty outputs
        for p in model.parameters():
            p.mul_(4)
        model.decoder.W_s.bias[EOS] -= 2.0
    return model.eval()


@pytest.fixture
def root(tmp_path):
    save_checkpoint(Paths(tmp_path).checkpoint("seq2seq_multi30k", "attn_general", "seed0"), tiny_model(),
                    model_config=MC, seed=0)
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    (tmp_path / "data" / "prepared" / "seq2seq_multi30k.json").write_text(
        json.dumps({"src_vocab": DE, "tgt_vocab": EN, "splits": {}, "unk_rate": {}}))
    return tmp_path


def reference(model, sentence: str, beam: int, alpha: float, max_len: int) -> str:
    """One sentence alone through the decoders of decoding.py, as the evaluate stage scores it."""
    ids = Vocab(DE).encode(tokenize(sentence, "de"))
    src, src_len = torch.tensor([ids]), torch.tensor([len(ids)])
    ys = beam_search(model, src, src_len, max_len, beam, alpha) if beam > 1 else greedy_decode(model, src, src_len, max_len)[0]
    row = ys[0].tolist()
    return detokenize(Vocab(EN).decode(row[: row.index(EOS)] if EOS in row else row))


def test_tokenizer_round_trip_and_unknown_words():
    vde = Vocab(DE)
    toks = tokenize("Ein Mann, der lächelt.", "de")
    assert toks == ["ein", "mann", ",", "der", "lächelt", "."]
    ids = encode(["Ein Mann, der lächelt."], vde)[0]
    assert UNK not in ids and vde.decode(ids) == toks
    assert detokenize(["a", "man", ",", "who", "smiles", "."]) == "a man, who smiles."
    assert encode(["Ein Hund lächelt."], vde)[0][1] == UNK  # as in evaluation
    with pytest.raises(ConfigError, match="'hund'"):
        encode(["Ein Hund lächelt."], vde, strict=True)


@pytest.mark.parametrize("beam", [1, 3])
def test_translate_equals_the_evaluate_decode_sentence_by_sentence(root, beam):
    model, vde, ven = load_translator(Paths(root), "attn_general", 0)
    out = translate_text(model, vde, ven, SENTENCES, beam=beam, alpha=1.0, max_len=12)
    ref = tiny_model()
    assert out == [reference(ref, s, beam, 1.0, 12) for s in SENTENCES]
    assert all(o.strip() for o in out)  # the tiny model says something


def test_cli_uses_params_decode_reads_stdin_and_explains_missing_files(root, capsys, monkeypatch):
    params = ROOT / "params.yaml"  # seq2seq_multi30k.data: beam, alpha, max_decode_len of the evaluate stage
    args = ["translate", "--root", str(root), "--params", str(params)]
    assert main([*args, *SENTENCES[:2]]) == 0
    printed = capsys.readouterr().out.splitlines()
    from mlpapers.experiment import get_experiment, load_config

    d = load_config(get_experiment("seq2seq_multi30k"), params).data
    assert printed == [reference(tiny_model(), s, d.beam, d.alpha, d.max_decode_len) for s in SENTENCES[:2]]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(SENTENCES[:2]) + "\n\n"))
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == printed
    assert main([*args, "--model", "baseline", "Ein Mann."]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found (found: attn_general/seed0)" in err and "dvc pull seq2seq_multi30k_train" in err
    assert main([*args, "--strict", "Ein Hund."]) == 2
    assert "'hund'" in capsys.readouterr().err
