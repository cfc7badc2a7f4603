// Graph helpers for the workflow actions (convert_multigpu.js, fix_devices.js), through the
// frontend's public graph API only: the root graph's nodes and every subgraph definition's nodes
// (a node inside a subgraph is not in the root graph's node list), links read with getLink and
// made with connect (a subgraph's input / output slots have their own connect).
import { app } from "../../scripts/app.js";

export function rootGraph() {
  return app.rootGraph ?? app.graph;
}

/** Every node of the open workflow: the root graph's and each subgraph definition's. */
export function allNodes(root = rootGraph()) {
  if (!root) return [];
  const nodes = [...(root.nodes ?? [])];
  for (const subgraph of root.subgraphs?.values?.() ?? []) nodes.push(...(subgraph.nodes ?? []));
  return nodes;
}

/** "Load Diffusion Model (DisTorch) #4", with the subgraph's name for a node inside one. */
export function nodeLabel(node) {
  const graph = node.graph;
  const where = graph && graph !== graph.rootGraph && graph.name ? ` in subgraph "${graph.name}"` : "";
  return `${node.title ?? node.type} #${node.id}${where}`;
}

export function widgetValues(node) {
  const values = {};
  for (const widget of node.widgets ?? []) {
    if (widget.name && widget.serialize !== false) values[widget.name] = widget.value;
  }
  return values;
}

export function linkedInputs(node) {
  return new Set((node.inputs ?? []).filter((input) => input.link != null).map((input) => input.name));
}

export function setWidget(node, name, value) {
  const widget = node.widgets?.find((w) => w.name === name);
  if (!widget) return false;
  widget.value = value;
  widget.callback?.(value, app.canvas, node);
  // A FLOAT widget's callback rounds to the input's step (0.031 -> 0.03 with step 0.01): the value
  // is kept as it was (the server takes any float in range), as loading a saved workflow does.
  if (widget.value !== value) widget.value = value;
  return true;
}

/**
 * Run `edit` as one change of the open workflow: the frontend's change tracker records one undo
 * step for everything it does (it listens for the canvas's before-/after-change events).
 */
export function asOneChange(edit) {
  const canvas = app.canvas;
  canvas?.emitBeforeChange?.();
  try {
    return edit();
  } finally {
    canvas?.emitAfterChange?.();
    canvas?.setDirty?.(true, true);
  }
}

function linkEnds(graph, node) {
  const incoming = [];
  for (const input of node.inputs ?? []) {
    const link = input.link != null ? graph.getLink(input.link) : null;
    if (link) incoming.push({ name: input.name, originId: link.origin_id, originSlot: link.origin_slot, via: link.parentId });
  }
  const outgoing = [];
  (node.outputs ?? []).forEach((output, slot) => {
    for (const id of output.links ?? []) {
      const link = graph.getLink(id);
      if (link) outgoing.push({ slot, targetId: link.target_id, targetSlot: link.target_slot, via: link.parentId });
    }
  });
  return { incoming, outgoing };
}

function connectInto(graph, end, node, inputName) {
  const index = node.inputs?.findIndex((input) => input.name === inputName) ?? -1;
  if (index < 0) return false;
  if (graph.inputNode && end.originId === graph.inputNode.id) {
    return Boolean(graph.inputNode.slots[end.originSlot]?.connect(node.inputs[index], node, end.via));
  }
  return Boolean(graph.getNodeById(end.originId)?.connect(end.originSlot, node, index, end.via));
}

function connectFrom(graph, end, node) {
  if (graph.outputNode && end.targetId === graph.outputNode.id) {
    return Boolean(graph.outputNode.slots[end.targetSlot]?.connect(node.outputs[end.slot], node, end.via));
  }
  const target = graph.getNodeById(end.targetId);
  return Boolean(target && node.connect(end.slot, target, end.targetSlot, end.via));
}

/**
 * Replace `old` with a new node of `type` in the same graph: same id, position, size (grown
 * where the new node needs more), mode,
 * colours, flags (and title, where the user gave it one); widget values set by name; each link
 * into input X reconnected to the inputs `inputs[X]` names, each link out of output slot N to the
 * same target from slot N. Returns { node, lost } (links that found no place: none, when the
 * mapping is right).
 */
export function replaceNode(old, type, values, inputs) {
  const graph = old.graph;
  const { incoming, outgoing } = linkEnds(graph, old);
  const { id, mode, color, bgcolor } = old;
  const pos = [...old.pos];
  const size = [...old.size];
  const flags = { ...(old.flags ?? {}) };
  const ownTitle = old.constructor?.title && old.title !== old.constructor.title ? old.title : null;

  const node = LiteGraph.createNode(type);
  if (!node) throw new Error(`the frontend cannot create a ${type} node (is the pack's server side loaded?)`);
  graph.remove(old);
  node.id = id;
  node.pos = pos;
  graph.add(node);
  // The saved size, grown where the DisTorch loader needs more room for its extra widgets.
  const needed = node.computeSize?.() ?? size;
  node.setSize?.([Math.max(size[0], needed[0]), Math.max(size[1], needed[1])]);
  node.mode = mode;
  node.flags = { ...(node.flags ?? {}), ...flags };
  if (color) node.color = color;
  if (bgcolor) node.bgcolor = bgcolor;
  if (ownTitle) node.title = ownTitle;
  for (const [name, value] of Object.entries(values)) setWidget(node, name, value);

  const lost = [];
  for (const end of incoming) {
    for (const name of inputs[end.name] ?? []) {
      if (!connectInto(graph, end, node, name)) lost.push(`${end.name} -> ${name}`);
    }
  }
  for (const end of outgoing) {
    if (!connectFrom(graph, end, node)) lost.push(`output ${end.slot}`);
  }
  return { node, lost };
}

export async function confirmChanges({ title, message, items, hint }) {
  const dialog = app.extensionManager?.dialog;
  if (dialog?.confirm) {
    return (await dialog.confirm({ title, message, type: "default", itemList: items, hint })) === true;
  }
  return window.confirm([message, ...items].join("\n")); // a frontend without the dialog service
}

export function toast(severity, summary, detail) {
  const toasts = app.extensionManager?.toast;
  if (toasts) toasts.add({ severity, summary, detail, life: 8000 });
  else console.info(`${summary}: ${detail}`);
}
