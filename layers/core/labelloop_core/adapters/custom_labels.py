"""Rekognition Custom Labels project lifecycle: datasets, training, evaluation, start/stop.

One `CustomLabels` object per project. The boto3 client is injectable (tests stub it); by default
it is the shared lazy client, so importing this module makes no AWS call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.errors import LabelloopError, TransientError
from labelloop_core.naming import version_name_from_arn
from labelloop_core.ports import ProjectVersion, S3Location

MAX_CHANGES_BYTES = 5 * 1024 * 1024  # UpdateDatasetEntries: GroundTruth blob ≤ 5,242,880 bytes
MAX_VERSION_NAMES = 10  # DescribeProjectVersions accepts at most 10 VersionNames per call
_DATASET_READY = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
_DATASET_BUSY = {"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"}


class DatasetEntryTooLarge(LabelloopError):
    """One manifest line alone exceeds the UpdateDatasetEntries size limit."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(
            f"dataset entry {name} is {size} bytes, more than the {MAX_CHANGES_BYTES} allowed per call"
        )
        self.name = name
        self.size = size


class DatasetNotReady(LabelloopError):
    """The dataset failed or stayed busy; its entries cannot be changed or trained on now."""


def chunk_entries(lines: Iterable[str], limit: int = MAX_CHANGES_BYTES) -> Iterator[bytes]:
    """Newline-joined JSON lines in blobs of at most `limit` bytes, never splitting a line.

    A line that alone exceeds the limit raises DatasetEntryTooLarge naming its source-ref.
    """
    parts: list[bytes] = []
    size = 0
    for line in lines:
        encoded = line.strip().encode("utf-8")
        if not encoded:
            continue
        if len(encoded) > limit:
            raise DatasetEntryTooLarge(_entry_name(encoded), len(encoded))
        added = len(encoded) + (1 if parts else 0)
        if parts and size + added > limit:
            yield b"\n".join(parts)
            parts, size, added = [], 0, len(encoded)
        parts.append(encoded)
        size += added
    if parts:
        yield b"\n".join(parts)


def _entry_name(encoded: bytes) -> str:
    try:
        return str(json.loads(encoded)["source-ref"])
    except (ValueError, KeyError, TypeError):
        return f"starting {encoded[:80]!r}"


