// Images: thumbnails fetched with the tab's key and shown from blob: URLs (an <img src> could not send
// the Authorization header), and the picker for a query or chat image (pick, drop or paste).

import { call } from "./api.js";
import { h } from "./dom.js";

let urls = []; // blob: URLs of the current view, released when the view changes

export function releaseImages() {
  for (const url of urls) URL.revokeObjectURL(url);
  urls = [];
}

export function keep(blob) {
  const url = URL.createObjectURL(blob);
  urls.push(url);
  return url;
}

/** An <img> (alt: the exchange's question) that loads the gateway's thumbnail of `sha256`. */
export function thumbnail(sha256, size, alt, className = "thumb") {
  const img = h("img", { class: className, alt: alt || "image without a question", loading: "lazy", decoding: "async" });
  img.dataset.sha256 = sha256;
  const path = `/images/${encodeURIComponent(sha256)}` + (size ? `?size=${size}` : "");
  call(path).then(async (response) => {
    if (response.ok) img.src = keep(await response.blob());
    else img.replaceWith(placeholder("image unavailable"));
  }).catch(() => img.replaceWith(placeholder("image unavailable")));
  // Bytes the browser cannot decode: a sentence, not the browser's broken-image icon.
  img.addEventListener("error", () => img.replaceWith(placeholder("image could not be shown")), { once: true });
  return img;
}

export function placeholder(text = "text only") {
  return h("div", { class: "placeholder", role: "img", "aria-label": text }, text);
}

/** The original image of `sha256` as a data: URL (to search by it). */
export async function imageDataUrl(sha256) {
  const response = await call(`/images/${encodeURIComponent(sha256)}`);
  if (!response.ok) throw new Error(`the image could not be loaded (HTTP ${response.status})`);
  return readDataUrl(await response.blob());
}

export function readDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/**
 * A drop zone with a file input (keyboard: the input itself), which also takes pasted images.
 * picker.element goes in the form; picker.dataUrl() is the chosen image as a data: URL, or null.
 */
export function imagePicker(label = "Image") {
  let file = null;
  const input = h("input", { type: "file", accept: "image/*", id: `img-${Math.random().toString(36).slice(2, 8)}` });
  const preview = h("span", { class: "preview", "aria-live": "polite" });
  const problem = h("span", { class: "error picker-error", role: "alert" });
  const remove = h("button", { type: "button", class: "quiet", hidden: true }, "Remove image");
  const zone = h("div", { class: "drop" },
    h("label", { for: input.id }, label), input,
    h("span", { class: "hint" }, "or drop / paste an image"), preview, remove, problem);

  // The file names below are the user's, shown as text only.
  function choose(next, { fromInput = false } = {}) {
    problem.textContent = "";
    if (next && !next.type.startsWith("image/")) {
      problem.textContent = `${next.name || "That file"} is not an image: choose a PNG, JPEG, GIF or WebP file.`;
      next = null;
    }
    file = next;
    preview.replaceChildren();
    remove.hidden = !file;
    if (!file) {
      input.value = "";
      return;
    }
    // A dropped or pasted file goes into the input too, so that it names the file (not "No file chosen").
    if (!fromInput) {
      const transfer = new DataTransfer();
      transfer.items.add(file);
      input.files = transfer.files;
    }
    const name = file.name || "pasted image";
    const shown = h("img", { src: keep(file), alt: `chosen image: ${name}` });
    // A file that says it is an image but does not decode: say so instead of a broken-image icon.
    shown.addEventListener("error", () => {
      if (file !== next) return;
      choose(null);
      problem.textContent = `${name} could not be read as an image.`;
    }, { once: true });
    preview.append(shown, h("span", { class: "file-name" }, name));
  }

  input.addEventListener("change", () => choose(input.files[0] || null, { fromInput: true }));
  remove.addEventListener("click", () => { choose(null); input.focus(); });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    choose(event.dataTransfer.files[0] || null);
  });
  const onPaste = (event) => {
    const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) {
      event.preventDefault();
      choose(item.getAsFile());
    }
  };

  return {
    element: zone,
    input,
    onPaste,
    has: () => file !== null,
    file: () => file,
    clear: () => choose(null),
    set: (next) => choose(next),
    dataUrl: () => (file ? readDataUrl(file) : Promise.resolve(null)),
  };
}
