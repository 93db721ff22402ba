// What search and browse share: a result card, and the filter fields.

import { excerpt, field, formatTime, h } from "./dom.js";
import { placeholder, thumbnail } from "./images.js";

export const THUMB = 256;

/** A card linking to the exchange: thumbnail (or a placeholder), question, answer excerpt, score, time. */
export function card({ id, question, answer, sha256, time, score, model }) {
  const media = sha256 ? thumbnail(sha256, THUMB, question) : placeholder("text only");
  return h("li", { class: "card", dataset: { exchangeId: id } },
    h("a", { href: `#/exchange/${encodeURIComponent(id)}` },
      media,
      h("div", { class: "body" },
        h("span", { class: "question" }, excerpt(question, 120) || "(no question)"),
        h("span", { class: "answer" }, excerpt(answer, 160)),
        h("span", { class: "meta" },
          h("span", {}, score === undefined ? model || "" : `score ${score.toFixed(3)}`),
          h("time", { datetime: time }, formatTime(time))))));
}

/** Time range, model and user fields; values() gives them as the API takes them (unset: omitted). */
export function filterFields() {
  const from = h("input", { type: "datetime-local", name: "time_from" });
  const to = h("input", { type: "datetime-local", name: "time_to" });
  const model = h("input", { type: "text", name: "model", placeholder: "any model" });
  const user = h("input", { type: "text", name: "user", placeholder: "any user" });
  const element = h("fieldset", { class: "row" }, h("legend", {}, "Filters"),
    field("From", from), field("To", to), field("Model", model), field("User", user));
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
  };
}
