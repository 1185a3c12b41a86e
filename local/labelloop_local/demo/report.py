"""The demo's HTML report: reviewed images with the model's and the reviewer's boxes, and the numbers.

One self-contained file (images are downscaled JPEG data URIs, boxes are inline SVG), so it opens
from disk in any browser and can be attached to a ticket.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from PIL import Image

from labelloop_core.evaluation import format_f1

THUMBNAIL_SIDE = 480
MAX_IMAGES = 24
MODEL_COLOUR = "#ff3b30"
REVIEW_COLOUR = "#34c759"


def write_report(out_dir: Path, result: Any, dataset: Any) -> Path:
    """Write ``report.html`` to ``out_dir`` and return its path."""
    path = Path(out_dir) / "report.html"
    cards = []
    for item in result.reviewed[:MAX_IMAGES]:
        entry = dataset.entries.get(item["file"])
        if entry is None:
            continue
        cards.append(_card(entry.path, entry.width, entry.height, item))
    more = len(result.reviewed) - len(cards)
    page = _page(result, cards, more)
    if getattr(result, "test_detections", None):
        from labelloop_local.demo.comparison import section_html

        entries = {name: dataset.entries[name] for name in result.test_names}
        page = page.replace(
            "<h2>Reviewed images</h2>",
            section_html(result.test_detections, entries, _panels) + "\n<h2>Reviewed images</h2>",
        )
    path.write_text(page, encoding="utf-8")
    return path


def _panels(path: Path, width: int, height: int, panels: list[tuple[str, list[dict[str, Any]], str]]) -> str:
    """One image drawn once per set of boxes, side by side (model sets dashed red, the truth green)."""
    data_uri, shown_width = _thumbnail(path)
    stroke = str(max(2, round(width / shown_width * 2)))
    drawn = []
    for caption, boxes, kind in panels:
        svg = _boxes_svg(boxes, MODEL_COLOUR if kind == "model" else REVIEW_COLOUR, kind == "model")
        drawn.append(
            f'<div><svg viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{html.escape(caption)} on {{name}}">'
            f'<image href="{data_uri}" width="{width}" height="{height}"/>{svg.replace("{sw}", stroke)}</svg>'
            f"<figcaption>{html.escape(caption)}</figcaption></div>"
        )
    panels_html = "".join(drawn)
    caption = '<figcaption class="name">{name}</figcaption>'
    return f'<figure class="test"><div class="pair">{panels_html}</div>{caption}</figure>'


def _thumbnail(path: Path) -> tuple[str, int]:
    """A data URI of the image at most THUMBNAIL_SIDE wide/high, and its shown width."""
    with Image.open(path) as image:
        image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # JPEG: decode at a fraction of the size
        rgb = image.convert("RGB")
    rgb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), rgb.size[0]


def _boxes_svg(boxes: list[dict[str, Any]], colour: str, dashed: bool) -> str:
    dash = ' stroke-dasharray="12 8"' if dashed else ""
    parts = []
    for box in boxes:
        label = html.escape(str(box.get("label", "")))
        confidence = box.get("confidence")
        caption = label if confidence is None else f"{label} {float(confidence):.0f}%"
        parts.append(
            f'<rect x="{box["left"]}" y="{box["top"]}" width="{box["width"]}" height="{box["height"]}" '
            f'fill="none" stroke="{colour}" stroke-width="{{sw}}"{dash}><title>{caption}</title></rect>'
        )
    return "".join(parts)


def _card(path: Path, width: int, height: int, item: dict[str, Any]) -> str:
    data_uri, shown_width = _thumbnail(path)
    stroke = max(2, round(width / shown_width * 2))
    model = _boxes_svg(item.get("model", []), MODEL_COLOUR, dashed=True).replace("{sw}", str(stroke))
    truth = _boxes_svg(item.get("truth", []), REVIEW_COLOUR, dashed=False).replace("{sw}", str(stroke))
    name = html.escape(item["file"])
    return f"""
<figure>
  <div class="pair">
    <div><svg viewBox="0 0 {width} {height}" role="img" aria-label="model boxes on {name}">
      <image href="{data_uri}" width="{width}" height="{height}"/>{model}</svg>
      <figcaption>before review: model ({len(item.get("model", []))} boxes)</figcaption></div>
    <div><svg viewBox="0 0 {width} {height}" role="img" aria-label="reviewed boxes on {name}">
      <image href="{data_uri}" width="{width}" height="{height}"/>{truth}</svg>
      <figcaption>after review ({len(item.get("truth", []))} boxes)</figcaption></div>
  </div>
  <figcaption class="name">{name} · loop <code>{html.escape(item["loop"])}</code></figcaption>
</figure>"""


def _page(result: Any, cards: list[str], more: int) -> str:
    rows = [
        ("Base images imported", result.base_images),
        ("Images uploaded to incoming/", result.images_uploaded),
        ("Predictions written", result.predictions),
        ("Reviews requested", result.reviews_requested),
        ("Reviews completed (simulated reviewer)", result.reviews_completed),
        ("Label lines appended", result.labels_appended),
        ("Trainings started", result.trainings_started),
        ("Models promoted", result.models_promoted),
        ("Dead-letter messages", result.dlq_messages),
        ("Duration", f"{result.duration_seconds:.1f} s"),
    ]
    if result.replay is not None:
        rows.append(("Replay: events replayed", result.replay["events_replayed"]))
        rows.append(
            (
                "Replay: new reviews / label lines / trainings",
                "{} / {} / {}".format(
                    result.replay["new_reviews"],
                    result.replay["new_label_lines"],
                    result.replay["new_trainings"],
                ),
            )
        )
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    reason = html.escape(result.promotion_reason or "")
    note = f"<p>{more} more reviewed images are not shown.</p>" if more > 0 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labelloop local demo report</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
.f1 {{ display: flex; gap: 2rem; font-size: 1.6rem; margin: 1rem 0; }}
.f1 b {{ font-size: 2.2rem; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: .2rem 1rem .2rem 0; }}
figure {{ margin: 1.5rem 0; }} .pair {{ display: flex; gap: 1rem; }}
.pair > div {{ flex: 1; }} svg {{ width: 100%; height: auto; background: #eee; }}
figcaption {{ color: #555; font-size: .9rem; }} .name {{ margin-top: .3rem; }}
.legend span {{ display: inline-block; width: 1.2rem; height: .3rem; vertical-align: middle; }}
</style></head><body>
<h1>labelloop local demo</h1>
<div class="f1"><div>F1 before<br><b>{format_f1(result.f1_before)}</b></div>
<div>F1 after<br><b>{format_f1(result.f1_after)}</b></div>
<div>candidate F1<br><b>{format_f1(result.candidate_f1)}</b></div></div>
<p>{reason}</p>
<table>{table}</table>
<h2>Reviewed images</h2>
<p class="legend"><span style="background:{MODEL_COLOUR}"></span> model's boxes (pre-drawn for the reviewer)
&nbsp; <span style="background:{REVIEW_COLOUR}"></span> boxes after review.
Reviews were answered by a <strong>simulated reviewer</strong> using the dataset's true labels.</p>
{"".join(cards) or "<p>No image needed review.</p>"}
{note}
</body></html>
"""
