"""Ground Truth object-detection manifest lines: the format, building and validating one line.

A line (one image) looks like the seed's `output-change.manifest`:
`{"source-ref": "s3://b/k", ATTR: {"annotations": [{class_id,left,top,width,height}], "image_size":
[{width,height,depth}]}, "ATTR-metadata": {"job-name", "class-map": {"0": name}, "human-annotated":
"yes", "objects": [{"confidence": 1}], "creation-date": "...Z", "type": "groundtruth/object-detection"}}`.

Rekognition accepts a line with zero annotations (a reviewer saying "no objects here"): it reports
WARNING_NO_ANNOTATIONS and ignores the line for training without counting it as an error. We keep such
lines: a newer "nothing here" answer must still replace an older, wrong set of boxes.

`_LineValidator` validates and re-keys raw lines for the merge (in this process or in a worker).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import accumulate
from operator import itemgetter
from typing import Any, TypeGuard, cast

from labelloop_core.geometry import PixelBox

logger = logging.getLogger("labelloop_core.manifest")

OBJECT_DETECTION_TYPE = "groundtruth/object-detection"
SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"
MAX_BOXES_PER_IMAGE = 50
MAX_LABELS = 250
MAX_LABEL_LENGTH = 256

# Reason categories: merge counts dropped lines per category, validate_line gives the details.
INVALID_JSON = "invalid JSON"
NOT_UTF8 = "not valid UTF-8"
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
    # Ground Truth's key order: lines we write are then copied as they are by the merge (_Layout.as_is).
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
    elif not all(type(o) is dict and _is_finite_number(o.get("confidence")) for o in objects):
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


# --- the merge's validator: raw text lines -> verdicts and canonical text ----------------------
#
# Every line the merge writes is canonical: Ground Truth's compact layout and key order, the merge's
# attribute, the configured class-map and class ids, numbers as Python's json writes them. That is
# `rekey` of the parsed line; the fast paths below only avoid computing it (or parsing the line) when
# they can prove the result, so the output depends on what a line means, never on how it is laid out.
#
# Layouts: a regular expression for one order of the keys of every object, with or without whitespace
# between tokens, matches only lines that are structurally valid JSON of the right shape, with an
# s3:// source-ref, positive image size, non-negative box corners and positive box sizes; the rest is
# checked on the captured pieces, without parsing. One layout is built in, Ground Truth's own compact
# one, where a line already canonical is copied as it is. Others are learned: a line no layout matches
# is parsed (orjson when available), and when it is valid its key orders become a layout (with any
# whitespace), so the lines after it written the same way (json.dumps, another tool) are not parsed.
# Strings with escapes, extra keys or anything unusual are parsed, then checked by json.loads +
# check_line when in doubt: same verdicts whichever path a line takes.
_CHARS = r'[^"\\\x00-\x1f\ud800-\udfff]'  # lone surrogates: undecodable bytes (surrogateescape)
_STR = rf'"{_CHARS}*+"'
_BUCKET_CHAR = r'[^/"\\\x00-\x1f\ud800-\udfff]'
_NATURAL = r"(?:0|[1-9][0-9]*+)"
_POSITIVE = r"[1-9][0-9]*+"
_NUM = r"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?"
_SPACE = r"[ \t\n\r]*+"  # JSON whitespace
_BOX_VALUES = {
    "left": _NATURAL,
    "top": _NATURAL,
    "width": _POSITIVE,
    "height": _POSITIVE,
    "class_id": _NATURAL,
}
# Ground Truth's key orders; the roles of a line's keys are "source-ref", "attribute" and "metadata".
_LINE_KEYS = (SOURCE_REF, "attribute", "metadata")
_VALUE_KEYS = ("annotations", "image_size")
_SIZE_KEYS = ("width", "height", "depth")
_BOX_KEYS = ("left", "top", "width", "height", "class_id")
_METADATA_KEYS = ("job-name", "class-map", "human-annotated", "objects", "creation-date", "type")
# What every layout captures: what every line needs, in this order (`match.group(*layout.groups)`), and
# what only a line to re-key needs (`layout.rekeying`).
_CAPTURES = ("ref", "bucket", "attr", "meta", "boxes", "width", "height", "classes", "objects", "created")
_REKEYING = ("depth", "job", "human")
_CLASS_ENTRY_TEXT = re.compile(rf'"([0-9]+)"{_SPACE}:{_SPACE}"({_CHARS}*)"')
_CONFIDENCE_TEXT = re.compile(rf'"confidence"{_SPACE}:{_SPACE}([^\s{{}},]++)')
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
# orjson turns integers beyond 64 bits into floats; json keeps them exact. Floats this large go to the
# full check, so no parser difference reaches the output.
_FLOAT_LIMIT = 9.2e18
_MAX_LEARNED_LAYOUTS = 4
_MAX_LEARNING_ATTEMPTS = 32  # compiling a layout takes tens of milliseconds


class _Layout:
    """A layout's compiled patterns (a plain class: a dataclass would cost every importer a millisecond)."""

    __slots__ = ("as_is", "box", "groups", "line", "order", "rekeying", "reorder")

    def __init__(
        self,
        line: re.Pattern[str],
        box: re.Pattern[str],
        order: tuple[int, int, int, int, int],
        groups: tuple[int, ...],
        rekeying: tuple[int, ...],
        as_is: bool,
    ) -> None:
        self.line = line
        self.box = box  # one box, its five numbers captured in the layout's key order
        self.order = order  # where left, top, width, height, class_id are in a box match
        # a box match -> (left, top, width, height, class_id); None: already in that order
        self.reorder = None if order == (0, 1, 2, 3, 4) else itemgetter(*order)
        self.groups = groups  # the group numbers of _CAPTURES in `line`
        self.rekeying = rekeying  # and of _REKEYING
        self.as_is = as_is  # Ground Truth's compact layout: a canonical line is copied as it is


