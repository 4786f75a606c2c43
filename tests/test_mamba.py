"""Mamba (S6) and Mamba-2 (SSD): parallel forms against naive recurrences, decoding, causality, ZOH.

Every reference here is written from the paper's equations in this file, independently of the
code under test: the recurrence h_t = Abar_t h_{t-1} + Bbar_t x_t, y_t = C_t h_t + D x_t (eq. 2a/2b
after the ZOH of eq. 4), and Algorithm 2 / the block of §3.4 token by token.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlpapers.papers.fox.model import cache_bytes
from mlpapers.papers.mamba.model import MambaLM, MambaLMConfig
from mlpapers.papers.mamba.ssm import s6_reference, s6_scan, ssd_chunked, ssd_reference, zoh

F64 = dict(dtype=torch.float64)


def rand_s6(T: int, Bt=2, D=5, N=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(Bt, T, D, generator=g, **F64)
    delta = F.softplus(torch.randn(Bt, T, D, generator=g, **F64))
    A = -(torch.rand(D, N, generator=g, **F64) * 3 + 0.1)
    B, C = torch.randn(Bt, T, N, generator=g, **F64), torch.randn(Bt, T, N, generator=g, **F64)
    return x, delta, A, B, C, torch.randn(D, generator=g, **F64)


@pytest.mark.parametrize("T", [1, 2, 7, 64, 100])
def test_s6_parallel_scan_equals_sequential_recurrence(T):
    x, delta, A, B, C, Ds = rand_s6(T)
    y, hT = s6_scan(x, delta, A, B, C, Ds)
    # eq. 2a/2b with the exact ZOH (eq. 4), one token at a time, written out here
    h, ys = torch.zeros(2, 5, 3, **F64), []
    for t in range(T):
        dA = delta[:, t, :, None] * A  # (Bt, D, N)
        h = dA.exp() * h + (dA.exp() - 1) / dA * delta[:, t, :, None] * B[:, t, None, :] * x[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + Ds * x[:, t])
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hT, h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s6_reference(x, delta, A, B, C, Ds), y, rtol=1e-12, atol=1e-12)


def test_s6_scan_continues_from_a_state():
    x, delta, A, B, C, Ds = rand_s6(40)
    y, h = s6_scan(x, delta, A, B, C, Ds)
    y1, h1 = s6_scan(x[:, :17], delta[:, :17], A, B[:, :17], C[:, :17], Ds)
    y2, h2 = s6_scan(x[:, 17:], delta[:, 17:], A, B[:, 17:], C[:, 17:], Ds, h0=h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h2, h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T,chunk", [(1, 4), (13, 4), (16, 16), (30, 7)])
def test_ssd_chunked_equals_sequential_recurrence(T, chunk):
    g = torch.Generator().manual_seed(1)
    Bt, H, P, N = 2, 3, 2, 4
    x = torch.randn(Bt, T, H, P, generator=g, **F64)
    delta = F.softplus(torch.randn(Bt, T, H, generator=g, **F64))
    A = -(torch.rand(H, generator=g, **F64) * 3 + 0.1)
    B, C = torch.randn(Bt, T, N, generator=g, **F64), torch.randn(Bt, T, N, generator=g, **F64)
    Ds = torch.randn(H, generator=g, **F64)
    y, hT = ssd_chunked(x, delta, A, B, C, Ds, chunk)
    h, ys = torch.zeros(Bt, H, P, N, **F64), []
    for t in range(T):  # scalar A per head: h = exp(dA) h + (exp(dA)-1)/A x B^T, y = h C + D x
        dA = (delta[:, t] * A)[..., None, None]  # (Bt, H, 1, 1)
        h = dA.exp() * h + ((dA.exp() - 1) / A[:, None, None]) * x[:, t, ..., None] * B[:, t, None, None, :]
        ys.append(torch.einsum("bhpn,bn->bhp", h, C[:, t]) + Ds[:, None] * x[:, t])
    torch.testing.assert_close(y, torch.stack(ys, 1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hT, h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ssd_reference(x, delta, A, B, C, Ds), y, rtol=1e-12, atol=1e-12)


def test_zoh_equals_matrix_exponential():
    """eq. 4 for a diagonal A against expm of the augmented matrix [[Delta A, Delta B], [0, 0]]:
    its top-left block is Abar = exp(Delta A), its top-right column Bbar (Van Loan's identity)."""
    g = torch.Generator().manual_seed(2)
    N = 4
    A = -(torch.rand(1, N, generator=g, **F64) * 5 + 0.05)
    for delta in (1e-3, 0.3, 2.0):
        B = torch.randn(N, generator=g, **F64)
        Abar, Bbar = zoh(torch.tensor([delta], **F64), A, B)  # (1, N) each
        M = torch.zeros(N + 1, N + 1, **F64)
        M[:N, :N] = torch.diag(delta * A[0])
        M[:N, N] = delta * B
        E = torch.linalg.matrix_exp(M)
        torch.testing.assert_close(torch.diag(Abar[0]), E[:N, :N], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(Bbar[0], E[:N, N], rtol=1e-12, atol=1e-14)


def tiny_lm(variant: str, seed: int = 0) -> MambaLM:
    torch.manual_seed(seed)
    m = MambaLM(MambaLMConfig(variant, vocab_size=11, n_blocks=2, d_model=8, d_state=3, expand=2, d_conv=4,
                              n_head=2, chunk=5)).double().eval()
    with torch.no_grad():  # larger Delta and gates than at init, so that every term matters
        for b in m.blocks:
            b.mixer.dt_proj.bias.add_(2.0)
            b.mixer.Dskip.normal_()
            b.mixer.conv.bias.normal_()
    return m


def naive_mixer(mix, x: torch.Tensor) -> torch.Tensor:
    """The Mamba block (§3.4) token by token from its weights: causal conv1d over the last d_conv
    inputs, SiLU, Delta = softplus(dt_proj(x_proj(u)[:R])), B, C = x_proj(u), eq. 2a/2b with ZOH, + D u,
    times SiLU(z), out_proj."""
    Bt, T, _ = x.shape
    D, N, H, R, k = mix.D, mix.N, mix.H, mix.R, mix.k
    u_in, z = mix.in_proj(x).chunk(2, dim=-1)
    W, b = mix.conv.weight[:, 0, :], mix.conv.bias  # (D, k): W[:, -1] multiplies the current input
    A = -torch.exp(mix.A_log)
    h = torch.zeros(Bt, D, N, **F64) if H == D else torch.zeros(Bt, H, D // H, N, **F64)
    ys = []
    for t in range(T):
        past = [u_in[:, t - k + 1 + j] if t - k + 1 + j >= 0 else torch.zeros(Bt, D, **F64) for j in range(k)]
        u = F.silu(sum(W[:, j] * past[j] for j in range(k)) + b)  # (Bt, D)
        dt, Bm, Cm = mix.x_proj(u).split([R, N, N], dim=-1)
        delta = F.softplus(mix.dt_proj(dt))  # (Bt, H)
        if H == D:  # S6
            dA = delta[..., None] * A  # (Bt, D, N)
            h = dA.exp() * h + (dA.exp() - 1) / A * Bm[:, None, :] * u[..., None]
            y = (h * Cm[:, None, :]).sum(-1) + mix.Dskip * u
        else:  # SSD: scalar A and Delta per head
            uh = u.view(Bt, H, D // H)
            dA = (delta * A)[..., None, None]
            h = dA.exp() * h + (dA.exp() - 1) / A[:, None, None] * uh[..., None] * Bm[:, None, None, :]
            y = ((h * Cm[:, None, None, :]).sum(-1) + mix.Dskip[:, None] * uh).reshape(Bt, D)
        ys.append(y)
    return mix.out_proj(torch.stack(ys, 1) * F.silu(z))


@pytest.mark.parametrize("variant", ["mamba", "mamba2"])
def test_mixer_equals_naive_algorithm(variant):
    m = tiny_lm(variant)
    x = torch.randn(2, 12, 8, **F64)
    mix = m.blocks[0].mixer
    with torch.no_grad():
        torch.testing.assert_close(mix(x), naive_mixer(mix, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", ["mamba", "mamba2"])
def test_recurrent_decoding_equals_parallel_forward_and_state_is_constant(variant):
    m = tiny_lm(variant)
    idx = torch.randint(0, 11, (2, 23), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = m(idx)
        cache, steps, sizes = m.init_cache(), [], []
        for t in range(idx.shape[1]):
            steps.append(m.step(idx[:, t], cache, t))
            sizes.append(cache_bytes(cache))
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-10, atol=1e-10)
    assert len(set(sizes)) == 1 and sizes[0] > 0  # O(1) state: same bytes after 1 and after 23 tokens


@pytest.mark.parametrize("variant", ["mamba", "mamba2"])
def test_causality(variant):
    m = tiny_lm(variant)
    g = torch.Generator().manual_seed(4)
    idx = torch.randint(0, 11, (1, 20), generator=g)
    other = idx.clone()
    other[:, 9:] = torch.randint(0, 11, (1, 11), generator=g)
    with torch.no_grad():
        a, b = m(idx), m(other)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=1e-13)  # positions < 9 never see inputs >= 9
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-6  # and the later ones do


def test_selectivity_delta_b_c_depend_on_the_input():
    """§3.2: Delta, B, C are functions of x (not fixed as in S4)."""
    mix = tiny_lm("mamba").blocks[0].mixer
    u1, u2 = torch.randn(1, 3, mix.D, **F64), torch.randn(1, 3, mix.D, **F64)
    for a, b in zip(mix._ssm_inputs(u1), mix._ssm_inputs(u2)):
        assert (a - b).abs().max() > 1e-6
