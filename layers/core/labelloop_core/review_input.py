"""The InputContent of a review, the same for both backends: what StartReview sends to A2I's
StartHumanLoop or stores in a built-in task, echoed as `inputContent` in the review's output.json, so
it carries all AppendLabels needs:
`{"taskObject": "s3://bucket/key", "initialValue": [{label,left,top,width,height}] (model boxes, pixels),
"labels": [...], "image": {bucket, key, versionId, etag, imageId, width, height, depth},
"reviewReasons": [{code,label,confidence,threshold,message}]}`.

A module apart from `labelloop_core.a2i` (output parsing, consolidation, manifest lines): StartReview
builds the input and never parses an output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from labelloop_core.geometry import PixelBox, clamp

if TYPE_CHECKING:
    from labelloop_core.naming import ImageRef
    from labelloop_core.policy import ReviewReason

MAX_INPUT_CONTENT_CHARS = 3_145_728

LabeledBox = tuple[str, PixelBox]


def build_input_content(
    image: ImageRef,
    image_w: int,
    image_h: int,
    detections_px: Iterable[LabeledBox],
    labels: Sequence[str],
    reasons: Iterable[ReviewReason],
    depth: int = 3,
) -> dict[str, Any]:
    """InputContent for StartHumanLoop; the model's boxes become the reviewer's starting boxes."""
    known = set(labels)
    initial = []
    for label, box in detections_px:
        if label not in known:
            raise ValueError(f"model label {label!r} is not one of the configured labels {list(labels)}")
        inside = clamp(box, image_w, image_h)
        if inside is not None:
            initial.append({"label": label, **inside.to_dict()})
    content = {
        "taskObject": image.s3_uri,
        "initialValue": initial,
        "labels": list(labels),
        "image": {
            "bucket": image.bucket,
            "key": image.key,
            "versionId": image.version_id,
            "etag": image.etag,
            "imageId": image.image_id,
            "width": image_w,
            "height": image_h,
            "depth": depth,
        },
        "reviewReasons": [reason.to_dict() for reason in reasons],
    }
    size = len(json.dumps(content, ensure_ascii=False, separators=(",", ":")))
    if size > MAX_INPUT_CONTENT_CHARS:
        raise ValueError(f"InputContent is {size} characters; A2I accepts at most {MAX_INPUT_CONTENT_CHARS}")
    return content
