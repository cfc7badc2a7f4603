"""What the user asked for, as device budgets: the node inputs -> a ``SplitRequest`` ->
budgets (bytes per device) for the planner. Pure: free memory and the host's reserve are passed in.

The simple inputs ``virtual_vram_gb`` + ``donor_device`` mean ``<compute>,*;<donor>,<V>gb``; the
expert ``allocation`` string, when not empty, overrides them. A donor that is the compute device
itself is allowed (it is the only split a CPU-only machine can run): its modules stay on that
device but run through the same per-forward cast as a real donor's, under the slot name
``"<device> (donor)"``; it saves no memory.
"""
from __future__ import annotations

from dataclasses import dataclass

from .allocation import Allocation, AllocationError, Share, parse_allocation
from .devices import DeviceNameError, canonical_device

DONOR_SUFFIX = " (donor)"
GIB = 1024 ** 3


def donor_slot(device: str, compute: str) -> str:
    """Planner name for a donor: the device, or '<device> (donor)' when it is the compute device."""
    return device + DONOR_SUFFIX if device == compute else device


def slot_device(slot: str) -> str:
    """The device a planner slot lives on."""
    return slot[: -len(DONOR_SUFFIX)] if slot.endswith(DONOR_SUFFIX) else slot


@dataclass(frozen=True)
class SplitRequest:
    compute: str              # canonical compute device name ("cpu", "cuda:0")
    allocation: Allocation
    donor: str | None         # planner slot of the donor for the fraction form
    input_name: str           # the input(s) the request came from, for error messages
    text: str = ""            # the allocation as the user wrote it (expert form)

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.allocation.form == "fraction":
            return f"{self.allocation.fraction:g} on {self.compute}, rest on {slot_device(self.donor)}"
        return ";".join(f"{slot_device(s.device)},{_amount(s)}" for s in self.allocation.shares)

    def budgets(self, model_bytes: int, compute_room: int | None = None, floor: tuple[int, int] = (0, 0),
                in_flight: int = 1) -> dict[str, int]:
        """Bytes each planner slot may hold. When the compute device takes "the rest" ('*'), it
        gets the rest (at least what must stay there, ``floor[0]``) plus ``in_flight + 1`` times
        the largest movable layer (``floor[1]``): room to run offloaded layers (``in_flight`` of
        them at once, see the planner), and one more because layers are whole (the compute
        device's run of layers may stop up to one layer short of its budget). The donors then hold
        at most what the user gave them, within that margin.
        ``compute_room`` (free memory on the compute device minus the host's reserve) caps the
        compute device's budget unless the user gave it an explicit byte size."""
        budgets = self.allocation.budgets(model_bytes, self.compute, self.donor)
        if self.allocation.form == "fraction" or not any(s.kind in ("rest", "bytes") for s in self.allocation.shares):
            # Shares of the model: layers are whole and the compute device keeps room for one
            # offloaded layer inside its share, so the last donor takes whatever remains.
            donors = [slot for slot in budgets if slot != self.compute]
            if donors:
                budgets[donors[-1]] = model_bytes
        if any(s.device == self.compute and s.kind == "rest" for s in self.allocation.shares):
            budgets[self.compute] = max(budgets[self.compute], floor[0]) + (max(1, in_flight) + 1) * floor[1]
        explicit = any(s.device == self.compute and s.kind == "bytes" for s in self.allocation.shares)
        if compute_room is not None and not explicit:
            budgets[self.compute] = max(0, min(budgets[self.compute], int(compute_room)))
        return budgets


def _amount(share: Share) -> str:
    if share.kind == "rest":
        return "*"
    if share.kind == "percent":
        return f"{share.amount:g}%"
    # 3 decimals of GiB without an exponent ('2e+03gb' is no amount); bytes when that reads as 0
    gib = f"{share.amount / GIB:.3f}".rstrip("0").rstrip(".")
    return f"{gib}gb" if gib != "0" or not share.amount else f"{int(share.amount)}b"


@dataclass(frozen=True)
class SplitInputs:
    """The split inputs parsed once (grammar and device names checked), before the compute device
    is known for sure: a load binds them to the device the model is built for (``request_for``),
    and binds them again, without parsing, if the host built it for another one."""
    allocation: Allocation | None     # the expert string's (None: the simple inputs)
    donor_device: str | None          # canonical donor for the simple inputs and the fraction form
    gib: float = 0.0                  # virtual_vram_gb for the simple inputs
    text: str = ""                    # the allocation as written

    def request_for(self, compute: str) -> SplitRequest:
        """The request for ``compute``. Raises AllocationError naming the input when the
        allocation gives that device no share."""
        if self.allocation is None:
            donor = donor_slot(self.donor_device, compute)
            shares = (Share(compute, "rest", 0.0), Share(donor, "bytes", float(int(self.gib * GIB))))
            return SplitRequest(compute, Allocation("bytes", shares), None, "virtual_vram_gb/donor_device")
        parsed = self.allocation
        if parsed.form == "fraction":
            return SplitRequest(compute, parsed, donor_slot(self.donor_device, compute), "allocation", self.text)
        if not any(s.device == compute for s in parsed.shares):
            raise AllocationError(
                f"allocation: '{self.text}' gives the compute device {compute} no share. Add it, e.g. "
                f"'{compute},*;{parsed.shares[0].device},{_amount(parsed.shares[0])}', or change compute_device.")
        return SplitRequest(compute, parsed, None, "allocation", self.text)


