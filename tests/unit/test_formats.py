"""`labelloop manifest export|import`: COCO, YOLO and Pascal VOC round trips, the reference readers'
view of the exports, and how bad input is reported (named, nothing half-written)."""

from __future__ import annotations

import argparse
import json
import os
import random
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelloop_core.manifest import ClassMap, validate_line
from labelloop_local.cli import manifest as manifest_cli
from labelloop_local.formats import yolo
from labelloop_local.formats.groundtruth import Box

ATTR = "pizza_BB"
LABELS = ["pepperoni pizza slice", "cheese pizza slice", "crust"]
PREFIX = "s3://bucket/images/"


def cli(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="labelloop")
    manifest_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return int(args.func(args))


def gt_line(name: str, size: tuple[int, int], boxes: list[tuple[int, int, int, int, int]]) -> dict[str, Any]:
    return {
        "source-ref": PREFIX + name,
        ATTR: {
            "annotations": [
                {"left": x, "top": y, "width": w, "height": h, "class_id": c} for x, y, w, h, c in boxes
            ],
            "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
        },
        f"{ATTR}-metadata": {
            "job-name": "labeling-job/pizza",
            "class-map": {str(i): name for i, name in enumerate(LABELS)},
            "human-annotated": "yes",
            "objects": [{"confidence": 1} for _ in boxes],
            "creation-date": "2024-05-01T10:00:00.000Z",
            "type": "groundtruth/object-detection",
        },
    }


