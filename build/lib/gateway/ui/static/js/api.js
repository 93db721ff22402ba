// Every call to the gateway: same origin, with the tab's API key when it has one.
// The key lives in sessionStorage only (this tab), never in a URL or a cookie.

const KEY = "visionrag.apiKey";
// The gateway's root, so the page also works behind a proxy that mounts the gateway under a prefix.
export const ROOT = location.pathname.replace(/\/ui\/?$/, "");

let asking = null; // one key prompt at a time, shared by every call that got a 401
let gatewayWantsKey = false;

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function hasKey() {
  return Boolean(sessionStorage.getItem(KEY));
}

export function needsKey() {
  return gatewayWantsKey;
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** fetch() on the gateway; on 401 asks for a key and tries again with it. */
export async function call(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(ROOT + path, { ...options, headers, credentials: "omit", referrerPolicy: "no-referrer" });
    if (response.status !== 401) return response;
    gatewayWantsKey = true;
    // Sent before a prompt that has been answered since (calls made together at start-up): try its key.
    if (sessionStorage.getItem(KEY) !== key) continue;
    const message = await errorMessage(response);
    await askForKey(key ? `That key was refused: ${message}` : "");
  }
}

let offered = null;
/**
 * What this gateway offers the page ({memory}), asked once per page. Without an answer, memory is taken
 * as on: a search then says itself what went wrong.
 */
export function features() {
  offered ??= json("/ui/features").catch(() => ({ memory: true }));
  return offered;
}

/** JSON from the gateway, or an ApiError carrying the gateway's own message. */
export async function json(path, options = {}) {
  const response = await call(path, options);
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response), await errorCode(response));
  return response.json();
}

export function postJson(path, body, options = {}) {
  return json(path, {
    ...options, method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", ...(options.headers || {}) },
  });
}

export async function errorMessage(response) {
  try {
    const body = await response.clone().json();
    return body?.error?.message || body?.detail || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function errorCode(response) {
  try {
    return (await response.clone().json())?.error?.code;
  } catch {
    return undefined;
  }
}

export function askForKey(problem = "") {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  document.getElementById("key-error").textContent = problem;
  input.value = "";
  asking = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      sessionStorage.setItem(KEY, value);
      form.removeEventListener("submit", done);
      dialog.close();
      asking = null;
      document.getElementById("key-button").hidden = false;
      resolve();
    };
    form.addEventListener("submit", done);
    // Escape would leave every waiting call hanging: the page cannot work without a key.
    dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
  });
  dialog.showModal();
  input.focus();
  return asking;
}

/**
 * POST a streamed chat completion and call onText(delta) as the answer arrives.
 * Returns the response (for its x-visionrag-* headers) once the stream has ended.
 */
export async function streamChat(body, onText) {
  const response = await call("/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    // SSE: events end with a blank line; a chunk may end mid-event, which waits for the next one.
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = events.pop();
    for (const event of events) {
      if (handleEvent(event, onText)) return response;
    }
  }
  if (buffer.trim()) handleEvent(buffer, onText);
  return response;
}

/** One SSE event; true at [DONE]. */
function handleEvent(event, onText) {
  const data = event.split(/\r?\n/).filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
  if (!data) return false;
  if (data.trim() === "[DONE]") return true;
  let chunk;
  try {
    chunk = JSON.parse(data);
  } catch {
    return false;
  }
  if (chunk.error) throw new ApiError(500, chunk.error.message || "the model failed mid-answer");
  const text = chunk.choices?.[0]?.delta?.content;
  if (text) onText(text);
  return false;
}

/** The comma-separated exchange ids of x-visionrag-sources (none when absent or empty). */
export function sourceIds(response) {
  return (response.headers.get("x-visionrag-sources") || "").split(",").map((s) => s.trim()).filter(Boolean);
}
