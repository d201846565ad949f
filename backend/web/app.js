// The service's web page: pick a space, ask (the answer streams from POST /ask), open a cited source,
// upload files with progress. Plain browser JavaScript, no build step. Every text that comes from a
// document or the model is set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "rag-api-key";
const SPACE_STORE = "rag-space";
let sources = [];
let controller = null;

function headers() {
  const key = $("key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function notice(message) {
  $("notice").textContent = message || "";
  $("notice").hidden = !message;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.error ? body.error.message : JSON.stringify(body)}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadSpaces() {
  const response = await fetch("/spaces", { headers: headers() });
  if (!response.ok) {
    notice(`Cannot list spaces: ${await errorOf(response)}`);
    return;
  }
  notice("");
  const { spaces } = await response.json();
  const select = $("space");
  const wanted = select.value || localStorage.getItem(SPACE_STORE);
  select.replaceChildren();
  for (const space of spaces) {
    const option = document.createElement("option");
    option.value = space.name;
    option.textContent = `${space.name} (${space.documents} documents)`;
    select.append(option);
  }
  if (!spaces.length) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = "no spaces yet: add documents below";
    select.append(option);
  }
  if (spaces.some((s) => s.name === wanted)) select.value = wanted;
}

// The answer with its [n] citations as links to the sources.
function renderAnswer(text) {
  const out = $("answer");
  out.replaceChildren();
  const pattern = /\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.append(document.createTextNode(text.slice(last, match.index)));
    out.append("[");
    match[1].split(/\s*[,;]\s*/).forEach((n, i) => {
      if (i) out.append(", ");
      const link = document.createElement("a");
      link.className = "cite";
      link.dataset.n = n;
      link.textContent = n;
      link.href = "#source";
      link.addEventListener("click", (event) => { event.preventDefault(); showSource(Number(n)); });
      out.append(link);
    });
    out.append("]");
    last = match.index + match[0].length;
  }
  out.append(document.createTextNode(text.slice(last)));
}

function renderSources(cited) {
  const list = $("sources");
  list.replaceChildren();
  $("sources-heading").hidden = !sources.length;
  for (const s of sources) {
    const item = document.createElement("li");
    item.value = s.n;
    item.tabIndex = 0;
    item.dataset.n = s.n;
    item.className = cited.has(s.n) ? "cited" : "";
    const where = [s.path || s.document, s.heading, s.page ? `p. ${s.page}` : ""].filter(Boolean).join(" · ");
    item.textContent = `${where} (score ${s.score.toFixed(3)})${cited.has(s.n) ? " - cited" : ""}`;
    item.addEventListener("click", () => showSource(s.n));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") showSource(s.n); });
    list.append(item);
  }
}

function showSource(n) {
  const s = sources.find((x) => x.n === n);
  if (!s) return;
  $("source-title").textContent = `[${s.n}] ${s.title || s.path || s.document}`;
  $("source-where").textContent =
    [s.path, s.heading, s.page ? `page ${s.page}` : "", s.chunk != null ? `chunk ${s.chunk}` : "",
     `score ${s.score.toFixed(3)}`].filter(Boolean).join(" · ");
  $("source-text").textContent = s.text;
  $("source-view").hidden = false;
  $("close-source").focus();
}

function describe(done) {
  const t = done.timings;
  const secs = (ms) => (ms == null ? "-" : `${(ms / 1000).toFixed(2)} s`);
  const who = done.backend === "none" ? "no LLM needed" : `answered by ${done.backend} (${done.model})`;
  return [
    who + (done.fallback_used ? ", the fallback: the primary failed" : ""),
    `retrieval ${done.retrieval.mode}`,
    `embed ${secs(t.embed_ms)}`, `search ${secs(t.search_ms)}`,
    `first token ${secs(t.llm_ttft_ms)}`, `answer ${secs(t.llm_ms)}`, `total ${secs(t.total_ms)}`,
  ].join(" · ");
}

