"""`labelloop local demo`: one unattended run of the whole loop on the local stack.

Start the stack from template.yaml, hold out a fixed test set (uploaded under test-images/, listed in the
TestManifestKey manifest, so the first model and every retrained one are scored on the same images),
import a base dataset and train a first model through the local Rekognition API, upload the remaining
images to incoming/, let the handlers run through the
template's rules, answer the review tasks through the portal's HTTP API with a SIMULATED REVIEWER
(the dataset's true labels), fire the Retrain schedule, wait for training, fire Promote until the
new version is decided, and summarise. Progress goes to stderr; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from labelloop_core.evaluation import format_f1
from labelloop_local import REPOSITORY
from labelloop_local.demo.sampledata import DatasetError
from labelloop_local.stack.local_stack import LocalStack, StackError
from labelloop_local.stack.template import TemplateError

SIMULATED_WORKER_ID = "simulated-reviewer"
SIMULATED_REVIEWER_EMAIL = "simulated-reviewer@labelloop.invalid"
DEFAULT_SAMPLE_IMAGES = 40
DEFAULT_TEST_IMAGES = 20  # enough held-out images for F1 to move visibly between model versions
DATASET_TEST_FRACTION = 0.25  # share of a --dataset held out for testing (at most test_images)
DEFAULT_BASE_FRACTION = 0.3
BASE_PREFIX = "base-images/"
TEST_PREFIX = "test-images/"  # outside incoming/: never detected, never reviewed, never trained on
DEFAULT_TEST_MANIFEST_KEY = "manifests/test.manifest"
TERMINAL_TRAINING = {"TRAINING_COMPLETED", "TRAINING_FAILED"}


class DemoError(Exception):
    """A step of the demo failed; the message names the step, the file or event, and the reason."""


@dataclass
class DemoOptions:
    dataset: Path | None = None
    out_dir: Path | None = None
    template: Path = Path("template.yaml")
    replay: bool = False
    sample_images: int = DEFAULT_SAMPLE_IMAGES  # generated images for the base set and the uploads
    test_images: int = DEFAULT_TEST_IMAGES  # generated on top of them as the fixed test set
    seed: int = 0
    base_fraction: float = DEFAULT_BASE_FRACTION
    min_new_labels: int | None = None
    step_timeout: float = 600.0
    faults: list[dict[str, Any]] = field(default_factory=list)  # injected into the local services
    report: bool = True
    verbose: bool = False
    review_backend: str = "builtin"


@dataclass
class DemoResult:
    review_backend: str = "builtin"
    images_uploaded: int = 0
    base_images: int = 0
    test_images: int = 0
    predictions: int = 0
    rejected_images: int = 0
    reviews_requested: int = 0
    reviews_completed: int = 0
    labels_appended: int = 0
    trainings_started: int = 0
    models_promoted: int = 0
    f1_before: float | None = None
    f1_after: float | None = None
    candidate_f1: float | None = None
    promotion_reason: str | None = None
    dlq_messages: int = 0
    dlq_by_queue: dict[str, int] = field(default_factory=dict)
    function_errors: dict[str, int] = field(default_factory=dict)
    invocations: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    api_latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # per review API route
    report_path: str | None = None
    out_dir: str | None = None
    logs_dir: str | None = None
    replay: dict[str, Any] | None = None
    reviewed: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    prediction_keys: list[str] = field(default_factory=list)
    test_names: list[str] = field(default_factory=list)
    test_detections: list[Any] = field(default_factory=list)  # comparison.ModelAnswers per model version
    test_set_detections: list[dict[str, Any]] = field(default_factory=list)  # their summaries

    def as_dict(self) -> dict[str, Any]:
        hidden = ("reviewed", "replay", "dead_letters", "prediction_keys", "test_names", "test_detections")
        doc = {k: v for k, v in self.__dict__.items() if k not in hidden}
        if self.replay is not None:
            doc["replay"] = self.replay
        return doc


class Progress:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: whatever sys.stderr is when a line is printed
        self._start = time.monotonic()

    def __call__(self, message: str) -> None:
        stream = self._stream or sys.stderr
        print(f"[demo {time.monotonic() - self._start:6.1f}s] {message}", file=stream, flush=True)


def repo_template() -> Path:
    """template.yaml in the working directory, else the one of the repository this package lives in."""
    local = Path("template.yaml")
    if local.is_file():
        return local
    return REPOSITORY / "template.yaml"


def run_demo(options: DemoOptions, progress: Callable[[str], None] | None = None) -> DemoResult:
    from labelloop_local.demo import sampledata

    say = progress or Progress()
    started = time.monotonic()
    out_dir = options.out_dir or Path(tempfile.mkdtemp(prefix="labelloop-demo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if options.dataset is not None:
        say(f"loading the dataset in {options.dataset}")
        dataset = sampledata.load_dataset(options.dataset)
        names = sorted(dataset.entries)
        test_count = min(options.test_images, max(1, round(len(names) * DATASET_TEST_FRACTION)))
    else:
        total = options.sample_images + options.test_images
        say(
            f"generating {total} labeled sample images (seed {options.seed}), "
            f"{options.test_images} of them held out for testing"
        )
        dataset = sampledata.generate(out_dir / "sample-data", n_images=total, seed=options.seed)
        names = sorted(dataset.entries)
        test_count = options.test_images
    if test_count < 1 or len(names) < test_count + 2:
        raise DemoError(
            f"{dataset.manifest_path}: the demo needs at least 3 labeled images (test, base and upload), "
            f"found {len(names)}"
        )
    test_names, names = _hold_out(names, test_count, options.seed)
    base_count = min(len(names) - 1, max(1, math.ceil(len(names) * options.base_fraction)))
    base_names, upload_names = names[:base_count], names[base_count:]

    params = _demo_parameters(options, dataset.labels, len(upload_names), options.template)
    say(f"starting the local stack from {options.template} (parameters: {params})")
    stack = LocalStack(
        options.template, params=params, data_dir=out_dir / "stack", logs_on_console=options.verbose
    )
    result = DemoResult(review_backend=options.review_backend, out_dir=str(out_dir))
    with stack:
        say(f"function and platform logs: {stack.logs_dir}/<Function>.log (CloudWatch Logs in AWS)")
        result.logs_dir = str(stack.logs_dir)
        run = _DemoRun(stack, dataset, say, options, result)
        run.import_test_set(test_names)
        run.import_base(base_names)
        run.train_base_model()
        for fault in options.faults:
            say(f"injecting fault into the local services: {fault}")
            stack.services.inject_fault(**fault)
        run.upload(upload_names)
        run.review_all()
        run.retrain_and_promote()
        run.collect()
        if options.replay:
            say("replaying every archive through EventBridge (nothing should change)")
            result.replay = stack.replay(timeout=options.step_timeout).as_dict()
            say(f"replay: {result.replay}")
            result.dlq_by_queue = stack.dlq_messages()
            result.dlq_messages = sum(result.dlq_by_queue.values())
        result.duration_seconds = round(time.monotonic() - started, 1)
        if options.report:
            from labelloop_local.demo.report import write_report

            result.report_path = str(write_report(out_dir, result, dataset))
    return result


def _hold_out(names: list[str], count: int, seed: int) -> tuple[list[str], list[str]]:
    """A fixed, seeded choice of `count` test images; (test names, the rest), both in sorted order."""
    import numpy as np

    chosen = set(np.random.default_rng([seed, 7]).permutation(len(names))[:count].tolist())
    test = [name for index, name in enumerate(names) if index in chosen]
    rest = [name for index, name in enumerate(names) if index not in chosen]
    return test, rest


def _demo_parameters(
    options: DemoOptions, labels: list[str], uploads: int, template_path: Path
) -> dict[str, str]:
    from labelloop_local.stack.template import load_template

    defaults = load_template(template_path).parameters()
    params: dict[str, str] = {}
    if "ReviewBackend" in defaults:
        params["ReviewBackend"] = options.review_backend
    if labels and defaults.get("Labels") is not None:
        configured = [label.strip() for label in str(defaults["Labels"]).split(",")]
        if not set(labels) <= set(configured):
            params["Labels"] = ",".join(configured + [label for label in labels if label not in configured])
    if "MinNewLabels" in defaults:
        # Demo override: the template's default (16) may exceed what a small dataset can produce.
        default = int(defaults["MinNewLabels"] or 1)
        wanted = options.min_new_labels or max(1, min(default, uploads // 2))
        params["MinNewLabels"] = str(wanted)
    return params


class _DemoRun:
    def __init__(
        self,
        stack: LocalStack,
        dataset: Any,
        say: Callable[[str], None],
        options: DemoOptions,
        result: DemoResult,
    ) -> None:
        self.stack = stack
        self.dataset = dataset
        self.say = say
        self.options = options
        self.result = result
        assert stack.stack is not None
        self.bucket = stack.stack.bucket
        self.env = stack.stack.env_for("RetrainFunction")  # bucket, table, project, labels
        self.active_model_parameter = str(stack.stack.physical["ActiveModelParameter"])
        self.test_manifest_key: str | None = None  # set by import_test_set; else AutoCreate
        self.s3 = stack.client("s3")
        self.rekognition = stack.client("rekognition")
        self.ssm = stack.client("ssm")

    # -- base model ---------------------------------------------------------------------------------
    def import_test_set(self, test_names: list[str]) -> None:
        """The fixed test set: Retrain finds it under TEST_MANIFEST_KEY and scores every version on it."""
        manifest_key = self.env.get("TEST_MANIFEST_KEY", DEFAULT_TEST_MANIFEST_KEY)
        self.say(
            f"holding out a fixed test set: {len(test_names)} images → s3://{self.bucket}/{TEST_PREFIX}, "
            f"listed in {manifest_key}"
        )
        self._import(test_names, TEST_PREFIX, manifest_key)
        self.test_manifest_key = manifest_key
        self.result.test_images = len(test_names)
        self.result.test_names = list(test_names)

    def import_base(self, base_names: list[str]) -> None:
        manifest_key = self.env.get("BASE_MANIFEST_KEY", "manifests/base.manifest")
        self.say(f"importing the base dataset: {len(base_names)} images → s3://{self.bucket}/{BASE_PREFIX}")
        self._import(base_names, BASE_PREFIX, manifest_key)
        self.result.base_images = len(base_names)

    def _import(self, names: list[str], prefix: str, manifest_key: str) -> None:
        """Upload the images under `prefix` and write their true labels as a Ground Truth manifest."""
        from labelloop_local.demo.sampledata import manifest_line

        attribute = self.env["LABEL_ATTRIBUTE"]
        lines = []
        for name in names:
            entry = self.dataset.entries[name]
            key = prefix + name
            self._put_file(entry.path, key)
            line = manifest_line(
                f"s3://{self.bucket}/{key}", entry.width, entry.height, entry.boxes, _now_iso()
            )
            lines.append(_with_attribute(line, attribute))
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        self.s3.put_object(Bucket=self.bucket, Key=manifest_key, Body=body.encode("utf-8"))

    def train_base_model(self) -> None:
        project_arn = self.env["PROJECT_ARN"]
        manifest_key = self.env.get("BASE_MANIFEST_KEY", "manifests/base.manifest")
        version_name = "labelloop-base-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.say(f"training the first model {version_name} on the local Rekognition Custom Labels service")
        testing: dict[str, Any] = {"AutoCreate": True}
        if self.test_manifest_key is not None:
            testing = {"Assets": [_manifest_asset(self.bucket, self.test_manifest_key)]}
        try:
            arn = self.rekognition.create_project_version(
                ProjectArn=project_arn,
                VersionName=version_name,
                OutputConfig={"S3Bucket": self.bucket, "S3KeyPrefix": "training-output/"},
                TrainingData={"Assets": [_manifest_asset(self.bucket, manifest_key)]},
                TestingData=testing,
            )["ProjectVersionArn"]
        except Exception as exc:
            raise DemoError(
                f"base training: CreateProjectVersion on s3://{self.bucket}/{manifest_key}: {exc}"
            ) from exc
        version = self._wait_training(project_arn, version_name, "base training")
        if version["Status"] != "TRAINING_COMPLETED":
            raise DemoError(
                f"base training {version_name} failed: {version.get('StatusMessage', 'no reason')}"
            )
        self.result.f1_before = _f1(version)
        self.ssm.put_parameter(Name=self.active_model_parameter, Value=arn, Type="String", Overwrite=True)
        self.say(
            f"base model trained (F1 {format_f1(self.result.f1_before)}) and made active, not started: "
            "the model controller starts it when images arrive"
        )
        self._answer_test_set(arn, version_name, "previous active model", self.result.f1_before)

    # -- the loop -----------------------------------------------------------------------------------
    def upload(self, names: list[str]) -> None:
        self.say(f"uploading {len(names)} images to s3://{self.bucket}/incoming/")
        for index, name in enumerate(names, 1):
            self._put_file(self.dataset.entries[name].path, "incoming/" + name)
            if index % 10 == 0 or index == len(names):
                self.say(f"  uploaded {index}/{len(names)}")
        self.result.images_uploaded = len(names)
        self._drain("detection and review requests")

    def review_all(self) -> None:
        if self.stack.api_url:
            self._review_through_the_api()
        else:
            self._review_through_the_a2i_portal()
        self.say(f"reviews completed: {self.result.reviews_completed}")

    def _review_through_the_api(self) -> None:
        """The built-in backend, as a person uses it: invited, signed in through Cognito, the review API."""
        token = self._sign_in_simulated_reviewer()
        api = f"{self.stack.api_url}/api/tasks"
        latencies: dict[str, list[float]] = {}
        deadline = time.monotonic() + self.options.step_timeout
        while True:
            status, task = self._timed(latencies, "GET /api/tasks/next", "GET", f"{api}/next", token)
            if status == 204:
                self._drain("label appends")
                if self._timed(latencies, "GET /api/tasks/next", "GET", f"{api}/next", token)[0] == 204:
                    break
                continue
            task_url = f"{api}/{task['taskId']}"
            self._timed(latencies, "GET /api/tasks/{taskId}", "GET", task_url, token)
            image = task["image"]
            boxes = self._truth(image["key"], task["taskId"])
            body = {
                "boundingBoxes": boxes,
                "inputImageProperties": {"width": image["width"], "height": image["height"]},
            }
            self._timed(
                latencies, "POST /api/tasks/{taskId}/answer", "POST", f"{task_url}/answer", token, body
            )
            self._record(task["taskId"], image["key"], task.get("initialValue", []), boxes)
            if time.monotonic() > deadline:
                raise DemoError(f"review: tasks still open after {self.options.step_timeout:.0f}s")
        self.result.api_latency_ms = {
            route: _percentiles(values) for route, values in sorted(latencies.items())
        }

    def _sign_in_simulated_reviewer(self) -> str:
        from labelloop_local.cli.reviewers import Reviewers, temporary_password

        assert self.stack.stack is not None
        pool_id = str(self.stack.stack.physical["ReviewerUserPool"])
        client_id = str(self.stack.stack.physical["ReviewerPortalClient"])
        cognito = self.stack.client("cognito-idp")
        password = temporary_password()
        Reviewers(cognito, pool_id).add(SIMULATED_REVIEWER_EMAIL, password)
        self.say(
            f"SIMULATED REVIEWER: invited {SIMULATED_REVIEWER_EMAIL} to the reviewer pool; it signs in "
            "through Cognito and answers every task through the review API with the dataset's TRUE "
            "labels — no human involved"
        )
        started = cognito.initiate_auth(
            AuthFlow="USER_PASSWORD_AUTH",
            ClientId=client_id,
            AuthParameters={"USERNAME": SIMULATED_REVIEWER_EMAIL, "PASSWORD": password},
        )
        if started.get("ChallengeName") != "NEW_PASSWORD_REQUIRED":
            raise DemoError(f"sign-in: expected NEW_PASSWORD_REQUIRED, got {started.get('ChallengeName')}")
        answered = cognito.respond_to_auth_challenge(
            ClientId=client_id,
            ChallengeName="NEW_PASSWORD_REQUIRED",
            Session=started["Session"],
            ChallengeResponses={"USERNAME": SIMULATED_REVIEWER_EMAIL, "NEW_PASSWORD": temporary_password(20)},
        )
        return str(answered["AuthenticationResult"]["AccessToken"])

    def _timed(
        self,
        latencies: dict[str, list[float]],
        route: str,
        method: str,
        url: str,
        token: str,
        body: Any = None,
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        status, document = _http(method, url, body, {"Authorization": f"Bearer {token}"})
        latencies.setdefault(route, []).append((time.perf_counter() - started) * 1000)
        if status >= 300:
            raise DemoError(f"{method} {url}: HTTP {status}: {document}")
        return status, document

    def _review_through_the_a2i_portal(self) -> None:
        self.say(
            "SIMULATED REVIEWER: answering every open review task through the portal API "
            f"(workerId {SIMULATED_WORKER_ID!r}) with the dataset's TRUE labels — no human involved"
        )
        portal = self.stack.services.base_url + "/portal/api/tasks"
        deadline = time.monotonic() + self.options.step_timeout
        while True:
            tasks = _http_json("GET", portal)["tasks"]
            if not tasks:
                self._drain("label appends")
                if not _http_json("GET", portal)["tasks"]:
                    break
                continue
            for task in tasks:
                key = task["taskObject"].split("/", 3)[3]
                boxes = self._truth(key, task["loopName"])
                body = {"boundingBoxes": boxes, "workerId": SIMULATED_WORKER_ID}
                try:
                    _http_json("POST", f"{portal}/{task['loopName']}/submit", body)
                except DemoError as exc:
                    raise DemoError(f"review of {key} (loop {task['loopName']}): {exc}") from exc
                self._record(task["loopName"], key, task.get("initialValue", []), boxes)
            self._drain("label appends")
            if time.monotonic() > deadline:
                raise DemoError(f"review: tasks still open after {self.options.step_timeout:.0f}s")

    def _truth(self, key: str, review: str) -> list[dict[str, Any]]:
        """The dataset's true boxes of the image under `key`, in the answer's shape."""
        entry = self.dataset.entries.get(key.removeprefix("incoming/"))
        if entry is None:
            raise DemoError(f"review {review}: {key} is not an image of the dataset")
        return [
            {
                "label": label,
                "left": round(b[0]),
                "top": round(b[1]),
                "width": round(b[2]),
                "height": round(b[3]),
            }
            for label, b in entry.boxes
        ]

    def _record(
        self, review: str, key: str, model: list[dict[str, Any]], truth: list[dict[str, Any]]
    ) -> None:
        self.result.reviews_completed += 1
        self.result.reviewed.append(
            {"loop": review, "file": key.removeprefix("incoming/"), "model": model, "truth": truth}
        )

    def retrain_and_promote(self) -> None:
        project_arn = self.env["PROJECT_ARN"]
        before = {v["ProjectVersionArn"] for v in self.stack.project_versions()}
        self.say("firing the Retrain schedule")
        self.stack.fire_schedule("RetrainFunction")
        self._drain("retrain")
        new_versions = [v for v in self.stack.project_versions() if v["ProjectVersionArn"] not in before]
        self.result.trainings_started = len(new_versions)
        if not new_versions:
            self.say("Retrain started no training (not enough new labels); the active model stays")
            self.result.f1_after = self.result.f1_before
            return
        name = new_versions[0]["ProjectVersionArn"].split("/version/")[1].split("/")[0]
        self.say(f"Retrain started {name}; waiting for it to finish training")
        version = self._wait_training(project_arn, name, "retraining")
        self.result.candidate_f1 = _f1(version)
        f1 = format_f1(self.result.candidate_f1)
        self.say(f"{name}: {version['Status']} (F1 {f1}); firing Promote until decided")
        decision = self._wait_for(lambda: self._promote_tick(name), f"a promotion decision on {name}")
        self.result.promotion_reason = str(decision.get("reason", ""))
        active = self.ssm.get_parameter(Name=self.active_model_parameter)["Parameter"]["Value"]
        promoted = active == version["ProjectVersionArn"]
        self.result.models_promoted = 1 if promoted else 0
        self.result.f1_after = self.result.candidate_f1 if promoted else self.result.f1_before
        self.say(f"{name} {'PROMOTED' if promoted else 'rejected'}: {self.result.promotion_reason}")
        self._answer_test_set(version["ProjectVersionArn"], name, "retrained model", self.result.candidate_f1)

    def _answer_test_set(self, model_arn: str, version_name: str, role: str, f1: float | None) -> None:
        """What this model version detects on the fixed test images (for the report, side by side)."""
        from labelloop_local.demo.comparison import ModelAnswers, detect_test_images, truth_of

        entries = {name: self.dataset.entries[name] for name in self.result.test_names}
        if not entries:
            return
        assert self.stack.stack is not None
        min_confidence = float(self.stack.stack.env_for("DetectFunction").get("MIN_CONFIDENCE", 10))
        with self._running(model_arn, version_name):
            boxes = detect_test_images(
                self.rekognition, self.bucket, TEST_PREFIX, entries, model_arn, min_confidence
            )
        answers = ModelAnswers(version_name, role, f1, boxes)
        summary = answers.summary(truth_of(entries))
        self.say(
            f"{role} {version_name} on the {len(entries)} test images: "
            f"found {summary['trueBoxesFound']} of {summary['trueBoxes']} true boxes"
        )
        self.result.test_set_detections.append(summary)
        self.result.test_detections.append(answers)

    def _promote_tick(self, version_name: str) -> dict[str, Any] | None:
        self.stack.fire_schedule("PromoteFunction")
        self._drain("promote")
        item = self.stack.client("dynamodb").get_item(
            TableName=self.env["LEDGER_TABLE"],
            Key={"pk": {"S": f"VERSION#{version_name}"}, "sk": {"S": "DECISION"}},
        )
        if "Item" not in item:
            time.sleep(0.3)
            return None
        return {k: next(iter(v.values())) for k, v in item["Item"].items()}

    def collect(self) -> None:
        stack = self.stack
        self.result.predictions = stack.count_objects("predictions/")
        self.result.labels_appended = stack.count_objects("labels/")
        self.result.reviews_requested = stack.review_count()
        self.result.dlq_by_queue = stack.dlq_messages()
        self.result.dlq_messages = sum(self.result.dlq_by_queue.values())
        if self.result.dlq_messages:
            self.result.dead_letters = stack.dead_letters()
            for letter in self.result.dead_letters:
                self.say(f"DEAD LETTER in {letter['queue']}: {json.dumps(letter['body'])[:300]}")
        assert stack.dispatcher is not None
        self.result.function_errors = dict(stack.dispatcher.stats.function_errors)
        self.result.invocations = dict(stack.dispatcher.stats.invocations)
        self.result.rejected_images = self._count_rejected()
        self._save_manifests()

    def _save_manifests(self) -> None:
        """The manifests every model was trained and tested on, kept in OUT/manifests/ after the stack
        is gone (for `labelloop manifest export` and `labelloop datasets diff`)."""
        target = Path(self.result.out_dir or ".") / "manifests"
        target.mkdir(parents=True, exist_ok=True)
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix="manifests/"
        ):
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                (target / item["Key"].rsplit("/", 1)[1]).write_bytes(body)

    def _count_rejected(self) -> int:
        rejected = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix="predictions/"):
            for obj in page.get("Contents", []):
                doc = json.loads(self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read())
                rejected += doc.get("status") == "REJECTED"
                self.result.prediction_keys.append(str(doc.get("image", {}).get("key", "")))
        return rejected

    # -- helpers ------------------------------------------------------------------------------------
    def _put_file(self, path: Path, key: str) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DemoError(f"{path}: cannot read: {exc.strerror}") from exc
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    def _drain(self, what: str) -> None:
        if not self.stack.drain(self.options.step_timeout):
            raise DemoError(f"{what}: events still pending after {self.options.step_timeout:.0f}s")

    @contextmanager
    def _running(self, model_arn: str, version_name: str) -> Iterator[None]:
        """The version RUNNING for the block. A version the loop does not run at that moment (the base
        model before any upload, a rejected candidate, one the controller stopped for idleness) is
        started for the report and stopped after it, as the model controller would."""
        project_arn = self.env["PROJECT_ARN"]

        def status() -> str:
            return str(self._version(project_arn, version_name)["Status"])

        started_here = False
        if status() not in ("RUNNING", "STARTING"):  # STARTING: the model controller is at it
            self._wait_for(lambda: status() in ("STOPPED", "TRAINING_COMPLETED"), f"{version_name} stopped")
            self.rekognition.start_project_version(ProjectVersionArn=model_arn, MinInferenceUnits=1)
            started_here = True
        self._wait_for(lambda: status() == "RUNNING", f"{version_name} to be RUNNING")
        try:
            yield
        finally:
            if started_here:
                self.rekognition.stop_project_version(ProjectVersionArn=model_arn)

    def _version(self, project_arn: str, name: str) -> dict[str, Any]:
        versions = self.rekognition.describe_project_versions(ProjectArn=project_arn, VersionNames=[name])
        return dict(versions["ProjectVersionDescriptions"][0])

    def _wait_training(self, project_arn: str, name: str, step: str) -> dict[str, Any]:
        return self._wait_for(
            lambda: v if (v := self._version(project_arn, name))["Status"] in TERMINAL_TRAINING else None,
            f"{step} of {name}",
        )

    def _wait_for(self, probe: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + self.options.step_timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(0.2)
        raise DemoError(f"timed out after {self.options.step_timeout:.0f}s waiting for {what}")


def _manifest_asset(bucket: str, key: str) -> dict[str, Any]:
    return {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}


def _with_attribute(line: dict[str, Any], attribute: str) -> dict[str, Any]:
    """Re-key a manifest line to the stack's label attribute (and its -metadata twin)."""
    keys = [k for k in line if k not in ("source-ref",) and not k.endswith("-metadata")]
    if len(keys) != 1 or keys[0] == attribute:
        return line
    old = keys[0]
    metadata = dict(line[f"{old}-metadata"])
    metadata["job-name"] = f"labeling-job/{attribute}"
    return {"source-ref": line["source-ref"], attribute: line[old], f"{attribute}-metadata": metadata}


