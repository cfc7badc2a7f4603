"""Small helpers for loaders that have no DisTorch class of their own (text encoder triples and
quadruples, CLIP vision, ControlNet, checkpoints with per-part splits): run the core loader, record
the placement and split through the DisTorch loaders' path (nodes/loaders.py). Nothing here copies a
core loader; each is called as ComfyUI registered it.
"""
from __future__ import annotations

import dataclasses
import re

import nodes as core_nodes

from ..distorch.logic.placement_record import attach, placement_of
from ..model_management_mgpu import patchers_in


def core_class(name: str):
    """The class ComfyUI registered under ``name`` (None where this ComfyUI has no such node)."""
    return core_nodes.NODE_CLASS_MAPPINGS.get(name)


def call_core(name: str, **inputs) -> tuple:
    """Run core node ``name`` with ``inputs`` and return its outputs as a tuple. V1 nodes are called
    through their FUNCTION; V3 nodes (``io.ComfyNode``, e.g. TripleCLIPLoader) through ``execute``."""
    cls = core_class(name)
    if cls is None:
        raise RuntimeError(f"this ComfyUI has no '{name}' node, which this node loads through; update ComfyUI")
    if hasattr(cls, "GET_SCHEMA") and callable(getattr(cls, "execute", None)):
        output = cls.execute(**inputs)
        return tuple(getattr(output, "args", output))
    return tuple(getattr(cls(), cls.FUNCTION)(**inputs))


class PatcherSlot:
    """Gives a holder whose ModelPatcher lives under another attribute (a ControlNet's
    ``control_model_wrapped``) the ``.patcher`` the split step reads and replaces."""

    def __init__(self, owner, attribute: str):
        self._owner = owner
        self._attribute = attribute

    @property
    def patcher(self):
        return getattr(self._owner, self._attribute)

    @patcher.setter
    def patcher(self, value):
        setattr(self._owner, self._attribute, value)


def patcher_of(holder):
    """The ModelPatcher a loader output carries: a MODEL is one; CLIP, VAE and CLIP vision hold
    ``.patcher``; a ControlNet holds ``.control_model_wrapped``."""
    if hasattr(holder, "attachments"):
        return holder
    for attribute in ("patcher", "control_model_wrapped"):
        patcher = getattr(holder, attribute, None)
        if patcher is not None and hasattr(patcher, "attachments"):
            return patcher
    return None


def restamp(outputs, loader: str) -> None:
    """Say in each output's placement record which node loaded it (a model reused from the
    keep_loaded holder keeps the record of the node that loaded it first). Whether it is kept is
    not recorded here: the retention record says it."""
    found = list(patchers_in(outputs))
    found += [p for p in (patcher_of(o) for o in outputs or ()) if p is not None and p not in found]
    for patcher in found:
        placement = placement_of(patcher)
        if placement is not None and placement.loader != loader:
            attach(patcher, dataclasses.replace(placement, loader=loader))


_LEADING_INPUT = re.compile(r"^([a-z_/]+):")


def renamed(message: str, names: dict[str, str]) -> str:
    """``message`` with the input it starts with ("allocation: ...") given the node's own name for
    it ("expert_mode_allocations: ...")."""
    match = _LEADING_INPUT.match(message)
    if match and match.group(1) in names:
        return names[match.group(1)] + message[match.end(1):]
    return message
