// Which ComfyUI-MultiGPU node types have a DisTorch loader, and how their inputs map onto it.
//
// This table mirrors nodes/multigpu.py (COMPAT_NODES and its PIPELINES: _unet, _clip, _dual_clip,
// _vae, _checkpoint, _checkpoint_advanced): a converted node must load exactly what the
// compatibility node loads. Change both together.
//
// Pure data and functions (no graph, no DOM): `planConversion(type, values, linked)` says what a
// node becomes, or why it stays.

const PLAIN = "plain"; //          + device
const DISTORCH2 = "distorch2"; //  + device, virtual_vram_gb, donor_device, expert_mode_allocations, eject_models
const ADVANCED = "advanced"; //    a device per checkpoint part

// type -> { target, variant, device: ComfyUI-MultiGPU's name of the device input, checkpoint? }
export const DISTORCH_EQUIVALENTS = Object.freeze({
  UNETLoaderMultiGPU: { target: "DisTorchUNETLoader", variant: PLAIN, device: "device" },
  UNETLoaderDisTorch2MultiGPU: { target: "DisTorchUNETLoader", variant: DISTORCH2, device: "compute_device" },
  CLIPLoaderMultiGPU: { target: "DisTorchCLIPLoader", variant: PLAIN, device: "device" },
  CLIPLoaderDisTorch2MultiGPU: { target: "DisTorchCLIPLoader", variant: DISTORCH2, device: "device" },
  DualCLIPLoaderMultiGPU: { target: "DisTorchDualCLIPLoader", variant: PLAIN, device: "device" },
  DualCLIPLoaderDisTorch2MultiGPU: { target: "DisTorchDualCLIPLoader", variant: DISTORCH2, device: "device" },
  VAELoaderMultiGPU: { target: "DisTorchVAELoader", variant: PLAIN, device: "device" },
  // DisTorchVAELoader has no split inputs: converted only when the node asks for no split (see below).
  VAELoaderDisTorch2MultiGPU: { target: "DisTorchVAELoader", variant: DISTORCH2, device: "compute_device", noSplit: true },
  // ComfyUI-MultiGPU's checkpoint device moved the diffusion model and the VAE; the text encoder
  // stayed on the host's text encoder device (nodes/multigpu.py _checkpoint).
  CheckpointLoaderSimpleMultiGPU: { target: "DisTorchCheckpointLoader", variant: PLAIN, device: "device", checkpoint: true },
  CheckpointLoaderSimpleDisTorch2MultiGPU: {
    target: "DisTorchCheckpointLoader", variant: DISTORCH2, device: "compute_device", checkpoint: true },
  CheckpointLoaderAdvancedMultiGPU: { target: "DisTorchCheckpointLoader", variant: ADVANCED, device: "unet_device" },
});

// ComfyUI-MultiGPU node types the pack runs as compatibility nodes only: type -> why.
export const NO_EQUIVALENT = Object.freeze({
  TripleCLIPLoaderMultiGPU: "three text encoders",
  TripleCLIPLoaderDisTorch2MultiGPU: "three text encoders",
  QuadrupleCLIPLoaderMultiGPU: "four text encoders",
  QuadrupleCLIPLoaderDisTorch2MultiGPU: "four text encoders",
  CLIPVisionLoaderMultiGPU: "CLIP vision",
  CLIPVisionLoaderDisTorch2MultiGPU: "CLIP vision",
  ControlNetLoaderMultiGPU: "ControlNet",
  ControlNetLoaderDisTorch2MultiGPU: "ControlNet",
  DiffControlNetLoaderMultiGPU: "ControlNet (diff)",
  DiffControlNetLoaderDisTorch2MultiGPU: "ControlNet (diff)",
  CheckpointLoaderAdvancedDisTorch2MultiGPU: "a split for the text encoder as well as the diffusion model",
});

export const MULTIGPU_TYPES = Object.freeze(new Set([...Object.keys(DISTORCH_EQUIVALENTS), ...Object.keys(NO_EQUIVALENT)]));

