"""BG/NBD purchase model, Gamma-Gamma spend model and the customer lifetime value built on them.

Hand-written because the library that had it, lifetimes, is archived and breaks on pandas 3. The
code follows the published formulas, not lifetimes' source:

- BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to
  the Pareto/NBD model", Marketing Science 24(2); equation numbers below refer to that paper.
- Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer base
  analysis", JMR 42(4), and Fader & Hardie (2013), "The Gamma-Gamma model of monetary value".

Per customer the purchase model takes the frequency x (repeat purchases, i.e. distinct purchase
days after the first), the recency t_x (time of the last purchase measured from the first) and
the age T (time from the first purchase to the end of observation). Time is in periods of
`unit_days` days, weeks by default; `to_periods` converts day counts.

Pure: no I/O, no clock; randomness only through a `Generator` the caller passes in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.random import Generator
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

DAYS_PER_WEEK = 7.0

# Log-parameters are boxed so a data set that cannot identify a parameter (no repeat buyers, say)
# stops at a finite value flagged as not converged instead of overflowing exp().
_LOG_BOUND = 18.0
# Eq. 7 and eq. 10 have removable singularities: 0/0 at a == 1, and 0 * inf when x == 0 and
# a + b == 1 (the 2F1 pole at c == 0). Both are stepped around by this much; see _alive_mean.
_SINGULAR_GAP = 1e-6

ArrayLike = np.ndarray | Sequence[float] | float


def to_periods(days: np.ndarray, unit_days: float = DAYS_PER_WEEK) -> np.ndarray:
    """Convert day counts to model periods of `unit_days` days (weeks by default)."""
    if not (math.isfinite(unit_days) and unit_days > 0):
        raise ValueError(f"unit_days must be a positive finite number, got {unit_days!r}")
    return np.asarray(days, dtype=float) / unit_days


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD parameters: lambda ~ Gamma(shape r, rate alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            _check_positive(name, getattr(self, name))

    def to_dict(self) -> dict[str, float]:
        """A JSON-ready form."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BgNbdParams:
        """Rebuild from `to_dict()` output."""
        return cls(float(d["r"]), float(d["alpha"]), float(d["a"]), float(d["b"]))


@dataclass(frozen=True)
class BgNbdFit:
    """A fitted BG/NBD model: parameters, total log-likelihood and how the fit went."""

    params: BgNbdParams
    log_likelihood: float
    customers: int
    converged: bool
    unit_days: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma parameters: spend ~ Gamma(shape p, rate nu), nu ~ Gamma(shape q, rate v)."""

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        for name in ("p", "q", "v"):
            _check_positive(name, getattr(self, name))

    def to_dict(self) -> dict[str, float]:
        """A JSON-ready form."""
        return {"p": self.p, "q": self.q, "v": self.v}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GammaGammaParams:
        """Rebuild from `to_dict()` output."""
        return cls(float(d["p"]), float(d["q"]), float(d["v"]))


# --- input checks ------------------------------------------------------------------------------


def _as_1d(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _customers(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float arrays for (x, t_x, T); raises ValueError naming the first problem."""
    xs, txs, Ts = _as_1d("x", x), _as_1d("t_x", t_x), _as_1d("T", T)
    if xs.size == 0:
        raise ValueError("no customers: x, t_x and T are empty")
    if not (xs.shape == txs.shape == Ts.shape):
        raise ValueError(
            f"x, t_x and T must have the same length, got {xs.size}, {txs.size} and {Ts.size}"
        )
    if np.any(xs < 0):
        raise ValueError("x (frequency) must be >= 0")
    if np.any(xs != np.floor(xs)):
        raise ValueError("x (frequency) must be a whole number of repeat purchases")
    if np.any(txs < 0):
        raise ValueError("t_x (recency) must be >= 0")
    if np.any(Ts < 0):
        raise ValueError("T (age) must be >= 0")
    if np.any(txs > Ts):
        raise ValueError("t_x (recency) must not exceed T (age)")
    # Both of these mean recency and frequency were computed from different purchase lists.
    if np.any((xs > 0) & (txs == 0)):
        raise ValueError("x > 0 requires t_x > 0 (repeat purchases happen after the first)")
    if np.any((xs == 0) & (txs != 0)):
        raise ValueError("x == 0 requires t_x == 0 (no repeat purchase, so no recency)")
    return xs, txs, Ts


