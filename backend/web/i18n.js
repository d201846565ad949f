// The page's words in Russian and English, and numbers and dates in the reader's locale.
// The language is the one picked in the header, else the browser's first Russian or English one.
"use strict";

const STRINGS = {
  en: {
    "title": "RAG service",
    "lang.label": "Language",
    "key.label": "API key",
    "key.placeholder": "paste your key (if the service needs one)",
    "ask.heading": "Ask",
    "space.label": "Space",
    "model.label": "Model",
    "model.default": "{name} (default)",
    "model.asleep": "{name} (asleep: woken on request)",
    "reload": "Reload",
    "reload.title": "Reload the list of spaces",
    "question.placeholder": "Ask a question about the documents in this space",
    "ask.button": "Ask",
    "stop.button": "Stop",
    "summarize.button": "Summarise",
    "summarize.title": "Summarise everything the filters select (no filters: the whole space); every chunk is read",
    "summarize.style": "What to write",
    "style.brief": "brief", "style.detailed": "detailed", "style.decisions": "decisions",
    "style.action_items": "action items",
    "summarize.reading": "reading: {done} of {total} LLM calls…",
    "summarize.writing": "writing the summary…",
    "summarize.failed": "The summary failed: {error}",
    "summarize.meta": "read {read} of {selected} chunks · {calls} LLM calls · {t} · {backend} ({model})",
    "summarize.stored": "read {read} of {selected} chunks · stored summary · {backend} ({model})",
    "sources.heading": "Sources",
    "close": "Close",
    "upload.heading": "Add documents",
    "upload.space.title": "1-63 of a-z 0-9 - _, starting with a letter or digit",
    "upload.space.placeholder": "e.g. mail",
    "upload.button": "Upload",
    "col.file": "file", "col.result": "result", "col.chunks": "chunks", "col.reason": "reason",
    "status.new": "new", "status.changed": "changed", "status.unchanged": "unchanged", "status.failed": "failed",
    "status.deleted": "deleted",
    "spaces.failed": "Cannot list spaces: {error}",
    "spaces.option": "{name} ({documents} documents)",
    "spaces.none": "no spaces yet: add documents below",
    "ask.pick": "Pick a space first (or add documents below).",
    "ask.searching": "searching…",
    "ask.writing": "writing…",
    "ask.failed": "The question failed: {error}",
    "cited": "cited",
    "score": "score {score}",
    "page": "p. {page}",
    "page.long": "page {page}",
    "chunk": "chunk {chunk}",
    "modified": "modified {date}",
    "meta.none": "no LLM needed",
    "meta.by": "answered by {name}{backend} ({model})",
    "meta.fallback": ", the fallback: the primary failed",
    "meta.retrieval": "retrieval {mode}",
    "meta.embed": "embed {t}", "meta.search": "search {t}", "meta.ttft": "first token {t}",
    "meta.answer": "answer {t}", "meta.total": "total {t}",
    "meta.checked": "citations checked: {moved} moved, {added} added",
    "unsupported": "⚠ {count} statement(s) of this answer were not found in the sources: check them before relying on them.",
    "seconds": "{n} s",
    "upload.sending": "sending…",
    "upload.progress": "sending {done} of {total} KB…",
    "upload.indexing": "indexing (parsing and embedding)…",
    "upload.done": "{files} file(s), {chunks} chunks written in {seconds} s",
    "upload.unreachable": "The upload could not reach the service.",
    "upload.failed": "The upload failed: {error}",
    "filters.heading": "Filters: people, chat, dates",
    "filters.participants": "Who took part",
    "filters.participants.placeholder": "names or addresses, comma-separated",
    "filters.conversation": "Chat or thread",
    "filters.conversation.placeholder": "chat title or mail subject",
    "filters.after": "Messages from",
    "filters.before": "to",
    "filters.clear": "Clear",
    "messages.span": "{first} to {last}",
  },
  ru: {
    "title": "RAG-сервис",
    "lang.label": "Язык",
    "key.label": "API-ключ",
    "key.placeholder": "вставьте ключ (если сервис его требует)",
    "ask.heading": "Вопрос",
    "space.label": "Пространство",
    "model.label": "Модель",
    "model.default": "{name} (по умолчанию)",
    "model.asleep": "{name} (спит: разбудим по запросу)",
    "reload": "Обновить",
    "reload.title": "Заново загрузить список пространств",
    "question.placeholder": "Задайте вопрос о документах этого пространства",
    "ask.button": "Спросить",
    "stop.button": "Остановить",
    "summarize.button": "Сводка",
    "summarize.title": "Сводка по всему, что выбрано фильтрами (без фильтров: всё пространство); читается каждый фрагмент",
    "summarize.style": "Что написать",
    "style.brief": "кратко", "style.detailed": "подробно", "style.decisions": "решения",
    "style.action_items": "поручения",
    "summarize.reading": "чтение: {done} из {total} вызовов LLM…",
    "summarize.writing": "сводка пишется…",
    "summarize.failed": "Сводка не получилась: {error}",
    "summarize.meta": "прочитано фрагментов: {read} из {selected} · вызовов LLM: {calls} · {t} · {backend} ({model})",
    "summarize.stored": "прочитано фрагментов: {read} из {selected} · сохранённая сводка · {backend} ({model})",
    "sources.heading": "Источники",
    "close": "Закрыть",
    "upload.heading": "Добавить документы",
    "upload.space.title": "1-63 символа из a-z 0-9 - _, первый — буква или цифра",
    "upload.space.placeholder": "например, mail",
    "upload.button": "Загрузить",
    "col.file": "файл", "col.result": "итог", "col.chunks": "фрагменты", "col.reason": "причина",
    "status.new": "новый", "status.changed": "изменён", "status.unchanged": "без изменений", "status.failed": "ошибка",
    "status.deleted": "удалён",
    "spaces.failed": "Не удалось получить список пространств: {error}",
    "spaces.option": "{name} (документов: {documents})",
    "spaces.none": "пространств пока нет: добавьте документы ниже",
    "ask.pick": "Сначала выберите пространство (или добавьте документы ниже).",
    "ask.searching": "поиск…",
    "ask.writing": "ответ пишется…",
    "ask.failed": "Вопрос не удался: {error}",
    "cited": "цитируется",
    "score": "оценка {score}",
    "page": "с. {page}",
    "page.long": "страница {page}",
    "chunk": "фрагмент {chunk}",
    "modified": "изменён {date}",
    "meta.none": "LLM не понадобилась",
    "meta.by": "ответил {name}{backend} ({model})",
    "meta.fallback": ", резервный сервер: основной не ответил",
    "meta.retrieval": "поиск {mode}",
    "meta.embed": "эмбеддинг {t}", "meta.search": "поиск {t}", "meta.ttft": "первый токен {t}",
    "meta.answer": "ответ {t}", "meta.total": "всего {t}",
    "meta.checked": "ссылки проверены: перенесено {moved}, добавлено {added}",
    "unsupported": "⚠ Утверждений ответа, не найденных в источниках: {count}. Проверьте их, прежде чем полагаться на них.",
    "seconds": "{n} с",
    "upload.sending": "отправка…",
    "upload.progress": "отправлено {done} из {total} КБ…",
    "upload.indexing": "индексация (разбор и эмбеддинги)…",
    "upload.done": "файлов: {files}, записано фрагментов: {chunks} за {seconds} с",
    "upload.unreachable": "Загрузка не дошла до сервиса.",
    "upload.failed": "Загрузка не удалась: {error}",
    "filters.heading": "Фильтры: люди, чат, даты",
    "filters.participants": "Кто участвовал",
    "filters.participants.placeholder": "имена или адреса через запятую",
    "filters.conversation": "Чат или переписка",
    "filters.conversation.placeholder": "название чата или тема письма",
    "filters.after": "Сообщения с",
    "filters.before": "по",
    "filters.clear": "Сбросить",
    "messages.span": "{first} — {last}",
  },
};
const LANG_STORE = "rag-lang";

