"""Placement planning, pure: module list + device budgets -> which device holds each module.

Rules, in order:
1. Modules that must stay with the compute: embeddings, norms, modules the host cannot cast per
   forward (kind ``fixed``) and anything no larger than ``tiny_bytes`` (moving them costs more in
   transfers than it saves).
2. The compute device keeps the longest leading run of the remaining modules that fits in its
   budget while leaving room for ``in_flight`` copies of the largest module it does not keep (an
   offloaded layer is cast to the compute device to run, so that much must be free there; with
   ComfyUI's offload streams up to NUM_STREAMS + 1 such copies can exist at once, the same
   reserve ComfyUI makes for its own lowvram layers).
3. Donors take the rest in the order given (the order the user wrote them), each in module order
   up to its budget.
Raises PlanError with the shortfall when the budgets cannot hold the model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import shown_by_name

PINNED_KINDS = frozenset({"embedding", "norm", "fixed"})
_NORM = re.compile(r"(^|[._])(norm\d*|ln_\w+|layer_norm\d*|final_layer_norm|.*_norm)$", re.I)
_EMBED = re.compile(r"(embed|embedding|wte|wpe)", re.I)


def kind_from_name(module_name: str) -> str:
    """A module's kind from its name alone (file headers): ``embedding``, ``norm`` or ``layer``."""
    last = module_name.rsplit(".", 1)[-1]
    if _EMBED.search(last):
        return "embedding"
    if _NORM.search(last) or "norm" in last.lower():
        return "norm"
    return "layer"
DEFAULT_TINY_BYTES = 1 << 20


@shown_by_name
class PlanError(ValueError):
    """The budgets cannot hold the model."""


@dataclass(frozen=True)
class ModuleInfo:
    name: str
    bytes: int
    kind: str = "layer"


@dataclass(frozen=True)
class Plan:
    compute_device: str
    assignment: dict[str, str] = field(hash=False)   # module name -> device
    device_bytes: dict[str, int] = field(hash=False)  # device -> bytes it holds
    reserve_bytes: int = 0                            # free room kept on the compute device
    budgets: dict[str, int] = field(default_factory=dict, hash=False)  # what each slot was allowed

    def modules_on(self, device: str) -> list[str]:
        return [name for name, where in self.assignment.items() if where == device]

    def table(self) -> str:
        total = sum(self.device_bytes.values()) or 1
        rows = [f"{'device':<12}{'MiB':>10}{'modules':>9}{'share':>8}"]
        for device, held in self.device_bytes.items():
            rows.append(f"{device:<12}{held / 2**20:>10.1f}{len(self.modules_on(device)):>9}{held / total:>8.1%}")
        if self.reserve_bytes:
            rows.append(f"(kept free on {self.compute_device} to run offloaded layers: "
                        f"{self.reserve_bytes / 2**20:.1f} MiB)")
        return "\n".join(rows)


def compute_floor(modules: list[ModuleInfo], tiny_bytes: int = DEFAULT_TINY_BYTES) -> tuple[int, int]:
    """(bytes that must stay on the compute device, largest module that may be offloaded): what
    a compute device needs at least, whatever the split."""
    pinned = sum(m.bytes for m in modules if m.kind in PINNED_KINDS or m.bytes <= tiny_bytes)
    largest = max((m.bytes for m in modules if not (m.kind in PINNED_KINDS or m.bytes <= tiny_bytes)), default=0)
    return pinned, largest


def plan_placement(modules: list[ModuleInfo], compute_device: str, budgets: dict[str, int],
                   tiny_bytes: int = DEFAULT_TINY_BYTES, in_flight: int = 1) -> Plan:
    if compute_device not in budgets:
        raise PlanError(f"no budget for the compute device {compute_device}")
    capacity = budgets[compute_device]
    pinned = [m for m in modules if m.kind in PINNED_KINDS or m.bytes <= tiny_bytes]
    movable = [m for m in modules if not (m.kind in PINNED_KINDS or m.bytes <= tiny_bytes)]
    pinned_bytes = sum(m.bytes for m in pinned)
    if pinned_bytes > capacity:
        raise PlanError(f"{compute_device} needs {_mib(pinned_bytes)} for embeddings, norms and small "
                        f"modules alone but its budget is {_mib(capacity)}")

    # suffix_max[k] = room the offloaded layers need if the compute device keeps movable[:k].
    suffix_max = [0] * (len(movable) + 1)
    for index in range(len(movable) - 1, -1, -1):
        suffix_max[index] = max(movable[index].bytes * max(1, in_flight), suffix_max[index + 1])
    # The longest leading run k with run + room for the layers after it within the budget (the
    # room shrinks as k grows, so every k is tried; keeping everything needs no room at all).
    kept, used, prefix = None, pinned_bytes, pinned_bytes
    for k in range(len(movable) + 1):
        if k:
            prefix += movable[k - 1].bytes
        if prefix + suffix_max[k] <= capacity:
            kept, used = k, prefix
    if kept is None:
        raise PlanError(f"{compute_device}'s budget {_mib(capacity)} leaves no room to run offloaded layers "
                        f"({_mib(suffix_max[0])}) next to what must stay there ({_mib(pinned_bytes)}); give it more")
    reserve = suffix_max[kept]

    assignment = {m.name: compute_device for m in pinned + movable[:kept]}
    device_bytes = {compute_device: used}
    pending = movable[kept:]
    for donor, budget in budgets.items():
        if donor == compute_device or not pending:
            continue
        held = 0
        while pending and held + pending[0].bytes <= budget:
            module = pending.pop(0)
            assignment[module.name] = donor
            held += module.bytes
        device_bytes[donor] = held
    if pending:
        missing = sum(m.bytes for m in pending)
        raise PlanError(f"the model does not fit: {len(pending)} modules ({_mib(missing)}) have no room. "
                        f"Budgets: {', '.join(f'{d} {_mib(b)}' for d, b in budgets.items())}. "
                        "Raise a budget, add a donor (e.g. 'cpu,*'), or lower the compute share.")
    ordered = {m.name: assignment[m.name] for m in modules}
    return Plan(compute_device, ordered, device_bytes, reserve if kept < len(movable) else 0, dict(budgets))


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
