"""SageMaker Ground Truth object-detection manifest lines: build, validate, merge.

A line (one image) looks like the seed's `output-change.manifest`:
`{"source-ref": "s3://b/k", ATTR: {"annotations": [{class_id,left,top,width,height}], "image_size":
[{width,height,depth}]}, "ATTR-metadata": {"job-name", "class-map": {"0": name}, "human-annotated":
"yes", "objects": [{"confidence": 1}], "creation-date": "...Z", "type": "groundtruth/object-detection"}}`.

Rekognition accepts a line with zero annotations (a reviewer saying "no objects here"): it reports
WARNING_NO_ANNOTATIONS and ignores the line for training without counting it as an error. We keep such
lines: a newer "nothing here" answer must still replace an older, wrong set of boxes.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import pickle
import re
import subprocess
import sys
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any, TextIO, TypeGuard

from labelloop_core.geometry import PixelBox

logger = logging.getLogger(__name__)

OBJECT_DETECTION_TYPE = "groundtruth/object-detection"
SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"
MAX_BOXES_PER_IMAGE = 50
MAX_LABELS = 250
MAX_LABEL_LENGTH = 256
# Rekognition dataset import limits; the merge report warns when an output would break them.
MAX_MANIFEST_LINES = 250_000
MAX_MANIFEST_BYTES = 1_000_000_000
MAX_INVALID_FRACTION = 0.20

# Reason categories: merge counts dropped lines per category, validate_line gives the details.
INVALID_JSON = "invalid JSON"
NOT_AN_OBJECT = "not a JSON object"
EMPTY_LINE = "empty line"
BAD_SOURCE_REF = "missing or invalid source-ref"
NO_ATTRIBUTE = "no label attribute with a matching -metadata key"
BAD_ATTRIBUTE = "malformed label attribute"
BAD_METADATA = "malformed label metadata"
NOT_OBJECT_DETECTION = "not an object-detection line"
BAD_IMAGE_SIZE = "missing or invalid image_size"
BAD_CREATION_DATE = "missing or invalid creation-date"
BAD_ANNOTATION = "malformed annotation"
BOX_NOT_POSITIVE = "box with zero or negative size"
BOX_OUTSIDE = "box outside the image"
TOO_MANY_BOXES = f"more than {MAX_BOXES_PER_IMAGE} boxes"
CLASS_ID_NOT_IN_MAP = "class id not in class-map"
UNKNOWN_LABEL = "label not in the configured labels"
OBJECTS_MISMATCH = "objects count differs from annotations count"
DUPLICATE_SOURCE_REF = "duplicate source-ref"

Problem = tuple[str, str]  # (category, human-readable detail)


@dataclass(frozen=True)
class ClassMap:
    """The canonical labels; a label's class id is its index in the configured list (stable)."""

    labels: tuple[str, ...]
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _metadata: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        labels = tuple(self.labels)
        if not labels:
            raise ValueError("at least one label is required")
        if len(labels) > MAX_LABELS:
            raise ValueError(f"{len(labels)} labels; Rekognition Custom Labels allows at most {MAX_LABELS}")
        for label in labels:
            if not isinstance(label, str) or not label.strip() or label != label.strip():
                raise ValueError(f"label {label!r} must be a non-empty name without surrounding spaces")
            if len(label) > MAX_LABEL_LENGTH:
                raise ValueError(f"label {label[:40]!r}... is longer than {MAX_LABEL_LENGTH} characters")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"labels must be unique; repeated: {', '.join(duplicates)}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "_ids", {label: index for index, label in enumerate(labels)})
        object.__setattr__(self, "_metadata", {str(index): label for index, label in enumerate(labels)})

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> ClassMap:
        return cls(tuple(labels))

    @classmethod
    def from_csv(cls, text: str) -> ClassMap:
        """`"a, b"` -> labels a (id 0) and b (id 1), as the LABELS variable spells them."""
        return cls(tuple(part.strip() for part in text.split(",") if part.strip()))

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __len__(self) -> int:
        return len(self.labels)

    def id_of(self, label: str) -> int:
        try:
            return self._ids[label]
        except KeyError:
            raise KeyError(f"label {label!r} is not one of the labels {list(self.labels)}") from None

    def get_id(self, label: str) -> int | None:
        return self._ids.get(label)

    def to_metadata(self) -> dict[str, str]:
        """The `class-map` object of a manifest line (a fresh copy)."""
        return dict(self._metadata)


