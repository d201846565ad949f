// The service's web page: pick a space, ask (the answer streams from POST /ask), open a cited source,
// upload files with progress, in Russian or English (i18n.js). Plain browser JavaScript, no build step.
// Every text that comes from a document or the model is set with textContent (answers through
// markdown.js, which builds DOM nodes), never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "rag-api-key";
const SPACE_STORE = "rag-space";
const MODEL_STORE = "rag-model";
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
    notice(t("spaces.failed", { error: await errorOf(response) }));
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
    option.textContent = t("spaces.option", { name: space.name, documents: formatNumber(space.documents, 0) });
    select.append(option);
  }
  if (!spaces.length) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = t("spaces.none");
    select.append(option);
  }
  if (spaces.some((s) => s.name === wanted)) select.value = wanted;
}

// The named models this key may use (LLM_MODELS); the picker shows only when there is a choice.
async function loadModels() {
  const response = await fetch("/models", { headers: headers() });
  if (!response.ok) return;  // loadSpaces reports a bad key or an unreachable service
  const { models } = await response.json();
  const select = $("model");
  const wanted = select.value || localStorage.getItem(MODEL_STORE);
  select.replaceChildren();
  for (const model of models) {
    const option = document.createElement("option");
    option.value = model.name;
    const label = model.default ? "model.default" : model.awake === false ? "model.asleep" : null;
    option.textContent = label ? t(label, { name: model.name }) : model.name;
    select.append(option);
  }
  if (models.some((m) => m.name === wanted)) select.value = wanted;
  else if (models.some((m) => m.default)) select.value = models.find((m) => m.default).name;
  $("model-picker").hidden = models.length < 2;
}

// What the request names as its model: nothing unless the picker offers a choice.
function chosenModel() {
  if ($("model-picker").hidden || !$("model").value) return {};
  localStorage.setItem(MODEL_STORE, $("model").value);
  return { model: $("model").value };
}

// The answer as Markdown, its [n] citations as links to the sources.
function renderAnswer(text) {
  renderMarkdown($("answer"), text, showSource);
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
    const where = [s.path || s.document, s.heading, s.page ? t("page", { page: s.page }) : "", whoAndWhen(s)]
      .filter(Boolean).join(" · ");
    const score = s.score != null ? ` (${t("score", { score: formatNumber(s.score, 3) })})` : "";
    item.textContent = `${where}${score}${cited.has(s.n) ? ` - ${t("cited")}` : ""}`;
    item.addEventListener("click", () => showSource(s.n));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") showSource(s.n); });
    list.append(item);
  }
}

// A chunk of a chat or mail thread: who wrote its messages, and when.
function whoAndWhen(s) {
  const c = s.conversation;
  if (!c) return "";
  const people = [...new Set(c.messages.map((m) => m.sender))];
  const shown = people.slice(0, 3).join(", ") + (people.length > 3 ? ` +${people.length - 3}` : "");
  if (c.sent_first == null) return shown;
  const first = formatDate(c.sent_first);
  const last = c.sent_last != null && c.sent_last !== c.sent_first ? formatDate(c.sent_last) : "";
  return `${shown}, ${last ? t("messages.span", { first, last }) : first}`;
}

// The filter fields as the API's `filters`; empty fields are left out. Dates are whole days in the
// reader's time zone: "to" includes its day.
function filters() {
  const out = {};
  const names = $("f-participants").value.split(",").map((x) => x.trim()).filter(Boolean);
  if (names.length) out.participants = names;
  const conversation = $("f-conversation").value.trim();
  if (conversation) { out.chat = [conversation]; out.thread = [conversation]; }
  if ($("f-after").value) out.sent_after = new Date(`${$("f-after").value}T00:00:00`).toISOString();
  if ($("f-before").value) {
    const end = new Date(`${$("f-before").value}T00:00:00`);
    end.setDate(end.getDate() + 1);
    out.sent_before = end.toISOString();
  }
  return Object.keys(out).length ? out : null;
}

