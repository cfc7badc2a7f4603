"""Split the test UNet between a compute device and the CPU at several offload shares, sample, and
write a JSON report of what test_split_gpu.py checks: latents, the plan, the bytes each device
really holds, pinning of the CPU donors, VRAM figures, and allocations over repeated prompts.

On CUDA (``--device cuda:0``, what the GPU tests run) every figure is real. ``--device cpu`` runs
the same sequence on the CPU, the donor being the CPU itself (the GPU check's dry run uses it to
exercise this script where no GPU is): its VRAM and pinning figures are null.

    python tests/host/gpu_split_probe.py --out report.json [--device cuda:0] [--unet-depth 8]
        [--shares 0,25,50,90] [--prompts 20] [--size 256]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_figures  # noqa: E402
import gpu_host  # noqa: E402
from common import ensure_model_files  # noqa: E402
from make_models import unet_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda:0", help="compute device: cuda:0, or cpu for a dry run")
    parser.add_argument("--unet-depth", type=int, default=8)
    parser.add_argument("--shares", default="0,25,50,90", help="percent of the UNet offloaded to the CPU")
    parser.add_argument("--prompts", type=int, default=20, help="prompts run at 50 %% for the leak check")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    # The synthetic UNet is built of small layers: let modules above 64 KiB move, so that high
    # offload shares are possible (the default keeps modules up to 1 MiB on the compute device).
    os.environ.setdefault("DISTORCH_TINY_BYTES", str(64 * 1024))
    cuda = args.device.startswith("cuda")
    models = ensure_model_files(unet_depths=[args.unet_depth])
    nodes, pack, dynamic = gpu_host.import_host(models, args.device)  # DynamicVRAM as the run asks
    import torch
    import comfy.model_management as mm

    apply = importlib.import_module("comfyui_distorch.distorch.host.split_patcher")
    split_module = importlib.import_module("comfyui_distorch.distorch.logic.split_request")
    placement = importlib.import_module("comfyui_distorch.distorch.logic.placement_record")
    transfers = pack.RUNTIME.pipeline.split_runtime.transfers
    unet = Path(unet_file(args.unet_depth)).name
    positive, negative = gpu_figures.synthetic_conditioning(torch, "sd15")
    latent = gpu_figures.empty_latent(torch, "sd15", args.size)
    loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()

    def allocated() -> int | None:
        return torch.cuda.memory_allocated() if cuda else None

    def pinned_total() -> int:
        return int(getattr(mm, "TOTAL_PINNED_MEMORY", 0))

    def sample(model):
        out = nodes.common_ksampler(model, 7, args.steps, 5.0, "euler", "normal", positive, negative, latent)[0]
        return out["samples"].float().cpu()

    def load(share: int):
        # Fraction form: the share kept on the compute device, the rest on the CPU donor.
        allocation = "" if share == 0 else f"{(100 - share) / 100:g}"
        return loader.load_distorch(unet_name=unet, weight_dtype="default", compute_device=args.device,
                                    keep_loaded=False, virtual_vram_gb=0.0, donor_device="cpu",
                                    allocation=allocation)[0], allocation

    def release():
        mm.unload_all_models()
        mm.soft_empty_cache()

    report = {"device": args.device, "dynamic_vram": dynamic, "torch": torch.__version__, "unet": unet,
              "size": args.size, "steps": args.steps, "gpu": torch.cuda.get_device_name(0) if cuda else None,
              "shares": {}}
    for share in [int(x) for x in args.shares.split(",")]:
        release()
        base, pinned_before = allocated(), pinned_total()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        model, allocation = load(share)
        result = sample(model)
        split = apply.split_of(model)
        entry = {
            "allocation": allocation,
            "latent": result.flatten().tolist(),
            "finite": bool(torch.isfinite(result).all()),
            "model_bytes": placement.whole_size(model),
            # Read after the split's load: the stream check may have turned the host's streams off.
            "num_streams": int(getattr(mm, "NUM_STREAMS", 0) or 0),
            "streams_in_use": transfers.streams_in_use.get(args.device),
        }
        if cuda:
            entry.update(resident=allocated() - base, peak=torch.cuda.max_memory_allocated() - base)
        if split is not None:
            plan = split.plan
            entry.update(
                planned_by_device=gpu_figures.planned_bytes_by_device(plan, split_module.slot_device),
                placed_by_device=gpu_figures.placed_bytes(model.model, plan),
                planned_compute_bytes=plan.device_bytes.get(plan.compute_device, 0),
                reserve_bytes=plan.reserve_bytes,
                offloaded_bytes=split.offloaded_bytes,
                largest_offloaded=gpu_figures.largest_offloaded_module(model.model, split.offloaded),
                donors=gpu_figures.donor_pinning(model.model, split.offloaded),
            )
        if share == 0 and cuda:
            entry["repeat_latent"] = sample(model).flatten().tolist()  # is the host itself deterministic?
        if share == 50:
            after, pinned_after = [], []
            for _ in range(args.prompts):
                sample(model)
                after.append(allocated())
                pinned_after.append(pinned_total())
            entry.update(allocated_after_prompts=after, pinned_after_prompts=pinned_after)
            del model, split
            release()
            entry.update(pinned_before_load=pinned_before, pinned_after_unload=pinned_total())
            if cuda:
                entry["allocated_after_unload"] = allocated() - base
        report["shares"][str(share)] = entry
        model = split = None
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
