"""Inference on demand (DESIGN §10), as pure functions: what the ModelController does with the active
model, how long a message waits before it is tried again, and what the running intervals cost.

A Custom Labels model is billed per inference-unit hour while it is RUNNING, used or not. The
ModelController runs every minute (and on demand) and calls `decide` with what it sees:

| active model | work waiting | decision | Detect consumes |
|---|---|---|---|
| none yet (parameter `none`) | any | nothing to start | yes: images go to review (NO_MODEL) |
| not found | any | nothing (the images wait, the reason is reported) | no |
| STOPPED, TRAINING_COMPLETED | yes (or always on) | start it | no |
| STOPPED, TRAINING_COMPLETED | no | nothing | no |
| STARTING, STOPPING | any | wait | no |
| RUNNING | yes | nothing | yes |
| RUNNING | no, idle < ModelIdleMinutes | nothing | yes |
| RUNNING | no, idle ≥ ModelIdleMinutes | stop it (not during a promotion; never when always on) | no |
| FAILED | yes (or always on) | start again, at most every `FAILED_START_RETRY` | no |
| anything else (training, deleting, expired...) | any | nothing: it cannot run | no |

While a promotion is in progress (the training lock is STARTING: Promote starts the candidate and
switches to it once it runs), the controller never stops the active model and does not start a
stopped one: the candidate takes over.

"Detect consumes" is the Enabled state of the DetectQueue's event source mapping: a disabled mapping
does not poll, so waiting images are never received and `maxReceiveCount` is not burned.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

# Custom Labels project version statuses (DescribeProjectVersions).
RUNNING = "RUNNING"
STARTING = "STARTING"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
TRAINING_COMPLETED = "TRAINING_COMPLETED"
FAILED = "FAILED"
STARTABLE = frozenset({STOPPED, TRAINING_COMPLETED})
TRANSITIONS = frozenset({STARTING, STOPPING})
# What the controller reports instead of a status when there is no version to describe.
NO_MODEL = "NO_MODEL"  # the active-model parameter is `none`: no model trained yet
MISSING = "MISSING"  # the parameter names a version the project does not have (or may not be read)

FAILED_START_RETRY = timedelta(minutes=10)  # a model that failed to start is tried again this often

# Messages that met a model that could not take them (not running, throttled) are sent again with
# a delay: WAIT_BASE_SECONDS doubling per wait, with jitter, at most SQS's 900 s.
WAIT_BASE_SECONDS = 5
MAX_DELAY_SECONDS = 900
# A throttled message (the model runs, over its throughput, and Detect's call already tried again
# within the call) comes back soon: the model's capacity renews every second, and at the end of a burst
# a message delayed longer only leaves the model idle, so the backoff stays at 1-2 s
# (THROTTLE_BASE_SECONDS doubling, at most MAX_THROTTLE_DELAY_SECONDS). How hard the model is pressed
# is bounded by the consumers (the mapping's MaximumConcurrency), not by this delay.
THROTTLE_BASE_SECONDS = 1
MAX_THROTTLE_DELAY_SECONDS = 2


class Action(Enum):
    NONE = "none"
    START = "start"
    STOP = "stop"
    WAIT = "wait"


@dataclass(frozen=True)
class Situation:
    """What the controller sees at one tick."""

    model: str  # the active model's status, NO_MODEL or MISSING
    work: int  # messages in the DetectQueue: visible, in flight and delayed
    idle: timedelta  # since the last work (detection, or a message seen waiting)
    idle_limit: timedelta | None  # ModelIdleMinutes; None: always on (ModelIdleMinutes 0)
    promoting: bool = False  # Promote is starting a candidate to switch to
    start_retry_due: bool = True  # FAILED only: the last start request is at least FAILED_START_RETRY old

    @property
    def wanted(self) -> bool:
        """The model should run: work waits, or it is always on."""
        return self.work > 0 or self.idle_limit is None


@dataclass(frozen=True)
class Decision:
    action: Action
    consume: bool  # Detect's event source mapping enabled
    reason: str


def decide(situation: Situation) -> Decision:
    """The controller's decision for one tick (see the table in the module docstring)."""
    model, s = situation.model, situation
    waiting = f"{s.work} message(s) waiting" if s.work else "no work"
    if model == NO_MODEL:
        return Decision(Action.NONE, True, "no model yet: every image goes to review (NO_MODEL)")
    if model == MISSING:
        return Decision(Action.NONE, False, f"the active model cannot be found; {waiting} until it is fixed")
    if model == RUNNING:
        return _running(s, waiting)
    if model in TRANSITIONS:
        return Decision(Action.WAIT, False, f"model {model}; {waiting}")
    if model in STARTABLE:
        if not s.wanted:
            return Decision(Action.NONE, False, f"model {model}, no work")
        if s.promoting:
            return Decision(Action.WAIT, False, f"a promotion is starting the next model; {waiting}")
        why = waiting if s.work else "always on (ModelIdleMinutes 0)"
        return Decision(Action.START, False, f"model {model}, {why}: starting it")
    if model == FAILED:
        if not s.wanted:
            return Decision(Action.NONE, False, "model FAILED, no work")
        if s.promoting or not s.start_retry_due:
            return Decision(Action.WAIT, False, f"model FAILED; {waiting}; next start attempt later")
        return Decision(Action.START, False, f"model FAILED, {waiting}: starting it again")
    return Decision(Action.NONE, False, f"model {model} cannot run; {waiting}")


