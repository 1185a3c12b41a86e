"""The A2I worker task UI: a liquid template kept in the repo and shipped in the layer.

The reviewer sees the model's boxes pre-drawn (`initial-value`) and corrects them; the answer is
reported under the element name `annotatedResult` in output.json. template.yaml passes the
template's SHA-256 to the A2I custom resource so that editing the template changes the resource's
properties, which makes CloudFormation update (re-create) the task UI and flow definition.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from labelloop_core.review_answer import ANSWER_ELEMENT as ANSWER_ELEMENT  # the answer the template names

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "task_ui.liquid.html"
MAX_TEMPLATE_CHARS = 128_000  # CreateHumanTaskUi UiTemplate.Content limit


@cache
def task_ui_template() -> str:
    """The liquid template content; ValueError when it exceeds the CreateHumanTaskUi limit."""
    content = TEMPLATE_PATH.read_text(encoding="utf-8")
    if len(content) > MAX_TEMPLATE_CHARS:
        raise ValueError(
            f"{TEMPLATE_PATH.name} has {len(content)} characters, "
            f"CreateHumanTaskUi accepts {MAX_TEMPLATE_CHARS}"
        )
    return content


def template_sha256(content: str | None = None) -> str:
    """Hex SHA-256 of the template content (of the shipped template when `content` is None)."""
    text = task_ui_template() if content is None else content
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
