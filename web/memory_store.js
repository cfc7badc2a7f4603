// The memory picture in the browser: one GET /internal/memory when asked, then the
// `distorch.memory` websocket events. No polling: the server pushes when the picture changes.
import { api } from "../../scripts/api.js";

const listeners = new Set();
let latest = null;
let subscribed = false;

function publish(document) {
  if (!document || !Array.isArray(document.devices)) return;
  latest = document;
  for (const listener of [...listeners]) listener(document);
}

export function currentMemory() {
  return latest;
}

export function subscribeMemoryEvents() {
  if (subscribed) return;
  subscribed = true;
  api.addEventListener("distorch.memory", (event) => publish(event.detail));
}

export async function fetchMemory() {
  const response = await api.fetchApi("/internal/memory", { cache: "no-store" });
  if (!response.ok) throw new Error(`GET /internal/memory answered ${response.status}`);
  const document = await response.json();
  publish(document);
  return document;
}

// Calls `listener(document)` on every new picture; returns the function that stops it.
export function onMemory(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

// Resolves with the first picture for which `test(document)` holds (events or the fetches the
// caller makes); rejects after `timeoutMs`.
export function waitForMemory(test, timeoutMs) {
  return new Promise((resolve, reject) => {
    if (latest && test(latest)) {
      resolve(latest);
      return;
    }
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no matching memory report within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = onMemory((document) => {
      if (!test(document)) return;
      clearTimeout(timer);
      stop();
      resolve(document);
    });
  });
}
