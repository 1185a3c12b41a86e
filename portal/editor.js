// labelloop review portal: edit the model's boxes on one image and submit them as A2I would.
// Boxes are kept in ORIGINAL image pixels; the display scale is applied only when drawing.
(function () {
  "use strict";

  const COLORS = ["#b3261e", "#1a5fb4", "#26a269", "#c64600", "#813d9c", "#0e7c86", "#a51d2d", "#5e5c64", "#986a44"];
  const MIN_DRAW_PX = 4; // a drag shorter than this on screen is a click, not a new box
  const loopName = document.body.dataset.loopName;
  const canvas = document.getElementById("canvas");
  const image = document.getElementById("image");
  const labelSelect = document.getElementById("label-select");
  const newBoxButton = document.getElementById("new-box");
  const deleteButton = document.getElementById("delete-box");
  const submitButton = document.getElementById("submit");
  const statusLine = document.getElementById("status");
  const boxList = document.getElementById("box-list");

  const state = { task: null, boxes: [], selected: -1, newMode: false, drag: null, locked: false, width: 0, height: 0 };

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.className = kind || "";
  }

  function scale() {
    return image.clientWidth / state.width || 1;
  }

  function colorOf(label) {
    const index = state.task.labels.indexOf(label);
    return COLORS[(index < 0 ? 0 : index) % COLORS.length];
  }

  function clampBox(box) {
    const width = Math.min(Math.max(box.width, 1), state.width);
    const height = Math.min(Math.max(box.height, 1), state.height);
    const left = Math.min(Math.max(box.left, 0), state.width - width);
    const top = Math.min(Math.max(box.top, 0), state.height - height);
    return { label: box.label, left: left, top: top, width: width, height: height };
  }

  function render() {
    canvas.querySelectorAll(".box, .draft").forEach((node) => node.remove());
    const s = scale();
    state.boxes.forEach((box, index) => {
      const node = document.createElement("div");
      node.className = "box" + (index === state.selected ? " selected" : "");
      node.dataset.boxIndex = String(index);
      node.dataset.label = box.label;
      node.tabIndex = 0;
      node.setAttribute("role", "button");
      node.setAttribute("aria-label", `Box ${index + 1}: ${box.label} at ${Math.round(box.left)}, ${Math.round(box.top)}, ` +
        `${Math.round(box.width)} by ${Math.round(box.height)} pixels`);
      node.style.setProperty("--c", colorOf(box.label));
      node.style.left = box.left * s + "px";
      node.style.top = box.top * s + "px";
      node.style.width = box.width * s + "px";
      node.style.height = box.height * s + "px";
      const tag = document.createElement("span");
      tag.className = "box-label";
      tag.textContent = `${index + 1} ${box.label}`;
      node.appendChild(tag);
      ["nw", "ne", "sw", "se"].forEach((corner) => {
        const handle = document.createElement("div");
        handle.className = "handle";
        handle.dataset.handle = corner;
        node.appendChild(handle);
      });
      node.addEventListener("focus", () => { if (state.selected !== index) select(index, false); });
      canvas.appendChild(node);
    });
    if (state.drag && state.drag.kind === "draw" && state.drag.draft) {
      const d = state.drag.draft;
      const node = document.createElement("div");
      node.className = "draft";
      node.style.left = d.left * s + "px";
      node.style.top = d.top * s + "px";
      node.style.width = d.width * s + "px";
      node.style.height = d.height * s + "px";
      canvas.appendChild(node);
    }
    renderList();
  }

  function renderList() {
    boxList.replaceChildren();
    state.boxes.forEach((box, index) => {
      const item = document.createElement("li");
      item.dataset.listIndex = String(index);
      item.className = index === state.selected ? "selected" : "";
      item.textContent = `${box.label} — ${Math.round(box.left)}, ${Math.round(box.top)}, ` +
        `${Math.round(box.width)}×${Math.round(box.height)}`;
      item.addEventListener("click", () => select(index, true));
      if (!state.locked) {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "Delete";
        remove.setAttribute("aria-label", `Delete box ${index + 1}`);
        remove.addEventListener("click", (event) => { event.stopPropagation(); removeBox(index); });
        item.appendChild(remove);
      }
      boxList.appendChild(item);
    });
    document.getElementById("box-count").textContent = String(state.boxes.length);
    deleteButton.disabled = state.locked || state.selected < 0;
  }

  function select(index, focus) {
    state.selected = index;
    if (index >= 0) labelSelect.value = state.boxes[index].label;
    render();
    if (focus && index >= 0) {
      const node = canvas.querySelector(`[data-box-index="${index}"]`);
      if (node) node.focus({ preventScroll: true });
    }
  }

  function removeBox(index) {
    if (state.locked || index < 0) return;
    state.boxes.splice(index, 1);
    state.selected = -1;
    render();
    canvas.focus({ preventScroll: true });
    setStatus(`Box ${index + 1} deleted.`);
  }

  function setNewMode(on) {
    state.newMode = on && !state.locked;
    canvas.classList.toggle("new-mode", state.newMode);
    newBoxButton.setAttribute("aria-pressed", String(state.newMode));
  }

  function pointInImage(event) {
    const rect = image.getBoundingClientRect();
    const s = scale();
    return {
      x: Math.min(Math.max((event.clientX - rect.left) / s, 0), state.width),
      y: Math.min(Math.max((event.clientY - rect.top) / s, 0), state.height),
    };
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (state.locked || event.button !== 0) return;
    const point = pointInImage(event);
    const handle = event.target.closest(".handle");
    const boxNode = event.target.closest(".box");
    if (!state.newMode && boxNode) {
      const index = Number(boxNode.dataset.boxIndex);
      select(index, false);
      state.drag = { kind: handle ? "resize" : "move", corner: handle ? handle.dataset.handle : null,
                     index: index, start: point, origin: Object.assign({}, state.boxes[index]) };
    } else {
      state.drag = { kind: "draw", start: point, draft: null, screenStart: { x: event.clientX, y: event.clientY } };
    }
    canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
  });

  canvas.addEventListener("pointermove", (event) => {
    const drag = state.drag;
    if (!drag) return;
    const point = pointInImage(event);
    const dx = point.x - drag.start.x;
    const dy = point.y - drag.start.y;
    if (drag.kind === "move") {
      const o = drag.origin;
      state.boxes[drag.index] = clampBox({ label: o.label, left: o.left + dx, top: o.top + dy, width: o.width, height: o.height });
    } else if (drag.kind === "resize") {
      state.boxes[drag.index] = resized(drag.origin, drag.corner, dx, dy);
    } else {
      drag.draft = {
        left: Math.min(drag.start.x, point.x), top: Math.min(drag.start.y, point.y),
        width: Math.abs(dx), height: Math.abs(dy),
      };
    }
    render();
  });

  // The dragged corner follows the pointer's movement (not its position): grabbing a handle never jumps.
  function resized(origin, corner, dx, dy) {
    let left = origin.left, top = origin.top, right = origin.left + origin.width, bottom = origin.top + origin.height;
    if (corner.includes("w")) left = Math.min(Math.max(left + dx, 0), right - 1);
    if (corner.includes("e")) right = Math.max(Math.min(right + dx, state.width), left + 1);
    if (corner.includes("n")) top = Math.min(Math.max(top + dy, 0), bottom - 1);
    if (corner.includes("s")) bottom = Math.max(Math.min(bottom + dy, state.height), top + 1);
    return clampBox({ label: origin.label, left: left, top: top, width: right - left, height: bottom - top });
  }

  function endDrag(event) {
    const drag = state.drag;
    if (!drag) return;
    state.drag = null;
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    if (drag.kind === "draw") {
      const far = Math.abs(event.clientX - drag.screenStart.x) >= MIN_DRAW_PX &&
                  Math.abs(event.clientY - drag.screenStart.y) >= MIN_DRAW_PX;
      if (drag.draft && far) {
        state.boxes.push(clampBox(Object.assign({ label: labelSelect.value }, drag.draft)));
        state.selected = state.boxes.length - 1;
        setNewMode(false);
        setStatus(`Box ${state.boxes.length} added as "${labelSelect.value}".`);
      } else {
        state.selected = -1;
      }
    }
    render();
  }
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);

  labelSelect.addEventListener("change", () => {
    if (state.selected >= 0 && !state.locked) {
      state.boxes[state.selected].label = labelSelect.value;
      render();
    }
  });
  newBoxButton.addEventListener("click", () => setNewMode(!state.newMode));
  deleteButton.addEventListener("click", () => removeBox(state.selected));
  submitButton.addEventListener("click", submit);

  document.addEventListener("keydown", (event) => {
    if (!state.task || state.locked) return;
    const tag = event.target.tagName;
    if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const key = event.key;
    if (key === "Enter") {
      if (tag === "BUTTON" || tag === "A") return; // the focused control handles Enter itself
      event.preventDefault();
      submit();
    } else if (key === "n" || key === "N") {
      setNewMode(!state.newMode);
    } else if (key === "Escape") {
      setNewMode(false);
      select(-1, false);
    } else if ((key === "Delete" || key === "Backspace") && state.selected >= 0) {
      event.preventDefault();
      removeBox(state.selected);
    } else if (/^[1-9]$/.test(key) && Number(key) <= state.task.labels.length) {
      labelSelect.value = state.task.labels[Number(key) - 1];
      labelSelect.dispatchEvent(new Event("change"));
      setStatus(`Label: ${labelSelect.value}`);
    } else if (key.startsWith("Arrow") && state.selected >= 0) {
      event.preventDefault();
      nudge(key, event.shiftKey ? 10 : 1, event.altKey);
    }
  });

  function nudge(key, step, resize) {
    const box = Object.assign({}, state.boxes[state.selected]);
    const dx = key === "ArrowLeft" ? -step : key === "ArrowRight" ? step : 0;
    const dy = key === "ArrowUp" ? -step : key === "ArrowDown" ? step : 0;
    if (resize) { box.width += dx; box.height += dy; } else { box.left += dx; box.top += dy; }
    state.boxes[state.selected] = clampBox(box);
    select(state.selected, true);
  }

  function pixelBoxes() {
    // Whole pixels inside the image, as the A2I bounding-box task reports them.
    return state.boxes.map((box) => {
      const left = Math.round(box.left), top = Math.round(box.top);
      const right = Math.min(Math.round(box.left + box.width), state.width);
      const bottom = Math.min(Math.round(box.top + box.height), state.height);
      return { label: box.label, left: left, top: top, width: Math.max(right - left, 1), height: Math.max(bottom - top, 1) };
    });
  }

  async function submit() {
    if (state.locked || !state.task) return;
    submitButton.disabled = true;
    setStatus("Submitting…");
    try {
      const response = await fetch(`/portal/api/tasks/${encodeURIComponent(loopName)}/submit`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ boundingBoxes: pixelBoxes(), workerId: "portal-reviewer" }),
      });
      const doc = await response.json();
      if (!response.ok) {
        setStatus(`Not submitted: ${doc.error || response.statusText}`, "error");
        submitButton.disabled = false;
        return;
      }
      lock(`Submitted. A2I output: ${doc.outputS3Uri}`);
      document.body.dataset.submitted = "true";
      await offerNextTask();
    } catch (error) {
      setStatus(`Not submitted: ${error}`, "error");
      submitButton.disabled = false;
    }
  }

  function lock(message) {
    state.locked = true;
    state.selected = -1;
    setNewMode(false);
    submitButton.disabled = true;
    labelSelect.disabled = true;
    newBoxButton.disabled = true;
    setStatus(message, "ok");
    render();
  }

  async function offerNextTask() {
    const response = await fetch("/portal/api/tasks");
    if (!response.ok) return;
    const next = (await response.json()).tasks.find((task) => task.loopName !== loopName);
    const link = document.createElement("a");
    link.id = "next-task";
    link.href = next ? `/portal/task/${encodeURIComponent(next.loopName)}` : "/portal/";
    link.textContent = next ? " Next task →" : " Back to the task list";
    statusLine.appendChild(link);
  }

  function describeReasons(reasons) {
    return reasons.map((reason) => {
      if (typeof reason !== "object" || reason === null) return String(reason);
      if (typeof reason.message === "string" && reason.message) return reason.message;
      let text = String(reason.code || "review").replace(/_/g, " ").toLowerCase();
      if (reason.label) text += `: ${reason.label}`;
      if (typeof reason.confidence === "number") text += ` ${reason.confidence.toFixed(0)}%`;
      if (typeof reason.threshold === "number") text += ` < ${reason.threshold.toFixed(0)}%`;
      return text;
    }).join("; ");
  }

  async function load() {
    const response = await fetch(`/portal/api/tasks/${encodeURIComponent(loopName)}`);
    const task = await response.json();
    if (!response.ok) {
      setStatus(task.error || "Task not found", "error");
      return;
    }
    state.task = task;
    labelSelect.replaceChildren(...task.labels.map((label, index) => {
      const option = document.createElement("option");
      option.value = label;
      option.textContent = index < 9 ? `${index + 1}. ${label}` : label;
      return option;
    }));
    const reasons = describeReasons(task.reasons || []);
    document.getElementById("reasons").textContent = reasons ? `Why review: ${reasons}` : "";
    image.addEventListener("load", () => {
      state.width = task.imageWidth || image.naturalWidth;
      state.height = task.imageHeight || image.naturalHeight;
      const source = task.status === "Completed" ? task.answer : task.initialValue;
      state.boxes = (source || []).map((box) => clampBox(box));
      document.body.dataset.ready = "true";
      render();
      if (task.status === "Completed") lock(`Already submitted. A2I output: ${task.outputS3Uri}`);
      else if (task.status !== "InProgress") lock(`This task is ${task.status} and takes no answers.`);
    }, { once: true });
    image.addEventListener("error", () => setStatus("The image cannot be loaded from S3.", "error"), { once: true });
    image.src = task.imageUrl;
  }

  window.addEventListener("resize", () => { if (state.task) render(); });
  load();
})();
