"""StartReview: labelloop `ReviewRequested` -> one A2I human loop per image version and model."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelloop_core import observability
from labelloop_core.config import load_settings
from labelloop_core.services.inbound import refusing_invalid, require_detail_type, require_valid
from labelloop_core.services.start_review import StartReviewService

logger = observability.logger()
metrics = observability.metrics()


@metrics.log_metrics
@observability.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=observability.CORRELATION_ID_PATH)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with refusing_invalid(event):
        require_valid("app-event", event)
        require_detail_type(event, "ReviewRequested")
        require_valid("review-requested", event["detail"], what="ReviewRequested detail")
        app_event = EventBridgeEvent(event)
        logger.append_keys(image_id=app_event.detail["imageId"], replay_name=app_event.replay_name)
        outcome = StartReviewService.from_settings(load_settings()).process(app_event.detail)
        return {"loopName": outcome.loop_name, "imageId": outcome.image_id, "started": outcome.started}
