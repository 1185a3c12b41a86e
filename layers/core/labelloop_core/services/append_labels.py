"""AppendLabels: turn a finished review into one Ground Truth manifest line, for both review backends.

A finished review arrives as A2I's `HumanLoop Status Change` or as the built-in backend's
`labelloop.ReviewCompleted` (`inbound.review_finished` reads both into one `ReviewFinished`); both
point at an output.json in A2I's format, so everything below is one code path. Several reviewers'
answers (`TaskCount` > 1) are consolidated (`labelloop_core.consolidation`): the agreement becomes
each object's `confidence` in the line, and the consolidation's figures are recorded on the ledger's
label item and in `LabelsAppended`.

Completed: output.json -> `labels/<loop>.json`, created once and never overwritten; the ledger
label item and the pending-label counter are written in one transaction that is a no-op for a
label already recorded, so duplicates and replays neither add a line nor count twice.

LabelsAppended is published once per label: the publisher first claims the label's `event_sent`
flag in the ledger (so a replay, or a duplicate running at the same time, publishes nothing) and
releases the claim if PutEvents fails, so the retry publishes it. Only a crash between the claim
and PutEvents loses the notification; the label itself is never lost (Retrain reads the ledger).

A review that cannot become a label (no answer, unknown label, bad boxes, malformed output) is
recorded as INVALID_REVIEW with the reason and the function returns normally: retrying would fail
the same way. Failed and Stopped loops are recorded with A2I's failure reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from labelloop_core import a2i, config, manifest, naming, observability
from labelloop_core.config import setting
from labelloop_core.errors import InvalidReview, ObjectMissing
from labelloop_core.inbound.review_finished import ReviewFinished
from labelloop_core.ports import EventPublisher, ObjectStore, ReviewLedger
from labelloop_core.schemas import SchemaViolation, validate

TERMINAL_STATUSES = {"Failed": ("FAILED", "REVIEW_FAILED"), "Stopped": ("STOPPED", "REVIEW_STOPPED")}
BUILTIN = "builtin"  # the job name of labels from the built-in backend: labelloop/builtin


def _agreement(answer: a2i.ReviewAnswer) -> dict[str, Any] | None:
    """The consolidation's figures (as LabelsAppended and the ledger carry them), None for one reviewer."""
    consolidation = answer.consolidation
    if consolidation is None:
        return None
    return {
        "reviewers": consolidation.reviewers,
        "agreement": consolidation.agreement,
        "droppedBoxes": len(consolidation.dropped),
        "lowAgreement": consolidation.low_agreement,
    }


@dataclass(frozen=True, kw_only=True)
class AppendLabelsSettings:
    bucket_name: str = config.bucket_name()
    ledger_table: str = config.ledger_table()
    event_bus_name: str = config.event_bus_name()
    labels: tuple[str, ...] = config.label_names()
    label_attribute: str = config.manifest_attribute()
    # This stack's flow definitions (the current one and those it replaced) share this ARN prefix.
    flow_definition_arn_prefix: str = setting("FLOW_DEFINITION_ARN_PREFIX", config.arn)


@dataclass(frozen=True)
class AppendOutcome:
    status: str  # LABELED | DUPLICATE | INVALID_REVIEW | SUPERSEDED | FAILED | STOPPED | IGNORED
    loop_name: str
    label_key: str | None = None
    new_label: bool = False
    published: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "loopName": self.loop_name,
            "labelKey": self.label_key,
            "newLabel": self.new_label,
            "reason": self.reason,
        }


