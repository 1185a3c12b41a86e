"""SageMaker Ground Truth object-detection manifests: build, validate, merge.

- `lines`: the line format, building one line and validating it (what Rekognition would reject);
- `merging`: the streaming merge of a base manifest with human labels, and its report;
- `workers`: the optional validation worker processes the merge spreads long inputs over.

Callers import from here; the submodules are the implementation. The merge and its worker pool load
on first use (`manifest.merge`): most importers only build or validate lines, and a Lambda function's
cold start should not pay for subprocess, pickle and the merge's code.
"""

from typing import TYPE_CHECKING, Any

from labelloop_core.manifest.lines import (
    BAD_ANNOTATION,
    BAD_ATTRIBUTE,
    BAD_CREATION_DATE,
    BAD_IMAGE_SIZE,
    BAD_METADATA,
    BAD_SOURCE_REF,
    BOX_NOT_POSITIVE,
    BOX_OUTSIDE,
    CLASS_ID_NOT_IN_MAP,
    DUPLICATE_SOURCE_REF,
    EMPTY_LINE,
    INVALID_JSON,
    MAX_BOXES_PER_IMAGE,
    MAX_LABEL_LENGTH,
    MAX_LABELS,
    METADATA_SUFFIX,
    NO_ATTRIBUTE,
    NOT_AN_OBJECT,
    NOT_OBJECT_DETECTION,
    OBJECT_DETECTION_TYPE,
    OBJECTS_MISMATCH,
    SOURCE_REF,
    TOO_MANY_BOXES,
    UNKNOWN_LABEL,
    ClassMap,
    Problem,
    build_line,
    check_line,
    collect_class_names,
    find_attribute,
    format_creation_date,
    parse_creation_date,
    validate_line,
)

if TYPE_CHECKING:
    from labelloop_core.manifest.merging import (
        MAX_INVALID_FRACTION,
        MAX_MANIFEST_BYTES,
        MAX_MANIFEST_LINES,
        MergeReport,
        file_lines,
        merge,
    )

_MERGING = frozenset(
    {"MAX_INVALID_FRACTION", "MAX_MANIFEST_BYTES", "MAX_MANIFEST_LINES", "MergeReport", "file_lines", "merge"}
)


def __getattr__(name: str) -> Any:
    if name in _MERGING:
        from labelloop_core.manifest import merging  # on first use, see above

        return getattr(merging, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BAD_ANNOTATION",
    "BAD_ATTRIBUTE",
    "BAD_CREATION_DATE",
    "BAD_IMAGE_SIZE",
    "BAD_METADATA",
    "BAD_SOURCE_REF",
    "BOX_NOT_POSITIVE",
    "BOX_OUTSIDE",
    "CLASS_ID_NOT_IN_MAP",
    "DUPLICATE_SOURCE_REF",
    "EMPTY_LINE",
    "INVALID_JSON",
    "MAX_BOXES_PER_IMAGE",
    "MAX_INVALID_FRACTION",
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "MAX_MANIFEST_BYTES",
    "MAX_MANIFEST_LINES",
    "METADATA_SUFFIX",
    "NOT_AN_OBJECT",
    "NOT_OBJECT_DETECTION",
    "NO_ATTRIBUTE",
    "OBJECTS_MISMATCH",
    "OBJECT_DETECTION_TYPE",
    "SOURCE_REF",
    "TOO_MANY_BOXES",
    "UNKNOWN_LABEL",
    "ClassMap",
    "MergeReport",
    "Problem",
    "build_line",
    "check_line",
    "collect_class_names",
    "file_lines",
    "find_attribute",
    "format_creation_date",
    "merge",
    "parse_creation_date",
    "validate_line",
]
