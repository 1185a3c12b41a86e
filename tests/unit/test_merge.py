import io
import json
import logging
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labelloop_core import manifest
from labelloop_core.manifest import ClassMap, MergeReport, merge, merging, validate_line, workers
from labelloop_core.manifest import lines as lines_module

LABELS = ClassMap.from_labels(["pepperoni", "cheese"])
ATTR = "pizza_BB"
OLD, MID, NEW = "2020-08-27T17:15:41.430Z", "2023-01-01T00:00:00.000Z", "2024-05-01T10:00:00.000Z"


def gt(
    name: str,
    boxes: list[tuple[int, int, int, int, int]] = ((10, 20, 100, 80, 0),),  # type: ignore[assignment]
    created: str = OLD,
    class_map: dict[str, str] | None = None,
    attribute: str = ATTR,
    bucket: str = "bucket",
) -> str:
    """A line in Ground Truth's own compact layout (the seed manifest's layout)."""
    line = {
        "source-ref": f"s3://{bucket}/images/{name}",
        attribute: {
            "annotations": [
                {"left": x, "top": y, "width": w, "height": h, "class_id": c} for x, y, w, h, c in boxes
            ],
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
        },
        f"{attribute}-metadata": {
            "job-name": f"labeling-job/{attribute}",
            "class-map": class_map or {"0": "pepperoni", "1": "cheese"},
            "human-annotated": "yes",
            "objects": [{"confidence": 1} for _ in boxes],
            "creation-date": created,
            "type": "groundtruth/object-detection",
        },
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def run(base: list[str], labels: list[str], **kwargs: Any) -> tuple[list[str], MergeReport]:
    out = io.StringIO()
    report = merge(
        [f"{line}\n" for line in base], [f"{line}\n" for line in labels], out, LABELS, ATTR, **kwargs
    )
    return out.getvalue().splitlines(), report


def refs(lines: list[str]) -> list[str]:
    return [json.loads(line)["source-ref"].rsplit("/", 1)[1] for line in lines]


def boxes_of(line: str) -> list[dict[str, int]]:
    return json.loads(line)[ATTR]["annotations"]


def accounted(report: MergeReport) -> int:
    """Every input line ends up somewhere: replaced lines consume one base and one label line."""
    return report.kept + 2 * report.replaced + report.added + report.superseded + report.dropped_total


def test_canonical_lines_are_copied_byte_for_byte() -> None:
    base = [gt("a.jpg"), gt("b.jpg", [(1, 2, 3, 4, 1)])]
    lines, report = run(base, [])
    assert lines == base
    assert (report.kept, report.replaced, report.added, report.dropped) == (2, 0, 0, {})


def test_human_label_replaces_the_base_line_in_place() -> None:
    label = gt("b.jpg", [(50, 60, 70, 80, 1)], created=NEW)
    lines, report = run([gt("a.jpg"), gt("b.jpg"), gt("c.jpg")], [label])
    assert refs(lines) == ["a.jpg", "b.jpg", "c.jpg"]
    assert lines[1] == label
    assert (report.kept, report.replaced, report.added) == (2, 1, 0)


def test_labels_for_new_images_are_added_after_the_base_in_label_order() -> None:
    lines, report = run([gt("a.jpg")], [gt("z.jpg", created=NEW), gt("m.jpg", created=NEW)])
    assert refs(lines) == ["a.jpg", "z.jpg", "m.jpg"]
    assert report.added == 2


@pytest.mark.parametrize("order", [(OLD, NEW, MID), (NEW, OLD, MID), (MID, OLD, NEW)])
def test_newest_human_label_wins_whatever_the_order(order: tuple[str, str, str]) -> None:
    labels = [gt("a.jpg", [(i, i, 10, 10, 0)], created=created) for i, created in enumerate(order)]
    lines, report = run([gt("a.jpg", [(300, 300, 5, 5, 1)])], labels)
    assert lines == [labels[order.index(NEW)]]
    assert (report.replaced, report.superseded) == (1, 2)


def test_equal_dates_keep_the_later_label() -> None:
    first, second = gt("a.jpg", [(1, 1, 5, 5, 0)], created=NEW), gt("a.jpg", [(2, 2, 5, 5, 0)], created=NEW)
    assert run([], [first, second])[0] == [second]


def test_human_label_beats_a_base_line_with_a_later_date() -> None:
    label = gt("a.jpg", [(1, 1, 5, 5, 0)], created=OLD)
    assert run([gt("a.jpg", created=NEW)], [label])[0] == [label]


def test_empty_human_answer_replaces_old_boxes() -> None:
    lines, _ = run([gt("a.jpg")], [gt("a.jpg", [], created=NEW)])
    assert boxes_of(lines[0]) == []
    assert validate_line(json.loads(lines[0])) == []


def test_duplicate_base_lines_keep_the_first_and_log_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="labelloop_core.manifest")
    first, second = gt("a.jpg", [(1, 1, 5, 5, 0)]), gt("a.jpg", [(2, 2, 5, 5, 0)])
    lines, report = run([first, gt("b.jpg"), second], [])
    assert lines == [first, gt("b.jpg")]
    assert report.dropped == {"duplicate source-ref": 1}
    assert "base line 3 dropped: duplicate source-ref" in caplog.text


