"""Custom::A2IResources handler: creates, replaces and deletes the A2I task UI and flow definition.

CloudFormation invokes it asynchronously and waits for the answer at ResponseURL, which
`labelloop_core.services.a2i_setup.handle_request` always sends (SUCCESS or FAILED), also on
unexpected errors and shortly before the Lambda timeout.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from labelloop_core.services.a2i_setup import handle_request

logger = Logger()


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logger.append_keys(
        request_type=event.get("RequestType"),
        logical_resource_id=event.get("LogicalResourceId"),
        physical_resource_id=event.get("PhysicalResourceId"),
    )
    body = handle_request(event, context.get_remaining_time_in_millis)
    return {"Status": body["Status"], "PhysicalResourceId": body["PhysicalResourceId"]}
