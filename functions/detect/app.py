"""Detect: S3 `Object Created` under incoming/ -> prediction document, ledger, ReviewRequested."""

from labelloop_core import inbound
from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.services.detect import DetectService

lambda_handler = lambda_entrypoint(inbound.object_created, DetectService)
