"""The allocation grammar: one parser for every form users write.

    bytes     cuda:0,2.5gb;cuda:1,3g;cpu,*     budgets per device; '*' = the rest (at most once)
    ratio     cuda:0,25%;cpu,75%                shares of the model; '*' may take the rest
    fraction  0.8                               legacy: share kept on the compute device, rest on
                                                the donor
    ''/'0'                                      no split

Units are binary and case-insensitive: b, k/kb/kib, m/mb/mib, g/gb/gib, t/tb/tib (1 g = 1 GiB).
Each entry is ``device,amount``: the device is everything before the comma, so a device name is
never read as a unit (``mps``, ``mlu``, ``directml`` contain unit letters).
Pure: device names are checked against a list passed in.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .devices import DeviceNameError, canonical_device
from .errors import shown_by_name

UNITS = {"b": 1}
for _index, _letter in enumerate("kmgt", start=1):
    for _suffix in (_letter, _letter + "b", _letter + "ib"):
        UNITS[_suffix] = 1024 ** _index
UNIT_HELP = "b, kb, mb, gb, tb (binary: 1 gb = 1 GiB)"
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_BYTES = re.compile(rf"^{_NUMBER}\s*([a-z]*)$")
_PERCENT = re.compile(rf"^{_NUMBER}\s*%$")
_FRACTION = re.compile(rf"^{_NUMBER}$")

REST = "*"


@shown_by_name
class AllocationError(ValueError):
    """A malformed or impossible allocation string; the message points at the bad token."""


@dataclass(frozen=True)
class Share:
    device: str
    kind: str      # "bytes", "percent" or "rest"
    amount: float  # bytes, or percent of the model; 0 for "rest"


@dataclass(frozen=True)
class Allocation:
    form: str                       # "bytes", "ratio" or "fraction"
    shares: tuple[Share, ...] = ()
    fraction: float | None = None   # the legacy form's share on the compute device

    def budgets(self, model_bytes: int, compute_device: str, donor_device: str | None = None) -> dict[str, int]:
        """Bytes of this model each device should hold, in the order the user wrote them."""
        if self.form == "fraction":
            if donor_device is None:
                raise AllocationError("allocation: the fraction form needs a donor device (donor_device)")
            on_compute = round(model_bytes * self.fraction)
            return {compute_device: on_compute, donor_device: model_bytes - on_compute}
        budgets: dict[str, int] = {}
        for share in self.shares:
            if share.kind == "bytes":
                budgets[share.device] = int(share.amount)
            elif share.kind == "percent":
                budgets[share.device] = round(model_bytes * share.amount / 100)
        for share in self.shares:
            if share.kind == "rest":
                budgets[share.device] = max(0, model_bytes - sum(budgets.values()))
        return {share.device: budgets[share.device] for share in self.shares}


def _fail(text: str, position: int, token: str, problem: str, input_name: str) -> AllocationError:
    return AllocationError(f"{input_name}: {problem} at character {position + 1} ('{token}') of '{text}'. "
                           "Write device,amount pairs separated by ';', e.g. 'cuda:0,2.5gb;cpu,*' or "
                           "'cuda:0,25%;cpu,75%', or a fraction like '0.8'.")


def parse_allocation(text: str | None, available: list[str], input_name: str = "allocation") -> Allocation | None:
    """Parse and validate; None means "no split". Raises AllocationError naming the bad token."""
    raw = "" if text is None else str(text)
    stripped = raw.strip()
    if stripped in ("", "0", "0.0"):
        return None
    if "," not in stripped and ";" not in stripped:
        match = _FRACTION.match(stripped)
        if not match:
            raise _fail(raw, raw.find(stripped), stripped, "not a fraction or a device,amount pair", input_name)
        value = float(match.group(1))
        if value == 0:  # '0.00', '.0': the same "no split" as '0'
            return None
        if not 0 < value <= 1:
            raise _fail(raw, raw.find(stripped), stripped,
                        "a fraction must be above 0 and at most 1 (the share kept on the compute device)",
                        input_name)
        return Allocation("fraction", fraction=value)

    shares: list[Share] = []
    offset = 0
    for entry in raw.split(";"):
        start = offset + (len(entry) - len(entry.lstrip()))
        offset += len(entry) + 1
        token = entry.strip()
        if not token:
            if shares:
                continue  # tolerate a trailing ';' (and ';;' after an entry)
            raise _fail(raw, start, token, "empty entry (no device,amount before this ';')", input_name)
        device_text, comma, amount_text = token.partition(",")
        if not comma:
            raise _fail(raw, start, token, "missing ',amount' after the device", input_name)
        try:
            device = canonical_device(device_text, available, input_name)
        except DeviceNameError as exc:
            raise _fail(raw, start, device_text.strip(), str(exc).split(": ", 1)[-1].rstrip("."), input_name) from None
        if any(s.device == device for s in shares):
            raise _fail(raw, start, token, f"device '{device}' appears twice", input_name)
        amount_start = start + len(device_text) + 1 + len(amount_text) - len(amount_text.lstrip())
        shares.append(_parse_amount(raw, amount_start, amount_text.strip(), device, input_name))

    kinds = {s.kind for s in shares}
    if "bytes" in kinds and "percent" in kinds:
        raise AllocationError(f"{input_name}: '{raw}' mixes byte sizes and percentages; use one form "
                              "(with '*' for the rest if you like)")
    rests = [s for s in shares if s.kind == "rest"]
    if len(rests) > 1:
        raise AllocationError(f"{input_name}: '{raw}' uses '*' (the rest) {len(rests)} times; at most once")
    if "percent" in kinds:
        total = sum(s.amount for s in shares if s.kind == "percent")
        if total > 100.0001 or (not rests and abs(total - 100) > 0.0001):
            raise AllocationError(f"{input_name}: the percentages in '{raw}' add up to {total:g}%; they must "
                                  "add up to 100% (or less, with '*' taking the rest)")
        return Allocation("ratio", tuple(shares))
    return Allocation("bytes", tuple(shares))


def _parse_amount(raw: str, position: int, amount: str, device: str, input_name: str) -> Share:
    lowered = amount.lower()
    if lowered == REST:
        return Share(device, "rest", 0.0)
    percent = _PERCENT.match(lowered)
    if percent:
        value = float(percent.group(1))
        if value > 100:
            raise _fail(raw, position, amount, "a percentage above 100", input_name)
        return Share(device, "percent", value)
    size = _BYTES.match(lowered)
    if not size:
        raise _fail(raw, position, amount, f"'{amount}' is not an amount (a size like 2.5gb, a percentage "
                                           "like 25%, or *)", input_name)
    number, unit = size.groups()
    if not unit:
        raise _fail(raw, position, amount, f"'{amount}' has no unit; add one of {UNIT_HELP}", input_name)
    if unit not in UNITS:
        raise _fail(raw, position, amount, f"unknown unit '{unit}'; use {UNIT_HELP}", input_name)
    size_bytes = float(number) * UNITS[unit]
    if not math.isfinite(size_bytes):
        raise _fail(raw, position, amount, f"'{amount}' is too large to be a size", input_name)
    return Share(device, "bytes", float(int(size_bytes)))
