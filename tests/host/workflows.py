"""API-format workflow builders (what the UI's "Export (API)" produces)."""
from __future__ import annotations

CHECKPOINT = "distorch-test-sd15.safetensors"
UNET = "distorch-test-unet.safetensors"
CLIP = "distorch-test-clip-l.safetensors"
VAE = "distorch-test-vae.safetensors"

SAVE_IMAGE = "9"
SAVE_LATENT = "10"


def checkpoint_loader(kind: str, ckpt: str = CHECKPOINT, **placement) -> dict:
    if kind == "core":
        return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
    inputs = {"ckpt_name": ckpt, "compute_device": "default", "clip_device": "default",
              "vae_device": "default", "keep_loaded": False, **placement}
    return {"1": {"class_type": "DisTorchCheckpointLoader", "inputs": inputs}}


def separate_loaders(kind: str, unet: str = UNET, clip: str = CLIP, vae: str = VAE, **placement) -> dict:
    """Nodes 1 (MODEL), 2 (CLIP), 3 (VAE) from the UNET / CLIP / VAE loaders."""
    if kind == "core":
        return {
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
            "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": clip, "type": "stable_diffusion"}},
            "3": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        }
    common = {"compute_device": "default", "keep_loaded": False, **placement}
    return {
        "1": {"class_type": "DisTorchUNETLoader",
              "inputs": {"unet_name": unet, "weight_dtype": "default", **common}},
        "2": {"class_type": "DisTorchCLIPLoader",
              "inputs": {"clip_name": clip, "type": "stable_diffusion", **common}},
        "3": {"class_type": "DisTorchVAELoader", "inputs": {"vae_name": vae, **common}},
    }


def txt2img(loaders: dict, model=("1", 0), clip=("1", 1), vae=("1", 2), seed: int = 1, steps: int = 3,
            size: int = 64, prefix: str = "distorch", text: str = "a red cube") -> dict:
    """loaders -> CLIPTextEncode x2 -> EmptyLatentImage -> KSampler -> VAEDecode -> SaveImage,
    plus SaveLatent on the sampler's output so tests can compare latents."""
    graph = dict(loaders)
    graph.update({
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": list(clip)}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": list(clip)}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": list(model), "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0],
            "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": list(vae)}},
        SAVE_IMAGE: {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
        SAVE_LATENT: {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": prefix}},
    })
    return graph


def separate_txt2img(loaders: dict, **kwargs) -> dict:
    return txt2img(loaders, model=("1", 0), clip=("2", 0), vae=("3", 0), **kwargs)


GGUF_UNETS = ("distorch-test-unet-Q8_0.gguf", "distorch-test-unet-Q4_0.gguf")  # tools/make_gguf.py


def gguf_loaders(unet: str, clip: str = CLIP, vae: str = VAE) -> dict:
    """Nodes 1 (MODEL, ComfyUI-GGUF's UnetLoaderGGUF), 2 (CLIP) and 3 (VAE, core loaders)."""
    loaders = separate_loaders("core", clip=clip, vae=vae)
    loaders["1"] = {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": unet}}
    return loaders