function pickLanguage() {
  const saved = localStorage.getItem(LANG_STORE);
  if (saved && STRINGS[saved]) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (STRINGS[base]) return base;
  }
  return "en";
}

let LANG = pickLanguage();

// The locale for numbers and dates: the browser's own when it speaks the page's language (en-GB keeps
// its dates), else the page's language.
function locale() {
  const own = (navigator.languages || [navigator.language]).find((tag) => String(tag).toLowerCase().startsWith(LANG));
  return own || LANG;
}

function t(key, params = {}) {
  const text = (STRINGS[LANG] && STRINGS[LANG][key]) || STRINGS.en[key] || key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

function formatNumber(value, digits) {
  return new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits })
    .format(value);
}

function formatSeconds(ms) {
  return ms == null ? "-" : t("seconds", { n: formatNumber(ms / 1000, 2) });
}

function formatDate(unixSeconds) {
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" })
    .format(new Date(unixSeconds * 1000));
}

// Static texts of the page: data-i18n (text), data-i18n-placeholder, data-i18n-title.
function translatePage() {
  document.documentElement.lang = LANG;
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
}

function setLanguage(lang) {
  if (!STRINGS[lang]) return;
  LANG = lang;
  localStorage.setItem(LANG_STORE, lang);
  translatePage();
}
