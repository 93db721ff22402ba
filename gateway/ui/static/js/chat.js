// Chat: a conversation about images. Each turn shows the question with its image, and the answer as it
// streams in, then as Markdown with its [n] citations linked to the exchanges they cite. Follow-up
// questions send the conversation so far. Uses the public API like any client: POST /v1/chat/completions
// with stream: true.

import { features, json, sourceIds, streamChat } from "./api.js";
import { excerpt, field, h } from "./dom.js";
import { imagePicker, keep, placeholder, thumbnail } from "./images.js";
import { renderMarkdown } from "./markdown.js";
import { sourceList } from "./sources.js";

const MEMORY_REASONS = {
  used: "Memory used: the answer could cite past exchanges.",
  no_sources: "Memory on, but no past exchange was close enough.",
  off: "Memory off for this question.",
  disabled: "Memory is disabled on this gateway.",
  unavailable: "Memory was unavailable; answered without it.",
  timeout: "Memory took too long; answered without it.",
};
// The memory toggle, remembered for this tab only, like the API key.
const MEMORY_KEY = "visionrag.chat.memory";

/**
 * The messages for `turn`, after the earlier turns of the conversation. Turns that got no answer (an
 * error, or stopped before a word) are left out, so roles keep alternating. Llama 3.2 Vision takes one
 * image per request (vLLM refuses a second), so only the latest image of the conversation goes, on the
 * user turn it came with; earlier turns go as their text.
 */
export function conversation(earlier, turn) {
  const kept = [...earlier.filter((t) => t.state !== "error" && t.answer), turn];
  const withImage = kept.findLast((t) => t.image);
  const messages = [];
  for (const t of kept) {
    messages.push({
      role: "user",
      content: t === withImage ? [{ type: "text", text: t.text }, { type: "image_url", image_url: { url: t.image } }] : t.text,
    });
    if (t !== turn) messages.push({ role: "assistant", content: t.answer });
  }
  return messages;
}

