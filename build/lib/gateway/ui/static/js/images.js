// Images: thumbnails fetched with the tab's key and shown from blob: URLs (an <img src> could not send
// the Authorization header), and the picker for a query or chat image (pick, drop or paste).

import { call } from "./api.js";
import { h } from "./dom.js";

let urls = []; // blob: URLs of the current view, released when the view changes

export function releaseImages() {
  for (const url of urls) URL.revokeObjectURL(url);
  urls = [];
}

function keep(blob) {
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
  const remove = h("button", { type: "button", class: "quiet", hidden: true }, "Remove image");
  const zone = h("div", { class: "drop" },
    h("label", { for: input.id }, label), input,
    h("span", { class: "hint" }, "or drop / paste an image"), preview, remove);

  function choose(next) {
    file = next && next.type.startsWith("image/") ? next : null;
    preview.replaceChildren();
    remove.hidden = !file;
    if (!file) {
      input.value = "";
      return;
    }
    // The file name is the user's, shown as text only.
    preview.append(h("img", { src: keep(file), alt: `chosen image: ${file.name || "pasted image"}` }),
      h("span", { class: "file-name" }, file.name || "pasted image"));
  }

  input.addEventListener("change", () => choose(input.files[0] || null));
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
    clear: () => choose(null),
    set: (next) => choose(next),
    dataUrl: () => (file ? readDataUrl(file) : Promise.resolve(null)),
  };
}
