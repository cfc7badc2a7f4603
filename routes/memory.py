"""Memory routes: ``GET /internal/memory``, ``POST /distorch/free``, and the ``distorch.memory``
websocket event.

The report is cheap (NVML, psutil, attribute reads of the loaded models) and is built on the event
loop, shared by concurrent requests for ``REPORT_TTL`` seconds so a burst of clients costs one
build. ``POST /distorch/free`` sets the same queue flags as ComfyUI's ``POST /free``; the prompt
worker acts on them between prompts, and the route waits for that (up to ``timeout``).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from aiohttp import web

from .. import device_utils
from ..distorch.memory import fingerprint, report_document
from ..model_management_mgpu import memory_control, offload_settings
from . import host_server
from .http import BadRequest, error_response, expect_type, json_body

log = logging.getLogger("distorch.routes.memory")
REPORT_TTL = 0.1
FREE_KEYS = {"force", "free_memory", "wait", "timeout"}
MAX_WAIT_SECONDS = 300.0


def _event_interval() -> float:
    try:
        return max(0.1, float(os.environ.get("DISTORCH_MEMORY_EVENT_INTERVAL", "0.5")))
    except ValueError:
        return 0.5


class MemoryReporter:
    """Builds the memory document, caching it briefly."""

    def __init__(self):
        self._cached: tuple[float, dict] | None = None

    def build(self) -> dict:
        import comfy.model_management as mm

        control = memory_control(mm)
        devices, ram = device_utils.read_all_devices()
        models = control.loaded_models() if control is not None else []
        return report_document(devices, ram, offload_settings(mm), models,
                               control.last_unload if control is not None else None,
                               retention=control.retention_report() if control is not None else None)

    def current(self) -> dict:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > REPORT_TTL:
            self._cached = (now, self.build())
        return self._cached[1]

    def fresh(self) -> dict:
        self._cached = None
        return self.current()


def _summary(document: dict) -> dict:
    return {"devices": {d["device"]: d["used"] for d in document["devices"]},
            "process_rss": document["ram"]["process_rss"],
            "models": [m["name"] for m in document["models"]]}


def add_routes(routes) -> None:
    reporter = MemoryReporter()

    @routes.get("/internal/memory")
    async def get_memory(request):
        return web.json_response(reporter.current())

    @routes.post("/distorch/free")
    async def post_free(request):
        try:
            body = await json_body(request)
            unknown = sorted(set(body) - FREE_KEYS)
            if unknown:
                raise BadRequest(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(FREE_KEYS))}")
            force = expect_type(body, "force", bool, False)
            free_memory = expect_type(body, "free_memory", bool, True)
            wait = expect_type(body, "wait", bool, True)
            timeout = float(expect_type(body, "timeout", (int, float), 30))
            if not 0 <= timeout <= MAX_WAIT_SECONDS:
                raise BadRequest(f"'timeout' must be between 0 and {MAX_WAIT_SECONDS:g} seconds, got {timeout:g}")
        except BadRequest as exc:
            return error_response(400, f"POST /distorch/free: {exc}")
        import comfy.model_management as mm

        control = memory_control(mm)
        if control is None:
            return error_response(503, "memory control is off in this ComfyUI (see the comfyui-distorch start-up "
                                       "line): use ComfyUI's POST /free instead")
        host = host_server()
        before = reporter.fresh()
        target = control.request_force() if force else control.next_flow()
        host.prompt_queue.set_flag("unload_models", True)
        if free_memory or force:
            host.prompt_queue.set_flag("free_memory", True)
        deadline = time.monotonic() + (timeout if wait else 0)
        next_wake = time.monotonic() + 0.5
        while control.flows_completed < target and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if time.monotonic() >= next_wake and control.flows_started < target:
                # The host's worker can miss set_flag's wake-up while it runs its gc pass (it then
                # sleeps until the next prompt): wake it again until it has picked the flags up.
                _wake_worker(host.prompt_queue)
                next_wake = time.monotonic() + 0.5
        done = control.flows_completed >= target
        result = {"force": force, "free_memory": free_memory or force,
                  "status": "done" if done else "queued", "before": _summary(before)}
        if done:
            after = reporter.fresh()
            result["after"] = _summary(after)
            after_used = result["after"]["devices"]
            result["freed"] = {device: used - after_used.get(device, used)
                               for device, used in result["before"]["devices"].items()}
            result["freed"]["process_rss"] = before["ram"]["process_rss"] - after["ram"]["process_rss"]
            result["last_unload"] = control.last_unload
        else:
            result["message"] = ("the prompt worker acts between prompts: the unload runs when the "
                                 "current prompt finishes")
        return web.json_response(result, status=200 if done else 202)

    host = host_server()
    if host is not None:
        _start_memory_events(host, reporter)
        control = memory_control()
        if control is not None and hasattr(host, "add_on_prompt_handler"):
            def release_survivors(json_data):
                control.release_survivors()
                return json_data

            host.add_on_prompt_handler(release_survivors)


def _wake_worker(queue) -> None:
    condition = getattr(queue, "not_empty", None)
    if condition is None:
        return
    with condition:
        condition.notify()


def _start_memory_events(server, reporter: MemoryReporter) -> None:
    """Push ``distorch.memory`` to websocket clients when the picture changes (rate-capped)."""
    app = getattr(server, "app", None)
    if app is None:
        return
    state: dict = {}

    async def publish_changes():
        interval = _event_interval()
        last = None
        while True:
            await asyncio.sleep(interval)
            if not getattr(server, "sockets", None):
                last = None  # a new client gets the picture at once
                continue
            try:
                document = reporter.current()
                mark = fingerprint(document)
                if mark != last:
                    last = mark
                    await server.send_json("distorch.memory", document)
            except Exception as exc:  # never let telemetry take the server down
                log.debug("memory event failed: %s", exc)

    async def start(_app):
        state["task"] = asyncio.get_running_loop().create_task(publish_changes())

    async def stop(_app):
        task = state.pop("task", None)
        if task is not None:
            task.cancel()

    try:
        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    except RuntimeError as exc:  # the app is already running (frozen signals)
        log.warning("comfyui-distorch: the distorch.memory websocket event is off: %s", exc)
