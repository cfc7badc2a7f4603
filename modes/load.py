"""A mode -> MODEL / CLIP / VAE, through the same path as the DisTorch loaders: the host's own
loading function inside ``device_override``, a placement record on every part, errors explained
by ``distorch.logic.load_failure``. LoRAs are applied with the host's ``load_lora_for_models`` (what the core
LoraLoader does); a LoRA the header check marked as made for another base is skipped with a
warning instead of failing the prompt.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..distorch.host import load_pipeline
from ..distorch.logic.dtypes import WEIGHT_DTYPES
from ..distorch.logic.placement_record import whole_size
from .schema import ModeSpec

log = logging.getLogger("distorch.modes")
NODE_CLASS = "DisTorchModeSwitch"


@dataclass
class LoadedMode:
    spec: ModeSpec
    fingerprint: str
    model: object
    clip: object
    vae: object
    size_bytes: int
    warnings: list[str] = field(default_factory=list)


def _size(*patchers) -> int:
    total = 0
    for patcher in patchers:
        if patcher is not None and hasattr(patcher, "model_size"):
            total += whole_size(patcher)
    return total


def weight_model_options(weight_dtype: str) -> dict:
    """The host's model_options for a weight_dtype choice (what its UNETLoader passes)."""
    import torch

    stored = WEIGHT_DTYPES.get(weight_dtype)
    if stored is None:
        return {}
    torch_name, fast = stored
    options = {"dtype": getattr(torch, torch_name)}
    if fast:
        options["fp8_optimizations"] = True
    return options


def load_mode(spec: ModeSpec, pipeline) -> LoadedMode:
    """Read the mode's files and build its models (the cold path; the cache decides when)."""
    import comfy.diffusers_load
    import comfy.sd
    import comfy.utils
    import folder_paths

    from .detection import detect_model

    fingerprint = spec.fingerprint()
    warnings: list[str] = []
    kind = "checkpoint"
    try:
        kind = detect_model(spec.model_file).kind
    except Exception:  # unreadable headers are explained by the load failure below
        pass
    options = weight_model_options(spec.weight_dtype)
    # The same request as DisTorchCheckpointLoader's: the mode's device and allocation for the
    # diffusion model (fraction form: donor cpu), CLIP and VAE where the host would put them.
    parts = [load_pipeline.part_request("unet", spec.compute_device, f"modes.{spec.name}.compute_device",
                                   (0.0, "cpu", spec.allocation) if spec.allocation else None)]
    if kind != "diffusion_model":
        parts += [load_pipeline.part_request("clip", "default"), load_pipeline.part_request("vae", "default")]
    checked = (spec.model_file,)
    if kind == "diffusers":
        from ..distorch.host.assets import ensure_assets
        from ..distorch.host.diffusers_folder import read_layout

        # configs first, never weights; offline as the environment says (DISTORCH_OFFLINE, HF_HUB_OFFLINE)
        ensure_assets(spec.model_file, parts=("unet", "vae", "text_encoder", "text_encoder_2"))
        checked = (str(read_layout(spec.model_file, f"modes.{spec.name}.model").weights["unet"]),)
    request = load_pipeline.build_request(NODE_CLASS, f"{spec.name}: {spec.model}", False, parts,
                                     load_pipeline.FileCheck("checkpoints", (spec.model,), "checkpoint",
                                                        f"mode '{spec.name}'", paths=checked),
                                     name=f"mode '{spec.name}'")

    def host_load():
        if kind == "diffusers":
            return comfy.diffusers_load.load_diffusers(
                spec.model_file, embedding_directory=folder_paths.get_folder_paths("embeddings"))
        if kind == "diffusion_model":
            return comfy.sd.load_diffusion_model(spec.model_file, model_options=options), None, None
        out = comfy.sd.load_checkpoint_guess_config(
            spec.model_file, output_vae=True, output_clip=True,
            embedding_directory=folder_paths.get_folder_paths("embeddings"), model_options=options)
        return out[:3]

    # Placed and recorded before the LoRAs: their clones copy the record (clone keeps attachments).
    model, clip, vae = pipeline.load(request, host_load, ("unet", "clip", "vae"))
    if kind == "diffusion_model":
        warnings.append(f"mode '{spec.name}': '{spec.model}' is a diffusion model without text encoder "
                        "or VAE: the CLIP and VAE outputs are empty")
    for lora in spec.loras:
        if lora.skip_reason:
            warnings.append(f"mode '{spec.name}': LoRA '{lora.path}' skipped: it is {lora.skip_reason}")
            continue
        try:
            data = comfy.utils.load_torch_file(lora.file, safe_load=True)
            model, clip = comfy.sd.load_lora_for_models(model, clip, data, lora.strength, lora.strength_clip)
        except Exception as exc:  # a LoRA that does not apply must not take the mode down
            warnings.append(f"mode '{spec.name}': LoRA '{lora.path}' skipped: it could not be applied ({exc})")
    if spec.attention != "default":
        from ..distorch.host.attention import with_attention

        model = with_attention(model, spec.attention)
        log.info("mode '%s': its diffusion model runs attention '%s'", spec.name, spec.attention)
    if spec.vae_tiling is not None and vae is not None:
        from ..distorch.host.vae_tiling import tiled_vae

        vae = tiled_vae(vae, *spec.vae_tiling)
        log.info("mode '%s': its VAE decodes in tiles of %d px overlapping by %d px", spec.name, *spec.vae_tiling)
    for warning in warnings:
        log.warning("%s", warning)
    size = _size(model, getattr(clip, "patcher", None), getattr(vae, "patcher", None))
    return LoadedMode(spec, fingerprint, model, clip, vae, size, warnings)
