// What search and browse share: a result card, and the filter fields.

import { excerpt, field, formatTime, h } from "./dom.js";
import { placeholder, thumbnail } from "./images.js";

export const THUMB = 256;

/**
 * A card linking to the exchange: thumbnail (or a placeholder), question, answer excerpt, time, and for a
 * search hit its rank ("#1"), the raw score in its tooltip: a fused (RRF) score such as 1.333 only orders
 * the hits, and a cosine or BM25 score means little to a reader either.
 */
export function card({ id, question, answer, sha256, time, model, hit }) {
  const media = sha256 ? thumbnail(sha256, THUMB, question) : placeholder("text only");
  const label = hit
    ? h("span", { class: "rank", title: scoreTitle(hit) }, hit.rank === 1 ? "#1 best match" : `#${hit.rank}`)
    : h("span", {}, model || "");
  return h("li", { class: "card", dataset: { exchangeId: id } },
    h("a", { href: `#/exchange/${encodeURIComponent(id)}` },
      media,
      h("div", { class: "body" },
        h("span", { class: "question" }, excerpt(question, 120) || "(no question)"),
        h("span", { class: "answer" }, excerpt(answer, 160)),
        h("span", { class: "meta" }, label, h("time", { datetime: time }, formatTime(time))))));
}

function scoreTitle({ score, target }) {
  const raw = Number(score).toFixed(3);
  return target === "all"
    ? `fused score ${raw} (every ranking combined by Reciprocal Rank Fusion: higher ranks first)`
    : `${target} score ${raw} (higher is closer)`;
}

/**
 * Time range, model and user fields; values() gives them as the API takes them (unset: omitted),
 * active() says in words which are set, clear() unsets them all.
 */
export function filterFields() {
  const from = h("input", { type: "datetime-local", name: "time_from" });
  const to = h("input", { type: "datetime-local", name: "time_to" });
  const model = h("input", { type: "text", name: "model", placeholder: "any model" });
  const user = h("input", { type: "text", name: "user", placeholder: "any user" });
  const element = h("fieldset", { class: "row" }, h("legend", {}, "Filters"),
    field("From", from), field("To", to), field("Model", model), field("User", user));
  const local = (value) => new Date(value).toLocaleString();
  return {
    element,
    values() {
      const out = {};
      // datetime-local is the browser's local time; the API takes ISO 8601 with a zone.
      if (from.value) out.time_from = new Date(from.value).toISOString();
      if (to.value) out.time_to = new Date(to.value).toISOString();
      if (model.value.trim()) out.model = model.value.trim();
      if (user.value.trim()) out.user = user.value.trim();
      return out;
    },
    active() {
      return [from.value && `from ${local(from.value)}`, to.value && `to ${local(to.value)}`,
        model.value.trim() && `model ${model.value.trim()}`, user.value.trim() && `user ${user.value.trim()}`]
        .filter(Boolean);
    },
    clear() {
      for (const input of [from, to, model, user]) input.value = "";
    },
  };
}

/**
 * A line saying which filters narrowed the last results, with a button that clears them and runs
 * again (rerun); hidden while no filter is set. note.show() updates it after each run.
 */
export function filtersNote(filters, rerun) {
  const text = h("span", {});
  const clear = h("button", { type: "button", class: "quiet link" }, "Clear filters");
  const element = h("p", { class: "hint filters-note", hidden: true }, text, clear);
  clear.addEventListener("click", () => {
    filters.clear();
    element.hidden = true;
    rerun();
  });
  return {
    element,
    show(count) {
      const active = filters.active();
      element.hidden = !active.length;
      text.textContent = active.length
        ? `${count ? "Filtered" : "Nothing matched"}: ${active.join(", ")}.` : "";
    },
  };
}
