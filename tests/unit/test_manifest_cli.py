import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labelloop_core.manifest import ClassMap, validate_line
from labelloop_local.cli import manifest as manifest_cli

ATTR = "pizza_BB"


def cli(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="labelloop")
    manifest_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return int(args.func(args))


def gt(
    name: str, class_map: dict[str, str], boxes: list[tuple[int, int, int, int, int]], created: str
) -> dict[str, Any]:
    return {
        "source-ref": f"s3://bucket/images/{name}",
        ATTR: {
            "annotations": [
                {"left": x, "top": y, "width": w, "height": h, "class_id": c} for x, y, w, h, c in boxes
            ],
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
        },
        f"{ATTR}-metadata": {
            "job-name": "labeling-job/x",
            "class-map": class_map,
            "human-annotated": "yes",
            "objects": [{"confidence": 1} for _ in boxes],
            "creation-date": created,
            "type": "groundtruth/object-detection",
        },
    }


def jsonl(path: Path, lines: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


OLD, NEW = "2020-01-01T00:00:00.000Z", "2024-01-01T00:00:00.000Z"


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    base = jsonl(
        tmp_path / "base.manifest",
        [
            gt("a.jpg", {"0": "pepperoni"}, [(1, 1, 10, 10, 0)], OLD),
            gt("b.jpg", {"0": "pepperoni"}, [(1, 1, 10, 10, 0)], OLD),
            gt("a.jpg", {"0": "pepperoni"}, [(2, 2, 10, 10, 0)], OLD),
            "{broken",
        ],
    )
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "ll-1.json").write_text(
        json.dumps(gt("b.jpg", {"0": "cheese"}, [(5, 5, 20, 20, 0)], NEW), indent=2)
    )
    jsonl(labels / "more.manifest", [gt("c.jpg", {"0": "pepperoni", "1": "cheese"}, [(3, 3, 9, 9, 1)], NEW)])
    (labels / "notes.txt").write_text("not a label file")
    return base, labels


def test_merge_prints_counts_and_writes_a_valid_manifest(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, labels = inputs
    out = tmp_path / "merged.manifest"
    assert cli("manifest", "merge", "--base", base, "--labels", labels, "-o", out, "--workers", "0") == 0
    printed = capsys.readouterr().out
    for expected in ("kept", "replaced", "added", "dropped", "duplicate source-ref: 1", "invalid JSON: 1"):
        assert expected in printed
    lines = read(out)
    assert [line["source-ref"][-5:] for line in lines] == ["a.jpg", "b.jpg", "c.jpg"]
    # Default labels: the distinct class names of the inputs, sorted; default attribute: the base's.
    canonical = ClassMap.from_labels(["cheese", "pepperoni"])
    assert "0=cheese, 1=pepperoni" in printed
    assert all(validate_line(line, canonical, ATTR) == [] for line in lines)
    assert lines[0][ATTR]["annotations"][0]["class_id"] == 1
    assert lines[1][ATTR]["annotations"][0] == {"left": 5, "top": 5, "width": 20, "height": 20, "class_id": 0}


def test_merge_writes_the_same_file_and_report_whatever_the_json_layout_of_the_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        gt("a.jpg", {"0": "pepperoni", "1": "cheese"}, [(1, 1, 10, 10, 1)], OLD),
        gt("b/é.jpg", {"1": "pepperoni"}, [(2, 2, 5, 5, 1)], OLD),
        gt("a.jpg", {"0": "pepperoni"}, [(3, 3, 5, 5, 0)], OLD),
    ]
    labels = [gt("b/é.jpg", {"0": "anchovy"}, [(3, 3, 9, 9, 0)], NEW)]
    layouts: dict[str, Callable[[Any], str]] = {
        "compact": lambda line: json.dumps(line, ensure_ascii=False, separators=(",", ":")),
        "json.dumps": json.dumps,
        "escaped, spaced": lambda line: json.dumps(line, indent=None, separators=(" , ", " : ")).replace(
            "/", "\\/"
        ),
    }
    written, printed = set(), set()
    for name, dump in layouts.items():
        base_file, label_file = tmp_path / f"{name}.manifest", tmp_path / f"{name}-labels.manifest"
        base_file.write_text("".join(dump(line) + "\n" for line in base), encoding="utf-8")
        label_file.write_text("".join(dump(line) + "\n" for line in labels), encoding="utf-8")
        out = tmp_path / f"{name}-merged.manifest"
        assert cli("manifest", "merge", "--base", base_file, "--labels", label_file, "-o", out) == 0
        written.add(out.read_bytes())
        shown = [line for line in capsys.readouterr().out.splitlines() if str(tmp_path) not in line]
        printed.add("\n".join(shown))  # without the lines that name the files
    assert len(written) == 1 and len(printed) == 1
    (report,) = printed
    assert "labels: 0=anchovy, 1=cheese, 2=pepperoni" in report
    assert "duplicate source-ref: 1" in report


