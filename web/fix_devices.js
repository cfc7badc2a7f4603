// "Move DisTorch nodes to devices this machine has": a workflow saved on another machine may name
// devices this one lacks (cuda:1 on a one-GPU box); the server refuses such a prompt. This finds
// every pack node (DisTorch* and the MultiGPU-compatible nodes, subgraphs included) whose device
// dropdown holds a value its list does not offer, shows the user each change and applies them as
// one undo step. Offered once when a workflow is loaded, and on demand from the canvas menu.
import { MULTIGPU_TYPES } from "./multigpu_map.js";
import { allNodes, asOneChange, confirmChanges, nodeLabel, rootGraph, setWidget, toast } from "./graph_edit.js";

export const FIX_LABEL = "Move DisTorch nodes to devices this machine has";
const TITLE = "Devices this machine lacks";
const DEVICE_WIDGET = /(^|_)device$/; // device, compute_device, donor_device, clip_device, unet_compute_device, ...
const offered = new Set(); // workflows (graph id + what was missing) already asked about on load

export function isPackNode(node) {
  const type = node.comfyClass ?? node.type ?? "";
  return type.startsWith("DisTorch") || MULTIGPU_TYPES.has(type);
}

function choices(widget) {
  const values = widget.options?.values;
  return typeof values === "function" ? values() : values;
}

/**
 * The device that replaces a missing one, from the widget's own list.
 * - Donor devices -> cpu: every machine has RAM, and weights parked in RAM ("virtual VRAM") still
 *   let the split run; another GPU as donor could be the compute device itself on this machine.
 * - Compute devices -> `default` (the DisTorch loaders' own default: the device ComfyUI would pick,
 *   which follows --cuda-device and this machine's setup) rather than the first listed GPU, which
 *   would pin the node to one card. The MultiGPU-compatible nodes list no `default`: they get
 *   their list's own default, the first GPU else cpu (nodes/multigpu.py default_device).
 */
export function replacementFor(name, listed) {
  if (name.endsWith("donor_device") && listed.includes("cpu")) return "cpu";
  if (listed.includes("default")) return "default";
  return listed.find((device) => device !== "cpu") ?? listed[0];
}

/** [{node, name, from, to, label}] for every device widget of a pack node whose value is not listed. */
export function missingDeviceChanges(nodes = allNodes()) {
  const changes = [];
  for (const node of nodes) {
    if (!isPackNode(node)) continue;
    for (const widget of node.widgets ?? []) {
      if (!DEVICE_WIDGET.test(widget.name ?? "") || widget.type !== "combo") continue;
      const listed = choices(widget);
      if (!Array.isArray(listed) || !listed.length || listed.includes(widget.value)) continue;
      const to = replacementFor(widget.name, listed);
      changes.push({ node, name: widget.name, from: widget.value, to,
        label: `${nodeLabel(node)}: ${widget.name} ${widget.value} -> ${to}` });
    }
  }
  return changes;
}

/**
 * Show the changes and apply them when the user agrees. quietWhenNone: no toast when nothing is
 * missing; onLoad: ask at most once per loaded workflow (undo / redo and tab switches reload it).
 * Resolves to the number of inputs changed.
 */
export async function offerDeviceFix({ quietWhenNone = false, onLoad = false } = {}) {
  const changes = missingDeviceChanges();
  if (!changes.length) {
    if (!quietWhenNone) toast("info", TITLE, "Every device the pack's nodes name is on this machine.");
    return 0;
  }
  if (onLoad) {
    const key = `${rootGraph()?.id ?? ""}|${changes.map((change) => change.label).join("|")}`;
    if (offered.has(key)) return 0;
    offered.add(key);
  }
  const count = changes.length;
  const ok = await confirmChanges({
    title: TITLE,
    message: `${count} device input${count === 1 ? "" : "s"} name${count === 1 ? "s" : ""} a device this machine `
      + "does not have; ComfyUI refuses the workflow until they are changed. Move them?",
    items: changes.map((change) => change.label),
    hint: `One undo (Ctrl+Z) puts them back. Also in the canvas menu: "${FIX_LABEL}".`,
  });
  if (!ok) return 0;
  let applied = 0;
  asOneChange(() => {
    for (const change of changes) {
      const widget = change.node.widgets?.find((w) => w.name === change.name);
      if (widget?.value !== change.from) continue; // changed meanwhile
      if (setWidget(change.node, change.name, change.to)) applied += 1;
    }
  });
  toast("success", TITLE, `${applied} device input${applied === 1 ? "" : "s"} moved to devices this machine has.`);
  return applied;
}

/** For the extension's afterConfigureGraph: ask after the load has finished, not inside it. */
export function offerDeviceFixAfterLoad() {
  setTimeout(() => {
    offerDeviceFix({ quietWhenNone: true, onLoad: true }).catch((error) =>
      console.warn("DisTorch: checking the workflow's devices failed:", error));
  }, 0);
}
