// Model answers as Markdown, built as DOM nodes. marked (vendored, well kept, CommonMark + GFM) only
// tokenizes; this file turns its tokens into elements itself, because marked's HTML string output would
// need innerHTML, which the page's Trusted Types policy ('none') forbids. Whatever is not on the short
// list below becomes text: raw HTML (block or inline) shows as its source, links keep only http(s)
// targets, and images are never loaded (img-src allows the gateway and blob: only) but shown as a link.

import { Lexer } from "../vendor/marked/marked.esm.js";
import { h } from "./dom.js";

/** A fragment with `markdown` rendered; text only ever enters as text nodes. */
export function renderMarkdown(markdown) {
  const fragment = document.createDocumentFragment();
  let tokens;
  try {
    tokens = new Lexer({ gfm: true, breaks: false }).lex(markdown);
  } catch {
    fragment.append(h("p", {}, markdown)); // never lose an answer to a parser bug
    return fragment;
  }
  blocks(fragment, tokens);
  return fragment;
}

/** The URL when it is http(s), else null (javascript:, data:, relative paths, garbage). */
export function safeHref(href) {
  try {
    const url = new URL(href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function blocks(parent, tokens) {
  for (const token of tokens || []) parent.append(...block(token));
}

function block(token) {
  switch (token.type) {
    case "space":
    case "def":
      return [];
    case "paragraph":
      return [inline(h("p"), token.tokens)];
    case "heading":
      // An answer's headings stay below the page's own h1 and the chat's h2s.
      return [inline(h(`h${Math.min(6, token.depth + 2)}`), token.tokens)];
    case "code": {
      const lang = (token.lang || "").match(/^[\w+#.-]+/)?.[0];
      return [h("pre", {}, h("code", lang ? { class: `language-${lang}` } : {}, token.text))];
    }
    case "blockquote":
      return [children(h("blockquote"), token.tokens)];
    case "hr":
      return [h("hr")];
    case "list": {
      const list = h(token.ordered ? "ol" : "ul");
      if (token.ordered && token.start !== "" && token.start !== 1) list.setAttribute("start", String(token.start));
      for (const item of token.items) {
        const li = h("li");
        if (item.task) li.append(h("input", { type: "checkbox", disabled: true, checked: Boolean(item.checked) }), " ");
        // marked puts the checkbox in the item's first text token too (as its own token): leave it out.
        blocks(li, item.tokens.filter((t) => t.type !== "checkbox"));
        list.append(li);
      }
      return [list];
    }
    case "table": {
      const cell = (tag, c, align) => inline(h(tag, align ? { class: `align-${align}` } : {}), c.tokens);
      const head = h("tr", {}, token.header.map((c, i) => cell("th", c, token.align[i])));
      const rows = token.rows.map((row) => h("tr", {}, row.map((c, i) => cell("td", c, token.align[i]))));
      return [h("div", { class: "md-table" }, h("table", {}, h("thead", {}, head), h("tbody", {}, rows)))];
    }
    case "text":
      // A tight list item's text: inline content without a paragraph around it.
      return token.tokens ? [...inline(document.createDocumentFragment(), token.tokens).childNodes] : [token.text];
    case "html":
      return [h("pre", { class: "md-raw" }, token.text)];
    default:
      return token.tokens ? [children(h("div"), token.tokens)] : [token.raw ?? token.text ?? ""];
  }
}

function children(element, tokens) {
  blocks(element, tokens);
  return element;
}

function inline(element, tokens) {
  for (const token of tokens || []) element.append(span(token));
  return element;
}

function span(token) {
  switch (token.type) {
    case "strong":
      return inline(h("strong"), token.tokens);
    case "em":
      return inline(h("em"), token.tokens);
    case "del":
      return inline(h("del"), token.tokens);
    case "codespan":
      return h("code", {}, token.text);
    case "br":
      return h("br");
    case "link": {
      const href = safeHref(token.href);
      if (!href) return inline(h("span", { class: "md-unsafe-link" }), token.tokens);
      return inline(h("a", { href, rel: "noopener noreferrer nofollow", target: "_blank", referrerpolicy: "no-referrer" }),
        token.tokens);
    }
    case "image": {
      const href = safeHref(token.href);
      const label = `image: ${token.text || href || "unnamed"}`;
      return href ? h("a", { href, rel: "noopener noreferrer nofollow", target: "_blank", referrerpolicy: "no-referrer" }, label)
        : h("span", {}, label);
    }
    case "text":
      return token.tokens ? inline(document.createDocumentFragment(), token.tokens) : document.createTextNode(token.text);
    case "escape":
    case "html":
    default:
      return document.createTextNode(token.text ?? token.raw ?? "");
  }
}
