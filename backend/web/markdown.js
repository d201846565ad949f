// A small Markdown renderer for answers that builds DOM nodes, never HTML: whatever a model or a document
// writes ends up as text. Block: paragraphs, headings (#), bullet and numbered lists, fenced code.
// Inline: **bold**, *italic*, `code`, and [n] citations as links (onCite(n) on click). Links and images
// stay text: an answer cannot send the reader to a page of its choosing.
"use strict";

const CITE = /\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]/;
const INLINE = /(\*\*[^*\n]+\*\*|__[^_\n]+__|\*[^*\s][^*\n]*\*|`[^`\n]+`|\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\])/;

function inline(parent, text, onCite) {
  const parts = text.split(INLINE);
  parts.forEach((part, i) => {
    if (!part) return;
    if (i % 2 === 0) { parent.append(document.createTextNode(part)); return; }
    if (part.startsWith("**") || part.startsWith("__")) {
      const el = document.createElement("strong");
      inline(el, part.slice(2, -2), onCite);
      parent.append(el);
    } else if (part.startsWith("`")) {
      const el = document.createElement("code");
      el.textContent = part.slice(1, -1);
      parent.append(el);
    } else if (part.startsWith("*")) {
      const el = document.createElement("em");
      inline(el, part.slice(1, -1), onCite);
      parent.append(el);
    } else {
      const numbers = part.match(CITE)[1].split(/\s*[,;]\s*/);
      parent.append("[");
      numbers.forEach((n, j) => {
        if (j) parent.append(", ");
        const link = document.createElement("a");
        link.className = "cite";
        link.dataset.n = n;
        link.textContent = n;
        link.href = "#source";
        link.addEventListener("click", (event) => { event.preventDefault(); onCite(Number(n)); });
        parent.append(link);
      });
      parent.append("]");
    }
  });
}

function renderMarkdown(container, text, onCite) {
  container.replaceChildren();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let paragraph = [];
  let list = null;
  const flush = () => {
    if (paragraph.length) {
      const p = document.createElement("p");
      paragraph.forEach((line, i) => {
        if (i) p.append(document.createElement("br"));
        inline(p, line, onCite);
      });
      container.append(p);
      paragraph = [];
    }
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*```/);
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const item = line.match(/^\s*(?:([-*•])|(\d{1,3})[.)])\s+(.*)$/);
    if (fence) {
      flush(); list = null;
      const code = [];
      while (++i < lines.length && !/^\s*```/.test(lines[i])) code.push(lines[i]);
      const pre = document.createElement("pre");
      const el = document.createElement("code");
      el.textContent = code.join("\n");
      pre.append(el);
      container.append(pre);
    } else if (heading) {
      flush(); list = null;
      const el = document.createElement(`h${Math.min(6, heading[1].length + 3)}`);
      inline(el, heading[2], onCite);
      container.append(el);
    } else if (item) {
      flush();
      const tag = item[1] ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = document.createElement(tag);
        if (tag === "ol" && item[2] !== "1") list.start = Number(item[2]);
        container.append(list);
      }
      const li = document.createElement("li");
      inline(li, item[3], onCite);
      list.append(li);
    } else if (!line.trim()) {
      flush(); list = null;
    } else {
      list = null;
      paragraph.push(line);
    }
  }
  flush();
}
