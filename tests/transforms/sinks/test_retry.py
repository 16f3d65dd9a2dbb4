"""The sinks' retry budget: jittered backoff doubling from 0.2 s to 5 s, for so many seconds."""

import pytest

from transforms.sinks.retry import RetryBudget


@pytest.mark.unit
def test_the_retry_budget_backs_off_and_stops_at_its_end():
    now = [0.0]
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    budget = RetryBudget(60, clock=lambda: now[0], sleep=sleep)
    while budget.wait("refused"):
        pass
    assert 60 <= now[0] < 60 + 1e-9  # the last wait ends at the budget, not beyond
    assert 0.1 <= waits[0] <= 0.3 and max(waits) <= 7.5  # 0.2 s doubling to 5 s, +-50%
    assert budget.failures == len(waits) + 1
    assert not RetryBudget(0, sleep=sleep).wait("refused")  # 0: no retry at all
