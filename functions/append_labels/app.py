"""AppendLabels: a finished review (A2I or built-in) -> `labels/<review>.json`, ledger, LabelsAppended."""

from labelloop_core.entrypoint import lambda_entrypoint
from labelloop_core.inbound.review_finished import review_finished
from labelloop_core.services.append_labels import AppendLabelsService

lambda_handler = lambda_entrypoint(review_finished, AppendLabelsService)
