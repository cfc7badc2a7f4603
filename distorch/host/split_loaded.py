"""parse -> plan -> apply for one loaded model (the loaders' entry point), plus the check made
from the file's header before any weight is read. ``SplitRuntime`` holds what a process learns
once: whether the host's internals are the ones the split uses, and the transfer checks per
compute device (with the host settings they changed, restorable)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .split_patcher import SplitLayout, apply_split, check_splittable
from .internals_check import HostReport, check_host
from ..logic.module_sizes import file_modules, modules_of
from ..logic.planner import DEFAULT_TINY_BYTES, Plan, PlanError, compute_floor, plan_placement
from ..logic.dtypes import WEIGHT_DTYPE_BYTES  # weight_dtype input of the diffusion-model loader -> bytes stored
from ..logic.split_request import SplitRequest, requested_bytes, share_explanation
from .transfer_checks import TransferChecks

log = logging.getLogger("distorch.placement")


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


def stored_dtype(compute: str, file_dtype: str, params: int) -> str:
    """The dtype (torch name, "float32") ComfyUI stores a diffusion model's weights in when it
    loads them for ``compute``: its ``unet_dtype`` rule asked as its loader asks it (the file's
    main dtype and parameter count, under the device override a DisTorch load runs in). A header
    does not name the model's own supported dtypes, so ComfyUI's default list stands in for them."""
    import comfy.model_management as mm

    from ..logic.device_choice import device_override
    from ..logic.dtypes import TORCH_NAMES

    with device_override(compute=torch.device(compute)):
        chosen = mm.unet_dtype(model_params=params, weight_dtype=getattr(torch, TORCH_NAMES[file_dtype]))
    return str(chosen).removeprefix("torch.")


def main_dtype(model) -> str:
    """What holds most of a loaded model's bytes: a torch dtype name, or ComfyUI-GGUF's quantization."""
    held: dict[str, int] = {}
    for tensor in [*model.parameters(), *model.buffers()]:  # state_dict() drops ComfyUI-GGUF's tensor_type
        quantized = getattr(getattr(tensor, "tensor_type", None), "name", None)  # ComfyUI-GGUF's tensors
        name = quantized or str(tensor.dtype).removeprefix("torch.")
        held[name] = held.get(name, 0) + tensor.nelement() * tensor.element_size()
    return max(held, key=held.get) if held else "?"


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


@dataclass
class SplitRuntime:
    """What the split learns once per process, owned by the load pipeline (the runtime's)."""
    transfers: TransferChecks = field(default_factory=TransferChecks)
    host: HostReport | None = None
    notices: set = field(default_factory=set)  # one-time log lines already given (the runtime's set)

    def host_report(self) -> HostReport:
        """The host check, made on first use (or at start-up, when registration asks for it)."""
        if self.host is None:
            self.host = check_host()
        return self.host

    def split_blocked(self, label: str) -> bool:
        """True, with one warning line, when this host's internals differ from what the split uses:
        the model then runs unsplit."""
        report = self.host_report()
        if report.ok:
            return False
        log.warning("comfyui-distorch: %s runs unsplit: this ComfyUI's internals differ from what the split uses "
                    "(%s); update comfyui-distorch, or set virtual_vram_gb to 0 and leave allocation empty",
                    label, report.summary())
        return True

    def restore(self) -> None:
        """Put back the host settings the checks changed."""
        self.transfers.restore()


class SplitResult(NamedTuple):
    patcher: object       # the patcher to use from now on: the split copy, or the one passed in
    plan: Plan | None     # None when the split was skipped (a host the split does not know)


def plan_budgets(modules, request: SplitRequest, room: int | None, in_flight: int | None = None) -> dict[str, int]:
    if in_flight is None:
        in_flight = layers_in_flight(request.compute)
    return request.budgets(sum(m.bytes for m in modules), room, compute_floor(modules, tiny_bytes()), in_flight)


def plan_for(modules, request: SplitRequest, room: int | None, transfers: TransferChecks | None = None) -> Plan:
    """The plan for ``modules``. With ``transfers`` (a split about to be applied) the compute
    device's transfer check runs first; a preview passes none and changes nothing of the host."""
    total = sum(m.bytes for m in modules)
    tiny = tiny_bytes()
    if transfers is not None:
        import comfy.model_management as mm

        # The check may turn the host's offload streams off: NUM_STREAMS is read after it.
        transfers.check_streams(request.compute, mm)
    in_flight = layers_in_flight(request.compute)
    budgets = plan_budgets(modules, request, room, in_flight)
    try:
        return plan_placement(modules, request.compute, budgets, tiny_bytes=tiny, in_flight=in_flight)
    except PlanError as exc:
        hint = ""
        if room is not None and request.compute in budgets and budgets[request.compute] == max(0, room):
            hint = (f" ({request.compute} has {max(0, room) / 2**20:.1f} MiB free after ComfyUI's reserve; "
                    "give the donors more)")
        raise PlanError(f"{request.input_name}: '{request.describe()}' cannot hold this model "
                        f"({total / 2**20:.1f} MiB): {exc}{hint}") from None


def explain_plan(modules, request: SplitRequest, room: int | None, plan: Plan,
                 budgets: dict[str, int] | None = None) -> str:
    """Why ``plan`` gives the compute device another share than ``request`` asked (see
    ``share_explanation``), or "". ``budgets``: the ones the plan was made with (the plan carries them)."""
    total = sum(m.bytes for m in modules)
    in_flight = layers_in_flight(request.compute)
    if budgets is None:
        budgets = plan.budgets or plan_budgets(modules, request, room, in_flight)
    return share_explanation(request.compute, requested_bytes(request, total).get(request.compute, 0),
                             plan.device_bytes.get(request.compute, 0), total, budgets[request.compute],
                             plan.reserve_bytes, compute_floor(modules, tiny_bytes())[0], in_flight)


def precheck_files(paths: list[str], request: SplitRequest, runtime: SplitRuntime, prefix: str = "",
                   weight_dtype: str = "default") -> Plan:
    """Plan from the files' headers (no weights read): refuse an impossible allocation before
    loading anything. Sizes are the files' (the host may store the weights wider, so the plan made
    after loading is the one applied)."""
    modules = []
    for path in paths:
        modules += file_modules(path, prefix, WEIGHT_DTYPE_BYTES.get(weight_dtype))
    return plan_for(modules, request, compute_room(request.compute), runtime.transfers)


def split_loaded_model(patcher, request: SplitRequest, label: str, runtime: SplitRuntime) -> SplitResult:
    """Check the host, plan the loaded model over the request's budgets, log the plan, apply it.
    Nothing of ``patcher`` or the host's accounting changes before the plan is made and checked,
    and a failure while applying leaves them as they were."""
    if runtime.split_blocked(label):
        return SplitResult(patcher, None)
    check_splittable(patcher, runtime.notices)
    import comfy.model_management as mm

    modules = modules_of(patcher.model)
    room = compute_room(request.compute, bytes_on(patcher.model, request.compute))
    plan = plan_for(modules, request, room, runtime.transfers)
    total = sum(m.bytes for m in modules)
    why = explain_plan(modules, request, room, plan)
    log.info("%s: placement of %.1f MiB (the weights as loaded: %s, in layer order) over %s (allocation '%s')%s:\n%s", label,
             total / 2**20, main_dtype(patcher.model), ", ".join(plan.device_bytes), request.describe(),
             f"; {why}" if why else "", plan.table())
    split = SplitLayout.from_plan(plan, request.describe())
    if not split.offloaded:
        return SplitResult(patcher, plan)
    runtime.transfers.report_donors(request.compute, sorted(set(split.offloaded.values())), mm)
    return SplitResult(apply_split(patcher, split), plan)