def format_creation_date(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as Ground Truth writes it."""
    if moment.tzinfo is None:
        raise ValueError("creation date must be timezone-aware")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_creation_date(text: object) -> datetime | None:
    """Parse a manifest creation-date (naive values are UTC); None when it is not a date."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_line(
    source_ref: str,
    boxes: Sequence[tuple[str, PixelBox]],
    image_w: int,
    image_h: int,
    class_map: ClassMap,
    attribute: str,
    job_name: str,
    creation_date: datetime | str,
    depth: int = 3,
    confidences: Sequence[float] | None = None,
) -> dict[str, Any]:
    """One Ground Truth object-detection line; raises ValueError for labels outside `class_map`.
    `confidences`: each box's `objects[].confidence` (0-1; 1 when not given: one human drew it)."""
    if confidences is not None and len(confidences) != len(boxes):
        raise ValueError(f"{len(confidences)} confidences for {len(boxes)} boxes")
    if isinstance(creation_date, datetime):
        created = format_creation_date(creation_date)
    elif parse_creation_date(creation_date) is not None:
        created = creation_date
    else:
        raise ValueError(f"creation date {creation_date!r} is not ISO-8601")
    annotations = []
    for label, box in boxes:
        class_id = class_map.get_id(label)
        if class_id is None:
            raise ValueError(f"label {label!r} is not one of the configured labels {list(class_map.labels)}")
        annotations.append(_annotation(box.left, box.top, box.width, box.height, class_id))
    return {
        SOURCE_REF: source_ref,
        attribute: {
            "annotations": annotations,
            "image_size": [{"width": image_w, "height": image_h, "depth": depth}],
        },
        attribute + METADATA_SUFFIX: {
            "job-name": job_name,
            "class-map": class_map.to_metadata(),
            "human-annotated": "yes",
            "objects": [{"confidence": c} for c in (confidences or [1] * len(annotations))],
            "creation-date": created,
            "type": OBJECT_DETECTION_TYPE,
        },
    }


def _annotation(left: int, top: int, width: int, height: int, class_id: int) -> dict[str, int]:
    # Ground Truth's key order: lines we write then take the merge's fast path (see _FAST_LINE).
    return {"left": left, "top": top, "width": width, "height": height, "class_id": class_id}


def find_attribute(line: dict[str, Any], preferred: str | None = None) -> str | None:
    """The label attribute of an object-detection line (a key with a `-metadata` twin)."""
    if preferred is not None and preferred in line and preferred + METADATA_SUFFIX in line:
        return preferred
    pairs = [
        key
        for key in line
        if key != SOURCE_REF and not key.endswith(METADATA_SUFFIX) and key + METADATA_SUFFIX in line
    ]
    if len(pairs) > 1:
        detection = [
            key
            for key in pairs
            if isinstance(line[key + METADATA_SUFFIX], dict)
            and line[key + METADATA_SUFFIX].get("type") == OBJECT_DETECTION_TYPE
        ]
        pairs = detection if len(detection) == 1 else pairs
    return pairs[0] if len(pairs) == 1 else None


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int


def _check_source_ref(line: dict[str, Any]) -> Problem | None:
    ref = line.get(SOURCE_REF)
    if ref is None:
        return BAD_SOURCE_REF, "missing source-ref"
    if type(ref) is not str or not ref.startswith("s3://") or "/" not in ref[5:] or ref[5] == "/":
        return BAD_SOURCE_REF, f"source-ref {ref!r} is not an s3://bucket/key URI"
    if ref.endswith("/"):
        return BAD_SOURCE_REF, f"source-ref {ref!r} names a folder, not an image"
    return None


def _check_image_size(attr_value: dict[str, Any]) -> tuple[int, int, Problem | None]:
    """(width, height, None) or (0, 0, problem)."""
    sizes = attr_value.get("image_size")
    if type(sizes) is not list or len(sizes) != 1 or type(sizes[0]) is not dict:
        return 0, 0, (BAD_IMAGE_SIZE, "image_size must be a list holding one {width, height, depth} object")
    size = sizes[0]
    width, height, depth = size.get("width"), size.get("height"), size.get("depth")
    if _is_int(width) and _is_int(height) and _is_int(depth) and width > 0 and height > 0 and depth > 0:
        return width, height, None
    return 0, 0, (BAD_IMAGE_SIZE, f"image_size needs positive integer width, height and depth, got {size}")


