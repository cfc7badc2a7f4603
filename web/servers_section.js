// The servers section of the DisTorch memory panel, on a ComfyUI-Distributed master: per server
// Distributed load-balances to, the model files it held when last asked, and where the last
// prompts went and why (GET /distorch/route/recent, read when the panel opens and each time the
// queue changes). Hidden where ComfyUI-Distributed is not installed.
import { api } from "../../scripts/api.js";
import { phrases } from "./memory_panel.js";

function line(className, text) {
  const node = document.createElement("div");
  node.className = className;
  node.textContent = text;
  return node;
}

export function renderServers(section, recent) {
  const title = document.createElement("h4");
  title.textContent = recent.enabled ? "Servers (routing by residency)" : "Servers (routing by residency off)";
  const rows = recent.servers.map((server) => {
    const row = document.createElement("div");
    row.className = "distorch-server";
    row.dataset.url = server.url;
    const held = server.error ? [`not read: ${server.error}`]
      : server.files.length ? server.files : ["holds no model file"];
    row.append(line("distorch-server-url", server.url), phrases("distorch-muted distorch-server-files", held));
    return row;
  });
  const last = recent.routed.slice(-3).reverse().map((routed) =>
    line("distorch-muted distorch-routed", `→ ${routed.to}: ${routed.reason}`));
  if (!rows.length) rows.push(line("distorch-muted", "no prompt load-balanced yet"));
  section.replaceChildren(title, ...rows, ...last);
}

// Fills `section` and keeps it current; returns the function that stops it.
export function mountServersSection(section) {
  section.hidden = true;
  let asking = false;
  const refresh = () => {
    if (asking) return;
    asking = true;
    api.fetchApi("/distorch/route/recent", { cache: "no-store" })
      .then((response) => (response.ok ? response.json() : null))
      .then((recent) => {
        if (!recent || !recent.distributed) return; // not a Distributed master: no section
        section.hidden = false;
        renderServers(section, recent);
      })
      .catch(() => {}) // an older server: no section
      .finally(() => { asking = false; });
  };
  api.addEventListener("status", refresh);
  refresh();
  return () => api.removeEventListener("status", refresh);
}
