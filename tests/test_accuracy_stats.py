"""qbench.stats.accuracy: exact McNemar, exact binomial draws, and the paired bootstrap interval of a top-1 delta."""

import math
import random
import subprocess
import sys

import pytest

from qbench.stats.accuracy import (binomial_draw, discordant_counts, mcnemar_exact, paired_bootstrap_ci,
                                   paired_comparison)


def test_discordant_counts():
    assert discordant_counts([1, 1, 0, 0, 1], [1, 0, 1, 0, 0]) == (2, 1)
    assert discordant_counts([True, False], [True, False]) == (0, 0)
    with pytest.raises(ValueError, match="length"):
        discordant_counts([1, 0], [1])


def test_mcnemar_exact_against_hand_computed_values():
    # 1 vs 9 discordant: P(X <= 1) for X ~ Bin(10, 1/2) is (1 + 10) / 1024; two-sided doubles it.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, abs=1e-15)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0  # the doubled tail exceeds 1: capped
    assert mcnemar_exact(0, 0) == 1.0
    # A large, lopsided table: the p-value is tiny but an exact, positive float.
    assert 0 < mcnemar_exact(2, 60) < 1e-14
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


@pytest.mark.parametrize("n, p", [(12, 0.3), (1000, 0.004), (1000, 0.3), (50_000, 0.02), (9, 0.85)])
def test_binomial_draws_have_the_binomial_mean_and_variance(n, p):
    rng = random.Random(7)
    draws = [binomial_draw(rng, n, p) for _ in range(20_000)]
    mean = sum(draws) / len(draws)
    variance = sum((x - mean) ** 2 for x in draws) / (len(draws) - 1)
    assert all(0 <= x <= n for x in draws)
    # 20 000 draws: the mean is within ~5 standard errors, the variance within 8%.
    assert abs(mean - n * p) < 5 * math.sqrt(n * p * (1 - p) / len(draws))
    assert variance == pytest.approx(n * p * (1 - p), rel=0.08)


@pytest.mark.parametrize("p", [0.2, 0.45])
def test_binomial_draws_follow_the_exact_pmf(p):
    n, count = 8, 40_000
    rng = random.Random(3)
    frequencies = [0] * (n + 1)
    for _ in range(count):
        frequencies[binomial_draw(rng, n, p)] += 1
    for k in range(n + 1):
        pmf = math.comb(n, k) * p**k * (1 - p) ** (n - k)
        assert frequencies[k] / count == pytest.approx(pmf, abs=0.01)


def test_binomial_draw_edges():
    rng = random.Random(0)
    assert binomial_draw(rng, 0, 0.5) == 0
    assert binomial_draw(rng, 10, 0.0) == 0
    assert binomial_draw(rng, 10, 1.0) == 10


def test_bootstrap_of_identical_vectors_is_a_point_at_zero():
    vector = [1, 0, 1, 1, 0] * 20
    assert paired_bootstrap_ci(vector, vector, seed=3) == (0.0, 0.0)


def test_bootstrap_is_seeded_and_brackets_the_observed_delta():
    correct = [1] * 70 + [0] * 30
    reference = [1] * 60 + [0] * 10 + [1] * 20 + [0] * 10  # gained 10 (60..69), lost 20 (70..89): delta -0.1
    first = paired_bootstrap_ci(correct, reference, seed=1)
    assert first == paired_bootstrap_ci(correct, reference, seed=1)
    assert first != paired_bootstrap_ci(correct, reference, seed=2)
    low, high = first
    assert low < -0.1 < high
    # sd of the delta is about sqrt((10 + 20) / 100 - 0.1²) / sqrt(100) ≈ 0.053: a 95% interval about ±0.105 wide.
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt((0.3 - 0.01) / 100), rel=0.15)


def test_bootstrap_interval_covers_the_true_delta_about_95_percent_of_the_time():
    """Samples of 300 pairs from a population whose true delta is +0.04 (gain 6%, loss 2%)."""
    rng = random.Random(11)
    covered, replications = 0, 300
    for replication in range(replications):
        kinds = rng.choices(["gain", "loss", "same_right", "same_wrong"], weights=[6, 2, 80, 12], k=300)
        correct = [kind in ("gain", "same_right") for kind in kinds]
        reference = [kind in ("loss", "same_right") for kind in kinds]
        low, high = paired_bootstrap_ci(correct, reference, seed=replication, resamples=1000)
        covered += low <= 0.04 <= high
    assert 0.90 <= covered / replications <= 0.99


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError):
        paired_bootstrap_ci([], [])
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1], [0], confidence=1.0)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1], [0], resamples=0)


def test_paired_comparison_summarizes_everything():
    correct = [1] * 50 + [0] * 50
    reference = [1] * 80 + [0] * 20  # lost 30, gained 0
    result = paired_comparison(correct, reference, seed=0)
    assert result["images"] == 100 and result["gained"] == 0 and result["lost"] == 30
    assert result["delta"] == pytest.approx(-0.3)
    assert result["ci"][1] < 0 and result["ci"][0] < -0.3 < result["ci"][1]
    assert result["mcnemar_p"] == pytest.approx(2 / 2**30)
    assert result["confidence"] == 0.95


def test_the_module_never_imports_torch():
    code = ("import sys, qbench.stats.accuracy; "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
