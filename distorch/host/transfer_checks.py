"""Transfers of offloaded weights on CUDA: checked once per compute device before the first split
is planned there.

The copies themselves are the host's: ``comfy.ops`` casts each offloaded layer on its offload
stream (``NUM_STREAMS`` > 0, the default on NVIDIA) from pinned host memory (``pin_memory``,
which the split uses for CPU donors). Here: a pinned host-to-device copy on a side stream must
round-trip exactly; if it does not, the host's offload streams are turned off (synchronous
copies) with one log line. That change is recorded on the ``TransferChecks`` object that made it
and ``restore()`` puts the host's value back. Pinned memory turned off in the host, and donor GPUs
without peer-to-peer access, are reported once per compute device too."""
from __future__ import annotations

import logging

import torch

log = logging.getLogger("distorch.streaming")


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


class TransferChecks:
    """The checks' results per compute device, and the host settings they changed (so that they can
    be put back). One instance per owner (the split runtime); nothing is kept at module level."""

    def __init__(self, registry=None):
        self.streams_in_use: dict[str, bool] = {}      # compute device -> asynchronous copies in use
        self._donors_reported: set[str] = set()
        self._changed: list[tuple[object, str, object]] = []  # (host module, attribute, previous value)
        self.registry = registry  # the runtime's patch registry: each host change is recorded there too

    def check_streams(self, compute: str, host_mm) -> bool:
        """Once per compute device, before its first plan (the planner reads ``NUM_STREAMS``);
        returns whether asynchronous copies are in use there."""
        device = torch.device(compute)
        if device.type != "cuda" or not torch.cuda.is_available():
            return False
        if compute not in self.streams_in_use:
            streams = (getattr(host_mm, "NUM_STREAMS", 0) or 0) > 0
            if streams:
                streams, why = stream_copy_works(device)
                if not streams:
                    self._set(host_mm, "NUM_STREAMS", 0)
                    log.warning("comfyui-distorch: side-stream copies to %s failed a start-up check (%s); offloaded "
                                "weights are copied synchronously (slower, same results)", compute, why)
            self.streams_in_use[compute] = streams
        return self.streams_in_use[compute]

    def report_donors(self, compute: str, donors: list[str], host_mm) -> None:
        """Once per compute device: say what makes its donors' copies slower than they could be."""
        device = torch.device(compute)
        if device.type != "cuda" or not torch.cuda.is_available() or compute in self._donors_reported:
            return
        self._donors_reported.add(compute)
        if getattr(host_mm, "MAX_PINNED_MEMORY", 0) <= 0 and "cpu" in donors:
            log.info("comfyui-distorch: ComfyUI's pinned memory is off, so CPU-held weights are copied from pageable "
                     "memory (about half the speed); drop --disable-pinned-memory to pin them")
        for donor in donors:
            other = torch.device(donor)
            if other.type == "cuda" and other != device and not torch.cuda.can_device_access_peer(device, other):
                log.info("comfyui-distorch: %s cannot read %s peer-to-peer; its weights travel through host memory",
                         compute, donor)

    def restore(self) -> None:
        """Put back every host setting these checks changed, newest first, and forget the results
        (the next split checks again)."""
        while self._changed:
            module, name, previous = self._changed.pop()
            setattr(module, name, previous)
        self.streams_in_use.clear()
        self._donors_reported.clear()

    def _set(self, module, name: str, value) -> None:
        previous = getattr(module, name)
        self._changed.append((module, name, previous))
        setattr(module, name, value)
        if self.registry is not None:
            self.registry.add(f"{getattr(module, '__name__', module)}.{name} = {value!r}",
                              lambda: setattr(module, name, previous))
