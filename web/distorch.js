// comfyui-distorch web extension: registration only. The "DisTorch memory" sidebar tab, the
// settings that control it, and the additions to DisTorch nodes (see node_widgets.js).
import { app } from "../../scripts/app.js";
import { currentMemory, fetchMemory, onMemory, subscribeMemoryEvents } from "./memory_store.js";
import { confirmModelUnload, freeEverything, unloadFlagged, unloadModel } from "./memory_actions.js";
import { buildPanel, renderMemory } from "./memory_panel.js";
import { LOADER_CLASSES, attachAllocationPreview, labelDeviceWidgets, redrawGraph } from "./node_widgets.js";
import { throttle } from "./throttle.js";
import { mountQueueSection } from "./queue_section.js";
import { mountServersSection } from "./servers_section.js";
import { pushStoredBudget, retentionSettings } from "./retention_settings.js";
import { CONVERT_LABEL, convertMultiGPUNodes } from "./convert_multigpu.js";
import { FIX_LABEL, offerDeviceFix, offerDeviceFixAfterLoad } from "./fix_devices.js";

const TAB_ID = "distorch-memory";
const SETTING_ENABLED = "DisTorch.MemoryPanel.Enabled";
const SETTING_CAP = "DisTorch.MemoryPanel.RefreshCapMs";
const DEFAULT_CAP_MS = 500;

let ready = false;
let stopPanel = null;

function setting(id, fallback) {
  const value = app.extensionManager?.setting?.get(id);
  return value ?? fallback;
}

function mountPanel(root) {
  const body = buildPanel(root, { onUnloadFlagged: unloadFlagged, onFreeEverything: freeEverything });
  // Ids being unloaded by their row's button: the row keeps a disabled button across redraws.
  const pending = new Set();
  const redraw = () => {
    const latest = currentMemory();
    if (latest) renderMemory(body, latest, { onUnloadModel, pending });
  };
  const onUnloadModel = async (model) => {
    if (!(await confirmModelUnload(model))) return;
    pending.add(model.id);
    redraw();
    try {
      await unloadModel(model);
    } finally {
      pending.delete(model.id);
      redraw();
    }
  };
  const draw = throttle((report) => renderMemory(body, report, { onUnloadModel, pending }),
    () => setting(SETTING_CAP, DEFAULT_CAP_MS));
  const stop = onMemory(draw);
  const queue = document.createElement("section");
  queue.className = "distorch-queue";
  body.before(queue); // between the buttons and the memory picture
  const stopQueue = mountQueueSection(queue);
  const servers = document.createElement("section");
  servers.className = "distorch-servers";
  body.after(servers); // below the memory picture: other machines
  const stopServers = mountServersSection(servers);
  stopPanel = () => {
    stop();
    stopQueue();
    stopServers();
    draw.cancel();
  };
  fetchMemory().catch((error) => {
    body.textContent = `The memory report is not available: ${error.message}`;
  });
}

const memoryTab = {
  id: TAB_ID,
  icon: "pi pi-server",
  title: "DisTorch memory",
  tooltip: "DisTorch memory: devices, loaded models, unload buttons",
  label: "Memory",
  type: "custom",
  render: mountPanel,
  destroy: () => {
    stopPanel?.();
    stopPanel = null;
  },
};

function showTab(enabled) {
  const manager = app.extensionManager;
  const present = manager.getSidebarTabs?.().some((tab) => tab.id === TAB_ID);
  if (enabled && !present) manager.registerSidebarTab(memoryTab);
  if (!enabled && present) {
    const sidebar = manager.sidebarTab;
    if (sidebar?.activeSidebarTabId === TAB_ID) sidebar.toggleSidebarTab(TAB_ID); // close it first
    manager.unregisterSidebarTab(TAB_ID);
  }
}

app.registerExtension({
  name: "comfyui-distorch.memory",
  settings: [
    {
      id: SETTING_ENABLED,
      category: ["DisTorch", "Memory panel", "Enabled"],
      name: "Show the DisTorch memory panel in the sidebar",
      type: "boolean",
      defaultValue: true,
      onChange: (value) => {
        if (ready) showTab(value !== false);
      },
    },
    {
      id: SETTING_CAP,
      category: ["DisTorch", "Memory panel", "Refresh cap"],
      name: "Redraw the memory panel at most every (ms)",
      tooltip: "The panel redraws when the server pushes a new memory picture (no polling); this caps how often.",
      type: "number",
      defaultValue: DEFAULT_CAP_MS,
      attrs: { min: 0, max: 10000, step: 100 },
    },
    ...retentionSettings(() => ready),
  ],
  async setup() {
    ready = true;
    subscribeMemoryEvents();
    showTab(setting(SETTING_ENABLED, true) !== false);
    onMemory(throttle(redrawGraph, () => setting(SETTING_CAP, DEFAULT_CAP_MS)));
    fetchMemory().catch((error) => console.warn("DisTorch: GET /internal/memory failed:", error));
    pushStoredBudget(setting).catch((error) => console.warn("DisTorch: retention budget not synced:", error));
  },
  nodeCreated(node) {
    if (!LOADER_CLASSES.has(node.comfyClass)) return;
    labelDeviceWidgets(node);
    attachAllocationPreview(node);
  },
});

// Workflow actions: canvas menu entries (and the same as commands, which keybindings can use), and
// the missing-device check after a workflow is loaded.
function reportFailure(action) {
  return (error) => {
    console.error(`DisTorch: ${action} failed:`, error);
    app.extensionManager?.toast?.add({ severity: "error", summary: "DisTorch", detail: `${action} failed: ${error.message}` });
  };
}
const runConvert = () => convertMultiGPUNodes().catch(reportFailure(CONVERT_LABEL));
const runDeviceFix = () => offerDeviceFix().catch(reportFailure(FIX_LABEL));

app.registerExtension({
  name: "comfyui-distorch.workflow-actions",
  commands: [
    { id: "DisTorch.ConvertMultiGPUNodes", label: CONVERT_LABEL, icon: "pi pi-sync", function: runConvert },
    { id: "DisTorch.MoveToDevicesThisMachineHas", label: FIX_LABEL, icon: "pi pi-server", function: runDeviceFix },
  ],
  getCanvasMenuItems() {
    return [null, { content: CONVERT_LABEL, callback: runConvert }, { content: FIX_LABEL, callback: runDeviceFix }];
  },
  afterConfigureGraph() {
    offerDeviceFixAfterLoad();
  },
});
