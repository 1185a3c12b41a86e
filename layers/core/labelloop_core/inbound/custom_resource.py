"""A CloudFormation custom resource request: A2ISetup's trigger."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelloop_core.errors import InvalidEvent


@dataclass(frozen=True)
class CustomResourceRequest:
    """A CloudFormation custom resource request. Only its ResponseURL is checked here: everything
    else is validated by the service, which must answer CloudFormation even for a malformed request."""

    event: Mapping[str, Any]
    remaining_ms: Callable[[], int] = field(compare=False)

    def log_keys(self) -> dict[str, Any]:
        return {
            "request_type": self.event.get("RequestType"),
            "logical_resource_id": self.event.get("LogicalResourceId"),
            "physical_resource_id": self.event.get("PhysicalResourceId"),
        }


def custom_resource_request(event: Mapping[str, Any], context: Any) -> CustomResourceRequest:
    if not isinstance(event, Mapping) or not isinstance(event.get("ResponseURL"), str):
        raise InvalidEvent("not a CloudFormation custom resource request: no ResponseURL to answer")
    return CustomResourceRequest(event, context.get_remaining_time_in_millis)


# CloudFormation's request id: the same for every retry of one request.
custom_resource_request.correlation_id_path = "RequestId"  # type: ignore[attr-defined]
