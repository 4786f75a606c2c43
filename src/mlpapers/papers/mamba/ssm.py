"""Selective state-space scans: S6 (Mamba) and SSD (Mamba-2), parallel and recurrent forms.

Gu & Dao. "Mamba: Linear-Time Sequence Modeling with Selective State Spaces." 2023.
arXiv:2312.00752.  Dao & Gu. "Transformers are SSMs" (Mamba-2). ICML 2024. arXiv:2405.21060.

Notation of the Mamba paper (§2, §3.2): input x_t in R^D (D channels), state h_t in R^{D x N},

    h_t = Abar_t h_{t-1} + Bbar_t x_t                 (2a)
    y_t = C_t h_t                                      (2b)

with the zero-order hold (ZOH) discretization of the continuous (Delta, A, B) (eq. 4):

    Abar = exp(Delta A)        Bbar = (Delta A)^{-1} (exp(Delta A) - I) . Delta B

A is diagonal (S4D-real), so both are elementwise: Bbar = (exp(Delta A) - 1) / A . B. Every form
here uses this exact ZOH (``zoh``; the official CUDA kernel simplifies Bbar to Delta B). Mamba-2's
scalar A per head uses the same ZOH with a scalar.

Forms:

* ``s6_scan``      -- parallel form for training: a work-efficient parallel scan (§3.3.2 cites
                      Blelloch's) over time of the affine maps h -> Abar_t h + Bbar_t x_t,
                      log2 T levels; stable (only products of decays in (0, 1]).
* ``s6_step``      -- recurrent form for decoding: one step of eq. 2a/2b, O(1) state (D x N).
* ``s6_reference`` -- the naive sequential loop of eq. 2a/2b (tests).
* ``ssd_chunked``  -- Mamba-2's SSD layer (scalar A per head, Mamba-2 §6 / Listing 1 in words):
                      inside chunks of Q tokens the quadratic "attention-like" form
                      y = (L o C B^T) (dbar x) with L_ts = exp(c_t - c_s), c = cumsum(Delta A);
                      between chunks the state is passed on recurrently.
* ``ssd_step`` / ``ssd_reference`` -- its recurrent form and naive loop.
"""
from __future__ import annotations

import torch


