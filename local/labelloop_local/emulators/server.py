"""One local HTTP endpoint for Rekognition Custom Labels, SageMaker (A2I setup), the A2I runtime,
the review portal, and the Lambda and CloudFormation APIs of the local stack, speaking the real wire
protocols so unchanged boto3 code works against it.

Clients point at it with boto3's standard settings (see `LocalServices.endpoint_env()`):
`AWS_ENDPOINT_URL_REKOGNITION`, `AWS_ENDPOINT_URL_SAGEMAKER`, `AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME`,
`AWS_ENDPOINT_URL_LAMBDA`, `AWS_ENDPOINT_URL_CLOUDFORMATION`.
Dispatch: `X-Amz-Target: RekognitionService.*` / `SageMaker.*` (JSON 1.1), `/human-loops...` (A2I
REST-JSON), `/2015-03-31/functions/...` (Lambda REST-JSON), a form `POST /` with `Action=` (CloudFormation
query), `/portal/...` (the review portal), `/_labelloop/faults` (fault injection).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from labelloop_local.emulators.a2i import A2IService
from labelloop_local.emulators.common import AwsEndpoints, AwsError
from labelloop_local.emulators.control_plane import LAMBDA_PREFIX, MAPPINGS_PATH, ControlPlane, StackView
from labelloop_local.emulators.faults import Fault, FaultInjector, FaultSpecError
from labelloop_local.emulators.portal import Portal, Response, error_response, json_response
from labelloop_local.emulators.rekognition import RekognitionService
from labelloop_local.emulators.sagemaker import SageMakerService

LOG = logging.getLogger(__name__)

JSON_11 = "application/x-amz-json-1.1"
TICK_SECONDS = 0.1
# Service name in the fault API, and the code a JSON 1.1 service answers for an unexpected failure.
_JSON_SERVICES = {
    "RekognitionService": ("rekognition", "InternalServerError"),
    "SageMaker": ("sagemaker", "InternalFailure"),
}


class LocalServices:
    """The local Custom Labels + SageMaker/A2I services and the review portal on one port."""

    def __init__(
        self,
        s3_endpoint_url: str,
        region: str = "us-east-1",
        data_dir: Path | str | None = None,
        events_endpoint_url: str | None = None,
        transition_seconds: float = 0.5,
        detector: Any = None,
        *,
        model_start_seconds: float | None = None,
        model_stop_seconds: float | None = None,
        inference_tps_per_unit: float | None = None,
    ) -> None:
        """`data_dir` keeps state across restarts (a fresh temporary directory when None);
        `events_endpoint_url` defaults to the S3 endpoint (one moto server serves both);
        `transition_seconds` is how long STARTING/STOPPING/Initializing/Stopping last;
        `detector` replaces `labelloop_local.emulators.detector` (tests); a Custom Labels model takes
        `model_start_seconds`/`model_stop_seconds` (default `transition_seconds`) to start and stop, and
        serves `inference_tps_per_unit` images per second per inference unit (None: unlimited)."""
        self.data_dir = (
            Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="labelloop-services-"))
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.region = region
        aws = AwsEndpoints(s3_endpoint_url, events_endpoint_url or s3_endpoint_url, region)
        self.faults = FaultInjector()
        self.sagemaker = SageMakerService(self.data_dir, region, lambda: self.base_url, transition_seconds)
        self.rekognition = RekognitionService(
            self.data_dir,
            region,
            aws,
            transition_seconds,
            detector,
            start_seconds=model_start_seconds,
            stop_seconds=model_stop_seconds,
            tps_per_inference_unit=inference_tps_per_unit,
        )
        self.a2i = A2IService(self.data_dir, region, self.sagemaker, aws, transition_seconds)
        self.portal = Portal(self.a2i, self.sagemaker)
        self.control_plane = ControlPlane()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._base_url = ""

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("LocalServices is not started")
        return self._base_url

    @property
    def portal_url(self) -> str:
        return f"{self.base_url}/portal/"

    def endpoint_env(self) -> dict[str, str]:
        """The environment that sends boto3's Rekognition, SageMaker, A2I, Lambda and CloudFormation
        calls here."""
        return {
            "AWS_ENDPOINT_URL_REKOGNITION": self.base_url,
            "AWS_ENDPOINT_URL_SAGEMAKER": self.base_url,
            "AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME": self.base_url,
            "AWS_ENDPOINT_URL_LAMBDA": self.base_url,
            "AWS_ENDPOINT_URL_CLOUDFORMATION": self.base_url,
        }

    def attach_stack(self, stack: StackView | None) -> None:
        """Answer Lambda and CloudFormation calls from this provisioned stack (None: no stack)."""
        self.control_plane.attach(stack)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            return self.base_url
        server = _Server((host, port), _Handler)
        server.services = self
        self._server = server
        self._base_url = f"http://{host}:{server.server_address[1]}"
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=server.serve_forever, name="labelloop-services-http", daemon=True),
            threading.Thread(target=self._tick_loop, name="labelloop-services-tick", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.rekognition.resume()
        LOG.info("local AWS services listening on %s", self._base_url)
        return self._base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def inject_fault(self, service: str, operation: str, error: str, count: int = 1) -> Fault:
        """Make the next `count` calls of `operation` ("*" = any) on `service` fail with `error`."""
        return self.faults.add(service, operation, error, count)

    def clear_faults(self) -> None:
        self.faults.clear()

    def _tick_loop(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            for service in (self.sagemaker, self.rekognition, self.a2i):
                try:
                    service.tick()
                except Exception:  # keep ticking: one failing transition must not stop the others
                    LOG.exception("%s tick failed", type(service).__name__)

    # -- request dispatch (called from handler threads) -----------------------------------------
    def dispatch(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response:
        split = urlsplit(raw_path)
        path, query = split.path, dict(parse_qsl(split.query))
        target = headers.get("X-Amz-Target")
        if target:
            return self._json_protocol(target, body)
        if path == "/human-loops" or path.startswith("/human-loops/"):
            return self._a2i(method, path, query, body)
        if path.startswith(LAMBDA_PREFIX) or path.startswith(MAPPINGS_PATH):
            return self._lambda(method, path, query, headers, body)
        if (
            path == "/"
            and method == "POST"
            and "x-www-form-urlencoded" in (headers.get("Content-Type") or "")
        ):
            return self.control_plane.cloudformation_request(body)
        if path == "/portal" or path.startswith("/portal/"):
            return self.portal.handle(method, path, query, body)
        if path == "/_labelloop/faults":
            return self._faults_api(method, body)
        if path == "/" and method == "GET":
            return Response(302, "text/plain", b"", {"Location": "/portal/"})
        return error_response(404, f"nothing at {method} {path}")

    def _json_protocol(self, target: str, body: bytes) -> Response:
        prefix, _, operation = target.partition(".")
        known = _JSON_SERVICES.get(prefix)
        if known is None:
            return _aws_json_error(AwsError("UnknownOperationException", f"unknown target {target}"))
        service_name, internal_code = known
        service = self.rekognition if service_name == "rekognition" else self.sagemaker
        try:
            handler = service.operations.get(operation)
            if handler is None:
                raise AwsError(
                    "UnknownOperationException", f"{operation} is not supported by the local {prefix}"
                )
            request = _json_body(body, "SerializationException")
            self.faults.check(service_name, operation)
            return Response(200, JSON_11, json.dumps(handler(request)).encode("utf-8"))
        except AwsError as error:
            return _aws_json_error(error)
        except Exception as error:  # a bug or an S3 outage: answer as AWS would, and keep the trace
            LOG.exception("%s failed", target)
            return _aws_json_error(AwsError(internal_code, f"Internal error: {error}", 500))

    def _a2i(self, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
        try:
            operation, handler, name = self.a2i.route(method, path)
            request = _json_body(body, "ValidationException") if method == "POST" else {}
            self.faults.check("a2i", operation)
            result = handler(request, query) if name is None else handler(request, query, name)
            return Response(200, "application/json", json.dumps(result).encode("utf-8"))
        except AwsError as error:
            return _rest_json_error(error)
        except Exception as error:
            LOG.exception("A2I %s %s failed", method, path)
            return _rest_json_error(AwsError("InternalServerException", f"Internal error: {error}", 500))

    def _lambda(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> Response:
        try:
            if path.startswith(MAPPINGS_PATH):
                operation = {"PUT": "UpdateEventSourceMapping"}.get(method, "GetEventSourceMapping")
                self.faults.check("lambda", operation)
                return self.control_plane.mappings_request(method, path, query, body)
            operation = "Invoke" if path.endswith("/invocations") else "GetFunctionConfiguration"
            self.faults.check("lambda", operation)
            return self.control_plane.lambda_request(method, path, query, headers, body)
        except AwsError as error:
            return _rest_json_error(error)
        except Exception as error:
            LOG.exception("Lambda %s %s failed", method, path)
            return _rest_json_error(AwsError("ServiceException", f"Internal error: {error}", 500))

    def _faults_api(self, method: str, body: bytes) -> Response:
        if method == "GET":
            return json_response(200, {"faults": self.faults.pending()})
        if method == "DELETE":
            self.faults.clear()
            return json_response(200, {"faults": []})
        if method != "POST":
            return error_response(405, "use GET, POST or DELETE")
        try:
            fault = self.faults.add_from_request(json.loads(body or b"null"))
        except (ValueError, FaultSpecError) as error:
            return error_response(400, str(error))
        return json_response(200, {"fault": fault.__dict__})


def _json_body(body: bytes, code: str) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError as error:
        raise AwsError(code, f"The request body is not valid JSON: {error}") from error
    if not isinstance(doc, dict):
        raise AwsError(code, "The request body must be a JSON object")
    return doc


def _aws_json_error(error: AwsError) -> Response:
    doc = {"__type": error.code, "Message": error.message}
    return Response(error.status, JSON_11, json.dumps(doc).encode("utf-8"))


def _rest_json_error(error: AwsError) -> Response:
    doc = {"message": error.message}
    return Response(
        error.status, "application/json", json.dumps(doc).encode("utf-8"), {"x-amzn-ErrorType": error.code}
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    services: LocalServices


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses pooled connections
    server: _Server

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            response = self.server.services.dispatch(method, self.path, self.headers, body)
        except Exception as error:  # never leave a client hanging without an answer
            LOG.exception("request %s %s failed", method, self.path)
            response = error_response(500, f"internal error: {error}")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s - %s", self.address_string(), format % args)
