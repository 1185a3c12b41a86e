"""Local Amazon Rekognition Custom Labels (JSON 1.1, `X-Amz-Target: RekognitionService.<Operation>`).

Projects, TRAIN/TEST datasets, project versions trained in a background thread with the project's
CPU detector (`labelloop_local.emulators.detector`), evaluation summaries in Rekognition's format
written to the version's OutputConfig, start/stop with the real status sequence and DetectCustomLabels
with AWS's image checks. Asynchronous work (dataset import/update, training, start, stop) shows the same
intermediate statuses as AWS, so callers must poll as they would in the cloud.

The real service's constraints are emulated: a RUNNING model serves at most
`tps_per_inference_unit` × its inference units DetectCustomLabels calls per second (a token bucket
holding one second's worth; beyond it `ProvisionedThroughputExceededException`), and starting and
stopping take `start_seconds` and `stop_seconds` (minutes on AWS).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from labelloop_local.emulators import groundtruth
from labelloop_local.emulators.common import (
    ACCOUNT_ID,
    AwsEndpoints,
    AwsError,
    JsonStore,
    epoch,
    now,
    parse_iso,
    parse_s3_uri,
    require_str,
)

LOG = logging.getLogger(__name__)

NAME_PATTERN = r"[a-zA-Z0-9_.\-]{1,255}"
MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
MAX_INLINE_IMAGE_BYTES = 4 * 1024 * 1024
MIN_SIDE, MAX_SIDE, MAX_ASPECT = 64, 4096, 20.0
MAX_GROUND_TRUTH_BYTES = 5 * 1024 * 1024
# Images are scaled to this longest side before training and detection: boxes come back as ratios,
# so the answer does not change, and 4000x2667 photos do not each cost 30 MB of RAM while training.
WORKING_SIDE = 1024
TEST_FRACTION = 0.2
BAD = "InvalidParameterException"


class RekognitionService:
    def __init__(
        self,
        data_dir: Path,
        region: str,
        aws: AwsEndpoints,
        transition_seconds: float,
        detector: Any = None,
        *,
        start_seconds: float | None = None,
        stop_seconds: float | None = None,
        tps_per_inference_unit: float | None = None,
    ) -> None:
        """`tps_per_inference_unit` None: unlimited throughput; `start_seconds`/`stop_seconds` None:
        `transition_seconds`."""
        self.region = region
        self._aws = aws
        self._start = timedelta(seconds=transition_seconds if start_seconds is None else start_seconds)
        self._stop = timedelta(seconds=transition_seconds if stop_seconds is None else stop_seconds)
        self.throughput = Throughput(tps_per_inference_unit)
        self._models_dir = data_dir / "models"
        self.store = JsonStore(
            data_dir / "rekognition.json", lambda: {"projects": {}, "datasets": {}, "versions": {}}
        )
        self._detector_module = detector
        self._models: dict[str, Any] = {}
        self._models_lock = threading.Lock()
        self._training_slot = threading.Semaphore(1)  # 2 cores: one training at a time, the rest queue
        self._clients_lock = threading.Lock()
        self._s3_client: Any = None
        self.operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateProject": self.create_project,
            "DescribeProjects": self.describe_projects,
            "DeleteProject": self.delete_project,
            "CreateDataset": self.create_dataset,
            "DescribeDataset": self.describe_dataset,
            "DeleteDataset": self.delete_dataset,
            "UpdateDatasetEntries": self.update_dataset_entries,
            "ListDatasetEntries": self.list_dataset_entries,
            "DistributeDatasetEntries": self.distribute_dataset_entries,
            "CreateProjectVersion": self.create_project_version,
            "DescribeProjectVersions": self.describe_project_versions,
            "DeleteProjectVersion": self.delete_project_version,
            "StartProjectVersion": self.start_project_version,
            "StopProjectVersion": self.stop_project_version,
            "DetectCustomLabels": self.detect_custom_labels,
        }

    @property
    def detector(self) -> Any:
        if self._detector_module is None:
            from labelloop_local.emulators import detector

            self._detector_module = detector
        return self._detector_module

    @property
    def s3(self) -> Any:
        with self._clients_lock:
            if self._s3_client is None:
                self._s3_client = self._aws.client("s3")
            return self._s3_client

    def resume(self) -> None:
        """After a restart, finish the asynchronous work the previous process left in progress."""
        with self.store.lock:
            datasets = [
                arn for arn, ds in self.store.data["datasets"].items() if ds["status"].endswith("IN_PROGRESS")
            ]
            versions = [
                arn for arn, v in self.store.data["versions"].items() if v["status"] == "TRAINING_IN_PROGRESS"
            ]
        for arn in datasets:
            self._spawn(self._run_dataset_job, arn)
        for arn in versions:
            self._spawn(self._run_training, arn)

    def _spawn(self, target: Callable[[str], None], arn: str) -> None:
        threading.Thread(target=target, args=(arn,), name=f"{target.__name__}:{arn}", daemon=True).start()

    # -- projects -------------------------------------------------------------------------------
    def create_project(self, body: dict[str, Any]) -> dict[str, Any]:
        name = require_str(body, "ProjectName", NAME_PATTERN, 255, BAD)
        if body.get("Feature", "CUSTOM_LABELS") != "CUSTOM_LABELS":
            raise AwsError(BAD, "Only the CUSTOM_LABELS feature is available locally")
        with self.store.lock:
            if any(p["name"] == name for p in self.store.data["projects"].values()):
                raise AwsError("ResourceInUseException", f"A project named {name} already exists")
            arn = f"arn:aws:rekognition:{self.region}:{ACCOUNT_ID}:project/{name}/{_millis()}"
            self.store.data["projects"][arn] = {"name": name, "created": now().isoformat(), "datasets": {}}
            self.store.save()
        return {"ProjectArn": arn}

    def describe_projects(self, body: dict[str, Any]) -> dict[str, Any]:
        names = body.get("ProjectNames")
        if names is not None and (not isinstance(names, list) or not 1 <= len(names) <= 10):
            raise AwsError(BAD, "ProjectNames must list 1-10 names")
        with self.store.lock:
            projects = [
                (arn, dict(p))
                for arn, p in self.store.data["projects"].items()
                if names is None or p["name"] in names
            ]
            projects.sort(key=lambda item: item[1]["created"], reverse=True)
            start, size = _page(body)
            page = [self._project_description(arn, p) for arn, p in projects[start : start + size]]
        response: dict[str, Any] = {"ProjectDescriptions": page}
        if start + size < len(projects):
            response["NextToken"] = str(start + size)
        return response

    def _project_description(self, arn: str, project: dict[str, Any]) -> dict[str, Any]:
        datasets = []
        for dataset_type, dataset_arn in sorted(project["datasets"].items()):
            ds = self.store.data["datasets"][dataset_arn]
            datasets.append(
                {
                    "CreationTimestamp": epoch(parse_iso(ds["created"])),
                    "DatasetType": dataset_type,
                    "DatasetArn": dataset_arn,
                    "Status": ds["status"],
                    "StatusMessage": ds["status_message"],
                    "StatusMessageCode": ds["status_code"],
                }
            )
        return {
            "ProjectArn": arn,
            "CreationTimestamp": epoch(parse_iso(project["created"])),
            "Status": "CREATED",
            "Datasets": datasets,
            "Feature": "CUSTOM_LABELS",
        }

    def delete_project(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "ProjectArn", None, 2048, BAD)
        with self.store.lock:
            project = self._project(arn)
            if project["datasets"]:
                raise AwsError("ResourceInUseException", f"Delete the datasets of {arn} before the project")
            if any(v["project_arn"] == arn for v in self.store.data["versions"].values()):
                raise AwsError(
                    "ResourceInUseException", f"Delete the model versions of {arn} before the project"
                )
            del self.store.data["projects"][arn]
            self.store.save()
        return {"Status": "DELETING"}

    def _project(self, arn: str) -> dict[str, Any]:
        project = self.store.data["projects"].get(arn)
        if project is None:
            raise AwsError("ResourceNotFoundException", f"Project {arn} does not exist")
        return dict(project)

    # -- datasets -------------------------------------------------------------------------------
    def create_dataset(self, body: dict[str, Any]) -> dict[str, Any]:
        project_arn = require_str(body, "ProjectArn", None, 2048, BAD)
        dataset_type = body.get("DatasetType")
        if dataset_type not in ("TRAIN", "TEST"):
            raise AwsError(BAD, f"DatasetType must be TRAIN or TEST, got {dataset_type!r}")
        source = body.get("DatasetSource") or {}
        manifest = (source.get("GroundTruthManifest") or {}).get("S3Object")
        source_arn = source.get("DatasetArn")
        if manifest is not None and source_arn is not None:
            raise AwsError(BAD, "DatasetSource takes either GroundTruthManifest or DatasetArn, not both")
        if manifest is not None:
            _s3_object(manifest, "DatasetSource.GroundTruthManifest.S3Object")
        with self.store.lock:
            project = self._project(project_arn)
            if dataset_type in project["datasets"]:
                raise AwsError(
                    "ResourceAlreadyExistsException", f"Project already has a {dataset_type} dataset"
                )
            if source_arn is not None and source_arn not in self.store.data["datasets"]:
                raise AwsError("ResourceNotFoundException", f"Dataset {source_arn} does not exist")
            arn = f"{project_arn.rsplit('/', 1)[0]}/dataset/{dataset_type.lower()}/{_millis()}"
            self.store.data["datasets"][arn] = {
                "project_arn": project_arn,
                "type": dataset_type,
                "created": now().isoformat(),
                "updated": now().isoformat(),
                "status": "CREATE_IN_PROGRESS" if (manifest or source_arn) else "CREATE_COMPLETE",
                "status_message": "Dataset creation in progress." if (manifest or source_arn) else "",
                "status_code": "SUCCESS",
                "entries": {},
                "job": {"manifest": manifest, "source_arn": source_arn} if (manifest or source_arn) else None,
            }
            self.store.data["projects"][project_arn]["datasets"][dataset_type] = arn
            self.store.save()
        if manifest or source_arn:
            self._spawn(self._run_dataset_job, arn)
        return {"DatasetArn": arn}

    def describe_dataset(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            ds = self._dataset(require_str(body, "DatasetArn", None, 2048, BAD))
            entries = ds["entries"].values()
            labels = set()
            labeled = errors = 0
            for entry in entries:
                if entry["errors"]:
                    errors += 1
                    continue
                labeled += 1
                labels.update(entry["labels"])
            return {
                "DatasetDescription": {
                    "CreationTimestamp": epoch(parse_iso(ds["created"])),
                    "LastUpdatedTimestamp": epoch(parse_iso(ds["updated"])),
                    "Status": ds["status"],
                    "StatusMessage": ds["status_message"],
                    "StatusMessageCode": ds["status_code"],
                    "DatasetStats": {
                        "LabeledEntries": labeled,
                        "TotalEntries": len(ds["entries"]),
                        "TotalLabels": len(labels),
                        "ErrorEntries": errors,
                    },
                }
            }

    def delete_dataset(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "DatasetArn", None, 2048, BAD)
        with self.store.lock:
            ds = self._dataset(arn)
            if ds["status"].endswith("IN_PROGRESS"):
                raise AwsError("ResourceInUseException", f"Dataset {arn} is {ds['status']}")
            del self.store.data["datasets"][arn]
            self.store.data["projects"][ds["project_arn"]]["datasets"].pop(ds["type"], None)
            self.store.save()
        return {}

    def update_dataset_entries(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "DatasetArn", None, 2048, BAD)
        blob = (body.get("Changes") or {}).get("GroundTruth")
        if not isinstance(blob, str):
            raise AwsError(BAD, "Changes.GroundTruth is required")
        try:
            data = base64.b64decode(blob, validate=True)
        except ValueError as error:
            raise AwsError(BAD, "Changes.GroundTruth is not base64-encoded bytes") from error
        if not data or len(data) > MAX_GROUND_TRUTH_BYTES:
            raise AwsError(
                BAD, f"Changes.GroundTruth must be 1-{MAX_GROUND_TRUTH_BYTES} bytes, got {len(data)}"
            )
        lines = _json_lines(data)
        with self.store.lock:
            ds = self._dataset(arn)
            if ds["status"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_FAILED"):
                raise AwsError(
                    "ResourceInUseException", f"Dataset {arn} is {ds['status']}; wait for it to finish"
                )
            live = self.store.data["datasets"][arn]
            live.update(status="UPDATE_IN_PROGRESS", status_message="Dataset update in progress.")
            live["job"] = {"lines": lines}
            self.store.save()
        self._spawn(self._run_dataset_job, arn)
        return {}

    def list_dataset_entries(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "DatasetArn", None, 2048, BAD)
        with self.store.lock:
            ds = self._dataset(arn)
            if ds["status"].endswith("IN_PROGRESS"):
                raise AwsError("ResourceNotReadyException", f"Dataset {arn} is {ds['status']}")
            entries = [entry for _, entry in sorted(ds["entries"].items()) if _entry_matches(entry, body)]
        start, size = _page(body)
        response: dict[str, Any] = {
            "DatasetEntries": [entry["line"] for entry in entries[start : start + size]]
        }
        if start + size < len(entries):
            response["NextToken"] = str(start + size)
        return response

    def distribute_dataset_entries(self, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("Datasets")
        if not isinstance(items, list) or len(items) != 2:
            raise AwsError(BAD, "Datasets must list exactly the TRAIN and the TEST dataset of one project")
        with self.store.lock:
            datasets = {self._dataset(str(item.get("Arn")))["type"]: str(item["Arn"]) for item in items}
            if set(datasets) != {"TRAIN", "TEST"}:
                raise AwsError(BAD, "Datasets must be one TRAIN and one TEST dataset")
            train = self.store.data["datasets"][datasets["TRAIN"]]
            test = self.store.data["datasets"][datasets["TEST"]]
            if train["project_arn"] != test["project_arn"]:
                raise AwsError(BAD, "Both datasets must belong to the same project")
            for ds in (train, test):
                if ds["status"].endswith("IN_PROGRESS"):
                    raise AwsError("ResourceNotReadyException", f"A dataset is {ds['status']}")
            if test["entries"]:
                raise AwsError(BAD, "The TEST dataset must be empty to distribute entries into it")
            # Deterministic: the same entries always move, whatever the insertion order.
            refs = sorted(train["entries"], key=lambda ref: hashlib.sha256(ref.encode("utf-8")).hexdigest())
            moved = refs[: int(len(refs) * TEST_FRACTION)]
            for ref in moved:
                test["entries"][ref] = train["entries"].pop(ref)
            for ds in (train, test):
                ds.update(status="UPDATE_COMPLETE", status_message="The dataset was successfully updated.")
                ds["updated"] = now().isoformat()
            self.store.save()
        return {}

    def _dataset(self, arn: str) -> dict[str, Any]:
        ds = self.store.data["datasets"].get(arn)
        if ds is None:
            raise AwsError("ResourceNotFoundException", f"Dataset {arn} does not exist")
        return dict(ds)

    def _read_s3(self, s3_object: dict[str, Any]) -> bytes:
        try:
            return _read_s3_object(self.s3, s3_object)
        except Exception as error:
            raise _JobFailed(
                f"Cannot read s3://{s3_object['Bucket']}/{s3_object['Name']}: {error}"
            ) from error

    def _run_dataset_job(self, arn: str) -> None:
        """Import a manifest / copy a dataset / apply an update, then mark the dataset complete or failed."""
        with self.store.lock:
            ds = self.store.data["datasets"].get(arn)
            job = dict(ds["job"] or {}) if ds else {}
            creating = bool(ds) and ds["status"] == "CREATE_IN_PROGRESS"
        if not job:
            return
        try:
            if "lines" in job:
                lines = list(job["lines"])
            elif job.get("source_arn"):
                with self.store.lock:
                    source = self.store.data["datasets"].get(job["source_arn"], {"entries": {}})
                    lines = [entry["line"] for entry in source["entries"].values()]
            else:
                lines = _json_lines(self._read_s3(job["manifest"]))
            entries = {ref: entry for ref, entry in (_dataset_entry(line) for line in lines) if ref}
            invalid = sum(1 for entry in entries.values() if entry["errors"]) + sum(
                1 for line in lines if groundtruth.source_ref_of(line) is None
            )
            if creating and lines and invalid / len(lines) > groundtruth.MAX_INVALID_FRACTION:
                raise _JobFailed(f"{invalid} of {len(lines)} manifest lines are invalid (more than 20%)")
            self._finish_dataset(arn, entries, creating, None)
        except _JobFailed as error:
            self._finish_dataset(arn, {}, creating, str(error))
        except Exception as error:  # any S3 or parsing failure ends as a failed dataset with its reason
            LOG.exception("dataset job for %s failed", arn)
            self._finish_dataset(arn, {}, creating, f"Dataset import failed: {error}")

    def _finish_dataset(self, arn: str, entries: dict[str, Any], creating: bool, failure: str | None) -> None:
        with self.store.lock:
            ds = self.store.data["datasets"].get(arn)
            if ds is None:
                return
            prefix = "CREATE" if creating else "UPDATE"
            if failure is None:
                ds["entries"].update(entries)  # a line with an existing source-ref replaces that image
                ds.update(status=f"{prefix}_COMPLETE", status_code="SUCCESS")
                ds["status_message"] = f"The dataset was successfully {'created' if creating else 'updated'}."
            else:
                ds.update(status=f"{prefix}_FAILED", status_code="CLIENT_ERROR", status_message=failure)
            ds["job"] = None
            ds["updated"] = now().isoformat()
            self.store.save()

    # -- project versions -----------------------------------------------------------------------
    def create_project_version(self, body: dict[str, Any]) -> dict[str, Any]:
        project_arn = require_str(body, "ProjectArn", None, 2048, BAD)
        version_name = require_str(body, "VersionName", NAME_PATTERN, 255, BAD)
        output = body.get("OutputConfig") or {}
        if not isinstance(output.get("S3Bucket"), str) or not output["S3Bucket"]:
            raise AwsError(BAD, "OutputConfig.S3Bucket is required")
        training, testing = body.get("TrainingData"), body.get("TestingData")
        with self.store.lock:
            project = self._project(project_arn)
            if any(
                v["project_arn"] == project_arn and v["name"] == version_name
                for v in self.store.data["versions"].values()
            ):
                raise AwsError(
                    "ResourceInUseException", f"Version {version_name} already exists in this project"
                )
            source = self._training_source(project, training, testing)
            arn = f"{project_arn.rsplit('/', 1)[0]}/version/{version_name}/{_millis()}"
            self.store.data["versions"][arn] = {
                "project_arn": project_arn,
                "project_name": project["name"],
                "name": version_name,
                "created": now().isoformat(),
                "status": "TRAINING_IN_PROGRESS",
                "status_message": "The model is being trained.",
                "output_config": {
                    "S3Bucket": output["S3Bucket"],
                    "S3KeyPrefix": output.get("S3KeyPrefix", ""),
                },
                "source": source,
                "training_data": training,
                "testing_data": testing,
            }
            self.store.save()
        self._spawn(self._run_training, arn)
        return {"ProjectVersionArn": arn}

    def _training_source(self, project: dict[str, Any], training: Any, testing: Any) -> dict[str, Any]:
        """Dataset mode when the project has datasets (manifests are then rejected, as AWS does)."""
        if project["datasets"]:
            if training is not None or testing is not None:
                raise AwsError(
                    BAD,
                    "TrainingData and TestingData cannot be given when the project has datasets; "
                    "update the datasets instead",
                )
            if set(project["datasets"]) != {"TRAIN", "TEST"}:
                raise AwsError(BAD, "The project needs both a TRAIN and a TEST dataset to train a model")
            for dataset_arn in project["datasets"].values():
                ds = self.store.data["datasets"][dataset_arn]
                if ds["status"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
                    raise AwsError("ResourceInUseException", f"Dataset {dataset_arn} is {ds['status']}")
            return {"mode": "datasets", "datasets": dict(project["datasets"])}
        train_assets = _manifest_assets(training, "TrainingData")
        if not train_assets:
            raise AwsError(
                BAD,
                "TrainingData.Assets with a GroundTruthManifest is required (the project has no datasets)",
            )
        if not isinstance(testing, dict):
            raise AwsError(
                BAD, "TestingData (Assets or AutoCreate) is required (the project has no datasets)"
            )
        auto_create = bool(testing.get("AutoCreate"))
        test_assets = _manifest_assets(testing, "TestingData") if testing.get("Assets") else []
        if auto_create == bool(test_assets):
            raise AwsError(BAD, "TestingData needs either Assets or AutoCreate=true")
        return {"mode": "manifests", "train": train_assets, "test": test_assets, "auto_create": auto_create}

    def describe_project_versions(self, body: dict[str, Any]) -> dict[str, Any]:
        project_arn = require_str(body, "ProjectArn", None, 2048, BAD)
        names = body.get("VersionNames")
        if names is not None and (not isinstance(names, list) or not 1 <= len(names) <= 10):
            raise AwsError(BAD, "VersionNames must list 1-10 version names")
        with self.store.lock:
            self._project(project_arn)
            versions = [
                (arn, dict(v))
                for arn, v in self.store.data["versions"].items()
                if v["project_arn"] == project_arn and (names is None or v["name"] in names)
            ]
        versions.sort(key=lambda item: item[1]["created"], reverse=True)
        start, size = _page(body)
        response: dict[str, Any] = {
            "ProjectVersionDescriptions": [
                _version_description(arn, v) for arn, v in versions[start : start + size]
            ]
        }
        if start + size < len(versions):
            response["NextToken"] = str(start + size)
        return response

    def delete_project_version(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "ProjectVersionArn", None, 2048, BAD)
        with self.store.lock:
            version = self._version(arn)
            if version["status"] in ("RUNNING", "STARTING", "STOPPING", "TRAINING_IN_PROGRESS"):
                raise AwsError("ResourceInUseException", f"Version {arn} is {version['status']}")
            del self.store.data["versions"][arn]
            self.store.save()
        with self._models_lock:
            self._models.pop(arn, None)
        return {"Status": "DELETING"}

    def start_project_version(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "ProjectVersionArn", None, 2048, BAD)
        units = body.get("MinInferenceUnits")
        if not isinstance(units, int) or units < 1:
            raise AwsError(BAD, f"MinInferenceUnits must be at least 1, got {units!r}")
        max_units = body.get("MaxInferenceUnits")
        if max_units is not None and (not isinstance(max_units, int) or max_units < units):
            raise AwsError(BAD, "MaxInferenceUnits must be at least MinInferenceUnits")
        with self.store.lock:
            version = self._version(arn)
            if version["status"] not in ("TRAINING_COMPLETED", "STOPPED"):
                raise AwsError(
                    "ResourceInUseException", f"Version {arn} is {version['status']} and cannot start"
                )
            live = self.store.data["versions"][arn]
            live.update(status="STARTING", status_message="The model is starting.", min_units=units)
            live["max_units"] = max_units
            live["due"] = (now() + self._start).isoformat()
            self.store.save()
        return {"Status": "STARTING"}

    def stop_project_version(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "ProjectVersionArn", None, 2048, BAD)
        with self.store.lock:
            version = self._version(arn)
            if version["status"] not in ("RUNNING", "STARTING"):
                raise AwsError("ResourceInUseException", f"Version {arn} is {version['status']}, not running")
            live = self.store.data["versions"][arn]
            _bill(live)
            live.update(status="STOPPING", status_message="The model is stopping.")
            live["due"] = (now() + self._stop).isoformat()
            self.store.save()
        return {"Status": "STOPPING"}

    def billed_inference_unit_hours(self) -> float:
        """Inference-unit hours of every version so far, RUNNING ones up to now (local only)."""
        with self.store.lock:
            total = 0.0
            for version in self.store.data["versions"].values():
                total += version.get("inference_unit_seconds", 0.0)
                if version.get("running_since"):
                    seconds = (now() - parse_iso(version["running_since"])).total_seconds()
                    total += seconds * int(version.get("min_units") or 1)
            return total / 3600

    def _version(self, arn: str) -> dict[str, Any]:
        version = self.store.data["versions"].get(arn)
        if version is None:
            raise AwsError("ResourceNotFoundException", f"Project version {arn} does not exist")
        return dict(version)

    def tick(self) -> None:
        """Move STARTING→RUNNING and STOPPING→STOPPED once their transition time has passed."""
        with self.store.lock:
            changed = False
            for version in self.store.data["versions"].values():
                if version["status"] in ("STARTING", "STOPPING") and parse_iso(version["due"]) <= now():
                    running = version["status"] == "STARTING"
                    if running:
                        version["running_since"] = now().isoformat()
                    version["status"] = "RUNNING" if running else "STOPPED"
                    version["status_message"] = (
                        "The model is running." if running else "The model is stopped."
                    )
                    changed = True
            if changed:
                self.store.save()

    # -- training -------------------------------------------------------------------------------
    def _run_training(self, arn: str) -> None:
        with self._training_slot:
            started = time.monotonic()
            try:
                result = self._train(arn)
            except _JobFailed as error:
                self._finish_training(arn, None, str(error), started)
            except Exception as error:  # every failure becomes TRAINING_FAILED with its reason
                LOG.exception("training of %s failed", arn)
                self._finish_training(arn, None, f"Training failed: {error}", started)
            else:
                self._finish_training(arn, result, None, started)

    def _train(self, arn: str) -> dict[str, Any]:
        with self.store.lock:
            version = self._version(arn)
        source = version["source"]
        if source["mode"] == "datasets":
            train_lines = self._dataset_lines(source["datasets"]["TRAIN"])
            test_lines = self._dataset_lines(source["datasets"]["TEST"])
            auto_create = False
        else:
            train_lines = [line for asset in source["train"] for line in _json_lines(self._read_s3(asset))]
            test_lines = [line for asset in source["test"] for line in _json_lines(self._read_s3(asset))]
            auto_create = source["auto_create"]
        train_entries, train_report = self._valid_entries(train_lines, "training")
        test_entries, test_report = self._valid_entries(test_lines, "testing") if test_lines else ([], None)
        detector = self.detector
        train_samples = [self._sample(entry) for entry in train_entries]
        test_samples = [self._sample(entry) for entry in test_entries]
        if auto_create:
            train_samples, test_samples = detector.split(train_samples, test_fraction=TEST_FRACTION, seed=0)
        if not train_samples or not test_samples:
            raise _JobFailed("The training and the testing data each need at least one valid image")
        labels = sorted({label for sample in train_samples for label, _ in sample.boxes})
        if not labels:
            raise _JobFailed("The training data has no labeled boxes")
        LOG.info(
            "training %s on %d images (%d test), labels %s",
            arn,
            len(train_samples),
            len(test_samples),
            labels,
        )
        model = detector.train(train_samples, labels, seed=0, progress=_progress_logger(arn))
        evaluation = detector.evaluate(model, test_samples)
        summary = evaluation.to_rekognition_summary(arn, training_images=len(train_samples))
        reports = {"training": train_report, "testing": test_report}
        return self._store_results(arn, version, model, summary, evaluation.thresholds(), reports)

    def _dataset_lines(self, dataset_arn: str) -> list[str]:
        with self.store.lock:
            ds = self.store.data["datasets"].get(dataset_arn)
            if ds is None:
                raise _JobFailed(f"Dataset {dataset_arn} was deleted")
            return [entry["line"] for _, entry in sorted(ds["entries"].items())]

    def _valid_entries(
        self, lines: list[str], kind: str
    ) -> tuple[list[groundtruth.ManifestEntry], dict[str, Any]]:
        """Valid lines (the last line wins per source-ref), or _JobFailed when >20% are invalid."""
        entries: dict[str, groundtruth.ManifestEntry] = {}
        errors: list[dict[str, Any]] = []
        warnings: list[dict[str, Any]] = []
        for index, line in enumerate(lines):
            try:
                entry = groundtruth.parse_line(line)
            except groundtruth.InvalidLine as error:
                errors.append({"line": index, "message": str(error)})
                continue
            warnings.extend({"line": index, "message": message} for message in entry.dropped)
            if not entry.trainable:
                warnings.append({"line": index, "message": f"{groundtruth.NO_ANNOTATIONS}: no annotations"})
                entries.pop(entry.source_ref, None)  # the newest line of an image decides
                continue
            entries[entry.source_ref] = entry
        report = {
            "total_json_lines": len(lines),
            "valid_json_lines": len(lines) - len(errors),
            "errors": errors,
            "warnings": warnings,
        }
        if not lines:
            raise _JobFailed(f"The {kind} manifest has no lines")
        if len(errors) / len(lines) > groundtruth.MAX_INVALID_FRACTION:
            first = "; ".join(f"line {e['line'] + 1}: {e['message']}" for e in errors[:3])
            raise _JobFailed(
                f"The {kind} manifest has too many invalid lines: {len(errors)} of {len(lines)} "
                f"(more than 20%). First errors: {first}"
            )
        return list(entries.values()), report

    def _sample(self, entry: groundtruth.ManifestEntry) -> Any:
        bucket, key = parse_s3_uri(entry.source_ref)
        try:
            data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:
            raise _JobFailed(f"Cannot read the image {entry.source_ref}: {error}") from error
        image = _working_image(data, entry.source_ref)
        boxes = [(label, _scaled_box(box, entry, image.size)) for label, box in entry.boxes]
        return self.detector.Sample(image=image, boxes=boxes, name=entry.source_ref)

    def _store_results(
        self,
        arn: str,
        version: dict[str, Any],
        model: Any,
        summary: dict[str, Any],
        thresholds: dict[str, float],
        reports: dict[str, Any],
    ) -> dict[str, Any]:
        bucket = version["output_config"]["S3Bucket"]
        prefix = version["output_config"]["S3KeyPrefix"]
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        stem = f"{version['project_name']}-{version['name']}"
        summary_key = f"{prefix}EvaluationResultSummary-{stem}.json"
        manifest_summary_key = f"{prefix}ManifestSummary-{stem}.json"
        self.s3.put_object(
            Bucket=bucket, Key=summary_key, Body=json.dumps(summary).encode(), ContentType="application/json"
        )
        manifest_summary = {"version": 1, **reports}
        self.s3.put_object(
            Bucket=bucket, Key=manifest_summary_key, Body=json.dumps(manifest_summary).encode()
        )
        self._models_dir.mkdir(parents=True, exist_ok=True)
        model_file = self._models_dir / f"{hashlib.sha256(arn.encode()).hexdigest()[:32]}.bin"
        model_file.write_bytes(model.to_bytes())
        with self._models_lock:
            self._models[arn] = model
        return {
            "f1": float(summary["AggregatedEvaluationResults"]["Metrics"]["F1Score"]),
            "summary": {"Bucket": bucket, "Name": summary_key},
            "manifest_summary": {"Bucket": bucket, "Name": manifest_summary_key},
            "model_file": model_file.name,
            "thresholds": thresholds,
        }

    def _finish_training(
        self, arn: str, result: dict[str, Any] | None, failure: str | None, started: float
    ) -> None:
        with self.store.lock:
            version = self.store.data["versions"].get(arn)
            if version is None:
                return
            version["training_end"] = now().isoformat()
            version["billable_seconds"] = int(time.monotonic() - started)
            if result is None:
                version.update(status="TRAINING_FAILED", status_message=failure)
            else:
                version.update(
                    status="TRAINING_COMPLETED", status_message="The model is ready to run.", result=result
                )
            self.store.save()
        LOG.info("training of %s ended: %s", arn, failure or "TRAINING_COMPLETED")

    # -- inference ------------------------------------------------------------------------------
    def detect_custom_labels(self, body: dict[str, Any]) -> dict[str, Any]:
        arn = require_str(body, "ProjectVersionArn", None, 2048, BAD)
        min_confidence = body.get("MinConfidence")
        if min_confidence is not None and (
            not isinstance(min_confidence, int | float) or not 0 <= min_confidence <= 100
        ):
            raise AwsError(BAD, f"MinConfidence must be 0-100, got {min_confidence!r}")
        max_results = body.get("MaxResults")
        if max_results is not None and (not isinstance(max_results, int) or max_results < 0):
            raise AwsError(BAD, f"MaxResults must be a non-negative integer, got {max_results!r}")
        with self.store.lock:
            version = self._version(arn)
        if version["status"] != "RUNNING":
            raise AwsError(
                "ResourceNotReadyException", f"ProjectVersion {arn} is {version['status']}, not RUNNING"
            )
        if not self.throughput.take(arn, int(version.get("min_units") or 1)):
            raise AwsError(
                "ProvisionedThroughputExceededException",
                f"The model's {version.get('min_units') or 1} inference unit(s) serve at most "
                f"{self.throughput.rate(int(version.get('min_units') or 1)):g} images per second",
            )
        image = _working_image(self._image_bytes(body.get("Image")), "the image", check_limits=True)
        model = self._model(arn, version)
        detections = model.detect(image, min_confidence=float(min_confidence or 0.0), max_results=10_000)
        if min_confidence is None:  # AWS applies each label's assumed threshold from training
            thresholds = version["result"].get("thresholds", {})
            detections = [d for d in detections if d.confidence >= thresholds.get(d.label, 0.0)]
        detections = sorted(detections, key=lambda d: -d.confidence)
        if max_results is not None:
            detections = detections[:max_results]
        return {"CustomLabels": [_custom_label(d) for d in detections]}

    def _image_bytes(self, image: Any) -> bytes:
        if not isinstance(image, dict) or ("Bytes" in image) == ("S3Object" in image):
            raise AwsError(BAD, "Image must have exactly one of Bytes or S3Object")
        if "Bytes" in image:
            data = base64.b64decode(image["Bytes"])
            if len(data) > MAX_INLINE_IMAGE_BYTES:
                raise AwsError("ImageTooLargeException", f"Image bytes are {len(data)}, more than 4 MB")
            return data
        s3_object = _s3_object(image["S3Object"], "Image.S3Object")
        request = {"Bucket": s3_object["Bucket"], "Key": s3_object["Name"]}
        if s3_object.get("Version"):
            request["VersionId"] = s3_object["Version"]
        try:
            head = self.s3.head_object(**request)
            if int(head["ContentLength"]) > MAX_S3_IMAGE_BYTES:
                raise AwsError(
                    "ImageTooLargeException", f"Image is {head['ContentLength']} bytes, more than 15 MB"
                )
            return bytes(self.s3.get_object(**request)["Body"].read())
        except AwsError:
            raise
        except Exception as error:
            raise AwsError(
                "InvalidS3ObjectException",
                "Unable to get object metadata from S3. Check object key, region and/or access permissions.",
            ) from error

    def _model(self, arn: str, version: dict[str, Any]) -> Any:
        with self._models_lock:
            model = self._models.get(arn)
            if model is None:
                data = (self._models_dir / version["result"]["model_file"]).read_bytes()
                model = self.detector.Model.from_bytes(data)
                self._models[arn] = model
            return model


def _bill(version: dict[str, Any]) -> None:
    """Add the inference-unit seconds of the RUNNING period that ends now (what AWS bills)."""
    since = version.pop("running_since", None)
    if since is not None:
        seconds = (now() - parse_iso(since)).total_seconds()
        version["inference_unit_seconds"] = version.get("inference_unit_seconds", 0.0) + seconds * int(
            version.get("min_units") or 1
        )
        version["runs"] = int(version.get("runs", 0)) + 1


class Throughput:
    """Per model, a token bucket of one second's worth of calls: `tps_per_unit` × units per second."""

    def __init__(self, tps_per_unit: float | None) -> None:
        self.tps_per_unit = tps_per_unit
        self.throttled = 0  # calls refused so far (tests and benchmarks read it)
        self.served = 0
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # arn -> (tokens, monotonic time)

    def rate(self, units: int) -> float:
        return float("inf") if self.tps_per_unit is None else self.tps_per_unit * max(1, units)

    def take(self, arn: str, units: int) -> bool:
        """One call of `arn` now: True if within its throughput."""
        with self._lock:
            if self.tps_per_unit is None:
                self.served += 1
                return True
            rate, clock = self.rate(units), time.monotonic()
            tokens, last = self._buckets.get(arn, (rate, clock))
            tokens = min(max(rate, 1.0), tokens + (clock - last) * rate)
            if tokens < 1.0:
                self._buckets[arn] = (tokens, clock)
                self.throttled += 1
                return False
            self._buckets[arn] = (tokens - 1.0, clock)
            self.served += 1
            return True


