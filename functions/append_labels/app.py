"""AppendLabels: a finished review (A2I or built-in) -> `labels/<review>.json`, ledger, LabelsAppended."""

from labelloop_core import inbound
from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.services.append_labels import AppendLabelsService

lambda_handler = lambda_entrypoint(inbound.review_finished, AppendLabelsService)
