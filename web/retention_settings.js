// Retention budget settings ("DisTorch > Retention" in ComfyUI's settings dialog): how many kept
// loads and how much RAM the pack may hold beyond ComfyUI's node cache. The server owns the budget
// (POST /distorch/retention); environment variables set on the server win over the dialog.
import { api } from "../../scripts/api.js";

export const SETTING_MAX_MODELS = "DisTorch.Retention.MaxModels";
export const SETTING_RAM_PERCENT = "DisTorch.Retention.RamPercent";
const DEFAULT_MAX_MODELS = 6;
const DEFAULT_RAM_PERCENT = 50;

async function postBudget(body) {
  const response = await api.fetchApi("/distorch/retention", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    console.warn(`DisTorch: the retention budget was not changed: ${answer.error ?? response.status}`);
  }
}

export function retentionSettings(isReady) {
  const sync = (key) => (value) => {
    if (isReady() && value !== undefined && value !== null) postBudget({ [key]: Number(value) });
  };
  return [
    {
      id: SETTING_MAX_MODELS,
      category: ["DisTorch", "Retention", "Max kept loads"],
      name: "Keep at most this many loads (keep_loaded models and cached modes)",
      tooltip: "Least recently used first out. 0 keeps nothing beyond ComfyUI's own cache. " +
        "DISTORCH_RETAIN_MAX_MODELS on the server wins over this.",
      type: "number",
      defaultValue: DEFAULT_MAX_MODELS,
      attrs: { min: 0, max: 1000, step: 1 },
      onChange: sync("max_models"),
    },
    {
      id: SETTING_RAM_PERCENT,
      category: ["DisTorch", "Retention", "Max RAM share"],
      name: "Kept loads may hold at most this share of system RAM (%)",
      tooltip: "Least recently used first out. DISTORCH_RETAIN_RAM_PERCENT on the server wins over this.",
      type: "number",
      defaultValue: DEFAULT_RAM_PERCENT,
      attrs: { min: 0, max: 100, step: 5 },
      onChange: sync("ram_percent"),
    },
  ];
}

// At start: a budget the user chose in the dialog reaches a freshly started server.
export async function pushStoredBudget(get) {
  const response = await api.fetchApi("/distorch/retention");
  if (!response.ok) return;
  const current = await response.json();
  if (current.budget?.source === "environment") return;
  const wanted = { max_models: Number(get(SETTING_MAX_MODELS, DEFAULT_MAX_MODELS)),
                   ram_percent: Number(get(SETTING_RAM_PERCENT, DEFAULT_RAM_PERCENT)) };
  if (wanted.max_models !== current.budget.max_models || wanted.ram_percent !== current.budget.ram_percent) {
    await postBudget(wanted);
  }
}
