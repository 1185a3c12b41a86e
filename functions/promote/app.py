"""Promote (schedule): advance the current training one step towards promotion or rejection.

Returns the outcome (`action`: idle, waiting, starting, promoted or rejected, with the reason).
"""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.schedule import schedule_tick
from labelloop_core.services.promote import PromoteService

lambda_handler = lambda_entrypoint(schedule_tick, PromoteService)
