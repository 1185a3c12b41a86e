"""Detect: S3 `Object Created` under incoming/ -> prediction document, ledger, ReviewRequested."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelloop_core import naming, observability
from labelloop_core.config import load_settings
from labelloop_core.services.detect import DetectService
from labelloop_core.services.inbound import refusing_invalid, require_valid

logger = observability.logger()
metrics = observability.metrics()


@metrics.log_metrics
@observability.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=observability.CORRELATION_ID_PATH)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with refusing_invalid(event):
        require_valid("s3-object-created-event", event)
        s3_event = S3EventBridgeNotificationEvent(event)
        s3_object = s3_event.detail.object
        image = naming.ImageRef(
            bucket=s3_event.detail.bucket.name,
            key=naming.decode_key(s3_object["key"]),  # the one and only decode of the key
            version_id=s3_object.get("version-id"),
            etag=s3_object.get("etag"),
        )
        logger.append_keys(image_id=image.image_id, replay_name=s3_event.replay_name)
        outcome = DetectService.from_settings(load_settings()).process(image)
        return {"status": outcome.status, "imageId": outcome.image_id, "loopName": outcome.loop_name}
