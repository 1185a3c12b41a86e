"""AppendLabels: A2I `HumanLoop Status Change` -> `labels/<loop>.json`, ledger, LabelsAppended."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelloop_core import observability
from labelloop_core.config import load_settings
from labelloop_core.services.append_labels import AppendLabelsService
from labelloop_core.services.inbound import refusing_invalid, require_valid

logger = observability.logger()
metrics = observability.metrics()


@metrics.log_metrics
@observability.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=observability.CORRELATION_ID_PATH)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with refusing_invalid(event):
        require_valid("a2i-status-change-event", event)
        status_event = EventBridgeEvent(event)
        detail = status_event.detail
        logger.append_keys(loop_name=detail["humanLoopName"], replay_name=status_event.replay_name)
        outcome = AppendLabelsService.from_settings(load_settings()).process(detail)
        return {
            "status": outcome.status,
            "loopName": outcome.loop_name,
            "labelKey": outcome.label_key,
            "newLabel": outcome.new_label,
            "reason": outcome.reason,
        }
