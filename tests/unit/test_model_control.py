"""Inference on demand, the pure part: the controller's decision for every model state × queue state ×
idle time × promotion lock, the waiting delays, and what running intervals cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labelloop_core.model_control import (
    MISSING,
    NO_MODEL,
    Action,
    RunInterval,
    Situation,
    decide,
    idle_limit,
    month_of,
    usage,
)
from labelloop_core.redelivery import MAX_DELAY_SECONDS, throttle_delay_seconds, wait_delay_seconds

LIMIT = timedelta(minutes=15)
RECENT = timedelta(minutes=3)  # idle, but less than ModelIdleMinutes
LONG = timedelta(minutes=15)  # idle for exactly ModelIdleMinutes: time to stop

WAIT, START, STOP, NONE = Action.WAIT, Action.START, Action.STOP, Action.NONE

# (model, work waiting, idle, always on, promoting) -> (action, Detect consumes)
MATRIX = [
    # no model yet: images go to review; nothing to start
    (NO_MODEL, 0, RECENT, False, False, NONE, True),
    (NO_MODEL, 7, LONG, False, False, NONE, True),
    (NO_MODEL, 7, LONG, True, False, NONE, True),
    # the active model cannot be found: images wait for an operator
    (MISSING, 0, LONG, False, False, NONE, False),
    (MISSING, 7, LONG, False, False, NONE, False),
    # stopped (or never started): start when work waits or when always on
    ("STOPPED", 0, LONG, False, False, NONE, False),
    ("STOPPED", 7, LONG, False, False, START, False),
    ("STOPPED", 0, LONG, True, False, START, False),
    ("STOPPED", 7, LONG, False, True, WAIT, False),  # Promote is starting the next model
    ("TRAINING_COMPLETED", 0, RECENT, False, False, NONE, False),
    ("TRAINING_COMPLETED", 1, RECENT, False, False, START, False),
    ("TRAINING_COMPLETED", 0, RECENT, True, False, START, False),
    # in transition: wait, images wait
    ("STARTING", 0, LONG, False, False, WAIT, False),
    ("STARTING", 7, LONG, False, False, WAIT, False),
    ("STARTING", 7, LONG, False, True, WAIT, False),
    ("STOPPING", 0, LONG, False, False, WAIT, False),
    ("STOPPING", 7, LONG, False, False, WAIT, False),
    # running: consume; stop only when idle long enough, never during a promotion or when always on
    ("RUNNING", 7, LONG, False, False, NONE, True),
    ("RUNNING", 7, LONG, False, True, NONE, True),
    ("RUNNING", 0, RECENT, False, False, NONE, True),
    ("RUNNING", 0, LONG, False, False, STOP, False),
    ("RUNNING", 0, LONG, False, True, NONE, True),
    ("RUNNING", 0, LONG * 100, True, False, NONE, True),
    # failed: start again when wanted (see the retry test), images wait meanwhile
    ("FAILED", 0, LONG, False, False, NONE, False),
    ("FAILED", 7, LONG, False, False, START, False),
    ("FAILED", 0, LONG, True, False, START, False),
    ("FAILED", 7, LONG, False, True, WAIT, False),
    # statuses that never run
    ("TRAINING_IN_PROGRESS", 7, LONG, False, False, NONE, False),
    ("TRAINING_FAILED", 7, LONG, False, False, NONE, False),
    ("DELETING", 0, LONG, True, False, NONE, False),
    ("EXPIRED", 7, LONG, False, False, NONE, False),
]


@pytest.mark.parametrize(
    ("model", "work", "idle", "always_on", "promoting", "action", "consume"),
    MATRIX,
    ids=[
        f"{m}-{'work' if w else 'empty'}-{int(i.total_seconds() // 60)}min"
        f"{'-always-on' if a else ''}{'-promoting' if p else ''}"
        for m, w, i, a, p, *_ in MATRIX
    ],
)
def test_the_controller_decides_for_every_model_and_queue_state(
    model: str, work: int, idle: timedelta, always_on: bool, promoting: bool, action: Action, consume: bool
) -> None:
    situation = Situation(model, work, idle, None if always_on else LIMIT, promoting)

    decision = decide(situation)

    assert (decision.action, decision.consume) == (action, consume), decision.reason
    assert decision.reason


def test_a_running_model_stops_exactly_when_the_idle_window_is_over() -> None:
    just_before = decide(Situation("RUNNING", 0, LIMIT - timedelta(seconds=1), LIMIT))
    at_limit = decide(Situation("RUNNING", 0, LIMIT, LIMIT))
    assert (just_before.action, at_limit.action) == (NONE, STOP)


def test_a_failed_model_is_started_again_only_once_the_retry_delay_passed() -> None:
    too_soon = decide(Situation("FAILED", 3, RECENT, LIMIT, start_retry_due=False))
    due = decide(Situation("FAILED", 3, RECENT, LIMIT, start_retry_due=True))
    assert (too_soon.action, due.action) == (WAIT, START)


def test_the_start_of_a_stopped_model_never_enables_detection_before_it_runs() -> None:
    decisions = [decide(Situation(status, 5, RECENT, LIMIT)) for status in ("STOPPED", "STARTING")]
    assert [d.consume for d in decisions] == [False, False]
    assert decide(Situation("RUNNING", 5, RECENT, LIMIT)).consume


def test_zero_idle_minutes_means_always_on() -> None:
    assert idle_limit(0) is None
    assert idle_limit(15) == timedelta(minutes=15)
    assert idle_limit(0.5) == timedelta(seconds=30)


def test_waiting_delays_double_with_jitter_and_stay_within_sqs_limits() -> None:
    middle = [wait_delay_seconds(n, lambda: 0.5) for n in range(12)]
    assert middle[:5] == [5, 10, 20, 40, 80]
    assert max(middle) == MAX_DELAY_SECONDS == 900
    low, high = wait_delay_seconds(2, lambda: 0.0), wait_delay_seconds(2, lambda: 0.999)
    assert (low, high) == (15, 25)  # 20 s ± 25 %: a throttled burst does not come back at once
    assert wait_delay_seconds(-3, lambda: 0.0) >= 1


def test_throttled_delays_stay_short_so_a_burst_drains_at_the_model_capacity() -> None:
    middle = [throttle_delay_seconds(n, lambda: 0.5) for n in range(12)]
    assert middle[:4] == [1, 2, 2, 2] and max(middle) == 2  # the model's capacity renews every second
    assert throttle_delay_seconds(-1, lambda: 0.0) == 1


START_OF_DECEMBER = datetime(2026, 12, 1, tzinfo=UTC)


def test_usage_counts_inference_unit_hours_within_the_period_only() -> None:
    runs = [
        # ran across the month boundary: only December's 2 hours count
        RunInterval("v1", datetime(2026, 11, 30, 22, tzinfo=UTC), datetime(2026, 12, 1, 2, tzinfo=UTC), 1),
        # 2 units for 30 minutes
        RunInterval(
            "v1", datetime(2026, 12, 3, 10, tzinfo=UTC), datetime(2026, 12, 3, 10, 30, tzinfo=UTC), 2
        ),
        # still running: counted until the end of the period asked for
        RunInterval("v2", datetime(2026, 12, 5, 8, tzinfo=UTC), None, 1, max_units=3),
    ]
    end = datetime(2026, 12, 5, 9, tzinfo=UTC)

    used = usage(runs, START_OF_DECEMBER, end)

    assert used.running_hours == 2 + 0.5 + 1
    assert used.inference_unit_hours == 2 + 1 + 1
    assert used.max_inference_unit_hours == 2 + 1 + 3  # auto-scaling's upper bound
    assert used.starts == 2  # the November start is November's
    assert used.cost(4.0) == 16.0
    assert used.max_cost(4.0) == 24.0


def test_months_are_utc_calendar_months() -> None:
    assert month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == (
        START_OF_DECEMBER,
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert month_of(datetime(2027, 2, 14, tzinfo=UTC))[1] == datetime(2027, 3, 1, tzinfo=UTC)
