import copy
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from labelloop_core.geometry import PixelBox
from labelloop_core.manifest import ClassMap, build_line, format_creation_date, validate_line

LABELS = ClassMap.from_labels(["pepperoni pizza slice", "cheese pizza slice"])
CREATED = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


def valid_line(boxes: list[tuple[str, PixelBox]] | None = None) -> dict[str, Any]:
    boxes = [("pepperoni pizza slice", PixelBox(10, 20, 100, 80))] if boxes is None else boxes
    return build_line(
        "s3://bucket/images/a b.jpg", boxes, 640, 480, LABELS, "pizza_BB", "labeling-job/x", CREATED
    )


def test_class_ids_are_indexes_in_the_configured_list() -> None:
    assert LABELS.id_of("cheese pizza slice") == 1
    assert LABELS.to_metadata() == {"0": "pepperoni pizza slice", "1": "cheese pizza slice"}
    assert ClassMap.from_csv(" a , b,c ").labels == ("a", "b", "c")


@pytest.mark.parametrize(
    ("labels", "message"),
    [([], "at least one"), (["a", "a"], "repeated: a"), ([" a"], "surrounding spaces"), ([""], "non-empty")],
)
def test_bad_label_lists_are_rejected(labels: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassMap.from_labels(labels)


def test_label_list_limits() -> None:
    with pytest.raises(ValueError, match="at most 250"):
        ClassMap.from_labels([f"label {i}" for i in range(251)])
    with pytest.raises(ValueError, match="256"):
        ClassMap.from_labels(["x" * 257])


def test_creation_date_is_utc_iso_with_milliseconds_and_z() -> None:
    assert format_creation_date(CREATED) == "2024-05-01T10:00:00.123Z"
    tokyo = timezone(timedelta(hours=9))
    assert format_creation_date(datetime(2024, 5, 1, 9, 0, tzinfo=tokyo)) == "2024-05-01T00:00:00.000Z"
    with pytest.raises(ValueError):
        format_creation_date(datetime(2024, 5, 1))


def test_build_line_has_the_ground_truth_object_detection_shape() -> None:
    line = valid_line(
        [("cheese pizza slice", PixelBox(10, 20, 100, 80)), ("pepperoni pizza slice", PixelBox(0, 0, 5, 5))]
    )
    assert line == {
        "source-ref": "s3://bucket/images/a b.jpg",
        "pizza_BB": {
            "annotations": [
                {"left": 10, "top": 20, "width": 100, "height": 80, "class_id": 1},
                {"left": 0, "top": 0, "width": 5, "height": 5, "class_id": 0},
            ],
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
        },
        "pizza_BB-metadata": {
            "job-name": "labeling-job/x",
            "class-map": {"0": "pepperoni pizza slice", "1": "cheese pizza slice"},
            "human-annotated": "yes",
            "objects": [{"confidence": 1}, {"confidence": 1}],
            "creation-date": "2024-05-01T10:00:00.123Z",
            "type": "groundtruth/object-detection",
        },
    }
    assert validate_line(line, LABELS) == []


def test_build_line_refuses_labels_outside_the_class_map() -> None:
    with pytest.raises(ValueError, match="'crust' is not one of the configured labels"):
        valid_line([("crust", PixelBox(1, 1, 5, 5))])


def test_line_without_boxes_is_valid() -> None:
    # Rekognition imports it (WARNING_NO_ANNOTATIONS: valid, not used for training).
    line = valid_line([])
    assert line["pizza_BB"]["annotations"] == [] and line["pizza_BB-metadata"]["objects"] == []
    assert validate_line(line, LABELS) == []


def broken(change: Any) -> dict[str, Any]:
    line = copy.deepcopy(valid_line())
    change(line)
    return line


def set_box(**values: Any) -> Any:
    return lambda line: line["pizza_BB"]["annotations"][0].update(values)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (["not", "an", "object"], "not a JSON object"),
        (broken(lambda line: line.pop("source-ref")), "missing source-ref"),
        (broken(lambda line: line.update({"source-ref": "https://b/a.jpg"})), "not an s3://bucket/key URI"),
        (broken(lambda line: line.pop("pizza_BB-metadata")), "no label attribute pair"),
        (broken(set_box(left=600)), "extends outside the 640x480 image"),
        (broken(set_box(top=-1)), "extends outside"),
        (broken(set_box(width=0)), "zero or negative size"),
        (broken(set_box(height=-5)), "zero or negative size"),
        (broken(set_box(left=10.5)), "integer class_id, left, top, width and height"),
        (broken(set_box(class_id=7)), "class id 7 is not in the class-map"),
        (broken(lambda line: line["pizza_BB-metadata"]["objects"].append({"confidence": 1})), "2 objects"),
        (
            broken(lambda line: line["pizza_BB-metadata"]["objects"][0].pop("confidence")),
            "numeric confidence",
        ),
        (
            broken(lambda line: line["pizza_BB"]["image_size"][0].pop("depth")),
            "image_size needs positive integer",
        ),
        (
            broken(lambda line: line["pizza_BB-metadata"].update({"creation-date": "yesterday"})),
            "creation-date",
        ),
        (broken(lambda line: line["pizza_BB-metadata"].pop("creation-date")), "creation-date None"),
        (
            broken(
                lambda line: line["pizza_BB-metadata"].update({"type": "groundtruth/image-classification"})
            ),
            "type",
        ),
        (broken(lambda line: line["pizza_BB-metadata"].update({"human-annotated": True})), "human-annotated"),
        (
            broken(lambda line: line["pizza_BB-metadata"].update({"class-map": {"zero": "a"}})),
            "class-map must map",
        ),
    ],
)
def test_invalid_lines_get_a_readable_reason(line: Any, reason: str) -> None:
    reasons = validate_line(line, LABELS)
    assert any(reason in r for r in reasons), reasons


