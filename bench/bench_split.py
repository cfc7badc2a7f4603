"""A DisTorch split vs the same model unsplit: per-step sampling time, alternated in one run.

CPU (always): compute cpu, donor cpu, ``--offload`` percent of the UNet offloaded: what the
per-forward cast path costs (the weights stay in RAM, so there is no transfer to pay).
GPU (only where CUDA exists): cuda:0 with 25 / 50 / 90 % of the UNet on the CPU donor, as a ratio
to the physical limit max(step fully on the GPU, offloaded bytes / pinned host-to-device bandwidth
measured in this run), and to the host's own lowvram mode at the same VRAM budget.

    python bench/bench_split.py [--rounds 7] [--unet-depth 8] [--steps 8] [--size 256] [--offload 50] [--quick]
"""
from __future__ import annotations

import argparse
import importlib
import os
import contextlib
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
    parser.add_argument("--offload", type=int, default=50, help="percent of the UNet offloaded in the CPU run")
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.unet_depth, args.steps, args.size = 2, 1, 2, 64

    # The synthetic UNet is built of small layers: let modules above 64 KiB move, so that high
    # offload shares are possible (the default keeps modules up to 1 MiB on the compute device).
    os.environ.setdefault("DISTORCH_TINY_BYTES", str(64 * 1024))
    models = ensure_models(args.unet_depth)
    import torch

    cuda = torch.cuda.is_available()
    nodes, pack = import_host_and_pack(models, cpu=not cuda)
    import comfy.model_management as mm

    apply = importlib.import_module("comfyui_distorch.distorch.apply")
    whole_size = importlib.import_module("comfyui_distorch.distorch.placement").whole_size
    unet = Path(unet_file(args.unet_depth)).name
    loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()
    clip = nodes.CLIPLoader().load_clip("distorch-test-clip-l.safetensors", "stable_diffusion")[0]
    positive = nodes.CLIPTextEncode().encode(clip, "a red cube")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    latent = nodes.EmptyLatentImage().generate(args.size, args.size, 1)[0]
    del clip

    def load(device, allocation=""):
        return loader.load_distorch(unet_name=unet, weight_dtype="default", compute_device=device, keep_loaded=False,
                                    virtual_vram_gb=0.0, donor_device="cpu", allocation=allocation)[0]

    def sampler(model):
        def run():
            nodes.common_ksampler(model, 1, args.steps, 5.0, "euler", "normal", positive, negative, latent)
            if cuda:
                torch.cuda.synchronize()
        return run

    size_mb = (models / "diffusion_models" / unet).stat().st_size / 2**20
    print(f"# bench_split {date.today()} {platform.machine()} {platform.processor() or ''} torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"# UNet {unet} ({size_mb:.0f} MiB fp16 on disk), {args.rounds} rounds alternated, {args.steps} steps at "
          f"{args.size}x{args.size}, cfg 5, DISTORCH_TINY_BYTES={os.environ['DISTORCH_TINY_BYTES']}")

    # ---- CPU: the cast-per-forward path against the same model unsplit -----------------------
    contenders = {"unsplit": load("cpu"), "split": load("cpu", f"{(100 - args.offload) / 100:g}")}
    split = apply.split_of(contenders["split"])
    offloaded = split.plan.device_bytes.get("cpu (donor)", 0) if split else 0
    for model in contenders.values():
        sampler(model)()  # warm-up
    times = alternate(args.rounds, {name: sampler(model) for name, model in contenders.items()})
    whole, ours = median(times["unsplit"]) / args.steps, median(times["split"]) / args.steps
    print(f"# CPU: compute cpu, donor cpu, {offloaded / 2**20:.1f} MiB of "
          f"{whole_size(contenders['split']) / 2**20:.1f} MiB offloaded (weights stay in RAM: cast path only)")
    print(f"{'measure':<22}{'unsplit (s)':>12}{'split (s)':>12}{'ratio':>8}")
    print(f"{'sampling step':<22}{whole:>12.4f}{ours:>12.4f}{ours / whole:>8.3f}")
    del contenders, split
    mm.unload_all_models()
    gc.collect()

    if cuda:
        gpu_section(args, torch, mm, apply, load, sampler)
    else:
        print("# GPU: no CUDA device here; section skipped")
    return 0


def pinned_h2d_bandwidth(torch, device="cuda:0", size=256 * 2**20, repeats=5) -> float:
    """Bytes per second of a pinned host-to-device copy, best of ``repeats``."""
    host = torch.empty(size, dtype=torch.uint8).pin_memory()
    target = torch.empty(size, dtype=torch.uint8, device=device)
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        target.copy_(host, non_blocking=True)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return size / best


@contextlib.contextmanager
def host_budget(mm, torch, device, budget):
    """The host's lowvram mode at a given VRAM budget: its free-memory figure for ``device`` is
    lowered so that its own load gives the model ``budget`` bytes (benchmark only; restored)."""
    original = mm.get_free_memory

    def limited(dev=None, torch_free_too=False):
        if dev is not None and torch.device(dev) == torch.device(device):
            free = budget + mm.minimum_inference_memory()
            return (free, free) if torch_free_too else free
        return original(dev, torch_free_too)

    mm.get_free_memory = limited
    try:
        yield
    finally:
        mm.get_free_memory = original


def gpu_section(args, torch, mm, apply, load, sampler) -> None:
    bandwidth = pinned_h2d_bandwidth(torch)
    whole = load("cuda:0")
    sampler(whole)()
    full_step = median(alternate(args.rounds, {"whole": sampler(whole)})["whole"]) / args.steps
    mm.unload_all_models()
    del whole
    print(f"# GPU: pinned host-to-device {bandwidth / 1e9:.1f} GB/s; step fully on cuda:0 {full_step:.4f} s")
    print(f"{'offload':<10}{'MiB off':>9}{'limit (s)':>11}{'split (s)':>11}{'vs limit':>10}{'lowvram (s)':>13}"
          f"{'vs lowvram':>12}")
    for share in (25, 50, 90):
        try:
            model = load("cuda:0", f"cuda:0,{100 - share}%;cpu,*")
        except (RuntimeError, ValueError) as exc:  # a plan this model cannot have
            print(f"{share:<10}plan impossible: {exc}")
            continue
        split = apply.split_of(model)
        offloaded = sum(b for slot, b in split.plan.device_bytes.items() if slot != "cuda:0")
        budget = split.plan.device_bytes["cuda:0"]
        limit = max(full_step, offloaded / bandwidth)
        sampler(model)()
        ours = median(alternate(args.rounds, {"split": sampler(model)})["split"]) / args.steps
        mm.unload_all_models()
        del model, split
        core = load("cuda:0")  # no split: the host decides what to offload
        with host_budget(mm, torch, "cuda:0", budget):
            sampler(core)()
            lowvram = median(alternate(args.rounds, {"lowvram": sampler(core)})["lowvram"]) / args.steps
        mm.unload_all_models()
        del core
        print(f"{share:<10}{offloaded / 2**20:>9.1f}{limit:>11.4f}{ours:>11.4f}{ours / limit:>10.3f}{lowvram:>13.4f}"
              f"{ours / lowvram:>12.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
