"""DetectCustomLabels, with AWS errors sorted into "the model cannot take it now" (not running:
`ModelNotReady`; over its throughput: `Throttled`), "retry later" (a service fault), "this image is
rejected" and "the deployment cannot read the image"."""

from __future__ import annotations

from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.errors import AccessDenied, InvalidImage, ModelNotReady
from labelloop_core.geometry import RatioBox
from labelloop_core.naming import NULL_VERSION_ID, ImageRef
from labelloop_core.policy import Detection

MAX_RESULTS = 100  # matches the ReviewRequested detail limit


class CustomLabelsDetector:
    def __init__(self, client: Any = None) -> None:
        self._client = client

    client = LazyClient("rekognition")

    def detect(self, model_arn: str, image: ImageRef, min_confidence: float) -> list[Detection]:
        """Detections of `model_arn` on that exact image version.

        Raises ModelNotReady or Throttled (wait for the model), TransientError (retry) or InvalidImage
        (record a rejection)."""
        s3_object = {"Bucket": image.bucket, "Name": image.key}
        if image.version_id and image.version_id != NULL_VERSION_ID:
            s3_object["Version"] = image.version_id
        try:
            response = self.client.detect_custom_labels(
                ProjectVersionArn=model_arn,
                Image={"S3Object": s3_object},
                MinConfidence=min_confidence,
                MaxResults=MAX_RESULTS,
            )
        except Exception as error:
            raise _translate(error, model_arn, image) from error
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
