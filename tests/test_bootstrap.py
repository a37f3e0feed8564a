"""qbench.stats.bootstrap: the array bootstrap draws what random.Random(seed) draws, so its intervals equal the
draw-by-draw reference (the implementation before it was vectorized, kept here) to the bit."""

import random

import pytest

from qbench.stats.bootstrap import ratio_of_medians_interval, seeded_generator
from qbench.stats.summary import percentile


def reference_interval(numerator, denominator, resamples, confidence, seed=0):
    rng = random.Random(seed)

    def medians(values):
        n = len(values)
        picks = [values[int(rng.random() * n)] for _ in range(resamples * n)]
        out = []
        for start in range(0, resamples * n, n):
            chunk = sorted(picks[start:start + n])
            out.append((chunk[n // 2 - 1] + chunk[n // 2]) / 2 if n % 2 == 0 else chunk[n // 2])
        return out

    tops, bottoms = medians([float(v) for v in numerator]), medians([float(v) for v in denominator])
    ordered = sorted(t / b for t, b in zip(tops, bottoms))
    tail = (1.0 - confidence) / 2.0 * 100.0
    return percentile(ordered, tail), percentile(ordered, 100.0 - tail)


def test_generator_draws_the_standard_librarys_numbers():
    expected = random.Random(7)
    assert seeded_generator(7).random_sample(1000).tolist() == [expected.random() for _ in range(1000)]


@pytest.mark.parametrize("trial", range(40))
def test_interval_equals_the_draw_by_draw_reference(trial):
    rng = random.Random(trial)
    a = [rng.lognormvariate(0, 0.3) for _ in range(rng.randint(1, 30))]
    b = [rng.lognormvariate(0, 0.3) for _ in range(rng.randint(1, 30))]
    seed = rng.randint(0, 5)
    assert ratio_of_medians_interval(a, b, 300, 0.95, seed) == reference_interval(a, b, 300, 0.95, seed)


def test_interval_is_seeded_and_brackets_the_ratio():
    fp32, int8 = [10.0, 10.5, 9.8, 10.2], [5.0, 5.1, 4.9, 5.3]
    low, high = ratio_of_medians_interval(fp32, int8, 2000, 0.95, seed=0)
    assert low <= 10.1 / 5.05 <= high
    assert (low, high) == ratio_of_medians_interval(fp32, int8, 2000, 0.95, seed=0)
    assert (low, high) != ratio_of_medians_interval(fp32, int8, 2000, 0.95, seed=1)