def _running(s: Situation, waiting: str) -> Decision:
    if s.work:
        return Decision(Action.NONE, True, f"model RUNNING, {waiting}")
    if s.idle_limit is None:
        return Decision(Action.NONE, True, "model RUNNING, always on (ModelIdleMinutes 0)")
    if s.promoting:
        return Decision(Action.NONE, True, "model RUNNING; a promotion is in progress: not stopped")
    idle, limit = _minutes(s.idle), _minutes(s.idle_limit)
    if s.idle >= s.idle_limit:
        return Decision(Action.STOP, False, f"model RUNNING, idle {idle} (limit {limit}): stopping it")
    return Decision(Action.NONE, True, f"model RUNNING, idle {idle} of {limit}")


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.1f} min"


def idle_limit(minutes: float) -> timedelta | None:
    """ModelIdleMinutes as a limit: 0 means always on (no limit)."""
    return None if minutes <= 0 else timedelta(minutes=minutes)


def wait_delay_seconds(waited: int, rng: Callable[[], float] = random.random) -> int:
    """DelaySeconds for a message that met a model unable to take it, after `waited` earlier waits:
    WAIT_BASE_SECONDS × 2^waited ± 25 % (so a burst does not come back all at once), at most 900 s."""
    base = WAIT_BASE_SECONDS * 2 ** min(max(waited, 0), 10)
    jittered = base * (0.75 + 0.5 * rng())
    return int(min(MAX_DELAY_SECONDS, max(1, round(jittered))))


def throttle_delay_seconds(waited: int, rng: Callable[[], float] = random.random) -> int:
    """DelaySeconds for a throttled message after `waited` earlier waits: THROTTLE_BASE_SECONDS ×
    2^waited ± 25 %, at most MAX_THROTTLE_DELAY_SECONDS."""
    base = THROTTLE_BASE_SECONDS * 2 ** min(max(waited, 0), 10)
    jittered = base * (0.75 + 0.5 * rng())
    return int(min(MAX_THROTTLE_DELAY_SECONDS, max(1, round(jittered))))


# --- running intervals and what they cost ----------------------------------------------------


@dataclass(frozen=True)
class RunInterval:
    """A model version RUNNING from `running_at` until `stopped_at` (None: still running)."""

    version_arn: str
    running_at: datetime
    stopped_at: datetime | None
    min_units: int
    max_units: int | None = None

    def overlap(self, start: datetime, end: datetime) -> timedelta:
        """How long it ran within [start, end) (an open interval runs until `end`)."""
        stop = end if self.stopped_at is None else min(self.stopped_at, end)
        return max(timedelta(0), stop - max(self.running_at, start))


@dataclass(frozen=True)
class Usage:
    """Running time and inference-unit hours of some intervals within a period."""

    running_hours: float
    inference_unit_hours: float
    max_inference_unit_hours: float  # if auto-scaling ran every interval at MaxInferenceUnits
    starts: int

    def cost(self, price_per_unit_hour: float) -> float:
        return round(self.inference_unit_hours * price_per_unit_hour, 2)

    def max_cost(self, price_per_unit_hour: float) -> float:
        return round(self.max_inference_unit_hours * price_per_unit_hour, 2)


def usage(runs: Iterable[RunInterval], start: datetime, end: datetime) -> Usage:
    """Running hours and inference-unit hours of `runs` within [start, end).

    Billing is per inference-unit hour while RUNNING: an interval of h hours at u units is h × u.
    With auto-scaling (MaxInferenceUnits) the number of units in use is not reported by
    DescribeProjectVersions: the minimum is counted, the maximum gives the upper bound."""
    running = units = most = 0.0
    starts = 0
    for run in runs:
        hours = run.overlap(start, end).total_seconds() / 3600
        if hours <= 0:
            continue
        starts += start <= run.running_at < end
        running += hours
        units += hours * run.min_units
        most += hours * (run.max_units or run.min_units)
    return Usage(round(running, 4), round(units, 4), round(most, 4), starts)


def month_of(moment: datetime) -> tuple[datetime, datetime]:
    """[first instant of the UTC month of `moment`, first instant of the next month)."""
    start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following
