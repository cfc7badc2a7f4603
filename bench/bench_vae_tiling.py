"""A mode's vae_tiling: peak RAM and time of a VAE decode, plain vs tiled, side by side.

Each decode runs in a fresh process (so its peak resident memory, ru_maxrss, is its own) on the
CPU with the synthetic SD VAE, decoding a zero latent of the given size: once with the VAE's own
``decode``, once through the tiled VAE a mode with ``vae_tiling`` gets (distorch/host/vae_tiling.py,
which runs the host's ``decode_tiled``). Printed: the peak growth over the process's state after
loading the VAE, the time, and tiled / plain ratios.

    python bench/bench_vae_tiling.py [--size 768] [--tile 512] [--overlap 64] [--quick]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import hostenv  # noqa: E402

CHILD = r"""
import importlib.util, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import comfy.cli_args
comfy.cli_args.args.cpu = True
import torch, comfy.sd, comfy.utils
spec = importlib.util.spec_from_file_location("vae_tiling", sys.argv[2])
vae_tiling = importlib.util.module_from_spec(spec); spec.loader.exec_module(vae_tiling)
vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(sys.argv[3]))
size, tile, overlap, tiled = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "tiled"
if tiled:
    vae = vae_tiling.tiled_vae(vae, tile, overlap)
latent = torch.zeros(1, 4, size // 8, size // 8)
vae.decode(torch.zeros(1, 4, 8, 8))  # weights in place before the peak is read
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
image = vae.decode(latent)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert tuple(image.shape[1:3]) == (size, size), image.shape
print(json.dumps({"seconds": seconds, "peak_growth_kib": max(0, peak - before)}))
"""


def decode(size: int, tile: int, overlap: int, how: str) -> dict:
    vae = hostenv.models_dir() / "vae" / "distorch-test-vae.safetensors"
    result = subprocess.run([sys.executable, "-c", CHILD, str(hostenv.comfyui_dir()),
                             str(ROOT / "distorch" / "host" / "vae_tiling.py"), str(vae), str(size), str(tile), str(overlap),
                             how], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=768, help="image side in pixels")
    parser.add_argument("--tile", type=int, default=512, help="tile side in pixels (the modes.yaml default)")
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="256 px in 128 px tiles: checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.size, args.tile, args.overlap = 256, 128, 16
    plain = decode(args.size, args.tile, args.overlap, "plain")
    tiled = decode(args.size, args.tile, args.overlap, "tiled")
    print(f"# bench_vae_tiling {date.today()} {platform.machine()} CPU; synthetic SD VAE, {args.size}x{args.size} "
          f"image, tiles of {args.tile} px overlapping {args.overlap} px")
    print(f"{'':22}{'plain':>10}{'tiled':>10}{'tiled/plain':>13}")
    growth = [run["peak_growth_kib"] / 1024 for run in (plain, tiled)]
    print(f"{'peak RAM growth (MiB)':22}{growth[0]:>10.0f}{growth[1]:>10.0f}{growth[1] / max(growth[0], 1):>13.3f}")
    print(f"{'decode time (s)':22}{plain['seconds']:>10.2f}{tiled['seconds']:>10.2f}"
          f"{tiled['seconds'] / plain['seconds']:>13.3f}")
    if not growth[1] < growth[0]:
        raise SystemExit(f"tiled decoding grew RAM by {growth[1]:.0f} MiB, not less than plain ({growth[0]:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