def write_manifest(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def content(path: Path) -> dict[str, tuple[int, int, list[tuple[int, int, int, int, str, int]]]]:
    """source-ref -> (width, height, sorted boxes with label name and class id): what must survive."""
    found = {}
    for text in path.read_text().splitlines():
        line = json.loads(text)
        attr = next(k for k in line if k != "source-ref" and not k.endswith("-metadata"))
        names = line[attr + "-metadata"]["class-map"]
        size = line[attr]["image_size"][0]
        boxes = sorted(
            (b["left"], b["top"], b["width"], b["height"], names[str(b["class_id"])], b["class_id"])
            for b in line[attr]["annotations"]
        )
        found[line["source-ref"]] = (size["width"], size["height"], boxes)
    return found


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """Three labels, boxes touching every edge, an image with no boxes, a 4096-pixel side."""
    return write_manifest(
        tmp_path / "train.manifest",
        [
            gt_line("a.jpg", (640, 480), [(0, 0, 640, 480, 0), (10, 20, 30, 40, 1)]),
            gt_line("b.png", (4096, 3), [(4095, 0, 1, 3, 2), (1, 1, 4094, 1, 0)]),
            gt_line("c.jpg", (333, 777), []),
            gt_line("d.jpg", (1001, 999), [(500, 499, 1, 1, 1), (0, 998, 1001, 1, 2), (7, 7, 993, 991, 0)]),
        ],
    )


def export(source: Path, fmt: str, out: Path, *extra: str | Path) -> int:
    return cli("manifest", "export", source, "--format", fmt, "-o", out, *extra)


def import_(fmt: str, source: Path, out: Path, *extra: str | Path) -> int:
    return cli("manifest", "import", "--format", fmt, source, "--source-prefix", PREFIX, "-o", out, *extra)


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_round_trip_reproduces_every_box_to_the_pixel_and_every_label(
    manifest: Path, tmp_path: Path, fmt: str
) -> None:
    assert export(manifest, fmt, tmp_path / "dataset") == 0
    assert (
        import_(fmt, tmp_path / "dataset", tmp_path / "back.manifest", "--labels-list", ",".join(LABELS)) == 0
    )
    assert content(tmp_path / "back.manifest") == content(manifest)
    for text in (tmp_path / "back.manifest").read_text().splitlines():
        assert validate_line(json.loads(text), ClassMap.from_labels(LABELS), "pepperoni_pizza_BB") == []


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_seed_manifest_round_trips_exactly(seed_manifest: Path, tmp_path: Path, fmt: str) -> None:
    assert export(seed_manifest, fmt, tmp_path / "dataset") == 0
    back = tmp_path / "back.manifest"
    prefix = "s3://bucket/prefix/data/images/"  # the seed's placeholder source-refs
    assert (
        cli(
            "manifest", "import", "--format", fmt, tmp_path / "dataset", "--source-prefix", prefix, "-o", back
        )
        == 0
    )
    assert content(back) == content(seed_manifest)


def test_without_labels_the_ground_truth_class_ids_are_kept(manifest: Path, tmp_path: Path) -> None:
    assert export(manifest, "coco", tmp_path / "coco") == 0
    assert import_("coco", tmp_path / "coco", tmp_path / "back.manifest") == 0  # the file's category order
    assert content(tmp_path / "back.manifest") == content(manifest)


def test_yolo_import_without_the_sidecar_reads_image_sizes_from_the_images(
    seed_data: Path, seed_manifest: Path, tmp_path: Path
) -> None:
    dataset = tmp_path / "yolo"
    assert export(seed_manifest, "yolo", dataset, "--images", seed_data / "images") == 0
    (dataset / yolo.SIDECAR).unlink()
    back = tmp_path / "back.manifest"
    prefix = "s3://bucket/prefix/data/images/"
    assert cli("manifest", "import", "--format", "yolo", dataset, "--source-prefix", prefix, "-o", back) == 0
    assert content(back) == content(seed_manifest)


# --- YOLO rounding -------------------------------------------------------------------------------


def _edge_error(box: Box, width: int, height: int, digits: int) -> int:
    cx, cy, w, h = (float(v) for v in yolo.normalize(box, width, height, digits))
    back = yolo.denormalize(cx, cy, w, h, width, height)
    return max(
        abs(back.left - box.left),
        abs(back.top - box.top),
        abs(back.right - (box.left + box.width)),
        abs(back.bottom - (box.top + box.height)),
    )


def _random_box(rng: random.Random, width: int, height: int) -> Box:
    left, top = rng.randrange(width), rng.randrange(height)
    return Box("x", left, top, rng.randint(1, width - left), rng.randint(1, height - top))


def test_yolo_rounding_is_exact_below_the_stated_side_limit() -> None:
    assert yolo.exact_side_limit(6) == 666_666  # 1.5 * 0.5e-6 * side < 0.5 px
    rng = random.Random(7)
    for side in (1, 2, 3, 64, 639, 4096, 99_999, yolo.exact_side_limit(6)):
        for _ in range(300):
            width, height = side, rng.randint(1, side)
            assert _edge_error(_random_box(rng, width, height), width, height, 6) == 0


@pytest.mark.parametrize("digits", [2, 3, 4])
def test_yolo_rounding_error_stays_within_the_bound_and_grows_past_the_limit(digits: int) -> None:
    rng = random.Random(digits)
    limit = yolo.exact_side_limit(digits)
    for _ in range(500):
        side = rng.randint(1, limit)
        assert _edge_error(_random_box(rng, side, side), side, side, digits) == 0
    worst = 0
    for _ in range(2000):
        side = rng.randint(limit + 1, 20 * limit)
        error = _edge_error(_random_box(rng, side, side), side, side, digits)
        assert error <= 1.5 * 0.5 * 10**-digits * side + 0.5  # the stated bound, plus rounding to a pixel
        worst = max(worst, error)
    assert worst >= 1  # past the limit boxes do move: the limit is not slack


# --- the reference readers ---------------------------------------------------------------------------


def test_coco_export_loads_in_pycocotools_with_the_right_counts(manifest: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    assert export(manifest, "coco", tmp_path / "coco") == 0
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == 4
    assert len(coco.getAnnIds()) == 7
    assert {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())} == {
        "pepperoni pizza slice": 1,
        "cheese pizza slice": 2,
        "crust": 3,
    }
    assert len(coco.getAnnIds(catIds=[1])) == 3
    image = next(i for i in coco.loadImgs(coco.getImgIds()) if i["file_name"] == "b.png")
    assert (image["width"], image["height"], image["coco_url"]) == (4096, 3, PREFIX + "b.png")
    boxes = sorted(a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])))
    assert boxes == [[1, 1, 4094, 1], [4095, 0, 1, 3]]
    assert all(
        a["area"] == a["bbox"][2] * a["bbox"][3] and a["iscrowd"] == 0 for a in coco.dataset["annotations"]
    )


