// labelloop review portal: the bounding-box editor (one image, its boxes, zoom and pan).
// Boxes are kept in ORIGINAL image pixels; the zoom (screen pixels per image pixel) is applied only
// when drawing, so a 4000x2667 photo can be edited at 1:1 or closer and the boxes stay exact.
(function () {
  "use strict";

  const COLORS = ["#b3261e", "#1a5fb4", "#26a269", "#c64600", "#813d9c", "#0e7c86", "#a51d2d", "#5e5c64", "#986a44"];
  const MIN_DRAW_PX = 4; // a drag shorter than this on screen is a click, not a new box
  const ZOOM_STEP = 1.25;
  const MAX_ZOOM = 4;

  function create(ui) {
    const { viewport, canvas, image, labelSelect, newBoxButton, deleteButton, boxList, boxCount, zoomLabel } = ui;
    const state = {
      labels: [], boxes: [], selected: -1, newMode: false, drag: null, locked: true,
      width: 0, height: 0, zoom: 1, fitZoom: 1, panning: false, spaceDown: false,
    };

    function scale() {
      return state.zoom;
    }

    function colorOf(label) {
      const index = state.labels.indexOf(label);
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
      // The focused box node is replaced below: give the focus to its successor, never to <body>.
      const focused = document.activeElement && document.activeElement.dataset
        ? document.activeElement.dataset.boxIndex : undefined;
      canvas.querySelectorAll(".box, .draft").forEach((node) => node.remove());
      const s = scale();
      image.style.width = state.width * s + "px";
      image.style.height = state.height * s + "px";
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
        node.addEventListener("focus", () => { if (state.selected !== index) select(index, true); });
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
      if (focused !== undefined) {
        const successor = canvas.querySelector(`[data-box-index="${focused}"]`);
        (successor || canvas).focus({ preventScroll: true });
      }
      renderList();
      zoomLabel.textContent = `${Math.round(state.zoom * 100)}%`;
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
      boxCount.textContent = String(state.boxes.length);
      deleteButton.disabled = state.locked || state.selected < 0;
    }

    function select(index, focus) {
      state.selected = index;
      if (index >= 0) labelSelect.value = state.boxes[index].label;
      render();
      if (focus && index >= 0) {
        const node = canvas.querySelector(`[data-box-index="${index}"]`);
        if (node) {
          node.focus({ preventScroll: true });
          node.scrollIntoView({ block: "nearest", inline: "nearest" });
        }
      }
    }

    function removeBox(index) {
      if (state.locked || index < 0) return;
      state.boxes.splice(index, 1);
      state.selected = -1;
      render();
      canvas.focus({ preventScroll: true });
      ui.setStatus(`Box ${index + 1} deleted.`);
    }

    function setNewMode(on) {
      state.newMode = on && !state.locked;
      canvas.classList.toggle("new-mode", state.newMode);
      newBoxButton.setAttribute("aria-pressed", String(state.newMode));
    }

    // -- zoom and pan ----------------------------------------------------------------------------
    function setZoom(zoom, focusPoint) {
      const next = Math.min(Math.max(zoom, Math.min(state.fitZoom, 0.05)), MAX_ZOOM);
      const rect = viewport.getBoundingClientRect();
      const anchor = focusPoint || { x: rect.left + viewport.clientWidth / 2, y: rect.top + viewport.clientHeight / 2 };
      // Keep the image point under the anchor where it is on screen.
      const imageX = (viewport.scrollLeft + anchor.x - rect.left) / state.zoom;
      const imageY = (viewport.scrollTop + anchor.y - rect.top) / state.zoom;
      state.zoom = next;
      render();
      viewport.scrollLeft = imageX * next - (anchor.x - rect.left);
      viewport.scrollTop = imageY * next - (anchor.y - rect.top);
    }

    function fit() {
      const width = viewport.clientWidth || state.width;
      const height = viewport.clientHeight || state.height;
      state.fitZoom = Math.min(width / state.width, height / state.height, 1);
      state.zoom = state.fitZoom;
      render();
      viewport.scrollLeft = 0;
      viewport.scrollTop = 0;
    }

    viewport.addEventListener("wheel", (event) => {
      if (!event.ctrlKey && !event.metaKey) return; // plain wheel scrolls (pans) natively
      event.preventDefault();
      setZoom(state.zoom * (event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP), { x: event.clientX, y: event.clientY });
    }, { passive: false });

    function pointInImage(event) {
      const rect = image.getBoundingClientRect();
      const s = scale();
      return {
        x: Math.min(Math.max((event.clientX - rect.left) / s, 0), state.width),
        y: Math.min(Math.max((event.clientY - rect.top) / s, 0), state.height),
      };
    }

    canvas.addEventListener("pointerdown", (event) => {
      if (event.button === 1 || (event.button === 0 && state.spaceDown)) { // pan: middle button or Space+drag
        state.drag = { kind: "pan", x: event.clientX, y: event.clientY, left: viewport.scrollLeft, top: viewport.scrollTop };
        canvas.classList.add("panning");
        canvas.setPointerCapture(event.pointerId);
        event.preventDefault();
        return;
      }
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
      if (drag.kind === "pan") {
        viewport.scrollLeft = drag.left - (event.clientX - drag.x);
        viewport.scrollTop = drag.top - (event.clientY - drag.y);
        return;
      }
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
      canvas.classList.remove("panning");
      if (drag.kind === "pan") return;
      if (drag.kind === "draw") {
        const far = Math.abs(event.clientX - drag.screenStart.x) >= MIN_DRAW_PX &&
                    Math.abs(event.clientY - drag.screenStart.y) >= MIN_DRAW_PX;
        if (drag.draft && far) {
          state.boxes.push(clampBox(Object.assign({ label: labelSelect.value }, drag.draft)));
          state.selected = state.boxes.length - 1;
          setNewMode(false);
          ui.setStatus(`Box ${state.boxes.length} added as "${labelSelect.value}".`);
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
    ui.zoomIn.addEventListener("click", () => setZoom(state.zoom * ZOOM_STEP));
    ui.zoomOut.addEventListener("click", () => setZoom(state.zoom / ZOOM_STEP));
    ui.zoomFit.addEventListener("click", fit);
    ui.zoomActual.addEventListener("click", () => setZoom(1));

    document.addEventListener("keyup", (event) => { if (event.key === " ") state.spaceDown = false; });
    document.addEventListener("keydown", (event) => {
      if (!state.width) return;
      const tag = event.target.tagName;
      if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") {
        if (event.key === "Escape") event.target.blur();
        return;
      }
      const key = event.key;
      if (key === "+" || key === "=") { setZoom(state.zoom * ZOOM_STEP); return; }
      if (key === "-" || key === "_") { setZoom(state.zoom / ZOOM_STEP); return; }
      if (key === "f" || key === "F") { fit(); return; }
      if (key === " " && tag !== "BUTTON") { state.spaceDown = true; event.preventDefault(); return; }
      if (state.locked) return;
      if (key === "Enter") {
        if (tag === "BUTTON" || tag === "A") return; // the focused control handles Enter itself
        event.preventDefault();
        ui.onSubmit();
      } else if (key === "n" || key === "N") {
        setNewMode(!state.newMode);
      } else if (key === "Escape") {
        setNewMode(false);
        select(-1, false);
      } else if ((key === "Delete" || key === "Backspace") && state.selected >= 0) {
        event.preventDefault();
        removeBox(state.selected);
      } else if (/^[1-9]$/.test(key) && Number(key) <= state.labels.length) {
        labelSelect.value = state.labels[Number(key) - 1];
        labelSelect.dispatchEvent(new Event("change"));
        ui.setStatus(`Label: ${labelSelect.value}`);
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

    window.addEventListener("resize", () => { if (state.width) render(); });

    return {
      // Show an image (natural size width x height) with `boxes` pre-drawn; resolves once it is loaded.
      load(task) {
        state.labels = task.labels.slice();
        labelSelect.replaceChildren(...state.labels.map((label, index) => {
          const option = document.createElement("option");
          option.value = label;
          option.textContent = index < 9 ? `${index + 1}. ${label}` : label;
          return option;
        }));
        labelSelect.disabled = false;
        newBoxButton.disabled = false;
        state.selected = -1;
        state.width = 0;
        return new Promise((resolve, reject) => {
          image.onload = () => {
            state.width = task.width || image.naturalWidth;
            state.height = task.height || image.naturalHeight;
            state.boxes = (task.boxes || []).map((box) => clampBox(box));
            state.locked = false;
            fit();
            canvas.focus({ preventScroll: true });
            resolve();
          };
          image.onerror = () => reject(new Error("the image cannot be loaded"));
          image.src = task.imageUrl;
        });
      },
      // Whole pixels inside the image, as the A2I bounding-box task reports them.
      pixelBoxes() {
        return state.boxes.map((box) => {
          const left = Math.round(box.left), top = Math.round(box.top);
          const right = Math.min(Math.round(box.left + box.width), state.width);
          const bottom = Math.min(Math.round(box.top + box.height), state.height);
          return { label: box.label, left: left, top: top, width: Math.max(right - left, 1), height: Math.max(bottom - top, 1) };
        });
      },
      size() {
        return { width: state.width, height: state.height };
      },
      lock() {
        state.locked = true;
        state.selected = -1;
        setNewMode(false);
        labelSelect.disabled = true;
        newBoxButton.disabled = true;
        render();
      },
      zoom() {
        return state.zoom;
      },
    };
  }

  window.LabelloopEditor = { create: create };
})();