def parse_split_inputs(available: list[str], virtual_vram_gb: float = 0.0, donor_device: str = "cpu",
                       allocation: str | None = "") -> SplitInputs | None:
    """The node inputs parsed, or None for "no split". Raises AllocationError (a ValueError) whose
    message names the input, the bad value and what is allowed."""
    text = "" if allocation is None else str(allocation)
    if text.strip():
        parsed = parse_allocation(text, available, "allocation")
        if parsed is None:
            return None
        donor = _donor(donor_device, available) if parsed.form == "fraction" else None
        return SplitInputs(parsed, donor, text=text.strip())
    try:
        gib = float(virtual_vram_gb or 0.0)
    except (TypeError, ValueError):
        raise AllocationError(f"virtual_vram_gb: '{virtual_vram_gb}' is not a number; use GiB, e.g. 4.0 "
                              "(0 = no split)") from None
    if gib != gib or gib < 0 or gib * GIB == float("inf"):  # 1e300 GiB is an infinite byte count
        raise AllocationError(f"virtual_vram_gb: {virtual_vram_gb} is not allowed; use 0 (no split) or a "
                              "positive size in GiB, e.g. 4.0")
    if gib == 0:
        return None
    return SplitInputs(None, _donor(donor_device, available), gib)


def split_request(compute: str, available: list[str], virtual_vram_gb: float = 0.0,
                  donor_device: str = "cpu", allocation: str | None = "") -> SplitRequest | None:
    """The node inputs as one request for ``compute``, or None for "no split" (parse, then bind)."""
    inputs = parse_split_inputs(available, virtual_vram_gb, donor_device, allocation)
    return None if inputs is None else inputs.request_for(compute)


def _donor(donor_device: str, available: list[str]) -> str:
    try:
        return canonical_device(donor_device, available, "donor_device")
    except DeviceNameError as exc:
        raise AllocationError(str(exc)) from None


def requested_bytes(request: SplitRequest, model_bytes: int) -> dict[str, int]:
    """What the user asked each planner slot to hold, before the planner's margins and whole
    layers: the shares as written, a '*' being what the others leave."""
    return {slot: min(model_bytes, held)
            for slot, held in request.allocation.budgets(model_bytes, request.compute, request.donor).items()}


def share_explanation(compute: str, requested: int, kept: int, model_bytes: int, budget: int, reserve: int,
                      pinned: int, in_flight: int = 1) -> str:
    """Why the compute device keeps a share other than the one requested, in words, or "" when
    they agree to the percent. ``budget`` is what the planner allowed the compute device (the
    request capped by its free memory), ``reserve`` the room kept free there for offloaded
    layers, ``pinned`` what must stay there whatever the split."""
    if model_bytes <= 0:
        return ""

    def percent(size: int) -> int:
        return round(100 * size / model_bytes)

    asked, held = percent(requested), percent(kept)
    if asked == held:
        return ""
    head = f"{asked}% requested on {compute}, {held}% kept"
    if kept > requested:
        if pinned > requested:
            return (f"{head}: embeddings, norms and small modules ({percent(pinned)}%) always stay on "
                    f"the compute device")
        if kept >= model_bytes and budget > requested:
            # the room kept to run streamed-in layers is larger than what the donors were given
            return (f"{head}: nothing moved, as {compute} keeps room to run the layers it would stream in "
                    f"({percent(budget - requested)}% of the model), more than the {100 - asked}% the donors "
                    "were given; give them more")
        return f"{head}: the donors take at most what they were given, and layers move whole"
    capped = max(0, requested - budget)
    room_kept = max(0, min(reserve, min(requested, budget) - kept))
    reasons = []
    capped_pct, reserve_pct = percent(capped), percent(room_kept)
    if capped_pct:
        reasons.append(f"{capped_pct}% more than {compute} has free after ComfyUI's reserve")
    if reserve_pct:
        at_once = "one at a time" if in_flight <= 1 else f"up to {in_flight} at once"
        reasons.append(f"{reserve_pct}% reserved to run the offloaded layers ({at_once})")
    whole_pct = asked - held - capped_pct - reserve_pct
    if whole_pct > 0:
        reasons.append(f"{whole_pct}% because layers move whole (the next one did not fit)")
    return f"{head}: " + ", ".join(reasons) if reasons else head
