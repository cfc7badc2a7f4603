"""parse -> plan -> apply for one loaded model (the loaders' entry point), plus the check made
from the file's header before any weight is read."""
from __future__ import annotations

import logging
import os

import torch

from .apply import SplitPlacement, apply_split
from .modules import header_tensors, modules_from_tensors, modules_of
from .planner import DEFAULT_TINY_BYTES, Plan, PlanError, compute_floor, plan_placement
from .split import SplitRequest
from .streaming import check_transfers

log = logging.getLogger("distorch.placement")

# weight_dtype input of the diffusion-model loader -> bytes per stored element
WEIGHT_DTYPE_BYTES = {"fp8_e4m3fn": 1, "fp8_e4m3fn_fast": 1, "fp8_e5m2": 1}


def tiny_bytes() -> int:
    """Modules of at most this many bytes stay on the compute device (planner rule 1).
    ``DISTORCH_TINY_BYTES`` overrides the default 1 MiB (e.g. for models built of small layers)."""
    raw = os.environ.get("DISTORCH_TINY_BYTES", "").strip()
    if not raw:
        return DEFAULT_TINY_BYTES
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        log.warning("DISTORCH_TINY_BYTES=%r is not a byte count (a whole number >= 0); using %d", raw,
                    DEFAULT_TINY_BYTES)
        return DEFAULT_TINY_BYTES


def compute_room(device: str, already_there: int = 0) -> int | None:
    """Free memory on the compute device, plus what this model already holds there, minus the
    host's reserve for inference. None where the host cannot say."""
    import comfy.model_management as mm

    try:
        free = mm.get_free_memory(torch.device(device))
        return int(free + already_there - mm.minimum_inference_memory())
    except Exception as exc:  # a backend the host cannot query
        log.debug("no free-memory figure for %s: %s", device, exc)
        return None


def bytes_on(model, device: str) -> int:
    target = torch.device(device)
    return sum(t.nelement() * t.element_size() for t in model.state_dict().values() if t.device == target)


def layers_in_flight(device: str) -> int:
    """How many offloaded layers can be on the compute device at once: ComfyUI's offload streams
    cast ahead (NUM_STREAMS + 1, the factor the host reserves for its own lowvram layers); one
    where it copies synchronously."""
    import comfy.model_management as mm

    streams = int(getattr(mm, "NUM_STREAMS", 0) or 0)
    return streams + 1 if streams > 0 and torch.device(device).type in ("cuda", "xpu") else 1


def plan_budgets(modules, request: SplitRequest, room: int | None) -> dict[str, int]:
    return request.budgets(sum(m.bytes for m in modules), room, compute_floor(modules, tiny_bytes()),
                           layers_in_flight(request.compute))


def plan_for(modules, request: SplitRequest, room: int | None) -> Plan:
    total = sum(m.bytes for m in modules)
    tiny = tiny_bytes()
    budgets = plan_budgets(modules, request, room)
    try:
        return plan_placement(modules, request.compute, budgets, tiny_bytes=tiny,
                              in_flight=layers_in_flight(request.compute))
    except PlanError as exc:
        hint = ""
        if room is not None and request.compute in budgets and budgets[request.compute] == max(0, room):
            hint = (f" ({request.compute} has {max(0, room) / 2**20:.1f} MiB free after ComfyUI's reserve; "
                    "give the donors more)")
        raise PlanError(f"{request.input_name}: '{request.describe()}' cannot hold this model "
                        f"({total / 2**20:.1f} MiB): {exc}{hint}") from None


def precheck_files(paths: list[str], request: SplitRequest, prefix: str = "", weight_dtype: str = "default") -> Plan:
    """Plan from the files' headers (no weights read): refuse an impossible allocation before
    loading anything. Sizes are the files' (the host may store the weights wider, so the plan made
    after loading is the one applied)."""
    modules = []
    for path in paths:
        modules += modules_from_tensors(header_tensors(path), prefix, WEIGHT_DTYPE_BYTES.get(weight_dtype))
    return plan_for(modules, request, compute_room(request.compute))


def split_loaded_model(patcher, request: SplitRequest, label: str) -> Plan:
    """Plan the loaded model over the request's budgets, log the plan, apply it."""
    modules = modules_of(patcher.model)
    room = compute_room(request.compute, bytes_on(patcher.model, request.compute))
    plan = plan_for(modules, request, room)
    total = sum(m.bytes for m in modules)
    log.info("%s: placement of %.1f MiB over %s (allocation '%s'):\n%s", label, total / 2**20,
             ", ".join(plan.device_bytes), request.describe(), plan.table())
    split = SplitPlacement.from_plan(plan, request.describe())
    if split.offloaded:
        import comfy.model_management as mm

        check_transfers(request.compute, sorted(set(split.offloaded.values())), mm)
        apply_split(patcher, split)
    return plan
