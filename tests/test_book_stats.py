"""pspnet_lite.book.stats, the book's statistics helper, against scipy.stats on fixtures."""
import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pspnet_lite.book import stats
from pspnet_lite.book.stats import Claim, decide_claims, holm, paired, t_cdf, t_quantile


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 8, 29])
def test_t_distribution_equals_scipy(df):
    for t in (-7.0, -2.0, -0.3, 0.0, 0.5, 1.0, 2.0, 4.3, 12.0):
        assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-12)
    for q in (0.025, 0.5, 0.9, 0.975, 0.995):
        assert t_quantile(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), abs=1e-9)


def test_the_two_standard_error_rule_with_three_seeds_fires_far_more_than_five_percent():
    assert t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    assert 2 * (1 - t_cdf(2.0, 2)) == pytest.approx(0.1835, abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_paired_equals_ttest_rel_and_the_t_interval(seed):
    rng = np.random.default_rng(seed)
    n = 3 + seed
    a = rng.normal(70, 2, n)
    b = a - rng.normal(0.8, 1.5, n)
    p = paired(dict(enumerate(a)), dict(enumerate(b)))
    ref = scipy_stats.ttest_rel(a, b)
    assert p.t == pytest.approx(ref.statistic, rel=1e-12)
    assert p.p == pytest.approx(ref.pvalue, abs=1e-12)
    d = a - b
    half = scipy_stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
    assert p.ci == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-9)
    assert p.sd == pytest.approx(d.std(ddof=1)) and p.df == n - 1 and p.n == n
    # the interval excludes 0 exactly when the two-sided test rejects at 5%
    assert (p.ci[0] > 0 or p.ci[1] < 0) == (ref.pvalue < 0.05)


def test_paired_uses_only_the_shared_seeds():
    p = paired({0: 1.0, 1: 2.0, 2: 4.0, 7: 100.0}, {0: 0.0, 1: 0.5, 2: 1.0, 9: -100.0})
    assert p.seeds == (0, 1, 2) and p.differences == (1.0, 1.5, 3.0)


def test_holm_equals_the_step_down_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.2, 0.001]) == pytest.approx([0.2, 0.002])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 capped at 1, then monotone


def _scores():
    rng = np.random.default_rng(3)
    seeds = range(10, 15)
    base = {s: 60 + rng.normal() for s in seeds}
    return {"baseline": {"miou": base},
            "B1": {"miou": {s: base[s] + 5 + 0.5 * rng.normal() for s in seeds}},  # clearly better
            "B2": {"miou": {s: base[s] - 4 + 0.5 * rng.normal() for s in seeds}},  # clearly worse
            "B3": {"miou": {s: base[s] + rng.normal() for s in seeds}}}  # the same


def test_decide_claims_verdicts_and_holm():
    scores = _scores()
    claims = [Claim("C1", "B1", "baseline", "miou", "Table 1"), Claim("C2", "B2", "baseline", "miou", "Table 1"),
              Claim("C3", "B3", "baseline", "miou", "Table 1")]
    results = decide_claims(claims, lambda row, metric: scores[row][metric], rows=list(scores))
    assert [r.verdict for r in results] == ["shown", "reversed", "not resolved"]
    ps = [scipy_stats.ttest_rel(list(scores[c.a]["miou"].values()), list(scores[c.b]["miou"].values())).pvalue
          for c in claims]
    assert [r.comparison.p for r in results] == pytest.approx(ps, abs=1e-12)
    assert [r.p_holm for r in results] == pytest.approx(holm(ps))
    d = results[0].as_dict()
    assert d["correction"] == "holm" and d["df"] == 4 and len(d["differences"]) == 5 and d["verdict"] == "shown"
    json.dumps(d)  # storable in a record
    assert "C1: B1 > baseline on miou" in stats.claims_table(results)