def test_invalid_first_copy_does_not_hide_a_valid_later_copy() -> None:
    invalid, valid = gt("a.jpg", [(600, 1, 100, 5, 0)]), gt("a.jpg")
    lines, report = run([invalid, valid], [])
    assert lines == [valid]
    assert report.dropped == {"box outside the image": 1}


def test_bad_lines_are_dropped_counted_by_reason_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="labelloop_core.manifest")
    base = [
        gt("ok.jpg"),
        "{not json",
        "",
        "[1, 2]",
        json.dumps({"source-ref": "s3://bucket/images/x.jpg"}),
        gt("outside.jpg", [(600, 400, 100, 100, 0)]),
        gt("zero.jpg", [(1, 1, 0, 5, 0)]),
        gt("many.jpg", [(i, i, 5, 5, 0) for i in range(51)]),
        gt("unknown-id.jpg", [(1, 1, 5, 5, 9)]),
        gt("unknown-label.jpg", class_map={"0": "anchovy"}),
        gt("no-ref.jpg").replace('"source-ref":"s3://bucket/images/no-ref.jpg",', ""),
    ]
    labels = [gt("bad-label.jpg", [(1, 1, 5, 5, 0)], created="not a date")]
    lines, report = run(base, labels)
    assert refs(lines) == ["ok.jpg"]
    assert report.dropped == {
        "invalid JSON": 1,
        "empty line": 1,
        "not a JSON object": 1,
        "no label attribute with a matching -metadata key": 1,
        "box outside the image": 1,
        "box with zero or negative size": 1,
        "more than 50 boxes": 1,
        "class id not in class-map": 1,
        "label not in the configured labels": 1,
        "missing or invalid source-ref": 1,
        "missing or invalid creation-date": 1,
    }
    assert accounted(report) == report.input_lines == len(base) + len(labels)
    assert "base line 2 dropped: invalid JSON" in caplog.text
    assert "label line 1 dropped: missing or invalid creation-date" in caplog.text
    assert any("more than 20%" in warning for warning in report.warnings)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("parser", ["orjson", "json"])
def test_a_confidence_json_cannot_hold_is_dropped_never_written(
    number: str, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if parser == "json":
        monkeypatch.setitem(sys.modules, "orjson", None)
    bad = gt("nan.jpg").replace('"objects":[{"confidence":1}]', f'"objects":[{{"confidence":{number}}}]')
    lines, report = run([gt("ok.jpg"), bad], [gt("label.jpg")])
    assert refs(lines) == ["ok.jpg", "label.jpg"]
    assert report.dropped == {"invalid JSON": 1}
    for line in lines:  # strict JSON: what Rekognition and every other reader parse
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} written"))