def _spend_inputs(x: ArrayLike, m: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xs, ms = _as_1d("x", x), _as_1d("m", m)
    if xs.size == 0:
        raise ValueError("no customers: x and m are empty")
    if xs.shape != ms.shape:
        raise ValueError(f"x and m must have the same length, got {xs.size} and {ms.size}")
    if np.any(xs < 0):
        raise ValueError("x (frequency) must be >= 0")
    if np.any(xs != np.floor(xs)):
        raise ValueError("x (frequency) must be a whole number of repeat purchases")
    if np.any(ms < 0):
        raise ValueError("m (mean transaction value) must be >= 0")
    return xs, ms


def _horizon(name: str, t: ArrayLike) -> np.ndarray:
    ts = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(ts)) or np.any(ts < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return ts


# --- BG/NBD ------------------------------------------------------------------------------------


def _ll_terms(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Common factor and the two log-terms of eq. 6; the second is -inf where x == 0."""
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    beta_ab = betaln(a, b)
    still_alive = betaln(a, b + x) - beta_ab - (r + x) * np.log(alpha + T)
    repeat = x > 0
    # b + x - 1 is only positive when x >= 1; the safe value keeps betaln away from 0 or below.
    b_safe = np.where(repeat, b + x - 1.0, 1.0)
    dropped = betaln(a + 1.0, b_safe) - beta_ab - (r + x) * np.log(alpha + t_x)
    dropped = np.where(repeat, dropped, -np.inf)
    return common, still_alive, dropped


def log_likelihood(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (eq. 6)."""
    xs, txs, Ts = _customers(x, t_x, T)
    common, still_alive, dropped = _ll_terms(
        params.r, params.alpha, params.a, params.b, xs, txs, Ts
    )
    return common + np.logaddexp(still_alive, dropped)


def _bgnbd_objective(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, penalizer: float
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """Mean negative log-likelihood (plus penalty) and its gradient over log-parameters."""
    n = x.size
    repeat = x > 0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(theta)
        common, s1, s2 = _ll_terms(r, alpha, a, b, x, t_x, T)
        lse = np.logaddexp(s1, s2)
        ll = common + lse
        # Posterior weights of "still alive" vs "dropped after the last purchase".
        w1 = np.exp(s1 - lse)
        w2 = np.where(repeat, np.exp(s2 - lse), 0.0)
        log_aT, log_atx = np.log(alpha + T), np.log(alpha + t_x)
        d_r = digamma(r + x) - digamma(r) + math.log(alpha) - w1 * log_aT - w2 * log_atx
        d_alpha = r / alpha - (r + x) * (w1 / (alpha + T) + w2 / (alpha + t_x))
        psi_abx = digamma(a + b + x)
        psi_ab = digamma(a + b)
        d_a = (
            -(digamma(a) - psi_ab) + w1 * (digamma(a) - psi_abx) + w2 * (digamma(a + 1.0) - psi_abx)
        )
        psi_bx1 = digamma(np.where(repeat, b + x - 1.0, 1.0))
        d_b = -(digamma(b) - psi_ab) + w1 * (digamma(b + x) - psi_abx) + w2 * (psi_bx1 - psi_abx)
        params = np.array([r, alpha, a, b])
        grad_params = np.array([d_r.sum(), d_alpha.sum(), d_a.sum(), d_b.sum()])
        # The penalty works like lifetimes' penalizer_coef: L2 on the parameters themselves,
        # against the mean log-likelihood, so one setting means the same at any sample size.
        value = -ll.sum() / n + penalizer * float(np.sum(params**2))
        # Chain rule through params = exp(theta).
        grad = -grad_params * params / n + 2.0 * penalizer * params**2
        return float(value), grad

    return objective


def _minimize_logspace(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]], starts: list[np.ndarray]
) -> tuple[np.ndarray, float, bool]:
    """Best L-BFGS-B result over several starts: (theta, objective value, converged)."""
    best: tuple[np.ndarray, float, bool] | None = None
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(starts[0])
    for start in starts:
        res = minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
        )
        if not np.isfinite(res.fun):
            continue
        # A parameter resting on the box is an unidentified one, not an optimum.
        at_bound = bool(np.any(np.abs(res.x) >= _LOG_BOUND - 1e-6))
        ok = bool(res.success) and not at_bound
        if best is None or res.fun < best[1]:
            best = (np.asarray(res.x, dtype=float), float(res.fun), ok)
    if best is None:
        raise ValueError("the likelihood is not finite at any starting point")
    return best


def fit_bgnbd(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    unit_days: float = DAYS_PER_WEEK,
    penalizer: float = 0.0,
    initial: BgNbdParams | None = None,
) -> BgNbdFit:
    """Maximum-likelihood BG/NBD fit; `initial` (a warm start) replaces the default start grid."""
    xs, txs, Ts = _customers(x, t_x, T)
    _check_positive("unit_days", unit_days)
    if not (math.isfinite(penalizer) and penalizer >= 0):
        raise ValueError(f"penalizer must be a finite number >= 0, got {penalizer!r}")
    if initial is not None:
        starts = [np.log([initial.r, initial.alpha, initial.a, initial.b])]
    else:
        # The likelihood is not concave in (a, b); a few starts guard against a poor local optimum.
        # alpha is a time scale, so one start puts it at the typical age of the data.
        scale = max(float(np.mean(Ts)), 1e-3)
        starts = [
            np.zeros(4),
            np.log([1.0, scale, 1.0, 1.0]),
            np.log([0.5, scale / 2.0, 0.5, 2.0]),
        ]
    theta, _, ok = _minimize_logspace(_bgnbd_objective(xs, txs, Ts, penalizer), starts)
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    params = BgNbdParams(r=r, alpha=alpha, a=a, b=b)
    total = float(log_likelihood(params, xs, txs, Ts).sum())
    return BgNbdFit(
        params=params,
        log_likelihood=total,
        customers=int(xs.size),
        converged=ok,
        unit_days=float(unit_days),
    )


