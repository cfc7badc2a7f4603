"""Which modes file applies, and the legacy fallback. Pure: the environment and the ComfyUI user
directory are passed in.

Order (README, "Modes"):
1. ``DISTORCH_MODES`` names the file (it must exist: a typo is reported, not skipped).
2. ``<ComfyUI user directory>/distorch/modes.yaml`` when that file exists.
3. The legacy variables ``MODEL_ROOT`` / ``MODEL``: one implicit mode, with a warning.
4. Nothing: no modes, and ``reason`` says what to do.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_FILE = "DISTORCH_MODES"
USER_SUBPATH = ("distorch", "modes.yaml")
LEGACY_MODE_NAME = "default"
LEGACY_SOURCE = "environment (MODEL_ROOT / MODEL)"


@dataclass(frozen=True)
class Location:
    origin: str              # "env", "user", "legacy" or "none"
    path: Path | None        # the file (env / user), or where a user file would go
    reason: str = ""         # for "none" and "legacy": what happened and what to do
    legacy: dict | None = None   # the implicit document for "legacy"


def user_modes_path(user_dir: str | Path) -> Path:
    return Path(user_dir).joinpath(*USER_SUBPATH)


def locate(env: Mapping[str, str], user_dir: str | Path | None) -> Location:
    named = env.get(ENV_FILE, "").strip()
    user_path = user_modes_path(user_dir) if user_dir else None
    if named:
        return Location("env", Path(named).expanduser().absolute())
    if user_path is not None and user_path.is_file():
        return Location("user", user_path)
    model = env.get("MODEL", "").strip()
    model_root = env.get("MODEL_ROOT", "").strip()
    if model:
        document = {"modes": {LEGACY_MODE_NAME: {"model": model}}}
        if model_root:
            document["model_root"] = model_root
        where = user_path or "the ComfyUI user directory"
        return Location("legacy", user_path, legacy=document, reason=(
            f"no modes file: using the legacy MODEL{'_ROOT / MODEL' if model_root else ''} environment "
            f"variables as one mode named '{LEGACY_MODE_NAME}'. These variables are deprecated: write a "
            f"modes file at {where} (see modes.yaml.example) or point {ENV_FILE} at one"))
    if model_root:
        return Location("none", user_path, reason=(
            "MODEL_ROOT is set but MODEL is not: set MODEL to the checkpoint file (relative to MODEL_ROOT), "
            f"or better write a modes file at {user_path or 'the ComfyUI user directory'}"))
    return Location("none", user_path, reason=(
        f"no modes file: set {ENV_FILE} to a modes.yaml, or create "
        f"{user_path or '<ComfyUI user directory>/distorch/modes.yaml'} (copy modes.yaml.example from the pack)"))
