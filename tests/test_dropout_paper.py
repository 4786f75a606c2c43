"""Gaussian dropout moments, MC model averaging vs a naive loop, weight scaling = expectation,
and the claim verdicts of the Dropout experiments (from the shared statistics module)."""
import itertools

import pytest
import torch

from mlpapers.papers.dropout.averaging import error, mc_curve, mc_probs, weight_scaled_probs
from mlpapers.papers.dropout.common import MLPConfig, resolution, subset, val_indices
from mlpapers.papers.dropout.model import MLP, Dropout, GaussianDropout
from mlpapers.papers.dropout.task import ClassifierTask


@pytest.mark.parametrize("p", [0.2, 0.8])  # p != 0.5: there (1-p)/p = p/(1-p) and a swapped formula hides
def test_gaussian_dropout_matches_bernoulli_mean_and_variance(p):
    torch.manual_seed(0)
    x = torch.full((400_000,), 2.0)
    g = GaussianDropout(p).train()(x)
    b = Dropout(p).train()(x)
    var = 4.0 * p / (1 - p)  # x^2 * sigma^2, sigma^2 = (1 - p_keep) / p_keep, p_keep = 1 - p
    tol = 5 * (var / x.numel()) ** 0.5  # 5 standard errors of the sample mean
    assert abs(g.mean().item() - 2.0) < tol and abs(b.mean().item() - 2.0) < tol  # E[y] = x for both
    assert abs(g.var().item() / var - 1) < 0.02
    assert abs(b.var().item() / var - 1) < 0.02  # the Bernoulli version has the same variance
    assert abs(g.var().item() / b.var().item() - 1) < 0.03


def test_gaussian_dropout_is_identity_at_test_and_noise_is_multiplicative():
    d = GaussianDropout(0.3)
    x = torch.randn(50, 20)
    assert torch.equal(d.eval()(x), x)
    d.train()
    torch.manual_seed(1)
    y1 = d(x)
    torch.manual_seed(1)
    y2 = d(2 * x)
    assert torch.allclose(y2, 2 * y1)  # y = x * r, r independent of x
    assert torch.equal(d(torch.zeros(5)), torch.zeros(5))


def test_mlp_builds_gaussian_noise_layers():
    m = MLP(4, 8, 2, 3, 0.2, 0.5, noise="gaussian")
    assert all(isinstance(d, GaussianDropout) for d in [m.input_dropout, *m.dropouts])
    with pytest.raises(ValueError, match="noise"):
        MLP(4, 8, 2, 3, 0.2, 0.5, noise="uniform")


def test_mc_with_no_dropout_equals_the_deterministic_net():
    torch.manual_seed(0)
    m = MLP(6, 16, 2, 4, 0.0, 0.0)
    x = torch.randn(32, 6)
    for k in (1, 7):
        assert torch.allclose(mc_probs(m, x, k), weight_scaled_probs(m, x), atol=1e-6)


def test_mc_curve_equals_a_naive_loop_over_probabilities():
    torch.manual_seed(0)
    m = MLP(6, 32, 2, 5, 0.2, 0.5)
    x = torch.randn(40, 6)
    ks = [1, 3, 10]
    torch.manual_seed(123)
    curve = mc_curve(m, x, ks)
    torch.manual_seed(123)  # the same masks, drawn one pass at a time
    m.train()
    samples = [torch.softmax(m(x), -1) for _ in range(max(ks))]
    m.eval()
    for k, got in zip(ks, curve):
        want = torch.stack(samples[:k]).mean(0)  # (1/k) sum_i softmax(f(x; r_i))
        assert torch.allclose(got, want, atol=1e-6)
    assert not m.training  # the net's mode is restored


def test_mc_converges_towards_weight_scaling_for_a_one_hidden_layer_net():
    torch.manual_seed(0)
    m = MLP(5, 64, 1, 3, 0.0, 0.5)
    x = torch.randn(20, 5)
    ws = weight_scaled_probs(m, x)
    torch.manual_seed(1)
    few, many = mc_curve(m, x, [2, 2000])
    assert (many - ws).abs().mean() < 0.5 * (few - ws).abs().mean()


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_weight_scaling_equals_the_expectation_for_a_linear_layer(p):
    """E_r[W (r * x) / (1 - p)] over all 2^d masks = the test-time output W x (Section 4)."""
    torch.manual_seed(0)
    d = 6
    lin = torch.nn.Linear(d, 3)
    x = torch.randn(d)
    drop = Dropout(p).train()
    expect = torch.zeros(3)
    for mask in itertools.product([0.0, 1.0], repeat=d):
        r = torch.tensor(mask)
        prob = torch.prod(torch.where(r == 1, torch.tensor(1 - p), torch.tensor(p)))
        # the module's own output for this mask: patch its Bernoulli draw
        orig = torch.Tensor.bernoulli_
        torch.Tensor.bernoulli_ = lambda t, *a, **k: t.copy_(r)  # noqa: E731
        try:
            y = lin(drop(x))
        finally:
            torch.Tensor.bernoulli_ = orig
        expect += prob * y.detach()
    assert torch.allclose(expect, lin(drop.eval()(x)).detach(), atol=1e-5)


