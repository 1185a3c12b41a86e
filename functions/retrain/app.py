"""Retrain (schedule): start a new model version when enough new human labels exist.

Returns the outcome (`started`, `reason`, version...); the schedule window is the event's `time`.
"""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.schedule import schedule_tick
from labelloop_core.services.retrain import RetrainService

lambda_handler = lambda_entrypoint(schedule_tick, RetrainService)
