"""DetectCustomLabels, with AWS errors sorted into "the model cannot take it now" (not running:
`ModelNotReady`; over its throughput: `Throttled`), "retry later" (a service fault), "this image is
rejected" and "the deployment cannot read the image"."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.errors import AccessDenied, InvalidImage, ModelNotReady
from labelloop_core.geometry import RatioBox
from labelloop_core.naming import NULL_VERSION_ID, ImageRef
from labelloop_core.policy import Detection

MAX_RESULTS = 100  # matches the ReviewRequested detail limit
# DetectCustomLabels is retried here, not by the SDK, whose standard backoff doubles per attempt
# (up to 1, 2, 4 and 8 s after a throttle). A model serves a fixed number of images per second, so its
# capacity comes back every second: consumers that sleep longer while it is free leave it idle, which
# is what made a burst drain slower than the model could serve. A throttled call is tried again
# within THROTTLE_RETRY_SECONDS (full jitter); other retryable errors back off as the SDK's standard
# mode does (50 ms base, doubling). After ATTEMPTS the error is raised: a throttled image then waits in
# the DetectQueue (DetectService), a service fault is received again.
ATTEMPTS = 5  # as the SDK's standard mode configured for every other client (clients._RETRIES)
THROTTLE_RETRY_SECONDS = 1.0
FAULT_BACKOFF_BASE_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 20.0


def retry_delay_seconds(
    error: Exception, attempt: int, rng: Callable[[], float] = random.random
) -> float | None:
    """How long to wait before trying a failed DetectCustomLabels call again (`attempt`: the 1-based
    attempt that failed), or None when it must not be tried again."""
    if attempt >= ATTEMPTS or not _retryable(error):
        return None
    if aws_errors.is_throttling(error):
        return rng() * THROTTLE_RETRY_SECONDS
    return rng() * min(FAULT_BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)


def _retryable(error: Exception) -> bool:
    from botocore.exceptions import ConnectionError, HTTPClientError

    if isinstance(error, ConnectionError | HTTPClientError):  # what the SDK retries besides errors
        return True
    return aws_errors.is_sdk_error(error) and aws_errors.is_retryable(error)


class CustomLabelsDetector:
    def __init__(
        self,
        client: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._sleep, self._rng = sleep, rng

    client = LazyClient("rekognition", sdk_retries=False)

    def detect(self, model_arn: str, image: ImageRef, min_confidence: float) -> list[Detection]:
        """Detections of `model_arn` on that exact image version.

        Raises ModelNotReady or Throttled (wait for the model), TransientError (retry) or InvalidImage
        (record a rejection)."""
        s3_object = {"Bucket": image.bucket, "Name": image.key}
        if image.version_id and image.version_id != NULL_VERSION_ID:
            s3_object["Version"] = image.version_id
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = self.client.detect_custom_labels(
                    ProjectVersionArn=model_arn,
                    Image={"S3Object": s3_object},
                    MinConfidence=min_confidence,
                    MaxResults=MAX_RESULTS,
                )
                break
            except Exception as error:
                delay = retry_delay_seconds(error, attempt, self._rng)
                if delay is None:
                    raise _translate(error, model_arn, image) from error
                self._sleep(delay)
        return [_detection(label) for label in response.get("CustomLabels", [])]


def _detection(label: dict[str, Any]) -> Detection:
    box = label.get("Geometry", {}).get("BoundingBox")
    ratio = RatioBox(box["Left"], box["Top"], box["Width"], box["Height"]) if box else None
    return Detection(label=label["Name"], confidence=float(label["Confidence"]), box=ratio)


def _translate(error: Exception, model_arn: str, image: ImageRef) -> Exception:
    if not aws_errors.is_sdk_error(error):
        return error
    code, message = aws_errors.error_code(error), aws_errors.error_message(error)
    described = f"DetectCustomLabels on {model_arn}: {code or aws_errors.http_status(error)} {message}"
    if code == aws_errors.MODEL_NOT_READY:
        return ModelNotReady(described)
    if aws_errors.is_retryable(error):
        return aws_errors.retry_later(error, described)
    if code == aws_errors.UNREADABLE_OBJECT:
        # Rekognition reads the image with the caller's rights: this is a permission or encryption
        # problem of the deployment, not a bad image. Raised, so it is retried and dead-lettered.
        return AccessDenied(
            f"Rekognition could not read {image.s3_uri} (version {image.version_id}): {code} {message}. "
            "The function's role needs s3:GetObject and s3:GetObjectVersion on the image (and kms:Decrypt "
            "if the bucket uses a KMS key)"
        )
    if code in aws_errors.IMAGE_REJECTIONS:
        return InvalidImage(
            aws_errors.IMAGE_REJECTIONS[code], f"Rekognition refused the image: {message or code}"
        )
    return error