class _JobFailed(Exception):
    """An expected failure of asynchronous work; the message becomes the StatusMessage."""


def _millis() -> int:
    # Distinct per call even within one millisecond, so two resources never share an ARN.
    global _last_millis
    with _millis_lock:
        _last_millis = max(_last_millis + 1, int(time.time() * 1000))
        return _last_millis


_last_millis = 0
_millis_lock = threading.Lock()


def _page(body: dict[str, Any]) -> tuple[int, int]:
    token = body.get("NextToken") or "0"
    if not isinstance(token, str) or not token.isdigit():
        raise AwsError("InvalidPaginationTokenException", f"NextToken {token!r} is not valid")
    size = body.get("MaxResults", 100)
    if not isinstance(size, int) or not 1 <= size <= 100:
        raise AwsError(BAD, f"MaxResults must be 1-100, got {size!r}")
    return int(token), size


def _s3_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value.get("Bucket") or not value.get("Name"):
        raise AwsError(BAD, f"{where} needs Bucket and Name")
    return value


def _manifest_assets(data: Any, where: str) -> list[dict[str, Any]]:
    if data is None:
        return []
    assets = data.get("Assets") if isinstance(data, dict) else None
    if not isinstance(assets, list):
        raise AwsError(BAD, f"{where}.Assets must be a list")
    return [
        _s3_object((asset.get("GroundTruthManifest") or {}).get("S3Object"), f"{where}.Assets")
        for asset in assets
    ]


