"""``DisTorchModeSwitch``: a named mode from modes.yaml -> MODEL, CLIP, VAE and its defaults.

Thin: the dropdown and the checks ask the modes service; loading goes through ``modes.load``
(the DisTorch loaders' path) and the mode cache.
"""
from __future__ import annotations

from .bound import runtime_of
from .loaders import validation_message

CATEGORY = "DisTorch/modes"
NO_MODES = "(no modes)"


class DisTorchModeSwitch:
    CATEGORY = CATEGORY
    FUNCTION = "switch"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "INT", "INT", "INT", "FLOAT", "STRING")
    RETURN_NAMES = ("MODEL", "CLIP", "VAE", "width", "height", "steps", "cfg", "mode")
    OUTPUT_TOOLTIPS = ("The mode's diffusion model, LoRAs applied.", "The mode's text encoder, LoRAs applied.",
                       "The mode's VAE.", "Default image width (default_size).", "Default image height.",
                       "Default sampling steps (default_steps).", "Default guidance / CFG (default_guidance).",
                       "The mode's name.")
    DESCRIPTION = ("Switch between named model setups from modes.yaml: checkpoint + LoRAs + default size, steps "
                   "and guidance. Wire width / height into Empty Latent Image and steps / cfg into KSampler. "
                   "A mode used recently comes from the cache without reading the disk.")

    @classmethod
    def INPUT_TYPES(cls):
        names = runtime_of(cls).modes.names() or [NO_MODES]
        return {"required": {"mode": (names, {"tooltip": (
            "Mode from modes.yaml (DISTORCH_MODES, or <ComfyUI user directory>/distorch/modes.yaml). The "
            "list follows the file: it reloads when the file is saved. Empty: see GET /distorch/modes for why.")})}}

    @classmethod
    def VALIDATE_INPUTS(cls, mode):
        if not isinstance(mode, str) or runtime_of(cls).modes.spec(mode) is None:
            return validation_message(runtime_of(cls).modes.unknown_mode_message(str(mode)), "mode")
        return True

    @classmethod
    def IS_CHANGED(cls, mode):
        # ComfyUI reuses this node's outputs only while the mode's definition (defaults included)
        # and its files are unchanged.
        spec = runtime_of(cls).modes.spec(mode)
        return spec.signature() if spec is not None else f"missing:{mode}"

    def switch(self, mode):
        spec, loaded, cached = runtime_of(self).modes.activate(mode)
        ui = {"distorch_mode": [{"mode": spec.name, "fingerprint": loaded.fingerprint, "cached": cached,
                                 "width": spec.width, "height": spec.height, "steps": spec.steps,
                                 "cfg": spec.guidance}]}
        if loaded.warnings:
            ui["text"] = list(loaded.warnings)
        return {"ui": ui, "result": (loaded.model, loaded.clip, loaded.vae, spec.width, spec.height, spec.steps,
                                     spec.guidance, spec.name)}


MODE_NODES = {"DisTorchModeSwitch": DisTorchModeSwitch}
MODE_DISPLAY_NAMES = {"DisTorchModeSwitch": "Mode Switch (DisTorch)"}
