"""qbench.stats.bootstrap: the array bootstrap draws what random.Random(seed) draws, so its intervals equal the
draw-by-draw ones to the bit."""

import random

import pytest

from qbench.stats.bootstrap import ratio_of_medians_interval, seeded_generator


def test_generator_draws_the_standard_librarys_numbers():
    expected = random.Random(7)
    assert seeded_generator(7).random_sample(1000).tolist() == [expected.random() for _ in range(1000)]


@pytest.mark.parametrize("trial", range(40))
def test_array_interval_equals_the_draw_by_draw_one(trial):
    rng = random.Random(trial)
    a = [rng.lognormvariate(0, 0.3) for _ in range(rng.randint(1, 30))]
    b = [rng.lognormvariate(0, 0.3) for _ in range(rng.randint(1, 30))]
    seed = rng.randint(0, 5)
    drawn = ratio_of_medians_interval(a, b, 300, 0.95, seed, arrays=False)
    assert ratio_of_medians_interval(a, b, 300, 0.95, seed, arrays=True) == drawn


def test_interval_is_seeded_and_brackets_the_ratio():
    fp32, int8 = [10.0, 10.5, 9.8, 10.2], [5.0, 5.1, 4.9, 5.3]
    low, high = ratio_of_medians_interval(fp32, int8, 2000, 0.95, seed=0)
    assert low <= 10.1 / 5.05 <= high < 2.2
    assert (low, high) == ratio_of_medians_interval(fp32, int8, 2000, 0.95, seed=0)
    assert (low, high) != ratio_of_medians_interval(fp32, int8, 2000, 0.95, seed=1)