@pytest.mark.parametrize("parser", ["orjson", "json"])
def test_lines_no_utf8_output_can_hold_are_dropped_and_the_rest_merged(
    parser: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if parser == "json":
        monkeypatch.setitem(sys.modules, "orjson", None)
    caplog.set_level(logging.WARNING, logger="labelloop_core.manifest")
    raw_bytes = gt("raw\udcff.jpg").replace("\\udcff", "\udcff")  # 0xff read with surrogateescape
    escaped = gt("escaped.jpg").replace("escaped.jpg", "\\ud800.jpg")  # a lone surrogate as an escape
    raw_bucket = gt("bucket.jpg", bucket="buck\udcffet").replace("\\udcff", "\udcff")  # in the bucket name
    lines, report = run([gt("ok.jpg"), raw_bytes, raw_bucket], [escaped, gt("label.jpg")])
    assert refs(lines) == ["ok.jpg", "label.jpg"]
    assert report.dropped == {"not valid UTF-8": 2, "invalid JSON": 1}
    assert "base line 2 dropped: not valid UTF-8" in caplog.text
    assert "base line 3 dropped: not valid UTF-8" in caplog.text
    assert "label line 1 dropped: invalid JSON" in caplog.text
    "\n".join(lines).encode("utf-8")


def test_class_ids_are_remapped_by_name_to_the_configured_order() -> None:
    swapped = gt("a.jpg", [(1, 1, 5, 5, 0), (2, 2, 5, 5, 1)], class_map={"0": "cheese", "1": "pepperoni"})
    lines, report = run([swapped], [])
    assert [box["class_id"] for box in boxes_of(lines[0])] == [1, 0]
    assert json.loads(lines[0])[f"{ATTR}-metadata"]["class-map"] == {"0": "pepperoni", "1": "cheese"}
    assert report.kept == 1


def test_other_attribute_names_and_layouts_are_rekeyed_to_the_canonical_attribute() -> None:
    other = json.loads(gt("a.jpg", class_map={"0": "cheese"}, attribute="bounding-box"))
    other["bounding-box-metadata"]["warnings"] = []  # extra keys are not copied
    lines, _ = run([json.dumps(other, sort_keys=True)], [])
    line = json.loads(lines[0])
    assert set(line) == {"source-ref", ATTR, f"{ATTR}-metadata"}
    assert line[ATTR]["annotations"] == [{"left": 10, "top": 20, "width": 100, "height": 80, "class_id": 1}]
    assert validate_line(line, LABELS, ATTR) == []
    assert run(lines, [])[0] == lines  # what we write is canonical: a second merge copies it


def test_fast_and_full_validation_agree() -> None:
    """Lines in Ground Truth's layout take a fast path; the same lines in another key order take the
    full one (json.loads + check_line). Both must keep and drop exactly the same lines."""
    cases = [
        gt("ok.jpg"),
        gt("edge.jpg", [(0, 0, 640, 480, 1)]),
        gt("outside-x.jpg", [(541, 0, 100, 10, 0)]),
        gt("outside-y.jpg", [(0, 401, 10, 80, 0)]),
        gt("zero.jpg", [(1, 1, 5, 0, 0)]),
        gt("no-boxes.jpg", []),
        gt("unknown.jpg", class_map={"0": "anchovy", "1": "cheese"}),
        gt("swapped.jpg", [(1, 1, 5, 5, 1)], class_map={"0": "cheese", "1": "pepperoni"}),
        gt("date.jpg", created="2024-13-45T99:00:00Z"),
        gt("naive.jpg", created="2024-05-01T10:00:00"),
        gt("too-many.jpg", [(i, i, 5, 5, 0) for i in range(51)]),
        gt("meta.jpg", attribute="x-metadata"),
        gt("folder/"),
    ]
    fast_lines, fast = run(cases, [])
    shuffled = [json.dumps(json.loads(line), sort_keys=True) for line in cases]
    full_lines, full = run(shuffled, [])
    assert fast.dropped == full.dropped
    assert refs(fast_lines) == refs(full_lines)
    assert [json.loads(line) for line in fast_lines] == [json.loads(line) for line in full_lines]


def test_escaped_and_raw_unicode_source_refs_are_the_same_image() -> None:
    raw = gt("café.jpg")
    escaped = json.dumps(json.loads(raw), ensure_ascii=True, separators=(",", ":"))
    lines, report = run([raw, escaped], [])
    assert lines == [raw]
    assert report.dropped == {"duplicate source-ref": 1}


def test_windows_line_breaks_and_a_missing_final_newline_are_normalized() -> None:
    out = io.StringIO()
    merge([gt("a.jpg") + "\r\n", gt("b.jpg")], [], out, LABELS, ATTR)
    assert out.getvalue() == f"{gt('a.jpg')}\n{gt('b.jpg')}\n"


def test_report_counts_output_and_warns_about_import_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merging, "MAX_MANIFEST_LINES", 2)
    monkeypatch.setattr(merging, "MAX_MANIFEST_BYTES", 100)
    lines, report = run([gt("a.jpg"), gt("b.jpg", bucket="other"), gt("c.jpg")], [])
    assert report.output_lines == 3
    assert report.output_bytes == sum(len(line.encode()) + 1 for line in lines)
    warnings = " ".join(report.warnings)
    assert "3 lines exceed" in warnings
    assert "bytes exceed" in warnings
    assert "2 buckets (bucket, other)" in warnings
    assert report.to_dict()["outputLines"] == 3


