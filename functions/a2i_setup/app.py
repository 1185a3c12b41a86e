"""Custom::A2IResources: creates, replaces and deletes the A2I task UI and flow definition.

CloudFormation invokes it asynchronously and waits for the answer at ResponseURL, which the
service always sends (SUCCESS or FAILED), also on unexpected errors and shortly before the timeout.
"""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.custom_resource import custom_resource_request
from labelloop_core.services.a2i_setup import A2ISetupService

lambda_handler = lambda_entrypoint(custom_resource_request, A2ISetupService)