def test_merge_with_explicit_labels_and_attribute(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    base, labels = inputs
    out = tmp_path / "merged.manifest"
    args = ["--labels-list", "pepperoni, cheese", "--attribute", "bb", "--workers", "0"]
    assert (
        cli("manifest", "merge", "--base", base, "--labels", labels / "more.manifest", "-o", out, *args) == 0
    )
    lines = read(out)
    assert lines[0]["bb-metadata"]["class-map"] == {"0": "pepperoni", "1": "cheese"}
    assert lines[-1]["bb"]["annotations"][0]["class_id"] == 1


def test_merge_reports_usage_errors_without_writing(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, labels = inputs
    out = tmp_path / "merged.manifest"
    assert cli("manifest", "merge", "--base", tmp_path / "missing", "--labels", labels, "-o", out) == 2
    assert "missing: no such file" in capsys.readouterr().err
    assert (
        cli("manifest", "merge", "--base", base, "--labels", labels, "-o", out, "--labels-list", "a,a") == 2
    )
    assert "repeated: a" in capsys.readouterr().err
    assert (
        cli("manifest", "merge", "--base", base, "--labels", labels, "-o", out, "--attribute", "x-metadata")
        == 2
    )
    assert not out.exists()
    assert not list(tmp_path.glob(".merged.manifest.*"))


def a2i_output(name: str, boxes: list[dict[str, Any]], loop: str | None = "ll-abc") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/labelloop",
        "inputContent": {
            "taskObject": f"s3://bucket/incoming/{name}",
            "initialValue": [],
            "labels": ["pepperoni", "cheese"],
            "image": {
                "bucket": "bucket",
                "key": f"incoming/{name}",
                "versionId": "v1",
                "width": 640,
                "height": 480,
            },
        },
        "humanAnswers": [
            {
                "answerContent": {"annotatedResult": {"boundingBoxes": boxes}},
                "submissionTime": "2024-05-01T10:00:00.000Z",
                "workerId": "w",
            }
        ],
    }
    if loop:
        doc["humanLoopName"] = loop
    return doc


def test_from_a2i_writes_good_files_and_reports_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = {"label": "cheese", "left": 600, "top": 10, "width": 100, "height": 20}
    good = tmp_path / "good.json"
    good.write_text(json.dumps(a2i_output("a b.jpg", [box])))
    nested = tmp_path / "ll-from-folder"
    nested.mkdir()
    (nested / "output.json").write_text(json.dumps(a2i_output("c.jpg", [], loop=None)))
    no_answer = tmp_path / "no-answer.json"
    no_answer.write_text(json.dumps({**a2i_output("d.jpg", []), "humanAnswers": []}))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    out = tmp_path / "labels.manifest"
    assert cli("manifest", "from-a2i", good, nested / "output.json", no_answer, garbage, "-o", out) == 1
    captured = capsys.readouterr()
    assert f"{no_answer}: NO_ANSWER" in captured.err
    assert f"{garbage}: SCHEMA: not a JSON document" in captured.err
    assert "wrote 2 line(s)" in captured.out
    lines = read(out)
    assert [line["source-ref"] for line in lines] == [
        "s3://bucket/incoming/a b.jpg",
        "s3://bucket/incoming/c.jpg",
    ]
    attribute = manifest_cli.DEFAULT_ATTRIBUTE
    assert lines[0][attribute]["annotations"] == [
        {"left": 600, "top": 10, "width": 40, "height": 20, "class_id": 0}
    ]
    assert lines[1][f"{attribute}-metadata"]["job-name"] == "labeling-job/ll-from-folder"
    assert all(
        validate_line(line, ClassMap.from_labels(["cheese", "pepperoni"]), attribute) == [] for line in lines
    )


def test_from_a2i_all_good_exits_zero(tmp_path: Path) -> None:
    good = tmp_path / "output.json"
    good.write_text(json.dumps(a2i_output("a.jpg", [])))
    out = tmp_path / "labels.manifest"
    assert (
        cli("manifest", "from-a2i", good, "-o", out, "--labels-list", "pepperoni,cheese", "--attribute", ATTR)
        == 0
    )
    assert read(out)[0][f"{ATTR}-metadata"]["class-map"] == {"0": "pepperoni", "1": "cheese"}


def test_paths_of_the_wrong_kind_are_named_without_a_traceback(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, labels = inputs
    folder = tmp_path / "out"
    folder.mkdir()
    assert cli("manifest", "merge", "--base", base, "--labels", labels, "-o", folder) == 2
    assert f"-o {folder}: is a directory" in capsys.readouterr().err
    assert cli("manifest", "merge", "--base", folder, "--labels", labels, "-o", tmp_path / "m") == 2
    assert f"--base {folder}: is a directory, not a manifest file" in capsys.readouterr().err
    assert cli("manifest", "from-a2i", folder, "-o", tmp_path / "m") == 2
    assert f"{folder}: a folder with no output.json below it" in capsys.readouterr().err
    assert cli("manifest", "from-a2i", tmp_path / "nothing.json", "-o", tmp_path / "m") == 2
    assert "nothing.json: no such file" in capsys.readouterr().err


def test_from_a2i_takes_a_folder_of_reviews_in_the_layout_a2i_writes(tmp_path: Path) -> None:
    for number, loop in enumerate(["ll-one", "ll-two"]):
        folder = tmp_path / "reviews" / "flow" / "2024" / "05" / "01" / "10" / "00" / f"0{number}" / loop
        folder.mkdir(parents=True)
        (folder / "output.json").write_text(json.dumps(a2i_output(f"{loop}.jpg", [], loop=loop)))
    out = tmp_path / "labels.manifest"
    assert cli("manifest", "from-a2i", tmp_path / "reviews", "-o", out) == 0
    assert [line["source-ref"] for line in read(out)] == [
        "s3://bucket/incoming/ll-one.jpg",
        "s3://bucket/incoming/ll-two.jpg",
    ]


@pytest.mark.parametrize(
    ("content", "reason"), [("", "the file is empty"), ("{not json", "not a JSON document")]
)
def test_unreadable_outputs_are_blamed_on_the_file_not_on_the_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str
) -> None:
    bad = tmp_path / "output.json"
    bad.write_text(content)
    assert cli("manifest", "from-a2i", bad, "-o", tmp_path / "labels.manifest") == 1
    err = capsys.readouterr().err
    assert f"{bad}: SCHEMA: {reason}" in err
    assert "--labels-list" not in err