def mixed_inputs() -> tuple[list[str], list[str]]:
    base = []
    for i in range(60):
        base.append(gt(f"img-{i}.jpg", [(i, i, 10, 10, i % 2)]))
        if i % 7 == 0:
            base.append(gt(f"img-{i}.jpg", [(1, 1, 3, 3, 0)]))  # duplicate
        if i % 11 == 0:
            base.append("{broken")
        if i % 13 == 0:
            base.append(
                gt(f"swapped-{i}.jpg", [(1, 1, 5, 5, 0)], class_map={"0": "cheese", "1": "pepperoni"})
            )
    labels = [gt(f"img-{i}.jpg", [(5, 5, 20, 20, 1)], created=NEW if i % 2 else MID) for i in range(0, 80, 3)]
    labels += [gt(f"img-{i}.jpg", [(6, 6, 20, 20, 0)], created=MID) for i in range(0, 80, 6)]
    return base, labels


def test_worker_processes_give_exactly_the_in_process_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_CHUNK_LINES", 7)  # many chunks, so the workers really run
    base, labels = mixed_inputs()
    expected, expected_report = run(base, labels, workers=0)
    lines, report = run(base, labels, workers=2)
    assert lines == expected
    assert report == expected_report
    assert accounted(report) == report.input_lines
    assert report.output_lines == len(lines)
    assert report.output_bytes == sum(len(line.encode()) + 1 for line in lines)


def test_a_failing_worker_loses_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workers, "_CHUNK_LINES", 7)
    base, labels = mixed_inputs()
    expected, _ = run(base, labels, workers=0)
    calls = {"count": 0}
    original = workers._Worker.receive

    def flaky(self: workers._Worker) -> Any:
        calls["count"] += 1
        if calls["count"] == 3:
            raise EOFError("worker died")
        return original(self)

    monkeypatch.setattr(workers._Worker, "receive", flaky)
    lines, _ = run(base, labels, workers=2)
    assert lines == expected
    assert "validating in this process from now on" in caplog.text


def test_merge_works_where_no_worker_can_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workers, "_CHUNK_LINES", 7)
    monkeypatch.setattr(workers.sys, "executable", "/nonexistent/python")
    base, labels = mixed_inputs()
    expected, _ = run(base, labels, workers=0)
    assert run(base, labels, workers=2)[0] == expected
    assert "cannot start validation workers" in caplog.text


# --- the same logical manifest in any JSON layout ---------------------------------------------


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _reversed_keys(value[key]) for key in reversed(value)}
    if isinstance(value, list):
        return [_reversed_keys(item) for item in value]
    return value


LAYOUTS: dict[str, Callable[[Any], str]] = {
    "ground truth compact": lambda line: json.dumps(line, ensure_ascii=False, separators=(",", ":")),
    "json.dumps defaults": json.dumps,  # ", " and ": ", non-ASCII as \u escapes
    "reordered keys": lambda line: json.dumps(
        _reversed_keys(line), ensure_ascii=False, separators=(",", ":")
    ),
    "extra whitespace": lambda line: (
        " \t"
        + json.dumps(_reversed_keys(line), ensure_ascii=False, indent=None, separators=(" ,\t", " :  "))
        + "  "
    ),
    "unicode and slash escapes": lambda line: json.dumps(line, separators=(",", ":")).replace("/", "\\/"),
}


