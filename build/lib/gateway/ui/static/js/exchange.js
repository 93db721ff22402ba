// One exchange: its images, the full question and answer (as text), the details, the sources it
// cited, and "find similar" for each image (with memory on: it is a search).

import { call, errorMessage, features, json } from "./api.js";
import { formatTime, h } from "./dom.js";
import { thumbnail } from "./images.js";
import { sourceList } from "./sources.js";

export async function exchangeView(view, id) {
  const heading = h("h1", { tabindex: -1 }, "Exchange");
  const error = h("p", { class: "error", role: "alert" });
  view.append(heading, error);
  let exchange, memory;
  try {
    [exchange, { memory }] = await Promise.all([json(`/exchanges/${encodeURIComponent(id)}`), features()]);
  } catch (exc) {
    error.textContent = exc.message;
    return;
  }
  const images = h("div", { class: "images" }, ...exchange.images.map((image) => h("figure", {},
    thumbnail(image.sha256, 512, exchange.question, "full"),
    memory && h("figcaption", {}, h("a", { href: `#/search?similar=${encodeURIComponent(image.sha256)}`,
      class: "similar" }, "Find similar images")))));
  const noSimilar = memory ? null
    : h("p", { class: "hint", role: "note" }, "Finding similar images needs memory, which is off on this gateway.");
  const usage = exchange.usage
    ? `${exchange.usage.prompt_tokens ?? "?"} prompt + ${exchange.usage.completion_tokens ?? "?"} completion = ${exchange.usage.total_tokens ?? "?"} tokens`
    : "not reported";
  const details = h("dl", { class: "meta" },
    ...[["Model", exchange.model], ["Time", formatTime(exchange.time)], ["User", exchange.user || "—"],
      ["Status", exchange.status], ["Endpoint", exchange.endpoint], ["Usage", usage],
      ["Latency", `${Math.round(exchange.latency_ms)} ms`], ["Id", exchange.id]]
      .flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  const sources = exchange.sources || [];
  view.append(
    exchange.images.length ? images : null,
    exchange.images.length ? noSimilar : null,
    h("h2", {}, "Question"), h("div", { class: "text question" }, exchange.question || "(none)"),
    h("h2", {}, "Answer"), h("div", { class: "text answer" }, exchange.answer || "(none)"),
    h("h2", {}, "Details"), details,
    h("h2", {}, "Sources"),
    sources.length ? sourceList(sources) : h("p", { class: "hint" }, "This answer cited no past exchanges."),
    forgetControls(exchange.id, error));
}

/** "Forget this exchange" (DELETE /exchanges/{id}), confirmed by a second button, not a browser dialog. */
function forgetControls(id, error) {
  const confirm = h("button", { type: "button", class: "danger", hidden: true }, "Yes, forget it everywhere");
  const cancel = h("button", { type: "button", class: "quiet", hidden: true }, "Keep it");
  const start = h("button", { type: "button", class: "quiet" }, "Forget this exchange");
  const toggle = (asking) => {
    start.hidden = asking;
    confirm.hidden = cancel.hidden = !asking;
    (asking ? confirm : start).focus();
  };
  start.addEventListener("click", () => toggle(true));
  cancel.addEventListener("click", () => toggle(false));
  confirm.addEventListener("click", async () => {
    confirm.disabled = true;
    const response = await call(`/exchanges/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (response.ok) {
      location.hash = "#/browse";
      return;
    }
    confirm.disabled = false;
    error.textContent = await errorMessage(response);
  });
  return h("section", { class: "forget", "aria-label": "Forget" }, h("h2", {}, "Forget"),
    h("p", { class: "hint" }, "Removes the question, the answer, their vectors (with memory on), and each image no other exchange uses."),
    h("div", { class: "actions start" }, start, confirm, cancel));
}
