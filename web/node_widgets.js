// What the extension adds to DisTorch nodes in the graph:
// - device dropdowns show each device's free memory next to its name (display only: the value
//   stays the plain device name);
// - an `allocation` input gets a live preview of the split from GET /distorch/plan, or the
//   parser's error (the route's 400 message), drawn under the node (only on nodes that have the
//   input, and only while the route answers). The input is declared advanced: the frontend shows
//   it after "Show Advanced" in the node's menu; the preview is drawn either way. With the
//   frontend's Vue node mode on ("Nodes 2.0"), nodes do not draw canvas extras: the preview is
//   then a DOM widget at the bottom of the node (created with the node, so the Vue node shows it).
// (The mode dropdown of DisTorchModeSwitch follows `distorch.modes` in the modes extension.)
import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";
import { currentMemory } from "./memory_store.js";
import { deviceOptionLabel, formatBytes } from "./format.js";

export const LOADER_CLASSES = new Set([
  "DisTorchUNETLoader", "DisTorchCLIPLoader", "DisTorchDualCLIPLoader", "DisTorchVAELoader",
  "DisTorchCheckpointLoader", "DisTorchDiffusersLoader", "DisTorchUnetLoaderGGUF", "DisTorchCLIPLoaderGGUF",
  "DisTorchDualCLIPLoaderGGUF",
]);
const DEVICE_WIDGETS = new Set(["compute_device", "clip_device", "vae_device", "donor_device"]);
const FILE_WIDGETS = { unet_name: "diffusion_models", clip_name: "text_encoders", clip_name1: "text_encoders",
  ckpt_name: "checkpoints", model_path: "diffusers" };
const PLAN_INPUTS = ["compute_device", "virtual_vram_gb", "donor_device", "allocation", "weight_dtype"];
const PREVIEW_DELAY_MS = 400;
const PREVIEW_WIDGET = "distorch_split_preview";
const PREVIEW_COLOURS = { ok: "#9ad29a", error: "#ff6b6b" };

let planRouteMissing = false;

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function onWidgetChange(target, handler) {
  const original = target.callback;
  target.callback = function (...args) {
    const result = original?.apply(this, args);
    handler();
    return result;
  };
}

export function labelDeviceWidgets(node) {
  for (const target of node.widgets ?? []) {
    if (!DEVICE_WIDGETS.has(target.name) || target.type !== "combo") continue;
    target.options.getOptionLabel = (value) => deviceOptionLabel(value, currentMemory());
  }
}

export function redrawGraph() {
  app.graph?.setDirtyCanvas(true, true);
}

// ---- allocation preview ------------------------------------------------------------------------
function planQuery(node) {
  const params = new URLSearchParams();
  for (const [name, folder] of Object.entries(FILE_WIDGETS)) {
    const file = widget(node, name);
    if (file?.value) {
      params.set("file", String(file.value));
      params.set("folder", folder);
      break;
    }
  }
  for (const name of PLAN_INPUTS) {
    const input = widget(node, name);
    if (input?.value != null && input.value !== "") params.set(name, String(input.value));
  }
  return params;
}

function wantsPreview(node) {
  const allocation = String(widget(node, "allocation")?.value ?? "").trim();
  const virtual = Number(widget(node, "virtual_vram_gb")?.value ?? 0);
  return allocation !== "" || virtual > 0;
}

export function describePlan(plan) {
  return (plan.devices ?? [])
    .map((d) => `${d.slot ?? d.device} ${Math.round(100 * (d.share ?? 0))}% (${formatBytes(d.bytes)})`)
    .join(" · ");
}

async function refreshPreview(node) {
  if (planRouteMissing || !wantsPreview(node)) {
    node.distorchPreviewQuery = null; // an answer still on its way is stale
    node.distorchPreview = null;
    showPreviewElement(node);
    redrawGraph();
    return;
  }
  const query = planQuery(node);
  if (!query.has("file")) return;
  const asked = query.toString();
  node.distorchPreviewQuery = asked;
  let response;
  try {
    response = await api.fetchApi(`/distorch/plan?${asked}`, { cache: "no-store" });
  } catch {
    return; // server gone: the next change tries again
  }
  if (node.distorchPreviewQuery !== asked) return; // a newer request is under way
  if (response.status === 404 || response.status === 405) {
    planRouteMissing = true; // this server has no placement preview
    node.distorchPreview = null;
  } else {
    const body = await response.json().catch(() => ({}));
    node.distorchPreview = response.ok
      ? { text: [`split: ${describePlan(body)}`, body.why, body.note].filter(Boolean).join("\n"), error: false }
      : { text: body.error ?? `GET /distorch/plan answered ${response.status}`, error: true };
  }
  showPreviewElement(node);
  redrawGraph();
}

function vueNodesOn() {
  try {
    return Boolean(app.extensionManager?.setting?.get("Comfy.VueNodes.Enabled"));
  } catch {
    return false;
  }
}

function addPreviewElement(node) {
  if (typeof node.addDOMWidget !== "function") return;
  const element = document.createElement("div");
  element.className = "distorch-split-preview";
  element.style.cssText = "font: 12px sans-serif; white-space: pre-line; padding: 2px 4px;";
  const preview = node.addDOMWidget(PREVIEW_WIDGET, "distorch-preview", element,
    { serialize: false, hideOnZoom: false, getValue: () => undefined, setValue: () => {} });
  if (preview) preview.serialize = false; // display only: not in the prompt nor the saved workflow
  node.distorchPreviewElement = element;
}

function showPreviewElement(node) {
  const element = node.distorchPreviewElement;
  if (!element) return;
  const preview = node.distorchPreview;
  element.textContent = preview?.text ?? "";
  element.style.color = preview?.error ? PREVIEW_COLOURS.error : PREVIEW_COLOURS.ok;
}

function drawPreview(node, ctx) {
  const preview = node.distorchPreview;
  if (!preview || node.flags?.collapsed) return;
  ctx.save();
  ctx.font = "12px sans-serif";
  ctx.fillStyle = preview.error ? PREVIEW_COLOURS.error : PREVIEW_COLOURS.ok;
  const width = Math.max(120, node.size[0]);
  let y = node.size[1] + 16;
  for (const paragraph of preview.text.split("\n")) { // the split, why it differs from the request, the sizes
    let line = "";
    for (const word of paragraph.split(" ")) {
      const next = line ? `${line} ${word}` : word;
      if (ctx.measureText(next).width > width && line) {
        ctx.fillText(line, 0, y);
        line = word;
        y += 14;
      } else {
        line = next;
      }
    }
    if (line) ctx.fillText(line, 0, y);
    y += 14;
  }
  ctx.restore();
}

export function attachAllocationPreview(node) {
  if (!widget(node, "allocation")) return; // placement inputs not on this node (yet)
  let timer = null;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => refreshPreview(node), PREVIEW_DELAY_MS);
  };
  for (const name of [...PLAN_INPUTS, ...Object.keys(FILE_WIDGETS)]) {
    const target = widget(node, name);
    if (target) onWidgetChange(target, schedule);
  }
  if (vueNodesOn()) {
    addPreviewElement(node);
  } else {
    const draw = node.onDrawForeground;
    node.onDrawForeground = function (ctx, ...rest) {
      const result = draw?.call(this, ctx, ...rest);
      drawPreview(this, ctx);
      return result;
    };
  }
  node.distorchRefreshPreview = () => refreshPreview(node);
  schedule();
}
