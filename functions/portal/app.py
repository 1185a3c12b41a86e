"""Portal: the review portal's front end and config.json over the HTTP API, with a strict CSP."""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.http_api import http_request
from labelloop_core.services.portal import PortalService

lambda_handler = lambda_entrypoint(http_request, PortalService)
