"""Amazon A2I as a review backend: one human loop per review name, started exactly once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.errors import TransientError
from labelloop_core.ports import OpenedReview

# Declares the images are free of PII and adult content, which A2I requires for public workforces.
CONTENT_CLASSIFIERS = ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]
MAX_INPUT_CONTENT_CHARS = 3_145_728


class HumanLoops:
    def __init__(self, flow_definition_arn: str, client: Any = None) -> None:
        self.flow_definition_arn = flow_definition_arn
        self._client = client

    client = LazyClient("sagemaker-a2i-runtime")

    def open(self, name: str, input_content: Mapping[str, Any], priority: float = 0.0) -> OpenedReview:
        """StartHumanLoop; an existing loop with that name counts as success (`created=False`). A2I
        has no priority of its own: the review budget's queue decides what is opened first."""
        content = json.dumps(input_content, ensure_ascii=False, separators=(",", ":"))
        if len(content) > MAX_INPUT_CONTENT_CHARS:
            raise ValueError(f"InputContent of {name} exceeds {MAX_INPUT_CONTENT_CHARS} characters")
        try:
            self.client.start_human_loop(
                HumanLoopName=name,
                FlowDefinitionArn=self.flow_definition_arn,
                HumanLoopInput={"InputContent": content},
                DataAttributes={"ContentClassifiers": CONTENT_CLASSIFIERS},
            )
        except Exception as error:
            if aws_errors.is_retryable(error):
                raise TransientError(f"StartHumanLoop {name}: {aws_errors.error_code(error)}") from error
            # ConflictException: a loop of that name exists (A2I answers ValidationException for some).
            if aws_errors.error_code(error) in {aws_errors.CONFLICT, aws_errors.VALIDATION} and self.exists(
                name
            ):
                return OpenedReview(name, created=False)
            raise
        return OpenedReview(name, created=True)

    def exists(self, name: str) -> bool:
        try:
            self.client.describe_human_loop(HumanLoopName=name)
        except Exception as error:
            if aws_errors.error_code(error) == aws_errors.RESOURCE_NOT_FOUND:
                return False
            raise
        return True