def test_error_counts_argmax_mismatches():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert error(probs, torch.tensor([0, 0, 0])) == pytest.approx(1 / 3)


def test_l1_l2_penalties_add_to_the_loss():
    torch.manual_seed(0)
    m = MLP(3, 4, 1, 2, 0.0, 0.0)
    x, y = torch.randn(8, 3), torch.zeros(8, dtype=torch.long)
    base = ClassifierTask(m, x, y, 8, 0.0, {}).loss((x, y))
    task = ClassifierTask(m, x, y, 8, 0.0, {}, l1=0.1, l2=0.01)
    w = [m.hidden[0].weight, m.out.weight]
    want = base + sum(0.1 * v.abs().sum() + 0.01 * v.pow(2).sum() for v in w)
    assert torch.allclose(task.loss((x, y)), want)


def test_validation_images_are_disjoint_from_the_training_set():
    tr, va = subset(5000, 500, 3), val_indices(5000, 500, 1000, 3)
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(va) == 1000
    with pytest.raises(ValueError):
        val_indices(5000, 4500, 1000, 0)


def test_resolution_is_the_95_percent_half_width_of_an_error_difference():
    assert resolution(0.5, 10000) == pytest.approx(1.96 * (2 * 0.25 / 10000) ** 0.5)
    assert resolution(0.0, 100) == 0.0


def test_mlp_config_validates_ranges():
    from mlpapers.config import ConfigError, from_dict

    ok = dict(hidden=8, depth=1, p_input=0.0, p_hidden=0.5, max_norm=0.0, noise="bernoulli", l1=0.0, l2=0.0)
    assert from_dict(MLPConfig, ok, "m").p_hidden == 0.5
    for bad in ({"l2": -1.0}, {"p_hidden": 1.0}, {"noise": "gauss"}, {"l1": float("nan")}):
        with pytest.raises(ConfigError):
            from_dict(MLPConfig, {**ok, **bad}, "m")


def _est(values):
    from mlpapers import stats

    return stats.summarize(values)


def test_fig10_claim_rows_get_their_verdicts_from_stats(tmp_path):
    """Synthetic metrics: a clear gain at N=100 must read 'does not hold' for 'no gain', a tiny one 'holds'."""
    from mlpapers.experiment import Paths
    from mlpapers.papers.dropout.report import mnist_markdown
    from mlpapers.utils import write_json

    e = lambda m: {"test_error": _est([m, m + 0.001, m - 0.001]), "train_error": _est([0.0, 0.0, 0.0])}  # noqa: E731
    m = {"plain": {"n100": e(0.25), "n500": e(0.12), "n5000": e(0.05)},
         "dropout": {"n100": e(0.20), "n500": e(0.12), "n5000": e(0.04)},
         "dropout_minus_plain": {"n100": {"test_error": _est([-0.05, -0.051, -0.049])},
                                 "n500": {"test_error": _est([0.0001, -0.0001, 0.0])},
                                 "n5000": {"test_error": _est([-0.01, -0.011, -0.009])}},
         "no_gain": {"n100": {"diff": _est([-0.05, -0.051, -0.049]), "margin": 0.012},
                     "n500": {"diff": _est([0.0001, -0.0001, 0.0]), "margin": 0.009}},
         "rise_fall": {"peak_n": 500, "rise": _est([-0.05, -0.051, -0.049]), "fall": _est([-0.01, -0.011, -0.009])},
         "early_stop": {}, "setup": {"hidden": 512, "depth": 2, "steps": 600, "n_test": 10000}}
    write_json(tmp_path / "results" / "dropout_mnist.json", m)
    md = mnist_markdown(Paths(tmp_path))
    row = lambda text: next(line for line in md.splitlines() if text in line)  # noqa: E731
    assert "**does not hold**" in row("no gain from dropout at N = 100")
    assert "**holds**" in row("no gain from dropout at N = 500")
    assert "**does not hold**" in row("the gain rises")
    assert "| 100 |" in md and "**holds**" in row("| 100 |")  # dropout helps at N = 100 (< 0)
