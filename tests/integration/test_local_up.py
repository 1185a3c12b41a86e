"""`labelloop local up` keeps its work and finds its stack (issue 8): reviews, labels, predictions and
trained models survive stopping and restarting the stack on its data directory (and on the same ports);
a second `up` that cannot start names the port and leaves the running stack's files alone;
`labelloop local upload` and `status` find the running stack from any directory."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labelloop_local.cli import local as local_cli
from labelloop_local.cli import main
from labelloop_local.cli.local import write_env_vars
from labelloop_local.cli.reviewers import Reviewers
from labelloop_local.demo import sampledata
from labelloop_local.demo.run import DemoOptions, DemoResult, _DemoRun
from labelloop_local.stack import state as local_state
from labelloop_local.stack.local_stack import LocalStack
from tests.support.box_memory import BoxMemoryDetector
from tests.support.flows import png_bytes
from tests.support.paths import TEMPLATE_PATH
from tests.support.reviewers import api, request_review, sign_in

pytestmark = pytest.mark.integration

LABEL = "pepperoni pizza slice"
REVIEWER = "keeper@example.com"


def _free_ports(count: int) -> list[int]:
    """Free ports below Linux's ephemeral range (32768-60999): a port the kernel hands to some other
    test's `port 0` socket cannot be one the stack is restarted on."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in chosen:
            chosen.append(port)
    return chosen


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stack(data_dir: Path, ports: list[int]) -> LocalStack:
    return LocalStack(
        TEMPLATE_PATH,
        data_dir=data_dir,
        persist=True,
        services_port=ports[0],
        api_port=ports[1],
        time_scale=1 / 6000,
        detector=BoxMemoryDetector,
        schedules={"ModelControllerFunction": 0.25},
        model_start_seconds=0.2,
        model_stop_seconds=0.2,
    )


def _work(stack: LocalStack) -> dict[str, Any]:
    """What a user sees of the stack's work: reviews, labels, predictions, models."""
    assert stack.stack is not None
    active = stack.client("ssm").get_parameter(Name=str(stack.stack.physical["ActiveModelParameter"]))
    return {
        "reviews": sorted((task["task_id"], task["status"]) for task in stack.review_tasks()),
        "labels": stack.count_objects("labels/"),
        "predictions": stack.count_objects("predictions/"),
        "models": sorted((v["ProjectVersionArn"], v["Status"]) for v in stack.project_versions()),
        "active_model": active["Parameter"]["Value"],
        "reviewers": [reviewer.email for reviewer in _reviewers(stack).list()],
    }


def _reviewers(stack: LocalStack) -> Reviewers:
    assert stack.stack is not None
    return Reviewers(stack.client("cognito-idp"), str(stack.stack.physical["ReviewerUserPool"]))


