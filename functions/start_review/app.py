"""StartReview: labelloop `ReviewRequested` (or its schedule) -> one review per image version and model,
in the review backend, within the review budget."""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.review_requested import start_review_event
from labelloop_core.services.start_review import StartReviewService

lambda_handler = lambda_entrypoint(start_review_event, StartReviewService)
