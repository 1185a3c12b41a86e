"""AppendLabels' trigger: a finished review, from A2I or from the built-in backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labelloop_core.inbound import replay_name, require_valid

A2I_STATUS_CHANGE = "SageMaker A2I HumanLoop Status Change"
REVIEW_COMPLETED = "ReviewCompleted"


@dataclass(frozen=True)
class ReviewFinished:
    """A review that ended, from either backend: A2I's `HumanLoop Status Change` (default bus) or the
    built-in backend's `labelloop.ReviewCompleted` (app bus). Status as A2I reports it: Completed,
    Failed (an expired review is Failed with failure code Expired) or Stopped."""

    review_name: str
    status: str
    output_uri: str | None = None
    failure_code: str | None = None
    failure_reason: str | None = None
    flow_definition_arn: str | None = None  # A2I only: the flow definition the loop ran in
    replay_name: str | None = None

    @property
    def loop_name(self) -> str:
        return self.review_name

    @classmethod
    def from_a2i(cls, detail: Mapping[str, Any], replay_name: str | None = None) -> ReviewFinished:
        """A schema-valid A2I status-change detail."""
        return cls(
            review_name=str(detail["humanLoopName"]),
            status=str(detail["humanLoopStatus"]),
            output_uri=(detail.get("humanLoopOutput") or {}).get("outputS3Uri"),
            failure_code=detail.get("failureCode"),
            failure_reason=detail.get("failureReason"),
            flow_definition_arn=str(detail["flowDefinitionArn"]),
            replay_name=replay_name,
        )

    @classmethod
    def from_review_completed(
        cls, detail: Mapping[str, Any], replay_name: str | None = None
    ) -> ReviewFinished:
        """A schema-valid ReviewCompleted detail."""
        return cls(
            review_name=str(detail["reviewName"]),
            status=str(detail["status"]),
            output_uri=detail.get("outputS3Uri"),
            failure_code=detail.get("failureCode"),
            failure_reason=detail.get("failureReason"),
            replay_name=replay_name,
        )

    def log_keys(self) -> dict[str, Any]:
        return {"loop_name": self.review_name, "replay_name": self.replay_name}


def review_finished(event: Mapping[str, Any], context: Any = None) -> ReviewFinished:
    """AppendLabels' one entry for both backends."""
    if isinstance(event, Mapping) and event.get("detail-type") == REVIEW_COMPLETED:
        require_valid("app-event", event)
        require_valid("review-completed", event["detail"], what="ReviewCompleted detail")
        return ReviewFinished.from_review_completed(event["detail"], replay_name(event))
    require_valid("a2i-status-change-event", event)
    return ReviewFinished.from_a2i(event["detail"], replay_name(event))
