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

// "cuda:0 · 3.2 GiB free" for a device dropdown; the plain name where nothing is known.
export function deviceOptionLabel(value, document) {
  const name = value == null ? "" : String(value);
  const device = document?.devices?.find((d) => d.device === name);
  return device ? `${name} · ${formatBytes(device.free)} free` : name;
}
