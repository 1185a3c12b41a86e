"""The real Ground Truth manifest and photos of the AWS sample (shared/seed-data, never copied into the
repo). Skipped when the seed data is not on this machine."""

import io
import json
from pathlib import Path
from typing import Any

import pytest

from labelloop_core.a2i import ANSWER_ELEMENT, answer_to_manifest_line, parse_output
from labelloop_core.geometry import PixelBox
from labelloop_core.imageinfo import HEADER_BYTES, ImageInfo, probe
from labelloop_core.manifest import ClassMap, build_line, merge, validate_line
from labelloop_core.naming import ImageRef
from labelloop_core.review_input import build_input_content
from tests.support.paths import SEED_DATA

pytestmark = pytest.mark.skipif(SEED_DATA is None, reason="seed data not present (LABELLOOP_SEED_DATA)")
ATTRIBUTE = "pepperoni_pizza_BB"
LABELS = ClassMap.from_labels(["pepperoni pizza slice"])


def seed() -> Path:
    assert SEED_DATA is not None
    return SEED_DATA


def manifest_text() -> list[str]:
    return (seed() / "manifest" / "output-change.manifest").read_text(encoding="utf-8").splitlines()


def photo(source_ref: str) -> Path:
    name = source_ref.rsplit("/", 1)[1]
    for folder in ("images", "testimages"):
        if (seed() / folder / name).is_file():
            return seed() / folder / name
    raise AssertionError(f"no photo for {source_ref}")


def real_size(path: Path) -> ImageInfo:
    with path.open("rb") as handle:
        header = handle.read(HEADER_BYTES)  # what the Detect function's ranged GET reads
    return probe(header, path.stat().st_size)


def assert_boxes_inside_real_image(line: dict[str, Any]) -> None:
    info = real_size(photo(line["source-ref"]))
    assert line[ATTRIBUTE]["image_size"] == [
        {"width": info.width, "height": info.height, "depth": info.depth}
    ]
    for box in line[ATTRIBUTE]["annotations"]:
        assert box["left"] >= 0 and box["top"] >= 0 and box["width"] > 0 and box["height"] > 0
        assert box["left"] + box["width"] <= info.width and box["top"] + box["height"] <= info.height


def test_every_seed_line_is_valid_and_matches_its_photo() -> None:
    lines = [json.loads(text) for text in manifest_text()]
    assert len(lines) == 12
    for line in lines:
        assert validate_line(line, LABELS, ATTRIBUTE) == []
        assert_boxes_inside_real_image(line)


def test_build_line_reproduces_the_seed_lines() -> None:
    for text in manifest_text():
        line = json.loads(text)
        metadata = line[f"{ATTRIBUTE}-metadata"]
        size = line[ATTRIBUTE]["image_size"][0]
        boxes = [
            (
                metadata["class-map"][str(a["class_id"])],
                PixelBox(a["left"], a["top"], a["width"], a["height"]),
            )
            for a in line[ATTRIBUTE]["annotations"]
        ]
        rebuilt = build_line(
            line["source-ref"],
            boxes,
            size["width"],
            size["height"],
            LABELS,
            ATTRIBUTE,
            metadata["job-name"],
            metadata["creation-date"],
            size["depth"],
        )
        assert rebuilt == line


def test_every_photo_header_probes_as_a_valid_jpeg() -> None:
    photos = sorted((seed() / "images").glob("*.jpg")) + sorted((seed() / "testimages").glob("*.jpg"))
    assert len(photos) == 15
    for path in photos:
        info = real_size(path)
        assert (
            info.format == "JPEG"
            and min(info.width, info.height) >= 64
            and max(info.width, info.height) <= 4096
        )


def human_label(source_ref: str, boxes: list[dict[str, Any]], submitted: str) -> str:
    """A label line made the way the pipeline makes one: InputContent -> A2I output.json -> line."""
    info = real_size(photo(source_ref))
    bucket, key = source_ref[5:].split("/", 1)
    image = ImageRef(bucket, key, etag="seed")
    content = build_input_content(image, info.width, info.height, [], list(LABELS.labels), [])
    answer = {
        "answerContent": {
            ANSWER_ELEMENT: {
                "boundingBoxes": boxes,
                "inputImageProperties": {"width": info.width, "height": info.height},
            }
        },
        "submissionTime": submitted,
        "workerId": "seed-test",
    }
    review = parse_output({"humanLoopName": "ll-seed", "inputContent": content, "humanAnswers": [answer]})
    line = answer_to_manifest_line(review, LABELS, ATTRIBUTE, "ll-seed")
    return json.dumps(line, separators=(",", ":"))


def test_merge_with_human_labels_keeps_every_box_inside_the_real_photos() -> None:
    base = manifest_text()
    refs = [json.loads(text)["source-ref"] for text in base]
    huge = {"label": "pepperoni pizza slice", "left": 2000, "top": 1500, "width": 5000, "height": 5000}
    labels = [
        human_label(refs[0], [huge], "2024-05-01T10:00:00.000Z"),  # clamped to the photo
        human_label(refs[0], [], "2023-01-01T00:00:00.000Z"),  # older: superseded
        human_label(refs[5], [], "2024-05-02T10:00:00.000Z"),  # the reviewer saw no slices
        human_label(
            "s3://bucket/prefix/data/testimages/pexels-athena-2180875.jpg",
            [{"label": "pepperoni pizza slice", "left": 10.5, "top": 20, "width": 300, "height": 200}],
            "2024-05-03T10:00:00.000Z",
        ),
    ]
    out = io.StringIO()
    report = merge(
        [f"{text}\n" for text in [*base, base[3]]], [f"{text}\n" for text in labels], out, LABELS, ATTRIBUTE
    )
    assert (report.kept, report.replaced, report.added, report.superseded) == (10, 2, 1, 1)
    assert report.dropped == {"duplicate source-ref": 1}
    merged = [json.loads(text) for text in out.getvalue().splitlines()]
    assert len(merged) == 13
    for line in merged:
        assert validate_line(line, LABELS, ATTRIBUTE) == []
        assert_boxes_inside_real_image(line)
    first = merged[0][ATTRIBUTE]
    width, height = first["image_size"][0]["width"], first["image_size"][0]["height"]
    assert first["annotations"] == [
        {"left": 2000, "top": 1500, "width": width - 2000, "height": height - 1500, "class_id": 0}
    ]
    assert merged[5][ATTRIBUTE]["annotations"] == []


def test_manifest_cli_merges_the_seed_without_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from labelloop_local.cli import manifest as manifest_cli

    labels = tmp_path / "labels"
    labels.mkdir()
    first_ref = json.loads(manifest_text()[0])["source-ref"]
    (labels / "ll-seed.json").write_text(human_label(first_ref, [], "2024-05-01T10:00:00.000Z"))
    out = tmp_path / "train.manifest"
    parser = argparse.ArgumentParser()
    manifest_cli.register(parser.add_subparsers(dest="command", required=True))
    base = seed() / "manifest" / "output-change.manifest"
    args = parser.parse_args(
        ["manifest", "merge", "--base", str(base), "--labels", str(labels), "-o", str(out)]
    )
    assert args.func(args) == 0
    assert "replaced            1" in capsys.readouterr().out
    merged = [json.loads(text) for text in out.read_text().splitlines()]
    assert len(merged) == 12
    assert all(validate_line(line, LABELS, ATTRIBUTE) == [] for line in merged)
    assert merged[0][ATTRIBUTE]["annotations"] == []
