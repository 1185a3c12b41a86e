"""`labelloop datasets list|diff`: every training's dataset, versioned and comparable.

Retrain records what each training trained on when it starts it (ledger item `DATASETS` /
`VERSION#<name>`: manifest key, SHA-256 of the manifest as uploaded, image and box counts per
label, human labels new to this training); Promote's decision (`VERSION#<name>` / `DECISION`) has
the resulting F1. `list` shows them, oldest first; `diff A B` compares two training manifests image
by image (added, removed, changed: boxes moved, added, deleted), streaming both.

The stack is read through CloudFormation (`ListStackResources`: the ledger table and the bucket),
then DynamoDB (`Query`, `GetItem`) and S3 (`GetObject`). The same code runs against the local stack:
`labelloop local datasets ...`, or this command after the `export` lines `labelloop local up` prints.
A and B of `diff` may also be manifest files or s3:// URIs, which need no stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labelloop_local.cli import add_command, aws_failure


class DatasetsError(Exception):
    """The command cannot go on; the message names the cause (printed on one line)."""


@dataclass(frozen=True)
class Clients:
    cloudformation: Any
    dynamodb: Any

    @classmethod
    def default(cls) -> Clients:
        import boto3

        return cls(boto3.client("cloudformation"), boto3.client("dynamodb"))


@dataclass(frozen=True)
class StackStores:
    stack: str
    table: str
    bucket: str


def stack_stores(cloudformation: Any, stack: str) -> StackStores:
    found: dict[str, str] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
        for resource in page["StackResourceSummaries"]:
            found[resource["LogicalResourceId"]] = resource.get("PhysicalResourceId", "")
    missing = [name for name in ("LedgerTable", "ImageBucket") if not found.get(name)]
    if missing:
        raise DatasetsError(f"stack {stack} has no {' or '.join(missing)}: is it a labelloop stack?")
    return StackStores(stack, found["LedgerTable"], found["ImageBucket"])


@dataclass(frozen=True)
class DatasetRow:
    """One training's dataset with the decision on the model trained from it."""

    record: Any  # labelloop_core.ledger.DatasetRecord
    decision: str | None  # PROMOTED | REJECTED | None (not decided yet)
    f1: float | None


def list_datasets(clients: Clients, stores: StackStores) -> list[DatasetRow]:
    from labelloop_core.adapters.ledger import TrainingLedger

    ledger = TrainingLedger(stores.table, clients.dynamodb)
    rows = []
    for record in ledger.datasets():
        decision = ledger.read_decision(record.version_name)
        f1 = decision.metrics.f1 if decision is not None and decision.metrics is not None else None
        rows.append(DatasetRow(record, decision.decision if decision else None, f1))
    return rows


# --- command line -----------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers, "datasets", "list every training's dataset of a deployed stack, or compare two", __doc__
    )
    add_commands(parser, stack_argument=True)


def add_commands(parser: argparse.ArgumentParser, stack_argument: bool, wrap: Any = None) -> None:
    """`list` and `diff` under `parser`; `wrap(function)` adapts them (e.g. to the local stack)."""
    actions = parser.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    listing = add_command(
        actions,
        "list",
        "show each training's dataset: version, manifest, hash, counts per label, human labels, F1",
    )
    diffing = add_command(
        actions,
        "diff",
        "compare two training datasets image by image",
        "A and B are version names (their training manifests, from the stack's ledger) or manifest files "
        "or s3:// URIs. Prints the images added, removed and changed between them; in a changed image, "
        "boxes of the same label overlapping by at least --iou count as moved, the others as added or "
        "deleted.",
    )
    if stack_argument:
        listing.add_argument("--stack", required=True, help="name of the deployed labelloop stack")
        diffing.add_argument("--stack", help="the deployed stack (needed when A or B is a version name)")
    diffing.add_argument("a", metavar="A", help="the older dataset: version name, manifest file or s3:// URI")
    diffing.add_argument("b", metavar="B", help="the newer dataset: version name, manifest file or s3:// URI")
    diffing.add_argument("--iou", type=float, default=0.3, help="least overlap for a box to count as moved")
    diffing.add_argument("--summary", action="store_true", help="print only the counts")
    for sub in (listing, diffing):
        sub.add_argument("--json", action="store_true", help="JSON on stdout (one object per line)")
    listing.set_defaults(func=wrap(_list) if wrap else _list)
    diffing.set_defaults(func=wrap(_diff) if wrap else _diff)


