// The page's router: #/search, #/browse, #/exchange/{id}, #/chat. Each view renders into <main>.

import { askForKey, call, forgetKey, hasKey } from "./api.js";
import { browseView } from "./browse.js";
import { chatView } from "./chat.js";
import { clear } from "./dom.js";
import { exchangeView } from "./exchange.js";
import { releaseImages } from "./images.js";
import { searchView } from "./search.js";

const view = document.getElementById("view");
let current = {};
let renders = 0;

function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "browse";
  const [path, query = ""] = hash.split("?");
  const [name, ...rest] = path.split("/");
  const params = new URLSearchParams(query);
  releaseImages();
  clear(view);
  const render = ++renders;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  let result;
  if (name === "search") result = searchView(view, params);
  else if (name === "chat") result = chatView(view);
  else if (name === "exchange" && rest.length) result = exchangeView(view, decodeURIComponent(rest.join("/")));
  else result = browseView(view);
  current = result && !(result instanceof Promise) ? result : {};
  document.title = `VisionRAG · ${name === "exchange" ? "Exchange" : name[0].toUpperCase() + name.slice(1)}`;
  // Screen readers hear the new view; keyboard users start from its heading.
  if (render > 1) (view.querySelector("h1") || view).focus();
}

document.addEventListener("paste", (event) => current.onPaste?.(event));
window.addEventListener("hashchange", route);

const keyButton = document.getElementById("key-button");
keyButton.hidden = !hasKey();
keyButton.addEventListener("click", async () => {
  forgetKey();
  await askForKey("");
  // Ask for a key up front when the gateway wants one (any view may need it; the search form would
// otherwise only find out on its first search).
call("/exchanges?limit=1").catch(() => {});
route();
});

// Ask for a key up front when the gateway wants one (any view may need it; the search form would
// otherwise only find out on its first search).
call("/exchanges?limit=1").catch(() => {});
route();
