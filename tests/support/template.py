"""template.yaml as tests read it: through the local stack's own loader, so there is one reading of
CloudFormation's short tags (`!Ref`, `!GetAtt`, `!Sub`...) in the whole repository."""

from __future__ import annotations

from functools import cache
from typing import Any

from labelloop_local.stack.template import SamTemplate, load_template
from tests.support.paths import TEMPLATE_PATH


@cache
def repo_template() -> SamTemplate:
    return load_template(TEMPLATE_PATH)


def template_document() -> dict[str, Any]:
    """The parsed template (short tags in their long `{"Fn::...": ...}` form)."""
    return repo_template().document
