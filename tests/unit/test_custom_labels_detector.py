"""DetectCustomLabels under a model's throughput limit: a throttled call is tried again within a second,
so consumers keep the model busy instead of sleeping through its capacity; past the attempts the
image waits in the DetectQueue (Throttled), a service fault is received again (TransientError)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from labelloop_core.adapters.rekognition import (
    ATTEMPTS,
    THROTTLE_RETRY_SECONDS,
    CustomLabelsDetector,
    retry_delay_seconds,
)
from labelloop_core.errors import InvalidImage, Throttled, TransientError
from labelloop_core.naming import ImageRef

MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/pizza/version/pizza.v1/1"
IMAGE = ImageRef(bucket="images", key="incoming/slice.png", version_id="v1", etag="e")
LABEL = {"Name": "cheese", "Confidence": 91.0}


def _error(code: str, status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "DetectCustomLabels")


class ScriptedRekognition:
    """Answers DetectCustomLabels with the given errors, in order, then with one label."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def detect_custom_labels(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return {"CustomLabels": [LABEL]}


def _detector(client: ScriptedRekognition, sleeps: list[float]) -> CustomLabelsDetector:
    return CustomLabelsDetector(client, sleep=sleeps.append, rng=lambda: 0.999)


def test_a_throttled_call_is_tried_again_within_a_second_and_detects() -> None:
    client, sleeps = (
        ScriptedRekognition(*[_error("ProvisionedThroughputExceededException")] * 3),
        list[float](),
    )

    detections = _detector(client, sleeps).detect(MODEL, IMAGE, 10.0)

    assert [d.label for d in detections] == ["cheese"]
    assert client.calls == 4
    assert len(sleeps) == 3 and max(sleeps) <= THROTTLE_RETRY_SECONDS  # never the SDK's 2, 4, 8 s


def test_a_model_that_stays_over_capacity_raises_throttled_after_the_attempts() -> None:
    client, sleeps = ScriptedRekognition(*[_error("ThrottlingException")] * ATTEMPTS), list[float]()

    with pytest.raises(Throttled):
        _detector(client, sleeps).detect(MODEL, IMAGE, 10.0)

    assert client.calls == ATTEMPTS and sum(sleeps) <= (ATTEMPTS - 1) * THROTTLE_RETRY_SECONDS


@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        (_error("InternalServerError", 500), TransientError),
        (EndpointConnectionError(endpoint_url="https://rekognition"), EndpointConnectionError),
    ],
)
def test_service_faults_are_retried_with_a_short_backoff_then_raised(
    fault: Exception, raised: type[Exception]
) -> None:
    client, sleeps = ScriptedRekognition(*[fault] * ATTEMPTS), list[float]()

    with pytest.raises(raised):
        _detector(client, sleeps).detect(MODEL, IMAGE, 10.0)

    assert client.calls == ATTEMPTS
    assert sleeps == sorted(sleeps) and sleeps[0] < 0.1  # standard mode's 50 ms base, doubling


def test_an_image_rekognition_refuses_is_not_tried_again() -> None:
    client, sleeps = ScriptedRekognition(_error("InvalidImageFormatException")), list[float]()

    with pytest.raises(InvalidImage):
        _detector(client, sleeps).detect(MODEL, IMAGE, 10.0)

    assert client.calls == 1 and sleeps == []


def test_the_model_not_running_is_not_retried_within_the_call() -> None:
    assert retry_delay_seconds(_error("ResourceNotReadyException"), 1) is None
