"""The local queue listener's idle back-off, as the Functions host's: doubled after each empty
receive up to maxPollingInterval, each step below it randomised by +-20 %."""

from __future__ import annotations

import random

from shared.local.queues import MIN_POLL_S, idle_wait


def test_the_back_off_doubles_up_to_the_maximum_with_jitter_below_it() -> None:
    delay, waits = MIN_POLL_S, []
    for _ in range(6):
        delay, wait = idle_wait(delay, 0.5, lambda lo, hi: hi)      # the largest jitter
        waits.append(round(wait, 3))
    assert waits == [0.24, 0.48, 0.5, 0.5, 0.5, 0.5]
    delay, wait = idle_wait(MIN_POLL_S, 0.5, lambda lo, hi: lo)
    assert (delay, round(wait, 3)) == (0.2, 0.16)


def test_two_listeners_started_together_drift_apart() -> None:
    """Without the jitter every queue of a host polled at the same moments."""
    rng = random.Random(7)
    times = []
    for _ in range(2):
        t, delay = 0.0, MIN_POLL_S
        for _ in range(3):
            delay, wait = idle_wait(delay, 0.5, rng.uniform)
            t += wait
        times.append(t)
    assert times[0] != times[1]
    assert all(0.8 * (0.2 + 0.4) + 0.5 <= t <= 1.2 * (0.2 + 0.4) + 0.5 for t in times)