def _check_metadata(metadata: dict[str, Any], annotation_count: int) -> list[Problem]:
    problems: list[Problem] = []
    if metadata.get("type") != OBJECT_DETECTION_TYPE:
        problems.append(
            (NOT_OBJECT_DETECTION, f"metadata type {metadata.get('type')!r} is not object detection")
        )
    class_map = metadata.get("class-map")
    if type(class_map) is not dict or not all(
        type(k) is str and k.isdigit() and type(v) is str for k, v in class_map.items()
    ):
        problems.append((BAD_METADATA, "class-map must map class ids (strings of digits) to label names"))
    if metadata.get("human-annotated") not in ("yes", "no"):
        problems.append((BAD_METADATA, "human-annotated must be 'yes' or 'no'"))
    if "job-name" in metadata and type(metadata["job-name"]) is not str:
        problems.append((BAD_METADATA, "job-name must be a string"))
    created = metadata.get("creation-date")
    if parse_creation_date(created) is None:
        problems.append((BAD_CREATION_DATE, f"creation-date {created!r} is not an ISO-8601 date"))
    objects = metadata.get("objects")
    if type(objects) is not list:
        problems.append((BAD_METADATA, "objects must be a list with one {confidence} per annotation"))
    elif len(objects) != annotation_count:
        problems.append(
            (OBJECTS_MISMATCH, f"{len(objects)} objects in metadata but {annotation_count} annotations")
        )
    elif not all(type(o) is dict and type(o.get("confidence")) in (int, float) for o in objects):
        problems.append((BAD_METADATA, "every object needs a numeric confidence"))
    return problems


def _check_annotations(
    annotations: list[Any], width: int, height: int, line_map: dict[str, str], class_map: ClassMap | None
) -> list[Problem]:
    problems: list[Problem] = []
    if len(annotations) > MAX_BOXES_PER_IMAGE:
        problems.append((TOO_MANY_BOXES, f"{len(annotations)} boxes; at most {MAX_BOXES_PER_IMAGE}"))
    for number, box in enumerate(annotations, 1):
        if type(box) is not dict:
            problems.append((BAD_ANNOTATION, f"annotation {number} is not an object"))
            continue
        class_id, left, top = box.get("class_id"), box.get("left"), box.get("top")
        box_w, box_h = box.get("width"), box.get("height")
        if not (_is_int(class_id) and _is_int(left) and _is_int(top) and _is_int(box_w) and _is_int(box_h)):
            detail = f"annotation {number} needs integer class_id, left, top, width and height"
            problems.append((BAD_ANNOTATION, detail))
            continue
        where = f"annotation {number} (left={left}, top={top}, width={box_w}, height={box_h})"
        if box_w <= 0 or box_h <= 0:
            problems.append((BOX_NOT_POSITIVE, f"{where} has zero or negative size"))
        elif left < 0 or top < 0 or left + box_w > width or top + box_h > height:
            problems.append((BOX_OUTSIDE, f"{where} extends outside the {width}x{height} image"))
        name = line_map.get(str(class_id))
        if name is None:
            detail = f"annotation {number}: class id {class_id} is not in the class-map"
            problems.append((CLASS_ID_NOT_IN_MAP, detail))
        elif class_map is not None and name not in class_map:
            problems.append(
                (UNKNOWN_LABEL, f"annotation {number}: label {name!r} is not one of {list(class_map.labels)}")
            )
    return problems


def check_line(
    line: object, class_map: ClassMap | None = None, attribute: str | None = None
) -> list[Problem]:
    """All problems of a parsed line as (category, detail); empty when Rekognition can import it."""
    if type(line) is not dict:
        return [(NOT_AN_OBJECT, "the line is not a JSON object")]
    problems: list[Problem] = []
    ref_problem = _check_source_ref(line)
    if ref_problem:
        problems.append(ref_problem)
    attr = find_attribute(line, attribute)
    if attr is None or (attribute is not None and attr != attribute):
        wanted = (
            f"'{attribute}' and '{attribute}{METADATA_SUFFIX}'" if attribute else "one ATTR and ATTR-metadata"
        )
        return [*problems, (NO_ATTRIBUTE, f"no label attribute pair: expected {wanted}")]
    value, metadata = line[attr], line[attr + METADATA_SUFFIX]
    if type(value) is not dict or type(value.get("annotations")) is not list:
        return [*problems, (BAD_ATTRIBUTE, f"'{attr}' must be an object with an annotations list")]
    if type(metadata) is not dict:
        return [*problems, (BAD_METADATA, f"'{attr}{METADATA_SUFFIX}' must be an object")]
    annotations = value["annotations"]
    problems.extend(_check_metadata(metadata, len(annotations)))
    width, height, size_problem = _check_image_size(value)
    if size_problem:
        problems.append(size_problem)
        return problems
    line_map = metadata.get("class-map")
    if type(line_map) is dict:
        problems.extend(_check_annotations(annotations, width, height, line_map, class_map))
    return problems