def _log_odds_dropped(
    params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """log of the odds "dropped after the last purchase" : "still alive"; -inf where x == 0."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    b_safe = np.where(repeat, b + x - 1.0, 1.0)
    lo = math.log(a) - np.log(b_safe) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(repeat, lo, -np.inf)


def p_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> np.ndarray:
    """Probability each customer is still active at T (1 for x == 0 in this model)."""
    xs, txs, Ts = _customers(x, t_x, T)
    # expit(-log odds) is 1 / (1 + odds) without overflow for long-lapsed heavy buyers.
    return expit(-_log_odds_dropped(params, xs, txs, Ts))


def _alive_mean(
    a: float, b: float, r: float, extra: np.ndarray | float, z: np.ndarray
) -> np.ndarray:
    """(a+b+x-1)/(a-1) * [1 - (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)], with x = `extra`.

    Evaluated through Euler's transformation (DLMF 15.8.1), which turns the bracket into
    1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z): the direct form overflows for large x, this
    one stays accurate (checked against mpmath to ~1e-12 relative over a wide grid).
    """

    def at(a_: float) -> np.ndarray:
        # c * 2F1(.; c; z) is continuous through c == 0 but evaluates to 0 * inf there; moving b
        # up by two gaps costs a relative error of order 1e-6 on those customers only.
        b_ = np.where(np.abs(a_ + b + extra - 1.0) < _SINGULAR_GAP, b + 2 * _SINGULAR_GAP, b)
        c = a_ + b_ + extra - 1.0
        f = hyp2f1(a_ + b_ - 1.0 - r, a_ - 1.0, c, z)
        return c / (a_ - 1.0) * (1.0 - np.exp((a_ - 1.0) * np.log1p(-z)) * f)

    if abs(a - 1.0) < _SINGULAR_GAP:
        # The average of the two sides cancels the first-order error of stepping off a == 1.
        return 0.5 * (at(1.0 - _SINGULAR_GAP) + at(1.0 + _SINGULAR_GAP))
    return at(a)


def expected_purchases(
    params: BgNbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next t periods per customer (eq. 10)."""
    xs, txs, Ts = _customers(x, t_x, T)
    ts = _horizon("t", t)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = ts / (alpha + Ts + ts)
    alive = p_alive(params, xs, txs, Ts)
    return np.maximum(_alive_mean(a, b, r, xs, z) * alive, 0.0)


def expected_purchases_new(params: BgNbdParams, t: ArrayLike) -> float | np.ndarray:
    """E[X(t)]: expected repeat purchases in t periods for a just-acquired customer (eq. 7)."""
    ts = _horizon("t", t)
    z = ts / (params.alpha + ts)
    out = np.maximum(_alive_mean(params.a, params.b, params.r, 0.0, z), 0.0)
    return float(out) if np.ndim(out) == 0 else out


