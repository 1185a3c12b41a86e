"""StartReview: labelloop `ReviewRequested` -> one review per image version and model."""

from labelloop_core import inbound
from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.services.start_review import StartReviewService

lambda_handler = lambda_entrypoint(inbound.review_requested, StartReviewService)