def validate_line(line: object, class_map: ClassMap | None = None, attribute: str | None = None) -> list[str]:
    """Human-readable reasons why Rekognition would reject (part of) the line; empty when valid.

    With `class_map`, labels outside the configured labels are reasons too; with `attribute`, the line
    must use that label attribute."""
    return [detail for _, detail in check_line(line, class_map, attribute)]


@dataclass
class MergeReport:
    kept: int = 0  # base lines written (re-keyed when needed)
    replaced: int = 0  # base lines replaced by a human label
    added: int = 0  # human labels for images the base manifest did not have
    dropped: dict[str, int] = field(default_factory=dict)  # reason category -> lines
    superseded: int = 0  # human labels beaten by a newer label for the same image
    input_lines: int = 0
    output_lines: int = 0
    output_bytes: int = 0
    buckets: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "replaced": self.replaced,
            "added": self.added,
            "superseded": self.superseded,
            "dropped": dict(sorted(self.dropped.items())),
            "droppedTotal": self.dropped_total,
            "inputLines": self.input_lines,
            "outputLines": self.output_lines,
            "outputBytes": self.output_bytes,
            "warnings": list(self.warnings),
        }


@dataclass
class _Label:
    created: datetime
    text: str
    number: int


# The exact compact layout Ground Truth writes (and build_line + json.dumps reproduce). A line that
# matches is structurally valid JSON of the right shape with an s3:// source-ref, positive image size,
# non-negative box corners and positive box sizes, so the merge finishes validating it from the
# captured pieces without json.loads, the dominant cost at a million lines. Strings with escapes, other
# key orders or extra keys do not match and take the full path (json.loads + check_line): same verdicts.
_CHARS = r'[^"\\\x00-\x1f]'
_STR = rf'"{_CHARS}*+"'
_NATURAL = r"(?:0|[1-9][0-9]*+)"
_POSITIVE = r"[1-9][0-9]*+"
_NUM = r"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?"
_BOX = (
    rf'\{{"left":{_NATURAL},"top":{_NATURAL},'
    rf'"width":{_POSITIVE},"height":{_POSITIVE},"class_id":{_NATURAL}\}}'
)
_OBJECT = rf'\{{"confidence":{_NUM}\}}'
_CLASS_ENTRY = rf'"[0-9]++":{_STR}'
_FAST_LINE = re.compile(
    rf'\{{"source-ref":"(s3://[^/"\\\x00-\x1f]++/{_CHARS}*?[^/"\\\x00-\x1f])",'
    rf'"({_CHARS}++)":\{{'
    rf'"annotations":\[((?:{_BOX}(?:,{_BOX})*+)?)\],'
    rf'"image_size":\[\{{"width":({_POSITIVE}),"height":({_POSITIVE}),"depth":{_POSITIVE}\}}\]\}},'
    r'"\2-metadata":\{'
    rf'"job-name":{_STR},'
    rf'"class-map":(\{{(?:{_CLASS_ENTRY}(?:,{_CLASS_ENTRY})*+)?\}}),'
    r'"human-annotated":"(?:yes|no)",'
    rf'"objects":\[((?:{_OBJECT}(?:,{_OBJECT})*+)?)\],'
    rf'"creation-date":"({_CHARS}*+)",'
    r'"type":"groundtruth/object-detection"\}\}'
)
_FAST_BOX = re.compile(
    r'\{"left":([0-9]++),"top":([0-9]++),"width":([0-9]++),"height":([0-9]++),"class_id":([0-9]++)'
)
_FAST_CLASS_ENTRY = re.compile(r'"([0-9]+)":"([^"\\\x00-\x1f]*)"')

