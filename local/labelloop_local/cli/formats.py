"""`labelloop manifest export|import`: Ground Truth lines to and from COCO, YOLO and Pascal VOC.

The converters are in `labelloop_local.formats` (pure, streaming); this module reads the inputs
(local files and folders, or s3:// URIs and prefixes through boto3), copies images on request, and
writes the output atomically: a temporary folder (or file) next to the target, renamed at the end,
so a failed conversion leaves nothing behind. Every problem is one line naming the file and the line
or element; by default any problem fails the conversion (`--skip-invalid` leaves the bad ones out).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labelloop_core.manifest import ClassMap
from labelloop_local.cli import add_command, aws_failure
from labelloop_local.cli.manifest import (
    DEFAULT_ATTRIBUTE,
    LABEL_FILE_SUFFIXES,
    UsageError,
    _atomic_output,
    _check_attribute,
    _class_map,
    _class_map_from_csv,
    expand_label_paths,
    json_file_lines,
    read_json_lines,
)
from labelloop_local.formats.groundtruth import (
    ClassIds,
    ConversionError,
    DatasetNames,
    ImportSettings,
    LabeledImage,
    Problems,
    SourceLine,
    read_images,
    source_lines,
    write_lines,
)

FORMATS = ("coco", "yolo", "voc")
IMAGE_FOLDERS = {"coco": "images", "yolo": "images", "voc": "JPEGImages"}


def register(actions: Any) -> None:
    """`export` and `import` under `labelloop manifest`."""
    export = add_command(
        actions,
        "export",
        "convert Ground Truth manifest lines to a COCO, YOLO or Pascal VOC dataset",
        "Reads manifests, label folders (such as a copy of the bucket's labels/) or s3:// prefixes and "
        "writes the folder OUT: COCO annotations.json; YOLO data.yaml, labels/*.txt and image-sources.csv; "
        "or VOC Annotations/*.xml. Images are named by their file name (--keep-paths: their S3 key); "
        "--images copies them in, otherwise the files reference the source-refs. Every line is "
        "validated as the merge validates; any problem fails the export and nothing is written, unless "
        "--skip-invalid.",
    )
    export.add_argument(
        "inputs", nargs="+", metavar="MANIFEST_OR_DIR", help="manifest files, label folders or s3:// URIs"
    )
    export.add_argument("--format", required=True, choices=FORMATS, help="dataset format to write")
    export.add_argument("-o", "--output", required=True, type=Path, metavar="OUT", help="folder to create")
    export.add_argument(
        "--images",
        metavar="DIR_OR_S3_PREFIX",
        help="copy each image from here (a folder or s3:// prefix + the image's name) into the dataset",
    )
    export.add_argument(
        "--keep-paths", action="store_true", help="name images by their S3 key instead of their file name"
    )
    export.add_argument(
        "--voc-origin", type=int, choices=(1, 0), default=1, help="VOC corner numbering: 1 (devkit) or 0"
    )
    _add_label_options(export, "the class ids of the Ground Truth lines")
    export.add_argument(
        "--skip-invalid", action="store_true", help="leave invalid lines out instead of failing"
    )
    export.set_defaults(func=run_export)

    importing = add_command(
        actions,
        "import",
        "convert a COCO, YOLO or Pascal VOC dataset to Ground Truth manifest lines",
        "INPUT is a COCO annotations.json (or its folder), a YOLO dataset folder (or its data.yaml), or "
        "Pascal VOC XML files or folders. Each image becomes one line with source-ref = --source-prefix + "
        "the image's name in the dataset, class ids from the stack's Labels order (--stack) or "
        "--labels-list (default: the dataset's own order); every line is validated as the merge "
        "validates. Any problem fails the import and nothing is written, unless --skip-invalid.",
    )
    importing.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="dataset file(s) or folder")
    importing.add_argument("--format", required=True, choices=FORMATS, help="dataset format to read")
    importing.add_argument(
        "--source-prefix",
        required=True,
        metavar="s3://BUCKET/PREFIX/",
        help="where the images are (or will be) in S3; the image's name in the dataset is appended",
    )
    importing.add_argument(
        "-o", "--output", required=True, type=Path, metavar="OUT", help="manifest to write"
    )
    importing.add_argument(
        "--voc-origin", type=int, choices=(1, 0), default=1, help="VOC corner numbering: 1 (devkit) or 0"
    )
    _add_label_options(importing, "the dataset's own order")
    importing.add_argument(
        "--attribute",
        metavar="NAME",
        help=f"label attribute of the written lines (default: the stack's, else {DEFAULT_ATTRIBUTE})",
    )
    importing.add_argument(
        "--skip-invalid", action="store_true", help="leave invalid images out instead of failing"
    )
    importing.set_defaults(func=run_import)


def _add_label_options(parser: argparse.ArgumentParser, default: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--labels-list", metavar='"a,b"', help=f"label names in class-id order (default: {default})"
    )
    group.add_argument(
        "--stack",
        metavar="NAME",
        help="take the labels (and attribute) from this deployed stack's parameters",
    )


# --- export ----------------------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    problems = Problems()
    try:
        labels, _ = _labels_of(args)
        class_ids = ClassIds(labels)
        inputs = [_Input.parse(text) for text in args.inputs]
        copier = _ImageCopier.parse(args.images) if args.images else None
        names = DatasetNames(args.keep_paths, by_stem=args.format != "coco")
        with _atomic_folder(args.output) as folder:
            writer = _writer(args, folder)
            try:
                for image in read_images(_all_lines(inputs), class_ids, problems):
                    reason = names.assign(image) or _yolo_name_problem(args.format, image)
                    if reason is None and copier is not None:
                        reason = copier.copy(image, folder / IMAGE_FOLDERS[args.format] / image.name)
                    if reason is not None:
                        problems.add(image.where, reason)
                        continue
                    writer.add(image, class_ids)
                _fail_on(problems, args.skip_invalid, "export")
                writer.finish(class_ids)
            finally:
                writer.close()
    except (UsageError, ConversionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    labels_text = ", ".join(f"{i}={name}" for i, name in class_ids.ordered()) or "none"
    copied = " (images copied)" if copier else " (images referenced by source-ref)"
    counts = f"{writer.images:,} image(s), {writer.boxes:,} box(es)"
    print(f"exported {counts} as {args.format} to {args.output}{copied}")
    print(f"  labels: {labels_text}")
    if problems.count:
        print(f"  left out: {problems.count:,} invalid input(s) (--skip-invalid)")
    return 0


def _writer(args: argparse.Namespace, folder: Path) -> Any:
    from labelloop_local.formats import coco, voc, yolo

    if args.format == "coco":
        return coco.CocoWriter(folder, f"exported by labelloop from {', '.join(args.inputs)}")
    if args.format == "yolo":
        return yolo.YoloWriter(folder)
    return voc.VocWriter(folder, origin=args.voc_origin)


def _yolo_name_problem(format_name: str, image: LabeledImage) -> str | None:
    if format_name == "yolo" and "images" in image.name.split("/")[:-1]:
        return (
            f"its name {image.name!r} has an images/ folder, which Ultralytics would take for the dataset's"
        )
    return None


def _fail_on(problems: Problems, skip_invalid: bool, what: str) -> None:
    if problems.count and not skip_invalid:
        raise ConversionError(
            f"{problems.count:,} problem(s) in the inputs (above); nothing written "
            f"(--skip-invalid to {what} the rest)"
        )


class _Input:
    """A manifest file, a folder of label files, or an s3:// object or prefix."""

    def __init__(self, text: str, path: Path | None, bucket: str | None, key: str) -> None:
        self.text, self.path, self.bucket, self.key = text, path, bucket, key

    @classmethod
    def parse(cls, text: str) -> _Input:
        if text.startswith("s3://"):
            bucket, key = _s3_parts(text, text)
            return cls(text, None, bucket, key)
        path = Path(text)
        if not path.exists():
            raise UsageError(f"{text}: no such file or folder")
        return cls(text, path, None, "")

    def lines(self) -> Iterator[SourceLine]:
        if self.path is not None:
            for file in expand_label_paths([self.path]):
                yield from source_lines(str(file), read_json_lines(file))
            return
        assert self.bucket is not None
        yield from _s3_lines(self.bucket, self.key)


