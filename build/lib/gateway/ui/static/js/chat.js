// Chat: ask about an image, watch the answer stream in, with memory on or off, and see the sources.
// Uses the public API like any client: POST /v1/chat/completions with stream: true.

import { features, json, sourceIds, streamChat } from "./api.js";
import { field, h } from "./dom.js";
import { imagePicker } from "./images.js";
import { sourceList } from "./sources.js";

const MEMORY_REASONS = {
  used: "Memory used: the answer could cite past exchanges.",
  no_sources: "Memory on, but no past exchange was close enough.",
  off: "Memory off for this question.",
  disabled: "Memory is disabled on this gateway.",
  unavailable: "Memory was unavailable; answered without it.",
  timeout: "Memory took too long; answered without it.",
};

export function chatView(view) {
  const model = h("select", { name: "model" });
  const question = h("textarea", { name: "question", required: true, placeholder: "What is in this picture?" });
  const picker = imagePicker("Image");
  const memory = h("input", { type: "checkbox", name: "memory", checked: true });
  const maxTokens = h("input", { type: "number", name: "max_tokens", min: 1, max: 4096, value: 256 });
  const ask = h("button", { type: "submit" }, "Ask");
  const error = h("p", { class: "error", role: "alert" });
  const transcript = h("section", { "aria-label": "Answers" });
  const form = h("form", { class: "panel" },
    picker.element, field("Question", question, { grow: true }),
    h("div", { class: "row" }, field("Model", model), field("Max tokens", maxTokens),
      h("label", { class: "field" }, h("span", {}, "Memory"), h("span", {}, memory, " use past exchanges"))),
    h("div", { class: "row" }, ask));
  view.append(h("h1", { tabindex: -1 }, "Chat"), form, error, transcript);

  features().then((offered) => {
    if (offered.memory) return;
    memory.checked = false;
    memory.disabled = true;
    memory.parentElement.replaceChildren(memory, " off on this gateway");
  });

  json("/v1/models").then((models) => {
    model.replaceChildren(...models.data.map((m) => h("option", { value: m.id }, m.id)));
  }, (exc) => { error.textContent = `Models: ${exc.message}`; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const text = question.value.trim();
    if (!text) return;
    const image = await picker.dataUrl();
    const content = image ? [{ type: "text", text }, { type: "image_url", image_url: { url: image } }] : text;
    const answer = h("div", { class: "text answer", "aria-live": "polite", "aria-busy": "true" });
    const status = h("p", { class: "status", role: "status" }, "Waiting for the model…");
    const turn = h("article", { class: "turn" }, h("h2", {}, "Question"),
      h("div", { class: "text question" }, text), h("h2", {}, "Answer"), answer, status);
    transcript.prepend(turn);
    ask.disabled = true;
    try {
      const response = await streamChat({
        model: model.value, messages: [{ role: "user", content }],
        max_tokens: Number(maxTokens.value) || 256, visionrag: { memory: memory.checked },
      }, (delta) => {
        answer.append(delta); // text nodes only: the model's output is never parsed as HTML
        status.textContent = "Answering…";
      });
      answer.setAttribute("aria-busy", "false");
      const id = response.headers.get("x-visionrag-exchange-id");
      const reason = response.headers.get("x-visionrag-memory");
      status.replaceChildren(
        reason ? `${MEMORY_REASONS[reason] || `Memory: ${reason}.`} ` : "",
        id ? h("a", { href: `#/exchange/${encodeURIComponent(id)}`, class: "exchange-link" }, "Open this exchange") : "");
      const sources = sourceIds(response);
      if (sources.length) {
        turn.append(h("h2", {}, "Sources"), sourceList(sources.map((exchange_id) => ({ exchange_id }))));
      }
    } catch (exc) {
      answer.setAttribute("aria-busy", "false");
      status.textContent = "";
      error.textContent = exc.message;
    } finally {
      ask.disabled = false;
    }
  });
  return { onPaste: picker.onPaste };
}