# What validating one line gives. Common case, kept small for the pipes: just the source-ref, meaning
# "valid, write the line exactly as read". Otherwise (source-ref or None when unknown, text to write
# instead of the line or None, the first problem or None when valid, creation-date when asked for).
_Verdict = str | tuple[str | None, str | None, Problem | None, str | None]
_CHUNK_LINES = 4000


class _LineValidator:
    """Validates and re-keys single lines (in this process or in a validation worker)."""

    def __init__(self, class_map: ClassMap, attribute: str) -> None:
        self.class_map = class_map
        self.attribute = attribute
        self.metadata_key = attribute + METADATA_SUFFIX
        # class-map text -> (ids whose names are configured labels, every id the canonical one?)
        self.class_maps: dict[str, tuple[frozenset[str], bool]] = {}
        self.canonical_maps: dict[tuple[tuple[str, str], ...], bool] = {}
        self.last_date = ""

    def validate(self, raw: str, want_created: bool = False) -> _Verdict:
        end = len(raw)
        while end and raw[end - 1] in "\r\n":
            end -= 1
        match = _FAST_LINE.fullmatch(raw, 0, end)  # no copy of the line for the common case
        if match is not None:
            verdict = self.fast_valid(raw, match)
            if verdict is not None:
                if verdict and not want_created and end + 1 == len(raw) and raw[end] == "\n":
                    return match[1]
                text = raw[:end]
                output = text if verdict else self.rekey(json.loads(text))
                return match[1], output, None, match[8] if want_created else None
        return self.full_check(raw[:end], want_created)

    # --- fast path: the Ground Truth layout, validated from the regex captures -----------------

    def fast_class_map(self, text: str) -> tuple[frozenset[str], bool]:
        known = self.class_maps.get(text)
        if known is None:
            names = dict(_FAST_CLASS_ENTRY.findall(text))
            usable = frozenset(cid for cid, name in names.items() if name in self.class_map)
            canonical = all(self.class_map.get_id(name) == int(cid) for cid, name in names.items())
            known = self.class_maps[text] = (usable, canonical)
        return known

    def fast_valid(self, line: str, match: re.Match[str]) -> bool | None:
        """None when the line needs the full check; otherwise whether it can be written unchanged."""
        attr = match[2]
        if attr != self.attribute and (attr.endswith(METADATA_SUFFIX) or attr == SOURCE_REF):
            return None
        usable_ids, canonical = self.fast_class_map(match[6])
        # Boxes and objects are read in place (pos/endpos): no copies of the longest parts of the line.
        boxes = _FAST_BOX.findall(line, match.start(3), match.end(3))
        if len(boxes) > MAX_BOXES_PER_IMAGE or line.count("{", match.start(7), match.end(7)) != len(boxes):
            return None
        width, height = int(match[4]), int(match[5])
        for left, top, box_w, box_h, class_id in boxes:
            if int(left) + int(box_w) > width or int(top) + int(box_h) > height or class_id not in usable_ids:
                return None
        created = match[8]
        if created != self.last_date:  # Ground Truth writes runs of lines with the same date
            if parse_creation_date(created) is None:
                return None
            self.last_date = created
        return canonical and attr == self.attribute

    # --- full path: json.loads + check_line -----------------------------------------------------

    def full_check(self, text: str, want_created: bool) -> _Verdict:
        if not text or text.isspace():
            return None, None, (EMPTY_LINE, "the line is empty"), None
        try:
            line = json.loads(text)
        except ValueError as exc:
            return None, None, (INVALID_JSON, f"not valid JSON: {exc}"), None
        if type(line) is not dict:
            return None, None, (NOT_AN_OBJECT, "the line is not a JSON object"), None
        ref = line.get(SOURCE_REF)
        problems = check_line(line, self.class_map)
        if problems:
            return (ref if type(ref) is str else None), None, problems[0], None
        attr = find_attribute(line, self.attribute)
        assert attr is not None  # the line was validated
        created = line[attr + METADATA_SUFFIX]["creation-date"] if want_created else None
        return ref, text if self.is_canonical(line) else self.rekey(line), None, created

    def is_canonical(self, line: dict[str, Any]) -> bool:
        """True when a valid line can be written as is: canonical attribute, nothing else, same ids."""
        if len(line) != 3 or self.attribute not in line:
            return False
        key = tuple(line[self.metadata_key]["class-map"].items())
        verdict = self.canonical_maps.get(key)
        if verdict is None:
            verdict = self.canonical_maps[key] = all(
                self.class_map.get_id(name) == int(cid) for cid, name in key
            )
        return verdict

    def rekey(self, line: dict[str, Any]) -> str:
        """A valid line in Ground Truth layout with the canonical attribute and class ids (by name)."""
        attr = find_attribute(line, self.attribute)
        assert attr is not None  # the line was validated
        value, metadata = line[attr], line[attr + METADATA_SUFFIX]
        names, id_of = metadata["class-map"], self.class_map.id_of
        annotations = [
            _annotation(b["left"], b["top"], b["width"], b["height"], id_of(names[str(b["class_id"])]))
            for b in value["annotations"]
        ]
        size = value["image_size"][0]
        rebuilt = {
            SOURCE_REF: line[SOURCE_REF],
            self.attribute: {
                "annotations": annotations,
                "image_size": [{"width": size["width"], "height": size["height"], "depth": size["depth"]}],
            },
            self.metadata_key: {
                "job-name": metadata.get("job-name", f"labeling-job/{attr}"),
                "class-map": self.class_map.to_metadata(),
                "human-annotated": metadata["human-annotated"],
                "objects": [{"confidence": o["confidence"]} for o in metadata["objects"]],
                "creation-date": metadata["creation-date"],
                "type": OBJECT_DETECTION_TYPE,
            },
        }
        return json.dumps(rebuilt, ensure_ascii=False, separators=(",", ":"))


