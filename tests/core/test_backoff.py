"""binder.backoff and the retry policy built on it."""

import math

import pytest

from binder.backoff import Backoff
from binder.dispatch import RetryPolicy


def test_waits_grow_exponentially_up_to_the_maximum() -> None:
    backoff = Backoff(1.0, 2.0, 10.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay(0) == 0.0


def test_jitter_only_shortens_a_wait_and_by_at_most_its_fraction() -> None:
    backoff = Backoff(1.0, 2.0, 10.0, jitter=0.2)
    assert backoff.delay(3, rng=lambda: 0.0) == 4.0
    assert backoff.delay(3, rng=lambda: 1.0) == pytest.approx(3.2)
    assert all(3.2 <= backoff.delay(3) <= 4.0 for _ in range(200))


def test_a_huge_number_of_failures_does_not_overflow() -> None:
    assert Backoff(0.5, 2.0, 30.0, jitter=0.0).delay(100_000) == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"maximum": math.inf}, {"multiplier": math.nan}, {"jitter": 1.5}],
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)


def test_retry_policy_waits_follow_its_backoff_settings() -> None:
    policy = RetryPolicy(
        max_attempts=4, backoff_initial=0.5, backoff_multiplier=3.0, backoff_max=2.0
    )
    assert [policy.delay(n, rng=lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.5, 2.0]
    assert 0.4 <= policy.delay(1) <= 0.5
