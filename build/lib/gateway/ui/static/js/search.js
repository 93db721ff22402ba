// Search: by text or by an image (picked, dropped or pasted), with a target and filters. It needs memory:
// with memory off on the gateway the form is shown disabled, with a note saying so.

import { features, json, postJson } from "./api.js";
import { field, h } from "./dom.js";
import { card, filterFields } from "./cards.js";
import { imageDataUrl, imagePicker } from "./images.js";

// The targets /search takes, as the gateway's OpenAPI document lists them (its vector schema decides
// them): "all" first. Fetched once per page; without the document, "all" alone.
let targets = null;
function searchTargets() {
  targets ??= json("/openapi.json")
    .then((doc) => doc.paths["/search"].post.requestBody.content["application/json"].schema.properties.target.enum)
    .then((values) => ["all", ...values.filter((value) => value !== "all")])
    .catch(() => ["all"]);
  return targets;
}

function targetOption(value) {
  return h("option", { value }, value === "all" ? "All (fused)" : value[0].toUpperCase() + value.slice(1));
}

export function searchView(view, params) {
  const text = h("input", { type: "search", name: "text", placeholder: "words in a question or an answer" });
  const picker = imagePicker("Search by image");
  const target = h("select", { name: "target" }, targetOption("all"));
  const targetsShown = searchTargets().then((values) => {
    const chosen = target.value;
    target.replaceChildren(...values.map(targetOption));
    target.value = chosen;
  });
  const limit = h("input", { type: "number", name: "limit", min: 1, max: 100, value: 24 });
  const filters = filterFields();
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });
  const results = h("ul", { class: "grid", "aria-label": "Results" });
  const form = h("form", { class: "panel", role: "search" },
    h("div", { class: "row" }, field("Text", text, { grow: true }),
      field("Target", target), field("Results", limit)),
    picker.element, filters.element,
    h("div", { class: "row" }, h("button", { type: "submit" }, "Search")));
  const note = h("p", { class: "hint", role: "note", hidden: true },
    "Search needs memory, which is off on this gateway (VISIONRAG_MEMORY_ENABLED=false). ",
    h("a", { href: "#/browse" }, "Browse"), " and each exchange's page still work.");
  view.append(h("h1", { tabindex: -1 }, "Search"), note, form, status, error, results);

  async function run(image) {
    error.textContent = "";
    const query = text.value.trim();
    if (!image && !query) {
      error.textContent = "Type some words or choose an image.";
      return;
    }
    const body = { target: target.value, limit: Number(limit.value) || 24, filters: filters.values() };
    if (image) body.image = image;
    else body.text = query;
    status.textContent = "Searching…";
    try {
      const found = await postJson("/search", body);
      results.replaceChildren(...found.data.map((hit) => card({
        id: hit.exchange_id, question: hit.question, answer: hit.answer, sha256: hit.image_sha256,
        time: hit.time, score: hit.score,
      })));
      status.textContent = `${found.data.length} result(s) by ${found.query_type}, target ${found.target}.`;
    } catch (exc) {
      status.textContent = "";
      error.textContent = exc.message;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // An image, when one is chosen, wins over the text.
    run(picker.has() ? await picker.dataUrl() : null);
  });

  let off = false;
  features().then(({ memory }) => {
    if (!memory) {
      off = true;
      note.hidden = false;
      for (const control of form.elements) control.disabled = true;
      return;
    }
    // "Find similar" from an exchange's page: image to image.
    if (params.get("similar")) {
      status.textContent = "Loading the image…";
      targetsShown.then(() => { target.value = "image"; return imageDataUrl(params.get("similar")); })
        .then(run, (exc) => { status.textContent = ""; error.textContent = exc.message; });
    } else if (params.get("q")) {
      text.value = params.get("q");
      run(null);
    }
  });
  return { onPaste: (event) => off || picker.onPaste(event) };
}
