// mmd-synth annotator: keyboard-first labeling over the JSON API of annotator/server.py.
// Enter accepts what is shown (the suggestion, or your edits) and moves to the next model.
"use strict";

const ROLE_LABELS = {
  mouth_open: "Mouth open", blink: "Blink", wink_left: "Wink left", wink_right: "Wink right",
  smile_blink: "Smile blink", smile_wink_left: "Smile wink left", smile_wink_right: "Smile wink right",
};
const PANELS = { 0: "system", 1: "brow", 2: "eye", 3: "mouth", 4: "other" };
const DECIDED = { name: ["N", "named: its name says so"], geometry: ["G", "placed by its geometry"],
                  override: ["✎", "your override"] };
const THUMB_CONCURRENCY = 2; // leaves the browser's other connections to the framing preview

const $ = (id) => document.getElementById(id);
const state = {
  list: [], progress: { done: 0, total: 0 }, currentId: null, shownId: null, detail: null, record: null,
  original: "", morphIndex: 0, generation: 0, thumbHead: null, saving: false,
  preview: { inflight: false, again: false },
  layers: { open: false, data: null, material: 0 }, // data: the server's suggestions for currentId
  metrics: { firstView: null, keys: 0 }, // firstView: ms from navigation start
};
window.annotator = state; // for the browser test and the curious

// ---------------------------------------------------------------- plumbing

async function api(url, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(url, options);
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(data?.error || `${response.status} ${response.statusText}`);
  return data;
}

async function fetchImage(url) {
  const response = await fetch(url);
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new Error(data?.error || `${response.status} ${response.statusText}`);
  }
  return URL.createObjectURL(await response.blob());
}

function clearImage(img) {
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.removeAttribute("src");
}

function setImage(img, objectUrl) {
  clearImage(img);
  img.src = objectUrl;
  return img.decode().catch(() => {});
}

let toastTimer = null;
function toast(message, kind = "") {
  const box = $("toast");
  box.textContent = message;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 5000 : 1800);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const fmt = (y) => Number(y).toFixed(2);
const headQuery = (head) => (head ? `?top=${head.top}&bottom=${head.bottom}` : ""); // the API's head bounds
const dirty = () => JSON.stringify(state.record) !== state.original;
const rowOf = (id) => state.list.find((row) => row.id === id);
const isDone = (row) => row.source === "annotated";

// ---------------------------------------------------------------- model list and progress

function renderProgress() {
  const { done, total } = state.progress;
  $("progress-text").textContent = `${done} / ${total}`;
  $("progress-fill").style.width = total ? `${(100 * done) / total}%` : "0";
}

function renderList() {
  const list = $("model-list");
  list.replaceChildren(...state.list.map((row) => {
    const kind = isDone(row) ? `done-${row.status}` : row.pending ? "suggested pending"
      : row.status === "rejected" ? "suggested suggested-reject" : "suggested";
    const item = el("li", `${kind}${row.id === state.currentId ? " current" : ""}`);
    item.dataset.id = row.id;
    item.title = row.reason ? `${row.model}\n${row.status === "review" ? "held for review" : "rejected"}: ${row.reason}` : row.model;
    const conf = isDone(row) ? (row.status === "ok" ? "done" : "rejected")
      : row.pending ? "…" : row.status === "rejected" ? "reject?"
      : row.confidence == null ? "" : `${Math.round(100 * row.confidence)}%`;
    item.append(el("span", "dot"), el("span", "path", row.model), el("span", "conf", conf));
    item.addEventListener("click", () => openModel(row.id));
    return item;
  }));
  list.querySelector(".current")?.scrollIntoView({ block: "nearest" });
}

async function refreshList() {
  const data = await api("/api/models");
  state.list = data.models; // the server's order: unconfirmed, held for review, least confident first
  state.progress = data.progress;
  renderList();
  renderProgress();
  clearTimeout(refreshList.timer);
  if (state.list.some((row) => row.pending)) refreshList.timer = setTimeout(() => refreshList().catch(() => {}), 2000);
}

// ---------------------------------------------------------------- one model

