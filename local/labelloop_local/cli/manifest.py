"""`labelloop manifest ...`: offline Ground Truth manifest tools (no AWS needed).

- `merge --base FILE --labels FILE_OR_DIR... -o OUT`: base manifest + human label lines -> one valid
  line per image (newest human label wins), with counts of kept, replaced, added and dropped lines.
- `from-a2i OUTPUT_JSON_OR_DIR... -o OUT`: A2I output.json files (or folders holding them, such as a
  copy of the bucket's reviews/) -> Ground Truth manifest lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from labelloop_core.a2i import answer_to_manifest_line, parse_output
from labelloop_core.errors import InvalidReview
from labelloop_core.manifest import (
    ClassMap,
    MergeReport,
    collect_class_names,
    file_lines,
    find_attribute,
    merge,
)
from labelloop_core.naming import is_valid_loop_name
from labelloop_local.cli import add_command

LABEL_FILE_SUFFIXES = (".json", ".manifest")
DEFAULT_ATTRIBUTE = "pepperoni_pizza_BB"  # template.yaml's LabelAttribute default
_ATTRIBUTE_PATTERN = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,126}$")
# Inputs keep bytes that are not UTF-8 (as lone surrogates): the merge drops only their lines, as
# "not valid UTF-8", where a strict decode would stop the whole command.
_KEEP_BAD_BYTES = "surrogateescape"


class UsageError(Exception):
    """A problem with the command line or the input files as a whole (exit status 2)."""


def register(subparsers: Any) -> None:
    parser = add_command(subparsers, "manifest", "offline Ground Truth manifest tools", __doc__)
    actions = parser.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")

    merge_parser = add_command(
        actions,
        "merge",
        "merge a base manifest with human labels",
        "One line per source-ref: the newest human label (by creation-date) replaces the base line; "
        "duplicate base lines keep the first; invalid lines are dropped and counted by reason. The output "
        "is written to a temporary file and renamed: never half-written.",
    )
    merge_parser.add_argument(
        "--base", required=True, type=Path, metavar="FILE", help="base manifest (JSON lines)"
    )
    merge_parser.add_argument(
        "--labels",
        required=True,
        nargs="+",
        type=Path,
        metavar="FILE_OR_DIR",
        help="label files, or directories whose *.json and *.manifest files hold one or more JSON lines",
    )
    _add_common(merge_parser, attribute_default="the base manifest's attribute")
    merge_parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="validation processes (default: the usable CPU cores; 0 validates in this process)",
    )
    merge_parser.set_defaults(func=run_merge)

    a2i_parser = add_command(
        actions,
        "from-a2i",
        "convert A2I output.json files to manifest lines",
        "Each A2I output.json becomes one Ground Truth line; a folder stands for every output.json below "
        "it. Bad files are reported with the reason; the good ones are still written, and the exit "
        "status is 1.",
    )
    a2i_parser.add_argument(
        "outputs", nargs="+", type=Path, metavar="OUTPUT_JSON_OR_DIR", help="output.json files or folders"
    )
    _add_common(a2i_parser, attribute_default=DEFAULT_ATTRIBUTE)
    a2i_parser.set_defaults(func=run_from_a2i)

    from labelloop_local.cli import formats  # export / import (it builds on this module)

    formats.register(actions)


def _add_common(parser: argparse.ArgumentParser, attribute_default: str) -> None:
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT", help="manifest to write")
    parser.add_argument(
        "--labels-list",
        metavar='"a,b"',
        help="label names in class-id order (default: the distinct names found in the inputs, sorted)",
    )
    parser.add_argument(
        "--attribute",
        metavar="NAME",
        help=f"label attribute of the written lines (default: {attribute_default})",
    )


# --- merge ------------------------------------------------------------------------------------------


def run_merge(args: argparse.Namespace) -> int:
    try:
        label_files = expand_label_paths(args.labels)
        _require_file(args.base, "--base")
        _require_writable_file(args.output)
        class_map, attribute = _merge_settings(args, label_files)
        ranges: list[tuple[Path, int, int]] = []
        base_file = args.base.open(encoding="utf-8", errors=_KEEP_BAD_BYTES)
        with base_file as base, _atomic_output(args.output) as out:
            labels = _label_lines(label_files, ranges)
            report = merge(file_lines(base), labels, out, class_map, attribute, args.workers)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_merge_report(args, report, class_map, attribute, ranges)
    return 0


def expand_label_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories become their *.json and *.manifest files, sorted by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in LABEL_FILE_SUFFIXES)
            if not found:
                print(f"note: {path} holds no *.json or *.manifest files", file=sys.stderr)
            files.extend(found)
        else:
            _require_file(path, "--labels")
            files.append(path)
    return files


def _require_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a directory, not a manifest file")
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file")
    if not path.is_file():
        raise UsageError(f"{what} {path}: not a regular file")


def _require_writable_file(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"-o {path}: is a directory; give the path of the manifest file to write")


def read_json_lines(path: Path) -> Iterator[str]:
    """The JSON lines of a label file; a .json file holding one pretty-printed object is one line."""
    with path.open(encoding="utf-8", errors=_KEEP_BAD_BYTES) as handle:
        if path.suffix == ".json":
            yield from json_file_lines(handle.read())
            return
        yield from handle


def json_file_lines(text: str) -> list[str]:
    """The lines of a .json label file: one pretty-printed object is one line, else its lines."""
    try:
        whole = json.loads(text)
    except ValueError:
        return text.splitlines()
    if isinstance(whole, dict):
        return [json.dumps(whole, ensure_ascii=False, separators=(",", ":"))]
    return text.splitlines()


def _label_lines(files: list[Path], ranges: list[tuple[Path, int, int]]) -> Iterator[str]:
    """All label lines in order; `ranges` records which label line numbers came from which file."""
    number = 0
    for path in files:
        first = number + 1
        for line in read_json_lines(path):
            number += 1
            yield line
        ranges.append((path, first, number))


def _merge_settings(args: argparse.Namespace, label_files: list[Path]) -> tuple[ClassMap, str]:
    attribute = args.attribute or _first_attribute(args.base, label_files)
    _check_attribute(attribute)
    if args.labels_list:
        return _class_map_from_csv(args.labels_list), attribute
    names = collect_class_names(_all_lines(args.base, label_files))
    if not names:
        raise UsageError("no class names found in the inputs' class-maps; give --labels-list")
    return _class_map(sorted(names)), attribute


def _all_lines(base: Path, label_files: list[Path]) -> Iterator[str]:
    with base.open(encoding="utf-8", errors=_KEEP_BAD_BYTES) as handle:
        yield from handle
    for path in label_files:
        yield from read_json_lines(path)


def _first_attribute(base: Path, label_files: list[Path]) -> str:
    for line in _all_lines(base, label_files):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        attribute = find_attribute(parsed) if isinstance(parsed, dict) else None
        if attribute:
            return attribute
    return DEFAULT_ATTRIBUTE


def _print_merge_report(
    args: argparse.Namespace,
    report: MergeReport,
    class_map: ClassMap,
    attribute: str,
    ranges: list[tuple[Path, int, int]],
) -> None:
    print(f"merged {args.base} + {len(ranges)} label file(s) -> {args.output}")
    for name in ("kept", "replaced", "added", "superseded"):
        print(f"  {name:<11}{getattr(report, name):>10,}")
    print(f"  {'dropped':<11}{report.dropped_total:>10,}")
    for reason, count in sorted(report.dropped.items()):
        print(f"    {reason}: {count:,}")
    print(f"  output: {report.output_lines:,} lines, {report.output_bytes:,} bytes, attribute '{attribute}'")
    print("  labels: " + ", ".join(f"{i}={name}" for i, name in enumerate(class_map.labels)))
    if report.dropped_total and ranges:
        print("  label line numbers in the messages above come from:")
        for path, first, last in ranges:
            if last >= first:
                print(f"    {first}-{last}: {path}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)


# --- from-a2i -----------------------------------------------------------------------------------


def run_from_a2i(args: argparse.Namespace) -> int:
    try:
        if args.attribute:
            _check_attribute(args.attribute)
        _require_writable_file(args.output)
        documents = [(path, _load_output(path)) for path in expand_output_paths(args.outputs)]
        class_map = _a2i_class_map(args.labels_list, documents)
        written, failures = 0, 0
        with _atomic_output(args.output) as out:
            for path, document in documents:
                line = _convert(path, document, class_map, args.attribute or DEFAULT_ATTRIBUTE)
                if line is None:
                    failures += 1
                    continue
                out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
                written += 1
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written} line(s) to {args.output}; {failures} file(s) failed")
    return 1 if failures else 0


def expand_output_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a folder stands for every output.json below it (A2I's layout), sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("output.json"))
            if not found:
                raise UsageError(f"{path}: a folder with no output.json below it")
            files.extend(found)
        else:
            _require_file(path, "output")
            files.append(path)
    return files


def _load_output(path: Path) -> Any:
    """The parsed JSON document, or the InvalidReview explaining why it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return InvalidReview("SCHEMA", "not a JSON document: the file is not UTF-8 text")
    if not text.strip():
        return InvalidReview("SCHEMA", "the file is empty")
    try:
        return json.loads(text)
    except ValueError as exc:
        return InvalidReview("SCHEMA", f"not a JSON document: {exc}")


