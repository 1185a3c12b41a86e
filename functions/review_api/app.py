"""ReviewApi: the built-in backend's task API (HTTP API, JWT authorizer) -> claims, answers, completions."""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.http_api import http_request
from labelloop_core.services.review_api import ReviewApiService

lambda_handler = lambda_entrypoint(http_request, ReviewApiService)
