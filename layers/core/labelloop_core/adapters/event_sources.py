"""Lambda event source mappings: whether a function consumes its queue, and switching that.

`Enabled: false` pauses the mapping: Lambda stops polling, messages stay in the queue untouched (no
receive, so `maxReceiveCount` is not burned) and consumption resumes where it stopped once enabled.
A change takes a moment (`Enabling`, `Disabling`); while one is under way Lambda refuses another
(`ResourceInUseException`), which is reported as the state it is in: the next tick tries again.
"""

from __future__ import annotations

from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.ports import MappingState


class LambdaEventSourceMapping:
    def __init__(self, uuid: str, client: Any = None) -> None:
        self.uuid = uuid
        self._client = client

    client = LazyClient("lambda")

    def state(self) -> MappingState:
        try:
            response = self.client.get_event_source_mapping(UUID=self.uuid)
        except Exception as error:
            raise _translate(error, self.uuid) from error
        return MappingState(str(response.get("State", "")))

    def set_enabled(self, enabled: bool) -> MappingState:
        try:
            response = self.client.update_event_source_mapping(UUID=self.uuid, Enabled=enabled)
        except Exception as error:
            if aws_errors.error_code(error) in aws_errors.MAPPING_BUSY:
                return MappingState("Updating")
            raise _translate(error, self.uuid) from error
        return MappingState(str(response.get("State", "Enabling" if enabled else "Disabling")))


def _translate(error: Exception, uuid: str) -> Exception:
    if aws_errors.is_retryable(error):
        return aws_errors.retry_later(error, f"Lambda {aws_errors.error_code(error)} on mapping {uuid}")
    return error
