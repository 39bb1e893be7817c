// The embedpipe console: the ingestion API of this origin, driven from the browser.
// Plain ES module, no build step and nothing fetched from elsewhere: every call goes to
// /api/v1 with the key the user entered (kept in sessionStorage: this tab only), and task
// progress comes live over the /api/v1/ws WebSocket.

const API = "/api/v1";
const KEY_STORE = "embedpipe.apiKey";
const FINAL = new Set(["completed", "unchanged", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const state = { key: "", collection: null, socket: null, tasks: new Map(), files: new Map() };

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function announce(text) {
  $("announcer").textContent = text;
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

class ApiError extends Error {}

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${state.key}` };
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(API + path, { method, headers, body: payload });
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = answer.error?.message ?? response.statusText;
    throw new ApiError(`${response.status}: ${detail}`);
  }
  return answer;
}

async function guarded(work) {
  try {
    showError("");
    return await work();
  } catch (error) {
    showError(error instanceof ApiError ? error.message : `Could not reach the API (${error})`);
    return undefined;
  }
}

async function listAll(path, field) {
  const items = [];
  let token = "";
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await call("GET", `${path}${sep}page_size=200${token ? `&page_token=${encodeURIComponent(token)}` : ""}`);
    items.push(...(page[field] ?? []));
    token = page.next_page_token ?? "";
  } while (token);
  return items;
}

// --- Key and connection -------------------------------------------------------------

async function connect(key) {
  state.key = key;
  const collections = await guarded(() => listAll("/collections", "collections"));
  if (collections === undefined) {
    $("connection").textContent = "Not connected: the key was refused or the API is down.";
    return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  $("connection").textContent = "Connected.";
  $("app").hidden = false;
  $("forget-key").hidden = false;
  renderCollections(collections);
  openEvents();
}

function openEvents() {
  if (state.socket) state.socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}${API}/ws?api_key=${encodeURIComponent(state.key)}`;
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ action: "subscribe", all: true }));
    $("connection").textContent = "Connected; following tasks live.";
  });
  socket.addEventListener("message", (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "task") onTaskEvent(event);
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket) return;
    $("connection").textContent = "Live updates lost; reconnecting…";
    setTimeout(() => state.socket === socket && openEvents(), 2000);
  });
}

// --- Collections ----------------------------------------------------------------------

function renderCollections(collections) {
  const list = $("collections");
  list.replaceChildren();
  if (!collections.length) list.append(element("li", { className: "hint", textContent: "No collections yet." }));
  for (const collection of collections) {
    const id = collection.collection_id;
    const button = element(
      "button",
      { type: "button", className: "quiet" },
      element("span", { textContent: id }),
      element("span", {
        className: "count",
        textContent: `${collection.document_count ?? 0} documents · ${collection.chunk_count ?? 0} chunks`,
      }),
    );
    button.dataset.collection = id;
    button.setAttribute("aria-current", String(id === state.collection));
    button.addEventListener("click", () => selectCollection(id));
    list.append(element("li", {}, button));
  }
}

async function refreshCollections() {
  const collections = await guarded(() => listAll("/collections", "collections"));
  if (collections !== undefined) renderCollections(collections);
  return collections;
}

async function selectCollection(id) {
  state.collection = id;
  for (const button of $("collections").querySelectorAll("button")) {
    button.setAttribute("aria-current", String(button.dataset.collection === id));
  }
  $("collection-panel").hidden = false;
  $("collection-title").textContent = `Collection ${id}`;
  $("results").replaceChildren();
  renderTasks();
  await refreshDocuments();
  $("collection-title").tabIndex = -1;
  $("collection-title").focus();
}

async function refreshDocuments() {
  const id = state.collection;
  if (!id) return;
  const path = `/collections/${encodeURIComponent(id)}`;
  const [collection, documents] = await Promise.all([
    guarded(() => call("GET", path)),
    guarded(() => listAll(`${path}/documents`, "documents")),
  ]);
  if (id !== state.collection) return; // another was chosen meanwhile
  if (collection) {
    $("collection-facts").textContent =
      `${collection.model}, ${collection.dimensions} dimensions · ` +
      `${collection.document_count ?? 0} documents · ${collection.chunk_count ?? 0} chunks`;
  }
  if (documents) renderDocuments(documents);
}

function renderDocuments(documents) {
  const body = $("documents").querySelector("tbody");
  body.replaceChildren();
  $("no-documents").hidden = documents.length > 0;
  state.files = new Map(documents.map((doc) => [doc.document_id, doc.filename ?? ""]));
  for (const doc of documents) {
    const remove = element("button", { type: "button", className: "danger", textContent: "Delete" });
    remove.setAttribute("aria-label", `Delete ${doc.document_id}`);
    remove.addEventListener("click", () => deleteDocument(doc.document_id));
    const row = element(
      "tr",
      {},
      element("td", { textContent: doc.document_id }),
      element("td", { textContent: doc.filename ?? "" }),
      element("td", { textContent: doc.status, className: `status-${doc.status}` }),
      element("td", { textContent: String(doc.chunk_count ?? 0) }),
      element("td", {}, remove),
    );
    row.dataset.document = doc.document_id;
    body.append(row);
  }
}

