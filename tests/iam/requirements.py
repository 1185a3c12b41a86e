"""What IAM must allow for each recorded AWS call: the action(s), the resource ARN(s), the request context.

One call can need several permissions: a DynamoDB transaction needs the item action of every one of
its actions on every table it names; a Query on an index needs the index ARN; a GET of an object
version needs s3:GetObjectVersion; an S3 request whose object turned out missing saw 404 only
because the caller may list the bucket (without s3:ListBucket S3 answers 403, and a GET or HEAD
carries no s3:prefix, so only an unconditioned grant helps); Rekognition reads the image of
DetectCustomLabels, and the manifests and every image they reference for CreateProjectVersion, with
the caller's own rights, and writes the training output with them too ("Set up SDK permissions").

Every action, resource ARN and condition key produced here is checked against the Service
Authorization Reference (tests/iam/reference.py), so a typo in this table fails instead of proving
nothing. A call with no entry here fails the proof: add its mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from tests.iam import reference
from tests.iam.evaluator import ContextValue, Request

# The caller saw "no such object": with s3:ListBucket S3 says 404, without it 403 AccessDenied.
S3_MISSING = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
# A flow that stubs AccessDenied tests the code's handling of a denial: no grant is expected.
DENIED = {"AccessDenied", "AccessDeniedException"}


@dataclass(frozen=True)
class Requirement:
    request: Request
    why: str  # the call and, for derived permissions, the reason


@dataclass(frozen=True)
class Call:
    principal: str
    service: str
    operation: str
    region: str
    account: str
    params: Mapping[str, Any]
    error: str | None = None
    derived: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], account: str) -> Call:
        return cls(
            principal=record["principal"],
            service=record["service"],
            operation=record["operation"],
            region=record["region"],
            account=account,
            params=record["params"],
            error=record.get("error"),
            derived=record.get("derived") or {},
        )

    def describe(self) -> str:
        names = {
            key: value for key, value in self.params.items() if isinstance(value, str) and len(value) < 300
        }
        shown = ", ".join(f"{key}={value}" for key, value in sorted(names.items()))
        outcome = f" -> {self.error}" if self.error else ""
        return f"{self.service}.{self.operation}({shown}){outcome}"


class UnmappedCall(Exception):
    """A recorded call this module has no IAM mapping for."""


Mapper = Callable[[Call], Iterator[tuple[str, str, dict[str, ContextValue], str]]]
_MAPPERS: dict[tuple[str, str], Mapper] = {}


def maps(service: str, *operations: str) -> Callable[[Mapper], Mapper]:
    def register(mapper: Mapper) -> Mapper:
        for operation in operations:
            _MAPPERS[(service, operation)] = mapper
        return mapper

    return register


def mapped_operations() -> list[tuple[str, str]]:
    return sorted(_MAPPERS)


def requirements(call: Call) -> list[Requirement]:
    """The permissions `call` needs, each validated against the Service Authorization Reference."""
    if call.error in DENIED:
        return []
    mapper = _MAPPERS.get((call.service, call.operation))
    if mapper is None:
        raise UnmappedCall(
            f"no IAM mapping for {call.service}.{call.operation}: add it to tests/iam/requirements.py"
        )
    found = []
    for action, resource, context, reason in mapper(call):
        resource_type = reference.matching_resource_type(action, resource)
        reference.check_condition_keys(action, resource_type, list(context))
        why = call.describe() + (f" [{reason}]" if reason else "")
        found.append(Requirement(Request(action, resource, context), why))
    return found


# --- ARNs ---------------------------------------------------------------------------------------
def s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def s3_bucket(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _arn(call: Call, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{call.region}:{call.account}:{resource}"


def _s3_uri(uri: str) -> tuple[str, str] | None:
    parsed = urlparse(uri)
    return (parsed.netloc, parsed.path.lstrip("/")) if parsed.scheme == "s3" and parsed.netloc else None


# --- S3 -----------------------------------------------------------------------------------------
def _read(bucket: str, key: str, version: str | None, reason: str = "") -> Iterator[Any]:
    # A request naming a version needs s3:GetObjectVersion (S3 API Reference, GetObject: versionId).
    action = "s3:GetObjectVersion" if version and version != "null" else "s3:GetObject"
    yield action, s3_object(bucket, key), {}, reason


def _missing_semantics(call: Call, bucket: str) -> Iterator[Any]:
    if call.error in S3_MISSING:
        yield (
            "s3:ListBucket",
            s3_bucket(bucket),
            {},
            "S3 answers 404 for a missing key only with s3:ListBucket",
        )


@maps("s3", "GetObject", "HeadObject")
def _s3_get(call: Call) -> Iterator[Any]:
    p = call.params
    yield from _read(p["Bucket"], p["Key"], p.get("VersionId"))
    yield from _missing_semantics(call, p["Bucket"])


_PUT_CONTEXT = {
    "IfNoneMatch": "s3:if-none-match",
    "IfMatch": "s3:if-match",
    "ACL": "s3:x-amz-acl",
    "ServerSideEncryption": "s3:x-amz-server-side-encryption",
    "SSEKMSKeyId": "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "StorageClass": "s3:x-amz-storage-class",
}


@maps("s3", "PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
def _s3_put(call: Call) -> Iterator[Any]:
    p = call.params
    context: dict[str, ContextValue] = {
        key: str(p[name]) for name, key in _PUT_CONTEXT.items() if p.get(name)
    }
    yield "s3:PutObject", s3_object(p["Bucket"], p["Key"]), context, ""
    if p.get("Tagging"):
        yield "s3:PutObjectTagging", s3_object(p["Bucket"], p["Key"]), {}, "object tags in the request"


@maps("s3", "AbortMultipartUpload")
def _s3_abort(call: Call) -> Iterator[Any]:
    yield "s3:AbortMultipartUpload", s3_object(call.params["Bucket"], call.params["Key"]), {}, ""


@maps("s3", "CopyObject", "UploadPartCopy")
def _s3_copy(call: Call) -> Iterator[Any]:
    p = call.params
    source = p["CopySource"]
    if isinstance(source, str):
        path, _, query = source.lstrip("/").partition("?versionId=")
        bucket, _, key = unquote(path).partition("/")
        source = {"Bucket": bucket, "Key": key, "VersionId": query or None}
    yield from _read(source["Bucket"], source["Key"], source.get("VersionId"), "copy source")
    yield "s3:PutObject", s3_object(p["Bucket"], p["Key"]), {}, "copy destination"


@maps("s3", "DeleteObject")
def _s3_delete(call: Call) -> Iterator[Any]:
    p = call.params
    action = "s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject"
    yield action, s3_object(p["Bucket"], p["Key"]), {}, ""


@maps("s3", "ListObjectsV2", "ListObjects", "ListObjectVersions")
def _s3_list(call: Call) -> Iterator[Any]:
    p = call.params
    context: dict[str, ContextValue] = {}
    for name, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter"), ("MaxKeys", "s3:max-keys")):
        if p.get(name) is not None:
            context[key] = str(p[name])
    action = "s3:ListBucketVersions" if call.operation == "ListObjectVersions" else "s3:ListBucket"
    yield action, s3_bucket(p["Bucket"]), context, ""


# --- DynamoDB -----------------------------------------------------------------------------------
def _table(call: Call, table: str, index: str | None = None) -> str:
    return _arn(call, "dynamodb", f"table/{table}" + (f"/index/{index}" if index else ""))


@maps("dynamodb", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan")
def _dynamodb_item(call: Call) -> Iterator[Any]:
    p = call.params
    yield f"dynamodb:{call.operation}", _table(call, p["TableName"], p.get("IndexName")), {}, ""


_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


@maps("dynamodb", "TransactWriteItems", "TransactGetItems")
def _dynamodb_transaction(call: Call) -> Iterator[Any]:
    # No "TransactWriteItems" action exists: each action of the transaction is authorized on its own.
    for index, item in enumerate(call.params["TransactItems"]):
        ((kind, action),) = item.items()
        yield (
            _TRANSACT_ACTIONS[kind],
            _table(call, action["TableName"]),
            {},
            f"transaction action {index} {kind}",
        )


@maps("dynamodb", "BatchWriteItem", "BatchGetItem")
def _dynamodb_batch(call: Call) -> Iterator[Any]:
    for table, requests in call.params["RequestItems"].items():
        if call.operation == "BatchGetItem":
            yield "dynamodb:GetItem", _table(call, table), {}, "batch"
            continue
        for kind in sorted({next(iter(request)) for request in requests}):
            action = "dynamodb:PutItem" if kind == "PutRequest" else "dynamodb:DeleteItem"
            yield action, _table(call, table), {}, "batch"


# --- EventBridge, SSM, SQS, Lambda, CloudFormation ------------------------------------------------
@maps("events", "PutEvents")
def _put_events(call: Call) -> Iterator[Any]:
    for index, entry in enumerate(call.params["Entries"]):
        bus = entry.get("EventBusName") or "default"
        arn = bus if bus.startswith("arn:") else _arn(call, "events", f"event-bus/{bus}")
        context: dict[str, ContextValue] = {
            "events:source": entry["Source"],
            "events:detail-type": entry["DetailType"],
        }
        yield "events:PutEvents", arn, context, f"entry {index}"


@maps("ssm", "GetParameter", "PutParameter", "DeleteParameter")
def _ssm_parameter(call: Call) -> Iterator[Any]:
    name = str(call.params["Name"])
    resource = name if name.startswith("arn:") else _arn(call, "ssm", "parameter/" + name.lstrip("/"))
    yield f"ssm:{call.operation}", resource, {}, ""


def _queue_arn(call: Call) -> str:
    parsed = urlparse(call.params["QueueUrl"])
    account, name = parsed.path.strip("/").split("/", 1)
    return f"arn:aws:sqs:{call.region}:{account}:{name}"


@maps(
    "sqs",
    "SendMessage",
    "ReceiveMessage",
    "DeleteMessage",
    "GetQueueAttributes",
    "ChangeMessageVisibility",
    "ListDeadLetterSourceQueues",
)
def _sqs(call: Call) -> Iterator[Any]:
    yield f"sqs:{call.operation}", _queue_arn(call), {}, ""


# The batch APIs have no actions of their own: each entry needs the single message's action.
_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


@maps("sqs", *_SQS_BATCH_ACTIONS)
def _sqs_batch(call: Call) -> Iterator[Any]:
    yield (
        _SQS_BATCH_ACTIONS[call.operation],
        _queue_arn(call),
        {},
        f"{call.operation} is authorized per entry",
    )


@maps("lambda", "GetEventSourceMapping", "UpdateEventSourceMapping")
def _event_source_mapping(call: Call) -> Iterator[Any]:
    uuid = str(call.params["UUID"])
    yield f"lambda:{call.operation}", _arn(call, "lambda", f"event-source-mapping:{uuid}"), {}, ""


@maps("lambda", "GetFunctionConfiguration")
def _lambda(call: Call) -> Iterator[Any]:
    name = str(call.params["FunctionName"])
    yield (
        "lambda:GetFunctionConfiguration",
        name if name.startswith("arn:") else _arn(call, "lambda", f"function:{name}"),
        {},
        "",
    )


@maps("cloudformation", "DescribeStackResource")
def _cloudformation(call: Call) -> Iterator[Any]:
    stack = str(call.params["StackName"])
    resource = stack if stack.startswith("arn:") else _arn(call, "cloudformation", f"stack/{stack}/*")
    yield "cloudformation:DescribeStackResource", resource, {}, ""


@maps("cognito-idp", "AdminCreateUser", "ListUsers", "AdminDeleteUser")
def _cognito_user_pool(call: Call) -> Iterator[Any]:
    pool = str(call.params["UserPoolId"])
    yield f"cognito-idp:{call.operation}", _arn(call, "cognito-idp", f"userpool/{pool}"), {}, ""


# --- Rekognition Custom Labels ----------------------------------------------------------------------
def _s3_object_read(s3: Mapping[str, Any], reason: str) -> Iterator[Any]:
    # Rekognition reads with the caller's rights; how it asks S3 is not documented, so a versioned
    # read needs both s3:GetObject and s3:GetObjectVersion.
    yield "s3:GetObject", s3_object(s3["Bucket"], s3["Name"]), {}, reason
    if s3.get("Version"):
        yield "s3:GetObjectVersion", s3_object(s3["Bucket"], s3["Name"]), {}, reason


def _referenced_images(refs: Any, reason: str) -> Iterator[Any]:
    for ref in refs or []:
        location = _s3_uri(ref)
        if location is not None:
            yield "s3:GetObject", s3_object(*location), {}, reason


@maps("rekognition", "DetectCustomLabels")
def _detect_custom_labels(call: Call) -> Iterator[Any]:
    yield "rekognition:DetectCustomLabels", call.params["ProjectVersionArn"], {}, ""
    image = call.params["Image"].get("S3Object")
    if image:
        yield from _s3_object_read(image, "Rekognition reads the image with the caller's rights")


@maps("rekognition", "DescribeProjects")
def _describe_projects(call: Call) -> Iterator[Any]:
    yield "rekognition:DescribeProjects", "*", {}, "DescribeProjects has no resource type"


@maps("rekognition", "DescribeProjectVersions", "CreateDataset")
def _project_action(call: Call) -> Iterator[Any]:
    yield f"rekognition:{call.operation}", call.params["ProjectArn"], {}, ""
    manifest = ((call.params.get("DatasetSource") or {}).get("GroundTruthManifest") or {}).get("S3Object")
    if manifest:
        yield from _s3_object_read(manifest, "Rekognition reads the manifest with the caller's rights")


@maps("rekognition", "StartProjectVersion", "StopProjectVersion")
def _version_action(call: Call) -> Iterator[Any]:
    yield f"rekognition:{call.operation}", call.params["ProjectVersionArn"], {}, ""


@maps(
    "rekognition", "DescribeDataset", "ListDatasetEntries", "DistributeDatasetEntries", "UpdateDatasetEntries"
)
def _dataset_action(call: Call) -> Iterator[Any]:
    datasets = [d["Arn"] for d in call.params.get("Datasets", [])] or [call.params["DatasetArn"]]
    for dataset in datasets:
        yield f"rekognition:{call.operation}", dataset, {}, ""
    reason = "Rekognition reads the images of the dataset entries with the caller's rights"
    yield from _referenced_images(call.derived.get("referenced"), reason)


@maps("rekognition", "CreateProjectVersion")
def _create_project_version(call: Call) -> Iterator[Any]:
    p = call.params
    yield "rekognition:CreateProjectVersion", p["ProjectArn"], {}, ""
    manifests = call.derived.get("manifests") or {}
    for part in ("TrainingData", "TestingData"):
        for asset in (p.get(part) or {}).get("Assets", []):
            s3 = asset["GroundTruthManifest"]["S3Object"]
            yield from _s3_object_read(s3, f"Rekognition reads the {part} manifest with the caller's rights")
            uri = f"s3://{s3['Bucket']}/{s3['Name']}"
            yield from _referenced_images(manifests.get(uri), f"an image {uri} references")
    output = p["OutputConfig"]
    where = s3_object(output["S3Bucket"], output.get("S3KeyPrefix", "") + "*")
    yield "s3:PutObject", where, {}, "Rekognition writes the training output with the caller's rights"


# --- Amazon A2I and SageMaker ---------------------------------------------------------------------
@maps("sagemaker-a2i-runtime", "StartHumanLoop")
def _start_human_loop(call: Call) -> Iterator[Any]:
    yield "sagemaker:StartHumanLoop", call.params["FlowDefinitionArn"], {}, ""


_NAMED_RESOURCES = {"HumanLoopName": "human-loop", "HumanTaskUiName": "human-task-ui"}


@maps("sagemaker-a2i-runtime", "DescribeHumanLoop", "StopHumanLoop", "DeleteHumanLoop")
@maps("sagemaker", "CreateHumanTaskUi", "DescribeHumanTaskUi", "DeleteHumanTaskUi")
def _named_sagemaker_resource(call: Call) -> Iterator[Any]:
    [(parameter, kind)] = [(p, kind) for p, kind in _NAMED_RESOURCES.items() if p in call.params]
    yield f"sagemaker:{call.operation}", _arn(call, "sagemaker", f"{kind}/{call.params[parameter]}"), {}, ""


@maps("sagemaker", "CreateFlowDefinition", "DescribeFlowDefinition", "DeleteFlowDefinition")
def _flow_definition(call: Call) -> Iterator[Any]:
    p = call.params
    arn = _arn(call, "sagemaker", f"flow-definition/{p['FlowDefinitionName']}")
    if call.operation != "CreateFlowDefinition":
        yield f"sagemaker:{call.operation}", arn, {}, ""
        return
    context: dict[str, ContextValue] = {"sagemaker:WorkteamArn": p["HumanLoopConfig"]["WorkteamArn"]}
    yield "sagemaker:CreateFlowDefinition", arn, context, ""
    passed = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    yield "iam:PassRole", p["RoleArn"], passed, "the flow definition's RoleArn is passed to SageMaker"
    if p.get("Tags"):
        yield "sagemaker:AddTags", arn, {}, "tags in the request"
