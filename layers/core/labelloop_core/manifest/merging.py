"""The merge: base manifest + human labels -> one validated line per source-ref (DESIGN §2 step 5)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from labelloop_core.manifest.lines import (
    BAD_SOURCE_REF,
    DUPLICATE_SOURCE_REF,
    ClassMap,
    Problem,
    _LineValidator,
    parse_creation_date,
)
from labelloop_core.manifest.workers import _pool_size, _verdicts, _Workers

logger = logging.getLogger("labelloop_core.manifest")

# Rekognition dataset import limits; the merge report warns when an output would break them.
MAX_MANIFEST_LINES = 250_000
MAX_MANIFEST_BYTES = 1_000_000_000
MAX_INVALID_FRACTION = 0.20


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
