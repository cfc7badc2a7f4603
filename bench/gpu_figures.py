"""Figures shared by bench_split.py and the GPU probes (tests/host/gpu_*_probe.py): synthetic
conditioning (no text encoder: the figures are about the diffusion model), what a split model holds
where, the pinned host-to-device bandwidth, and how much of the host-to-device copying a profile
shows running while kernels run.

Everything here takes ``torch`` (and the model) as arguments: nothing is imported or kept at
module level, so the pure parts are tested on any machine (tests/unit/test_gpu_figures.py).
"""
from __future__ import annotations

import bisect
import json
import math
from pathlib import Path

MiB = 2**20
# Model families the probes and the benchmark sample: latent channels, text context width and
# length, and what else the host's model reads from the conditioning.
FAMILIES = {
    "sd15": {"latent_channels": 4, "context": (77, 768)},
    "flux": {"latent_channels": 16, "context": (256, 4096), "pooled": 768, "guidance": 3.5},
}


def synthetic_conditioning(torch, family: str, context_tokens: int | None = None, seed: int = 0):
    """(positive, negative) in ComfyUI's conditioning format, seeded (the same on every machine):
    what a text encoder would hand the sampler, without running one."""
    spec = FAMILIES[family]
    tokens, width = spec["context"]
    tokens = context_tokens or tokens
    generator = torch.Generator().manual_seed(seed)

    def one():
        extras = {}
        if "pooled" in spec:
            extras["pooled_output"] = torch.randn(1, spec["pooled"], generator=generator)
        if "guidance" in spec:
            extras["guidance"] = spec["guidance"]
        return [[torch.randn(1, tokens, width, generator=generator), extras]]

    return one(), one()


def empty_latent(torch, family: str, size: int) -> dict:
    """An empty latent for a ``size`` x ``size`` image (what EmptyLatentImage / EmptySD3LatentImage give)."""
    return {"samples": torch.zeros(1, FAMILIES[family]["latent_channels"], size // 8, size // 8)}


def tensor_bytes(tensor) -> int:
    return tensor.nelement() * tensor.element_size()


def placed_bytes(model, plan) -> dict[str, int]:
    """Bytes each device really holds of the modules the plan placed, read from the tensors
    themselves (device name -> bytes). Compare with ``plan.device_bytes`` mapped to devices."""
    modules = dict(model.named_modules())
    held: dict[str, int] = {}
    for name in plan.assignment:
        for tensor in modules[name].state_dict().values():
            device = str(tensor.device)
            held[device] = held.get(device, 0) + tensor_bytes(tensor)
    return held


def planned_bytes_by_device(plan, slot_device) -> dict[str, int]:
    """The plan's bytes per device (donor slots on the compute device folded into it)."""
    held: dict[str, int] = {}
    for slot, size in plan.device_bytes.items():
        device = slot_device(slot)
        held[device] = held.get(device, 0) + size
    return {device: size for device, size in held.items() if size}


def donor_pinning(model, offloaded: dict[str, str]) -> dict:
    """Of the tensors the split moved to the CPU: how many, how many pinned, a few that are not."""
    modules = dict(model.named_modules())
    count, pinned, unpinned = 0, 0, []
    for name, device in offloaded.items():
        if device != "cpu":
            continue
        for key, tensor in modules[name].state_dict().items():
            count += 1
            if tensor.is_pinned():
                pinned += 1
            elif len(unpinned) < 5:
                unpinned.append(f"{name}.{key}")
    return {"tensors": count, "pinned": pinned, "unpinned_examples": unpinned}


def largest_offloaded_module(model, offloaded) -> int:
    modules = dict(model.named_modules())
    return max((sum(tensor_bytes(t) for t in modules[name].state_dict().values()) for name in offloaded), default=0)


def pinned_h2d_bandwidth(torch, device="cuda:0", size=512 * MiB, repeats=5) -> float:
    """Bytes per second of a pinned host-to-device copy, best of ``repeats`` (CUDA events)."""
    host = torch.empty(size, dtype=torch.uint8).pin_memory()
    host.random_(0, 255)  # not zeros: see METHOD.md's warning about timing on zeros
    target = torch.empty(size, dtype=torch.uint8, device=device)
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(host, non_blocking=True)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    del host, target
    return size / best


# -- profiles ------------------------------------------------------------------------------------

def _merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _covered(start: float, end: float, merged: list[tuple[float, float]], starts: list[float]) -> float:
    """Length of [start, end) covered by the disjoint sorted intervals ``merged``."""
    total = 0.0
    index = max(0, bisect.bisect_right(starts, start) - 1)
    while index < len(merged) and merged[index][0] < end:
        low, high = max(start, merged[index][0]), min(end, merged[index][1])
        total += max(0.0, high - low)
        index += 1
    return total


def copy_kernel_overlap(events: list[dict]) -> dict:
    """From a profile's trace events (torch.profiler's Chrome trace, ``traceEvents``): the
    host-to-device copies, their bytes (by source: pinned or pageable), and how much of their
    time ran while a kernel ran on another stream. Copies serialised with the kernels (one stream)
    overlap nothing; copies on the host's offload streams overlap the layers computing meanwhile.
    ``overlap_fraction`` is None when the profile holds no host-to-device copy."""
    copies, kernels = [], []
    total_bytes = pinned_bytes = pageable_bytes = 0
    for event in events:
        if event.get("ph") != "X" or "dur" not in event:
            continue
        category, name = event.get("cat", ""), event.get("name", "")
        args = event.get("args") or {}
        interval = (float(event["ts"]), float(event["ts"]) + float(event["dur"]), args.get("stream"))
        if category == "kernel":
            kernels.append(interval)
        elif category == "gpu_memcpy" and "HtoD" in name:
            copies.append(interval)
            size = int(args.get("bytes", 0) or 0)
            total_bytes += size
            if "Pageable" in name:
                pageable_bytes += size
            elif "Pinned" in name:
                pinned_bytes += size
    copy_time = sum(end - start for start, end, _ in copies)
    overlapped = 0.0
    for stream in {stream for _, _, stream in copies}:
        others = _merged([(start, end) for start, end, kernel_stream in kernels if kernel_stream != stream])
        starts = [start for start, _ in others]
        overlapped += sum(_covered(start, end, others, starts)
                          for start, end, copy_stream in copies if copy_stream == stream)
    kernel_time = sum(end - start for start, end in _merged([(s, e) for s, e, _ in kernels]))
    return {
        "copies": len(copies),
        "copy_streams": sorted({str(stream) for _, _, stream in copies}),
        "kernels": len(kernels),
        "copy_us": round(copy_time, 1),
        "kernel_busy_us": round(kernel_time, 1),
        "overlapped_copy_us": round(overlapped, 1),
        "overlap_fraction": round(overlapped / copy_time, 4) if copy_time else None,
        "htod_bytes": total_bytes,
        "pinned_htod_bytes": pinned_bytes,      # the profiler names the source memory of each copy;
        "pageable_htod_bytes": pageable_bytes,  # what it names neither is in htod_bytes only
    }


def profile_overlap(torch, run, trace_path: Path) -> dict:
    """Run ``run()`` once under torch.profiler (CUDA activity where there is CUDA) and measure
    the copy / kernel overlap of its trace. On a CPU-only machine the trace holds no copies."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    prof.export_chrome_trace(str(trace_path))
    events = json.loads(Path(trace_path).read_text()).get("traceEvents", [])
    return copy_kernel_overlap(events)


def all_finite(values) -> bool:
    return all(math.isfinite(v) for v in values)
