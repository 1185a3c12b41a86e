"""Promote function (schedule): advance the current training one step towards promotion or rejection.

The state machine lives in `labelloop_core.services.promote`; the handler returns its outcome
(`action`: idle, waiting, starting, promoted or rejected, with the reason).
"""

from __future__ import annotations

from typing import Any

from labelloop_core import observability
from labelloop_core.config import load_settings
from labelloop_core.services.promote import promote

logger = observability.logger()
metrics = observability.metrics()


@metrics.log_metrics
@observability.capture_lambda_handler
@logger.inject_lambda_context(correlation_id_path=observability.CORRELATION_ID_PATH)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return promote(event, load_settings()).to_dict()
