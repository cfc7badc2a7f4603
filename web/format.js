// Pure helpers shared by the DisTorch web extension: sizes, colours, labels.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(bytes) {
  let value = Math.max(0, Number(bytes) || 0);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${UNITS[unit]}`;
}

// One colour per model id, the same on every device bar (hue from a string hash).
export function modelColour(id) {
  let hash = 0;
  for (const char of String(id)) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360}, 65%, 55%)`;
}

export const STATE_COLOURS = {
  LOW: "#3fa34d",
  MODERATE: "#d6b11f",
  HIGH: "#e07b24",
  CRITICAL: "#d9363e",
  UNKNOWN: "#8a8a8a",
};

export function stateColour(state) {
  return STATE_COLOURS[state] ?? STATE_COLOURS.UNKNOWN;
}

// The part of a pipeline a model is, in plain words, from the report's `component` (DisTorch
// loaders say it) or else its class (ComfyUI's own loaders: BaseModel, SD1ClipModel, AutoencoderKL...).
const COMPONENT_WORDS = {
  unet: "diffusion model",
  clip: "text encoder",
  vae: "VAE",
  controlnet: "ControlNet",
  clip_vision: "CLIP vision",
};
const CLASS_WORDS = [
  [/clip_?vision|visionmodel/i, "CLIP vision"],
  [/controlnet|controllora|t2iadapter/i, "ControlNet"],
  [/autoencoder|vae|taesd/i, "VAE"],
  [/clipmodel|temodel|t5|clip$|textencoder/i, "text encoder"],
  [/^basemodel$|^sdxl|^sd\d|^sd_|^flux|^wan\d|^hunyuan|^ltxv|^stablecascade|^auraflow|^pixart|^chroma|^qwenimage|^hidream|^lumina\d/i,
    "diffusion model"],
];
const CHECKPOINT_LOADERS = /checkpoint/i;

export function modelPart(model) {
  const fromComponent = COMPONENT_WORDS[model?.component];
  if (fromComponent) return fromComponent;
  const found = CLASS_WORDS.find(([pattern]) => pattern.test(String(model?.class ?? "")));
  if (found) return found[1];
  return CHECKPOINT_LOADERS.test(String(model?.loader ?? "")) ? "checkpoint part" : "model";
}

// Who loaded it: the node type, or ComfyUI itself for models the pack did not load.
export function loaderLabel(model) {
  return !model?.loader || model.loader === "core" ? "ComfyUI's own loader" : model.loader;
}

// A size that never breaks between the number and its unit ("52.0 MiB" stays on one line).
export function unbreakableBytes(bytes) {
  return formatBytes(bytes).replace(" ", "\u00a0");
}

// How ComfyUI manages GPU memory, in words (ComfyUI's VRAMState names are in the report).
const VRAM_MODE_WORDS = {
  NO_VRAM: ["No-VRAM mode (--novram)", "weights stay in RAM and stream to the GPU"],
  LOW_VRAM: ["Low-VRAM mode (--lowvram)", "models are split between VRAM and RAM"],
  NORMAL_VRAM: ["Normal VRAM mode", "models move onto the GPU when used", "and off it when others need the room"],
  HIGH_VRAM: ["High-VRAM mode (--highvram)", "models stay in VRAM"],
  SHARED: ["Shared memory", "the GPU uses system RAM"],
};

// The phrases of the memory-mode line: short ones, so a narrow panel wraps between them.
export function memoryModePhrases(report) {
  const accelerators = (report?.devices ?? []).filter((d) => d.device !== "cpu");
  const state = report?.offload?.vram_state;
  if (!accelerators.length) return ["CPU only:", "no GPU memory to manage"];
  if (state === "DISABLED") return ["CPU only (ComfyUI runs with --cpu):", "the GPU's memory is not used"];
  const phrases = [...(VRAM_MODE_WORDS[state] ?? [state ? `VRAM mode ${state}` : "VRAM mode unknown"])];
  if (report.offload?.dynamic_vram) phrases.push("DynamicVRAM on");
  return phrases;
}

// "cuda:0 · 3.2 GiB free" for a device dropdown; the plain name where nothing is known.
export function deviceOptionLabel(value, document) {
  const name = value == null ? "" : String(value);
  const device = document?.devices?.find((d) => d.device === name);
  return device ? `${name} · ${formatBytes(device.free)} free` : name;
}
