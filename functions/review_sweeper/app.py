"""ReviewSweeper: schedule -> expired review tasks recorded, interrupted completions finished."""

from labelloop_core import inbound
from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.services.review_sweeper import ReviewSweeperService

lambda_handler = lambda_entrypoint(inbound.schedule_tick, ReviewSweeperService)
