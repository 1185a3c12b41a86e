"""The merge: base manifest + human labels -> one validated line per source-ref."""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from labelloop_core.manifest.lines import (
    BAD_SOURCE_REF,
    DUPLICATE_SOURCE_REF,
    ClassMap,
    Problem,
    _ChunkVerdict,
    _LineValidator,
    parse_creation_date,
)
from labelloop_core.manifest.workers import _pool_size, _verdicts, _Workers

logger = logging.getLogger("labelloop_core.manifest")

_BLOCK_CHARS = 1024 * 1024
# Rekognition dataset import limits; the merge report warns when an output would break them.
MAX_MANIFEST_LINES = 250_000
MAX_MANIFEST_BYTES = 1_000_000_000
MAX_INVALID_FRACTION = 0.20


class _FileLines:
    def __init__(self, handle: TextIO) -> None:
        self.handle = handle

    def __iter__(self) -> Iterator[str]:
        return iter(self.handle)

    def text_blocks(self) -> Iterator[str]:
        pending = ""  # the start of a line continued in the next block
        while block := self.handle.read(_BLOCK_CHARS):
            text = pending + block if pending else block
            cut = text.rfind("\n") + 1
            if cut:
                yield text[:cut]
            pending = text[cut:]
        if pending:
            yield pending + "\n"


def file_lines(handle: TextIO) -> Iterable[str]:
    """The lines of a text file opened with universal newlines (open()'s default) for `merge`, which
    then reads it a megabyte at a time instead of line by line (same lines)."""
    return _FileLines(handle)


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


class _Label:
    __slots__ = ("bucket", "created", "number", "text")

    def __init__(self, created: str, text: str, number: int, bucket: str) -> None:
        self.created = created  # creation-date, as written (valid)
        self.text = text  # canonical, with its line break
        self.number = number
        self.bucket = bucket