def _f1(version: dict[str, Any]) -> float | None:
    score = (version.get("EvaluationResult") or {}).get("F1Score")
    return None if score is None else float(score)  # rounded once, when printed (format_f1)


def _now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON document or None) of one request; HTTP errors are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")[:500]
    except urllib.error.URLError as exc:
        raise DemoError(f"{method} {url}: {exc.reason}") from exc


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": round(ordered[-1], 1)}


def _http_json(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise DemoError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise DemoError(f"{method} {url}: {exc.reason}") from exc


def summary_text(result: DemoResult) -> str:
    lines = [
        "labelloop local demo — summary",
        f"  review backend             {result.review_backend}",
        f"  fixed test images          {result.test_images}  (every model version is scored on them)",
        f"  base images imported       {result.base_images}",
        f"  images uploaded            {result.images_uploaded}",
        f"  predictions written        {result.predictions}  (rejected images: {result.rejected_images})",
        f"  reviews requested          {result.reviews_requested}",
        f"  reviews completed          {result.reviews_completed}  (SIMULATED REVIEWER, true labels)",
        f"  label lines appended       {result.labels_appended}",
        f"  trainings started          {result.trainings_started}",
        f"  models promoted            {result.models_promoted}  {result.promotion_reason or ''}".rstrip(),
        f"  F1 before → after          {format_f1(result.f1_before)} → {format_f1(result.f1_after)}",
        *(
            f"  on the {result.test_images} test images   {d['version']}: found {d['trueBoxesFound']} of "
            f"{d['trueBoxes']} true boxes ({d['detections']} detections)"
            for d in result.test_set_detections
        ),
        f"  dead-letter messages       {result.dlq_messages}",
        f"  duration                   {result.duration_seconds:.1f}s",
    ]
    if result.replay is not None:
        r = result.replay
        lines.append(
            f"  replay                     {r['events_replayed']} events replayed → new reviews "
            f"{r['new_reviews']}, new label lines {r['new_label_lines']}, "
            f"new trainings {r['new_trainings']}"
        )
    if result.report_path:
        lines.append(f"  report                     {result.report_path}")
    if result.logs_dir:
        lines.append(f"  function logs              {result.logs_dir}/")
    return "\n".join(lines)


def main(options: DemoOptions, as_json: bool) -> int:
    progress = Progress()
    try:
        with warnings.catch_warnings():
            # Powertools warns on every invocation that emitted no metric; not news for a demo.
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            result = run_demo(options, progress)
    except (DemoError, StackError, TemplateError, DatasetError) as exc:
        print(f"labelloop local demo failed: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(summary_text(result), file=sys.stderr)
        print(json.dumps(result.as_dict(), sort_keys=True))
    else:
        print(summary_text(result))
    return 0 if result.dlq_messages == 0 else 2
