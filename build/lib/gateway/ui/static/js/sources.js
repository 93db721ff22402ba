// Sources an answer cited, as thumbnails that link to their own exchanges.

import { json } from "./api.js";
import { excerpt, h } from "./dom.js";
import { placeholder, thumbnail } from "./images.js";

/** sources: [{exchange_id, score?}] in citation order ([1], [2], ...). */
export function sourceList(sources) {
  const list = h("ol", { class: "sources", "aria-label": "Sources" });
  sources.forEach((source, index) => {
    const id = source.exchange_id;
    const label = h("span", {}, `[${index + 1}] ` + (source.score !== undefined ? `score ${Number(source.score).toFixed(3)}` : ""));
    const link = h("a", { href: `#/exchange/${encodeURIComponent(id)}`, class: "source", dataset: { exchangeId: id } },
      placeholder("…"), label);
    list.append(h("li", {}, link));
    json(`/exchanges/${encodeURIComponent(id)}`).then((exchange) => {
      const sha = exchange.images?.[0]?.sha256;
      link.firstChild.replaceWith(sha ? thumbnail(sha, 128, exchange.question) : placeholder("text only"));
      link.append(h("span", { class: "hint" }, excerpt(exchange.question, 60)));
    }, () => link.firstChild.replaceWith(placeholder("no longer available")));
  });
  return list;
}