def _a2i_class_map(labels_list: str | None, documents: list[tuple[Path, Any]]) -> ClassMap | None:
    """The class map to write; None when no file can be read at all (each is reported on its own)."""
    if labels_list:
        return _class_map_from_csv(labels_list)
    if all(isinstance(document, InvalidReview) for _, document in documents):
        return None
    names: set[str] = set()
    for _, document in documents:
        content = document.get("inputContent") if isinstance(document, dict) else None
        if isinstance(content, str):
            try:
                content = json.loads(content)
            except ValueError:
                continue
        labels = content.get("labels") if isinstance(content, dict) else None
        if isinstance(labels, list):
            names.update(label for label in labels if isinstance(label, str) and label.strip())
    if not names:
        raise UsageError("no labels found in the outputs' inputContent; give --labels-list")
    return _class_map(sorted(names))


def _convert(path: Path, document: Any, class_map: ClassMap | None, attribute: str) -> dict[str, Any] | None:
    try:
        if isinstance(document, InvalidReview):
            raise document
        assert class_map is not None  # None only when every document is unreadable
        answer = parse_output(document)
        loop_name = answer.human_loop_name or path.parent.name
        if not is_valid_loop_name(loop_name):
            raise InvalidReview("SCHEMA", "no humanLoopName, and the folder name is not a loop name")
        line = answer_to_manifest_line(answer, class_map, attribute, loop_name)
    except InvalidReview as exc:
        print(f"{path}: {exc.code}: {exc.message}", file=sys.stderr)
        return None
    if answer.dropped_boxes:
        print(
            f"{path}: note: {answer.dropped_boxes} box(es) entirely outside the image were dropped",
            file=sys.stderr,
        )
    return line


# --- shared -------------------------------------------------------------------------------------


def _check_attribute(attribute: str) -> None:
    if (
        not _ATTRIBUTE_PATTERN.match(attribute)
        or attribute.endswith("-metadata")
        or attribute == "source-ref"
    ):
        raise UsageError(f"--attribute {attribute!r} is not a usable label attribute name")


def _class_map(labels: list[str]) -> ClassMap:
    try:
        return ClassMap.from_labels(labels)
    except ValueError as exc:
        raise UsageError(f"labels: {exc}") from None


def _class_map_from_csv(text: str) -> ClassMap:
    try:
        return ClassMap.from_csv(text)
    except ValueError as exc:
        raise UsageError(f"--labels-list: {exc}") from None


@contextmanager
def _atomic_output(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file next to `path`, then rename: never a half-written manifest."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"{path}: the directory {directory} does not exist")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            yield out
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