@cache
def _layout(
    line_keys: tuple[str, ...],
    value_keys: tuple[str, ...],
    size_keys: tuple[str, ...],
    box_keys: tuple[str, ...],
    metadata_keys: tuple[str, ...],
    spacing: str,
) -> _Layout:
    """The layout with these key orders and `spacing` (compiled once): "compact" (Ground Truth's), "dumps"
    (json.dumps's default separators: ", " and ": ", nothing else) or "any" (any JSON whitespace)."""
    space = _SPACE if spacing == "any" else ""  # after an opening and before a closing bracket
    comma = f"{space},{space}" if spacing != "dumps" else ", "
    colon = f"{space}:{space}" if spacing != "dumps" else ": "

    def members(fields: Iterable[tuple[str, str]]) -> str:
        return rf"\{{{space}" + comma.join(f"{key}{colon}{value}" for key, value in fields) + rf"{space}\}}"

    def array(item: str, name: str) -> str:
        return rf"\[{space}(?P<{name}>(?:{item}(?:{comma}{item})*+)?){space}\]"

    box = members((f'"{key}"', _BOX_VALUES[key]) for key in box_keys)
    numbers = members((f'"{key}"', f"({_BOX_VALUES[key]})") for key in box_keys)
    entry = f'"[0-9]++"{colon}{_STR}'
    size = {key: f"(?P<{key}>{_POSITIVE})" for key in _SIZE_KEYS}
    value = {
        "annotations": array(box, "boxes"),
        "image_size": rf"\[{space}" + members((f'"{key}"', size[key]) for key in size_keys) + rf"{space}\]",
    }
    metadata = {
        "job-name": f'"(?P<job>{_CHARS}*+)"',
        "class-map": rf"(?P<classes>\{{{space}(?:{entry}(?:{comma}{entry})*+)?{space}\}})",
        "human-annotated": '"(?P<human>yes|no)"',
        "objects": array(members([('"confidence"', _NUM)]), "objects"),
        "creation-date": f'"(?P<created>{_CHARS}*+)"',
        "type": f'"{OBJECT_DETECTION_TYPE}"',
    }
    line = {
        SOURCE_REF: (f'"{SOURCE_REF}"', rf'"(?P<ref>s3://(?P<bucket>{_BUCKET_CHAR}++)/{_CHARS}*+)(?<!/)"'),
        "attribute": (f'"(?P<attr>{_CHARS}++)"', members((f'"{key}"', value[key]) for key in value_keys)),
        "metadata": (
            f'"(?P<meta>{_CHARS}++)"',
            members((f'"{key}"', metadata[key]) for key in metadata_keys),
        ),
    }
    pattern = re.compile(space + members(line[role] for role in line_keys) + space)
    return _Layout(
        line=pattern,
        box=re.compile(numbers),
        order=cast(tuple[int, int, int, int, int], tuple(box_keys.index(key) for key in _BOX_KEYS)),
        groups=tuple(pattern.groupindex[name] for name in _CAPTURES),
        rekeying=tuple(pattern.groupindex[name] for name in _REKEYING),
        as_is=spacing == "compact"
        and (line_keys, value_keys, size_keys, box_keys, metadata_keys)
        == (_LINE_KEYS, _VALUE_KEYS, _SIZE_KEYS, _BOX_KEYS, _METADATA_KEYS),
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a double's range")
    return value


_STRICT_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def loads_strict(text: str) -> Any:
    """JSON as RFC 8259 defines it, as orjson and AWS's own readers take it: json.loads without its
    NaN/Infinity extension or numbers beyond a double (1e999), and no lone surrogate, raw (bytes a
    reader kept with surrogateescape) or escaped (\\ud800 without its pair), which no UTF-8 output
    could hold. Any of them is a ValueError."""
    if not _is_text(text):
        raise ValueError("the text holds bytes that are not UTF-8")
    value = _STRICT_DECODER.decode(text)
    if "\\u" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a \\u escape of a lone surrogate is not Unicode text") from None
    return value


def _is_finite_number(value: object) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ground_truth_layout() -> _Layout:
    return _layout(_LINE_KEYS, _VALUE_KEYS, _SIZE_KEYS, _BOX_KEYS, _METADATA_KEYS, "compact")


def _json_parser() -> Callable[[str], Any]:
    """orjson.loads when installed (the CoreLayer ships it for its runtime), else loads_strict.

    Only the dict path uses it, and only for lines it then accepts as exactly the expected shape, where
    both parsers give the same values; anything else is parsed again by json for the full check."""
    try:
        import orjson  # a compiled library: imported by the first merge, not at import
    except ImportError:
        logger.warning("orjson is not importable for this Python; the merge parses lines with json")
        return loads_strict
    return orjson.loads


def _escaped(value: str) -> str:
    """A string's JSON text without its quotes, as json.dumps(ensure_ascii=False) writes it."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _json_number(value: float) -> str:
    """An int or float as json.dumps writes it."""
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value) if type(value) is float else int.__repr__(value)


def _canonical_objects(text: str) -> str | bool:
    """The canonical items of an `objects` list from a layout's text of them; False when a confidence is
    not written as json.dumps would write it (the line is then parsed)."""
    confidences = _CONFIDENCE_TEXT.findall(text)
    for number in confidences:
        value = json.loads(number)
        if (float.__repr__(value) if type(value) is float else int.__repr__(value)) != number:
            return False
    return _objects_text(confidences)


def _same(canonical: str, text: str) -> bool:
    """Whether `canonical` (with its line break) is `text` (without one), without copying either."""
    return len(canonical) == len(text) + 1 and canonical.startswith(text)


def _paired_key(line: dict[str, Any]) -> str | None:
    """The first key other than source-ref with a -metadata twin."""
    for key in line:
        if key != SOURCE_REF and not key.endswith(METADATA_SUFFIX) and key + METADATA_SUFFIX in line:
            return key
    return None


def _annotations_text(boxes: Sequence[tuple[object, object, object, object, object]]) -> str:
    """The items of a canonical annotations list; a box is (left, top, width, height, class id), as
    integers or their decimal text."""
    return ",".join(
        [f'{{"left":{x},"top":{y},"width":{w},"height":{h},"class_id":{c}}}' for x, y, w, h, c in boxes]
    )


def _objects_text(confidences: list[str]) -> str:
    """The items of a canonical objects list, from the confidences' JSON texts."""
    return ",".join([f'{{"confidence":{value}}}' for value in confidences])


def _written(lines: list[str], block: str | None, rewritten: dict[int, str]) -> tuple[str, list[int]]:
    """The text written for a chunk's lines, and where each line's text ends in it: each line as it is
    (with its line break: its own, or the block's), except the lines in `rewritten`."""
    if block is None:
        outputs = [rewritten.get(index, line) for index, line in enumerate(lines)] if rewritten else lines
        return "".join(outputs), list(accumulate(map(len, outputs)))
    if len(rewritten) == len(lines):  # every line (in order: the dict was filled in line order)
        outputs = list(rewritten.values())
        return "".join(outputs), list(accumulate(map(len, outputs)))
    lengths = list(map(_one_more, map(len, lines)))  # each line with its line break
    if not rewritten:
        return block, list(accumulate(lengths))
    pieces: list[str] = []
    copied_to = 0  # in `block`
    ends = list(accumulate(lengths))
    for index in sorted(rewritten):
        text = rewritten[index]
        pieces.append(block[copied_to : ends[index] - lengths[index]])
        pieces.append(text)
        copied_to = ends[index]
        lengths[index] = len(text)
    pieces.append(block[copied_to:])
    return "".join(pieces), list(accumulate(lengths))


_one_more = (1).__add__


# What validating a chunk of raw lines gives, aligned with the chunk:
# - each line's source-ref, or None when it has none;
# - the text to write for the chunk's valid lines, in order, each canonical and ending in "\n" (the
#   merge writes it as one block and cuts out only the lines it does not write);
# - where each line's text ends in that block (an invalid line's is empty);
# - line index -> the first problem of each invalid line;
# - the buckets of the valid lines' source-refs;
# - when asked for, each line's creation-date (None for invalid lines), else None.
_ChunkVerdict = tuple[list[str | None], str, list[int], dict[int, Problem], set[str], list[str | None] | None]
# One line: (source-ref, canonical text (with its line break) or None when it is the line, problem,
# creation-date, bucket).
_LineVerdict = tuple[str | None, str | None, Problem | None, str | None, str | None]
# The fast path's: (source-ref, bucket, creation-date, canonical text or None when it is the line);
# None: the full check decides; False: valid, but the line must be parsed for its text.
_FastVerdict = tuple[str, str, str, str | None] | bool | None


class _LineValidator:
    """Validates raw lines and gives their canonical text (in this process or in a validation worker)."""

    def __init__(self, class_map: ClassMap, attribute: str) -> None:
        self.class_map = class_map
        self.attribute = attribute
        self.metadata_key = attribute + METADATA_SUFFIX
        self.ground_truth = _ground_truth_layout()
        self.learned: list[_Layout] = []
        self.learning_attempts = 0
        self.loads = _json_parser()
        self.class_map_text = json.dumps(class_map.to_metadata(), ensure_ascii=False, separators=(",", ":"))
        self.attribute_text = f'"{_escaped(attribute)}"'
        self.metadata_text = f'"{_escaped(self.metadata_key)}"'
        # class-map text -> (line class id -> canonical id, both as decimal text, configured labels only;
        # is it the configured map?)
        self.fast_class_maps: dict[str, tuple[dict[str, str], bool]] = {}
        # class-map items -> line class id -> canonical class id (configured labels only); None: malformed
        self.class_ids: dict[tuple[tuple[Any, Any], ...], dict[int, int] | None] = {}
        self.objects_texts: dict[str, str | bool] = {}  # `objects` text -> _canonical_objects
        self.last_date = ""

    def validate_chunk(
        self, lines: list[str], want_created: bool = False, block: str | None = None
    ) -> _ChunkVerdict:
        """The verdict of `lines`; `block`: their text, when they are its lines without their line breaks
        (a block of whole lines split at \\n): lines already canonical are then not copied one by one."""
        refs: list[str | None] = []
        rewritten: dict[int, str] = {}  # line index -> what to write instead of it ("" for an invalid line)
        problems: dict[int, Problem] = {}
        buckets: set[str] = set()
        created: list[str | None] | None = [] if want_created else None
        ground_truth = self.ground_truth
        fullmatch, layout_verdict = ground_truth.line.fullmatch, self.layout_verdict
        strip = block is None or "\r" in block  # a block's lines hold no line break but a lone CR
        ref: str | None
        bucket: str | None
        date: str | None
        for index, raw in enumerate(lines):
            text = raw.rstrip("\r\n") if strip else raw
            match = fullmatch(text)
            if match is not None:
                fast = layout_verdict(match, ground_truth)
            else:
                fast = self.learned_verdict(text) if self.learned else False
            if type(fast) is tuple:  # the common case, without another tuple per line
                ref, bucket, date, canonical = fast
                problem = None
            else:
                ref, canonical, problem, date, bucket = (
                    self.full_check(text) if fast is None else self.parsed_check(text)
                )
            refs.append(ref)
            if created is not None:
                created.append(date)
            if problem is not None:
                problems[index] = problem
                rewritten[index] = ""
                continue
            assert bucket is not None  # a valid line has an s3:// source-ref
            buckets.add(bucket)
            if canonical is not None:
                rewritten[index] = canonical
            elif block is not None:
                if text is not raw:  # stripped of a CR
                    rewritten[index] = text + "\n"
            elif len(raw) != len(text) + 1 or raw[-1] != "\n":
                rewritten[index] = text + "\n"
        text_block, ends = _written(lines, block, rewritten)
        return refs, text_block, ends, problems, buckets, created

    # --- fast path: a layout's regular expression, then checks on its captures ------------------

    def learned_verdict(self, text: str) -> _FastVerdict:
        for layout in self.learned:
            match = layout.line.fullmatch(text)
            if match is not None:
                return self.layout_verdict(match, layout)
        return False

    def fast_class_map(self, text: str) -> tuple[dict[str, str], bool]:
        """(line class id -> canonical id of the configured labels, is it the configured class-map?)"""
        known = self.fast_class_maps.get(text)
        if known is None:
            ids = {
                cid: str(canonical)
                for cid, name in _CLASS_ENTRY_TEXT.findall(text)
                if (canonical := self.class_map.get_id(name)) is not None
            }
            known = self.fast_class_maps[text] = (ids, text == self.class_map_text)
        return known

    def layout_verdict(self, match: re.Match[str], layout: _Layout) -> _FastVerdict:
        ref, bucket, attr, meta, boxes_text, width_text, height_text, classes, objects, created = match.group(
            *layout.groups
        )
        if meta != attr + METADATA_SUFFIX:
            return None
        if attr != self.attribute and (attr.endswith(METADATA_SUFFIX) or attr == SOURCE_REF):
            return None
        known = self.fast_class_maps.get(classes)
        ids, canonical = known if known is not None else self.fast_class_map(classes)
        boxes = layout.box.findall(boxes_text)
        if len(boxes) > MAX_BOXES_PER_IMAGE or objects.count("{") != len(boxes):
            return None
        width, height = int(width_text), int(height_text)
        left_at, top_at, width_at, height_at, id_at = layout.order
        for box in boxes:
            if (
                int(box[left_at]) + int(box[width_at]) > width
                or int(box[top_at]) + int(box[height_at]) > height
            ):
                return None
            if box[id_at] not in ids:
                return None
        if created != self.last_date:  # Ground Truth writes runs of lines with the same date
            if parse_creation_date(created) is None:
                return None
            self.last_date = created
        canonical_objects = self.objects_texts.get(objects)
        if canonical_objects is None:
            if len(self.objects_texts) > 10_000:  # float confidences rarely repeat: keep the cache small
                self.objects_texts.clear()
            canonical_objects = self.objects_texts[objects] = _canonical_objects(objects)
        if canonical_objects is False:
            return False
        if layout.as_is and canonical and attr == self.attribute and canonical_objects == objects:
            return ref, bucket, created, None
        in_order = boxes if layout.reorder is None else map(layout.reorder, boxes)
        annotations = ",".join(  # as _annotations_text writes them, in one step per box
            [
                f'{{"left":{x},"top":{y},"width":{w},"height":{h},"class_id":{ids[c]}}}'
                for x, y, w, h, c in in_order
            ]
        )
        depth, job, human = match.group(*layout.rekeying)
        text = self.canonical_text(
            ref,
            annotations,
            width,
            height,
            depth,
            job,
            human,
            cast(str, canonical_objects),
            created,
            plain=True,
        )
        return ref, bucket, created, text

    # --- dict path: any layout, parsed (orjson when available) and checked for the expected shape ---

    def parsed_check(self, text: str) -> _LineVerdict:
        try:
            line = self.loads(text)
        except ValueError:  # orjson.JSONDecodeError is a ValueError; json's message comes from full_check
            return self.full_check(text)
        # Without a backslash in the line no string holds a quote, a backslash or a control character
        # (JSON forbids them raw), so strings are written back between quotes as they are.
        verdict = self.dict_valid(line, "\\" not in text)
        if verdict is None:
            return self.full_check(text)
        if len(self.learned) < _MAX_LEARNED_LAYOUTS and self.learning_attempts < _MAX_LEARNING_ATTEMPTS:
            self.learn(line, text)
        ref, canonical, created, bucket = verdict
        return ref, None if _same(canonical, text) else canonical, None, created, bucket

    def learn(self, line: dict[str, Any], text: str) -> None:
        """Learn the layout of a valid `line` (its key orders and spacing) when its text takes it."""
        self.learning_attempts += 1
        attr = self.attribute if self.attribute in line else _paired_key(line)
        assert attr is not None  # the line is valid
        value, metadata = line[attr], line[attr + METADATA_SUFFIX]
        annotations = value["annotations"]
        if not annotations or any(list(box) != list(annotations[0]) for box in annotations):
            return  # no box (or boxes in several orders) to learn the box key order from
        roles = {SOURCE_REF: SOURCE_REF, attr: "attribute", attr + METADATA_SUFFIX: "metadata"}
        orders = (
            tuple(roles[key] for key in line),
            tuple(value),
            tuple(value["image_size"][0]),
            tuple(annotations[0]),
            tuple(metadata),
        )
        # json.dumps's own separators first: a pattern of literal separators is matched faster.
        for spacing in ("dumps", "any"):
            layout = _layout(*orders, spacing)
            if layout.line.fullmatch(text) is not None:
                if layout not in self.learned:
                    self.learned.append(layout)
                return

    def dict_valid(self, line: Any, plain: bool) -> tuple[str, str, str, str] | None:
        """(source-ref, canonical text, creation-date, bucket) of a valid line that has exactly the
        expected keys and types, whatever their order; None for anything else (the full check decides)."""
        if type(line) is not dict or len(line) != 3:
            return None
        try:
            ref = line[SOURCE_REF]
            attr = self.attribute if self.attribute in line else _paired_key(line)
            if attr is None:
                return None
            value, metadata = line[attr], line[attr + METADATA_SUFFIX]
            annotations, sizes = value["annotations"], value["image_size"]
            job, names, human = metadata["job-name"], metadata["class-map"], metadata["human-annotated"]
            objects, created, kind = metadata["objects"], metadata["creation-date"], metadata["type"]
            (size,) = sizes
            width, height, depth = size["width"], size["height"], size["depth"]
            if len(value) != 2 or len(metadata) != 6 or len(size) != 3 or kind != OBJECT_DETECTION_TYPE:
                return None
            if type(ref) is not str or not ref.startswith("s3://") or ref.endswith("/"):
                return None
            slash = ref.find("/", 5)
            if slash <= 5:  # no key, or no bucket
                return None
            if type(annotations) is not list or type(sizes) is not list or type(objects) is not list:
                return None
            if len(annotations) > MAX_BOXES_PER_IMAGE or len(objects) != len(annotations):
                return None
            if not (type(width) is int and type(height) is int and type(depth) is int):
                return None
            if width <= 0 or height <= 0 or depth <= 0:
                return None
            if type(job) is not str or type(created) is not str or human not in ("yes", "no"):
                return None
            ids = self.canonical_ids(names)
            if ids is None:
                return None
            boxes: list[tuple[int, int, int, int, int]] = []
            for box in annotations:
                left, top, box_w, box_h = box["left"], box["top"], box["width"], box["height"]
                class_id = box["class_id"]
                if len(box) != 5 or not (
                    type(left) is int
                    and type(top) is int
                    and type(box_w) is int
                    and type(box_h) is int
                    and type(class_id) is int
                ):
                    return None
                if box_w <= 0 or box_h <= 0 or left < 0 or top < 0:
                    return None
                if left + box_w > width or top + box_h > height:
                    return None
                boxes.append((left, top, box_w, box_h, ids[class_id]))
            confidences: list[str] = []
            for item in objects:
                confidence = item["confidence"]
                if len(item) != 1:
                    return None
                if type(confidence) is int:
                    confidences.append(int.__repr__(confidence))
                elif type(confidence) is float and -_FLOAT_LIMIT < confidence < _FLOAT_LIMIT:
                    confidences.append(float.__repr__(confidence))
                else:
                    return None
        except (KeyError, TypeError, ValueError):  # a key, a type or a count that is not the expected one
            return None
        if created != self.last_date:
            if parse_creation_date(created) is None:
                return None
            self.last_date = created
        text = self.canonical_text(
            ref,
            _annotations_text(boxes),
            width,
            height,
            depth,
            job,
            human,
            _objects_text(confidences),
            created,
            plain,
        )
        return ref, text, created, ref[5:slash]

    def canonical_ids(self, names: Any) -> dict[int, int] | None:
        """Line class id -> canonical class id, for the ids whose names are configured labels; None when
        the class-map is not an object of digit strings to strings."""
        try:
            key = tuple(names.items())
            return self.class_ids[key]
        except (AttributeError, TypeError):  # not an object, or a value that is not a string
            return None
        except KeyError:
            pass
        ids: dict[int, int] | None = None
        if all(type(cid) is str and cid.isdigit() and type(name) is str for cid, name in key):
            # Boxes name class ids as JSON integers, matched to the class-map by their decimal text.
            ids = {
                int(cid): canonical
                for cid, name in key
                if str(int(cid)) == cid and (canonical := self.class_map.get_id(name)) is not None
            }
        self.class_ids[key] = ids
        return ids

    def canonical_text(
        self,
        ref: str,
        annotations: str,
        width: object,
        height: object,
        depth: object,
        job: str,
        human: str,
        objects: str,
        created: str,
        plain: bool,
    ) -> str:
        """A line as `json.dumps(build_line-shaped dict, ensure_ascii=False, separators=(",", ":"))`
        writes it, plus its line break, with the merge's attribute and the configured class-map.
        `annotations`, `objects`: the JSON texts of those lists' items; width, height, depth: integers
        or their decimal text; `plain`: no string needs escaping."""
        if not plain:
            ref, job, created = _escaped(ref), _escaped(job), _escaped(created)
        return (
            f'{{"source-ref":"{ref}",{self.attribute_text}:{{"annotations":[{annotations}],'
            f'"image_size":[{{"width":{width},"height":{height},"depth":{depth}}}]}},'
            f'{self.metadata_text}:{{"job-name":"{job}","class-map":{self.class_map_text},'
            f'"human-annotated":"{human}","objects":[{objects}],'
            f'"creation-date":"{created}","type":"{OBJECT_DETECTION_TYPE}"}}}}\n'
        )

    # --- full path: loads_strict + check_line -----------------------------------------------------

    def full_check(self, text: str) -> _LineVerdict:
        if not text or text.isspace():
            return None, None, (EMPTY_LINE, "the line is empty"), None, None
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes the reader could not decode, kept as lone surrogates
            return None, None, (NOT_UTF8, "the line holds bytes that are not UTF-8"), None, None
        try:
            line = loads_strict(text)
        except ValueError as exc:
            return None, None, (INVALID_JSON, f"not valid JSON: {exc}"), None, None
        if type(line) is not dict:
            return None, None, (NOT_AN_OBJECT, "the line is not a JSON object"), None, None
        problems = check_line(line, self.class_map)
        if problems:
            ref = line.get(SOURCE_REF)
            return (ref if type(ref) is str else None), None, problems[0], None, None
        ref = line[SOURCE_REF]  # a valid line has an s3://bucket/key source-ref
        attr = find_attribute(line, self.attribute)
        assert attr is not None  # the line was validated
        canonical = self.rekey(line)
        created = line[attr + METADATA_SUFFIX]["creation-date"]
        return ref, None if _same(canonical, text) else canonical, None, created, ref[5 : ref.index("/", 5)]

    def rekey(self, line: dict[str, Any]) -> str:
        """The canonical text of a valid line, with its line break: Ground Truth layout, the merge's
        attribute, the configured class-map and class ids (remapped by name), nothing else."""
        attr = find_attribute(line, self.attribute)
        assert attr is not None  # the line was validated
        value, metadata = line[attr], line[attr + METADATA_SUFFIX]
        names, id_of = metadata["class-map"], self.class_map.id_of
        boxes = [
            (b["left"], b["top"], b["width"], b["height"], id_of(names[str(b["class_id"])]))
            for b in value["annotations"]
        ]
        size = value["image_size"][0]
        return self.canonical_text(
            line[SOURCE_REF],
            _annotations_text(boxes),
            size["width"],
            size["height"],
            size["depth"],
            metadata.get("job-name", f"labeling-job/{attr}"),
            metadata["human-annotated"],
            _objects_text([_json_number(o["confidence"]) for o in metadata["objects"]]),
            metadata["creation-date"],
            plain=False,
        )


_CLASS_MAP_KEY = '"class-map"'
_CLASS_MAP_TEXT = re.compile(r'"class-map"[ \t\r\n]*:[ \t\r\n]*(\{[^{}\\]*\})')


def collect_class_names(lines: Iterable[str]) -> set[str]:
    """Class names used in the class-maps of the given JSON lines (lines that do not parse are skipped).
    Fast for big manifests in any layout: each distinct class-map text is parsed once."""
    names: set[str] = set()
    seen_maps: set[str] = set()  # '"class-map": {...}' texts already parsed
    for text in lines:
        at = text.find(_CLASS_MAP_KEY)
        if at >= 0 and text.find(_CLASS_MAP_KEY, at + len(_CLASS_MAP_KEY)) < 0:
            segment = text[at : text.find("}", at) + 1]
            if segment in seen_maps:
                continue
            found = _CLASS_MAP_TEXT.fullmatch(segment)
            if found is not None:
                seen_maps.add(segment)
                names.update(_names_of(_loads_or_none(found[1])))
                continue
        line = _loads_or_none(text)
        attr = find_attribute(line) if isinstance(line, dict) else None
        metadata = line.get(attr + METADATA_SUFFIX) if isinstance(line, dict) and attr else None
        names.update(_names_of(metadata.get("class-map") if isinstance(metadata, dict) else None))
    return names


def _loads_or_none(text: str) -> Any:
    try:
        return loads_strict(text)
    except ValueError:
        return None


def _names_of(class_map: object) -> list[str]:
    if not isinstance(class_map, dict):
        return []
    return [name for name in class_map.values() if isinstance(name, str) and name.strip() and _is_text(name)]
