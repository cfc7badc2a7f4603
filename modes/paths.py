"""Model and LoRA names in a modes file -> files inside the allowed roots.

Rules (README, "Modes"):
- ``model_root`` set: ``model`` is relative to it (an absolute path must lie inside it).
- otherwise: first a path under ComfyUI's models directory (``checkpoints/x.safetensors``), else a
  name in the ``checkpoints`` folders, then in the ``diffusion_models`` folders, then in the
  ``diffusers`` folders.
- A model may be a diffusers-format folder (one holding ``model_index.json``); a LoRA is a file.
- LoRAs: relative to ``lora_root``; default ``model_root`` when set, else ComfyUI's ``loras`` folders.
- Nothing may resolve outside the roots: ``..`` that climbs out, absolute paths elsewhere and
  links whose target lies outside every root are refused. A root may itself be a link.
Pure: the roots are passed in (``Roots``); nothing here asks ComfyUI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class PathRefused(ValueError):
    """The name cannot be used: missing, or it leaves the roots. The message says which and why."""


@dataclass(frozen=True)
class Roots:
    model_root: Path | None = None
    lora_root: Path | None = None
    models_dir: Path | None = None                      # ComfyUI's models directory
    checkpoint_dirs: tuple[Path, ...] = field(default_factory=tuple)
    diffusion_dirs: tuple[Path, ...] = field(default_factory=tuple)
    diffusers_dirs: tuple[Path, ...] = field(default_factory=tuple)
    lora_dirs: tuple[Path, ...] = field(default_factory=tuple)

    def model_search(self) -> list[tuple[str, Path]]:
        """(label, folder) in the order a model name is looked up."""
        if self.model_root is not None:
            return [("model_root", self.model_root)]
        found = [("ComfyUI models directory", self.models_dir)] if self.models_dir else []
        found += [("checkpoints folder", d) for d in self.checkpoint_dirs]
        found += [("diffusion_models folder", d) for d in self.diffusion_dirs]
        found += [("diffusers folder", d) for d in self.diffusers_dirs]
        return found

    def lora_search(self) -> list[tuple[str, Path]]:
        if self.lora_root is not None:
            return [("lora_root", self.lora_root)]
        if self.model_root is not None:
            return [("model_root", self.model_root)]
        return [("loras folder", d) for d in self.lora_dirs]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _resolve(name: str, search: list[tuple[str, Path]], what: str) -> Path:
    if not isinstance(name, str) or not name.strip():
        raise PathRefused(f"{what} needs a file name, got {name!r}")
    if not search:
        raise PathRefused(f"{what} '{name}': no folder to look in (set model_root / lora_root in the file)")
    try:
        return _lookup(name, search, what)
    except PathRefused:
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # '~nobody/x' (RuntimeError), NUL bytes, names too long
        raise PathRefused(f"{what} {name!r} cannot be a file name here ({exc}); check the spelling") from None


def _lookup(name: str, search: list[tuple[str, Path]], what: str) -> Path:
    real_roots = [_real(folder) for _, folder in search]
    described = ", ".join(f"{label} {folder}" for label, folder in search)
    written = Path(name).expanduser()
    if written.is_absolute():
        candidates = [written]
        if not any(_within(Path(os.path.normpath(written)), root) or _within(_real(written), root)
                   for root in real_roots + [Path(os.path.normpath(f)) for _, f in search]):
            raise PathRefused(f"{what} '{name}' is an absolute path outside the allowed folders ({described}); "
                              "put the file inside one of them, or set model_root / lora_root to its folder")
    else:
        normal = os.path.normpath(name)
        if normal == ".." or normal.startswith(".." + os.sep) or normal.startswith("../"):
            raise PathRefused(f"{what} '{name}' climbs out of its folder with '..'; allowed folders: {described}. "
                              "Use a path inside them")
        candidates = [folder / normal for _, folder in search]
    for candidate in candidates:
        if not os.path.lexists(candidate):
            continue
        real = _real(candidate)
        if not any(_within(real, root) for root in real_roots):
            raise PathRefused(f"{what} '{name}' is a link to {real}, outside the allowed folders ({described}); "
                              "links may only point inside them: move or copy the file in")
        if what == "model" and real.is_dir() and (real / "model_index.json").is_file():
            return real  # a diffusers-format folder
        if not real.is_file():
            kind = "a folder without model_index.json" if real.is_dir() else "not a regular file"
            raise PathRefused(f"{what} '{name}' is {kind} ({candidate}); name a model file"
                              + (" or a diffusers-format folder" if what == "model" else ""))
        return real
    raise PathRefused(f"{what} '{name}' not found; looked in {described}. Check the spelling, or put the file there")


def resolve_model(name: str, roots: Roots) -> Path:
    return _resolve(name, roots.model_search(), "model")


def resolve_lora(name: str, roots: Roots) -> Path:
    return _resolve(name, roots.lora_search(), "LoRA")
