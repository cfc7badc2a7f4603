"""In-process access to the host and the pack for benchmarks (no HTTP noise in the figures)."""
from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import hostenv  # noqa: E402


def import_host_and_pack(models_dir: Path, cpu: bool = True, host_args: dict | None = None):
    """Import ComfyUI (pointed at ``models_dir``) and the pack the way ComfyUI loads it.
    ``host_args``: ComfyUI command-line settings, by their ``args`` attribute name (e.g.
    ``{"disable_async_offload": True}`` for --disable-async-offload), set before the host reads them."""
    sys.path.insert(0, str(hostenv.comfyui_dir()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    for name, value in (host_args or {}).items():
        if not hasattr(comfy.cli_args.args, name):
            raise ValueError(f"ComfyUI has no command-line setting {name!r}")
        setattr(comfy.cli_args.args, name, value)
    import folder_paths

    folder_paths.models_dir = str(models_dir)
    for folder in ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras"):
        folder_paths.add_model_folder_path(folder, str(models_dir / folder), is_default=True)
    import comfy.utils
    import nodes

    comfy.utils.PROGRESS_BAR_ENABLED = False  # keep the figures readable
    spec = importlib.util.spec_from_file_location("comfyui_distorch", hostenv.REPO_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(hostenv.REPO_ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["comfyui_distorch"] = pack
    spec.loader.exec_module(pack)
    return nodes, pack


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def alternate(rounds: int, contenders: dict):
    """Run each contender once per round, order flipped every round; returns name -> times."""
    names = list(contenders)
    times = {name: [] for name in names}
    for round_index in range(rounds):
        for name in (names if round_index % 2 == 0 else list(reversed(names))):
            elapsed, _ = timed(contenders[name])
            times[name].append(elapsed)
    return times


def median(values):
    return statistics.median(values)


def percentile(values, share: float) -> float:
    """The value at ``share`` (0..1) of the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def ensure_model_files(unet_depths=(), dit_depths=()) -> Path:
    """The test UNets / DiTs of these depths (tools/make_models.py --skip-base: no text encoder or
    VAE), generated when one is missing; their models folder."""
    from make_models import dit_file, unet_file

    models = hostenv.models_dir()
    wanted = [unet_file(d) for d in unet_depths] + [dit_file(d) for d in dit_depths]
    if not all((models / name).is_file() for name in wanted):
        command = [sys.executable, str(hostenv.REPO_ROOT / "tools" / "make_models.py"), "--comfyui",
                   str(hostenv.comfyui_dir()), "--out", str(models), "--skip-base"]
        command += [f"--unet-depth={d}" for d in unet_depths] + [f"--dit-depth={d}" for d in dit_depths]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return models


def ensure_models(unet_depth: int) -> Path:
    """The synthetic models (tools/make_models.py), with a UNet of ``unet_depth`` blocks; their folder."""
    models = hostenv.models_dir()
    subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "tools" / "make_models.py"), "--comfyui",
                    str(hostenv.comfyui_dir()), "--out", str(models), "--unet-depth", str(unet_depth)],
                   check=True, stdout=subprocess.DEVNULL)
    return models
