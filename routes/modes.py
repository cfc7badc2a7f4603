"""Modes over HTTP: list, reload, preload (switch), loaded models and cache statistics, generate.

Thin handlers: parse -> call the modes service -> JSON. Errors are real statuses with a message.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
import uuid

from aiohttp import web

from . import host_server
from .http import BadRequest, error_response, expect_type, json_body

log = logging.getLogger("distorch.routes")


def _service():
    from ..modes.runtime import service

    return service()


def _loaded_models() -> list[dict]:
    """What ComfyUI's model management holds right now, with the pack's placement record."""
    import comfy.model_management as mm

    from ..distorch.placement import placement_of, whole_size

    result = []
    for loaded in list(getattr(mm, "current_loaded_models", [])):
        patcher = loaded.model
        if patcher is None:
            continue
        placement = placement_of(patcher)
        try:
            size = whole_size(patcher)
            on_device = int(loaded.model_loaded_memory()) if hasattr(loaded, "model_loaded_memory") else None
        except Exception:
            size, on_device = None, None
        result.append({"class": type(getattr(patcher, "model", None)).__name__, "device": str(loaded.device),
                       "bytes": size, "loaded_bytes": on_device,
                       "source": placement.source if placement else None,
                       "loader": placement.loader if placement else None,
                       "component": placement.component if placement else None})
    return result


async def queue_prompt(prompt: dict, client_id: str | None = None) -> str:
    """Queue an API-format prompt the way POST /prompt does (validated, at the back of the queue)."""
    import execution

    server = host_server()
    prompt_id = str(uuid.uuid4())
    valid = execution.validate_prompt(prompt_id, prompt, None)
    if inspect.isawaitable(valid):
        valid = await valid
    if not valid[0]:
        raise BadRequest(f"the generated prompt was refused: {valid[1]} {valid[3]}")
    number = server.number
    server.number += 1
    extra = {"create_time": int(time.time() * 1000)}
    if client_id:
        extra["client_id"] = client_id
    server.prompt_queue.put((number, prompt_id, prompt, extra, valid[2], {}))
    return prompt_id


def preload_prompt(mode: str) -> dict:
    return {"1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 7]}}}


def generate_prompt(mode: str, spec, body: dict) -> tuple[dict, int]:
    text = expect_type(body, "prompt", str, "")
    negative = expect_type(body, "negative", str, "")
    size = expect_type(body, "size", str)
    steps = expect_type(body, "steps", int)
    guidance = expect_type(body, "guidance", (int, float))
    seed = expect_type(body, "seed", int)
    if seed is None:
        seed = random.randrange(0, 2**63)
    if not 0 <= seed < 2**64:
        raise BadRequest(f"'seed' must be from 0 to 2**64-1, got {seed}")
    width, height = spec.width, spec.height
    if size is not None:
        parts = size.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise BadRequest(f"'size' must be \"WIDTHxHEIGHT\" like \"512x512\", got {size!r}")
        width, height = (int(p) for p in parts)
        if not all(16 <= side <= 16384 and side % 8 == 0 for side in (width, height)):
            raise BadRequest(f"'size' {size!r}: each side must be a multiple of 8 from 16 to 16384")
    if steps is not None and not 1 <= steps <= 10000:
        raise BadRequest(f"'steps' must be from 1 to 10000, got {steps}")
    if guidance is not None and not 0 <= guidance <= 100:
        raise BadRequest(f"'guidance' must be from 0 to 100, got {guidance}")
    sampler_steps = ["1", 5] if steps is None else steps
    cfg = ["1", 6] if guidance is None else float(guidance)
    prompt = {
        "1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": sampler_steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"distorch-{mode}"}},
    }
    return prompt, seed


async def _wait_for(prompt_id: str, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = host_server().prompt_queue.get_history(prompt_id=prompt_id)
        entry = history.get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        await asyncio.sleep(0.1)
    return None


def add_routes(routes) -> None:
    @routes.get("/distorch/modes")
    async def list_modes(request):
        return web.json_response(_service().listing())

    @routes.post("/distorch/modes/reload")
    async def reload_modes(request):
        try:
            await json_body(request)
        except BadRequest as exc:
            return error_response(400, str(exc))
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, _service().reload, "route")
        if not result.ok:
            return error_response(400, "the modes file has errors; the modes in force are unchanged",
                                  errors=[p.to_json() for p in result.errors])
        return web.json_response({**_service().listing(), "reloaded_in_s": round(result.seconds, 4)})

    @routes.post("/distorch/modes/switch")
    async def switch_mode(request):
        try:
            body = await json_body(request, allow_empty=False)
            mode = expect_type(body, "mode", str)
            if mode is None:
                raise BadRequest("the body needs 'mode': the name of a mode from GET /distorch/modes")
        except BadRequest as exc:
            return error_response(400, str(exc))
        service = _service()
        if service.spec(mode) is None:
            return error_response(404, service.unknown_mode_message(mode))
        if service.is_cached(mode):
            return web.json_response({"mode": mode, "cached": True, "prompt_id": None})
        try:
            prompt_id = await queue_prompt(preload_prompt(mode))
        except BadRequest as exc:
            return error_response(400, str(exc))
        return web.json_response({"mode": mode, "cached": False, "prompt_id": prompt_id}, status=202)

    @routes.get("/distorch/models")
    async def models(request):
        service = _service()
        return web.json_response({"cache": service.cache.stats(), "loaded": _loaded_models()})

    @routes.post("/distorch/generate")
    async def generate(request):
        service = _service()
        try:
            body = await json_body(request, allow_empty=False)
            mode = expect_type(body, "mode", str)
            wait = expect_type(body, "wait", bool, False)
            if mode is None:
                config = service.state.snapshot()[0]
                mode = config.default_mode if config else None
            spec = service.spec(mode) if mode else None
            if spec is None:
                return error_response(404, service.unknown_mode_message(str(mode)))
            prompt, seed = generate_prompt(mode, spec, body)
            prompt_id = await queue_prompt(prompt, expect_type(body, "client_id", str))
        except BadRequest as exc:
            return error_response(400, str(exc))
        if not wait:
            return web.json_response({"prompt_id": prompt_id, "mode": mode, "seed": seed})
        entry = await _wait_for(prompt_id, timeout=float(body.get("timeout", 600)) if isinstance(
            body.get("timeout"), (int, float)) else 600.0)
        headers = {"X-Mode": mode, "X-Seed": str(seed), "X-Prompt-Id": prompt_id}
        if entry is None:
            return error_response(504, f"prompt {prompt_id} did not finish in time; poll /history/{prompt_id}",
                                  prompt_id=prompt_id)
        if entry.get("status", {}).get("status_str") != "success":
            messages = [m for m in entry.get("status", {}).get("messages", []) if m[0] == "execution_error"]
            detail = messages[0][1].get("exception_message") if messages else "unknown error"
            return error_response(500, f"generation failed: {detail}", prompt_id=prompt_id)
        import folder_paths

        images = entry.get("outputs", {}).get("7", {}).get("images", [])
        if not images:
            return error_response(500, "generation produced no image", prompt_id=prompt_id)
        image = images[0]
        import os

        path = os.path.join(folder_paths.get_output_directory(), image.get("subfolder", ""), image["filename"])
        return web.FileResponse(path, headers={**headers, "Content-Type": "image/png"})
