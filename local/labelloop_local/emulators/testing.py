"""An in-process local AWS for tests and tools: a moto server plus LocalServices, both on 127.0.0.1.

with local_aws(tmp_path) as aws:
    s3 = aws.client("s3"); rekognition = aws.client("rekognition")
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelloop_local.emulators.common import FAKE_CREDENTIALS
from labelloop_local.emulators.server import LocalServices

LOCAL_SERVICES = {"rekognition", "sagemaker", "sagemaker-a2i-runtime"}


@dataclass
class LocalAws:
    moto_url: str
    services: LocalServices
    region: str

    def client(self, service: str, max_attempts: int = 1) -> Any:
        """A boto3 client for `service` at the right local endpoint; no retries unless asked."""
        import boto3
        from botocore.config import Config

        endpoint = self.services.base_url if service in LOCAL_SERVICES else self.moto_url
        return boto3.session.Session(**FAKE_CREDENTIALS, region_name=self.region).client(
            service,
            endpoint_url=endpoint,
            config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts}),
        )


@contextmanager
def local_aws(
    data_dir: Path, region: str = "us-east-1", transition_seconds: float = 0.05, detector: Any = None
) -> Iterator[LocalAws]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per moto request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    # moto keeps its backends per process: start every use from an empty account
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).close()
    services = LocalServices(
        moto_url, region, data_dir, transition_seconds=transition_seconds, detector=detector
    )
    services.start()
    try:
        yield LocalAws(moto_url, services, region)
    finally:
        services.stop()
        moto.stop()


def wait_for(check: Any, timeout: float = 120.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `check()` until it returns something truthy (asynchronous AWS work), or fail naming `what`."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s; last value: {last!r}")


def create_active_flow(sagemaker: Any, name: str, ui_name: str, output_path: str, ui_template: str) -> str:
    """A task UI and a flow definition for it, waited until Active (as the A2I setup custom resource does)."""
    ui_arn = sagemaker.create_human_task_ui(HumanTaskUiName=ui_name, UiTemplate={"Content": ui_template})[
        "HumanTaskUiArn"
    ]
    flow_arn = sagemaker.create_flow_definition(
        FlowDefinitionName=name,
        RoleArn="arn:aws:iam::123456789012:role/a2i",
        HumanLoopConfig={
            "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/pizza",
            "HumanTaskUiArn": ui_arn,
            "TaskTitle": "Box the pizza slices",
            "TaskDescription": "Correct the model's boxes",
            "TaskCount": 1,
            "TaskTimeLimitInSeconds": 300,
        },
        OutputConfig={"S3OutputPath": output_path},
    )["FlowDefinitionArn"]
    wait_for(
        lambda: (
            sagemaker.describe_flow_definition(FlowDefinitionName=name)["FlowDefinitionStatus"] == "Active"
        ),
        what=f"flow definition {name} Active",
    )
    return str(flow_arn)
