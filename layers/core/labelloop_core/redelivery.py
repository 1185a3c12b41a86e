"""How long a DetectQueue message waits before it is tried again (DESIGN §10): Detect sends a message
that met a model unable to take it back to the queue with a delay.

A module apart from `labelloop_core.model_control` (the controller's decisions and the running
intervals' cost): Detect needs only these delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable

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
