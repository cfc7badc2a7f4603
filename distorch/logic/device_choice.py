"""The device a DisTorch loader node chose, for the host's device functions to return while that
node loads (``model_management_mgpu`` wraps ``get_torch_device``, ``text_encoder_device`` and
``vae_device`` to read it). A ContextVar: it holds only inside ``device_override``'s block and
only in the thread (or task) running it, so core nodes elsewhere never see it."""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType

ROLES = ("compute", "text_encoder", "vae")
_NO_OVERRIDE: Mapping = MappingProxyType({})
_chosen_devices: contextvars.ContextVar[Mapping] = contextvars.ContextVar("distorch_device_override",
                                                                          default=_NO_OVERRIDE)


@contextlib.contextmanager
def device_override(*, compute=None, text_encoder=None, vae=None) -> Iterator[None]:
    """Make the host's device functions return these devices (None = host's choice) in this block."""
    chosen = {role: device for role, device in
              (("compute", compute), ("text_encoder", text_encoder), ("vae", vae)) if device is not None}
    token = _chosen_devices.set(MappingProxyType(chosen))
    try:
        yield
    finally:
        _chosen_devices.reset(token)


def chosen_device(role: str):
    """The device chosen for ``role`` in the current block, or None (the host's choice)."""
    return _chosen_devices.get().get(role)
