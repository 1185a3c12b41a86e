"""Amazon A2I runtime: start a human loop exactly once per deterministic loop name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from labelloop_core.errors import TransientError

# Declares the images are free of PII and adult content, which A2I requires for public workforces.
CONTENT_CLASSIFIERS = ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]
MAX_INPUT_CONTENT_CHARS = 3_145_728
_TRANSIENT_CODES = {"ThrottlingException", "ServiceQuotaExceededException", "InternalServerException"}


@dataclass(frozen=True)
class StartedLoop:
    name: str
    arn: str
    created: bool  # False when the loop already existed (duplicate or replayed request)
    status: str | None = None


class HumanLoops:
    def __init__(self, flow_definition_arn: str, client: Any = None) -> None:
        self.flow_definition_arn = flow_definition_arn
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from labelloop_core.adapters import clients

            self._client = clients.a2i_runtime()
        return self._client

    def start(self, loop_name: str, input_content: dict[str, Any]) -> StartedLoop:
        """StartHumanLoop; an existing loop with that name counts as success (`created=False`)."""
        content = json.dumps(input_content, ensure_ascii=False, separators=(",", ":"))
        if len(content) > MAX_INPUT_CONTENT_CHARS:
            raise ValueError(f"InputContent of {loop_name} exceeds {MAX_INPUT_CONTENT_CHARS} characters")
        try:
            response = self.client.start_human_loop(
                HumanLoopName=loop_name,
                FlowDefinitionArn=self.flow_definition_arn,
                HumanLoopInput={"InputContent": content},
                DataAttributes={"ContentClassifiers": CONTENT_CLASSIFIERS},
            )
        except Exception as error:
            code = _error_code(error)
            if code in _TRANSIENT_CODES:
                raise TransientError(f"StartHumanLoop {loop_name}: {code}") from error
            existing = (
                self.describe(loop_name) if code in {"ConflictException", "ValidationException"} else None
            )
            if existing is None:
                raise
            return existing
        return StartedLoop(loop_name, response["HumanLoopArn"], created=True, status="InProgress")

    def describe(self, loop_name: str) -> StartedLoop | None:
        """The existing loop, or None when no loop has that name."""
        try:
            response = self.client.describe_human_loop(HumanLoopName=loop_name)
        except Exception as error:
            if _error_code(error) == "ResourceNotFoundException":
                return None
            raise
        return StartedLoop(
            loop_name, response["HumanLoopArn"], created=False, status=response["HumanLoopStatus"]
        )


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
