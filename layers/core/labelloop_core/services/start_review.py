"""StartReview: open one review per image version and model in the review backend, within the budget.

The review (loop) name is derived from the image identity and model ARN, so duplicate or replayed
ReviewRequested events find the review (in the ledger, or through the backend's own duplicate
check) and open nothing new. The review is opened before the ledger is written: a crash in between
is repaired by the retry, which finds the existing review and completes the ledger.

Only an image version that the key still names is reviewed: a reviewer (A2I's worker UI shows the
key's latest version) must never label another version than the one detected. A key uploaded again
or deleted since is recorded as SUPERSEDED; the new version has its own detection and review.

The backend (`REVIEW_BACKEND`): `builtin` opens a task in labelloop's own task table (the review API
serves it to reviewers), `a2i` starts an Amazon A2I human loop. With a review budget
(`MAX_REVIEWS_PER_DAY` > 0) every request first waits in the ledger (`labelloop_core.ledger`); waiting
reviews are then admitted against the UTC day's budget in priority order (lowest confidence first)
and opened, by the request's own invocation and by the scheduled run (`OpenWaitingReviews`), which
opens what waits as soon as a new day frees budget. None is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from labelloop_core import config, ledger, naming, observability, review_tasks
from labelloop_core.config import ConfigError, setting
from labelloop_core.geometry import PixelBox
from labelloop_core.inbound.review_requested import ReviewRequested
from labelloop_core.inbound.schedule import ScheduleTick
from labelloop_core.ports import (
    ObjectStore,
    OpenedReview,
    ReviewBackend,
    ReviewLedger,
    ReviewQueue,
    TaskStore,
)
from labelloop_core.review_input import build_input_content
from labelloop_core.review_request import ReviewRequest
from labelloop_core.schemas import validate

DRAIN_BATCH = 25  # waiting reviews one invocation admits at most (the schedule takes the rest)


@dataclass(frozen=True, kw_only=True)
class StartReviewSettings:
    bucket_name: str = config.bucket_name()
    ledger_table: str = config.ledger_table()
    labels: tuple[str, ...] = config.label_names()
    review_backend: str = setting("REVIEW_BACKEND", config.choice(*config.REVIEW_BACKENDS), "builtin")
    flow_definition_arn: str | None = setting("FLOW_DEFINITION_ARN", config.arn, None)
    task_table: str | None = setting("TASK_TABLE", config.text, None)
    task_count: int = setting("TASK_COUNT", config.integer_between(1, 3), 1)
    task_lifetime_seconds: int = setting(
        "TASK_AVAILABILITY_LIFETIME_SECONDS", config.integer_between(60, 864000), 86400
    )
    max_reviews_per_day: int = setting("MAX_REVIEWS_PER_DAY", config.integer_between(0, 1_000_000), 0)

    def check(self) -> None:
        if self.review_backend == "a2i" and not self.flow_definition_arn:
            raise ConfigError("FLOW_DEFINITION_ARN", "is required when REVIEW_BACKEND is a2i")
        if self.review_backend == "builtin" and not self.task_table:
            raise ConfigError("TASK_TABLE", "is required when REVIEW_BACKEND is builtin")


@dataclass(frozen=True)
class StartReviewOutcome:
    loop_name: str
    image_id: str
    started: bool  # False when the review already existed, or none was opened (see status)
    status: str = "OPEN"  # OPEN | WAITING | IGNORED | SUPERSEDED
    reason: str | None = None
    opened_waiting: int = 0  # reviews of other requests this invocation opened from the queue

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "loopName": self.loop_name,
            "imageId": self.image_id,
            "started": self.started,
        }
        if self.status != "OPEN":
            result.update(status=self.status, reason=self.reason)
        if self.opened_waiting:
            result["openedWaiting"] = self.opened_waiting
        return result


@dataclass(frozen=True)
class DrainOutcome:
    """The scheduled run: how many waiting reviews it opened, and how many still wait."""

    opened: int
    waiting: int
    budget_spent: bool

    def to_dict(self) -> dict[str, Any]:
        return {"opened": self.opened, "stillWaiting": self.waiting, "budgetSpent": self.budget_spent}


class TaskBackend:
    """The built-in backend: a review is a task of the task table, opened once per name."""

    def __init__(
        self, store: TaskStore, answers_needed: int, lifetime_seconds: int, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.answers_needed = answers_needed
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock

    def open(self, name: str, input_content: Mapping[str, Any], priority: float) -> OpenedReview:
        item = review_tasks.new_item(
            name, input_content, priority, self.answers_needed, self.clock(), self.lifetime_seconds
        )
        return OpenedReview(name, created=self.store.create(item))


class StartReviewService:
    settings_type: ClassVar[type[StartReviewSettings]] = StartReviewSettings

    def __init__(
        self,
        settings: StartReviewSettings,
        reviews: ReviewBackend,
        ledger: ReviewLedger,
        store: ObjectStore,
        queue: ReviewQueue | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.reviews = reviews
        self.ledger = ledger
        self.store = store
        self.queue = queue
        self.clock = clock or (lambda: datetime.now(UTC))
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: StartReviewSettings) -> StartReviewService:
        from labelloop_core.adapters.ledger import ReviewLedger as DynamoReviewLedger
        from labelloop_core.adapters.ledger import ReviewQueue as DynamoReviewQueue
        from labelloop_core.adapters.s3store import S3Store

        clock = lambda: datetime.now(UTC)  # noqa: E731
        reviews: ReviewBackend
        if settings.review_backend == "a2i":
            from labelloop_core.adapters.a2i_runtime import HumanLoops

            reviews = HumanLoops(str(settings.flow_definition_arn))
        else:
            from labelloop_core.adapters.review_tasks import TaskTable

            reviews = TaskBackend(
                TaskTable(str(settings.task_table)),
                settings.task_count,
                settings.task_lifetime_seconds,
                clock,
            )
        return cls(
            settings,
            reviews,
            DynamoReviewLedger(settings.ledger_table),
            S3Store(settings.bucket_name),
            DynamoReviewQueue(settings.ledger_table),
            clock,
        )

    def handle(self, request: ReviewRequested | ScheduleTick) -> StartReviewOutcome | DrainOutcome:
        if isinstance(request, ScheduleTick):
            return self.drain()
        return self.process(request.request)

    # -- one request --------------------------------------------------------------------------------
    def process(self, request: ReviewRequest) -> StartReviewOutcome:
        image = request.image
        loop_name = naming.human_loop_name(image, request.model_arn)
        if image.bucket != self.settings.bucket_name:
            return self._not_opened(
                loop_name, image.image_id, "IGNORED", f"bucket {image.bucket} is not the stack's"
            )
        if self.ledger.get_loop(loop_name) is not None:  # opened before: complete the ledger only
            return self._record_open(request, loop_name, started=False)
        if self.settings.max_reviews_per_day <= 0 or self.queue is None:
            return self._open(request, loop_name)
        if self.queue.enqueue(loop_name, request.to_detail(), request.priority, self.clock()):
            self.ledger.record_image(
                image, "REVIEW_WAITING", model_arn=request.model_arn, loop_name=loop_name
            )
            observability.count("ReviewsWaiting")
        opened, _ = self._admit_waiting(DRAIN_BATCH)
        others = len(opened) - (loop_name in opened)
        if loop_name in opened:
            own = opened[loop_name]
            return StartReviewOutcome(
                own.loop_name, own.image_id, own.started, own.status, own.reason, others
            )
        if self.ledger.get_loop(loop_name) is not None:  # opened meanwhile by another invocation
            return StartReviewOutcome(loop_name, image.image_id, False, opened_waiting=others)
        reason = f"the review budget of {self.settings.max_reviews_per_day} reviews a day is spent"
        self.log.info("review waits for budget", extra={"loop_name": loop_name, "reason": reason})
        return StartReviewOutcome(loop_name, image.image_id, False, "WAITING", reason, opened_waiting=others)

    def _open(self, request: ReviewRequest, loop_name: str) -> StartReviewOutcome:
        image = request.image
        current = self.store.current_version(image.key)
        if current is None or not current.is_version_of(image):
            return self._superseded(request, loop_name, "deleted" if current is None else "uploaded again")
        content = self._input_content(request)
        validate("a2i-input-content", content)
        started = self.reviews.open(loop_name, content, request.priority).created
        return self._record_open(request, loop_name, started)

    def _record_open(self, request: ReviewRequest, loop_name: str, started: bool) -> StartReviewOutcome:
        image = request.image
        self.ledger.record_loop(loop_name, "IN_PROGRESS", image_id=image.image_id)
        self.ledger.record_image(image, "IN_REVIEW", model_arn=request.model_arn, loop_name=loop_name)
        observability.count("HumanLoopsStarted" if started else "HumanLoopsAlreadyStarted")
        self.log.info(
            "review opened" if started else "review already open",
            extra={
                "loop_name": loop_name,
                "image_id": image.image_id,
                "backend": self.settings.review_backend,
            },
        )
        return StartReviewOutcome(loop_name, image.image_id, started)

    # -- the queue of reviews waiting for budget ----------------------------------------------------
    def drain(self) -> DrainOutcome:
        """The scheduled run: open what was admitted but not opened (a crash in between), then admit
        and open waiting reviews in priority order while the day's budget lasts."""
        if self.queue is None:
            return DrainOutcome(0, 0, False)
        opened, spent = self._admit_waiting(DRAIN_BATCH * 4)
        still = len(self.queue.waiting(ledger.WAITING, DRAIN_BATCH))
        observability.count("WaitingReviewsOpened", len(opened))
        return DrainOutcome(len(opened), still, spent)

    def _admit_waiting(self, limit: int) -> tuple[dict[str, StartReviewOutcome], bool]:
        """Open up to `limit` queued reviews; (outcome by review name, whether the budget ran out)."""
        assert self.queue is not None
        opened: dict[str, StartReviewOutcome] = {}
        for item in self.queue.waiting(ledger.ADMITTED, limit):  # admitted by an attempt that crashed
            opened[item.name] = self._open_waiting(item.name, item.detail)
        day = ledger.budget_day(self.clock())
        while len(opened) < limit:
            batch = self.queue.waiting(ledger.WAITING, min(DRAIN_BATCH, limit - len(opened)))
            if not batch:
                return opened, False
            for item in batch:
                admission = self.queue.admit(item.name, day, self.settings.max_reviews_per_day)
                if admission is ledger.Admission.BUDGET_SPENT:
                    return opened, True
                if admission is ledger.Admission.ADMITTED:
                    opened[item.name] = self._open_waiting(item.name, item.detail)
        return opened, False

    def _open_waiting(self, name: str, detail: Mapping[str, Any]) -> StartReviewOutcome:
        request = ReviewRequest.from_detail(detail)
        if self.ledger.get_loop(name) is None:
            outcome = self._open(request, name)
        else:
            outcome = self._record_open(request, name, started=False)
        self.queue.opened(name)  # type: ignore[union-attr]
        return outcome

    # -- not opened ---------------------------------------------------------------------------------
    def _superseded(self, request: ReviewRequest, loop_name: str, what: str) -> StartReviewOutcome:
        image = request.image
        reason = f"s3://{image.bucket}/{image.key} was {what} since this version was detected: not reviewed"
        self.ledger.record_image(image, "SUPERSEDED", reason=reason, model_arn=request.model_arn)
        return self._not_opened(loop_name, image.image_id, "SUPERSEDED", reason)

    def _not_opened(self, loop_name: str, image_id: str, status: str, reason: str) -> StartReviewOutcome:
        self.log.warning(
            "no review opened", extra={"loop_name": loop_name, "status": status, "reason": reason}
        )
        observability.count(f"Reviews{status.title()}")
        return StartReviewOutcome(loop_name, image_id, started=False, status=status, reason=reason)

    def _input_content(self, request: ReviewRequest) -> dict[str, Any]:
        labels = self.settings.labels
        boxes: list[tuple[str, PixelBox]] = []
        for detection in request.detections:
            if detection.label not in labels:
                # The model knows a label we no longer offer: the reviewer cannot keep it.
                self.log.warning("model label not in LABELS, not pre-drawn", extra={"label": detection.label})
                continue
            boxes.append((detection.label, detection.box))
        return build_input_content(
            request.image, request.width, request.height, boxes, labels, request.reasons
        )
