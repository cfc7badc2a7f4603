// The panel's buttons. "Unload flagged models" sends ComfyUI-Manager's own request
// (POST /free); "Free everything" sends POST /distorch/free {"force": true}; a model row's
// "Unload" sends POST /distorch/free {"model": id} (ComfyUI's /free is all or nothing). Each asks
// first and ends with a toast saying what was freed.
import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";
import { fetchMemory } from "./memory_store.js";
import { formatBytes, modelPart } from "./format.js";

const MANAGER_FREE_BODY = { unload_models: true, free_memory: true };
const FLOW_TIMEOUT_MS = 60000;
const STEP_MS = 250;

function toast(severity, summary, detail) {
  app.extensionManager.toast.add({ severity, summary, detail, life: 8000 });
}

async function confirm(title, message) {
  const answer = await app.extensionManager.dialog.confirm({ title, message, type: "default" });
  return answer === true;
}

async function postJson(path, body) {
  const response = await api.fetchApi(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  return { status: response.status, body: payload };
}

// Bytes given back per device: used before minus used after (negative changes are not shown).
export function freedBetween(before, after) {
  const usedAfter = Object.fromEntries(after.devices.map((d) => [d.device, d.used]));
  return before.devices
    .map((d) => [d.device, d.used - (usedAfter[d.device] ?? d.used)])
    .filter(([, bytes]) => bytes > 0);
}

function freedText(pairs) {
  return pairs.length ? pairs.map(([device, bytes]) => `${device} ${formatBytes(bytes)}`).join(", ") : "no measurable memory";
}

function sameFlow(a, b) {
  return (a?.at ?? null) === (b?.at ?? null);
}

async function waitForUnloadFlow(previous) {
  const started = Date.now();
  while (Date.now() - started < FLOW_TIMEOUT_MS) {
    await new Promise((resolve) => setTimeout(resolve, STEP_MS));
    const document = await fetchMemory();
    const flow = document.last_unload;
    if (flow && !sameFlow(flow, previous) && flow.completed_at) return document;
  }
  throw new Error(`ComfyUI did not run the unload within ${FLOW_TIMEOUT_MS / 1000} s (a prompt may be running)`);
}

export async function unloadFlagged() {
  const before = await fetchMemory();
  const flagged = before.models.filter((m) => m.flagged).map((m) => m.name);
  let message = `Unload the models flagged for ejection (keep_loaded off): ${flagged.join(", ")}. Models with keep_loaded on stay loaded.`;
  if (!flagged.length) {
    message = before.models.some((m) => m.pack_managed)
      ? "No model is flagged (every DisTorch model has keep_loaded on): nothing will be unloaded."
      : "No DisTorch model is loaded: this runs ComfyUI's own unload (as ComfyUI-Manager's button does).";
  }
  if (!(await confirm("Unload flagged models", message))) return null;
  try {
    const answer = await postJson("/free", MANAGER_FREE_BODY);
    if (answer.status !== 200) throw new Error(`POST /free answered ${answer.status}`);
    const after = await waitForUnloadFlow(before.last_unload);
    const flow = after.last_unload;
    const unloaded = flow.unloaded ?? [];
    const summary = unloaded.length ? `Unloaded ${unloaded.length} model(s)` : "Nothing unloaded";
    const kept = flow.kept?.length ? ` Kept: ${flow.kept.join(", ")}.` : "";
    toast(unloaded.length ? "success" : "info", summary,
      `${unloaded.join(", ") || "no flagged model"}. Freed ${freedText(freedBetween(before, after))}.${kept}`);
    return after;
  } catch (error) {
    toast("error", "Unload flagged models failed", String(error?.message ?? error));
    return null;
  }
}

// What POST /distorch/free gave back, for a toast: per device, then the ComfyUI process's RSS.
function freedByRoute(body) {
  const freed = Object.entries(body.freed ?? {}).filter(([key, bytes]) => key !== "process_rss" && bytes > 0);
  const rss = body.freed?.process_rss > 0 ? `; ComfyUI's RAM ${formatBytes(body.freed.process_rss)}` : "";
  return `${freedText(freed)}${rss}`;
}

function modelText(model) {
  return `${model.name} (${modelPart(model)})`;
}

export async function confirmModelUnload(model) {
  const kept = model.keep_loaded ? " Its keep_loaded is on: this unloads it anyway and stops keeping it." : "";
  const message = `Unload ${modelText(model)} from every device and let its RAM go.${kept} The other models stay `
    + "loaded; ComfyUI's node cache is reset, so the next prompt runs its loaders again.";
  return confirm("Unload model", message);
}

// Sends the request (after confirmModelUnload) and shows the outcome in a toast.
export async function unloadModel(model) {
  const label = modelText(model);
  try {
    const answer = await postJson("/distorch/free", { model: model.id });
    const body = answer.body ?? {};
    if (answer.status === 202) {
      toast("info", `Unloading ${label} is queued`, body.message ?? "it runs when the current prompt finishes");
    } else if (answer.status !== 200) {
      throw new Error(body.error ?? `POST /distorch/free answered ${answer.status}`);
    } else {
      const flow = body.last_unload ?? {};
      if (flow.failed?.length) throw new Error(`ComfyUI could not unload ${flow.failed.join(", ")}: see the server log`);
      const gone = flow.unloaded ?? [];
      toast(gone.length ? "success" : "info", gone.length ? `Unloaded ${label}` : `${label} was already unloaded`,
        `Freed ${freedByRoute(body)}.`);
    }
    await fetchMemory();
    return body;
  } catch (error) {
    toast("error", `Unloading ${label} failed`, String(error?.message ?? error));
    return null;
  }
}

export async function freeEverything() {
  const message = "Unload every model on every device, including those with keep_loaded on, and reset ComfyUI's node cache.";
  if (!(await confirm("Free everything", message))) return null;
  try {
    const answer = await postJson("/distorch/free", { force: true });
    const body = answer.body ?? {};
    if (answer.status === 202) {
      toast("info", "Free everything queued", body.message ?? "it runs when the current prompt finishes");
    } else if (answer.status !== 200) {
      throw new Error(body.error ?? `POST /distorch/free answered ${answer.status}`);
    } else {
      const unloaded = body.last_unload?.unloaded ?? [];
      toast("success", `Freed everything: ${unloaded.length} model(s) unloaded`,
        `${unloaded.join(", ") || "nothing was loaded"}. Freed ${freedByRoute(body)}.`);
    }
    await fetchMemory();
    return body;
  } catch (error) {
    toast("error", "Free everything failed", String(error?.message ?? error));
    return null;
  }
}
