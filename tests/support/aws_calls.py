"""Record every AWS API call a function makes while a test invokes it (DESIGN §11, `make iam`).

The hook sits at botocore's lowest public seam, `BaseClient._make_api_call`, so calls answered by
moto, by a botocore Stubber or by the local services all count, whatever adapter or service class
made them. Each call is attributed to the principal being invoked: `acting_as(...)` (the `invoke`
fixture uses it) sets a context variable; threads started during an invocation (boto3's transfer
manager uploads from its own thread pool) inherit no context variables, so a call without one is
attributed to the single principal currently acting, if there is exactly one.

Recording is off unless pytest runs with `--record-aws-calls=PATH`; the calls and the stacks the
flows provisioned (physical names, attributes, parameters) are then written to PATH as JSON at the
end of the session, for tests/iam to check against the roles in the SAM-translated template.

Some services read S3 with the caller's rights on the caller's behalf (Rekognition reads the
training manifests and every image they list): while the objects still exist, the recorder reads
those manifests and stores the `source-ref`s they name with the call (`derived.referenced`).
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

RECORD_OPTION = "--record-aws-calls"
MAX_TEXT = 64 * 1024  # longer strings and blobs are summarised: none names a resource


@dataclass(frozen=True)
class Invocation:
    principal: str  # the function's logical id in template.yaml (or another principal's id)
    stack: str  # key of the stack snapshot the principal ran against


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("aws_principal", default=None)
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("aws_calls_quiet", default=False)


class CallRecorder:
    """Collects calls in memory; `write` dumps them. One per pytest session (when enabled)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.stacks: dict[str, dict[str, Any]] = {}
        self._active: dict[int, Invocation] = {}
        self._lock = threading.Lock()
        self._next_token = 0

    # --- who is acting -------------------------------------------------------------------------
    def enter(self, invocation: Invocation) -> int:
        with self._lock:
            self._next_token += 1
            self._active[self._next_token] = invocation
            return self._next_token

    def leave(self, token: int) -> None:
        with self._lock:
            self._active.pop(token, None)

    def acting(self) -> Invocation | None:
        invocation = _current.get()
        if invocation is not None:
            return invocation
        with self._lock:
            distinct = set(self._active.values())
        return next(iter(distinct)) if len(distinct) == 1 else None

    def add_stack(self, snapshot: dict[str, Any]) -> str:
        key = hashlib.sha256(json.dumps(snapshot, sort_keys=True, default=str).encode()).hexdigest()[:16]
        with self._lock:
            self.stacks.setdefault(key, snapshot)
        return key

    # --- the calls -----------------------------------------------------------------------------
    def record(
        self, client: Any, operation: str, params: dict[str, Any], error: str | None, presigned: bool = False
    ) -> None:
        invocation = self.acting()
        if invocation is None or _quiet.get():
            return  # the test's own set-up and assertions are not the function's calls
        call = {
            "principal": invocation.principal,
            "stack": invocation.stack,
            "service": client.meta.service_model.service_name,
            "signing_name": client.meta.service_model.signing_name,
            "operation": operation,
            "region": client.meta.region_name,
            "params": _plain(params),
            "error": error,
        }
        derived = {"presigned": True} if presigned else _derived(client, operation, params)
        if derived:
            call["derived"] = derived
        with self._lock:
            self.calls.append(call)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"calls": self.calls, "stacks": self.stacks}
        path.write_text(json.dumps(document, indent=1, sort_keys=True, default=str), encoding="utf-8")


_recorder: CallRecorder | None = None
_installed = False


def recorder() -> CallRecorder | None:
    return _recorder


def install(new: CallRecorder) -> None:
    """Start recording into `new` (the botocore hook is installed once per process)."""
    global _recorder, _installed
    _recorder = new
    if _installed:
        return
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def _make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        active = _recorder
        if active is None:
            return original(self, operation_name, api_params)
        try:
            response = original(self, operation_name, api_params)
        except Exception as error:
            active.record(self, operation_name, api_params, _error_code(error))
            raise
        active.record(self, operation_name, api_params, None)
        return response

    BaseClient._make_api_call = _make_api_call
    _install_presign_hook()
    _installed = True


def _install_presign_hook() -> None:
    """A pre-signed URL makes no call, but the request it signs is authorized with the signer's role
    when someone uses it (the review portal's image links): it is recorded as that call, marked
    `derived.presigned`. botocore gives each new client class the module's function, so clients
    created after this (all of them: recording starts at pytest_configure) use the wrapped one."""
    from botocore import signers

    original = signers.generate_presigned_url

    def generate_presigned_url(self: Any, ClientMethod: str, Params: Any = None, **kwargs: Any) -> Any:
        url = original(self, ClientMethod, Params, **kwargs)
        active = _recorder
        if active is not None:
            operation = self.meta.method_to_api_mapping.get(ClientMethod, ClientMethod)
            active.record(self, operation, dict(Params or {}), None, presigned=True)
        return url

    signers.generate_presigned_url = generate_presigned_url