function showSource(n) {
  const s = sources.find((x) => x.n === n);
  if (!s) return;
  $("source-title").textContent = `[${s.n}] ${s.title || s.path || s.document}`;
  $("source-where").textContent =
    [s.path, s.heading, s.page ? t("page.long", { page: s.page }) : "",
     s.chunk != null ? t("chunk", { chunk: s.chunk }) : "",
     s.modified_at && !s.conversation ? t("modified", { date: formatDate(s.modified_at) }) : "",
     whoAndWhen(s),
     s.score != null ? t("score", { score: formatNumber(s.score, 3) }) : ""].filter(Boolean).join(" · ");
  $("source-text").textContent = s.text;
  $("source-view").hidden = false;
  $("close-source").focus();
}

function describe(done) {
  const tm = done.timings;
  const name = done.model_name && done.model_name !== "default" ? `${done.model_name}: ` : "";
  const who = done.backend === "none" ? t("meta.none") : t("meta.by", { name, backend: done.backend, model: done.model });
  const parts = [
    who + (done.fallback_used ? t("meta.fallback") : ""),
    t("meta.retrieval", { mode: done.retrieval.mode }),
    t("meta.embed", { t: formatSeconds(tm.embed_ms) }), t("meta.search", { t: formatSeconds(tm.search_ms) }),
    t("meta.ttft", { t: formatSeconds(tm.llm_ttft_ms) }), t("meta.answer", { t: formatSeconds(tm.llm_ms) }),
    t("meta.total", { t: formatSeconds(tm.total_ms) }),
  ];
  const checked = done.citations;
  if (checked && (checked.moved || checked.added)) parts.push(t("meta.checked", checked));
  return parts.join(" · ");
}

// A small model sometimes invents a figure: say so where the answer is read.
function warnUnsupported(done) {
  const count = done.citations ? done.citations.unsupported : 0;
  $("unsupported").textContent = count ? t("unsupported", { count: formatNumber(count, 0) }) : "";
  $("unsupported").hidden = !count;
}

// An answer or a summary begins: the last one's text, sources and notes go; Ask and Summarise wait.
function beginRun() {
  notice("");
  sources = [];
  renderSources(new Set());
  renderAnswer("");
  $("unsupported").hidden = true;
  $("meta").textContent = "";
  $("ask-state").textContent = t("ask.searching");
  $("ask").disabled = $("summarize").disabled = true;
  $("stop").hidden = false;
  controller = new AbortController();
}

function endRun() {
  $("ask").disabled = $("summarize").disabled = false;
  $("stop").hidden = true;
  controller = null;
}

async function ask(event) {
  event.preventDefault();
  const space = $("space").value;
  const q = $("question").value.trim();
  if (!space) { notice(t("ask.pick")); return; }
  if (!q) return;
  localStorage.setItem(SPACE_STORE, space);
  beginRun();
  let text = "";
  try {
    const response = await fetch("/ask", {
      method: "POST",
      headers: { ...headers(), "Content-Type": "application/json" },
      body: JSON.stringify({ q, space_id: space, stream: true, ...chosenModel(),
                             ...(filters() ? { filters: filters() } : {}) }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorOf(response));
    await readEvents(response, (kind, data) => {
      if (kind === "sources") {
        sources = data.sources;
        renderSources(new Set());
        $("ask-state").textContent = t("ask.writing");
      } else if (kind === "token") {
        text += data.delta;
        renderAnswer(text);
      } else if (kind === "done") {
        renderAnswer(data.answer);  // with its citations checked against the sources
        renderSources(new Set(data.cited));
        warnUnsupported(data);
        $("meta").textContent = describe(data);
        if (data.notices && data.notices.length) notice(data.notices.join(" · "));  // why another model answered
      }
    });
    $("ask-state").textContent = "";
  } catch (error) {
    $("ask-state").textContent = "";
    if (error.name !== "AbortError") notice(t("ask.failed", { error: error.message }));
  } finally {
    endRun();
  }
}

// Server-Sent Events of a streamed response, one (kind, data) at a time; an `error` event throws.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const kind = (block.match(/^event: (.*)$/m) || [])[1];
      const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
      if (kind === "error") throw new Error(data.error.message);
      onEvent(kind, data);
    }
  }
}