// The compatibility nodes' own inputs: everything else on them is the core loader's and keeps its
// name on the DisTorch loader (unet_name, weight_dtype, clip_name, type, vae_name, ckpt_name, ...).
const OWN_INPUTS = new Set(["device", "compute_device", "virtual_vram_gb", "donor_device",
  "expert_mode_allocations", "eject_models", "unet_device", "clip_device", "vae_device"]);

function kept(reason) {
  return { target: null, reason };
}

// A link into an input the DisTorch loader has no place for would be lost: keep the node instead.
function checkedLinks(row, plan, linked) {
  const lost = [...linked].filter((name) => !plan.inputs[name]);
  return lost.length ? kept(`${lost.join(", ")} comes from a link and ${row.target} has no such input`) : plan;
}

/**
 * What a node of ComfyUI-MultiGPU type `type` becomes.
 * values: its widget values by input name; linked: names of its inputs fed by a link.
 * Returns { target, values, inputs } (the DisTorch type, its widget values by name, and for each
 * of the old node's inputs the DisTorch input(s) a link into it goes to), or { target: null, reason }.
 * Outputs keep their slots: each DisTorch loader has its core loader's outputs, as the
 * compatibility node has.
 */
export function planConversion(type, values, linked = new Set()) {
  const row = DISTORCH_EQUIVALENTS[type];
  if (!row) {
    return NO_EQUIVALENT[type] ? kept(`no DisTorch equivalent (${NO_EQUIVALENT[type]})`) : kept("not a ComfyUI-MultiGPU node");
  }
  if (row.variant === DISTORCH2 && linked.has("eject_models")) {
    return kept("eject_models comes from a link (keep_loaded would need its opposite)");
  }
  if (row.noSplit) {
    if (linked.has("virtual_vram_gb") || linked.has("expert_mode_allocations")) {
      return kept("its split comes from a link; DisTorchVAELoader has no split inputs");
    }
    const virtual = Number(values.virtual_vram_gb ?? 0);
    const expert = String(values.expert_mode_allocations ?? "").trim();
    if (virtual > 0 || expert) {
      const asked = expert ? `expert_mode_allocations '${expert}'` : `virtual_vram_gb ${virtual}`;
      return kept(`it splits the VAE (${asked}) and DisTorchVAELoader has no split inputs; set it to 0 to convert`);
    }
  }

  const out = {};
  const inputs = {};
  for (const [name, value] of Object.entries(values)) {
    if (!OWN_INPUTS.has(name)) out[name] = value;
  }
  for (const name of Object.keys(values).concat([...linked])) {
    if (!OWN_INPUTS.has(name)) inputs[name] = [name];
  }

  if (row.variant === ADVANCED) {
    Object.assign(out, { compute_device: values.unet_device, clip_device: values.clip_device,
      vae_device: values.vae_device, keep_loaded: false, virtual_vram_gb: 0, donor_device: "cpu", allocation: "" });
    Object.assign(inputs, { unet_device: ["compute_device"], clip_device: ["clip_device"], vae_device: ["vae_device"] });
    return checkedLinks(row, { target: row.target, values: out, inputs }, linked);
  }

  const device = values[row.device];
  out.compute_device = device;
  inputs[row.device] = ["compute_device"];
  if (row.checkpoint) {
    out.vae_device = device;
    out.clip_device = "default";
    inputs[row.device].push("vae_device");
  }
  if (row.variant === PLAIN) {
    // A node without eject_models keeps nothing, as a core loader (nodes/multigpu.py placement_from).
    out.keep_loaded = false;
    if (row.target !== "DisTorchVAELoader") Object.assign(out, { virtual_vram_gb: 0, donor_device: "cpu", allocation: "" });
    return checkedLinks(row, { target: row.target, values: out, inputs }, linked);
  }
  out.keep_loaded = !values.eject_models;
  if (row.target !== "DisTorchVAELoader") {
    Object.assign(out, { virtual_vram_gb: values.virtual_vram_gb, donor_device: values.donor_device,
      allocation: values.expert_mode_allocations ?? "" });
    Object.assign(inputs, { virtual_vram_gb: ["virtual_vram_gb"], donor_device: ["donor_device"],
      expert_mode_allocations: ["allocation"] });
  }
  return checkedLinks(row, { target: row.target, values: out, inputs }, linked);
}
