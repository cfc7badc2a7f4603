// The "DisTorch memory" panel: DOM built from one /internal/memory document. No state of its
// own: `renderMemory(body, document, actions)` redraws everything from the document it is given.
//
// It follows ComfyUI's theme: colours come from the frontend's palette variables (--fg-color,
// --comfy-input-bg, --border-color, --descrip-text ...; the light and dark palettes set them), and
// buttons use PrimeVue's button classes, which the frontend styles globally. Only the per-model
// palette and the device-state colours are the panel's own. Text is laid out as short phrases
// that wrap between each other, so the sidebar's narrowest width breaks no phrase in two.
import {
  formatBytes,
  loaderLabel,
  memoryModePhrases,
  modelColour,
  modelPart,
  stateColour,
  unbreakableBytes,
} from "./format.js";

const STYLE_ID = "distorch-memory-style";
// Fallbacks are neutral greys that read on light and dark backgrounds (frontends without the
// palette variables).
const CSS = `
.distorch-memory-tab { display: flex; flex-direction: column; min-height: 100%; min-width: 0;
  background: var(--p-tree-background, var(--comfy-menu-bg, transparent)); color: var(--fg-color, inherit); }
.distorch-memory-header { min-height: 32px; display: flex; align-items: center; padding: 4px 8px; font-size: 12px;
  text-transform: uppercase; border-bottom: 1px solid var(--p-content-border-color, var(--border-color, rgba(128, 128, 128, 0.4))); }
.distorch-memory { padding: 8px 10px; font-size: 13px; line-height: 1.4; display: flex; flex-direction: column;
  gap: 10px; min-width: 0; overflow-wrap: anywhere; }
.distorch-memory-body { display: flex; flex-direction: column; gap: 10px; min-width: 0; }
.distorch-memory h4 { margin: 0; font-size: 12px; font-weight: 600; text-transform: uppercase;
  color: var(--descrip-text, inherit); }
.distorch-phrases { margin: 0; }
.distorch-phrase { display: inline-block; max-width: 100%; }
.distorch-muted { color: var(--descrip-text, rgb(128, 128, 128)); font-size: 12px; }
.distorch-mode { padding: 4px 6px; border-radius: 4px; background: var(--comfy-menu-secondary-bg, rgba(128, 128, 128, 0.15)); }
.distorch-device { display: flex; flex-direction: column; gap: 3px; }
.distorch-device-head { display: flex; flex-wrap: wrap; justify-content: space-between; column-gap: 8px; }
.distorch-device-name { font-weight: 600; }
.distorch-state { font-weight: 600; white-space: nowrap; }
.distorch-bar { display: flex; height: 14px; border-radius: 3px; overflow: hidden; border: 2px solid;
  background: var(--comfy-input-bg, rgba(128, 128, 128, 0.2)); }
.distorch-seg { height: 100%; min-width: 0; }
.distorch-seg.model { min-width: 3px; }
.distorch-seg.cache { background: repeating-linear-gradient(45deg, var(--descrip-text, rgb(128, 128, 128)) 0 2px,
  transparent 2px 5px); }
.distorch-seg.other { background: var(--border-color, rgba(128, 128, 128, 0.6)); }
.distorch-seg.free { background: transparent; }
.distorch-models { display: flex; flex-direction: column; gap: 6px; margin: 0; padding: 0; list-style: none; }
.distorch-model { display: grid; grid-template-columns: 10px minmax(0, 1fr); column-gap: 6px; padding: 4px 0;
  border-top: 1px solid var(--border-color, rgba(128, 128, 128, 0.4)); }
.distorch-model:first-child { border-top: none; padding-top: 0; }
.distorch-swatch { width: 10px; height: 10px; border-radius: 2px; margin-top: 3px; }
.distorch-model-body { display: flex; flex-direction: column; gap: 2px; min-width: 0; }
.distorch-model-name { display: block; font-weight: 600; }
.distorch-model-foot { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 6px; }
.distorch-badge { display: inline-block; font-size: 11px; line-height: 16px; padding: 0 6px; border-radius: 8px;
  white-space: nowrap; border: 1px solid var(--border-color, rgba(128, 128, 128, 0.6));
  background: var(--comfy-menu-secondary-bg, rgba(128, 128, 128, 0.15)); color: var(--input-text, inherit); }
.distorch-badge::before { content: ""; display: inline-block; width: 6px; height: 6px; border-radius: 50%;
  margin-right: 4px; vertical-align: 1px; background: var(--distorch-badge-dot, transparent); }
.distorch-model-foot .p-button { margin-left: auto; font-size: 12px; padding: 2px 8px; gap: 4px; }
.distorch-buttons { display: flex; gap: 6px; flex-wrap: wrap; }
.distorch-memory .p-button { max-width: 100%; }
.distorch-memory .p-button-label { white-space: normal; overflow-wrap: normal; text-align: center; }
.distorch-memory .p-button:disabled { cursor: progress; }
.distorch-warning { border-left: 3px solid; padding: 2px 6px; background: var(--comfy-menu-secondary-bg, rgba(128, 128, 128, 0.12)); }
.distorch-warning ul { margin: 2px 0 0 14px; padding: 0; }
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

// A line of short phrases, each kept whole where the width allows: the line breaks between
// phrases first. `separator` ends every phrase but the last ("·" for lists, "" for a sentence).
// A part is text or a node (e.g. camelWords).
export function phrases(className, parts, separator = "·") {
  const line = element("div", `distorch-phrases ${className ?? ""}`.trim());
  parts.filter((part) => part != null && part !== "").forEach((part, index, all) => {
    if (index > 0) line.append(document.createTextNode(" "));
    const phrase = element("span", "distorch-phrase");
    phrase.append(part);
    if (separator && index < all.length - 1) phrase.append(`\u00a0${separator}`);
    line.append(phrase);
  });
  return line;
}

// Text that may break only where `pattern` allows (a <wbr> there) where a line is too narrow for it.
function breakableAt(text, pattern, className) {
  const node = element("span", className);
  String(text).split(pattern).forEach((piece, index) => {
    if (index > 0) node.append(element("wbr"));
    node.append(document.createTextNode(piece));
  });
  return node;
}

// "DisTorchCheckpointLoader" breaks between its words (DisTorch|Checkpoint|Loader).
const camelWords = (text, className) => breakableAt(text, /(?<=[a-z0-9])(?=[A-Z])/, className);
// "sd15-base_v2.safetensors" breaks after "-", "_" and "." (browsers break after "-" only).
const fileWords = (text, className) => breakableAt(text, /(?<=[-_.])/, className);

// A PrimeVue button as the frontend draws its own: `variants` e.g. ["secondary"], ["danger", "outlined"].
function button(label, name, variants, icon) {
  const node = element("button", ["p-button", "p-component", "p-button-sm", ...variants.map((v) => `p-button-${v}`)].join(" "));
  node.type = "button";
  node.dataset.action = name;
  if (icon) node.append(element("span", `p-button-icon p-button-icon-left pi ${icon}`));
  node.append(element("span", "p-button-label", label));
  return node;
}

// Runs `action` with the button disabled meanwhile (a second press would send a second request).
function onPress(node, action) {
  node.addEventListener("click", async () => {
    node.disabled = true;
    try {
      await action();
    } finally {
      node.disabled = false;
    }
  });
}

function segment(kind, bytes, total, title, colour) {
  const node = element("div", `distorch-seg ${kind}`);
  node.style.width = `${total > 0 ? (100 * bytes) / total : 0}%`;
  node.title = title;
  if (colour) node.style.background = colour;
  return node;
}

function modelTitle(model) {
  return model ? `${model.name} (${modelPart(model)})` : null;
}

function deviceBar(device, modelsById, isRam) {
  const box = element("section", "distorch-device");
  box.dataset.device = device.device;
  box.dataset.state = device.state;
  const head = element("div", "distorch-device-head");
  head.append(phrases("distorch-device-name", isRam ? ["RAM", `(${device.device})`] : [device.device, device.name], isRam ? "" : "·"));
  const state = element("span", "distorch-state", `${device.state} · ${device.percent_used}%`);
  state.style.color = stateColour(device.state);
  state.title = "LOW < 50 % used, MODERATE 50-75, HIGH 75-90, CRITICAL > 90";
  head.append(state);
  box.append(head);

  const bar = element("div", "distorch-bar");
  bar.style.borderColor = stateColour(device.state);
  const total = device.total;
  let accounted = 0;
  for (const [id, bytes] of Object.entries(device.models ?? {})) {
    const name = modelTitle(modelsById[id]) ?? id;
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
  box.append(phrases("distorch-muted", [
    `${unbreakableBytes(device.used)} of ${unbreakableBytes(total)} used`,
    `${unbreakableBytes(device.free)} free`,
    cache > 0 ? `torch cache ${unbreakableBytes(cache)}` : null,
  ]));
  return box;
}

function badge(text, kind, dotColour, tooltip) {
  const node = element("span", `distorch-badge ${kind}`, text);
  node.style.setProperty("--distorch-badge-dot", dotColour);
  node.title = tooltip;
  return node;
}

function modelRow(model, { onUnloadModel, pending }) {
  const row = element("li", "distorch-model");
  row.dataset.modelId = model.id;
  row.dataset.part = modelPart(model);
  const swatch = element("span", "distorch-swatch");
  swatch.style.background = modelColour(model.id);
  const body = element("div", "distorch-model-body");
  body.append(fileWords(model.name, "distorch-model-name"));
  body.append(phrases("distorch-muted distorch-model-kind", [modelPart(model), camelWords(loaderLabel(model))]));
  const foot = element("div", "distorch-model-foot");
  const where = Object.entries(model.devices).map(([device, bytes]) => `${device} ${unbreakableBytes(bytes)}`);
  foot.append(phrases("distorch-model-where", where.length ? where : ["no weights on a device"]));
  if (model.keep_loaded) {
    foot.append(badge("keep loaded", "keep", stateColour("LOW"),
      "keep_loaded is on: Unload flagged models leaves it loaded"));
  }
  if (model.flagged) {
    foot.append(badge("flagged", "flagged", stateColour("HIGH"), "keep_loaded is off: Unload flagged models removes it"));
  }
  if (model.state === "retained") {
    foot.append(badge("in RAM only", "retained", stateColour("UNKNOWN"),
      "off the devices, held in RAM by the pack so the next prompt reuses it"));
  }
  if (onUnloadModel) {
    const busy = pending?.has(model.id);
    const unload = button(busy ? "Unloading" : "Unload", "unload-model", ["secondary", "text"], "pi-eject");
    unload.title = `Unload ${model.name} (${modelPart(model)}) from every device`;
    unload.disabled = Boolean(busy);
    if (!busy) onPress(unload, () => onUnloadModel(model));
    foot.append(unload);
  }
  body.append(foot);
  row.title = `${model.class} · ${model.state}${model.compute_device ? ` · runs on ${model.compute_device}` : ""}`;
  row.append(swatch, body);
  return row;
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
  root.style.height = "100%"; // the frontend's container for the tab: our background fills it
  const tab = element("div", "distorch-memory-tab");
  const header = element("div", "distorch-memory-header", "DisTorch memory");  // as the frontend's own tabs
  header.title = "DisTorch memory";
  const panel = element("div", "distorch-memory");
  const buttons = element("div", "distorch-buttons");
  const unloadFlagged = button("Unload flagged models", "unload-flagged", ["secondary"], "pi-eject");
  unloadFlagged.title = "ComfyUI-Manager's Free model and node cache: unloads the models whose keep_loaded is off";
  onPress(unloadFlagged, onUnloadFlagged);
  const freeEverything = button("Free everything", "free-everything", ["danger", "outlined"], "pi-trash");
  freeEverything.title = "Unload every model on every device, keep_loaded or not";
  onPress(freeEverything, onFreeEverything);
  buttons.append(unloadFlagged, freeEverything);
  const body = element("div", "distorch-memory-body");
  body.append(element("div", "distorch-muted", "Reading /internal/memory ..."));
  panel.append(buttons, body);
  tab.append(header, panel);
  root.append(tab);
  return body;
}

// `actions.onUnloadModel(model)` unloads one model (the row's button); `actions.pending` holds
// the ids being unloaded now (their buttons stay disabled across redraws).
export function renderMemory(body, report, actions = {}) {
  const modelsById = Object.fromEntries(report.models.map((m) => [m.id, m]));
  const children = [];
  children.push(phrases("distorch-mode", memoryModePhrases(report), ""));
  const accelerators = report.devices.filter((d) => d.device !== "cpu");
  for (const device of accelerators) children.push(deviceBar(device, modelsById, false));
  const cpu = report.devices.find((d) => d.device === "cpu");
  if (cpu) children.push(deviceBar(cpu, modelsById, true));
  children.push(phrases("distorch-muted distorch-process", [
    `ComfyUI process ${unbreakableBytes(report.ram.process_rss)} RAM`,
    report.ram.swap_total > 0 ? `swap ${unbreakableBytes(report.ram.swap_used)} of ${unbreakableBytes(report.ram.swap_total)} used` : "no swap",
  ]));
  const count = report.models.length;
  children.push(element("h4", null, count ? `Loaded models (${count})` : "No model loaded"));
  if (count) {
    const list = element("ul", "distorch-models");
    for (const model of report.models) list.append(modelRow(model, actions));
    children.push(list);
  }
  if (report.warnings.length) {
    children.push(element("h4", null, "Warnings"));
    children.push(warningList(report.warnings));
  }
  body.replaceChildren(...children);
  body.dataset.timestamp = String(report.timestamp);
}