function editable(detail) {
  const record = detail.record;
  let head = record.head ? { top: record.head.top, bottom: record.head.bottom } : null;
  if (!head && detail.front) { // no suggestion (e.g. rejected): start from the top of the model
    const span = detail.front.y_top - detail.front.y_bottom;
    head = { top: detail.front.y_top - 0.06 * span, bottom: detail.front.y_top - 0.2 * span };
  }
  return { head, morphs: { ...record.morphs }, layers: { ...record.layers } };
}

async function openModel(id) {
  const generation = ++state.generation;
  state.currentId = id;
  closeReject();
  renderList();
  $("viewer").classList.add("loading");
  clearImage($("preview"));
  let detail;
  try {
    detail = await api(`/api/models/${id}`);
  } catch (error) {
    toast(error.message, "error");
    return;
  }
  if (generation !== state.generation) return;
  state.detail = detail;
  Object.assign(rowOf(id), { status: detail.record.status, source: detail.record.source, pending: false,
                             reason: detail.record.reject_reason });
  renderList();
  state.record = editable(detail);
  state.original = JSON.stringify(state.record);
  state.thumbHead = state.record.head;
  state.morphIndex = 0;
  state.layers.data = null;
  state.layers.material = 0;
  $("model-name").textContent = detail.model;
  showMessage(detail.error ? loadErrorMessage(detail.error) : null);
  renderEditor();
  renderMorphs();
  if (state.layers.open) loadLayers(generation);
  if (detail.front) await loadFront(generation);
}

function loadErrorMessage(error) {
  return `<b>This model could not be shown.</b><br>${escapeHtml(error)}<br>Press <kbd>R</kbd> to reject it.`;
}

function escapeHtml(text) {
  const node = document.createElement("span");
  node.textContent = text;
  return node.innerHTML;
}

function showMessage(html, kind = "") {
  const box = $("stage-message");
  box.hidden = !html;
  box.className = `stage-message ${kind}`;
  if (html) box.innerHTML = html;
  $("viewer").style.visibility = state.detail?.front ? "visible" : "hidden";
}

async function loadFront(generation) {
  const id = state.currentId;
  try {
    const url = await fetchImage(`/api/models/${id}/front.png`);
    if (generation !== state.generation) return URL.revokeObjectURL(url);
    await setImage($("front"), url);
  } catch (error) {
    if (generation !== state.generation) return;
    state.detail.front = null;
    showMessage(loadErrorMessage(error.message));
    return;
  }
  $("viewer").classList.remove("loading");
  state.shownId = id;
  if (state.metrics.firstView === null) {
    state.metrics.firstView = performance.now();
    console.info(`first rendered view ${Math.round(state.metrics.firstView)} ms after page load`);
  }
  renderLines();
  requestPreview();
  loadThumbnails(generation);
}

// ---------------------------------------------------------------- head lines

function fraction(y) {
  const front = state.detail.front;
  return (front.y_top - y) / (front.y_top - front.y_bottom);
}

function renderLines() {
  const head = state.record?.head;
  const front = state.detail?.front;
  if (!head || !front) return;
  for (const edge of ["top", "bottom"]) {
    const line = $(`line-${edge}`);
    line.style.top = `${100 * fraction(head[edge])}%`;
    line.querySelector("b").textContent = fmt(head[edge]);
  }
  const band = $("band");
  band.style.top = `${100 * fraction(head.top)}%`;
  band.style.height = `${100 * (fraction(head.bottom) - fraction(head.top))}%`;
  // the dataset's 256 x 256 window: head top and chin on its middle half, centred on the head
  const height = head.top - head.bottom, width = front.x_right - front.x_left;
  const crop = $("crop");
  crop.style.top = `${100 * fraction((head.top + head.bottom) / 2 + height)}%`;
  crop.style.height = crop.style.width = `${(200 * height) / width}%`;
  crop.style.left = `${(100 * (front.head_center_x - height - front.x_left)) / width}%`;
}

