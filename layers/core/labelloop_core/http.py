"""HTTP API responses (payload format 2.0): what the portal and review API functions return."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
JSON = "application/json"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        response: dict[str, Any] = {"statusCode": self.status, "headers": dict(self.headers)}
        if self.body is not None:
            response["body"] = self.body
        return response

    @property
    def document(self) -> Any:
        """The JSON body, parsed (tests and callers that read what they got)."""
        return None if self.body is None else json.loads(self.body)


def json_response(
    status: int, document: Any = None, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    """A JSON response that no cache keeps (no body for 204)."""
    body = None if document is None else json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return HttpResponse(status, body, {"Content-Type": JSON, **NO_STORE, **(headers or {})})


def problem(status: int, message: str) -> HttpResponse:
    """An error as API Gateway words its own: `{"message": ...}`."""
    return json_response(status, {"message": message})
