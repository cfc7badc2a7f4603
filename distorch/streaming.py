"""Transfers of offloaded weights on CUDA: checked once per device before the first split runs.

The copies themselves are the host's: ``comfy.ops`` casts each offloaded layer on its offload
stream (``NUM_STREAMS`` > 0, the default on NVIDIA) from pinned host memory (``pin_memory``,
which the split uses for CPU donors). Here: a pinned host-to-device copy on a side stream must
round-trip exactly; if it does not, the host's offload streams are turned off (synchronous
copies) with one log line. Pinned memory turned off in the host, and donor GPUs without
peer-to-peer access, are reported once too."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger("distorch.streaming")
_checked: dict[str, bool] = {}


def stream_copy_works(device: torch.device) -> tuple[bool, str]:
    """A pinned copy to ``device`` on a side stream, ordered before a read on the current stream."""
    try:
        host = torch.arange(1 << 16, dtype=torch.float32).pin_memory()
        stream = torch.cuda.Stream(device=device)
        with torch.cuda.stream(stream):
            copied = host.to(device, non_blocking=True)
        torch.cuda.current_stream(device).wait_stream(stream)
        same = bool(torch.equal(copied.cpu(), host))
        return same, "" if same else "the copied data differed"
    except Exception as exc:  # driver / runtime refusals
        return False, f"{type(exc).__name__}: {exc}"


def check_transfers(compute: str, donors: list[str], host_mm) -> bool:
    """Once per compute device; returns whether asynchronous copies are in use."""
    device = torch.device(compute)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    if compute not in _checked:
        streams = getattr(host_mm, "NUM_STREAMS", 0) > 0
        if streams:
            streams, why = stream_copy_works(device)
            if not streams:
                host_mm.NUM_STREAMS = 0
                log.warning("comfyui-distorch: side-stream copies to %s failed a start-up check (%s); offloaded "
                            "weights are copied synchronously (slower, same results)", compute, why)
        if getattr(host_mm, "MAX_PINNED_MEMORY", 0) <= 0 and "cpu" in donors:
            log.info("comfyui-distorch: ComfyUI's pinned memory is off, so CPU-held weights are copied from pageable "
                     "memory (about half the speed); drop --disable-pinned-memory to pin them")
        for donor in donors:
            other = torch.device(donor)
            if other.type == "cuda" and other != device and not torch.cuda.can_device_access_peer(device, other):
                log.info("comfyui-distorch: %s cannot read %s peer-to-peer; its weights travel through host memory",
                         compute, donor)
        _checked[compute] = streams
    return _checked[compute]
