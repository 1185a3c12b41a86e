"""Detect: batches of the DetectQueue (S3 `Object Created` events under incoming/) -> prediction
documents, ledger, ReviewRequested; returns the partial batch response (`batchItemFailures`)."""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.uploads import queued_uploads
from labelloop_core.services.detect import DetectService

lambda_handler = lambda_entrypoint(queued_uploads, DetectService)
