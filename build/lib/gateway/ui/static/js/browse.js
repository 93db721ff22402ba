// Browse: the most recent exchanges first, a page at a time, with the same filters as search.

import { json } from "./api.js";
import { h } from "./dom.js";
import { card, filterFields } from "./cards.js";

const PAGE = 24;

export function browseView(view) {
  const filters = filterFields();
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });
  const results = h("ul", { class: "grid", "aria-label": "Exchanges, most recent first" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const form = h("form", { class: "panel" }, filters.element,
    h("div", { class: "row" }, h("button", { type: "submit" }, "Apply filters")));
  view.append(h("h1", { tabindex: -1 }, "Recent exchanges"), form, status, error, results, more);
  let cursor = null;

  async function load(reset) {
    error.textContent = "";
    const query = new URLSearchParams({ limit: String(PAGE), ...filters.values() });
    if (!reset && cursor) query.set("cursor", cursor);
    status.textContent = "Loading…";
    try {
      const page = await json(`/exchanges?${query}`);
      const cards = page.data.map((row) => card({
        id: row.id, question: row.question, answer: row.answer, sha256: row.images[0]?.sha256,
        time: row.time, model: row.model,
      }));
      if (reset) results.replaceChildren(...cards);
      else results.append(...cards);
      cursor = page.next_cursor;
      more.hidden = !page.has_more;
      status.textContent = results.children.length ? `${results.children.length} exchange(s) shown.` : "No exchanges yet.";
    } catch (exc) {
      status.textContent = "";
      error.textContent = exc.message;
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
  more.addEventListener("click", () => load(false));
  load(true);
}