function setEdge(edge, y) {
  const front = state.detail.front, head = state.record.head;
  const gap = (3 * (front.y_top - front.y_bottom)) / front.size; // keep three pixels between the lines
  head[edge] = edge === "top" ? Math.max(y, head.bottom + gap) : Math.min(y, head.top - gap);
  head[edge] = Math.min(front.y_top, Math.max(front.y_bottom, head[edge]));
  renderLines();
  renderStatus();
  requestPreview();
}

function startDrag(event) {
  if (!state.detail?.front || !state.record.head) return;
  const line = event.currentTarget, edge = line.dataset.edge;
  const viewer = $("viewer").getBoundingClientRect();
  const front = state.detail.front;
  line.setPointerCapture(event.pointerId);
  line.classList.add("dragging");
  const move = (e) => {
    const f = (e.clientY - viewer.top) / viewer.height;
    setEdge(edge, front.y_top - f * (front.y_top - front.y_bottom));
  };
  const stop = () => {
    line.classList.remove("dragging");
    line.removeEventListener("pointermove", move);
    line.removeEventListener("pointerup", stop);
    line.removeEventListener("pointercancel", stop);
  };
  line.addEventListener("pointermove", move);
  line.addEventListener("pointerup", stop);
  line.addEventListener("pointercancel", stop);
  event.preventDefault();
}

function nudge(edge, pixels) {
  if (!state.detail?.front || !state.record.head) return;
  const viewer = $("viewer").getBoundingClientRect();
  const front = state.detail.front;
  setEdge(edge, state.record.head[edge] + (pixels * (front.y_top - front.y_bottom)) / viewer.height);
}

// at most one framing render in flight; the latest bounds win
async function requestPreview() {
  const head = state.record?.head;
  if (!head || !state.detail?.front) return;
  if (state.preview.inflight) { state.preview.again = true; return; }
  state.preview.inflight = true;
  const generation = state.generation;
  try {
    const url = await fetchImage(`/api/models/${state.currentId}/preview.png${headQuery(head)}`);
    if (generation === state.generation) await setImage($("preview"), url);
    else URL.revokeObjectURL(url);
  } catch (error) {
    if (generation === state.generation) toast(error.message, "error");
  } finally {
    state.preview.inflight = false;
    if (state.preview.again) { state.preview.again = false; requestPreview(); }
  }
}

// ---------------------------------------------------------------- roles, status, morphs

function currentMorph() {
  return state.detail?.morphs[state.morphIndex] || null;
}

function renderEditor() {
  renderStatus();
  renderRoles();
  renderLines();
  renderLayers();
}

function renderStatus() {
  const detail = state.detail, shown = detail.record, badge = $("model-badge");
  const modified = dirty();
  const [kind, label] = modified ? ["modified", "edited"] : detail.done
    ? [shown.status, shown.status === "ok" ? "annotated" : "rejected"] : ["suggested", "suggested"];
  badge.className = `badge ${kind}`;
  badge.textContent = label;
  const status = $("status");
  const confidence = shown.confidence ? Math.min(...Object.values(shown.confidence)) : null;
  const reason = shown.reject_reason ? `<br><span class="reason">${escapeHtml(shown.reject_reason)}</span>` : "";
  if (modified) status.innerHTML = "<b>Edited.</b> Enter saves your changes and moves on.";
  else if (detail.done) status.innerHTML = `<b>${shown.status === "ok" ? "Annotated" : "Rejected"}</b> by a person.${reason}`;
  else if (shown.status === "rejected") status.innerHTML = `<b>Suggested rejection.</b> Enter confirms it.${reason}`;
  else if (shown.status === "review") status.innerHTML = `<b>Held for review.</b> Look at each reason, fix the roles, then Enter confirms.`;
  else status.innerHTML = `<b>Suggestion</b>${confidence === null ? "" : `, confidence ${Math.round(100 * confidence)}%`}. Enter confirms it.`;
  const notes = [...(modified ? [] : shown.review || []).map((text) => ["review", text]),
                 ...(detail.warnings || []).map((text) => ["warning", text])];
  $("notes").replaceChildren(...notes.map(([kind, text]) => el("li", kind, text)));
  renderChannels();
}

