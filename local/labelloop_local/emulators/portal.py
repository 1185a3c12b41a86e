"""The review portal: where a person (or the demo's simulated reviewer) answers A2I tasks locally.

Served by the local services under `/portal/` on 127.0.0.1:
- `GET /portal/` open tasks (thumbnail, loop, reasons, age) and recently completed ones;
- `GET /portal/task/<loop>` the task page: the image with the model's boxes pre-drawn, editable;
- `GET /portal/image/<loop>[?thumb=1]` the task image proxied from S3;
- JSON: `GET /portal/api/tasks`, `GET /portal/api/tasks/<loop>`, `POST /portal/api/tasks/<loop>/submit`.
"""

from __future__ import annotations

import html
import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import quote

from labelloop_local.emulators.a2i import A2IService, SubmissionError
from labelloop_local.emulators.common import iso, now, parse_iso
from labelloop_local.emulators.sagemaker import SageMakerService

THUMBNAIL_SIDE = 240
THUMBNAIL_CACHE = 512
RECENT_COMPLETED = 20
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, doc: Any) -> Response:
    return Response(
        status, "application/json", json.dumps(doc).encode("utf-8"), {"Cache-Control": "no-store"}
    )


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


class Portal:
    def __init__(self, a2i: A2IService, sagemaker: SageMakerService) -> None:
        self.a2i = a2i
        self.sagemaker = sagemaker
        self._thumbnails: OrderedDict[str, bytes] = OrderedDict()
        self._thumbnails_lock = threading.Lock()

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
        parts = [part for part in path.split("/") if part][1:]  # drop "portal"
        if method == "GET":
            return self._get(parts, query)
        if method == "POST" and len(parts) == 4 and parts[:2] == ["api", "tasks"] and parts[3] == "submit":
            return self._submit(parts[2], body)
        return error_response(405 if parts else 404, f"{method} {path} is not supported")

    def _get(self, parts: list[str], query: dict[str, str]) -> Response:
        if not parts:
            return Response(200, "text/html; charset=utf-8", self.index_page().encode("utf-8"))
        if parts == ["api", "tasks"]:
            return json_response(200, {"tasks": [self.task_json(loop) for loop in self._open_loops()]})
        if len(parts) == 3 and parts[:2] == ["api", "tasks"]:
            loop = self.a2i.find(parts[2])
            if loop is None:
                return error_response(404, f"no task for human loop {parts[2]!r}")
            self.a2i.mark_accepted(parts[2])
            return json_response(200, self.task_json(loop))
        if len(parts) == 2 and parts[0] == "task":
            if self.a2i.find(parts[1]) is None:
                return Response(404, "text/html; charset=utf-8", _not_found_page(parts[1]).encode("utf-8"))
            return Response(200, "text/html; charset=utf-8", _task_page(parts[1]).encode("utf-8"))
        if len(parts) == 2 and parts[0] == "image":
            return self._image(parts[1], thumbnail=query.get("thumb") == "1")
        if len(parts) == 2 and parts[0] == "static":
            return _static(parts[1])
        if len(parts) == 2 and parts[0] == "task-ui":
            content = self.sagemaker.task_ui_content(parts[1])
            if content is None:
                return error_response(404, f"no human task UI named {parts[1]!r}")
            return Response(200, "text/plain; charset=utf-8", content.encode("utf-8"))
        return error_response(404, "not found")

    # -- data -----------------------------------------------------------------------------------
    def _open_loops(self) -> list[dict[str, Any]]:
        loops = [loop for loop in self.a2i.loops() if loop["status"] == "InProgress"]
        return sorted(loops, key=lambda loop: (loop["created"], loop["name"]))

    def _completed_loops(self) -> list[dict[str, Any]]:
        loops = [loop for loop in self.a2i.loops() if loop["status"] == "Completed"]
        return sorted(loops, key=lambda loop: loop.get("completed_at", ""), reverse=True)[:RECENT_COMPLETED]

    def task_json(self, loop: dict[str, Any]) -> dict[str, Any]:
        content = json.loads(loop["input_content"])
        size = self.a2i.image_size(loop["name"])
        task: dict[str, Any] = {
            "loopName": loop["name"],
            "flowDefinitionArn": loop["flow_arn"],
            "status": loop["status"],
            "taskObject": loop["task_object"],
            "imageUrl": f"/portal/image/{quote(loop['name'])}",
            "imageWidth": size[0] if size else None,
            "imageHeight": size[1] if size else None,
            "labels": content.get("labels", []),
            "initialValue": content.get("initialValue", []),
            "reasons": content.get("reviewReasons", content.get("reasons", [])),
            "createdAt": iso(parse_iso(loop["created"])),
        }
        if loop["status"] == "Completed":
            task["outputS3Uri"] = loop["output_uri"]
            task["answer"] = loop.get("answer", [])
        return task

    def _submit(self, loop_name: str, body: bytes) -> Response:
        try:
            doc = json.loads(body or b"null")
        except ValueError as error:
            return error_response(400, f"the body is not valid JSON: {error}")
        try:
            return json_response(200, self.a2i.submit(loop_name, doc))
        except SubmissionError as error:
            return error_response(error.status, error.message)

    def _image(self, loop_name: str, thumbnail: bool) -> Response:
        if self.a2i.find(loop_name) is None:
            return error_response(404, f"no task for human loop {loop_name!r}")
        try:
            if thumbnail:
                return Response(
                    200, "image/jpeg", self._thumbnail(loop_name), {"Cache-Control": "max-age=3600"}
                )
            data, content_type = self.a2i.read_image(loop_name)
        except Exception as error:  # the page shows a broken image with this reason in the console
            return error_response(502, f"cannot read the image of {loop_name} from S3: {error}")
        return Response(200, content_type, data, {"Cache-Control": "max-age=3600"})

    def _thumbnail(self, loop_name: str) -> bytes:
        from PIL import Image

        with self._thumbnails_lock:
            cached = self._thumbnails.get(loop_name)
        if cached is not None:
            return cached
        data, _ = self.a2i.read_image(loop_name)
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=80)
        with self._thumbnails_lock:
            self._thumbnails[loop_name] = out.getvalue()
            while len(self._thumbnails) > THUMBNAIL_CACHE:
                self._thumbnails.popitem(last=False)
        return out.getvalue()

    # -- pages ----------------------------------------------------------------------------------
    def index_page(self) -> str:
        open_rows = "".join(_open_row(self.task_json(loop)) for loop in self._open_loops())
        done_rows = "".join(_done_row(loop) for loop in self._completed_loops())
        return _INDEX.format(
            open_count=len(self._open_loops()),
            open_rows=open_rows
            or '<tr><td colspan="4" class="empty">No open tasks. Upload images to '
            "<code>incoming/</code> and low-confidence results appear here.</td></tr>",
            done_rows=done_rows or '<tr><td colspan="4" class="empty">Nothing reviewed yet.</td></tr>',
        )