def logical_manifest() -> tuple[list[Any], list[Any]]:
    """Base and label lines as parsed JSON: valid, re-keyed, duplicated, labelled and invalid ones."""

    def parsed(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        line: dict[str, Any] = json.loads(gt(name, *args, **kwargs))
        return line

    swapped = {"0": "cheese", "1": "pepperoni"}
    with_float = parsed("float.jpg", [(1, 2, 30, 40, 1), (5, 5, 5, 5, 0)])
    with_float[f"{ATTR}-metadata"]["objects"] = [{"confidence": 0.25}, {"confidence": 1e-05}]
    extra_keys = parsed("extra.jpg")
    extra_keys[f"{ATTR}-metadata"]["failure-reason"] = None
    no_job = parsed("no-job.jpg")
    del no_job[f"{ATTR}-metadata"]["job-name"]
    base = [
        parsed("plain.jpg"),
        parsed("café déjà/vu ☃.jpg", [(0, 0, 640, 480, 1)]),
        parsed("swapped.jpg", [(1, 1, 5, 5, 0), (2, 2, 5, 5, 1)], class_map=swapped),
        parsed("other-attr.jpg", attribute="bounding-box"),
        parsed("subset.jpg", class_map={"0": "pepperoni"}),
        parsed("none.jpg", []),
        with_float,
        extra_keys,
        no_job,
        parsed("labelled.jpg"),
        parsed("plain.jpg", [(3, 3, 3, 3, 0)]),  # duplicate
        parsed("outside.jpg", [(600, 1, 100, 5, 0)]),
        parsed("unknown.jpg", class_map={"0": "anchovy"}),
        parsed("bad-date.jpg", created="yesterday"),
        parsed("folder/"),
        {"source-ref": "s3://bucket/images/x.jpg"},
        [1, 2],
    ]
    labels = [
        parsed("labelled.jpg", [(9, 9, 9, 9, 1)], created=NEW),
        parsed("new ☃.jpg", [(1, 1, 1, 1, 0)], created=MID, class_map=swapped),
        parsed("labelled.jpg", [(8, 8, 8, 8, 0)], created=MID),  # superseded
        parsed("bad-label.jpg", [(1, 1, 1, 1, 7)], created=NEW),
    ]
    return base, labels


@pytest.mark.parametrize("worker_count", [0, 2])
@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "ground truth compact"])
def test_any_json_layout_of_the_same_manifest_merges_to_the_same_bytes_and_report(
    layout: str, worker_count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "_CHUNK_LINES", 5)  # several chunks: the workers really run
    base, labels = logical_manifest()
    compact = LAYOUTS["ground truth compact"]
    expected, expected_report = run([compact(line) for line in base], [compact(line) for line in labels])
    render = LAYOUTS[layout]
    rendered_base, rendered_labels = [render(line) for line in base], [render(line) for line in labels]
    lines, report = run(rendered_base, rendered_labels, workers=worker_count)
    assert lines == expected
    assert report == expected_report
    assert report.dropped == {
        "duplicate source-ref": 1,
        "box outside the image": 1,
        "label not in the configured labels": 1,
        "missing or invalid creation-date": 1,
        "missing or invalid source-ref": 1,
        "no label attribute with a matching -metadata key": 1,
        "not a JSON object": 1,
        "class id not in class-map": 1,
    }


def test_every_written_line_is_the_canonical_ground_truth_text_of_its_content() -> None:
    base, labels = logical_manifest()
    lines, _ = run([json.dumps(line) for line in base], [json.dumps(line) for line in labels])
    for text in lines:
        line = json.loads(text)
        assert text == json.dumps(line, ensure_ascii=False, separators=(",", ":"))
        assert list(line) == ["source-ref", ATTR, f"{ATTR}-metadata"]
        assert line[f"{ATTR}-metadata"]["class-map"] == LABELS.to_metadata()
        assert validate_line(line, LABELS, ATTR) == []
    unicode = next(json.loads(text) for text in lines if "café" in text)
    assert unicode["source-ref"] == "s3://bucket/images/café déjà/vu ☃.jpg"
    floats = next(json.loads(text) for text in lines if "float.jpg" in text)
    assert floats[f"{ATTR}-metadata"]["objects"] == [{"confidence": 0.25}, {"confidence": 1e-05}]
    assert "failure-reason" not in next(text for text in lines if "extra.jpg" in text)
    assert '"job-name":"labeling-job/pizza_BB"' in next(text for text in lines if "no-job.jpg" in text)


def test_numbers_are_written_the_way_json_writes_them_whatever_their_spelling() -> None:
    canonical = gt("a.jpg", [(1, 1, 5, 5, 0)])
    for spelling in ("1.0", "1e0", "10E-1", "-0"):
        line = canonical.replace('"confidence":1', f'"confidence":{spelling}')
        lines, report = run([line], [])
        assert report.kept == 1
        assert json.loads(lines[0])[f"{ATTR}-metadata"]["objects"] == [{"confidence": json.loads(spelling)}]
        assert lines[0] == json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))