def _earlier(created: str, other: str) -> bool:
    """Whether creation-date `created` is before `other` (both valid; parsed only when they differ)."""
    if created == other:
        return False
    moment, other_moment = parse_creation_date(created), parse_creation_date(other)
    assert moment is not None and other_moment is not None  # validated
    return moment < other_moment


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
    """The sequential part of a merge: newest label per source-ref, dedupe, counting, writing.

    Base lines come in chunks with their verdicts. The lines of a chunk that are valid, with a source-ref
    that is new, unlabelled and not repeated in the chunk (nearly all of them) are written as one block
    with set operations, without a step per line here; only the other lines (invalid, duplicate,
    labelled) are handled one by one, in line order."""

    def __init__(self, out: TextIO, validator: _LineValidator, workers: _Workers) -> None:
        self.out = out
        self.validator = validator
        self.workers = workers
        self.report = MergeReport()

    def drop(self, origin: str, number: int, problem: Problem) -> None:
        category, detail = problem
        self.report.dropped[category] = self.report.dropped.get(category, 0) + 1
        logger.warning("%s line %d dropped: %s (%s)", origin, number, category, detail)

    def write(self, block: str, lines: int) -> None:
        """Write `block`: `lines` whole lines, each ending in \\n."""
        if block:
            self.out.write(block)
            self.report.output_lines += lines
            self.report.output_bytes += len(block) if block.isascii() else len(block.encode("utf-8"))

    def load_labels(self, label_lines: Iterable[str]) -> dict[str, _Label]:
        newest: dict[str, _Label] = {}
        number = 0
        for refs, block, ends, problems, _, created_texts in _verdicts(
            label_lines, self.validator, self.workers, True
        ):
            assert created_texts is not None  # asked for
            for index, ref in enumerate(refs):
                number += 1
                problem = problems.get(index)
                if problem is not None or ref is None:
                    self.drop("label", number, problem or (BAD_SOURCE_REF, "missing source-ref"))
                    continue
                created = cast(str, created_texts[index])
                current = newest.get(ref)
                if current is not None:
                    self.report.superseded += 1
                    earlier = _earlier(created, current.created)
                    older, newer = (number, current.number) if earlier else (current.number, number)
                    logger.info("label line %d superseded by newer label line %d for %s", older, newer, ref)
                    if older == number:
                        continue
                text = block[ends[index - 1] if index else 0 : ends[index]]
                newest[ref] = _Label(created, text, number, ref[5 : ref.index("/", 5)])
        self.report.input_lines += number
        return newest

    def stream_base(self, base_lines: Iterable[str], labels: dict[str, _Label]) -> None:
        seen: set[str] = set()
        number = 0  # base lines before the chunk
        for verdict in _verdicts(base_lines, self.validator, self.workers, False):
            self.take_chunk(number, verdict, seen, labels)
            number += len(verdict[0])
        self.report.input_lines += number

    def take_chunk(
        self, number: int, verdict: _ChunkVerdict, seen: set[str], labels: dict[str, _Label]
    ) -> None:
        refs, block, ends, problems, buckets, _ = verdict
        self.report.buckets |= buckets
        found = set(refs)
        found.discard(None)
        distinct = cast(set[str], found)
        special = distinct & seen
        if labels:
            special |= distinct & labels.keys()
        repeated = len(distinct) != len(refs) - refs.count(None)
        if repeated:
            special |= {ref for ref, count in Counter(refs).items() if count > 1 and ref is not None}
        if not special and not problems:
            seen |= distinct
            self.report.kept += len(distinct)
            self.write(block, len(distinct))
            return
        if repeated:
            indexes = [i for i, ref in enumerate(refs) if ref in special or i in problems]
        else:
            position = dict(zip(refs, range(len(refs)), strict=True))  # None is never looked up
            indexes = sorted({*problems, *(position[ref] for ref in special)})
        pieces: list[str] = []  # the block without the lines not written, with the labels instead
        written_to = 0
        lines = len(refs) - len(problems)  # written, after the lines dropped and added below
        for index in indexes:
            ref = refs[index]
            distinct.discard(cast(str, ref))
            text = self.take_line(number + index + 1, ref, problems.get(index), seen, labels)
            if text is True:  # written as validated: it stays in the block
                continue
            pieces.append(block[written_to : ends[index - 1] if index else 0])
            lines -= index not in problems  # a valid line cut out
            if isinstance(text, str):
                pieces.append(text)
                lines += 1
            written_to = ends[index]
        pieces.append(block[written_to:])
        seen |= distinct  # the valid lines with a new, unlabelled source-ref seen once in the chunk
        self.report.kept += len(distinct)
        self.write("".join(pieces), lines)

    def take_line(
        self, number: int, ref: str | None, problem: Problem | None, seen: set[str], labels: dict[str, _Label]
    ) -> str | bool:
        """For a base line that needs a decision of its own: True (write it), a label's text or False."""
        report = self.report
        if ref is not None:
            if ref in seen:
                self.drop("base", number, (DUPLICATE_SOURCE_REF, f"{ref} already appeared earlier"))
                return False
            label = labels.pop(ref, None) if labels else None
            if label is not None:  # the human label wins, whatever the base line holds
                seen.add(ref)
                report.replaced += 1
                report.buckets.add(label.bucket)
                return label.text
        if problem is not None or ref is None:
            self.drop("base", number, problem or (BAD_SOURCE_REF, "missing source-ref"))
            return False
        seen.add(ref)
        report.kept += 1
        return True

    def add_remaining(self, labels: dict[str, _Label]) -> None:
        remaining = list(labels.values())
        for start in range(0, len(remaining), 4096):
            block = remaining[start : start + 4096]
            self.report.buckets.update(label.bucket for label in block)
            self.write("".join(label.text for label in block), len(block))
        self.report.added += len(remaining)

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
    written lines are canonical, whatever the input's JSON layout (key order, whitespace, escapes): Ground
    Truth's compact layout, `attribute`, the configured class-map and class ids (remapped by class name);
    lines already in that form are copied byte for byte. Dropped lines are counted per reason and logged
    (line number and reason) on the `labelloop_core.manifest` logger.

    Streaming and linear: memory holds the label lines and the set of source-refs written, not the
    base manifest. Validation runs on `workers` processes (default: the usable cores; 0 or 1: in this
    process); the output does not depend on it. Base lines that can also be had as blocks of text
    (`text_blocks()`: S3Store.iter_lines, file_lines) go to the workers a block at a time.
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