def reason_text(reason: Any) -> str:
    """One review reason as a person reads it (reasons are strings or ReviewReason-like objects)."""
    if not isinstance(reason, dict):
        return str(reason)
    if isinstance(reason.get("message"), str) and reason["message"]:
        return str(reason["message"])
    code = str(reason.get("code", "REVIEW"))
    label = reason.get("label")
    confidence, threshold = reason.get("confidence"), reason.get("threshold")
    text = code.replace("_", " ").lower()
    if label:
        text += f": {label}"
    if isinstance(confidence, int | float):
        text += f" {confidence:.0f}%"
        if isinstance(threshold, int | float):
            text += f" < {threshold:.0f}%"
    return text


def _age(created: str, moment: datetime | None = None) -> str:
    seconds = int(((moment or now()) - parse_iso(created)).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _open_row(task: dict[str, Any]) -> str:
    name = html.escape(task["loopName"])
    link = f"/portal/task/{quote(task['loopName'])}"
    reasons = ", ".join(reason_text(reason) for reason in task["reasons"]) or "—"
    return (
        f'<tr data-loop-name="{name}"><td><a href="{link}">'
        f'<img class="thumb" loading="lazy" alt="Image of {name}" src="{task["imageUrl"]}?thumb=1"></a></td>'
        f'<td><a href="{link}">{name}</a><div class="muted">{html.escape(task["taskObject"])}</div></td>'
        f"<td>{html.escape(reasons)}</td><td>{_age(task['createdAt'])}</td></tr>"
    )


def _done_row(loop: dict[str, Any]) -> str:
    name = html.escape(loop["name"])
    return (
        f'<tr><td><a href="/portal/task/{quote(loop["name"])}">{name}</a></td>'
        f"<td>{len(loop.get('answer', []))}</td><td>{html.escape(loop.get('worker_id', ''))}</td>"
        f'<td class="muted">{html.escape(loop["output_uri"])}</td></tr>'
    )


def _task_page(loop_name: str) -> str:
    template = resources.files("labelloop_local.emulators").joinpath("static/task.html").read_text("utf-8")
    return template.replace("{{LOOP_NAME}}", html.escape(loop_name))


def _not_found_page(loop_name: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Task not found</title>'
        '<link rel="stylesheet" href="/portal/static/portal.css"></head><body><main>'
        f'<h1>No task {html.escape(loop_name)}</h1><p><a href="/portal/">Back to the task list</a></p>'
        "</main></body></html>"
    )


def _static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in STATIC_TYPES or "/" in name or name.startswith("."):
        return error_response(404, "not found")
    resource = resources.files("labelloop_local.emulators").joinpath(f"static/{name}")
    if not resource.is_file():
        return error_response(404, "not found")
    return Response(200, STATIC_TYPES[suffix], resource.read_bytes(), {"Cache-Control": "no-cache"})


_INDEX = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="15">
<title>labelloop review portal</title>
<link rel="stylesheet" href="/portal/static/portal.css">
</head>
<body>
<header class="bar"><h1>labelloop review portal</h1>
<span class="muted">local A2I · refreshes every 15 s</span></header>
<main>
<section aria-labelledby="open-heading">
<h2 id="open-heading">Open tasks (<span id="open-count">{open_count}</span>)</h2>
<table id="open-tasks">
<thead><tr><th scope="col">Image</th><th scope="col">Human loop</th><th scope="col">Why review</th>
<th scope="col">Age</th></tr></thead>
<tbody>{open_rows}</tbody>
</table>
</section>
<section aria-labelledby="done-heading">
<h2 id="done-heading">Recently completed</h2>
<table id="completed-tasks">
<thead><tr><th scope="col">Human loop</th><th scope="col">Boxes</th><th scope="col">Reviewer</th>
<th scope="col">output.json</th></tr></thead>
<tbody>{done_rows}</tbody>
</table>
</section>
</main>
</body>
</html>
"""