@dataclass
class Restarted:
    stack: LocalStack  # the second run, restored from the first one's data directory (and still running)
    home: Path
    ports: list[int]
    before: dict[str, Any]  # the first run's work, as it was when it stopped
    reviewed: str
    waiting: str
    token: str  # the reviewer's access token from the first run


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restarted]:
    """`labelloop local up` twice on one per-user data directory and the same ports: the first run
    trains a model, detects an upload, opens two reviews and has one answered, then stops."""
    work = tmp_path_factory.mktemp("local-up")
    dataset = sampledata.generate(work / "data", n_images=4, seed=5)
    names = sorted(dataset.entries)
    home, ports = work / "home", _free_ports(2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(local_state.HOME_VARIABLE, str(home))
        data_dir = local_state.data_dir()
        with _stack(data_dir, ports) as stack:
            assert not stack.restored
            run = _DemoRun(
                stack, dataset, lambda message: None, DemoOptions(template=TEMPLATE_PATH), DemoResult()
            )
            run.import_base(names[:3])
            run.train_base_model()
            assert stack.stack is not None
            stack.client("s3").put_object(
                Bucket=stack.stack.bucket,
                Key="incoming/detected.png",
                Body=dataset.entries[names[3]].path.read_bytes(),
            )
            reviewed = request_review(
                stack,
                "photos/reviewed.png",
                png_bytes(400, 300),
                (400, 300),
                [(LABEL, 30.0, (10, 20, 100, 80))],
            )
            waiting = request_review(
                stack, "photos/waiting.png", png_bytes(400, 300), (400, 300), [(LABEL, 40.0, (5, 5, 50, 50))]
            )
            token = sign_in(stack, REVIEWER)["AccessToken"]
            status, task = api(stack, "GET", "/api/tasks/next", token)
            assert status == 200 and task["taskId"] == reviewed
            answer = {
                "boundingBoxes": [{"label": LABEL, "left": 12, "top": 22, "width": 98, "height": 77}],
                "inputImageProperties": {"width": 400, "height": 300},
            }
            assert api(stack, "POST", f"/api/tasks/{reviewed}/answer", token, answer)[0] == 200
            _wait_until(lambda: stack.count_objects("labels/") == 1, "the reviewed image's label line")
            _wait_until(lambda: stack.count_objects("predictions/") == 1, "the upload's prediction")
            assert stack.drain(timeout=60)
            before = _work(stack)
        assert before["labels"] == 1 and before["predictions"] == 1 and len(before["models"]) == 1
        assert dict(before["reviews"])[reviewed] != dict(before["reviews"])[waiting]

        # The ports the first run used (its connections still closing) do not stop the next `up`.
        local_state.check_ports_free(
            "127.0.0.1", [("local AWS services", ports[0]), ("review API", ports[1])]
        )
        lock = local_state.DataDirLock(data_dir).acquire()  # what the running `up` holds
        try:
            with _stack(data_dir, ports) as stack:
                local_state.write_state(stack.state())
                write_env_vars(stack)
                yield Restarted(stack, home, ports, before, reviewed, waiting, token)
        finally:
            lock.release()


def test_reviews_labels_predictions_and_models_survive_a_restart_on_the_same_ports(
    restarted: Restarted,
) -> None:
    stack = restarted.stack
    assert stack.restored
    assert _work(stack) == restarted.before
    # The restored work is usable: the reviewer's session still holds, the open review is served next.
    status, task = api(stack, "GET", "/api/tasks/next", restarted.token)
    assert status == 200 and task["taskId"] == restarted.waiting
    assert api(stack, "POST", f"/api/tasks/{restarted.waiting}/release", restarted.token)[0] == 200
    assert api(stack, "GET", f"/api/tasks/{restarted.reviewed}", restarted.token)[0] == 403  # answered


def _files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` with its content and modification time, except the logs the running
    stack itself keeps appending to."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "logs" not in path.relative_to(directory).parts
    }


def test_a_second_up_names_the_port_in_use_and_leaves_the_running_stack_alone_which_upload_and_status_find(
    restarted: Restarted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack, home, ports = restarted.stack, restarted.home, restarted.ports
    monkeypatch.setenv(local_state.HOME_VARIABLE, str(home))
    assert stack.dispatcher is not None
    with stack.dispatcher.quiet():  # no function runs and no snapshot is taken meanwhile
        stack.save()
        running = _files(home)
        assert {"stack.json", "env-vars.json", "stack/moto-state.pickle"} <= set(running)

        # Should a refused `up` go on anyway, it would start a second stack here: fail instead of waiting.
        monkeypatch.setattr(local_cli, "_run_stack", lambda *args: pytest.fail("a second up started a stack"))
        common = ["local", "up", "--schedule-interval", "0"]
        assert main([*common, "--port", str(ports[0]), "--api-port", str(_free_ports(1)[0])]) == 1
        refused = capsys.readouterr().err
        assert f"port {ports[0]} (local AWS services)" in refused and "in use" in refused
        assert main([*common, "--port", str(_free_ports(1)[0]), "--api-port", str(ports[1])]) == 1
        assert f"port {ports[1]} (review portal and API)" in capsys.readouterr().err
        # Free ports, but the same data directory: refused too, naming the directory in use.
        free = _free_ports(2)
        assert main([*common, "--port", str(free[0]), "--api-port", str(free[1])]) == 1
        assert str(local_state.data_dir()) in capsys.readouterr().err
        assert _files(home) == running

    # Any directory: the commands find the stack through the per-user state file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "from-elsewhere.png").write_bytes(png_bytes(400, 300))
    env = {**os.environ, local_state.HOME_VARIABLE: str(home)}
    labelloop = [str(Path(sys.executable).with_name("labelloop"))]  # the installed command
    upload = subprocess.run(
        [*labelloop, "local", "upload", "from-elsewhere.png"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert upload.returncode == 0, upload.stderr
    assert stack.stack is not None
    stack.client("s3").head_object(Bucket=stack.stack.bucket, Key="incoming/from-elsewhere.png")
    shown = subprocess.run(
        [*labelloop, "local", "status", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["stack"] == stack.stack_name
    assert status["local_stack"]["portal_url"] == stack.portal_url
    assert status["local_stack"]["data_dir"] == str(local_state.data_dir())
