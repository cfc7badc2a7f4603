"""A test-only custom node pack, linked into a test host's custom_nodes next to comfyui-distorch
(``ComfyHost(extra_custom_nodes=...)``). It stands in for the other packs a user has installed:

- an ``on_prompt`` handler, as other packs register them: it appends every body it sees to
  ``$DISTORCH_TEST_HOOKS_DIR/on_prompt.jsonl`` and, in prompts whose SaveImage prefix starts with
  ``distorch-`` (those POST /distorch/generate builds), renames the prefix to ``hooked-`` and adds
  ``extra_data["hooked"]``: a change the host must honour;
- ``POST /distorch-test/memory-walk`` ``{"sleep": seconds, "fail": bool}``: makes comfyui-distorch's
  model walk (``MemoryControl.loaded_models``, reached through the pack's ``RUNTIME``) slow or failing; ``GET`` returns how often it ran.
"""
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

from aiohttp import web

NODE_CLASS_MAPPINGS = {}
log = logging.getLogger("distorch.test_hooks")


def distorch_runtime():
    """comfyui-distorch's runtime: ComfyUI keys a folder pack's module by its path."""
    for name, module in list(sys.modules.items()):
        if name.rstrip("/").endswith("comfyui-distorch") and getattr(module, "RUNTIME", None) is not None:
            return module.RUNTIME
    return None


class Hooks:
    def __init__(self, folder: Path):
        self.folder = folder
        self.lock = threading.Lock()
        self.sleep = 0.0
        self.fail = False
        self.walks = 0

    def on_prompt(self, json_data):
        with self.lock, open(self.folder / "on_prompt.jsonl", "a") as out:
            out.write(json.dumps(json_data) + "\n")
        for node in (json_data.get("prompt") or {}).values():
            inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
            prefix = inputs.get("filename_prefix")
            if node.get("class_type") == "SaveImage" and isinstance(prefix, str) and prefix.startswith("distorch-"):
                inputs["filename_prefix"] = "hooked-" + prefix[len("distorch-"):]
                json_data.setdefault("extra_data", {})["hooked"] = True
        return json_data

    def walk(self, control):
        with self.lock:
            self.walks += 1
            sleep, fail = self.sleep, self.fail
        if fail:
            raise RuntimeError("distorch-test-hooks: model walk failed on purpose")
        time.sleep(sleep)
        return type(control).loaded_models(control)


def _register():
    import server

    folder = os.environ.get("DISTORCH_TEST_HOOKS_DIR")
    if not folder:
        return
    hooks = Hooks(Path(folder))
    prompt_server = server.PromptServer.instance
    prompt_server.add_on_prompt_handler(hooks.on_prompt)

    @prompt_server.routes.post("/distorch-test/memory-walk")
    async def set_walk(request):
        body = await request.json()
        control = getattr(distorch_runtime(), "memory", None)
        if control is None:
            return web.json_response({"error": "comfyui-distorch memory control is not installed"}, status=409)
        with hooks.lock:
            hooks.sleep = float(body.get("sleep", 0.0))
            hooks.fail = bool(body.get("fail", False))
            hooks.walks = 0
        if hooks.sleep or hooks.fail:
            control.loaded_models = lambda: hooks.walk(control)
        else:
            control.__dict__.pop("loaded_models", None)
        return web.json_response({"sleep": hooks.sleep, "fail": hooks.fail})

    @prompt_server.routes.get("/distorch-test/memory-walk")
    async def get_walk(request):
        return web.json_response({"walks": hooks.walks})


_register()
