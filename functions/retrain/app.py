"""Retrain function (schedule): start a new model version when enough new human labels exist.

The use case lives in `labelloop_core.services.retrain`; the service validates the event;
keeps the event id as correlation id and returns the outcome (`started`, `reason`, version...).
"""

from __future__ import annotations

from typing import Any

from labelloop_core import observability
from labelloop_core.config import load_settings
from labelloop_core.services.retrain import retrain

logger = observability.logger()
metrics = observability.metrics()


@metrics.log_metrics
@observability.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=observability.CORRELATION_ID_PATH)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return retrain(event, load_settings()).to_dict()