def _s3_parts(uri: str, what: str) -> tuple[str, str]:
    """(bucket, key or prefix) of an s3:// URI."""
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise UsageError(f"{what}: an S3 location is s3://BUCKET/KEY or s3://BUCKET/PREFIX/")
    return bucket, key


def _all_lines(inputs: Iterable[_Input]) -> Iterator[SourceLine]:
    for source in inputs:
        yield from source.lines()


def _s3_lines(bucket: str, key: str) -> Iterator[SourceLine]:
    """The lines of one object, or of every *.json / *.manifest object under a prefix (in key order)."""
    s3 = _s3()
    keys = [key] if key and not key.endswith("/") and _exists(s3, bucket, key) else None
    if keys is None:
        keys = [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            for item in page.get("Contents", [])
            if item["Key"].endswith(LABEL_FILE_SUFFIXES)
        ]
        if not keys:
            raise UsageError(
                f"s3://{bucket}/{key}: no such object, and no *.json or *.manifest objects below it"
            )
    for name in keys:
        uri = f"s3://{bucket}/{name}"
        body = _call(lambda name=name: s3.get_object(Bucket=bucket, Key=name)["Body"], uri)
        if name.endswith(".json"):
            yield from source_lines(uri, json_file_lines(body.read().decode("utf-8")))
        else:
            yield from source_lines(uri, (raw.decode("utf-8") for raw in body.iter_lines(chunk_size=1 << 20)))