def test_more_than_fifty_boxes_is_too_many() -> None:
    line = valid_line([("pepperoni pizza slice", PixelBox(i, i, 5, 5)) for i in range(51)])
    assert validate_line(line) == ["51 boxes; at most 50"]
    assert (
        validate_line(valid_line([("pepperoni pizza slice", PixelBox(i, i, 5, 5)) for i in range(50)])) == []
    )


def test_labels_unknown_to_the_configured_list_are_reported_only_with_a_class_map() -> None:
    line = broken(lambda line: line["pizza_BB-metadata"]["class-map"].update({"0": "anchovy"}))
    assert validate_line(line) == []
    assert validate_line(line, LABELS) == [
        "annotation 1: label 'anchovy' is not one of ['pepperoni pizza slice', 'cheese pizza slice']"
    ]


def test_every_problem_of_a_line_is_listed() -> None:
    line = broken(lambda line: (line.pop("source-ref"), line["pizza_BB"]["annotations"][0].update(left=9999)))
    assert len(validate_line(line)) == 2


def test_expected_attribute_must_be_present() -> None:
    assert validate_line(valid_line(), attribute="pizza_BB") == []
    assert "expected 'other' and 'other-metadata'" in validate_line(valid_line(), attribute="other")[0]


def test_lines_with_naive_dates_and_other_tools_layouts_are_valid() -> None:
    line = {
        "source-ref": "s3://bucket/images/IMG_1186.png",
        "bounding-box": {
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
            "annotations": [
                {"class_id": 1, "top": 251, "left": 399, "width": 155, "height": 101},
                {"class_id": 0, "top": 65, "left": 86, "width": 220, "height": 334},
            ],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1}, {"confidence": 1}],
            "class-map": {"0": "Echo", "1": "Echo Dot"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": "2013-11-18T02:53:27",
            "job-name": "my job",
        },
    }
    assert validate_line(json.loads(json.dumps(line))) == []


def test_building_and_validating_lines_leaves_the_merge_unloaded() -> None:
    """AppendLabels and Retrain import the manifest package at their cold start; only a merge needs
    its worker pool (subprocess, pickle) and the compiled Ground Truth layout."""
    probe = (
        "import sys\n"
        "from labelloop_core import manifest\n"
        "from labelloop_core.manifest import lines\n"
        "manifest.validate_line(manifest.build_line('s3://b/k.jpg', [], 10, 10, manifest.ClassMap(('a',)),"
        " 'x', 'job', '2024-01-01T00:00:00Z'))\n"
        "heavy = ('subprocess', 'pickle', 'orjson', 'labelloop_core.manifest.merging')\n"
        "loaded = sorted(name for name in heavy if name in sys.modules)\n"
        "print(loaded, lines._layout.cache_info().currsize)\n"
        "manifest.merge\n"
        "print('labelloop_core.manifest.merging' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[] 0", "True"]
