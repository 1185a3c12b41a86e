"""The A2I emulation's worker portal: where a person (or the demo's simulated reviewer) answers A2I
tasks locally (the built-in backend's portal is the stack's own PortalFunction, on the local HTTP API).

Served by the local services under `/portal/` on 127.0.0.1, with the one front end of the repository
(`portal/`, shipped as `labelloop_core/portal`) in its `a2i-local` mode:
- `GET /portal/` open tasks (thumbnail, image file, reasons, age) and recently completed ones;
- `GET /portal/task.html?loop=<loop>[&worker=<id>]` the task page: the image with the model's boxes
  pre-drawn, editable (`worker` names the reviewer when the flow definition asks for several);
- `GET /portal/static/<file>`, `GET /portal/config.json` the front end and its configuration;
- `GET /portal/image/<loop>[?thumb=1]` the task image proxied from S3;
- JSON: `GET /portal/api/tasks`, `GET /portal/api/tasks/<loop>`, `POST /portal/api/tasks/<loop>/submit`.
Every page carries a Content-Security-Policy that allows only this origin and no inline script.
"""

from __future__ import annotations

import html
import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from labelloop_core.services.portal import PortalOrigins, config_json, portal_file, security_headers
from labelloop_local.emulators.a2i import A2IService, SubmissionError
from labelloop_local.emulators.common import iso, now, parse_iso
from labelloop_local.emulators.sagemaker import SageMakerService

THUMBNAIL_SIDE = 240
THUMBNAIL_CACHE = 512
RECENT_COMPLETED = 20
# Everything the pages load comes from this origin (images are proxied by /portal/image/).
PAGE_HEADERS = security_headers(PortalOrigins(cognito="'self'", images="'self'"))


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
            return _page(self.index_page())
        if parts == ["task.html"]:
            return _front_end("index.html")
        if parts == ["config.json"]:
            return Response(200, "application/json", config_json("a2i-local").encode(), dict(PAGE_HEADERS))
        if parts == ["api", "tasks"]:
            return json_response(200, {"tasks": [self.task_json(loop) for loop in self._open_loops()]})
        if len(parts) == 3 and parts[:2] == ["api", "tasks"]:
            loop = self.a2i.find(parts[2])
            if loop is None:
                return error_response(404, f"no task for human loop {parts[2]!r}")
            self.a2i.mark_accepted(parts[2])
            return json_response(200, self.task_json(loop))
        if len(parts) == 2 and parts[0] == "task":  # the address tasks had before task.html
            return Response(302, "text/plain", b"", {"Location": f"/portal/task.html?loop={quote(parts[1])}"})
        if len(parts) == 2 and parts[0] == "image":
            return self._image(parts[1], thumbnail=query.get("thumb") == "1")
        if len(parts) == 2 and parts[0] == "static":
            return _front_end(parts[1])
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


def summarize_reasons(reasons: list[Any]) -> list[str]:
    """One line per kind of reason and label (25 low detections of one label are one line)."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for reason in reasons:
        key = (
            (str(reason.get("code")), str(reason.get("label") or ""))
            if isinstance(reason, dict)
            else (str(reason), "")
        )
        groups.setdefault(key, []).append(reason)
    lines = []
    for (code, label), members in groups.items():
        confidences = [
            r["confidence"]
            for r in members
            if isinstance(r, dict) and isinstance(r.get("confidence"), int | float)
        ]
        if code == "LOW_CONFIDENCE" and confidences:
            low, high = min(confidences), max(confidences)
            spread = f"{low:.0f}%" if round(low) == round(high) else f"{low:.0f}–{high:.0f}%"
            count = "1 detection" if len(confidences) == 1 else f"{len(confidences)} detections"
            lines.append(f"low confidence: {count} of {label} at {spread}")
        else:
            lines.append(reason_text(members[0]))
    return lines


def _file_name(task_object: str) -> str:
    return task_object.rsplit("/", 1)[-1]


def _open_row(task: dict[str, Any]) -> str:
    name = html.escape(task["loopName"])
    link = f"/portal/task.html?loop={quote(task['loopName'])}"
    file_name = html.escape(_file_name(task["taskObject"]))
    reasons = "; ".join(summarize_reasons(task["reasons"])) or "—"
    return (
        f'<tr data-loop-name="{name}"><td><a href="{link}">'
        f'<img class="thumb" loading="lazy" alt="{file_name}" src="{task["imageUrl"]}?thumb=1"></a></td>'
        f'<td><a href="{link}">{file_name}</a><div class="muted">{html.escape(task["taskObject"])}</div>'
        f'<div class="muted">review {name}</div></td>'
        f"<td>{html.escape(reasons)}</td><td>{_age(task['createdAt'])}</td></tr>"
    )


def _done_row(loop: dict[str, Any]) -> str:
    name = html.escape(loop["name"])
    file_name = html.escape(_file_name(loop["task_object"]))
    workers = ", ".join(answer["worker_id"] for answer in loop.get("answers", [])) or loop.get(
        "worker_id", ""
    )
    return (
        f'<tr><td><a href="/portal/task.html?loop={quote(loop["name"])}">{file_name}</a>'
        f'<div class="muted">review {name}</div></td>'
        f"<td>{len(loop.get('answer', []))}</td><td>{html.escape(workers)}</td>"
        f'<td class="muted">{html.escape(loop["output_uri"])}</td></tr>'
    )


def _page(text: str, status: int = 200) -> Response:
    return Response(status, "text/html; charset=utf-8", text.encode("utf-8"), dict(PAGE_HEADERS))


def _front_end(name: str) -> Response:
    found = portal_file(name)
    if found is None:
        return error_response(404, "not found")
    text, content_type = found
    return Response(200, content_type, text.encode("utf-8"), {"Cache-Control": "no-cache", **PAGE_HEADERS})


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
<thead><tr><th scope="col">Image</th><th scope="col">File</th><th scope="col">Why review</th>
<th scope="col">Age</th></tr></thead>
<tbody>{open_rows}</tbody>
</table>
</section>
<section aria-labelledby="done-heading">
<h2 id="done-heading">Recently completed</h2>
<table id="completed-tasks">
<thead><tr><th scope="col">File</th><th scope="col">Boxes</th><th scope="col">Reviewers</th>
<th scope="col">output.json</th></tr></thead>
<tbody>{done_rows}</tbody>
</table>
</section>
</main>
</body>
</html>
"""