def simulate_with_holdout(
    params: BgNbdParams, n: int, T: ArrayLike, holdout: float, rng: Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate n customers over [0, T] and also count their purchases in (T, T + holdout]."""
    if n <= 0:
        raise ValueError(f"n must be a positive number of customers, got {n}")
    Ts = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    if not np.all(np.isfinite(Ts)) or np.any(Ts < 0):
        raise ValueError("T must be finite and >= 0")
    if not (math.isfinite(holdout) and holdout >= 0):
        raise ValueError(f"holdout must be finite and >= 0, got {holdout!r}")
    lam = rng.gamma(shape=params.r, scale=1.0 / params.alpha, size=n)
    p = rng.beta(params.a, params.b, size=n)
    # The customer dies right after repeat purchase number `last`, a geometric count >= 1.
    last = rng.geometric(p)
    # Poisson arrivals without dropout over the whole window; a uniform split by length puts them
    # in calibration vs holdout, and dropout then truncates the sequence.
    total = Ts + holdout
    arrivals = rng.poisson(lam * total)
    share = np.divide(Ts, total, out=np.zeros(n), where=total > 0)
    in_calibration = rng.binomial(arrivals, share)
    x = np.minimum(in_calibration, last)
    x_holdout = np.minimum(arrivals - in_calibration, np.maximum(last - in_calibration, 0))
    # Given k arrivals in [0, T], the j-th lies at T times the j-th of k sorted uniforms,
    # i.e. T * Beta(j, k - j + 1).
    repeat = x > 0
    t_x = np.zeros(n)
    if np.any(repeat):
        k, j = in_calibration[repeat], x[repeat]
        t_x[repeat] = Ts[repeat] * rng.beta(j, k - j + 1)
    return x.astype(float), t_x, Ts, x_holdout.astype(float)


def simulate(
    params: BgNbdParams, n: int, T: ArrayLike, rng: Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate (x, t_x, T) for n customers from the BG/NBD generative process."""
    x, t_x, Ts, _ = simulate_with_holdout(params, n, T, 0.0, rng)
    return x, t_x, Ts


# --- Gamma-Gamma -------------------------------------------------------------------------------


def _gg_objective(
    x: np.ndarray, m: np.ndarray, penalizer: float
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """Mean negative log-density of the observed mean spends, with gradient over log-params."""
    n = x.size
    log_m, log_x = np.log(m), np.log(x)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, v = np.exp(theta)
        px = p * x
        log_vmx = np.log(v + m * x)
        # x * mean spend given nu is Gamma(px, nu); mixing nu over Gamma(q, v) gives this density.
        ll = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * math.log(v)
            + (px - 1.0) * log_m
            + px * log_x
            - (px + q) * log_vmx
        )
        psi_pxq = digamma(px + q)
        d_p = x * (psi_pxq - digamma(px) + log_m + log_x - log_vmx)
        d_q = psi_pxq - digamma(q) + math.log(v) - log_vmx
        d_v = q / v - (px + q) / (v + m * x)
        params = np.array([p, q, v])
        grad_params = np.array([d_p.sum(), d_q.sum(), d_v.sum()])
        value = -ll.sum() / n + penalizer * float(np.sum(params**2))
        grad = -grad_params * params / n + 2.0 * penalizer * params**2
        return float(value), grad

    return objective


def fit_gamma_gamma(x: ArrayLike, m: ArrayLike, *, penalizer: float = 0.0) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit on the customers with x > 0 and m > 0."""
    xs, ms = _spend_inputs(x, m)
    if not (math.isfinite(penalizer) and penalizer >= 0):
        raise ValueError(f"penalizer must be a finite number >= 0, got {penalizer!r}")
    keep = (xs > 0) & (ms > 0)
    if not np.any(keep):
        raise ValueError("no customer with x > 0 and m > 0 to fit the spend model on")
    xs, ms = xs[keep], ms[keep]
    # q > 1 is what a finite mean needs; v is on the scale of the spend, so start near it.
    scale = float(np.mean(ms))
    starts = [np.zeros(3), np.log([1.0, 2.0, scale]), np.log([5.0, 3.0, 2.0 * scale])]
    theta, _, _ = _minimize_logspace(_gg_objective(xs, ms, penalizer), starts)
    p, q, v = (float(val) for val in np.exp(theta))
    return GammaGammaParams(p=p, q=q, v=v)


def expected_spend(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> np.ndarray:
    """Conditional expected mean transaction value; the population mean where x == 0."""
    xs, ms = _spend_inputs(x, m)
    p, q, v = params.p, params.q, params.v
    if q <= 1.0 and np.any(xs == 0):
        raise ValueError("population mean spend p*v/(q-1) is undefined for q <= 1 (x == 0 rows)")
    # A credibility-weighted mix of the population mean p*v/(q-1) and the customer's own mean m;
    # at x == 0 the formula is exactly the population mean.
    return p * (v + ms * xs) / (p * xs + q - 1.0)


# --- CLV ---------------------------------------------------------------------------------------


def clv(
    bg: BgNbdParams,
    gg: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    m: ArrayLike,
    *,
    horizon_periods: float,
    discount_rate: float = 0.01,
    step: float = 1.0,
) -> np.ndarray:
    """Discounted expected value of each customer's purchases over the next `horizon_periods`."""
    xs, txs, Ts = _customers(x, t_x, T)
    _check_positive("horizon_periods", horizon_periods)
    _check_positive("step", step)
    if not (math.isfinite(discount_rate) and discount_rate > -1.0):
        raise ValueError(f"discount_rate must be finite and > -1, got {discount_rate!r}")
    spend = expected_spend(gg, xs, m)
    steps = math.ceil(horizon_periods / step - 1e-9)
    total = np.zeros_like(xs)
    before = np.zeros_like(xs)
    for k in range(1, steps + 1):
        # The last step is cut at the horizon when it is not a whole number of steps.
        upto = expected_purchases(bg, min(k * step, horizon_periods), xs, txs, Ts)
        total += (upto - before) * spend / (1.0 + discount_rate) ** k
        before = upto
    return total
