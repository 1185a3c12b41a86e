"""Inference on demand on the local stack (DESIGN §10, issue 9), end to end and fast: the real Detect and
ModelController handlers, the DetectQueue and its event source mapping as template.yaml declares
them, the local Custom Labels service with a start and stop time and a TPS cap.

Seconds instead of minutes: the controller's schedule fires every 0.25 s, ModelIdleMinutes is 0.02
(1.2 s), the model starts in 0.5 s and stops in 0.3 s; the detector is `BoxMemoryDetector`, whose
training and detection take microseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from labelloop_core.adapters.ledger import ModelLedger
from labelloop_local.cli.status import _Clients, read_status, status_text
from labelloop_local.demo import sampledata
from labelloop_local.demo.run import DemoOptions, DemoResult, _DemoRun
from labelloop_local.stack.local_stack import LocalStack
from tests.support.box_memory import BoxMemoryDetector
from tests.support.paths import TEMPLATE_PATH

pytestmark = pytest.mark.integration

IDLE_SECONDS = 1.2
PARAMS = {"ModelIdleMinutes": str(IDLE_SECONDS / 60), "LogLevel": "WARNING"}


@dataclass
class OnDemand:
    stack: LocalStack
    images: list[bytes]
    model_arn: str
    uploaded: int = 0

    @property
    def version(self) -> dict[str, object]:
        return dict(self.stack.services.rekognition.store.data["versions"][self.model_arn])

    def status(self) -> str:
        return str(self.version["status"])

    def upload(self, count: int) -> None:
        assert self.stack.stack is not None
        s3 = self.stack.client("s3")
        for _ in range(count):
            body = self.images[self.uploaded % len(self.images)]
            s3.put_object(
                Bucket=self.stack.stack.bucket, Key=f"incoming/od-{self.uploaded:04d}.png", Body=body
            )
            self.uploaded += 1

    def runs(self) -> list[object]:
        assert self.stack.stack is not None
        return list(ModelLedger(self.stack.stack.table, self.stack.client("dynamodb")).runs())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def on_demand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnDemand]:
    work: Path = tmp_path_factory.mktemp("on-demand")
    dataset = sampledata.generate(work / "data", n_images=8, seed=3)
    names = sorted(dataset.entries)
    with LocalStack(
        TEMPLATE_PATH,
        params=PARAMS,
        data_dir=work / "stack",
        time_scale=1 / 6000,
        detector=BoxMemoryDetector,
        schedules={"ModelControllerFunction": 0.25},
        model_start_seconds=0.5,
        model_stop_seconds=0.3,
    ) as stack:
        setup = _DemoRun(
            stack, dataset, lambda message: None, DemoOptions(template=TEMPLATE_PATH), DemoResult()
        )
        setup.import_base(names[:4])
        setup.train_base_model()  # made active, not started
        arn = str(stack.client("ssm").get_parameter(Name=setup.active_model_parameter)["Parameter"]["Value"])
        images = [dataset.entries[name].path.read_bytes() for name in names[4:]]
        yield OnDemand(stack, images, arn)


def _predictions(world: OnDemand) -> int:
    return world.stack.count_objects("predictions/")


def test_uploads_to_a_stopped_model_start_it_once_drain_and_it_stops_after_the_idle_window(
    on_demand: OnDemand,
) -> None:
    world = on_demand
    assert world.status() == "TRAINING_COMPLETED"  # never started: nothing is billed
    world.upload(6)

    wait_until(lambda: _predictions(world) == 6, "six predictions")
    wait_until(lambda: world.status() == "STOPPED", "the idle stop")

    assert world.version["runs"] == 1  # one start, one running interval billed
    [run] = world.runs()
    assert run.stopped_at is not None and run.min_units == 1  # type: ignore[attr-defined]
    # Stopped for idleness, not before ModelIdleMinutes without work (how soon after it is a budget
    # that bench/bench_burst.py measures: `idle_stop_seconds`).
    assert world.stack.stack is not None
    ledger = ModelLedger(world.stack.stack.table, world.stack.client("dynamodb"))
    last_detection = ledger.read_control().last_detection_at
    assert last_detection is not None
    idle = (run.stopped_at - datetime.fromisoformat(last_detection)).total_seconds()  # type: ignore[attr-defined]
    assert idle >= IDLE_SECONDS - 0.01
    assert sum(world.stack.dlq_messages().values()) == 0
    assert world.stack.dispatcher is not None
    assert world.stack.dispatcher.stats.function_errors.get("DetectFunction", 0) == 0


def test_a_burst_over_the_models_throughput_waits_in_the_queue_and_never_reaches_a_dlq(
    on_demand: OnDemand,
) -> None:
    world = on_demand
    wait_until(lambda: world.status() == "STOPPED", "a stopped model")
    throughput = world.stack.services.rekognition.throughput
    # One image every two seconds: five uploads at once cannot all pass, however slow this machine is.
    throughput.tps_per_unit = 0.5
    try:
        before = _predictions(world)
        world.upload(5)
        wait_until(lambda: _predictions(world) == before + 5, "five more predictions", timeout=90)
    finally:
        throughput.tps_per_unit = None
    assert throughput.throttled > 0  # the model was the bottleneck...
    assert sum(world.stack.dlq_messages().values()) == 0  # ...and nothing was dead-lettered for it
    assert world.stack.dispatcher is not None
    assert world.stack.dispatcher.stats.function_errors.get("DetectFunction", 0) == 0
    wait_until(lambda: world.status() == "STOPPED", "the idle stop")
    assert world.version["runs"] == 2  # exactly one more start for the whole burst


def test_labelloop_status_reports_the_model_the_queue_and_this_months_running_time(
    on_demand: OnDemand,
) -> None:
    """What `labelloop local status` prints, through the same CloudFormation, Lambda, SQS, DynamoDB,
    SSM and Rekognition calls as `labelloop status --stack NAME` on AWS."""
    world = on_demand
    wait_until(lambda: world.status() == "STOPPED", "a stopped model")
    services = ("cloudformation", "lambda", "sqs", "dynamodb", "ssm", "rekognition")
    assert world.stack.stack is not None
    status = read_status(world.stack.stack.stack_name, _Clients(*(world.stack.client(s) for s in services)))

    assert (status.model_arn, status.model_status, status.consuming) == (
        world.model_arn,
        "STOPPED",
        "Disabled",
    )
    assert (status.images_waiting, status.in_flight) == (0, 0)
    assert status.idle_minutes == pytest.approx(IDLE_SECONDS / 60)
    assert status.model_starts >= 1 and status.running_hours > 0
    assert status.inference_unit_hours == pytest.approx(status.running_hours)  # one unit
    assert status.estimated_cost == round(status.inference_unit_hours * 4.0, 2)  # the default price
    assert [training.status for training in status.trainings] == ["STOPPED"]
    text = status_text(status)
    assert "STOPPED" in text and "inference-unit hours" in text and "dead letters      0" in text