async function deleteDocument(documentId) {
  const collection = state.collection; // the one whose row was clicked
  if (!confirm(`Delete ${documentId} and its chunks?`)) return;
  const path = `/collections/${encodeURIComponent(collection)}/documents/${encodeURIComponent(documentId)}`;
  if ((await guarded(() => call("DELETE", path))) === undefined) return;
  announce(`Deleted ${documentId}.`);
  if (collection !== state.collection) return refreshCollections();
  for (const result of $("results").querySelectorAll("li")) {
    if (result.dataset.document === documentId) result.remove();
  }
  await Promise.all([refreshDocuments(), refreshCollections()]);
}

// --- Uploads and live progress ----------------------------------------------------------

async function upload(files) {
  const collection = state.collection;
  for (const file of files) {
    const form = new FormData();
    form.append("file", file, file.name);
    const accepted = await guarded(() =>
      call("POST", `/collections/${encodeURIComponent(collection)}/documents`, form),
    );
    if (!accepted) continue;
    const known = state.tasks.get(accepted.task_id);
    state.tasks.set(accepted.task_id, {
      task_id: accepted.task_id, document_id: accepted.document_id,
      collection_id: collection, status: accepted.status, progress: 0,
      ...known, filename: file.name,
    });
    announce(`Uploading ${file.name}.`);
    renderTasks();
  }
  await refreshDocuments();
}

function onTaskEvent(event) {
  const known = state.tasks.get(event.task_id) ?? {};
  const task = { ...known, ...event };
  state.tasks.set(event.task_id, task);
  renderTasks();
  if (FINAL.has(event.status) && !FINAL.has(known.status)) {
    announce(`${task.filename ?? task.document_id}: ${event.status}.`);
    refreshSoon(event.collection_id);
  }
}

// Many tasks ending at once (a folder dropped) refresh the lists once, not once each.
let refreshTimer = null;
const refreshFor = new Set();
function refreshSoon(collectionId) {
  refreshFor.add(collectionId);
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    if (refreshFor.has(state.collection)) refreshDocuments();
    refreshFor.clear();
    refreshCollections();
  }, 300);
}

function renderTasks() {
  const list = $("tasks");
  list.replaceChildren();
  for (const task of state.tasks.values()) {
    if (task.collection_id !== state.collection || task.filename === undefined) continue;
    const percent = Math.round(task.progress ?? 0); // the API's progress is in percent
    const bar = element("progress", { max: 100, value: percent });
    bar.setAttribute("aria-label", `${task.filename} ${percent}%`);
    const status = element("span", { className: `status status-${task.status}`, textContent: task.status });
    const detail = task.error_message ? ` (${task.error_message})` : "";
    const item = element(
      "li",
      {},
      element("span", { textContent: `${task.filename}${detail}` }),
      status,
      bar,
    );
    item.dataset.task = task.task_id;
    item.dataset.status = task.status;
    list.append(item);
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer?.files.length) upload([...event.dataTransfer.files]);
  });
  $("file-input").addEventListener("change", (event) => {
    const files = [...event.target.files];
    event.target.value = "";
    if (files.length) upload(files);
  });
}

// --- Search -----------------------------------------------------------------------------

async function search(query, mode, topK) {
  const collection = state.collection;
  const path = `/collections/${encodeURIComponent(collection)}/search`;
  const answer = await guarded(() => call("POST", path, { query, mode, top_k: topK }));
  if (collection !== state.collection) return; // another was chosen meanwhile
  const list = $("results");
  list.replaceChildren();
  if (!answer) return;
  for (const result of answer.results ?? []) {
    const headings = result.metadata?.headings ?? [];
    // Which signals found it: its rank in the vector and in the keyword ranking.
    const signals = [["vector", result.vector_rank], ["keyword", result.keyword_rank]]
      .filter(([, rank]) => rank != null)
      .map(([name, rank]) => `${name} #${rank}`);
    const source = [
      state.files.get(result.document_id) || result.document_id,
      `chunk ${result.position}`,
      `score ${Number(result.score).toFixed(3)}`,
      ...signals,
    ];
    const item = element(
      "li",
      {},
      element("div", { className: "headings", textContent: headings.join(" › ") || "(no heading)" }),
      element("div", { className: "source", textContent: source.join(" · ") }),
      element("p", { className: "text", textContent: result.text }),
    );
    item.dataset.document = result.document_id;
    list.append(item);
  }
  announce(`${answer.results?.length ?? 0} results.`);
}

// --- Wiring -------------------------------------------------------------------------------

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect($("api-key").value.trim());
});
$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  location.reload();
});
$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("new-collection").value.trim();
  if ((await guarded(() => call("POST", "/collections", { collection_id: id }))) === undefined) return;
  $("new-collection").value = "";
  await refreshCollections();
  await selectCollection(id);
});
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  search($("query").value, $("mode").value, Number($("top-k").value));
});
setUpDropZone();

const kept = sessionStorage.getItem(KEY_STORE);
if (kept) {
  $("api-key").value = kept;
  connect(kept);
}