def _ultralytics_label_path(image: str) -> str:
    """The documented rule, written out independently: /images/ -> /labels/, suffix -> .txt."""
    head, tail = image.rsplit(f"{os.sep}images{os.sep}", 1)
    return f"{head}{os.sep}labels{os.sep}{tail.rsplit('.', 1)[0]}.txt"


def test_yolo_export_has_the_layout_ultralytics_documents(
    seed_data: Path, seed_manifest: Path, tmp_path: Path
) -> None:
    dataset = tmp_path / "yolo"
    assert export(seed_manifest, "yolo", dataset, "--images", seed_data / "images") == 0
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert "path" not in data  # the root is then the folder of data.yaml
    assert (dataset / data["train"]).is_dir() and (dataset / data["val"]).is_dir()
    assert data["names"] == {0: "pepperoni pizza slice"} and data["nc"] == len(data["names"])
    images = sorted((dataset / "images").iterdir())
    assert len(images) == 12
    objects = 0
    for image in images:
        labels = Path(_ultralytics_label_path(str(image)))
        for row in labels.read_text().splitlines():
            class_id, *values = row.split()
            assert int(class_id) in data["names"] and len(values) == 4
            assert all(0 <= float(v) <= 1 for v in values) and all(len(v.split(".")[1]) == 6 for v in values)
            objects += 1
    assert objects == 23
    assert sorted(p.stem for p in (dataset / "labels").iterdir()) == sorted(p.stem for p in images)


def test_yolo_names_are_in_class_id_order_and_survive_yaml_quoting(tmp_path: Path) -> None:
    labels = ['b: tricky "name"', "a #not a comment", "ünïcode 🍕"]
    line = gt_line("a.jpg", (10, 10), [(1, 1, 2, 2, 2)])
    line[f"{ATTR}-metadata"]["class-map"] = {str(i): n for i, n in enumerate(labels)}
    manifest = write_manifest(tmp_path / "m.manifest", [line])
    assert export(manifest, "yolo", tmp_path / "yolo") == 0
    assert yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text(encoding="utf-8"))["names"] == dict(
        enumerate(labels)
    )
    assert (tmp_path / "yolo" / "labels" / "a.txt").read_text().split()[0] == "2"


