// comfyui-distorch: keep DisTorchModeSwitch dropdowns in step with modes.yaml and show the
// pack's mode warnings / reload errors as toasts. Listens to the `distorch.modes` websocket event.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE = "DisTorchModeSwitch";
const NO_MODES = "(no modes)";

// One file save can be reported twice (the file watcher and an explicit reload): the same text
// within this window is shown once.
const REPEAT_WINDOW_MS = 5000;
const recentToasts = new Map();

function toast(severity, detail) {
  const now = Date.now();
  for (const [text, at] of recentToasts) if (now - at > REPEAT_WINDOW_MS) recentToasts.delete(text);
  if (recentToasts.has(detail)) return;
  recentToasts.set(detail, now);
  const toasts = app.extensionManager?.toast;
  if (toasts) toasts.add({ severity, summary: "DisTorch modes", detail, life: 8000 });
  else console.warn(`DisTorch modes: ${detail}`);
}

function refreshDropdowns(names) {
  const values = names.length ? [...names] : [NO_MODES];
  for (const node of app.graph?._nodes ?? []) {
    if (node.comfyClass !== NODE) continue;
    const widget = node.widgets?.find((w) => w.name === "mode");
    if (widget) widget.options.values = values;
  }
  app.graph?.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "distorch.modes",
  setup() {
    api.addEventListener("distorch.modes", ({ detail }) => {
      if (!detail) return;
      if (detail.event === "reload") {
        if (detail.ok) refreshDropdowns(detail.choices ?? detail.modes ?? []);
        else if (detail.errors?.length) {
          const first = detail.errors[0];
          toast("error", `${first.file}:${first.line}:${first.column}: ${first.message} (the modes in force are unchanged)`);
        }
        for (const warning of detail.warnings ?? []) toast("warn", warning.message);
      } else if (detail.event === "warning") {
        for (const message of detail.warnings ?? []) toast("warn", message);
      }
    });
  },
});
