r"""Rank correlation kernels shared by :mod:`~ntkplast.stats.correlation` and
:mod:`~ntkplast.stats.predictors`.

One Pearson kernel serves every coefficient: with weights w_i ≥ 0 (how often point i is in a
sample; 1 for the sample itself),

    r_w(a, b) = Σ w_i (a_i − ā)(b_i − b̄) / √(Σ w_i (a_i − ā)² · Σ w_i (b_i − b̄)²),
    ā = Σ w_i a_i / Σ w_i,

and the coefficients differ only in what they correlate: Spearman's ρ (Spearman 1904) is r of
average ranks (:func:`weighted_spearman`, ranks of the weighted sample); the partial rank
correlation ρ_{xy·Z} is r of the ranks' residuals on [1, ranks of Z] (:func:`residual_ranks`;
Kendall & Stuart, *The Advanced Theory of Statistics* vol. 2, ch. 27). :func:`correlation_p` is
the t-test of any such r.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["correlation_p", "partial", "pearson", "residual_ranks", "weighted_ranks",
           "weighted_spearman"]


def pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """r_w (module docstring) along the last axis of a, b (..., n) with weights w (..., n) (None:
    all 1). NaN where either side is constant over the weighted sample: √(Σ w a'² · Σ w b'²) ≤
    10⁻¹² (Σ w)², and for an empty one (Σ w = 0: every point of the sample left out)."""
    w = np.ones(a.shape[-1]) if w is None else w
    tot = w.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty sample (Σ w = 0): NaN
        da = a - (w * a).sum(-1, keepdims=True) / tot
        db = b - (w * b).sum(-1, keepdims=True) / tot
        den = np.sqrt((w * da * da).sum(-1) * (w * db * db).sum(-1))
        ok = den > 1e-12 * tot[..., 0] ** 2
        return np.where(ok, (w * da * db).sum(-1) / np.where(ok, den, 1.0), np.nan)


def residual_ranks(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Ranks of x (..., n) minus their least-squares fit on [1, ranks of z (..., n, k)]:
    e = R_x − D D⁺ R_x with D = [1, R_z]."""
    rx = stats.rankdata(x, axis=-1)
    design = np.ones(x.shape + (1,))
    if z.shape[-1]:
        design = np.concatenate([design, stats.rankdata(z, axis=-2)], axis=-1)
    beta = np.linalg.pinv(design) @ rx[..., None]
    return rx - (design @ beta)[..., 0]


def partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Partial Spearman ρ_{xy·Z} of x, y (..., n) given controls z (..., n, k); k = 0 gives
    Spearman's ρ."""
    return pearson(residual_ranks(x, z), residual_ranks(y, z))


def weighted_ranks(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (B, N) of v (N,) in the samples where point i appears w[b, i] times."""
    _, inv = np.unique(v, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    gw = np.add.reduceat(w[:, order], starts, axis=1)
    rank = np.cumsum(gw, axis=1) - gw + (gw + 1) / 2
    return rank[:, inv]


def weighted_spearman(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Spearman ρ (B,) of the samples in which (x_i, y_i) appears w[b, i] ≥ 0 times (None: the
    sample itself, B = 1); NaN where x or y is constant over the sample. Integer weights make
    this exactly ``scipy.stats.spearmanr`` of the expanded sample (a run drawn k times
    contributes its points k times)."""
    w = np.ones((1, len(x))) if w is None else w
    return pearson(weighted_ranks(x, w), weighted_ranks(y, w), w)


def correlation_p(r: float, df: int) -> float:
    """Two-sided p of a correlation r on df degrees of freedom: t = r √(df / (1 − r²)),
    Student-t with df (0 where |r| ≥ 1)."""
    if abs(r) >= 1:
        return 0.0
    t = r * np.sqrt(df / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), df))