function renderChannels() {
  const head = state.record.head, image = $("channels");
  if (!head) { image.removeAttribute("src"); return; }
  const query = new URLSearchParams({ top: head.top, bottom: head.bottom });
  for (const role of ["mouth_open", "blink", "wink_left", "wink_right"]) query.set(role, state.record.morphs[role] || "");
  image.src = `/api/models/${state.detail.id}/channels.png?${query}`;
}

function renderRoles() {
  const morph = currentMorph(), confidence = state.detail.done ? null : state.detail.record.confidence;
  $("roles").replaceChildren(...state.detail.roles.map((role, i) => {
    const name = state.record.morphs[role];
    const row = el("tr", morph && name === morph.name ? "active" : "");
    const key = el("td"), meter = el("td", "conf");
    key.append(el("kbd", "", String(i + 1)));
    const value = confidence?.[role];
    if (value !== undefined && !dirty()) {
      const bar = el("div", `meter ${value < 0.5 ? "low" : value < 0.8 ? "mid" : ""}`);
      bar.title = `suggestion confidence ${Math.round(100 * value)}%`;
      const fill = el("i");
      fill.style.width = `${100 * value}%`;
      bar.append(fill);
      meter.append(bar);
    }
    row.append(key, el("td", "role", ROLE_LABELS[role] || role), el("td", name ? "name" : "name none", name || "—"), meter);
    return row;
  }));
}

function rolesOf(name) {
  return state.detail.roles.filter((role) => state.record.morphs[role] === name);
}

function renderMorphs() {
  const strip = $("morph-strip"), morphs = state.detail.morphs;
  $("morph-count").textContent = morphs.length ? `${morphs.length} · eye and mouth first` : "";
  strip.replaceChildren(...morphs.map((morph, i) => {
    const card = el("div", "morph");
    card.dataset.index = morph.index;
    card.dataset.name = morph.name;
    const img = el("img", "thumb");
    img.alt = morph.name;
    const label = el("div", "label", morph.name);
    if (morph.name_en && morph.name_en !== morph.name) label.append(el("small", "", morph.name_en));
    card.append(img, el("div", "roles-on"), el("span", "panel-tag", PANELS[morph.panel] || ""), label);
    card.addEventListener("click", () => selectMorph(i));
    return card;
  }));
  selectMorph(Math.min(state.morphIndex, Math.max(morphs.length - 1, 0)));
}

function renderMorphRoles() {
  for (const card of $("morph-strip").children) {
    card.querySelector(".roles-on").replaceChildren(
      ...rolesOf(card.dataset.name).map((role) => el("span", "", ROLE_LABELS[role])));
  }
}

function selectMorph(i) {
  const cards = $("morph-strip").children;
  if (!cards.length) { $("morph-current").textContent = ""; renderRoles(); return; }
  state.morphIndex = (i + cards.length) % cards.length;
  for (const card of cards) card.classList.remove("current");
  const card = cards[state.morphIndex];
  card.classList.add("current");
  card.scrollIntoView({ inline: "center", block: "nearest" });
  const roles = rolesOf(card.dataset.name).map((role) => ROLE_LABELS[role]);
  $("morph-current").textContent = `${card.dataset.name}${roles.length ? ` → ${roles.join(", ")}` : " · no role"}`;
  renderRoles();
  renderMorphRoles();
}

function assignRole(role) {
  const morph = currentMorph();
  if (!morph) return;
  state.record.morphs[role] = morph.name;
  afterRoleChange();
}

function clearRoles() {
  const morph = currentMorph();
  if (!morph) return;
  for (const role of rolesOf(morph.name)) state.record.morphs[role] = null;
  afterRoleChange();
}

function afterRoleChange() {
  selectMorph(state.morphIndex);
  renderStatus();
}