export function chatView(view) {
  const model = h("select", { name: "model" });
  const question = h("textarea", { name: "question", rows: 2, placeholder: "Ask about an image, or follow up…" });
  const picker = imagePicker("Image");
  const remembered = sessionStorage.getItem(MEMORY_KEY) !== "off";
  const memory = h("input", { type: "checkbox", name: "memory", checked: remembered });
  const maxTokens = h("input", { type: "number", name: "max_tokens", min: 1, max: 4096, value: 256 });
  const ask = h("button", { type: "submit" }, "Ask");
  const stop = h("button", { type: "button", class: "quiet", hidden: true }, "Stop");
  const newChat = h("button", { type: "button", class: "quiet" }, "New chat");
  const error = h("p", { class: "error", role: "alert" });
  const empty = h("p", { class: "hint chat-empty" },
    "Pick, drop or paste an image and ask about it. Follow-up questions keep the conversation.");
  const thread = h("section", { class: "thread", "aria-label": "Conversation" });
  const form = h("form", { class: "panel composer" },
    picker.element, field("Question", question, { grow: true }),
    h("div", { class: "row" }, field("Model", model), field("Max tokens", maxTokens),
      h("label", { class: "field" }, h("span", {}, "Memory"), h("span", {}, memory, " use past exchanges"))),
    h("div", { class: "row" }, ask, stop));
  view.append(h("div", { class: "chat-head" }, h("h1", { tabindex: -1 }, "Chat"), newChat), error, empty, thread, form);

  let turns = [];
  let active = null; // {controller, turn} of the answer streaming now
  const exchanges = new Map(); // exchange id -> promise of its JSON, for citation cards

  features().then((offered) => {
    if (offered.memory) return;
    memory.checked = false;
    memory.disabled = true;
    memory.parentElement.replaceChildren(memory, " off on this gateway");
  });
  memory.addEventListener("change", () => sessionStorage.setItem(MEMORY_KEY, memory.checked ? "on" : "off"));

  json("/v1/models").then((models) => {
    model.replaceChildren(...models.data.map((m) => h("option", { value: m.id }, m.id)));
  }, (exc) => { error.textContent = `Models: ${exc.message}`; });

  function exchange(id) {
    if (!exchanges.has(id)) exchanges.set(id, json(`/exchanges/${encodeURIComponent(id)}`));
    return exchanges.get(id);
  }

  /** Sends `turn` (new, or again after an error) with the turns before it, and shows what comes back. */
  async function run(turn) {
    const earlier = turns.slice(0, turns.indexOf(turn));
    Object.assign(turn, { answer: "", state: "streaming", error: "", exchangeId: null, reason: null, sources: [] });
    const ui = turn.ui;
    ui.article.dataset.state = "streaming";
    ui.answer.replaceChildren();
    ui.answer.setAttribute("aria-busy", "true");
    ui.error.textContent = "";
    ui.status.textContent = "Waiting for the model…";
    ui.actions.replaceChildren();
    ui.sources.replaceChildren();
    const controller = new AbortController();
    active = { controller, turn };
    ask.disabled = true;
    stop.hidden = false;
    try {
      await streamChat({
        model: model.value, messages: conversation(earlier, turn),
        max_tokens: Number(maxTokens.value) || 256, visionrag: { memory: memory.checked },
      }, (delta) => {
        // Text nodes while streaming (the answer becomes Markdown once it ends: re-parsing it at every
        // delta would cost the square of its length and make half-written markup flicker).
        turn.answer += delta;
        ui.answer.append(delta);
        ui.status.textContent = "Answering…";
      }, {
        signal: controller.signal,
        onResponse: (response) => {
          turn.exchangeId = response.headers.get("x-visionrag-exchange-id");
          turn.reason = response.headers.get("x-visionrag-memory");
          turn.sources = sourceIds(response);
        },
      });
      turn.state = "done";
    } catch (exc) {
      if (controller.signal.aborted) turn.state = "stopped";
      else Object.assign(turn, { state: "error", error: exc.message });
    } finally {
      active = null;
      ask.disabled = false;
      stop.hidden = true;
    }
    finish(turn);
  }

  function finish(turn) {
    const ui = turn.ui;
    ui.article.dataset.state = turn.state;
    ui.answer.setAttribute("aria-busy", "false");
    ui.answer.replaceChildren(renderMarkdown(turn.answer));
    if (turn.sources.length) cite(ui.answer, turn.sources);
    const reason = turn.reason ? MEMORY_REASONS[turn.reason] || `Memory: ${turn.reason}.` : "";
    const link = turn.exchangeId
      ? h("a", { href: `#/exchange/${encodeURIComponent(turn.exchangeId)}`, class: "exchange-link" }, "Open this exchange")
      : "";
    if (turn.state === "stopped") {
      ui.status.replaceChildren(h("span", { class: "stopped" }, turn.answer ? "Stopped: the answer is cut short." : "Stopped before the answer began."), " ", link);
    } else if (turn.state === "error") {
      ui.status.textContent = "";
      ui.error.textContent = turn.error;
    } else {
      ui.status.replaceChildren(reason ? `${reason} ` : "", link);
    }
    const note = h("span", { class: "hint copy-note", role: "status" });
    if (turn.answer) ui.actions.append(h("button", { type: "button", class: "quiet small", onclick: () => copy(turn, note) }, "Copy"));
    if (turn.state === "error") ui.actions.append(h("button", { type: "button", class: "small", onclick: () => active || run(turn) }, "Retry"));
    ui.actions.append(note);
    if (turn.sources.length) {
      ui.sources.append(h("h3", { class: "sources-title" }, "Sources"),
        sourceList(turn.sources.map((exchange_id) => ({ exchange_id }))));
    }
  }

  async function copy(turn, note) {
    try {
      await navigator.clipboard.writeText(turn.answer);
      note.textContent = "Copied.";
    } catch {
      // No clipboard (a page not served over https or localhost) or permission refused: select the
      // answer so that the keyboard shortcut copies it.
      getSelection().selectAllChildren(turn.ui.answer);
      note.textContent = "Copying was not allowed here: the answer is selected, press Ctrl+C (⌘C) to copy it.";
    }
  }

  /** [n] in the answer's text (not in code or links) becomes a link to source n, with a card. */
  function cite(root, sources) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode: (node) => (node.parentElement.closest("code, pre, a") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
    });
    const nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    for (const node of nodes) {
      const parts = node.data.split(/\[(\d{1,3})\]/);
      if (parts.length === 1) continue;
      const out = [];
      parts.forEach((part, i) => {
        if (i % 2 === 0) { if (part) out.push(part); return; }
        const n = Number(part);
        out.push(n >= 1 && n <= sources.length ? citation(n, sources[n - 1]) : `[${part}]`);
      });
      node.replaceWith(...out);
    }
  }

  let cards = 0;
  function citation(n, id) {
    const card = h("span", { class: "cite-card", role: "tooltip", id: `cite-card-${++cards}` }, placeholder("…"),
      h("span", { class: "cite-question" }, `Source [${n}]`));
    const link = h("a", { href: `#/exchange/${encodeURIComponent(id)}`, class: "cite", "aria-describedby": card.id,
      dataset: { exchangeId: id } }, `[${n}]`);
    const wrap = h("span", { class: "cite-wrap" }, link, card);
    exchange(id).then((found) => {
      const sha = found.images?.[0]?.sha256;
      card.replaceChildren(sha ? thumbnail(sha, 128, found.question) : placeholder("text only"),
        h("span", { class: "cite-question" }, excerpt(found.question, 120) || "(no question)"));
    }, () => card.replaceChildren(h("span", { class: "cite-question" }, "This exchange is no longer available.")));
    // Touch screens have no hover: the first tap shows the card, a second one follows the link.
    link.addEventListener("click", (event) => {
      if (!matchMedia("(hover: none)").matches || wrap.classList.contains("open")) return;
      event.preventDefault();
      closeCards();
      wrap.classList.add("open");
    });
    link.addEventListener("keydown", (event) => {
      if (event.key === "Escape") wrap.classList.add("dismissed");
    });
    // Escape hides the card until the pointer or the focus comes back.
    link.addEventListener("blur", () => wrap.classList.remove("dismissed"));
    wrap.addEventListener("mouseenter", () => wrap.classList.remove("dismissed"));
    return wrap;
  }

  function closeCards(except) {
    for (const open of thread.querySelectorAll(".cite-wrap.open")) if (open !== except) open.classList.remove("open");
  }
  thread.addEventListener("click", (event) => closeCards(event.target.closest?.(".cite-wrap")));

  function turnElement(turn) {
    const answer = h("div", { class: "answer md", "aria-live": "polite", "aria-busy": "true" });
    const ui = {
      answer,
      error: h("p", { class: "error", role: "alert" }),
      status: h("p", { class: "status", role: "status" }),
      actions: h("div", { class: "msg-actions" }),
      sources: h("div", { class: "msg-sources" }),
    };
    ui.article = h("article", { class: "turn" },
      h("div", { class: "msg user" },
        turn.thumb ? h("img", { class: "msg-image", src: turn.thumb, alt: `your image: ${turn.imageName}` }) : null,
        h("p", { class: "msg-text" }, turn.text)),
      h("div", { class: "msg assistant" }, answer, ui.error, ui.status, ui.actions, ui.sources));
    turn.ui = ui;
    return ui.article;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const text = question.value.trim();
    if (active) return;
    if (!text) {
      error.textContent = "Type a question.";
      question.focus();
      return;
    }
    const file = picker.file();
    const turn = {
      text, image: await picker.dataUrl(), thumb: file ? keep(file) : null, imageName: file?.name || "pasted image",
    };
    turns.push(turn);
    thread.append(turnElement(turn));
    empty.hidden = true;
    question.value = "";
    picker.clear();
    turn.ui.article.scrollIntoView({ block: "nearest" });
    await run(turn);
  });

  question.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter starts a new line (and an IME composing text keeps its Enter).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => active?.controller.abort());
  newChat.addEventListener("click", () => {
    active?.controller.abort();
    turns = [];
    thread.replaceChildren();
    empty.hidden = false;
    error.textContent = "";
    question.value = "";
    picker.clear();
    question.focus();
  });
  return { onPaste: picker.onPaste };
}
