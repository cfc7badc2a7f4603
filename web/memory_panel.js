// The "DisTorch memory" panel: DOM built from one /internal/memory document. No state of its
// own: `renderMemory(root, document)` redraws everything from the document it is given.
import { formatBytes, modelColour, stateColour } from "./format.js";

const STYLE_ID = "distorch-memory-style";
const CSS = `
.distorch-memory { padding: 8px 10px; font-size: 12px; display: flex; flex-direction: column; gap: 10px; }
.distorch-memory h3 { margin: 0; font-size: 13px; }
.distorch-device-head { display: flex; justify-content: space-between; gap: 6px; }
.distorch-state { font-weight: bold; }
.distorch-bar { display: flex; height: 18px; border-radius: 3px; overflow: hidden; border: 2px solid; background: #222; }
.distorch-seg { height: 100%; min-width: 0; }
.distorch-seg.model { min-width: 3px; }
.distorch-seg.cache { background: repeating-linear-gradient(45deg, #7a7a7a, #7a7a7a 3px, #5c5c5c 3px, #5c5c5c 6px); }
.distorch-seg.other { background: #4b4b55; }
.distorch-seg.free { background: transparent; }
.distorch-legend { display: flex; flex-direction: column; gap: 2px; margin: 0; padding: 0; list-style: none; }
.distorch-legend li { display: flex; gap: 6px; align-items: center; }
.distorch-swatch { width: 10px; height: 10px; border-radius: 2px; flex: none; }
.distorch-tag { font-size: 10px; padding: 0 4px; border-radius: 3px; border: 1px solid currentColor; }
.distorch-warning { border-left: 3px solid; padding: 2px 6px; }
.distorch-warning ul { margin: 2px 0 0 14px; padding: 0; }
.distorch-buttons { display: flex; gap: 6px; flex-wrap: wrap; }
.distorch-buttons button { cursor: pointer; padding: 4px 8px; border-radius: 4px; border: 1px solid #666; background: #333; color: inherit; }
.distorch-buttons button:disabled { opacity: 0.5; cursor: progress; }
.distorch-muted { opacity: 0.7; }
`;

