"""Upload a generated image to a deployed stack and wait for its prediction document."""

from __future__ import annotations

import io
import json
import time
import uuid

import pytest

pytestmark = pytest.mark.e2e


def _sample_jpeg() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (180, 140, 90))
    ImageDraw.Draw(image).polygon([(60, 200), (160, 40), (260, 200)], fill=(230, 190, 80))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_upload_produces_a_prediction_document(deployed_stack: dict[str, str]) -> None:
    import boto3

    bucket = deployed_stack["BucketName"]
    key = f"incoming/e2e/{uuid.uuid4().hex} slice.jpg"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=_sample_jpeg(), ContentType="image/jpeg")
    prediction_key = "predictions/" + key.removeprefix("incoming/") + ".json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            body = s3.get_object(Bucket=bucket, Key=prediction_key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            time.sleep(5)
            continue
        document = json.loads(body)
        assert document["image"]["key"] == key
        assert document["status"] in {"PREDICTED", "REJECTED"}
        return
    pytest.fail(f"no prediction document at s3://{bucket}/{prediction_key} within 180 s")