def _json_lines(data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AwsError(BAD, "The manifest is not UTF-8 text") from error
    return [line.strip() for line in text.splitlines() if line.strip()]


def _dataset_entry(line: str) -> tuple[str | None, dict[str, Any]]:
    ref = groundtruth.source_ref_of(line)
    try:
        parsed = groundtruth.parse_line(line)
    except groundtruth.InvalidLine as error:
        return ref, {"line": line, "errors": [str(error)], "labels": []}
    return ref, {"line": line, "errors": [], "labels": sorted(parsed.labels)}


def _entry_matches(entry: dict[str, Any], body: dict[str, Any]) -> bool:
    contains = body.get("ContainsLabels")
    if contains and not set(contains) & set(entry["labels"]):
        return False
    if body.get("Labeled") is not None and bool(entry["labels"]) != body["Labeled"]:
        return False
    if body.get("HasErrors") is not None and bool(entry["errors"]) != body["HasErrors"]:
        return False
    needle = body.get("SourceRefContains")
    return not needle or needle in (groundtruth.source_ref_of(entry["line"]) or "")


def _read_s3_object(s3: Any, s3_object: dict[str, Any]) -> bytes:
    request = {"Bucket": s3_object["Bucket"], "Key": s3_object["Name"]}
    if s3_object.get("Version"):
        request["VersionId"] = s3_object["Version"]
    return bytes(s3.get_object(**request)["Body"].read())


def _working_image(data: bytes, name: str, check_limits: bool = False) -> Any:
    """Decode a PNG/JPEG (AWS's formats and limits when `check_limits`) and scale it to WORKING_SIDE."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError) as error:
        if check_limits:
            raise AwsError("InvalidImageFormatException", "Request has unsupported image format") from error
        raise _JobFailed(f"{name} is not an image") from error
    if image.format not in ("PNG", "JPEG"):
        if check_limits:
            raise AwsError("InvalidImageFormatException", "Request has unsupported image format")
        raise _JobFailed(f"{name} is {image.format}, not PNG or JPEG")
    width, height = image.size
    if check_limits:
        if max(width, height) > MAX_SIDE:
            raise AwsError(
                "ImageTooLargeException", f"Image is {width}x{height}; at most {MAX_SIDE} px per side"
            )
        if min(width, height) < MIN_SIDE:
            raise AwsError(BAD, f"Image is {width}x{height}; at least {MIN_SIDE} px per side")
        if max(width, height) / min(width, height) > MAX_ASPECT:
            raise AwsError(BAD, f"Image aspect ratio of {width}x{height} is more than 20:1")
    scale = min(1.0, WORKING_SIDE / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.format == "JPEG" and scale < 1.0:
        image.draft("RGB", target)  # decode JPEGs at reduced size directly: much faster for big photos
    try:
        rgb = image.convert("RGB")
    except OSError as error:
        if check_limits:
            raise AwsError("InvalidImageFormatException", "Request has unsupported image format") from error
        raise _JobFailed(f"{name} cannot be decoded: {error}") from error
    return rgb if rgb.size == target else rgb.resize(target)


def _scaled_box(
    box: groundtruth.PixelBox, entry: groundtruth.ManifestEntry, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A manifest box (in the manifest's image size) in whole pixels of the working image, kept inside it."""
    scale_x, scale_y = size[0] / entry.width, size[1] / entry.height
    left, top = min(round(box[0] * scale_x), size[0] - 1), min(round(box[1] * scale_y), size[1] - 1)
    right = min(max(round((box[0] + box[2]) * scale_x), left + 1), size[0])
    bottom = min(max(round((box[1] + box[3]) * scale_y), top + 1), size[1])
    return left, top, right - left, bottom - top


def _custom_label(detection: Any) -> dict[str, Any]:
    return {
        "Name": detection.label,
        "Confidence": float(detection.confidence),
        "Geometry": {
            "BoundingBox": {
                "Width": float(detection.width),
                "Height": float(detection.height),
                "Left": float(detection.left),
                "Top": float(detection.top),
            }
        },
    }


def _progress_logger(arn: str) -> Callable[..., None]:
    def report(*args: Any, **kwargs: Any) -> None:
        LOG.info("training %s: %s", arn, " ".join(str(part) for part in (*args, *kwargs.values())))

    return report


def _version_description(arn: str, version: dict[str, Any]) -> dict[str, Any]:
    description: dict[str, Any] = {
        "ProjectVersionArn": arn,
        "CreationTimestamp": epoch(parse_iso(version["created"])),
        "Status": version["status"],
        "StatusMessage": version["status_message"],
        "OutputConfig": version["output_config"],
    }
    if version.get("min_units"):
        description["MinInferenceUnits"] = version["min_units"]
    if version.get("max_units"):
        description["MaxInferenceUnits"] = version["max_units"]
    if version.get("training_end"):
        description["TrainingEndTimestamp"] = epoch(parse_iso(version["training_end"]))
        description["BillableTrainingTimeInSeconds"] = version.get("billable_seconds", 0)
    if version.get("training_data"):
        description["TrainingDataResult"] = {"Input": version["training_data"]}
    if version.get("testing_data"):
        description["TestingDataResult"] = {"Input": version["testing_data"]}
    result = version.get("result")
    if result:
        description["EvaluationResult"] = {
            "F1Score": result["f1"],
            "Summary": {"S3Object": result["summary"]},
        }
        description["ManifestSummary"] = {"S3Object": result["manifest_summary"]}
    return description