def _exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise UsageError(f"s3://{bucket}/{key}: {_aws_message(error)}") from None
    return True


class _ImageCopier:
    """Copies an image from a folder or an S3 prefix (+ the image's name in the dataset)."""

    def __init__(self, folder: Path | None, bucket: str | None, prefix: str) -> None:
        self.folder, self.bucket, self.prefix = folder, bucket, prefix

    @classmethod
    def parse(cls, text: str) -> _ImageCopier:
        if text.startswith("s3://"):
            bucket, prefix = _s3_parts(text, f"--images {text}")
            return cls(None, bucket, prefix)
        folder = Path(text)
        if not folder.is_dir():
            raise UsageError(f"--images {text}: not a folder")
        return cls(folder, None, "")

    def copy(self, image: LabeledImage, target: Path) -> str | None:
        """Copy the image to `target`; the reason it could not be copied, or None."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.folder is not None:
            source = self.folder / image.name
            try:
                shutil.copyfile(source, target)
            except OSError as exc:
                return f"image {source}: {exc.strerror or exc}"
            return None
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix + image.name
        try:
            _s3().download_file(self.bucket, key, str(target))
        except (BotoCoreError, ClientError) as error:
            return f"image s3://{self.bucket}/{key}: {_aws_message(error)}"
        return None


# --- import ----------------------------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> int:
    problems = Problems()
    try:
        prefix = _source_prefix(args.source_prefix)
        labels, stack_attribute = _labels_of(args)
        attribute = args.attribute or stack_attribute or DEFAULT_ATTRIBUTE
        _check_attribute(attribute)
        if args.output.is_dir():
            raise UsageError(f"-o {args.output}: is a folder; give the manifest file to write")
        dataset_names, images = _dataset(args, problems, prefix)
        class_map = labels or _class_map(list(dataset_names))
        for name in dataset_names:
            if name not in class_map:
                problems.add(
                    f"{args.inputs[0]}: category {name!r}", f"not one of the labels {list(class_map.labels)}"
                )
        _fail_on(problems, args.skip_invalid, "import")  # unknown categories: nothing to convert yet
        settings = ImportSettings(
            class_map, attribute, prefix, f"labelloop-import/{args.format}", datetime.now(UTC)
        )
        with _atomic_output(args.output) as out:
            written = write_lines(images, settings, out, problems)
            _fail_on(problems, args.skip_invalid, "import")
    except (UsageError, ConversionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    print(f"imported {written:,} image(s) from {args.format} to {args.output} (attribute '{attribute}')")
    print("  labels: " + ", ".join(f"{i}={name}" for i, name in enumerate(class_map.labels)))
    if problems.count:
        print(f"  left out: {problems.count:,} invalid input(s) (--skip-invalid)")
    return 0


def _dataset(
    args: argparse.Namespace, problems: Problems, prefix: str
) -> tuple[list[str], Iterator[LabeledImage]]:
    """The dataset's label names (its own class order) and its images."""
    from labelloop_local.formats import coco, voc, yolo

    if args.format == "voc":
        voc_files = voc.VocDataset(args.inputs, problems, origin=args.voc_origin)
        return voc_files.names(), voc_files.images(prefix)
    if len(args.inputs) != 1:
        raise UsageError(f"--format {args.format} reads one dataset; got {len(args.inputs)} inputs")
    path = args.inputs[0]
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if args.format == "coco":
        document = coco.CocoDataset(path / coco.FILE_NAME if path.is_dir() else path, problems)
        return list(document.categories.values()), document.images(prefix)
    dataset = yolo.YoloDataset(path, problems)
    return list(dataset.names.values()), dataset.images(prefix)


