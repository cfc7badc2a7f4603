// Mode affinity setting ("DisTorch > Queue" in ComfyUI's settings dialog): how many times a queued
// prompt may be passed by later prompts of a mode that is already loaded (0 = first come, first
// served). The server owns the value (POST /distorch/queue/affinity); DISTORCH_MODE_AFFINITY set on
// the server wins over the dialog.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

export const SETTING_MAX_PASSES = "DisTorch.Queue.ModeAffinity";
const DEFAULT_MAX_PASSES = 2;
let ready = false;

async function postMaxPasses(value) {
  const response = await api.fetchApi("/distorch/queue/affinity", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ max_passes: value }),
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    console.warn(`DisTorch: mode affinity was not changed: ${answer.error ?? response.status}`);
  }
}

// At start: a choice made in the dialog reaches a freshly started server.
async function pushStoredMaxPasses() {
  const response = await api.fetchApi("/distorch/queue");
  if (!response.ok) return; // an older server, or priorities off there
  const { affinity } = await response.json();
  if (affinity.source === "environment") return;
  const wanted = Number(app.extensionManager?.setting?.get(SETTING_MAX_PASSES) ?? DEFAULT_MAX_PASSES);
  if (wanted !== affinity.max_passes) await postMaxPasses(wanted);
}

app.registerExtension({
  name: "comfyui-distorch.queue",
  settings: [
    {
      id: SETTING_MAX_PASSES,
      category: ["DisTorch", "Queue", "Mode affinity"],
      name: "Mode affinity: a queued prompt may be passed at most this many times (0 = off)",
      tooltip: "When the next prompt needs a mode that is not loaded, a later prompt of the same priority " +
        "whose mode is loaded may run first, saving a model load; no prompt is passed more often than this. " +
        "Prompts without a mode, or queued to the front, are never moved. " +
        "DISTORCH_MODE_AFFINITY on the server wins over this.",
      type: "number",
      defaultValue: DEFAULT_MAX_PASSES,
      attrs: { min: 0, max: 100, step: 1 },
      onChange: (value) => {
        if (ready && value !== undefined && value !== null) postMaxPasses(Number(value));
      },
    },
  ],
  async setup() {
    ready = true;
    pushStoredMaxPasses().catch((error) => console.warn("DisTorch: mode affinity not synced:", error));
  },
});
