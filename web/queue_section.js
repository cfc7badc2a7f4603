// The queue section of the DisTorch memory panel: prompts waiting per priority, what runs now,
// and what mode affinity did (GET /distorch/queue once, then the `distorch.queue` websocket
// event). Hidden on a server without the queue route.
import { api } from "../../scripts/api.js";
import { phrases } from "./memory_panel.js";

const RANKS = ["urgent", "high", "normal", "low"];

export function renderQueue(section, report) {
  section.dataset.pending = String(report.pending_total);
  const waiting = report.pending_total
    ? RANKS.filter((rank) => report.pending[rank]).map((rank) => `${report.pending[rank]} ${rank}`)
    : ["nothing waiting"];
  const running = report.running.map((run) => `running${run.mode ? ` mode ${run.mode}` : ""} (${run.priority})`);
  const affinity = report.affinity.max_passes > 0
    ? [`mode affinity: at most ${report.affinity.max_passes} passes`, `${report.affinity.run_early} run early`]
    : ["mode affinity off"];
  const title = document.createElement("h4");
  title.textContent = "Queue";
  const counts = phrases("distorch-queue-counts", [...waiting, ...running]);
  const modes = phrases("distorch-muted distorch-queue-modes", [
    ...affinity,
    `${report.mode_switches} mode switch${report.mode_switches === 1 ? "" : "es"}`,
    `${report.completed} done`,
    report.failed ? `${report.failed} failed` : null,
  ]);
  section.replaceChildren(title, counts, modes);
}

// Fills `section` and keeps it current; returns the function that stops it.
export function mountQueueSection(section) {
  section.hidden = true;
  const draw = (report) => {
    if (!report || !report.pending) return;
    section.hidden = false;
    renderQueue(section, report);
  };
  const onEvent = (event) => draw(event.detail);
  api.addEventListener("distorch.queue", onEvent);
  api.fetchApi("/distorch/queue", { cache: "no-store" })
    .then((response) => (response.ok ? response.json() : null))
    .then(draw)
    .catch(() => {}); // an older server: no queue section
  return () => api.removeEventListener("distorch.queue", onEvent);
}