# --- optional worker processes: validation is CPU-bound and independent per line ----------------
# Plain subprocesses speaking pickle over their stdin/stdout: no fork of a threaded caller (the local
# stack runs handlers on threads), no re-import of the caller's __main__, no /dev/shm (AWS Lambda).


def _worker_main() -> None:
    """Entry point of a validation worker: (labels, attribute), then chunks until EOF."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the pipe
    labels, attribute = pickle.load(requests)
    validator = _LineValidator(ClassMap(labels), attribute)
    gc.disable()
    while True:
        try:
            chunk, want_created = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(
            [validator.validate(raw, want_created) for raw in chunk], replies, pickle.HIGHEST_PROTOCOL
        )
        replies.flush()


class _Worker:
    def __init__(self, class_map: ClassMap, attribute: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        code = "from labelloop_core.manifest import _worker_main; _worker_main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        try:
            self.send((class_map.labels, attribute))
        except OSError:
            self.close()
            raise

    def send(self, request: object) -> None:
        assert self.process.stdin is not None
        pickle.dump(request, self.process.stdin, pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()

    def receive(self) -> list[_Verdict]:
        assert self.process.stdout is not None
        reply: list[_Verdict] = pickle.load(self.process.stdout)
        return reply

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):  # EOF, or a broken pipe for a busy worker
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _pool_size(workers: int | None) -> int:
    if workers is not None:
        return max(0, workers)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Workers:
    """Validation workers, started on first need and only for inputs longer than one chunk."""

    def __init__(self, count: int, class_map: ClassMap, attribute: str) -> None:
        self.count = count
        self.class_map = class_map
        self.attribute = attribute
        self.started: list[_Worker] = []
        self.failed = count < 2

    def get(self) -> list[_Worker]:
        if not self.started and not self.failed:
            try:
                while len(self.started) < self.count:
                    self.started.append(_Worker(self.class_map, self.attribute))
            except (OSError, ValueError, pickle.PicklingError) as exc:
                self.fail(f"cannot start validation workers: {exc!r}")
        return self.started

    def fail(self, reason: str) -> None:
        logger.warning("validating in this process from now on: %s", reason)
        self.close()
        self.failed = True

    def close(self) -> None:
        for worker in self.started:
            worker.close()
        self.started = []


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(lines)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _verdicts(
    lines: Iterable[str], validator: _LineValidator, workers: _Workers, want_created: bool
) -> Iterator[tuple[str, _Verdict]]:
    """(line, verdict) in input order, on workers when the input is long and workers can start."""
    chunks = _chunks(lines, _CHUNK_LINES)
    first = next(chunks, [])
    started = workers.get() if len(first) == _CHUNK_LINES else []
    unvalidated: Iterable[list[str]] = chain([first], chunks)
    if started:
        unvalidated = yield from _verdicts_on_workers(unvalidated, started, workers, want_created)
    for raw in chain.from_iterable(unvalidated):
        yield raw, validator.validate(raw, want_created)


def _verdicts_on_workers(
    chunks: Iterable[list[str]], started: list[_Worker], workers: _Workers, want_created: bool
) -> Generator[tuple[str, _Verdict], None, Iterable[list[str]]]:
    """Each worker validates a chunk while this process consumes earlier results; one chunk in flight
    per worker, so the pipes cannot deadlock. Returns the chunks left unvalidated if a worker fails."""
    idle = deque(started)
    pending: deque[tuple[list[str], _Worker]] = deque()
    remaining = iter(chunks)
    for chunk in remaining:
        if not idle:
            done_chunk, worker = pending[0]
            results = _receive(worker, workers)
            if results is None:
                return chain([c for c, _ in pending], [chunk], remaining)
            pending.popleft()
            idle.append(worker)
            yield from zip(done_chunk, results, strict=True)
        worker = idle.popleft()
        pending.append((chunk, worker))
        try:
            worker.send((chunk, want_created))
        except (OSError, pickle.PicklingError) as exc:
            workers.fail(f"a validation worker stopped accepting work: {exc!r}")
            return chain([c for c, _ in pending], remaining)
    while pending:
        done_chunk, worker = pending[0]
        results = _receive(worker, workers)
        if results is None:
            return [c for c, _ in pending]
        pending.popleft()
        yield from zip(done_chunk, results, strict=True)
    return []


def _receive(worker: _Worker, workers: _Workers) -> list[_Verdict] | None:
    try:
        return worker.receive()
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        workers.fail(f"a validation worker failed: {exc!r}")
        return None


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of short-lived dicts trigger needless cyclic-GC passes over the label table."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Merger:
    """The sequential part of a merge: newest label per source-ref, dedupe, counting, writing."""

    def __init__(self, out: TextIO, validator: _LineValidator, workers: _Workers) -> None:
        self.out = out
        self.validator = validator
        self.workers = workers
        self.report = MergeReport()
        self.bucket_prefix = ""
        self.pending: list[str] = []  # output lines (with line breaks) not yet written

    def drop(self, origin: str, number: int, problem: Problem) -> None:
        category, detail = problem
        self.report.dropped[category] = self.report.dropped.get(category, 0) + 1
        logger.warning("%s line %d dropped: %s (%s)", origin, number, category, detail)

    def write(self, line: str, source_ref: str) -> None:
        """Queue `line` (ending in exactly one \\n) for output."""
        pending = self.pending
        pending.append(line)
        if not source_ref.startswith(self.bucket_prefix) or not self.bucket_prefix:
            bucket = source_ref[5:].split("/", 1)[0]
            self.report.buckets.add(bucket)
            self.bucket_prefix = f"s3://{bucket}/"
        if len(pending) >= 2048:
            self.flush()

    def flush(self) -> None:
        block = "".join(self.pending)
        self.out.write(block)
        self.report.output_lines += len(self.pending)
        self.report.output_bytes += len(block) if block.isascii() else len(block.encode("utf-8"))
        self.pending = []

    def load_labels(self, label_lines: Iterable[str]) -> dict[str, _Label]:
        newest: dict[str, _Label] = {}
        number = 0
        for number, (_raw, verdict) in enumerate(
            _verdicts(label_lines, self.validator, self.workers, True), 1
        ):
            assert not isinstance(verdict, str)  # labels always get the full verdict (with the date)
            ref, output, problem, created_text = verdict
            if problem is not None or ref is None or output is None:
                self.drop("label", number, problem or (BAD_SOURCE_REF, "missing source-ref"))
                continue
            created = parse_creation_date(created_text)
            assert created is not None  # validated
            current = newest.get(ref)
            if current is not None:
                self.report.superseded += 1
                older, newer = (
                    (number, current.number) if created < current.created else (current.number, number)
                )
                logger.info("label line %d superseded by newer label line %d for %s", older, newer, ref)
                if older == number:
                    continue
            newest[ref] = _Label(created, output + "\n", number)
        self.report.input_lines += number
        return newest

    def stream_base(self, base_lines: Iterable[str], labels: dict[str, _Label]) -> None:
        seen: set[str] = set()
        report, write = self.report, self.write
        number = 0
        for number, (raw, verdict) in enumerate(
            _verdicts(base_lines, self.validator, self.workers, False), 1
        ):
            if isinstance(verdict, str):
                ref: str | None = verdict
                output: str | None = raw
                problem: Problem | None = None
            else:
                ref, text, problem, _ = verdict
                output = None if text is None else text + "\n"
            if ref is not None:
                if ref in seen:
                    self.drop("base", number, (DUPLICATE_SOURCE_REF, f"{ref} already appeared earlier"))
                    continue
                label = labels.pop(ref, None) if labels else None
                if label is not None:  # the human label wins, whatever the base line holds
                    write(label.text, ref)
                    seen.add(ref)
                    report.replaced += 1
                    continue
            if problem is not None or ref is None or output is None:
                self.drop("base", number, problem or (BAD_SOURCE_REF, "missing source-ref"))
                continue
            write(output, ref)
            seen.add(ref)
            report.kept += 1
        report.input_lines += number

    def add_remaining(self, labels: dict[str, _Label]) -> None:
        for ref, label in labels.items():
            self.write(label.text, ref)
            self.report.added += 1
        self.flush()

    def finish(self) -> MergeReport:
        report = self.report
        if report.output_lines > MAX_MANIFEST_LINES:
            report.warnings.append(
                f"{report.output_lines} lines exceed Rekognition's {MAX_MANIFEST_LINES}-line manifest limit"
            )
        if report.output_bytes > MAX_MANIFEST_BYTES:
            report.warnings.append(
                f"{report.output_bytes} bytes exceed Rekognition's {MAX_MANIFEST_BYTES}-byte manifest limit"
            )
        if report.input_lines and report.dropped_total / report.input_lines > MAX_INVALID_FRACTION:
            report.warnings.append(
                f"{report.dropped_total} of {report.input_lines} input lines were dropped "
                f"(more than {MAX_INVALID_FRACTION:.0%}): check the inputs"
            )
        if len(report.buckets) > 1:
            report.warnings.append(
                f"images come from {len(report.buckets)} buckets ({', '.join(sorted(report.buckets))}); "
                "Rekognition needs all images of a manifest in one bucket"
            )
        return report


def merge(
    base_lines: Iterable[str],
    label_lines: Iterable[str],
    out: TextIO,
    class_map: ClassMap,
    attribute: str,
    workers: int | None = None,
) -> MergeReport:
    """Write one valid line per source-ref to `out`, in base order, then new images in label order.

    Human labels: the newest `creation-date` per source-ref wins (ties: the later line) and replaces the
    base line. Duplicate base lines: the first one is kept. Every line is validated against `class_map`;
    written lines use `attribute` and the canonical class ids (remapped by class name); lines already in
    that form are copied byte for byte. Dropped lines are counted per reason and logged (line number and
    reason) on this module's logger.

    Streaming and linear: memory holds the label lines and the set of source-refs written, not the
    base manifest. Validation runs on `workers` processes (default: the usable cores; 0 or 1: in this
    process); the output does not depend on it.
    """
    helpers = _Workers(_pool_size(workers), class_map, attribute)
    merger = _Merger(out, _LineValidator(class_map, attribute), helpers)
    try:
        with _gc_paused():
            labels = merger.load_labels(label_lines)
            merger.stream_base(base_lines, labels)
            merger.add_remaining(labels)
    finally:
        helpers.close()
    return merger.finish()


_CLASS_MAP_TEXT = re.compile(r'"class-map":(\{[^{}\\]*\})')


def collect_class_names(lines: Iterable[str]) -> set[str]:
    """Class names used in the class-maps of the given JSON lines (lines that do not parse are skipped).
    Fast for big manifests: each distinct class-map text is parsed once."""
    names: set[str] = set()
    seen_maps: set[str] = set()
    for text in lines:
        found = _CLASS_MAP_TEXT.search(text)
        if found is not None and text.count('"class-map"') == 1:
            if found[1] not in seen_maps:
                seen_maps.add(found[1])
                names.update(_names_of(_loads_or_none(found[1])))
            continue
        line = _loads_or_none(text)
        attr = find_attribute(line) if isinstance(line, dict) else None
        metadata = line.get(attr + METADATA_SUFFIX) if isinstance(line, dict) and attr else None
        names.update(_names_of(metadata.get("class-map") if isinstance(metadata, dict) else None))
    return names


def _loads_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _names_of(class_map: object) -> list[str]:
    if not isinstance(class_map, dict):
        return []
    return [name for name in class_map.values() if isinstance(name, str) and name.strip()]
