"""The book's statistics: paired differences over seeds, a Student-t interval, a verdict per claim, Holm's correction.

Every chapter that compares training runs (04, 04b, 05, 06) declares its claims before it trains ("row A beats row
B on metric M", as the paper states it) and lets this module decide them from the per-seed scores:

* two rows trained with the same seeds are compared **seed by seed** (a seed fixes the initial weights, the data
  order and, on ContextScenes, the data sample for both rows): :math:`d_s = m^A_s - m^B_s`;
* the mean difference gets a **95% interval from Student's t with S - 1 degrees of freedom**,
  :math:`\\bar d \\pm t_{0.975, S-1}\\, s_d / \\sqrt{S}` with :math:`s_d` the sample standard deviation (ddof 1),
  and the two-sided p-value of the paired t-test (``scipy.stats.ttest_rel`` computes the same; the tests check it);
* a claim is **shown** when the difference is beyond zero in the claimed direction, **reversed** when it is beyond
  zero the other way, and **not resolved** otherwise, after **Holm's step-down correction** across the claims a
  chapter declares as one family (so the chance of any false "shown" or "reversed" in the family stays at 5%).

Why t and not a bootstrap: with 5 seeds a paired bootstrap has at most 126 distinct resamples and its
percentile interval is systematically too narrow (it divides by S, not S - 1, and ignores the uncertainty of the
spread); the t-interval is exact when the per-seed differences are normal and is the reviewer's default.

Why not "beyond two standard errors": with 3 seeds the paired t statistic has 2 degrees of freedom, and
:math:`P(|t_2| > 2) \\approx 0.18`; the 95% critical value is 4.30. :func:`t_quantile` gives it for any S.

The t distribution is computed here in closed form for integer degrees of freedom (Abramowitz and Stegun
26.7.3-4), so the package needs no SciPy; the tests compare it with ``scipy.stats``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Claim", "Paired", "ClaimResult", "t_cdf", "t_quantile", "mean_sd", "paired", "holm", "decide_claims",
           "format_pm", "claims_table", "seed_values_of", "require_seeds"]

VERDICTS = ("shown", "reversed", "not resolved")


def _t_abs_cdf(t: float, df: int) -> float:
    """P(|T| <= t) for Student's T with integer ``df`` >= 1 and t >= 0 (Abramowitz and Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:  # odd: 2/pi * (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= 2 * k / (2 * k + 1) * c2
            total += term
        return 2 / math.pi * (theta + (s * math.cos(theta) * total if df > 1 else 0.0))
    term, total = 1.0, 1.0  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
    for k in range(1, df // 2):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total


def t_cdf(t: float, df: int) -> float:
    """The CDF of Student's t with integer ``df`` >= 1 degrees of freedom."""
    if int(df) != df or df < 1:
        raise ValueError(f"df must be a whole number >= 1, got {df!r}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    a = _t_abs_cdf(abs(t), int(df))
    return 0.5 + a / 2 if t >= 0 else 0.5 - a / 2


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf` to 1e-12)."""
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q!r}")
    if q < 0.5:
        return -t_quantile(1 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def mean_sd(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation with ddof 1, count) of ``values``; the sd is nan for a single value, and both
    are nan for none (a table cell with nothing to show, e.g. a class absent from every validation image)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan"), int(v.size)


def format_pm(values: Sequence[float], digits: int = 1) -> str:
    """``"mean ± sd"`` over seeds with the sample sd (ddof 1), e.g. ``"74.4 ± 1.0"``; say "(sd, S seeds)" beside it."""
    m, sd, _ = mean_sd(values)
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


@dataclass(frozen=True)
class Paired:
    """A paired comparison of two rows over their shared seeds: differences ``a - b``."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    sd: float  # sample standard deviation of the differences (ddof 1)
    se: float  # sd / sqrt(n)
    df: int  # n - 1
    t: float
    p: float  # two-sided p-value of the paired t-test
    ci: tuple[float, float]  # the ``level`` interval of the mean difference, Student's t with df degrees of freedom
    level: float

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def half_width(self) -> float:
        return (self.ci[1] - self.ci[0]) / 2


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95, what: str = "the comparison") -> Paired:
    """Compare ``a`` and ``b`` (seed -> score) seed by seed over the seeds they share.

    Identical differences have no spread: all zero gives p = 1 (scipy returns nan), a constant non-zero difference
    p = 0, as the t statistic's limit.

    Raises a ValueError naming ``what`` when fewer than 2 seeds are shared (no spread, no interval)."""
    seeds = tuple(sorted(set(a) & set(b)))
    if len(seeds) < 2:
        raise ValueError(f"{what}: {len(seeds)} seed(s) with a score in both rows ({sorted(a)} vs {sorted(b)}); a "
                         "paired interval needs at least 2 (the book's claims use at least 5): train more seeds, or "
                         "score on more validation images if a class is absent from some")
    d = np.array([a[s] - b[s] for s in seeds], dtype=float)
    n, mean = len(d), float(d.mean())
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    df = n - 1
    t = mean / se if se > 0 else (math.copysign(math.inf, mean) if mean != 0 else 0.0)
    p = 2 * (1 - t_cdf(abs(t), df)) if math.isfinite(t) else 0.0
    half = t_quantile(0.5 + level / 2, df) * se
    return Paired(seeds, tuple(float(x) for x in d), mean, sd, se, df, float(t), float(p), (mean - half, mean + half),
                  level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): reject where the adjusted p is below alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Claim:
    """A claim declared before training: row ``a`` scores higher than row ``b`` on ``metric``.

    ``name`` is a short id ("C1"), ``source`` the paper's sentence or table row it comes from, ``metric`` "miou" or a
    ContextScenes role ("regional", ...), ``why`` what mechanism the claim tests (optional), ``family`` the group of
    claims Holm's correction runs across (one question, declared with the claims)."""

    name: str
    a: str
    b: str
    metric: str
    source: str
    why: str = ""
    family: str = "claims"

    def __str__(self) -> str:
        return f"{self.name}: {self.a} > {self.b} on {self.metric}"


@dataclass(frozen=True)
class ClaimResult:
    """A claim, its paired comparison, its Holm-adjusted p-value and its verdicts (with and without Holm)."""

    claim: Claim
    comparison: Paired
    p_holm: float
    verdict: str  # after Holm across the family: shown, reversed or not resolved
    verdict_uncorrected: str  # the 95% interval alone

    def as_dict(self) -> dict:
        c = self.comparison
        return {**asdict(self.claim), "seeds": list(c.seeds), "differences": list(c.differences), "mean": c.mean,
                "sd": c.sd, "se": c.se, "df": c.df, "t": c.t, "p": c.p, "ci95": list(c.ci), "p_holm": self.p_holm,
                "correction": "holm", "verdict": self.verdict, "verdict_uncorrected": self.verdict_uncorrected}


def _verdict(mean: float, significant: bool) -> str:
    return ("shown" if mean > 0 else "reversed") if significant else "not resolved"


def require_seeds(claims: Sequence[Claim], seeds: Sequence[int]) -> None:
    """Before training: a ValueError naming the claims when fewer than 2 seeds are given (no interval is possible)."""
    if claims and len(seeds) < 2:
        raise ValueError(f"claims {', '.join(c.name for c in claims)} need at least 2 seeds (the book's defaults use "
                         f"5); got seeds={list(seeds)}: pass e.g. -p seeds 20,21,22,23,24")


def decide_claims(claims: Sequence[Claim], values: Callable[[str, str], Mapping[int, float]], rows: Sequence[str],
                alpha: float = 0.05) -> list[ClaimResult]:
    """Decide claims from per-seed scores, with Holm's correction across each family (``Claim.family``).

    ``values(row, metric)`` returns ``{seed: score}``; ``rows`` are the rows that were trained. A claim that names a
    row not in ``rows``, or whose rows share fewer than 2 seeds, is a ValueError naming the claim."""
    names = [c.name for c in claims]
    if len(set(names)) != len(names):
        raise ValueError(f"claim names must be unique, got {names}")
    comparisons = []
    for c in claims:
        missing = [r for r in (c.a, c.b) if r not in rows]
        if missing:
            raise ValueError(f"claim {c}: row {missing[0]!r} was not trained (rows: {', '.join(rows)}); add it to "
                             "the rows or drop the claim")
        comparisons.append(paired(values(c.a, c.metric), values(c.b, c.metric), 1 - alpha, what=f"claim {c}"))
    adjusted = [0.0] * len(claims)
    for family in dict.fromkeys(c.family for c in claims):
        members = [i for i, c in enumerate(claims) if c.family == family]
        for i, q in zip(members, holm([comparisons[i].p for i in members])):
            adjusted[i] = q
    return [ClaimResult(c, p, q, _verdict(p.mean, q < alpha), _verdict(p.mean, p.p < alpha))
            for c, p, q in zip(claims, comparisons, adjusted)]


def claims_table(results: Sequence[ClaimResult], paper: Mapping[str, float] | None = None) -> str:
    """The claims as a text table: mean difference, 95% interval, S, p, Holm's p and the verdict."""
    lines = [f"{'claim':44s} {'paper':>6s} {'mean':>7s} {'95% interval':>17s} {'S':>2s} {'p':>7s} {'Holm p':>7s}  "
             "verdict"]
    family = None
    for r in results:
        if r.claim.family != family:
            family = r.claim.family
            lines.append(f"-- family: {family} (Holm across its {sum(x.claim.family == family for x in results)})")
        c, ref = r.comparison, (paper or {}).get(r.claim.name)
        ref_txt = f"{ref:+6.2f}" if ref is not None else f"{'-':>6s}"
        lines.append(f"{str(r.claim):44s} {ref_txt} {c.mean:+7.2f} [{c.ci[0]:+7.2f}, {c.ci[1]:+7.2f}] {c.n:2d} "
                     f"{c.p:7.4f} {r.p_holm:7.4f}  {r.verdict}")
    return "\n".join(lines)


def seed_values_of(record: Mapping, row: str, metric: str = "miou", source: str = "the record") -> dict[int, float]:
    """``{seed: score}`` of ``row`` on ``metric`` from a stored record's ``per_seed`` field (chapter 05's format).

    A record written before per-seed values were stored has none: the note says so and an empty dict comes back,
    so a reader of old records gets a clear message rather than a crash."""
    per_seed = record.get("per_seed")
    if per_seed is None:
        print(f"note: {source} holds no per-seed values (an older format: means and spreads only), so its "
              "comparisons cannot be recomputed; re-run its chapter for a record with them")
        return {}
    if row not in per_seed:
        raise ValueError(f"{source}: no row {row!r} in its per-seed values (rows: {', '.join(per_seed)})")
    return {int(s): float(v[metric]) for s, v in per_seed[row].items() if v.get(metric) is not None}