class AppendLabelsService:
    settings_type: ClassVar[type[AppendLabelsSettings]] = AppendLabelsSettings

    def __init__(
        self,
        settings: AppendLabelsSettings,
        store: ObjectStore,
        ledger: ReviewLedger,
        publisher: EventPublisher,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.publisher = publisher
        self.class_map = manifest.ClassMap.from_labels(settings.labels)
        self.log = observability.logger()

    @classmethod
    def from_settings(cls, settings: AppendLabelsSettings) -> AppendLabelsService:
        from labelloop_core.adapters.events import EventBridgePublisher
        from labelloop_core.adapters.ledger import ReviewLedger as DynamoReviewLedger
        from labelloop_core.adapters.s3store import S3Store

        return cls(
            settings,
            S3Store(settings.bucket_name),
            DynamoReviewLedger(settings.ledger_table),
            EventBridgePublisher(settings.event_bus_name),
        )

    def handle(self, request: ReviewFinished) -> AppendOutcome:
        return self.finish(request)

    def process(self, detail: Mapping[str, Any]) -> AppendOutcome:
        """`detail` is a schema-valid A2I status-change detail."""
        return self.finish(ReviewFinished.from_a2i(detail))

    def finish(self, review: ReviewFinished) -> AppendOutcome:
        loop_name = review.review_name
        flow = review.flow_definition_arn
        if flow is not None and not flow.startswith(self.settings.flow_definition_arn_prefix):
            # The rule filters on our flow definitions; anything else is not ours to record.
            self.log.warning(
                "status change of another flow definition ignored", extra={"loop_name": loop_name}
            )
            observability.count("ForeignLoopsIgnored")
            return AppendOutcome("IGNORED", loop_name, reason="another flow definition")
        if review.status in TERMINAL_STATUSES:
            return self._record_unfinished(loop_name, review)
        return self._append(loop_name, review)

    def _append(self, loop_name: str, review: ReviewFinished) -> AppendOutcome:
        label_key = naming.label_key(loop_name)
        known = self.ledger.get_label(loop_name)
        if known is not None and known.event_sent:
            self.log.info("label already appended", extra={"loop_name": loop_name})
            observability.count("DuplicateCompletions")
            return AppendOutcome("DUPLICATE", loop_name, label_key)
        try:
            answer, line = self._read_answer(loop_name, review)
        except InvalidReview as invalid:
            return self._record_invalid(loop_name, invalid)
        image_id = answer.image.image_id
        if known is None:  # a label already recorded by a crashed attempt is finished, not judged again
            changed = self._changed_since_review(answer.image)
            if changed:
                return self._record_superseded(loop_name, image_id, changed)
        created_object = self.store.create_json(label_key, line)
        creation_date = line[self.settings.label_attribute + "-metadata"]["creation-date"]
        agreement = _agreement(answer)
        new_label = self.ledger.put_label(
            loop_name, label_key, answer.source_ref, creation_date, agreement=agreement
        )
        self.ledger.record_loop(loop_name, "COMPLETED", image_id=image_id, label_key=label_key)
        self.ledger.record_image_status(image_id, "LABELED")
        if agreement and agreement["lowAgreement"]:
            self.log.warning("reviewers disagree", extra={"loop_name": loop_name, **agreement})
            observability.count("LowAgreementReviews")
        published = self._publish_once(
            loop_name, image_id, label_key, answer.source_ref, len(answer.boxes), agreement
        )
        if new_label:
            observability.count("LabelsAppended")
        self.log.info(
            "label appended" if new_label else "label already recorded",
            extra={"loop_name": loop_name, "label_key": label_key, "object_created": created_object},
        )
        return AppendOutcome(
            "LABELED" if new_label else "DUPLICATE", loop_name, label_key, new_label, published
        )

    def _read_answer(self, loop_name: str, review: ReviewFinished) -> tuple[a2i.ReviewAnswer, dict[str, Any]]:
        """The reviewers' answer and its manifest line; InvalidReview for anything unusable."""
        output_uri = review.output_uri
        if not output_uri:
            raise InvalidReview("NO_OUTPUT", "the Completed event names no output.json")
        try:
            bucket, key = naming.parse_s3_uri(output_uri)
            document = self.store.get_json(key, bucket=bucket)
            validate("a2i-output", document)
        except ObjectMissing as missing:
            raise InvalidReview("NO_OUTPUT", str(missing)) from None
        except SchemaViolation as violation:
            raise InvalidReview(a2i.SCHEMA, violation.message) from None
        except ValueError as error:  # not an s3:// URI, or not JSON
            raise InvalidReview(a2i.SCHEMA, f"{output_uri}: {error}") from None
        if document["humanLoopName"] != loop_name:
            raise InvalidReview(a2i.SCHEMA, f"{output_uri} belongs to loop {document['humanLoopName']}")
        answer = a2i.parse_output(document)
        if answer.image.bucket != self.settings.bucket_name:
            raise InvalidReview(
                a2i.SCHEMA, f"the reviewed image is in bucket {answer.image.bucket}, not the stack's"
            )
        line = manifest.build_line(
            answer.source_ref,
            answer.boxes,
            answer.width,
            answer.height,
            self.class_map,
            self.settings.label_attribute,
            job_name=f"labelloop/{(review.flow_definition_arn or BUILTIN).rsplit('/', 1)[-1]}",
            creation_date=answer.submitted_at,
            depth=answer.depth,
            confidences=answer.confidences,
        )
        problems = manifest.validate_line(line, self.class_map, self.settings.label_attribute)
        if problems:
            raise InvalidReview(a2i.BAD_BOX, "; ".join(problems))
        try:
            validate("manifest-line", line)
        except SchemaViolation as violation:
            raise InvalidReview(a2i.SCHEMA, f"manifest line: {violation.message}") from None
        return answer, line

    def _publish_once(
        self,
        loop_name: str,
        image_id: str,
        label_key: str,
        source_ref: str,
        boxes: int,
        agreement: Mapping[str, Any] | None,
    ) -> bool:
        if not self.ledger.claim_label_event(loop_name):
            return False
        detail = {
            "schemaVersion": "1",
            "loopName": loop_name,
            "imageId": image_id,
            "labelKey": label_key,
            "sourceRef": source_ref,
            "boxCount": boxes,
            **(agreement or {}),
        }
        try:
            self.publisher.publish("LabelsAppended", detail)
        except Exception:
            self.ledger.release_label_event(loop_name)  # let the platform's retry publish it
            raise
        return True

    def _changed_since_review(self, image: naming.ImageRef) -> str | None:
        """Why the key no longer names the reviewed version (None when it still does): a label's
        source-ref names the key, so a label of an older version would train on another image."""
        current = self.store.current_version(image.key)
        if current is None:
            return f"s3://{image.bucket}/{image.key} was deleted"
        if not current.is_version_of(image):
            return f"s3://{image.bucket}/{image.key} was uploaded again"
        return None

    def _record_superseded(self, loop_name: str, image_id: str, what: str) -> AppendOutcome:
        reason = f"{what} since it was reviewed: no label written (the new version has its own review)"
        self.ledger.record_loop(loop_name, "SUPERSEDED", image_id=image_id, failure_reason=reason)
        self.ledger.record_image_status(image_id, "SUPERSEDED", reason=reason)
        self.log.warning(
            "review of a superseded image version", extra={"loop_name": loop_name, "reason": reason}
        )
        observability.count("ReviewsSuperseded")
        return AppendOutcome("SUPERSEDED", loop_name, reason=reason)

    def _record_invalid(self, loop_name: str, invalid: InvalidReview) -> AppendOutcome:
        loop = self.ledger.get_loop(loop_name)
        image_id = loop.image_id if loop else None
        reason = f"{invalid.code}: {invalid.message}"
        self.ledger.record_loop(loop_name, "INVALID_REVIEW", image_id=image_id, failure_reason=reason)
        if image_id:
            self.ledger.record_image_status(image_id, "REVIEW_FAILED", reason=f"INVALID_REVIEW {reason}")
        self.log.error("review cannot become a label", extra={"loop_name": loop_name, "reason": reason})
        observability.count("InvalidReviews")
        return AppendOutcome("INVALID_REVIEW", loop_name, reason=reason)

    def _record_unfinished(self, loop_name: str, review: ReviewFinished) -> AppendOutcome:
        status = review.status
        loop_status, image_status = TERMINAL_STATUSES[status]
        failure = " ".join(part for part in (review.failure_code, review.failure_reason) if part)
        reason = failure or f"review {status.lower()}"
        loop = self.ledger.get_loop(loop_name)
        image_id = loop.image_id if loop else None
        self.ledger.record_loop(loop_name, loop_status, image_id=image_id, failure_reason=reason)
        if image_id:
            self.ledger.record_image_status(image_id, image_status, reason=reason)
        else:
            self.log.warning("unfinished loop has no ledger entry", extra={"loop_name": loop_name})
        self.log.warning(
            "human loop ended without a review", extra={"loop_name": loop_name, "reason": reason}
        )
        observability.count(f"HumanLoops{status}")
        return AppendOutcome(loop_status, loop_name, reason=reason)
