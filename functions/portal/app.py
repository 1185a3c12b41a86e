"""Portal: the review portal's front end and config.json over the HTTP API, with a strict CSP."""

from labelloop_core import inbound
from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.services.portal import PortalService

lambda_handler = lambda_entrypoint(inbound.http_request, PortalService)
