"""RAM of a LoRA on a split model vs ComfyUI's own lowvram mode with the same LoRA.

Each contender runs in a fresh Python process (so neither inherits the other's heap) on the same
synthetic SD1.5 UNet and the same rank-R LoRA over every attention projection:
- split: DisTorchUNETLoader, compute cpu, allocation ``--keep`` (the share kept on the compute
  device; the rest planned onto the ``cpu (donor)`` slot), then the core LoraLoaderModelOnly, then
  the host's ``load_models_gpu`` and one forward;
- lowvram: the core UNETLoader and LoraLoaderModelOnly, then the host's own lowvram load
  (``LoadedModel.model_load``) with the split's compute share as its budget, and one forward.
Peak RSS is read from the kernel's high-water mark (VmHWM), reset after the model file is read and
the LoRA is attached, so the figure is the load with the LoRA plus a forward, not the file read
(which is the same for both); the whole process's peak is shown too. Target: split / lowvram <= 1.05.
On a CPU-only machine the donor is the CPU itself, so the weights are in RAM in both runs; what
differs is only how patches on offloaded layers are held.

    python bench/bench_lora_ram.py [--unet-depth 240] [--keep 0.05] [--rank 16] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_models, import_host_and_pack  # noqa: E402
from make_models import build_lora, unet_file, write  # noqa: E402

RESULT = "RESULT "
# The synthetic UNet is built of small layers: let modules above 64 KiB move (the default keeps
# modules up to 1 MiB, i.e. most attention projections, on the compute device).
TINY_BYTES = str(64 * 1024)


def lora_file(depth: int, rank: int) -> str:
    return f"loras/distorch-bench-lora-d{depth}-r{rank}.safetensors"


def ensure_lora(models: Path, depth: int, rank: int) -> str:
    """A LoRA over every attention projection of the depth-``depth`` UNet, from its header only."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    target = models / lora_file(depth, rank)
    if not target.exists():
        with safe_open(str(models / unet_file(depth)), framework="pt") as unet:
            shapes = {key: torch.empty(unet.get_slice(key).get_shape(), device="meta") for key in unet.keys()}
        write(target, build_lora(shapes, torch, rank), save_file)
    return target.name


def rss_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(args) -> int:
    os.environ["DISTORCH_TINY_BYTES"] = TINY_BYTES
    models = Path(args.models)
    nodes, pack = import_host_and_pack(models, cpu=True)
    import comfy.model_management as mm
    import torch

    unet = Path(unet_file(args.unet_depth)).name
    if args.child == "split":
        loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()
        model = loader.load_distorch(unet_name=unet, weight_dtype="default", compute_device="cpu", keep_loaded=False,
                                     virtual_vram_gb=0.0, donor_device="cpu", allocation=f"{args.keep:g}")[0]
        split = model.attachments["distorch.split"]
        compute_bytes = split.plan.device_bytes["cpu"]
    else:
        model = nodes.UNETLoader().load_unet(unet, "default")[0]
        compute_bytes = args.budget
    model = nodes.LoraLoaderModelOnly().load_lora_model_only(model, args.lora, 1.0)[0]
    patched_keys = len(model.patches)
    base = rss_kib("VmRSS")
    reading_peak = rss_kib("VmHWM")  # the file read; the reset below clears it (ru_maxrss too)
    window = reset_peak()
    if args.child == "split":
        mm.load_models_gpu([model])
    else:
        mm.LoadedModel(model).model_load(lowvram_model_memory=compute_bytes)
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn((1, 4, 8, 8), generator=generator)
    context = torch.randn((1, 77, 768), generator=generator)
    with torch.no_grad():
        out = model.model.apply_model(latent, torch.tensor([1.0]), c_crossattn=context)
    result = {
        "base_kib": base, "peak_kib": rss_kib("VmHWM") if window else None,
        "process_peak_kib": max(reading_peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        "compute_bytes": compute_bytes, "whole_bytes": mm.module_size(model.model),
        "patched_keys": patched_keys, "lowvram_patches": model.model.lowvram_patch_counter,
        "finite": bool(torch.isfinite(out).all()),
    }
    print(RESULT + json.dumps(result), flush=True)
    return 0


def run_child(args, kind: str, lora: str, budget: int = 0) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--models", str(args.models), "--lora", lora,
               "--unet-depth", str(args.unet_depth), "--keep", str(args.keep), "--budget", str(budget)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{kind} run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet-depth", type=int, default=240, help="transformer blocks (about 4.5 MB fp16 each)")
    parser.add_argument("--keep", type=float, default=0.05, help="share of the UNet kept on the compute device")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    parser.add_argument("--child", choices=("split", "lowvram"), help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    parser.add_argument("--lora", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.unet_depth, args.rank, args.keep = 2, 4, 0.4

    args.models = ensure_models(args.unet_depth)
    lora = ensure_lora(args.models, args.unet_depth, args.rank)
    size_mib = (args.models / unet_file(args.unet_depth)).stat().st_size / 2**20
    import torch

    print(f"# bench_lora_ram {date.today()} {platform.machine()} {platform.processor() or ''} torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs")
    split = run_child(args, "split", lora)
    lowvram = run_child(args, "lowvram", lora, budget=split["compute_bytes"])
    print(f"# UNet {unet_file(args.unet_depth)} ({size_mib:.0f} MiB fp16 on disk, {split['whole_bytes'] / 2**20:.0f} "
          f"MiB in RAM), LoRA rank {args.rank} on {split['patched_keys']} weights; compute keeps "
          f"{split['compute_bytes'] / 2**20:.1f} MiB (allocation {args.keep:g}); DISTORCH_TINY_BYTES={TINY_BYTES}")
    print(f"# per-forward LoRA patches: split {split['lowvram_patches']}, lowvram {lowvram['lowvram_patches']}; "
          f"outputs finite: {split['finite'] and lowvram['finite']}")
    mib = 1 / 1024
    print(f"{'measure (MiB)':<34}{'split':>10}{'lowvram':>10}{'ratio':>8}")
    rows = [("RSS before the load", "base_kib"), ("peak RSS, load + forward", "peak_kib"),
            ("peak RSS, whole process", "process_peak_kib")]
    for label, key in rows:
        if split[key] is None or lowvram[key] is None:
            print(f"{label:<34}{'n/a':>10}{'n/a':>10}{'n/a':>8}")
            continue
        print(f"{label:<34}{split[key] * mib:>10.1f}{lowvram[key] * mib:>10.1f}{split[key] / lowvram[key]:>8.3f}")
    if split["peak_kib"] is not None:
        grown = [(r["peak_kib"] - r["base_kib"]) * mib for r in (split, lowvram)]
        print(f"{'growth over the load + forward':<34}{grown[0]:>10.1f}{grown[1]:>10.1f}"
              f"{grown[0] / grown[1] if grown[1] > 0 else float('nan'):>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
