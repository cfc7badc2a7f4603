"""A diffusers-format model folder, read before any weight is: which pipeline, which parts, which
weight file of each part the host's loader will read. Pure (json and paths only).

ComfyUI's own diffusers loader (``comfy.diffusers_load.load_diffusers``) reads ``unet/``,
``vae/``, ``text_encoder/`` and ``text_encoder_2/``, taking the first weight file it finds in each
in the order below; it has no path for ``transformer/`` folders (SD3, Flux, ... pipelines), which
are refused here with what to do instead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..logic.errors import shown_by_name

# the host's own search order (comfy/diffusers_load.py)
DIFFUSION_WEIGHTS = ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
                     "diffusion_pytorch_model.fp16.bin", "diffusion_pytorch_model.bin")
TEXT_ENCODER_WEIGHTS = ("model.fp16.safetensors", "model.safetensors", "pytorch_model.fp16.bin", "pytorch_model.bin")
HOST_PARTS = {"unet": DIFFUSION_WEIGHTS, "vae": DIFFUSION_WEIGHTS, "text_encoder": TEXT_ENCODER_WEIGHTS,
              "text_encoder_2": TEXT_ENCODER_WEIGHTS}


@shown_by_name
class FolderError(ValueError):
    """The folder is not one the host's diffusers loader can read; the message says why and what to do."""


@dataclass(frozen=True)
class DiffusersLayout:
    folder: Path
    pipeline: str                      # model_index.json's _class_name, "" when it names none
    weights: dict[str, Path]           # part -> the weight file the host reads

    @property
    def text_encoders(self) -> list[str]:
        return [part for part in ("text_encoder", "text_encoder_2") if part in self.weights]


def first_file(folder: Path, names) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def read_layout(folder: Path, input_name: str = "model_path") -> DiffusersLayout:
    """The layout of ``folder``, or FolderError naming what is wrong with it."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        raise FolderError(f"{input_name}: '{folder}' has no model_index.json, so it is not a diffusers-format "
                          "folder; give a folder saved by diffusers (save_pretrained or a hub download)") from None
    except (OSError, ValueError) as exc:
        raise FolderError(f"{input_name}: {index_path} could not be read as JSON ({exc}); download it again") from None
    if not isinstance(index, dict):
        raise FolderError(f"{input_name}: {index_path} is not a JSON object; download it again")
    pipeline = str(index.get("_class_name") or "")
    if "transformer" in index or (folder / "transformer").is_dir():
        raise FolderError(
            f"{input_name}: '{folder.name}' is a {pipeline or 'transformer-based'} folder (transformer/); "
            "ComfyUI's diffusers loader reads UNet folders only (Stable Diffusion 1.x / 2.x, SDXL and their "
            "variants). Load transformer/diffusion_pytorch_model*.safetensors with 'Load Diffusion Model "
            "(DisTorch)' and the text encoders with the CLIP loaders, or use a single-file checkpoint")
    weights = {}
    for part, names in HOST_PARTS.items():
        listed = part in index and isinstance(index[part], list) and index[part][:1] != [None]
        found = first_file(folder / part, names)
        if found is not None:
            weights[part] = found
        elif listed and part != "text_encoder_2":
            raise FolderError(f"{input_name}: '{folder.name}/{part}/' has no weights ({' or '.join(names[:2])}); "
                              "the folder is incomplete: download that part's weights again")
    for part in ("unet", "vae", "text_encoder"):
        if part not in weights:
            raise FolderError(f"{input_name}: '{folder.name}' has no {part}/ weights ({HOST_PARTS[part][1]}); "
                              "ComfyUI's diffusers loader needs unet/, vae/ and text_encoder/")
    return DiffusersLayout(folder, pipeline, weights)


def find_folder(name: str, input_name: str = "model_path") -> Path:
    """The folder ``name`` under one of ComfyUI's diffusers folders (as the core loader looks)."""
    import folder_paths

    for search_path in folder_paths.get_folder_paths("diffusers"):
        candidate = Path(search_path) / name
        if candidate.is_dir():
            return candidate
    raise FolderError(f"{input_name}: '{name}' is not a folder under models/diffusers; pick one the list offers "
                      "(folders holding a model_index.json)")