// A summary of one document (documentId), or of what the filters select (none: the whole space).
async function summarize(space, documentId) {
  if (!space) { notice(t("ask.pick")); return; }
  beginRun();
  const selection = documentId ? { document_id: documentId } : { filters: filters() || {} };
  let text = "";
  try {
    const response = await fetch("/summarize", {
      method: "POST",
      headers: { ...headers(), "Content-Type": "application/json" },
      body: JSON.stringify({ space_id: space, style: $("style").value, stream: true, ...chosenModel(), ...selection }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorOf(response));
    await readEvents(response, (kind, data) => {
      if (kind === "progress") {
        $("ask-state").textContent = t("summarize.reading", {
          done: formatNumber(data.done, 0), total: formatNumber(data.total, 0) });
      } else if (kind === "token") {
        $("ask-state").textContent = t("summarize.writing");
        text += data.delta;
        renderAnswer(text);
      } else if (kind === "done") {
        sources = data.sources;
        renderAnswer(data.summary);
        renderSources(new Set(data.sources.map((x) => x.n)));
        warnUnsupported({ citations: data.checks });
        const c = data.coverage;
        $("meta").textContent = t(data.cached ? "summarize.stored" : "summarize.meta", {
          read: formatNumber(c.chunks_read, 0), selected: formatNumber(c.chunks_selected, 0),
          calls: formatNumber(data.llm_calls, 0), t: formatSeconds(data.seconds * 1000),
          backend: data.backend, model: data.model });
      }
    });
    $("ask-state").textContent = "";
  } catch (error) {
    $("ask-state").textContent = "";
    if (error.name !== "AbortError") notice(t("summarize.failed", { error: error.message }));
  } finally {
    endRun();
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
  $("upload-state").textContent = t("upload.sending");
  request.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    bar.value = Math.round((100 * e.loaded) / e.total);
    $("upload-state").textContent = e.loaded < e.total
      ? t("upload.progress", { done: formatNumber(e.loaded / 1024, 0), total: formatNumber(e.total / 1024, 0) })
      : t("upload.indexing");
  });
  request.addEventListener("loadend", () => {
    $("upload").disabled = false;
    if (request.status === 200) {
      const body = JSON.parse(request.responseText);
      $("upload-state").textContent = t("upload.done", {
        files: formatNumber(body.files.length, 0), chunks: formatNumber(body.chunks_written, 0),
        seconds: formatNumber(body.seconds, 1),
      });
      const rows = $("upload-results").tBodies[0];
      rows.replaceChildren();
      for (const f of body.files) {
        const row = rows.insertRow();
        const cells = [[f.path, ""], [t(`status.${f.status}`), f.status], [formatNumber(f.chunks, 0), ""],
                       [f.reason || (f.warnings || []).join("; "), ""]];
        for (const [value, cls] of cells) {
          const cell = row.insertCell();
          cell.textContent = value;
          if (cls) cell.className = cls;
        }
        const action = row.insertCell();
        if (f.status !== "failed") {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "summarize-document";
          button.textContent = t("summarize.button");
          button.addEventListener("click", () => summarize(space, f.document_id));
          action.append(button);
        }
      }
      $("upload-results").hidden = false;
      localStorage.setItem(SPACE_STORE, space);
      loadSpaces();
    } else {
      let message = `${request.status} ${request.statusText}`;
      try { message = `${request.status}: ${JSON.parse(request.responseText).error.message}`; } catch (_) { /* keep */ }
      $("upload-state").textContent = "";
      notice(request.status === 0 ? t("upload.unreachable") : t("upload.failed", { error: message }));
    }
  });
  request.send(form);
}

translatePage();
$("lang").value = LANG;
$("lang").addEventListener("change", () => { setLanguage($("lang").value); loadSpaces(); loadModels(); });
$("key").value = localStorage.getItem(KEY_STORE) || "";
$("key").addEventListener("change", () => {
  localStorage.setItem(KEY_STORE, $("key").value.trim());
  loadSpaces();
  loadModels();
});
$("refresh").addEventListener("click", () => { loadSpaces(); loadModels(); });
$("ask-form").addEventListener("submit", ask);
$("summarize").addEventListener("click", () => summarize($("space").value, null));
$("stop").addEventListener("click", () => controller && controller.abort());
$("close-source").addEventListener("click", () => { $("source-view").hidden = true; });
$("upload-form").addEventListener("submit", upload);
$("f-clear").addEventListener("click", () => {
  for (const id of ["f-participants", "f-conversation", "f-after", "f-before"]) $(id).value = "";
});
$("question").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("ask-form").requestSubmit();
});
loadSpaces();
loadModels();
