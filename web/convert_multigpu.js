// "Convert MultiGPU nodes to DisTorch nodes" (canvas menu): every ComfyUI-MultiGPU node of the
// open workflow (subgraphs included) that has a DisTorch loader becomes that loader, in place: same
// id, position and size, its values mapped as multigpu_map.js says, every link kept on the same
// slots. The others stay (they keep running as MultiGPU-compatible nodes). The user sees the list
// first; the whole conversion is one undo step.
import { MULTIGPU_TYPES, planConversion } from "./multigpu_map.js";
import {
  allNodes, asOneChange, confirmChanges, linkedInputs, nodeLabel, replaceNode, rootGraph, toast, widgetValues,
} from "./graph_edit.js";
import { offerDeviceFix } from "./fix_devices.js";

export const CONVERT_LABEL = "Convert MultiGPU nodes to DisTorch nodes";
const TITLE = "Convert MultiGPU nodes";

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/** What the conversion would do now: { convert: [{node, type, plan}], keep: [{node, type, plan}] }. */
export function conversionPlan(nodes = allNodes()) {
  const convert = [];
  const keep = [];
  for (const node of nodes) {
    const type = node.comfyClass ?? node.type;
    if (!MULTIGPU_TYPES.has(type)) continue;
    const plan = planConversion(type, widgetValues(node), linkedInputs(node));
    (plan.target ? convert : keep).push({ node, type, plan });
  }
  return { convert, keep };
}

export function describePlan({ convert, keep }) {
  const message = `${plural(convert.length, "node")} converted, ${keep.length} kept (no DisTorch equivalent: `
    + "they keep running as MultiGPU-compatible nodes).";
  const items = [
    ...convert.map(({ node, type, plan }) => `${nodeLabel(node)}: ${type} -> ${plan.target}`),
    ...keep.map(({ node, type, plan }) => `${nodeLabel(node)}: ${type} kept, ${plan.reason}`),
  ];
  return { message, items };
}

function stillInWorkflow(node) {
  const root = rootGraph();
  return Boolean(node.graph && (node.graph === root || node.graph.rootGraph === root) && node.graph.getNodeById(node.id) === node);
}

/** The menu action. Resolves to the number of nodes converted (0 when nothing was, or the user said no). */
export async function convertMultiGPUNodes() {
  const plan = conversionPlan();
  if (!plan.convert.length) {
    toast("info", TITLE, plan.keep.length
      ? `None of the ${plural(plan.keep.length, "ComfyUI-MultiGPU node")} here has a DisTorch equivalent; they keep running as they are.`
      : "This workflow has no ComfyUI-MultiGPU nodes.");
    return 0;
  }
  const { message, items } = describePlan(plan);
  const ok = await confirmChanges({ title: TITLE, message, items,
    hint: "One undo (Ctrl+Z) brings the MultiGPU nodes back." });
  if (!ok) return 0;

  const lost = [];
  let converted = 0;
  asOneChange(() => {
    for (const { node, plan: step } of plan.convert) {
      if (!stillInWorkflow(node)) continue; // the workflow changed while the dialog was open
      const result = replaceNode(node, step.target, step.values, step.inputs);
      converted += 1;
      lost.push(...result.lost.map((what) => `${nodeLabel(result.node)}: ${what}`));
    }
  });
  if (lost.length) {
    toast("warn", TITLE, `Links that could not be reconnected: ${lost.join("; ")}. Ctrl+Z undoes the conversion.`);
  } else {
    toast("success", TITLE, `${plural(converted, "node")} converted to DisTorch loaders. Ctrl+Z undoes it.`);
  }
  await offerDeviceFix({ quietWhenNone: true }); // a converted node may name a device this machine lacks
  return converted;
}
