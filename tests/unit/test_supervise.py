"""`rtml run` restarts what dies, with backoff (rtml/supervise.py), on real child processes."""

from __future__ import annotations

from rtml.supervise import HEALTHY_AFTER_S, MAX_DELAY_S, restart_delay


def test_backoff_doubles_up_to_a_cap_and_resets_after_a_healthy_minute() -> None:
    assert [restart_delay(n, 0.5) for n in range(7)] == [1, 2, 4, 8, 16, MAX_DELAY_S, MAX_DELAY_S]
    assert restart_delay(6, HEALTHY_AFTER_S) == 1