def _guarded(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; every failure becomes one line naming its cause, never a traceback."""
    from labelloop_local.cli.manifest import UsageError

    try:
        return command(args)
    except (DatasetsError, UsageError) as error:
        message = str(error)
    except Exception as error:
        failure = aws_failure(error)
        if failure is None:
            raise
        message = failure
    print(f"datasets {args.datasets_command} failed: {message}", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
    return _guarded(_print_list, args)


def _diff(args: argparse.Namespace) -> int:
    return _guarded(_print_diff, args)


def _print_list(args: argparse.Namespace) -> int:
    clients = Clients.default()
    rows = list_datasets(clients, stack_stores(clients.cloudformation, args.stack))
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row.record), "decision": row.decision, "f1": row.f1}, default=str))
        return 0
    table = [("VERSION", "STARTED", "IMAGES", "BOXES", "HUMAN LABELS", "F1", "SHA-256", "MANIFEST")]
    for row in rows:
        record = row.record
        f1 = "-" if row.f1 is None else f"{row.f1:.3f}"
        table.append(
            (
                record.version_name,
                record.started_at,
                f"{record.images:,}",
                f"{record.boxes:,}",
                f"{record.human_labels:,}",
                f"{f1} {(row.decision or 'undecided').lower()}",
                record.sha256[:12],
                record.manifest_key or f"({record.mode} mode: the TRAIN dataset)",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for index, line in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index:
            counts = rows[index - 1].record.per_label
            print(
                "    "
                + "; ".join(f"{label}: {c.images:,} images, {c.boxes:,} boxes" for label, c in counts.items())
            )
    print(f"{len(rows)} training dataset(s) of stack {args.stack}", file=sys.stderr)
    return 0


def _print_diff(args: argparse.Namespace) -> int:
    from labelloop_local.formats.diff import DiffSummary, diff

    if not 0 < args.iou <= 1:
        raise DatasetsError(f"--iou {args.iou}: an overlap between 0 (excluded) and 1")
    summary = DiffSummary()
    resolved = _Resolver(getattr(args, "stack", None))
    old, new = resolved.images(args.a), resolved.images(args.b)
    for change in diff(old, new, summary, args.iou):
        if args.summary:
            continue
        if args.json:
            print(json.dumps(asdict(change)))
        else:
            print(_describe(change))
    if resolved.problems.count:
        raise DatasetsError(f"{resolved.problems.count} invalid line(s) in the inputs (above)")
    counts = asdict(summary)
    if args.json:
        print(json.dumps({"summary": counts, "a": args.a, "b": args.b}))
    else:
        print(
            f"{args.a} ({summary.images_a:,} images) → {args.b} ({summary.images_b:,} images): "
            f"{summary.added:,} added, {summary.removed:,} removed, {summary.changed:,} changed "
            f"({summary.boxes_moved:,} boxes moved, {summary.boxes_added:,} added, "
            f"{summary.boxes_deleted:,} deleted), {summary.unchanged:,} unchanged"
        )
    return 0


def _describe(change: Any) -> str:
    if change.kind != "changed":
        sign = "+" if change.kind == "added" else "-"
        return f"{sign} {change.source_ref}  {change.kind} ({change.boxes} box(es))"
    counts = f"moved {len(change.moved)}, added {len(change.added)}, deleted {len(change.deleted)}"
    parts = [f"~ {change.source_ref}  {counts}"]
    if change.resized:
        (w0, h0), (w1, h1) = change.resized
        parts.append(f"    image size {w0}x{h0} → {w1}x{h1}")
    for old, new, overlap in change.moved:
        parts.append(f"    moved   {old.label}: {_box(old)} → {_box(new)} (IoU {overlap:.2f})")
    parts.extend(f"    added   {box.label}: {_box(box)}" for box in change.added)
    parts.extend(f"    deleted {box.label}: {_box(box)}" for box in change.deleted)
    return "\n".join(parts)


def _box(box: Any) -> str:
    return f"{box.width}x{box.height} at ({box.left}, {box.top})"


class _Resolver:
    """A or B as images: a manifest file, an s3:// URI, or a version name (through the stack)."""

    def __init__(self, stack: str | None) -> None:
        from labelloop_local.formats.groundtruth import Problems

        self.stack = stack
        self.problems = Problems()
        self._stores: StackStores | None = None
        self._clients: Clients | None = None

    def images(self, name: str) -> Iterator[Any]:
        from labelloop_local.cli.formats import _s3_lines, _s3_parts
        from labelloop_local.cli.manifest import read_json_lines
        from labelloop_local.formats.groundtruth import ClassIds, read_images, source_lines

        if name.startswith("s3://"):
            lines: Iterator[Any] = _s3_lines(*_s3_parts(name, name))
        elif Path(name).is_file():
            lines = source_lines(name, read_json_lines(Path(name)))
        else:
            lines = _s3_lines(self._bucket(), self._manifest_key(name))
        return read_images(lines, ClassIds(by_name=True), self.problems)

    def _bucket(self) -> str:
        return self._stack_stores().bucket

    def _stack_stores(self) -> StackStores:
        if self._stores is None:
            if not self.stack:
                raise DatasetsError("a version name needs --stack (or use a manifest file or s3:// URI)")
            self._clients = Clients.default()
            self._stores = stack_stores(self._clients.cloudformation, self.stack)
        return self._stores

    def _manifest_key(self, version_name: str) -> str:
        from labelloop_core.adapters.ledger import TrainingLedger

        stores = self._stack_stores()
        assert self._clients is not None
        record = TrainingLedger(stores.table, self._clients.dynamodb).read_dataset(version_name)
        if record is None:
            raise DatasetsError(
                f"{version_name}: no such file, and no training dataset of stack {self.stack}"
            )
        if not record.manifest_key:
            raise DatasetsError(
                f"{version_name} trained on the project's TRAIN dataset: no manifest to compare"
            )
        return record.manifest_key