// close-ups load nearest the current morph first, a couple at a time
async function loadThumbnails(generation) {
  const cards = [...$("morph-strip").children];
  const start = state.morphIndex;
  const order = cards.map((_, i) => i).sort((a, b) => Math.abs(a - start) - Math.abs(b - start));
  const query = headQuery(state.thumbHead);
  const worker = async () => {
    while (order.length && generation === state.generation) {
      const card = cards[order.shift()];
      const img = card.querySelector("img");
      img.src = `/api/models/${state.currentId}/morphs/${card.dataset.index}.png${query}`;
      await img.decode().catch(() => card.classList.add("failed"));
    }
  };
  await Promise.all(Array.from({ length: THUMB_CONCURRENCY }, worker));
}

// ---------------------------------------------------------------- layers: per-material overrides

function toggleLayers() {
  state.layers.open = !state.layers.open;
  $("layers-panel").hidden = !state.layers.open;
  if (state.layers.open && !state.layers.data) loadLayers(state.generation);
}

async function loadLayers(generation) {
  const id = state.currentId, query = headQuery(state.thumbHead);
  layersMessage("Reading the materials…");
  try {
    const data = await api(`/api/models/${id}/layers${query}`);
    if (generation !== state.generation) return;
    state.layers.data = data;
    renderLayers();
    selectMaterial(state.layers.material);
  } catch (error) {
    if (generation === state.generation) layersMessage(error.message);
  }
}

function layersMessage(text) {
  const row = el("tr");
  row.append(Object.assign(el("td", "layers-message", text), { colSpan: 4 }));
  $("layers-table").replaceChildren(row);
  $("material-about").textContent = "";
  clearImage($("material-image"));
}

function layerOf(material) {
  return state.record.layers[material.name] ?? material.layer;
}

function renderLayers() {
  const data = state.layers.data;
  if (!data || !state.record) return;
  $("layers-table").replaceChildren(...data.materials.map((material) => {
    const overridden = material.name in state.record.layers;
    const row = el("tr", `${overridden ? "overridden" : ""}${material.material === state.layers.material ? " current" : ""}`);
    row.dataset.material = material.material;
    const select = el("select");
    select.title = `suggested: ${material.layer}`;
    select.append(...data.layers.map((layer) => Object.assign(el("option", "", layer), { value: layer })));
    select.value = layerOf(material);
    select.addEventListener("change", () => { setLayer(material, select.value); select.blur(); });
    const [tag, meaning] = DECIDED[overridden ? "override" : material.decided] || ["", ""];
    const how = el("td", "how", tag);
    how.title = meaning;
    const cell = el("td");
    cell.append(select);
    row.append(el("td", "index", String(material.material)), el("td", "name", material.name), cell, how);
    row.title = material.name;
    row.addEventListener("click", () => selectMaterial(material.material));
    return row;
  }));
  renderAbout();
}

function setLayer(material, layer) {
  if (layer === material.layer) delete state.record.layers[material.name];
  else state.record.layers[material.name] = layer;
  renderLayers();
  renderStatus();
}

// the selected material alone, so a person sees what a name like "mat12" is
async function selectMaterial(index) {
  const data = state.layers.data;
  if (!data?.materials.length) return;
  state.layers.material = Math.max(0, Math.min(index, data.materials.length - 1));
  for (const row of $("layers-table").children) {
    row.classList.toggle("current", Number(row.dataset.material) === state.layers.material);
  }
  renderAbout();
  const generation = state.generation, chosen = state.layers.material;
  try {
    const url = await fetchImage(`/api/models/${state.currentId}/materials/${chosen}.png`);
    if (generation === state.generation && chosen === state.layers.material) await setImage($("material-image"), url);
    else URL.revokeObjectURL(url);
  } catch (error) {
    if (generation === state.generation) toast(error.message, "error");
  }
}

function renderAbout() {
  const material = state.layers.data?.materials[state.layers.material];
  if (!material) return;
  const about = $("material-about");
  const overridden = material.name in state.record.layers;
  about.replaceChildren(el("b", "", `${material.material} · ${material.name}`),
    el("div", "", `${overridden ? "your layer" : "suggested"}: ${layerOf(material)}`),
    el("div", "", overridden ? `suggested ${material.layer} (${material.reason})` : material.reason));
}

// ---------------------------------------------------------------- decisions and navigation

