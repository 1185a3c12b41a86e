"""The layer's process-wide state, and the one way to forget it.

A Lambda container keeps these between invocations, and that is the point: each is built once, at
first use, and read many times. Something that runs several "containers" in one process (the
local stack starting again, a test that switches endpoints, a benchmark) calls `reset()` to start
from nothing, as a new container would:

- settings parsed per settings class (`config.load_settings`);
- the service each function built from them (`entrypoint`), and with it the active model ARN
  that Detect's model registry caches for `MODEL_CACHE_SECONDS`;
- boto3 clients, one per service and endpoint settings (`adapters.clients`);
- compiled JSON Schema validators (`schemas`);
- the A2I task UI template read from the package (`task_ui`);
- the review portal's files read from the package (`services.portal`).

Powertools Logger, Metrics and Tracer instances (`observability`) are kept: they are per service
name, hold nothing between invocations (metrics are flushed by every invocation) and the handlers
hold references to them from import time.
"""

from __future__ import annotations


def reset(*, clients: bool = True) -> None:
    """Forget every cache listed above. `clients=False` keeps the boto3 clients (they are keyed by
    region, endpoint and credentials settings, so they stay right; creating one costs ~0.2 s)."""
    from labelloop_core import config, entrypoint, schemas, task_ui
    from labelloop_core.adapters import clients as boto3_clients
    from labelloop_core.services import portal

    config.forget_loaded_settings()
    entrypoint.forget_built_services()
    if clients:
        boto3_clients.reset()
    schemas.forget_validators()
    task_ui.task_ui_template.cache_clear()
    portal.portal_file.cache_clear()