class CustomLabelsProject:
    """Adapter for one Custom Labels project (`PROJECT_ARN`)."""

    def __init__(
        self,
        project_arn: str,
        client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        poll_seconds: float = 5.0,
        dataset_timeout_seconds: float = 300.0,
    ) -> None:
        self.project_arn = project_arn
        self._client = client
        self._sleep = sleep
        self._poll_seconds = poll_seconds
        self._dataset_timeout_seconds = dataset_timeout_seconds
        self._project_arns: dict[str, str] = {self.project_name: project_arn}  # by project name

    client = LazyClient("rekognition")

    @property
    def project_name(self) -> str:
        """`arn:...:project/<name>/<timestamp>` → `<name>`."""
        return self.project_arn.split(":project/", 1)[-1].split("/", 1)[0]

    def datasets(self) -> dict[str, str]:
        """DatasetArn by DatasetType (TRAIN/TEST) of the project; empty when it has none."""
        response = self._call("describe_projects", ProjectNames=[self.project_name])
        for project in response.get("ProjectDescriptions", []):
            if project.get("ProjectArn") == self.project_arn:
                return {item["DatasetType"]: item["DatasetArn"] for item in project.get("Datasets", [])}
        raise LabelloopError(f"Custom Labels project {self.project_arn} not found")

    def update_dataset_entries(self, dataset_arn: str, lines: Iterable[str]) -> int:
        """Send the lines in ≤5 MB calls, waiting for each update to finish; returns the call count."""
        calls = 0
        for blob in chunk_entries(lines):
            self.wait_for_dataset(dataset_arn)
            self._call("update_dataset_entries", DatasetArn=dataset_arn, Changes={"GroundTruth": blob})
            calls += 1
        if calls:
            self.wait_for_dataset(dataset_arn)
        return calls

    def wait_for_dataset(self, dataset_arn: str) -> None:
        """Rekognition rejects changes and training while a dataset is still being created or updated."""
        waited = 0.0
        while True:
            description = self._call("describe_dataset", DatasetArn=dataset_arn)["DatasetDescription"]
            status = description.get("Status", "")
            if status in _DATASET_READY:
                return
            if status not in _DATASET_BUSY:
                message = description.get("StatusMessage", "")
                raise DatasetNotReady(f"dataset {dataset_arn} is {status}: {message}")
            if waited >= self._dataset_timeout_seconds:
                raise TransientError(f"dataset {dataset_arn} still {status} after {waited:.0f} s")
            self._sleep(self._poll_seconds)
            waited += self._poll_seconds

    def create_version(
        self,
        version_name: str,
        output: S3Location,
        training_manifest: S3Location | None,
        test_manifest: S3Location | None = None,
    ) -> str:
        """Start training; manifest mode when `training_manifest` is given, else the project's datasets.

        In manifest mode the version is evaluated on `test_manifest` when given (a fixed test set,
        so versions compare fairly), else on a test split Rekognition auto-creates (20%).
        A version that already exists under this name (a retried attempt that crashed after
        creating it) is adopted instead of failing.
        """
        if test_manifest is not None and training_manifest is None:
            raise ValueError("a test manifest needs a training manifest (dataset mode uses the TEST dataset)")
        request: dict[str, Any] = {
            "ProjectArn": self.project_arn,
            "VersionName": version_name,
            "OutputConfig": {"S3Bucket": output.bucket, "S3KeyPrefix": output.key},
        }
        if training_manifest is not None:
            request["TrainingData"] = {"Assets": [_manifest_asset(training_manifest)]}
            request["TestingData"] = (
                {"Assets": [_manifest_asset(test_manifest)]} if test_manifest else {"AutoCreate": True}
            )
        try:
            return str(self._call("create_project_version", **request)["ProjectVersionArn"])
        except Exception as error:
            if aws_errors.error_code(error) != aws_errors.RESOURCE_IN_USE:
                raise
            existing = self.describe_versions([version_name])
            if version_name not in existing:
                raise
            return existing[version_name].arn

    def describe_versions(self, version_names: Sequence[str]) -> dict[str, ProjectVersion]:
        """ProjectVersion by version name, asking ≤10 names per call and following NextToken."""
        found: dict[str, ProjectVersion] = {}
        names = list(dict.fromkeys(version_names))
        for start in range(0, len(names), MAX_VERSION_NAMES):
            request: dict[str, Any] = {
                "ProjectArn": self.project_arn,
                "VersionNames": names[start : start + MAX_VERSION_NAMES],
            }
            while True:
                response = self._call("describe_project_versions", **request)
                for description in response.get("ProjectVersionDescriptions", []):
                    version = _project_version(description)
                    found[version.name] = version
                token = response.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
        return found

    def describe_version(self, version_arn: str) -> ProjectVersion | None:
        """The version with this ARN, or None when the project has no such version."""
        version = self.describe_versions([version_name_from_arn(version_arn)]).get(
            version_name_from_arn(version_arn)
        )
        return version if version is not None and version.arn == version_arn else None

    def status_of(self, version_arn: str) -> ProjectVersion | None:
        """The version with this ARN in whichever project it belongs to (the model a stack starts
        with may come from another project); None when there is no such version."""
        name = _project_name_of(version_arn)
        project_arn = self._project_arns.get(name)
        if project_arn is None:
            response = self._call("describe_projects", ProjectNames=[name])
            found = [p["ProjectArn"] for p in response.get("ProjectDescriptions", [])]
            if not found:
                return None
            project_arn = self._project_arns[name] = str(found[0])
        version_name = version_name_from_arn(version_arn)
        response = self._call(
            "describe_project_versions", ProjectArn=project_arn, VersionNames=[version_name]
        )
        for description in response.get("ProjectVersionDescriptions", []):
            if description.get("ProjectVersionArn") == version_arn:
                return _project_version(description)
        return None

    def start_version(
        self, version_arn: str, min_inference_units: int, max_inference_units: int | None = None
    ) -> str:
        """Start hosting (auto-scaling up to `max_inference_units` when given); a version already
        starting or running is left as it is."""
        request: dict[str, Any] = {
            "ProjectVersionArn": version_arn,
            "MinInferenceUnits": min_inference_units,
        }
        if max_inference_units is not None:
            request["MaxInferenceUnits"] = max_inference_units
        try:
            response = self._call("start_project_version", **request)
            return str(response.get("Status", "STARTING"))
        except Exception as error:
            if aws_errors.error_code(error) != aws_errors.RESOURCE_IN_USE:
                raise
            current = self.describe_version(version_arn)
            if current is None or current.status not in {"STARTING", "RUNNING"}:
                raise
            return current.status

    def stop_version(self, version_arn: str) -> str:
        """Stop hosting; a version already stopped, stopping or gone counts as stopped."""
        try:
            return str(
                self._call("stop_project_version", ProjectVersionArn=version_arn).get("Status", "STOPPING")
            )
        except Exception as error:
            code = aws_errors.error_code(error)
            if code == aws_errors.RESOURCE_NOT_FOUND:
                return "STOPPED"
            if code != aws_errors.RESOURCE_IN_USE:
                raise
            current = self.describe_version(version_arn)
            if current is None:
                return "STOPPED"
            if current.status in {"RUNNING", "STARTING"}:
                raise
            return current.status

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except Exception as error:
            if aws_errors.is_retryable(error):
                raise aws_errors.retry_later(error, f"Rekognition {operation} failed: {error}") from error
            raise
        return response


def _project_name_of(version_arn: str) -> str:
    """`arn:...:project/<name>/version/<version>/<timestamp>` → `<name>`."""
    return version_arn.split(":project/", 1)[-1].split("/", 1)[0]


def _manifest_asset(manifest: S3Location) -> dict[str, Any]:
    return {"GroundTruthManifest": {"S3Object": manifest.as_s3_object()}}


def _project_version(description: dict[str, Any]) -> ProjectVersion:
    evaluation = description.get("EvaluationResult") or {}
    summary_object = (evaluation.get("Summary") or {}).get("S3Object")
    summary = (
        S3Location(summary_object["Bucket"], summary_object["Name"], summary_object.get("Version"))
        if summary_object
        else None
    )
    f1 = evaluation.get("F1Score")
    min_units, max_units = description.get("MinInferenceUnits"), description.get("MaxInferenceUnits")
    return ProjectVersion(
        arn=description["ProjectVersionArn"],
        status=description.get("Status", ""),
        status_message=description.get("StatusMessage", ""),
        f1_score=float(f1) if f1 is not None else None,
        summary=summary,
        min_units=int(min_units) if min_units is not None else None,
        max_units=int(max_units) if max_units is not None else None,
    )
