"""Schemas: valid 2020-12, versioned, and validated the same way by jsonschema and our fastjsonschema path."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from labelloop_core import schemas
from labelloop_core.errors import InvalidEvent, LabelloopError
from labelloop_core.schemas import SchemaViolation
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT
CONTRACT_NAMES = {  # docs/ARCHITECTURE.md, "Contracts"
    "review-requested",
    "labels-appended",
    "retraining-started",
    "model-promoted",
    "model-rejected",
    "app-event",
    "s3-object-created-event",
    "a2i-status-change-event",
    "scheduled-event",
    "prediction",
    "manifest-line",
    "a2i-input-content",
    "a2i-output",
    "evaluation-summary",
    "cfn-custom-resource-request",
}
# Keywords fastjsonschema's draft-07 engine evaluates exactly like a 2020-12 validator.
ALLOWED_KEYWORDS = {
    "$schema", "$id", "$defs", "$ref", "title", "description",
    "type", "properties", "required", "additionalProperties", "enum", "const", "pattern",
    "minimum", "maximum", "minLength", "maxLength", "items", "minItems", "maxItems",
    "minProperties", "anyOf", "oneOf",
}  # fmt: skip
MODEL = "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v1/1709294400000"
IMAGE_ID = "0123456789abcdef0123456789abcdef"
PIXEL_BOX = {"left": 10, "top": 20, "width": 30, "height": 40}
REASON = {"code": "LOW_CONFIDENCE", "label": "slice", "confidence": 41.5, "threshold": 60.0}

VALID: dict[str, list[dict[str, Any]]] = {
    "review-requested": [
        {
            "schemaVersion": "1",
            "imageId": IMAGE_ID,
            "bucket": "my-bucket",
            "key": "incoming/a b.jpg",
            "versionId": None,
            "etag": "abc",
            "modelArn": MODEL,
            "predictionKey": "predictions/a b.jpg.json",
            "imageSize": {"width": 640, "height": 480},
            "detections": [{"label": "slice", "confidence": 41.5, "pixelBox": PIXEL_BOX}],
            "reasons": [REASON],
        }
    ],
    "labels-appended": [
        {
            "schemaVersion": "1",
            "loopName": "ll-0a1b",
            "imageId": IMAGE_ID,
            "labelKey": "labels/ll-0a1b.json",
            "sourceRef": "s3://my-bucket/incoming/a.jpg",
            "boxCount": 0,
        }
    ],
    "retraining-started": [
        {
            "schemaVersion": "1",
            "versionName": "labelloop-20240301T120000Z",
            "versionArn": MODEL,
            "manifestKey": None,
            "mode": "dataset",
            "labelsUsed": 17,
        }
    ],
    "model-promoted": [
        {
            "schemaVersion": "1",
            "versionArn": MODEL,
            "previousArn": None,
            "f1": 0.91,
            "previousF1": None,
            "perLabelF1": {"slice": 0.91},
        }
    ],
    "model-rejected": [
        {"schemaVersion": "1", "versionArn": MODEL, "reason": "TRAINING_FAILED", "f1": None, "activeF1": 0.8}
    ],
    "prediction": [
        {
            "schemaVersion": "1",
            "image": {
                "bucket": "my-bucket",
                "key": "incoming/a.jpg",
                "versionId": "v1",
                "etag": None,
                "imageId": IMAGE_ID,
            },
            "status": "PREDICTED",
            "imageInfo": {"format": "JPEG", "width": 640, "height": 480},
            "model": {"arn": MODEL},
            "detections": [
                {
                    "label": "slice",
                    "confidence": 41.5,
                    "box": {"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4},
                    "pixelBox": PIXEL_BOX,
                }
            ],
            "review": {"needed": True, "auditSample": False, "reasons": [REASON]},
            "createdAt": "2024-03-01T12:30:00.123Z",
        },
        {
            "schemaVersion": "1",
            "image": {
                "bucket": "my-bucket",
                "key": "incoming/a.gif",
                "versionId": None,
                "etag": "e",
                "imageId": IMAGE_ID,
            },
            "status": "REJECTED",
            "rejection": {"code": "NOT_AN_IMAGE", "message": "GIF is not supported"},
            "detections": [],
            "review": {"needed": False, "auditSample": False, "reasons": []},
            "createdAt": "2024-03-01T12:30:00+00:00",
        },
    ],
    "manifest-line": [
        {
            "source-ref": "s3://my-bucket/incoming/a.jpg",
            "attr": {
                "annotations": [{"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4}],
                "image_size": [{"width": 640, "height": 480, "depth": 3}],
            },
            "attr-metadata": {
                "job-name": "labeling-job/attr",
                "class-map": {"0": "slice"},
                "human-annotated": "yes",
                "objects": [{"confidence": 1}],
                "creation-date": "2020-08-27T17:15:41.430Z",
                "type": "groundtruth/object-detection",
            },
        }
    ],
    "a2i-input-content": [
        {
            "taskObject": "s3://my-bucket/incoming/a.jpg",
            "initialValue": [{"label": "slice", **PIXEL_BOX}],
            "labels": ["slice"],
            "reasons": [REASON],
        }
    ],
    "a2i-output": [
        {
            "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/f",
            "humanLoopName": "ll-0a1b",
            "inputContent": {"taskObject": "s3://my-bucket/incoming/a.jpg"},
            "humanAnswers": [
                {
                    "answerContent": {
                        "annotatedResult": {
                            "boundingBoxes": [
                                {"label": "slice", "left": 1, "top": 2, "width": 3, "height": 4}
                            ],
                            "inputImageProperties": {"width": 640, "height": 480},
                        }
                    },
                    "submissionTime": "2024-03-01T12:41:07.000Z",
                    "workerId": "abc",
                }
            ],
        }
    ],
    "evaluation-summary": [
        {
            "Version": 1,
            "AggregatedEvaluationResults": {"F1Score": 0.9, "Precision": 0.9, "Recall": 0.9},
            "LabelEvaluationResults": [{"Label": "slice", "Metrics": {"F1Score": 0.9, "Threshold": 0.5}}],
        },
        {"AggregatedEvaluationResults": {"Metrics": {"F1Score": 0.8}}},
    ],
}


def _compiled_accepts(name: str, doc: Any) -> bool:
    try:
        schemas.validate(name, doc)
    except schemas.SchemaViolation:
        return False
    return True


def _reference_accepts(name: str, doc: Any) -> bool:
    return bool(jsonschema.Draft202012Validator(schemas.load_schema(name)).is_valid(doc))


def _mutations(doc: Any) -> Iterator[Any]:
    """Variants of `doc` with one change each: a key dropped, a value retyped, a stray key added."""
    if isinstance(doc, dict):
        yield {**doc, "unexpectedField": 1}
        for key, value in doc.items():
            yield {k: v for k, v in doc.items() if k != key}
            replacement: Any
            for replacement in (None, "1", 1, 1.5, True, [], {}, -1):
                if replacement != value or type(replacement) is not type(value):
                    yield {**doc, key: replacement}
            for inner in _mutations(value):
                yield {**doc, key: inner}
    elif isinstance(doc, list) and doc:
        yield []
        for inner in _mutations(doc[0]):
            yield [inner, *doc[1:]]


def test_every_contract_schema_exists_and_nothing_else() -> None:
    assert set(schemas.schema_names()) == CONTRACT_NAMES


@pytest.mark.parametrize("name", sorted(CONTRACT_NAMES))
def test_schema_is_a_valid_versioned_2020_12_schema(name: str) -> None:
    document = schemas.load_schema(name)
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == f"urn:labelloop:schema:{name}:v1"
    assert schemas.schema_path(name).resolve() == (REPO / "schemas" / f"{name}.v1.json").resolve()


def _keywords(node: Any, parent_is_properties: bool = False) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if not parent_is_properties:
                yield key
            is_map = not parent_is_properties and key in {"properties", "$defs"}
            yield from _keywords(value, parent_is_properties=is_map)
    elif isinstance(node, list):
        for item in node:
            yield from _keywords(item)


@pytest.mark.parametrize("name", sorted(CONTRACT_NAMES))
def test_schema_uses_only_keywords_both_engines_share(name: str) -> None:
    document = schemas.load_schema(name)
    keywords = set(_keywords(document)) - {"enum", "const"}  # their values are data, not schemas
    unsupported = keywords - ALLOWED_KEYWORDS
    assert not unsupported, unsupported
    text = json.dumps(document)
    # draft-07 ignores keywords next to $ref, 2020-12 applies them: never mix.
    for ref_holder in re.findall(r"\{[^{}]*\"\$ref\"[^{}]*\}", text):
        assert set(json.loads(ref_holder)) == {"$ref"}, ref_holder


def test_event_details_are_versioned() -> None:
    for name in (
        "review-requested",
        "labels-appended",
        "retraining-started",
        "model-promoted",
        "model-rejected",
    ):
        document = schemas.load_schema(name)
        assert document["properties"]["schemaVersion"] == {"const": "1"}, name
        assert "schemaVersion" in document["required"], name


@pytest.mark.parametrize("name", sorted(VALID))
def test_examples_are_valid_and_both_engines_agree_on_every_mutation(name: str) -> None:
    checked = 0
    for example in VALID[name]:
        assert _compiled_accepts(name, example) and _reference_accepts(name, example)
        for variant in _mutations(copy.deepcopy(example)):
            assert _compiled_accepts(name, variant) == _reference_accepts(name, variant), (name, variant)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("prediction", lambda d: d.pop("model")),  # PREDICTED without the model that predicted
        ("prediction", lambda d: d.update(status="REJECTED")),  # REJECTED without a rejection
        ("prediction", lambda d: d["detections"][0].update(confidence=100.5)),
        ("review-requested", lambda d: d.update(schemaVersion="2")),
        ("review-requested", lambda d: d.update(reasons=[])),
        ("review-requested", lambda d: d.update(imageId="not-a-hash")),
        ("labels-appended", lambda d: d.update(boxCount=True)),
        ("labels-appended", lambda d: d.update(loopName="LL_upper")),
        ("retraining-started", lambda d: d.update(mode="auto")),
        ("model-promoted", lambda d: d["perLabelF1"].update(slice=1.2)),
        ("manifest-line", lambda d: d["attr-metadata"].update(type="groundtruth/image-classification")),
        ("a2i-input-content", lambda d: d["initialValue"][0].update(width=0)),
    ],
)
def test_typical_mistakes_are_rejected_by_both_engines(name: str, change: Any) -> None:
    document = copy.deepcopy(VALID[name][0])
    change(document)
    assert not _compiled_accepts(name, document)
    assert not _reference_accepts(name, document)


def test_aws_event_schemas_allow_extra_fields() -> None:
    event = json.loads((REPO / "events/detect-object-created.json").read_text())
    event["detail"]["object"]["checksum"] = "new field AWS may add"
    event["new-top-level"] = {"x": 1}
    schemas.validate("s3-object-created-event", event)


def test_violation_is_an_invalid_event_naming_schema_and_place() -> None:
    with pytest.raises(SchemaViolation) as raised:
        schemas.validate("labels-appended", {**VALID["labels-appended"][0], "boxCount": "3"})
    assert isinstance(raised.value, InvalidEvent) and isinstance(raised.value, LabelloopError)
    assert raised.value.name == "labels-appended"
    assert "boxCount" in raised.value.message
    assert str(raised.value).startswith("labels-appended: ")


def test_unknown_schema_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown schema 'predictions'.*prediction"):
        schemas.validate("predictions", {})
    with pytest.raises(ValueError, match="unknown schema"):
        schemas.schema_path("../pyproject")


def test_validators_are_compiled_once_per_name() -> None:
    first = schemas._validator("prediction")
    assert schemas._validator("prediction") is first


def test_real_ground_truth_manifest_lines_are_valid(seed_manifest: Path) -> None:
    lines = [json.loads(line) for line in seed_manifest.read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        schemas.validate("manifest-line", line)
        assert _reference_accepts("manifest-line", line)
