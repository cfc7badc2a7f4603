"""DisTorch loaders (no split) vs the core loaders: load time and per-step sampling time.

Same file, same process, alternated round by round; prints medians and the ratio
DisTorch / core (target <= 1.05 for both). Absolute times are only meaningful on a quiet machine;
the ratios are the figures to record.

    python bench/bench_loaders.py [--rounds 7] [--unet-depth 8] [--steps 8] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import platform
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, ensure_models, import_host_and_pack, median  # noqa: E402
from make_models import unet_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--unet-depth", type=int, default=8, help="transformer blocks in the test UNet (size dial)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (latent = size / 8)")
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.unet_depth, args.steps, args.size = 2, 1, 2, 64

    models = ensure_models(args.unet_depth)
    unet_name = Path(unet_file(args.unet_depth)).name
    nodes, pack = import_host_and_pack(models)
    import torch

    torch.manual_seed(0)
    core_loader = nodes.UNETLoader()
    ours_loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()

    def load_core():
        return core_loader.load_unet(unet_name, "default")[0]

    def load_ours():
        return ours_loader.load_distorch(unet_name=unet_name, weight_dtype="default", compute_device="cpu",
                                         keep_loaded=False)[0]

    load_core(), load_ours()  # warm the page cache and imports
    gc.collect()
    load_times = alternate(args.rounds, {"core": load_core, "distorch": load_ours})

    clip = nodes.CLIPLoader().load_clip("distorch-test-clip-l.safetensors", "stable_diffusion")[0]
    positive = nodes.CLIPTextEncode().encode(clip, "a red cube")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    latent = nodes.EmptyLatentImage().generate(args.size, args.size, 1)[0]
    models_by_name = {"core": load_core(), "distorch": load_ours()}

    def sampler(model):
        return lambda: nodes.common_ksampler(model, 1, args.steps, 5.0, "euler", "normal", positive, negative,
                                             latent, disable_noise=False)

    for model in models_by_name.values():
        sampler(model)()  # warm-up: first-use costs out of the measurement
    sample_times = alternate(args.rounds, {name: sampler(model) for name, model in models_by_name.items()})

    size_mb = (models / "diffusion_models" / unet_name).stat().st_size / 2**20
    print(f"# bench_loaders {date.today()} {platform.machine()} {platform.processor() or ''} "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"# UNet {unet_name} ({size_mb:.0f} MiB fp16), {args.rounds} rounds alternated, "
          f"{args.steps} steps at {args.size}x{args.size}")
    print(f"{'measure':<22}{'core (s)':>12}{'distorch (s)':>14}{'ratio':>8}")
    for label, times, per in (("load", load_times, 1), ("sampling step", sample_times, args.steps)):
        core, ours = median(times["core"]) / per, median(times["distorch"]) / per
        print(f"{label:<22}{core:>12.4f}{ours:>14.4f}{ours / core:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