def _source_prefix(text: str) -> str:
    bucket = text[5:].split("/", 1)[0] if text.startswith("s3://") else ""
    if not bucket or "/" not in text[5:]:
        raise UsageError(f"--source-prefix {text!r}: expected s3://BUCKET/ or s3://BUCKET/PREFIX/")
    return text


# --- shared -------------------------------------------------------------------------------------


def _labels_of(args: argparse.Namespace) -> tuple[ClassMap | None, str | None]:
    """(labels in class-id order or None, the stack's label attribute or None)."""
    if args.labels_list:
        return _class_map_from_csv(args.labels_list), None
    if args.stack:
        parameters = _stack_parameters(args.stack)
        if not parameters.get("Labels"):
            raise UsageError(f"stack {args.stack} has no Labels parameter: is it a labelloop stack?")
        try:
            labels = ClassMap.from_csv(parameters["Labels"])
        except ValueError as exc:
            raise UsageError(f"stack {args.stack} Labels: {exc}") from None
        return labels, parameters.get("LabelAttribute")
    return None, None


def _stack_parameters(stack: str) -> dict[str, str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except (BotoCoreError, ClientError) as error:
        raise UsageError(f"stack {stack}: {_aws_message(error)}") from None
    return {
        p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue", "")
        for p in described.get("Parameters", [])
    }


def _s3() -> Any:
    import boto3

    return boto3.client("s3")


def _call(function: Any, uri: str) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return function()
    except (BotoCoreError, ClientError) as error:
        raise UsageError(f"{uri}: {_aws_message(error)}") from None


def _aws_message(error: BaseException) -> str:
    return aws_failure(error) or " ".join(str(error).split()) or type(error).__name__


@contextmanager
def _atomic_folder(path: Path) -> Iterator[Path]:
    """A temporary folder next to `path`, renamed to it at the end: never a half-written dataset."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"-o {path}: already exists and is not an empty folder; remove it or choose another")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"-o {path}: the folder {parent} does not exist")
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield temporary
        if path.exists():
            path.rmdir()
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
