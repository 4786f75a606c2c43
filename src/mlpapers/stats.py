"""The one statistics module behind every claims table: estimates with intervals, and verdicts.

A *claim* says that some quantity -- usually a paired difference between two models over
the same seeds, e.g. ``ppl(fox) - ppl(rope)`` -- is above, below or within a stated size.
Its *verdict* is decided only by a confidence interval of that quantity:

* ``holds``          -- the whole interval lies on the claimed side of the threshold;
* ``does not hold``  -- the whole interval lies on the other side;
* ``inconclusive``   -- the interval straddles the threshold (more seeds would decide).

There are no hand-picked margins here: a threshold is either the size the paper (or the
seed README) claims, or zero for a claimed direction, or a measured noise level passed in
by the caller.

Intervals:

* over seeds (n >= 2): Student-t interval of the mean, ``mean ± t_{n-1} · std / sqrt(n)``;
  for a comparison the values are the per-seed *paired* differences (same seed, same data);
* one seed (n = 1): there is no seed-to-seed spread to measure, so the interval is a
  bootstrap over evaluation units (windows, sentences, examples) and the estimate says so
  (``method: "bootstrap"``) -- it captures evaluation noise, not training noise.

Everything returns plain dicts (``mean, std, n, se, ci_lo, ci_hi, level, method``), so the
summaries go straight into metrics JSON and the report recomputes verdicts from them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

LEVEL = 0.95  # every interval in the README is a 95% interval
Verdict = Literal["holds", "does not hold", "inconclusive"]


def t_quantile(q: float, df: float) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom (scipy, imported on use)."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def summarize(values: Iterable[float], level: float = LEVEL) -> dict:
    """Mean, sample std (ddof=1), standard error and a t interval over seeds.

    With one value the std, standard error and interval are undefined: they are returned
    as NaN (written as null in JSON), and a verdict on such a summary is "inconclusive".
    Use :func:`bootstrap` to get a within-run interval for a single seed.
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("summarize() needs at least one value")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"summarize() got non-finite values: {v.tolist()}")
    n, mean = int(v.size), float(v.mean())
    if n == 1:
        nan = float("nan")
        return {"mean": mean, "std": nan, "n": 1, "se": nan, "ci_lo": nan, "ci_hi": nan,
                "level": level, "method": "1 seed"}
    std = float(v.std(ddof=1))
    se = std / math.sqrt(n)
    half = t_quantile(0.5 + level / 2, n - 1) * se
    return {"mean": mean, "std": std, "n": n, "se": se, "ci_lo": mean - half, "ci_hi": mean + half,
            "level": level, "method": "t over seeds"}


