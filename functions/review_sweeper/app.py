"""ReviewSweeper: schedule -> expired review tasks recorded, interrupted completions finished."""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.schedule import schedule_tick
from labelloop_core.services.review_sweeper import ReviewSweeperService

lambda_handler = lambda_entrypoint(schedule_tick, ReviewSweeperService)
