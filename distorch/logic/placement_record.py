"""The placement record that travels with a loaded model.

It is stored in the ModelPatcher's ``attachments`` (copied by ``clone()``), so every clone a
workflow makes of a DisTorch model still says where it belongs and whether it may be unloaded.
Nothing here is module-level state: the model carries it.
"""
from __future__ import annotations

from dataclasses import dataclass

ATTACHMENT_KEY = "distorch.placement"


@dataclass(frozen=True)
class PlacementRecord:
    loader: str            # node class that loaded it, e.g. "DisTorchUNETLoader"
    component: str         # "unet", "clip", "vae", "controlnet" or "clip_vision"
    compute_device: str    # the device it runs on, as torch names it ("cpu", "cuda:0")
    requested_device: str  # what the user chose ("default" or a device name)
    source: str            # file name as the user picked it


def attach(patcher, placement: PlacementRecord) -> None:
    """Record ``placement`` on a ModelPatcher (or anything with an ``attachments`` dict)."""
    attachments = getattr(patcher, "attachments", None)
    if attachments is None:
        raise TypeError(f"{type(patcher).__name__} has no 'attachments': this ComfyUI is too old for comfyui-distorch")
    attachments[ATTACHMENT_KEY] = placement


def placement_of(patcher) -> PlacementRecord | None:
    attachments = getattr(patcher, "attachments", None) or {}
    found = attachments.get(ATTACHMENT_KEY)
    return found if isinstance(found, PlacementRecord) else None


def whole_size(patcher) -> int:
    """A model's weight bytes in all, split or not (what it holds in RAM when unloaded): a split
    model's ``model_size()`` counts only its compute device's share."""
    whole = getattr(patcher, "whole_model_size", None) or patcher.model_size
    return int(whole())