def test_without_orjson_the_merge_writes_the_same_and_says_why_it_is_slower(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    base, labels = logical_manifest()
    base_lines, label_lines = [json.dumps(line) for line in base], [json.dumps(line) for line in labels]
    expected = run(base_lines, label_lines)
    monkeypatch.setitem(sys.modules, "orjson", None)  # `import orjson` raises ImportError
    assert run(base_lines, label_lines) == expected
    assert "orjson is not importable" in caplog.text


def test_a_file_read_in_blocks_merges_like_its_lines(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merging, "_BLOCK_CHARS", 101)  # blocks end inside lines
    base, labels = mixed_inputs()
    path = tmp_path / "base.manifest"
    path.write_bytes(("\r\n".join(base[:20]) + "\n" + "\r".join(base[20:])).encode())  # no final break
    with path.open(encoding="utf-8") as handle:
        expected = io.StringIO()
        expected_report = merge(list(handle), labels, expected, LABELS, ATTR, workers=0)
    for worker_count in (0, 2):
        with path.open(encoding="utf-8") as handle:
            out = io.StringIO()
            report = merge(manifest.file_lines(handle), labels, out, LABELS, ATTR, workers=worker_count)
        assert out.getvalue() == expected.getvalue()
        assert report == expected_report


def _mutations(generator: random.Random) -> Iterator[Any]:
    """Lines with random valid and invalid changes (types, bounds, keys, dates, numbers, strings)."""
    names = ["a.jpg", "b é.jpg", "c/d.jpg", 'q"uote.jpg', "back\\\\slash.jpg", "folder/"]
    for number in range(400):
        boxes = [
            (generator.randint(0, 500), generator.randint(0, 400), generator.randint(-1, 200), 20, c)
            for c in generator.choices([0, 1, 2], k=generator.randint(0, 3))
        ]
        line: Any = json.loads(gt(f"{number % 300}-{generator.choice(names)}", boxes))
        metadata = line[f"{ATTR}-metadata"]
        change = generator.randrange(14)
        if change == 0:
            metadata["objects"] = [
                {"confidence": generator.choice([0.5, 1e-05, 1.0, 2, True])} for _ in boxes
            ]
        elif change == 1:
            metadata["class-map"] = generator.choice([{"0": "cheese", "1": "pepperoni"}, {"1": "pepperoni"}])
        elif change == 2:
            metadata["creation-date"] = generator.choice(["2024-02-30T00:00:00Z", "2024-05-01T10:00:00", 7])
        elif change == 3:
            line[ATTR]["image_size"][0]["depth"] = generator.choice([0, 3.0, "3", None])
        elif change == 4:
            metadata[generator.choice(["extra", "human-annotated"])] = generator.choice(
                ["yes", "no", "maybe"]
            )
        elif change == 5:
            del metadata[generator.choice(["job-name", "objects", "type"])]
        elif change == 6:
            line = {key.replace(ATTR, "bounding-box"): value for key, value in line.items()}
        elif change == 7 and boxes:
            line[ATTR]["annotations"][0]["left"] = generator.choice([1.5, "1", None, -3])
        elif change == 8:
            line["source-ref"] = generator.choice(["s3:///k.jpg", "s3://b", "http://b/k.jpg", 42])
        elif change == 9:
            line[ATTR]["image_size"] = [{"width": 640, "height": 480, "depth": 3}] * 2
        yield line


def _render(line: Any, generator: random.Random) -> str:
    if generator.random() < 0.5:
        line = _reversed_keys(line)
    separators = generator.choice([(",", ":"), (", ", ": "), (" ,\t", " : ")])
    text = json.dumps(line, ensure_ascii=generator.random() < 0.2, separators=separators)
    return " " + text if generator.random() < 0.1 else text


def test_the_fast_paths_keep_exactly_the_lines_the_full_check_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines in random layouts with random defects, merged once normally and once with every fast path
    (layouts, learned layouts, the parsed-dict check) disabled: same bytes, same report."""
    generator = random.Random(11)
    base = [_render(line, generator) for line in _mutations(generator)]
    labels = [_render(line, generator) for line in list(_mutations(generator))[:60]]
    learned_verdict = lines_module._LineValidator.learned_verdict
    decided: list[Any] = []  # what learned layouts gave

    def spy(self: Any, text: str) -> Any:
        decided.append(learned_verdict(self, text))
        return decided[-1]

    monkeypatch.setattr(lines_module._LineValidator, "learned_verdict", spy)
    fast = run(base, labels)
    assert len([verdict for verdict in decided if verdict is not False]) > 50
    monkeypatch.setattr(lines_module._LineValidator, "layout_verdict", lambda self, match, layout: None)
    monkeypatch.setattr(lines_module._LineValidator, "dict_valid", lambda self, line, plain: None)
    full = run(base, labels)
    assert fast == full
    assert fast[1].kept + fast[1].replaced > 100 and fast[1].dropped_total > 100  # both kinds, many