async function ask(event) {
  event.preventDefault();
  const space = $("space").value;
  const q = $("question").value.trim();
  if (!space) { notice("Pick a space first (or add documents below)."); return; }
  if (!q) return;
  localStorage.setItem(SPACE_STORE, space);
  notice("");
  sources = [];
  renderSources(new Set());
  renderAnswer("");
  $("meta").textContent = "";
  $("ask-state").textContent = "searching…";
  $("ask").disabled = true;
  $("stop").hidden = false;
  controller = new AbortController();
  let text = "";
  try {
    const response = await fetch("/ask", {
      method: "POST",
      headers: { ...headers(), "Content-Type": "application/json" },
      body: JSON.stringify({ q, space_id: space, stream: true }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorOf(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (kind === "sources") {
          sources = data.sources;
          renderSources(new Set());
          $("ask-state").textContent = "writing…";
        } else if (kind === "token") {
          text += data.delta;
          renderAnswer(text);
        } else if (kind === "done") {
          renderSources(new Set(data.cited));
          $("meta").textContent = describe(data);
        } else if (kind === "error") {
          throw new Error(data.error.message);
        }
      }
    }
    $("ask-state").textContent = "";
  } catch (error) {
    $("ask-state").textContent = "";
    if (error.name !== "AbortError") notice(`The question failed: ${error.message}`);
  } finally {
    $("ask").disabled = false;
    $("stop").hidden = true;
    controller = null;
  }
}

function upload(event) {
  event.preventDefault();
  const space = $("upload-space").value.trim();
  const files = $("files").files;
  if (!files.length) return;
  const form = new FormData();
  form.append("space_id", space);
  for (const file of files) form.append("files", file, file.name);
  const request = new XMLHttpRequest();
  request.open("POST", "/documents");
  for (const [name, value] of Object.entries(headers())) request.setRequestHeader(name, value);
  const bar = $("upload-progress");
  bar.hidden = false;
  bar.value = 0;
  $("upload").disabled = true;
  $("upload-state").textContent = "sending…";
  request.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    bar.value = Math.round((100 * e.loaded) / e.total);
    $("upload-state").textContent = e.loaded < e.total
      ? `sending ${Math.round(e.loaded / 1024)} of ${Math.round(e.total / 1024)} KB…`
      : "indexing (parsing and embedding)…";
  });
  request.addEventListener("loadend", () => {
    $("upload").disabled = false;
    if (request.status === 200) {
      const body = JSON.parse(request.responseText);
      $("upload-state").textContent =
        `${body.files.length} file(s), ${body.chunks_written} chunks written in ${body.seconds.toFixed(1)} s`;
      const rows = $("upload-results").tBodies[0];
      rows.replaceChildren();
      for (const f of body.files) {
        const row = rows.insertRow();
        for (const [value, cls] of [[f.path, ""], [f.status, f.status], [String(f.chunks), ""], [f.reason || "", ""]]) {
          const cell = row.insertCell();
          cell.textContent = value;
          if (cls) cell.className = cls;
        }
      }
      $("upload-results").hidden = false;
      localStorage.setItem(SPACE_STORE, space);
      loadSpaces();
    } else {
      let message = `${request.status} ${request.statusText}`;
      try { message = `${request.status}: ${JSON.parse(request.responseText).error.message}`; } catch (_) { /* keep */ }
      $("upload-state").textContent = "";
      notice(request.status === 0 ? "The upload could not reach the service." : `The upload failed: ${message}`);
    }
  });
  request.send(form);
}

$("key").value = localStorage.getItem(KEY_STORE) || "";
$("key").addEventListener("change", () => { localStorage.setItem(KEY_STORE, $("key").value.trim()); loadSpaces(); });
$("refresh").addEventListener("click", loadSpaces);
$("ask-form").addEventListener("submit", ask);
$("stop").addEventListener("click", () => controller && controller.abort());
$("close-source").addEventListener("click", () => { $("source-view").hidden = true; });
$("upload-form").addEventListener("submit", upload);
$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
});
loadSpaces();
