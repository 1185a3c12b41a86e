"""ModelController (every minute, and on demand after a promotion): run the active model only while
there is work; switch Detect's consumption with it; record running intervals (DESIGN §10).

Returns the decision (`action`: none, start, stop or wait, with the model's status and the reason).
"""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.control import control_tick
from labelloop_core.services.model_controller import ModelControllerService

lambda_handler = lambda_entrypoint(control_tick, ModelControllerService)