def paired(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """Summary of the per-seed differences ``a[i] - b[i]`` (same seeds, same order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired() needs one value per seed on both sides, got {a.shape} and {b.shape}")
    return summarize(a - b, level)


def ratio(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """Summary of the per-round ratios ``a[i] / b[i]`` (e.g. interleaved throughput rounds)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or np.any(b == 0):
        raise ValueError("ratio() needs matching rounds and non-zero denominators")
    return summarize(a / b, level)


def unpaired(a: dict, b: dict, level: float = LEVEL) -> dict:
    """Difference of two independent means from their summaries (``summarize``), with a Welch t
    interval: for runs that share no seeds (e.g. two architectures trained in different stages)."""
    se = float(np.hypot(a["se"], b["se"]))
    # Welch-Satterthwaite degrees of freedom (fractional, as in scipy's ttest_ind(equal_var=False))
    df = se ** 4 / (a["se"] ** 4 / (a["n"] - 1) + b["se"] ** 4 / (b["n"] - 1)) if se > 0 else 1.0
    half = t_quantile(0.5 + level / 2, max(df, 1.0)) * se
    mean = a["mean"] - b["mean"]
    return {"mean": mean, "std": float(np.hypot(a["std"], b["std"])), "se": se, "n": min(a["n"], b["n"]),
            "ci_lo": mean - half, "ci_hi": mean + half, "level": level, "method": "Welch t (unpaired seeds)"}


def exact(value: float) -> dict:
    """A deterministic measurement (parameter counts, cache bytes) as a summary: its interval is
    the value itself, so a verdict on it is decided by the value alone."""
    return {"mean": value, "std": 0.0, "n": 1, "se": 0.0, "ci_lo": value, "ci_hi": value, "method": "exact"}


def bootstrap(units: Sequence[float], level: float = LEVEL, resamples: int = 2000, seed: int = 0) -> dict:
    """Percentile bootstrap interval of the mean over evaluation units of *one* run.

    ``units`` are per-window (or per-sentence) values of the quantity, e.g. a paired
    per-window loss difference. The resampling is seeded, so the interval is repeatable.
    ``n`` stays 1 (one trained model); ``units`` records how many units were resampled.
    """
    u = np.asarray(units, dtype=np.float64)
    if u.size < 2:
        raise ValueError("bootstrap() needs at least two evaluation units")
    rng = np.random.default_rng(seed)
    means = u[rng.integers(0, u.size, size=(resamples, u.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return {"mean": float(u.mean()), "std": float(u.std(ddof=1)), "n": 1, "units": int(u.size),
            "se": float(means.std(ddof=1)), "ci_lo": float(lo), "ci_hi": float(hi), "level": level,
            "method": "bootstrap"}


@dataclass(frozen=True)
class Claim:
    """What is claimed about a quantity (a summary's ``mean``).

    ``kind``:
      * ``"above"``  -- the quantity is > ``threshold`` (e.g. a gain > 0, a ratio > 0.95);
      * ``"below"``  -- the quantity is < ``threshold``;
      * ``"within"`` -- ``|quantity - threshold| < margin`` (equivalence: "as good as",
        "no gain", "flat"); ``margin`` must be a stated claim size or a measured noise level.
    """

    kind: Literal["above", "below", "within"]
    threshold: float = 0.0
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("above", "below", "within"):
            raise ValueError(f"Claim.kind must be above, below or within, got {self.kind!r}")
        if self.kind == "within" and not self.margin > 0:
            raise ValueError("a 'within' claim needs a margin > 0 (a stated size or a measured noise level)")


def verdict(est: dict, claim: Claim) -> Verdict:
    """holds / does not hold / inconclusive, from the interval of ``est`` alone."""
    lo, hi = est.get("ci_lo"), est.get("ci_hi")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"  # one seed and no bootstrap: no interval, no decision
    if claim.kind == "above":
        return "holds" if lo > claim.threshold else "does not hold" if hi <= claim.threshold else "inconclusive"
    if claim.kind == "below":
        return "holds" if hi < claim.threshold else "does not hold" if lo >= claim.threshold else "inconclusive"
    a, b = claim.threshold - claim.margin, claim.threshold + claim.margin
    if a < lo and hi < b:
        return "holds"
    if hi <= a or lo >= b:
        return "does not hold"
    return "inconclusive"


def fmt(est: dict, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    """'1.23 ± 0.45 [0.67, 1.79] (n=3)': mean ± std with the interval and where it comes from."""
    m = est["mean"] * scale
    lo, hi = est.get("ci_lo"), est.get("ci_hi")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{m:.{digits}f}{unit} (1 seed, no interval)"
    lo, hi = sorted((lo * scale, hi * scale))
    where = f"1 seed, bootstrap over {est['units']}" if est.get("method") == "bootstrap" else f"n={est['n']}"
    std = est["std"] * abs(scale)
    return f"{m:.{digits}f}{unit} ± {std:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] ({where})"


def fmt_verdict(est: dict, claim: Claim) -> str:
    """The verdict in bold, with ``(1 seed)`` when it rests on one run (a bootstrap over its
    evaluation units); an ``exact`` value is a measurement without seeds."""
    v = verdict(est, claim)
    one_run = est.get("n", 0) < 2 and est.get("method") != "exact"
    return f"**{v}** (1 seed)" if one_run else f"**{v}**"


__all__ = ["LEVEL", "Claim", "summarize", "paired", "ratio", "unpaired", "exact", "bootstrap", "verdict", "fmt",
           "fmt_verdict", "t_quantile"]
