"""The pack's one runtime, built in-process over the real comfy.model_management and a real
PromptQueue, with a stand-in for the PromptServer parts the pack touches (its route table, its
on_prompt handler list, its aiohttp app, send_sync). ``close()`` must leave the host as it was."""
from __future__ import annotations

import signal

import pytest
from aiohttp import web


class StandInServer:
    """What the pack uses of ComfyUI's PromptServer, with the host's own queue class."""

    def __init__(self):
        import execution

        self.routes = web.RouteTableDef()
        self.app = web.Application()
        self.on_prompt_handlers = []
        self.number = 0
        self.sockets = {}
        self.sent = []
        self.prompt_queue = execution.PromptQueue(self)

    def add_on_prompt_handler(self, handler):
        self.on_prompt_handlers.append(handler)

    def send_sync(self, event, data, sid=None):
        self.sent.append(event)

    def queue_updated(self):
        pass


@pytest.fixture
def registration(mm, pack_module):
    return pack_module("registration")


def host_state(mm, server) -> dict:
    names = ("get_torch_device", "text_encoder_device", "vae_device", "unload_all_models", "soft_empty_cache")
    return {"mm": {name: getattr(mm, name) for name in names}, "NUM_STREAMS": getattr(mm, "NUM_STREAMS", None),
            "queue": dict(vars(server.prompt_queue)), "handlers": list(server.on_prompt_handlers),
            "middlewares": list(server.app.middlewares), "sighup": signal.getsignal(signal.SIGHUP),
            "app_hooks": (list(server.app.on_startup), list(server.app.on_cleanup))}


def test_close_leaves_the_host_exactly_as_it_was(mm, registration, tmp_path, monkeypatch):
    monkeypatch.setenv("DISTORCH_MODES", str(tmp_path / "modes.yaml"))
    server = StandInServer()
    before = host_state(mm, server)
    runtime = registration.build_runtime(server, module=mm, start_services=True)
    assert runtime.memory is not None and runtime.queue is not None and runtime.modes is not None
    assert runtime.added_routes == ["memory", "placement", "modes", "retention", "queue", "residency"]
    changed = host_state(mm, server)
    assert all(changed["mm"][name] is not before["mm"][name] for name in before["mm"])
    assert len(changed["handlers"]) == 2 and len(changed["middlewares"]) == 1
    assert {"get", "get_flags", "task_done", "put"} <= set(changed["queue"]) - set(before["queue"])
    labels = runtime.registry.labels()
    assert "SIGHUP handler: reload modes.yaml" in labels and changed["sighup"] is not before["sighup"]

    report = runtime.close()
    assert not report.failed and not report.bypassed
    after = host_state(mm, server)
    assert all(after["mm"][name] is before["mm"][name] for name in before["mm"])
    assert after["queue"].keys() == before["queue"].keys()
    assert after["handlers"] == before["handlers"] == [] and after["middlewares"] == []
    assert after["sighup"] == before["sighup"] and after["NUM_STREAMS"] == before["NUM_STREAMS"]
    assert changed["app_hooks"] != before["app_hooks"] and after["app_hooks"] == before["app_hooks"]
    assert runtime.memory is None and runtime.queue is None and len(runtime.registry) == 0


def test_two_runtimes_do_not_share_state(mm, registration):
    """Tests reset the pack by building a fresh runtime: nothing carries over from the last one."""
    first = registration.build_runtime(None, module=mm)
    first.memory.retain(("k",), ())
    first.notices.add("dynamic_vram")  # as the split does when it refuses a DynamicVRAM model
    first.close()
    second = registration.build_runtime(None, module=mm)
    try:
        assert second.memory is not first.memory and second.memory.retained.keys() == []
        assert second.pipeline is not first.pipeline and "dynamic_vram" not in second.notices
        assert second.readings is not first.readings
    finally:
        second.close()


def test_nodes_are_bound_to_their_runtime(mm, registration, pack_module):
    runtime = registration.build_runtime(None, module=mm)
    try:
        classes, titles = pack_module("nodes").node_mappings(runtime)
        loader = classes["DisTorchUNETLoader"]
        assert loader.runtime is runtime and set(titles) <= set(classes)
        unbound = pack_module("nodes.loaders").DisTorchUNETLoader
        assert loader.__name__ == unbound.__name__ and issubclass(loader, unbound)
        assert getattr(unbound, "runtime", None) is None, "binding set the runtime on the shared class"
        with pytest.raises(RuntimeError, match="not bound to the comfyui-distorch runtime"):
            pack_module("nodes.bound").runtime_of(unbound())
    finally:
        runtime.close()


def test_the_startup_hook_notes_loaders_and_wraps_distributed_then_close_undoes_both(mm, registration, monkeypatch):
    """At start-up (every pack loaded) the loader classes are wrapped to note their files, and
    ComfyUI-Distributed's choice, found by what its module has, is wrapped; close() puts all back."""
    import asyncio
    import sys
    import types

    import nodes

    async def least_busy(workers, trace_execution_id=None, probe_concurrency=8, probe_timeout=3.0):
        return workers[0]

    def wants_balance(prompt_index):
        return True

    fake = types.ModuleType("/x/custom_nodes/ComfyUI-Distributed.api.queue_orchestration")
    fake.select_least_busy_worker, fake._prompt_requests_load_balance = least_busy, wants_balance
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    original_unet = nodes.UNETLoader.__dict__["load_unet"]
    server = StandInServer()
    runtime = registration.build_runtime(server, module=mm)
    (hook,) = [h for h in server.app.on_startup if getattr(h, "__name__", "") == "install"]
    asyncio.run(hook(server.app))
    assert nodes.UNETLoader.__dict__["load_unet"] is not original_unet
    assert fake.select_least_busy_worker is not least_busy and runtime.router.installed
    runtime.close()
    assert nodes.UNETLoader.__dict__["load_unet"] is original_unet
    assert fake.select_least_busy_worker is least_busy and fake._prompt_requests_load_balance is wants_balance
    assert hook not in server.app.on_startup