@contextmanager
def acting_as(principal: str, stack: Any) -> Iterator[None]:
    """Attribute the AWS calls of the block to `principal`, running against the provisioned `stack`."""
    active = _recorder
    if active is None:
        yield
        return
    invocation = Invocation(principal, active.add_stack(stack_snapshot(stack)))
    token = active.enter(invocation)
    reset = _current.set(invocation)
    try:
        yield
    finally:
        _current.reset(reset)
        active.leave(token)


def stack_snapshot(stack: Any) -> dict[str, Any]:
    """What tests/iam needs to resolve the template's intrinsics to the names this stack used."""
    return {
        "stack_name": stack.stack_name,
        "region": stack.region,
        "account": stack.account,
        "params": stack.params,
        "physical": stack.physical,
        "attributes": stack.attributes,
    }


# --- what services read on the caller's behalf --------------------------------------------------
def _derived(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
    service = client.meta.service_model.service_name
    if service == "rekognition" and operation == "CreateProjectVersion":
        manifests = [
            asset["GroundTruthManifest"]["S3Object"]
            for part in ("TrainingData", "TestingData")
            for asset in (params.get(part) or {}).get("Assets", [])
            if "GroundTruthManifest" in asset
        ]
        return {"manifests": {_uri(m): _manifest_refs(client, m) for m in manifests}}
    if service == "rekognition" and operation == "UpdateDatasetEntries":
        blob = (params.get("Changes") or {}).get("GroundTruth", b"")
        text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else str(blob)
        return {"referenced": sorted(_source_refs(text.splitlines()))}
    return None


def _manifest_refs(client: Any, s3_object: dict[str, str]) -> list[str] | None:
    """The source-refs of a manifest (None when it cannot be read: the call then fails anyway)."""
    import boto3

    quiet = _quiet.set(True)
    try:
        s3 = boto3.client("s3", region_name=client.meta.region_name)
        request = {"Bucket": s3_object["Bucket"], "Key": s3_object["Name"]}
        if s3_object.get("Version"):
            request["VersionId"] = s3_object["Version"]
        body = s3.get_object(**request)["Body"].read().decode("utf-8", "replace")
    except Exception:
        return None
    finally:
        _quiet.reset(quiet)
    return sorted(_source_refs(body.splitlines()))


def _source_refs(lines: list[str]) -> set[str]:
    refs = set()
    for line in lines:
        try:
            ref = json.loads(line).get("source-ref")
        except (ValueError, AttributeError):
            continue
        if isinstance(ref, str):
            refs.add(ref)
    return refs


def _uri(s3_object: dict[str, str]) -> str:
    return f"s3://{s3_object['Bucket']}/{s3_object['Name']}"


# --- plumbing ------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-safe copy of the request parameters (blobs and streams summarised)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return {"blob_bytes": len(value), "blob_head": base64.b64encode(bytes(value[:64])).decode()}
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else {"text_chars": len(value)}
    if value is None or isinstance(value, bool | int | float):
        return value
    if hasattr(value, "read"):
        return {"stream": type(value).__name__}
    return str(value)


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "") or type(error).__name__)
    return type(error).__name__


# --- pytest plugin --------------------------------------------------------------------------------
def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        RECORD_OPTION,
        default=None,
        metavar="PATH",
        help="record every AWS call made while a function is invoked, as JSON at PATH (tests/iam)",
    )


def pytest_configure(config: Any) -> None:
    path = config.getoption(RECORD_OPTION)
    if not path:
        return
    install(CallRecorder())
    if _worker_id(config) is None:  # pytest-xdist's controller, or a run without it
        for stale in _worker_parts(Path(path)):
            stale.unlink()


# Tests on the optional third-party seed data make calls that depend on what this machine holds (its
# manifest names images in a placeholder bucket): they are left out, so the recording is the same
# everywhere.
_MACHINE_DEPENDENT_FIXTURES = frozenset({"seed_data", "seed_manifest"})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: Any) -> Iterator[None]:
    quiet = bool(_MACHINE_DEPENDENT_FIXTURES & set(getattr(item, "fixturenames", ())))
    token = _quiet.set(True) if quiet else None
    try:
        yield
    finally:
        if token is not None:
            _quiet.reset(token)


def pytest_sessionfinish(session: Any) -> None:
    """Write the recording. Under pytest-xdist each worker writes its share next to PATH and the
    controller, whose session ends after every worker's, merges the shares into PATH."""
    option = session.config.getoption(RECORD_OPTION)
    if not option or _recorder is None:
        return
    path, worker = Path(option), _worker_id(session.config)
    if worker is not None:
        _recorder.write(path.with_name(f"{path.stem}.{worker}{path.suffix}"))
        return
    parts = _worker_parts(path)
    for part in parts:
        document = json.loads(part.read_text(encoding="utf-8"))
        _recorder.calls += document["calls"]
        _recorder.stacks.update(document["stacks"])
        part.unlink()
    _recorder.write(path)


def _worker_id(config: Any) -> str | None:
    workerinput = getattr(config, "workerinput", None)  # set by pytest-xdist in its workers only
    return None if workerinput is None else str(workerinput["workerid"])


def _worker_parts(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.stem}.gw*{path.suffix}"))