def test_holm_can_turn_an_uncorrected_finding_into_not_resolved():
    b = {s: 0.0 for s in range(5)}
    table = {"b": b, "a": dict(enumerate([1.0, 2.0, 0.5, 1.5, 0.4])),  # alone: p between 0.05/3 and 0.05
             "c": dict(enumerate([1.0, -1.0, 0.5, -0.5, 0.0])), "e": dict(enumerate([0.2, -0.2, 0.1, -0.1, 0.0]))}
    claims = [Claim("C1", "a", "b", "m", "x"), Claim("C2", "c", "b", "m", "x"), Claim("C3", "e", "b", "m", "x")]
    first = decide_claims(claims, lambda r, m: table[r], rows=list(table))[0]
    assert 0.05 / 3 < first.comparison.p < 0.05
    assert first.verdict_uncorrected == "shown" and first.verdict == "not resolved"
    assert first.p_holm == pytest.approx(3 * first.comparison.p)


def test_holm_runs_within_each_family():
    scores = _scores()
    claims = [Claim("C1", "B1", "baseline", "miou", "x", family="A"), Claim("C2", "B3", "baseline", "miou", "x",
                                                                           family="A"),
              Claim("C3", "B2", "baseline", "miou", "x", family="B")]
    res = decide_claims(claims, lambda row, metric: scores[row][metric], rows=list(scores))
    ps = [r.comparison.p for r in res]
    assert [r.p_holm for r in res] == pytest.approx(holm(ps[:2]) + [ps[2]])  # a family of one: no correction
    assert res[0].as_dict()["family"] == "A"


def test_a_claim_on_a_row_not_trained_is_one_line_naming_the_claim():
    scores = _scores()
    with pytest.raises(ValueError, match=r"claim C9: B1\+AVE > baseline on miou: row 'B1\+AVE' was not trained"):
        decide_claims([Claim("C9", "B1+AVE", "baseline", "miou", "Table 1")], lambda r, m: scores[r][m],
                      rows=list(scores))


def test_a_claim_with_one_seed_is_one_line_naming_the_claim():
    with pytest.raises(ValueError, match=r"claim C1: a > b on miou: 1 seed\(s\) with a score in both rows"):
        decide_claims([Claim("C1", "a", "b", "miou", "x")], lambda r, m: {0: 1.0}, rows=["a", "b"])


def test_mean_sd_is_the_sample_sd_and_format_pm_says_so():
    assert stats.mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert np.isnan(stats.mean_sd([5.0])[1])
    assert np.isnan(stats.mean_sd([])[0]) and stats.mean_sd([])[2] == 0
    assert stats.format_pm([1.0, 2.0, 3.0]) == "2.0 ± 1.0"


def test_an_old_record_without_per_seed_values_is_read_with_a_note(capsys):
    old = {"metrics": {"baseline": {"miou": 68.1, "miou_std": 0.6}}}
    assert stats.seed_values_of(old, "baseline", source="results/old.json") == {}
    assert "results/old.json holds no per-seed values" in capsys.readouterr().out
    new = {"per_seed": {"baseline": {"10": {"miou": 70.0}, "11": {"miou": 71.0}}}}
    assert stats.seed_values_of(new, "baseline") == {10: 70.0, 11: 71.0}
    with pytest.raises(ValueError, match="no row 'B1'"):
        stats.seed_values_of(new, "B1")


def test_differences_without_spread():
    none = paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert (none.mean, none.sd, none.p, none.ci) == (0.0, 0.0, 1.0, (0.0, 0.0))
    steady = paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert steady.p == 0.0 and steady.t == float("inf")


def test_require_seeds_names_the_claims_before_training():
    stats.require_seeds([Claim("C1", "a", "b", "miou", "x")], [20, 21])
    stats.require_seeds([], [20])  # no claim: one seed is fine
    with pytest.raises(ValueError, match=r"claims C1 need at least 2 seeds .*got seeds=\[20\]"):
        stats.require_seeds([Claim("C1", "a", "b", "miou", "x")], [20])
