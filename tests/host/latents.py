"""Reading what the server saved: latents (SaveLatent) and images (SaveImage)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from comfy_host import ComfyHost, outputs_of
import workflows


def saved_latent(host: ComfyHost, entry: dict) -> torch.Tensor:
    (item,) = outputs_of(entry, workflows.SAVE_LATENT, "latents")
    return load_file(str(host.output_path(item)))["latent_tensor"]


def saved_image(host: ComfyHost, entry: dict) -> np.ndarray:
    (item,) = outputs_of(entry, workflows.SAVE_IMAGE, "images")
    with Image.open(host.output_path(item)) as image:
        return np.asarray(image.convert("RGB"))
