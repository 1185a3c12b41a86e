"""The A2I worker task UI: structure, the liquid bindings the reviewer relies on, and its deployed hash."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from typing import Any

from labelloop_core import task_ui
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT


class _Elements(HTMLParser):
    """Records each element with its attributes and the chain of open ancestors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None], tuple[str, ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), tuple(self.stack)))
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (
            f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        )
        self.stack.pop()


def _parse(content: str) -> _Elements:
    parser = _Elements()
    parser.feed(content)
    parser.close()
    assert parser.stack == [], f"unclosed elements {parser.stack}"
    return parser


def _render(content: str, task_input: dict[str, Any]) -> str:
    """The liquid subset the template uses: {{ task.input.X | filter | ... }}."""

    def substitute(match: re.Match[str]) -> str:
        path, *filters = [part.strip() for part in match.group(1).split("|")]
        value: Any = task_input[path.removeprefix("task.input.")]
        for name in filters:
            if name == "to_json":
                value = json.dumps(value)
            elif name == "escape":
                value = html.escape(str(value), quote=True)
            elif name == "grant_read_access":
                value = "https://example-bucket.s3.amazonaws.com/presigned?X-Amz-Signature=abc"
            else:
                raise AssertionError(f"unexpected liquid filter {name}")
        return str(value)

    return re.sub(r"\{\{(.*?)\}\}", substitute, content)


def _bounding_box(content: str) -> tuple[dict[str, str | None], tuple[str, ...]]:
    elements = _parse(content).elements
    (box,) = [(attrs, parents) for tag, attrs, parents in elements if tag == "crowd-bounding-box"]
    return box


def test_template_is_a_crowd_form_with_one_bounding_box_answer() -> None:
    content = task_ui.task_ui_template()
    elements = _parse(content).elements
    attrs, parents = _bounding_box(content)
    assert "crowd-form" in parents
    assert attrs["name"] == task_ui.ANSWER_ELEMENT == "annotatedResult"
    assert attrs["header"]
    scripts = [a.get("src") for tag, a, _ in elements if tag == "script"]
    assert scripts == ["https://assets.crowd.aws/crowd-html-elements.js"]
    regions = {tag for tag, _, parents in elements if "crowd-bounding-box" in parents}
    assert {"full-instructions", "short-instructions"} <= regions


def test_template_binds_image_labels_and_model_boxes() -> None:
    attrs, _ = _bounding_box(task_ui.task_ui_template())
    assert attrs["src"] == "{{ task.input.taskObject | grant_read_access }}"
    assert attrs["labels"] == "{{ task.input.labels | to_json | escape }}"
    assert attrs["initial-value"] == "{{ task.input.initialValue | to_json | escape }}"


def test_rendered_boxes_and_labels_reach_the_element_intact() -> None:
    # Quotes and ampersands in label names must survive the HTML attribute round trip.
    labels = ['pepperoni "pizza" slice', "crust & cheese"]
    boxes = [{"label": labels[0], "left": 255, "top": 812, "width": 1072, "height": 886}]
    rendered = _render(
        task_ui.task_ui_template(),
        {"taskObject": "s3://bucket/incoming/a.jpg", "labels": labels, "initialValue": boxes},
    )
    attrs, _ = _bounding_box(rendered)
    assert json.loads(str(attrs["labels"])) == labels
    assert json.loads(str(attrs["initial-value"])) == boxes
    assert str(attrs["src"]).startswith("https://")


def test_template_fits_the_create_human_task_ui_limit() -> None:
    assert 0 < len(task_ui.task_ui_template()) <= task_ui.MAX_TEMPLATE_CHARS == 128_000


def test_template_yaml_carries_the_current_template_hash() -> None:
    # Without this, editing the HTML would not change the custom resource and never reach A2I.
    template = (REPO / "template.yaml").read_text(encoding="utf-8")
    (declared,) = re.findall(r"^\s*TaskUiTemplateSha256:\s*([0-9a-f]{64})\s*$", template, re.M)
    assert declared == task_ui.template_sha256(), "update TaskUiTemplateSha256 in template.yaml"


def test_hash_follows_the_content() -> None:
    content = task_ui.task_ui_template()
    assert task_ui.template_sha256(content) == task_ui.template_sha256()
    assert task_ui.template_sha256(content + " ") != task_ui.template_sha256()