function ensureStyle() {
  if (document.getElementById(STYLE_ID)) return;
  const style = document.createElement("style");
  style.id = STYLE_ID;
  style.textContent = CSS;
  document.head.appendChild(style);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function segment(kind, bytes, total, title, colour) {
  const node = element("div", `distorch-seg ${kind}`);
  node.style.width = `${total > 0 ? (100 * bytes) / total : 0}%`;
  node.title = title;
  if (colour) node.style.background = colour;
  return node;
}

function deviceBar(device, modelsById, isRam) {
  const box = element("section", "distorch-device");
  box.dataset.device = device.device;
  box.dataset.state = device.state;
  const head = element("div", "distorch-device-head");
  const label = isRam ? `RAM (${device.device})` : `${device.device} · ${device.name}`;
  head.append(element("span", null, label));
  const state = element("span", "distorch-state", `${device.state} ${device.percent_used}%`);
  state.style.color = stateColour(device.state);
  head.append(state);
  box.append(head);

  const bar = element("div", "distorch-bar");
  bar.style.borderColor = stateColour(device.state);
  const total = device.total;
  let accounted = 0;
  for (const [id, bytes] of Object.entries(device.models ?? {})) {
    const model = modelsById[id];
    const name = model?.name ?? id;
    const seg = segment("model", bytes, total, `${name}: ${formatBytes(bytes)}`, modelColour(id));
    seg.dataset.modelId = id;
    bar.append(seg);
    accounted += bytes;
  }
  const cache = device.torch_cache ?? 0;
  if (cache > 0) bar.append(segment("cache", cache, total, `torch cache: ${formatBytes(cache)}`));
  accounted += cache;
  const other = Math.max(0, device.used - accounted);
  if (other > 0) {
    const what = isRam ? "other use (ComfyUI, other processes)" : "other processes and the driver";
    bar.append(segment("other", other, total, `${what}: ${formatBytes(other)}`));
  }
  bar.append(segment("free", device.free, total, `free: ${formatBytes(device.free)}`));
  box.append(bar);
  box.append(element("div", "distorch-muted",
    `${formatBytes(device.used)} used of ${formatBytes(total)}, ${formatBytes(device.free)} free`
    + (cache > 0 ? `, torch cache ${formatBytes(cache)}` : "")));
  return box;
}

function modelLegend(models) {
  const list = element("ul", "distorch-legend");
  for (const model of models) {
    const item = element("li");
    item.dataset.modelId = model.id;
    const swatch = element("span", "distorch-swatch");
    swatch.style.background = modelColour(model.id);
    const where = Object.entries(model.devices).map(([d, b]) => `${d} ${formatBytes(b)}`).join(", ");
    item.append(swatch, element("span", null, `${model.name} (${where})`));
    if (model.keep_loaded) item.append(element("span", "distorch-tag", "keep loaded"));
    if (model.flagged) item.append(element("span", "distorch-tag flagged", "flagged"));
    item.title = `${model.loader}${model.component ? ` · ${model.component}` : ""} · ${model.state}`;
    list.append(item);
  }
  return list;
}

function warningList(warnings) {
  const box = element("div", "distorch-warnings");
  for (const warning of warnings) {
    const item = element("div", "distorch-warning");
    item.dataset.code = warning.code;
    item.style.borderColor = warning.severity === "critical" ? stateColour("CRITICAL") : stateColour("HIGH");
    item.append(element("div", null, warning.message));
    const actions = element("ul");
    for (const action of warning.recommended_actions) actions.append(element("li", null, action));
    item.append(actions);
    box.append(item);
  }
  return box;
}

// The static frame: title, the two buttons, and an empty body filled by renderMemory.
export function buildPanel(root, { onUnloadFlagged, onFreeEverything }) {
  ensureStyle();
  root.replaceChildren();
  const panel = element("div", "distorch-memory");
  panel.append(element("h3", null, "DisTorch memory"));
  const buttons = element("div", "distorch-buttons");
  for (const [text, action, name] of [["Unload flagged models", onUnloadFlagged, "unload-flagged"],
    ["Free everything", onFreeEverything, "free-everything"]]) {
    const button = element("button", null, text);
    button.dataset.action = name;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await action();
      } finally {
        button.disabled = false;
      }
    });
    buttons.append(button);
  }
  const body = element("div", "distorch-memory-body");
  body.append(element("div", "distorch-muted", "Reading /internal/memory ..."));
  panel.append(buttons, body);
  root.append(panel);
  return body;
}

export function renderMemory(body, report) {
  const modelsById = Object.fromEntries(report.models.map((m) => [m.id, m]));
  const children = [];
  const accelerators = report.devices.filter((d) => d.device !== "cpu");
  for (const device of accelerators) children.push(deviceBar(device, modelsById, false));
  const cpu = report.devices.find((d) => d.device === "cpu");
  if (cpu) children.push(deviceBar(cpu, modelsById, true));
  children.push(element("div", "distorch-muted",
    `ComfyUI process ${formatBytes(report.ram.process_rss)} RAM; swap ${formatBytes(report.ram.swap_used)} of ${formatBytes(report.ram.swap_total)}`
    + (report.offload?.vram_state ? `; VRAM mode ${report.offload.vram_state}` : "")));
  children.push(element("h3", null, report.models.length ? "Loaded models" : "No model loaded"));
  if (report.models.length) children.push(modelLegend(report.models));
  if (report.warnings.length) {
    children.push(element("h3", null, "Warnings"));
    children.push(warningList(report.warnings));
  }
  body.replaceChildren(...children);
  body.dataset.timestamp = String(report.timestamp);
}
