"""Dropout module statistics, eval identity, max-norm, and the MLP."""
import pytest
import torch

from mlpapers.papers.dropout.model import MLP, Dropout, max_norm_
from mlpapers.papers.dropout.task import ClassifierTask, accuracy, read_idx, two_moons


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_zeroes_fraction_p_and_scales_survivors(p):
    x = torch.ones(400_000)
    y = Dropout(p).train()(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.005  # Bernoulli(1 - p) keep mask
    survivors = y[y != 0]
    assert torch.allclose(survivors, torch.full_like(survivors, 1 / (1 - p)))  # inverted scaling
    assert abs(y.mean().item() - 1.0) < 0.01  # E[y] = x


def test_dropout_is_identity_in_eval_and_at_p0():
    x = torch.randn(64, 32)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_dropout_masks_differ_between_calls_and_gradient_follows_mask():
    d = Dropout(0.5).train()
    x = torch.ones(1000, requires_grad=True)
    y = d(x)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # dy/dx = r / (1 - p)
    assert not torch.equal(d(torch.ones(1000)), d(torch.ones(1000)))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_p_outside_unit_interval(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(p)


def test_max_norm_projects_only_rows_above_c():
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]]))  # norms 5 and 0.5
    max_norm_(lin, 2.0)
    norms = lin.weight.norm(dim=1)
    assert torch.allclose(norms, torch.tensor([2.0, 0.5]))
    assert torch.allclose(lin.weight[0], torch.tensor([1.2, 1.6, 0.0]))  # direction kept


def test_at_bound_counts_hidden_units_at_c_against_naive_loop():
    from mlpapers.papers.dropout.common import at_bound
    torch.manual_seed(0)
    m = MLP(6, 4, 2, 3, p_input=0.0, p_hidden=0.0)
    with torch.no_grad():
        m.hidden[0].weight.mul_(10.0)  # layer 0 far above c, layer 1 and the output layer untouched
        m.out.weight.mul_(100.0)  # output units are not hidden units: must not count
    c = 1.0
    m.apply_max_norm(c)  # every layer-0 row now sits at ||w|| = c
    rows = [w for lin in m.hidden for w in lin.weight]
    naive = sum(float(w.norm()) >= 0.999 * c for w in rows) / len(rows)
    assert at_bound(m, c) == pytest.approx(naive)
    assert at_bound(m, c) >= 0.5  # the 4 projected layer-0 units of 8
    assert at_bound(m, 1e6) == 0.0


def test_mlp_uses_dropout_only_in_training():
    m = MLP(10, 16, 2, 3, p_input=0.2, p_hidden=0.5)
    x = torch.randn(8, 10)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    assert not torch.equal(m(x), m(x))


def test_classifier_task_epochs_visit_every_example_once():
    x = torch.arange(10).float().unsqueeze(1)
    task = ClassifierTask(MLP(1, 4, 1, 2, 0, 0), x, torch.zeros(10, dtype=torch.long), 4, 0.0, {})
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([task.train_batch(i, g)[0] for i in range(5)]).squeeze(1)  # 5 batches of 4 = 2 epochs
    first_epoch = seen[:8]
    assert len(set(first_epoch.tolist())) == 8  # no repeats within an epoch


def test_two_moons_is_balanced_and_seeded():
    import numpy as np

    x1, y1 = two_moons(101, 0.1, np.random.default_rng(3))
    x2, y2 = two_moons(101, 0.1, np.random.default_rng(3))
    assert x1.shape == (101, 2) and abs(int(y1.sum()) - 50) <= 1
    assert (x1 == x2).all() and (y1 == y2).all()


def test_read_idx_roundtrip_and_truncation(tmp_path):
    import gzip

    arr = torch.randint(0, 255, (3, 4, 5), dtype=torch.uint8).numpy()
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in arr.shape)
    p = tmp_path / "x.idx.gz"
    p.write_bytes(gzip.compress(header + arr.tobytes()))
    assert (read_idx(p) == arr).all()
    p.write_bytes(gzip.compress(header + arr.tobytes()[:-1]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)


def test_accuracy_counts_argmax_matches():
    m = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(m, x, y, torch.device("cpu")) == 0.75