def test_voc_export_is_the_classic_layout_with_one_based_corners(manifest: Path, tmp_path: Path) -> None:
    assert export(manifest, "voc", tmp_path / "voc") == 0
    stems = (tmp_path / "voc" / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    assert stems == ["a", "b", "c", "d"]
    root = ET.parse(tmp_path / "voc" / "Annotations" / "a.xml").getroot()
    assert root.tag == "annotation" and root.findtext("filename") == "a.jpg"
    assert [root.findtext(f"size/{t}") for t in ("width", "height", "depth")] == ["640", "480", "3"]
    objects = root.findall("object")
    assert [o.findtext("name") for o in objects] == ["pepperoni pizza slice", "cheese pizza slice"]
    whole = [int(objects[0].findtext(f"bndbox/{t}") or "") for t in ("xmin", "ymin", "xmax", "ymax")]
    assert whole == [1, 1, 640, 480]  # the whole image, as the devkit counts pixels
    # Detectron2's VOC reader: x0 = xmin - 1, x1 = xmax -> our left and left + width
    x0, y0, x1, y1 = (int(objects[1].findtext(f"bndbox/{t}") or "") for t in ("xmin", "ymin", "xmax", "ymax"))
    assert (x0 - 1, y0 - 1, x1 - (x0 - 1), y1 - (y0 - 1)) == (10, 20, 30, 40)


def test_voc_origin_zero_round_trips_too(manifest: Path, tmp_path: Path) -> None:
    assert export(manifest, "voc", tmp_path / "voc", "--voc-origin", "0") == 0
    xmin = ET.parse(tmp_path / "voc" / "Annotations" / "a.xml").getroot().findtext("object/bndbox/xmin")
    assert xmin == "0"
    assert (
        import_(
            "voc",
            tmp_path / "voc",
            tmp_path / "back.manifest",
            "--voc-origin",
            "0",
            "--labels-list",
            ",".join(LABELS),
        )
        == 0
    )
    assert content(tmp_path / "back.manifest") == content(manifest)


# --- bad input -----------------------------------------------------------------------------------


def test_export_names_each_bad_line_and_writes_nothing(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_box = gt_line("e.jpg", (100, 100), [(90, 90, 20, 20, 0)])
    source = write_manifest(
        tmp_path / "mixed.manifest", [*map(json.loads, manifest.read_text().splitlines()), "{nope", bad_box]
    )
    assert export(source, "coco", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"{source}:5: not valid JSON" in err
    assert (
        f"{source}:6: annotation 1 (left=90, top=90, width=20, height=20) extends outside the 100x100 image"
        in err
    )
    assert "nothing written" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_skip_invalid_writes_the_valid_lines(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_manifest(
        tmp_path / "mixed.manifest", [*map(json.loads, manifest.read_text().splitlines()), "[]"]
    )
    assert export(source, "yolo", tmp_path / "out", "--skip-invalid") == 0
    assert f"{source}:5: the line is not a JSON object" in capsys.readouterr().err
    assert len(list((tmp_path / "out" / "labels").iterdir())) == 4


def test_two_images_with_one_file_name_need_keep_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = gt_line("a.jpg", (10, 10), [(1, 1, 2, 2, 0)])
    second = dict(
        gt_line("a.jpg", (10, 10), [(3, 3, 2, 2, 0)]), **{"source-ref": "s3://bucket/incoming/a.jpg"}
    )
    source = write_manifest(tmp_path / "m.manifest", [first, second])
    assert export(source, "coco", tmp_path / "flat") == 1
    err = capsys.readouterr().err
    used = f"file name 'a.jpg' of s3://bucket/incoming/a.jpg is already used by the image of {source}:1"
    assert f"{source}:2: {used}" in err
    assert export(source, "voc", tmp_path / "kept", "--keep-paths") == 0
    assert sorted(
        p.relative_to(tmp_path / "kept" / "Annotations").as_posix()
        for p in (tmp_path / "kept" / "Annotations").rglob("*.xml")
    ) == ["images/a.xml", "incoming/a.xml"]


def test_conflicting_class_ids_without_labels_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = gt_line("a.jpg", (10, 10), [(1, 1, 2, 2, 0)])
    second = gt_line("b.jpg", (10, 10), [(1, 1, 2, 2, 0)])
    second[f"{ATTR}-metadata"]["class-map"] = {"0": "crust"}
    source = write_manifest(tmp_path / "m.manifest", [first, second])
    assert export(source, "yolo", tmp_path / "out") == 1
    assert (
        f"{source}:2: class id 0 is 'crust' here but 'pepperoni pizza slice' in {source}:1"
        in capsys.readouterr().err
    )
    assert export(source, "yolo", tmp_path / "out", "--labels-list", ",".join(LABELS)) == 0
    assert (tmp_path / "out" / "labels" / "b.txt").read_text().startswith("2 ")  # crust is id 2 in the list


def test_import_reports_unknown_categories_and_writes_nothing(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(manifest, "coco", tmp_path / "coco") == 0
    out = tmp_path / "base.manifest"
    assert import_("coco", tmp_path / "coco", out, "--labels-list", "pepperoni pizza slice,crust") == 1
    err = capsys.readouterr().err
    assert "category 'cheese pizza slice': not one of the labels ['pepperoni pizza slice', 'crust']" in err
    assert not out.exists()


def test_import_names_bad_coco_elements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
            {"id": 2, "file_name": "b.jpg"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 20, 20]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [200, 10, 20, 20]},
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": "wide"},
        ],
        "categories": [{"id": 1, "name": "crust"}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(document))
    assert import_("coco", path, tmp_path / "out.manifest") == 1
    err = capsys.readouterr().err
    assert f"{path}: images[1]: width None, height None: positive integers needed" in err
    assert f"{path}: annotations[1]: category_id 9 is not a category of the file" in err
    assert f"{path}: annotations[2]: bbox [200, 10, 20, 20] has no area inside the 100x50 image" in err
    assert f"{path}: annotations[3]: bbox 'wide' must be [x, y, width, height] numbers" in err
    assert not (tmp_path / "out.manifest").exists()


def test_import_cuts_boxes_to_the_image_and_rounds_float_coordinates(tmp_path: Path) -> None:
    document = {
        "images": [{"id": 7, "file_name": "./a.jpg", "width": 100, "height": 50}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [90.4, 10.6, 20.2, 19.9]}],
        "categories": [{"id": 3, "name": "crust"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    assert import_("coco", tmp_path, tmp_path / "out.manifest") == 0
    assert content(tmp_path / "out.manifest") == {PREFIX + "a.jpg": (100, 50, [(90, 11, 10, 19, "crust", 0)])}


def test_import_names_bad_yolo_lines(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(manifest, "yolo", tmp_path / "yolo") == 0
    labels = tmp_path / "yolo" / "labels"
    (labels / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    (labels / "d.txt").write_text("0 0.5 0.5 1.7 0.1\n0 0.1 0.1 0.1 0.1 0.3 0.3\n")
    assert import_("yolo", tmp_path / "yolo", tmp_path / "out.manifest") == 1
    err = capsys.readouterr().err
    assert f"{labels / 'a.txt'}:2: class 7 is not in the names of {tmp_path / 'yolo' / 'data.yaml'}" in err
    assert f"{labels / 'd.txt'}:1: cx cy w h 0.5 0.5 1.7 0.1 must be normalized to 0-1" in err
    assert f"{labels / 'd.txt'}:2: 7 values; a box line is `class cx cy w h`" in err
    assert not (tmp_path / "out.manifest").exists()


def test_import_names_bad_voc_files(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(manifest, "voc", tmp_path / "voc") == 0
    annotations = tmp_path / "voc" / "Annotations"
    (annotations / "b.xml").write_text("<annotation><filename>b.png</filename>")
    text = (annotations / "a.xml").read_text().replace("<xmin>11</xmin>", "<xmin>eleven</xmin>")
    (annotations / "a.xml").write_text(text)
    assert import_("voc", tmp_path / "voc", tmp_path / "out.manifest", "--labels-list", ",".join(LABELS)) == 1
    err = capsys.readouterr().err
    assert f"{annotations / 'a.xml'}: <object> 2: (cheese pizza slice) <bndbox> needs numeric xmin" in err
    assert f"{annotations / 'b.xml'}: not readable XML" in err


def test_output_that_exists_is_refused_with_a_one_line_message(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert export(manifest, "coco", tmp_path / "out") == 2
    reason = "already exists and is not an empty folder; remove it or choose another"
    message = f"error: -o {tmp_path / 'out'}: {reason}"
    assert capsys.readouterr().err.strip().splitlines() == [message]
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_help_describes_the_commands_and_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("export", "import"):
        with pytest.raises(SystemExit):
            cli("manifest", action, "--help")
        text = capsys.readouterr().out
        assert "validated as the merge validates" in " ".join(text.split())
        assert "(default: 1)" in text  # --voc-origin


# --- S3 and the stack, on moto -------------------------------------------------------------------


@pytest.fixture
def s3_bucket(aws_env: None) -> Any:
    from moto import mock_aws

    with mock_aws():
        import boto3

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="bucket")
        yield s3


def test_export_reads_a_bucket_prefix_and_copies_images_from_s3(s3_bucket: Any, tmp_path: Path) -> None:
    first = gt_line("a.jpg", (640, 480), [(10, 20, 30, 40, 1)])
    second = gt_line("b.png", (64, 64), [(0, 0, 64, 64, 0)])
    s3_bucket.put_object(Bucket="bucket", Key="labels/ll-1.json", Body=json.dumps(first, indent=2))
    s3_bucket.put_object(Bucket="bucket", Key="labels/ll-2.json", Body=json.dumps(second))
    s3_bucket.put_object(Bucket="bucket", Key="labels/notes.txt", Body=b"not a label file")
    for name in ("a.jpg", "b.png"):
        s3_bucket.put_object(Bucket="bucket", Key=f"images/{name}", Body=f"bytes of {name}".encode())
    out = tmp_path / "coco"
    assert (
        cli("manifest", "export", "s3://bucket/labels/", "--format", "coco", "-o", out, "--images", PREFIX)
        == 0
    )
    document = json.loads((out / "annotations.json").read_text())
    assert [i["file_name"] for i in document["images"]] == ["a.jpg", "b.png"]
    assert (out / "images" / "b.png").read_bytes() == b"bytes of b.png"
    assert import_("coco", out, tmp_path / "back.manifest", "--labels-list", ",".join(LABELS)) == 0
    manifest = write_manifest(tmp_path / "m.manifest", [first, second])
    assert content(tmp_path / "back.manifest") == content(manifest)


def test_a_missing_s3_image_fails_the_export_naming_it(
    s3_bucket: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_bucket.put_object(
        Bucket="bucket", Key="manifests/train.manifest", Body=json.dumps(gt_line("a.jpg", (9, 9), []))
    )
    out = tmp_path / "voc"
    code = cli(
        "manifest",
        "export",
        "s3://bucket/manifests/train.manifest",
        "--format",
        "voc",
        "-o",
        out,
        "--images",
        PREFIX,
    )
    assert code == 1
    assert (
        "error: s3://bucket/manifests/train.manifest:1: image s3://bucket/images/a.jpg: 404"
        in capsys.readouterr().err
    )
    assert not out.exists()


def test_import_takes_labels_and_attribute_from_the_stack(
    aws_env: None, manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from botocore.stub import Stubber

    cloudformation = boto3.client("cloudformation")  # stubbed: a moto stack costs seconds of CI time
    stubber = Stubber(cloudformation)
    stack = {
        "StackName": "labelloop",
        "CreationTime": datetime(2026, 12, 1, tzinfo=UTC),
        "StackStatus": "CREATE_COMPLETE",
        "Parameters": [
            {"ParameterKey": "Labels", "ParameterValue": "crust,cheese pizza slice,pepperoni pizza slice"},
            {"ParameterKey": "LabelAttribute", "ParameterValue": "stack_BB"},
        ],
    }
    stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "labelloop"})
    real_client = boto3.client
    monkeypatch.setattr(
        boto3,
        "client",
        lambda name, *a, **k: cloudformation if name == "cloudformation" else real_client(name, *a, **k),
    )
    stubber.activate()
    assert export(manifest, "yolo", tmp_path / "yolo") == 0
    out = tmp_path / "base.manifest"
    assert import_("yolo", tmp_path / "yolo", out, "--stack", "labelloop") == 0
    lines = [json.loads(text) for text in out.read_text().splitlines()]
    assert all("stack_BB" in line for line in lines)
    first = lines[0]["stack_BB"]["annotations"]
    assert [a["class_id"] for a in first] == [2, 1]  # pepperoni and cheese, in the stack's order
    stubber.assert_no_pending_responses()