async function accept() {
  const detail = state.detail;
  if (!detail || state.saving) return;
  if (detail.record.status === "rejected" && !dirty()) return reject(detail.record.reject_reason);
  if (!state.record.head) {
    toast("This model has no head bounds to confirm; press R to reject it.", "error");
    return;
  }
  await decide("confirm", { head: state.record.head, morphs: state.record.morphs, layers: state.record.layers });
}

async function reject(reason) {
  if (!reason?.trim()) { toast("A rejection needs a reason.", "error"); return; }
  closeReject();
  await decide("reject", { reason: reason.trim() });
}

async function decide(action, body) {
  const id = state.currentId;
  state.saving = true;
  try {
    const result = await api(`/api/models/${id}/${action}`, body);
    const row = rowOf(id);
    Object.assign(row, { status: result.record.status, source: "annotated", pending: false,
                         reason: result.record.reject_reason });
    state.progress = result.progress;
    renderProgress();
    toast(action === "confirm" ? `Saved ${row.model}` : `Rejected ${row.model}`, "ok");
    goNextUndone();
    refreshList().catch(() => {});
  } catch (error) {
    toast(error.message, "error");
  } finally {
    state.saving = false;
  }
}

function goNextUndone() {
  const at = state.list.findIndex((row) => row.id === state.currentId);
  for (let step = 1; step <= state.list.length; step++) {
    const row = state.list[(at + step) % state.list.length];
    if (!isDone(row)) return openModel(row.id);
  }
  renderList();
  state.detail.done = true;
  renderStatus();
  showMessage(`<b>All ${state.progress.total} models are done.</b> The manifest is saved; you can close this tab.`, "done");
}

function step(offset) {
  const at = state.list.findIndex((row) => row.id === state.currentId);
  const row = state.list[(at + offset + state.list.length) % state.list.length];
  if (row) openModel(row.id);
}

function openReject() {
  if (!state.detail) return;
  const form = $("reject-form"), input = $("reject-reason");
  form.hidden = false;
  input.value = state.detail.record.reject_reason || state.detail.error || "";
  input.focus();
  input.select();
}

function closeReject() {
  $("reject-form").hidden = true;
  $("reject-reason").blur();
}

function undo() {
  if (!state.detail) return;
  state.record = JSON.parse(state.original);
  renderEditor();
  selectMorph(state.morphIndex);
  requestPreview();
}

const KEYS = {
  Enter: accept,
  ArrowRight: () => selectMorph(state.morphIndex + 1),
  ArrowLeft: () => selectMorph(state.morphIndex - 1),
  ArrowDown: () => step(1), ArrowUp: () => step(-1), n: () => step(1), p: () => step(-1),
  r: openReject, u: undo, 0: clearRoles, l: toggleLayers, L: toggleLayers,
  w: () => nudge("bottom", -1), s: () => nudge("bottom", 1),
  W: () => nudge("top", -1), S: () => nudge("top", 1),
};

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest?.("input, select")) return;
  const digit = /^[1-7]$/.test(event.key) ? Number(event.key) : 0;
  const action = digit ? () => assignRole(state.detail.roles[digit - 1]) : KEYS[event.key];
  if (!action || !state.detail) return;
  event.preventDefault();
  state.metrics.keys += 1;
  action();
}

function init() {
  document.addEventListener("keydown", onKey);
  for (const edge of ["top", "bottom"]) $(`line-${edge}`).addEventListener("pointerdown", startDrag);
  $("confirm-button").addEventListener("click", accept);
  $("reject-button").addEventListener("click", openReject);
  $("channels").addEventListener("click", () => $("channels").parentElement.classList.toggle("big"));
  $("reject-form").addEventListener("submit", (event) => { event.preventDefault(); reject($("reject-reason").value); });
  $("reject-reason").addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); closeReject(); }
  });
  window.addEventListener("resize", renderLines);
  refreshList().then(() => {
    const first = state.list.find((row) => !isDone(row)) || state.list[0];
    if (first) openModel(first.id);
    else showMessage("<b>No models found.</b>");
  }).catch((error) => showMessage(`<b>The server did not answer.</b><br>${escapeHtml(error.message)}`));
}

init();