def zoh(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ZOH for diagonal A (eq. 4): Abar = exp(Delta A), Bbar = (exp(Delta A) - 1) / A * B.

    delta (..., D), A (D, N), B (..., N) -> Abar, Bbar (..., D, N). ((Delta A)^{-1}(exp(Delta A) - I) Delta B
    simplifies to (exp(Delta A) - 1) / A . B for diagonal A.)"""
    dA = delta[..., None] * A  # (..., D, N)
    return dA.exp(), torch.expm1(dA) / A * B[..., None, :]


def _discretize(x, delta, A, B):
    """(Abar_t, Bbar_t x_t) of eq. 4, each (Bt, T, D, N)."""
    a, Bbar = zoh(delta, A, B)
    return a, Bbar * x[..., None]


def _scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t from h_0 = 0 for all t at once (time = dim 1): a work-efficient
    (Blelloch-style) parallel scan. Pairs (2i, 2i+1) are composed, (a, b) o (a', b') = (a a', a b' + b),
    the half-length problem is scanned recursively (its results are h at odd t), and h at even t
    follows from one more step. log2(T) levels, O(T) work; only products of decays in (0, 1]
    appear, so nothing over- or underflows harmfully."""
    T = a.shape[1]
    if T == 1:
        return b
    if T % 2:  # pad with the identity map (a = 1, b = 0)
        a, b = torch.cat([a, torch.ones_like(a[:, :1])], 1), torch.cat([b, torch.zeros_like(b[:, :1])], 1)
    a0, a1, b0, b1 = a[:, 0::2], a[:, 1::2], b[:, 0::2], b[:, 1::2]
    h_odd = _scan(a1 * a0, a1 * b0 + b1)  # h_{2i+1} = a_{2i+1} (a_{2i} h_{2i-1} + b_{2i}) + b_{2i+1}
    h_even = torch.cat([b0[:, :1], a0[:, 1:] * h_odd[:, :-1] + b0[:, 1:]], 1)  # h_{2i} = a_{2i} h_{2i-1} + b_{2i}
    h = torch.stack([h_even, h_odd], 2).flatten(1, 2)  # interleave: (Bt, T, ...)
    return h[:, :T]


def s6_scan(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
            Dskip: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan (Algorithm 2), parallel form.

    x, delta (Bt, T, D); A (D, N) negative; B, C (Bt, T, N) input-dependent; Dskip (D,).
    Returns y (Bt, T, D) = C_t h_t + D x_t and the last state h_T (Bt, D, N)."""
    a, b = _discretize(x, delta, A, B)
    if h0 is not None:  # fold the initial state into the first step: h_1 = a_1 h_0 + b_1
        b = torch.cat([b[:, :1] + a[:, :1] * h0[:, None], b[:, 1:]], dim=1)
    b = _scan(a, b)  # b_t <- h_t
    # y_t = C_t h_t (2b) + D x_t (the skip of Algorithm 2)
    y = torch.einsum("btdn,btn->btd", b, C) + x * Dskip
    return y, b[:, -1]


def s6_step(x, delta, A, B, C, Dskip, h):
    """One recurrent step: x, delta (Bt, D); B, C (Bt, N); h (Bt, D, N) -> y (Bt, D), new h."""
    a, b = _discretize(x[:, None], delta[:, None], A, B[:, None])
    h = a[:, 0] * h + b[:, 0]  # (2a)
    return torch.einsum("bdn,bn->bd", h, C) + x * Dskip, h  # (2b) + skip


def s6_reference(x, delta, A, B, C, Dskip):
    """Naive sequential eq. 2a/2b, one token at a time (tests)."""
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        y, h = s6_step(x[:, t], delta[:, t], A, B[:, t], C[:, t], Dskip, h)
        ys.append(y)
    return torch.stack(ys, 1)


# ------------------------------------------------------------------ SSD (Mamba-2)


def ssd_chunked(x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                Dskip: torch.Tensor, chunk: int, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2 SSD with scalar A per head: h_t = exp(Delta_t A) h_{t-1} + dbar_t x_t B_t^T, y_t = h_t C_t,
    where dbar_t = (exp(Delta_t A) - 1) / A is eq. 4's ZOH for a scalar A (~= Delta_t for small Delta_t A).

    x (Bt, T, H, P); delta (Bt, T, H); A (H,) negative; B, C (Bt, T, N) shared by the heads;
    Dskip (H,). Returns y (Bt, T, H, P) and the last state (Bt, H, P, N)."""
    Bt, T, H, P = x.shape
    N = B.shape[-1]
    h = x.new_zeros(Bt, H, P, N) if h0 is None else h0
    ys = []
    for s in range(0, T, chunk):
        xc, dc, Bc, Cc = x[:, s:s + chunk], delta[:, s:s + chunk], B[:, s:s + chunk], C[:, s:s + chunk]
        Q = xc.shape[1]
        c = torch.cumsum(dc * A, dim=1)  # c_t = sum_{r<=t} Delta_r A, (Bt, Q, H)
        diff = c[:, :, None, :] - c[:, None, :, :]  # c_t - c_s, (Bt, Q(t), Q(s), H)
        causal = torch.ones(Q, Q, dtype=torch.bool, device=x.device).tril()
        Lm = torch.exp(diff.masked_fill(~causal[None, :, :, None], float("-inf")))  # L_ts (0 above the diagonal)
        u = xc * (torch.expm1(dc * A) / A)[..., None]  # dbar_s x_s, (Bt, Q, H, P)
        G = torch.einsum("btn,bsn->bts", Cc, Bc)  # C_t . B_s, (Bt, Q, Q)
        y = torch.einsum("btsh,bts,bshp->bthp", Lm, G, u)  # within-chunk (quadratic) part
        y = y + torch.einsum("bth,btn,bhpn->bthp", c.exp(), Cc, h)  # carried state: exp(c_t) C_t h_0
        # state at the chunk's end: h_Q = exp(c_Q) h_0 + sum_s exp(c_Q - c_s) dbar_s x_s B_s^T
        w = torch.exp(c[:, -1:] - c)  # (Bt, Q, H)
        h = c[:, -1].exp()[..., None, None] * h + torch.einsum("bsh,bshp,bsn->bhpn", w, u, Bc)
        ys.append(y)
    y = torch.cat(ys, dim=1) + x * Dskip[:, None]
    return y, h


def ssd_step(x, delta, A, B, C, Dskip, h):
    """One recurrent step: x (Bt, H, P); delta (Bt, H); B, C (Bt, N); h (Bt, H, P, N)."""
    dA = delta * A  # (Bt, H)
    h = dA.exp()[..., None, None] * h + ((torch.expm1(dA) / A)[..., None] * x)[..., None] * B[:, None, None, :]
    return torch.einsum("bhpn,bn->bhp", h, C) + x * Dskip[:, None], h


def ssd_reference(x, delta, A, B, C, Dskip):
    h = x.new_zeros(x.shape[0], x.shape[2], x.shape[3], B.shape[-1])
    ys = []
    for t in range(x.shape[1]):
        y, h = ssd_step(x[:, t], delta[:, t], A, B[:, t], C[:, t], Dskip, h)
        ys.append(y)
    return torch.stack(ys, 1)
