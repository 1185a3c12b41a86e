"""An HTTP API request (payload format 2.0): the Portal's and the ReviewApi's trigger."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labelloop_core.errors import InvalidEvent
from labelloop_core.inbound import require_valid


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP API request (payload format 2.0) and the JWT claims its authorizer validated."""

    route_key: str  # e.g. "GET /api/tasks/{taskId}"
    method: str
    path: str
    path_parameters: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names in lower case, as API Gateway passes them
    body: bytes | None
    claims: Mapping[str, Any]
    request_id: str

    def log_keys(self) -> dict[str, Any]:
        return {"route": self.route_key, "request_id": self.request_id, "caller": self.claims.get("sub")}


def http_request(event: Mapping[str, Any], context: Any = None) -> HttpRequest:
    """An API Gateway HTTP API event, payload format 2.0 (claims at requestContext.authorizer.jwt.claims)."""
    require_valid("http-api-event", event)
    context_doc = event["requestContext"]
    body = event.get("body")
    raw: bytes | None = None
    if body is not None:
        try:
            raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
        except ValueError as error:
            raise InvalidEvent(f"the request body is marked base64 but is not: {error}") from None
    claims = ((context_doc.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    return HttpRequest(
        route_key=str(event["routeKey"]),
        method=str(context_doc["http"]["method"]).upper(),
        path=str(event["rawPath"]),
        path_parameters=dict(event.get("pathParameters") or {}),
        query=dict(event.get("queryStringParameters") or {}),
        headers={str(name).lower(): str(value) for name, value in (event.get("headers") or {}).items()},
        body=raw,
        claims=dict(claims),
        request_id=str(context_doc["requestId"]),
    )


# The correlation id of an HTTP API request is API Gateway's request id (see `entrypoint`).
http_request.correlation_id_path = "requestContext.requestId"  # type: ignore[attr-defined]
