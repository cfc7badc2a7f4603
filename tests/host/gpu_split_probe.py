"""Run on a CUDA machine (by test_split_gpu.py): split the test UNet between cuda:0 and the CPU at
several offload shares, sample, and write a JSON report (latents, VRAM figures, plan).

    python tests/host/gpu_split_probe.py --out report.json [--unet-depth 8] [--shares 0,25,50,90] [--prompts 20]
"""
from __future__ import annotations

import argparse
import importlib
import os
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import hostenv, import_host_and_pack  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from make_models import unet_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--unet-depth", type=int, default=8)
    parser.add_argument("--shares", default="0,25,50,90", help="percent of the UNet offloaded to the CPU")
    parser.add_argument("--prompts", type=int, default=20, help="prompts run at 50 %% for the leak check")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    # The synthetic UNet is built of small layers: let modules above 64 KiB move, so that high
    # offload shares are possible (the default keeps modules up to 1 MiB on the compute device).
    os.environ.setdefault("DISTORCH_TINY_BYTES", str(64 * 1024))
    models = hostenv.models_dir()
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_models.py"), "--comfyui", str(hostenv.comfyui_dir()),
                    "--out", str(models), "--unet-depth", str(args.unet_depth)], check=True, stdout=subprocess.DEVNULL)
    nodes, pack = import_host_and_pack(models, cpu=False)
    import torch
    import comfy.model_management as mm

    apply = importlib.import_module("comfyui_distorch.distorch.apply")
    whole_size = importlib.import_module("comfyui_distorch.distorch.placement").whole_size
    unet = Path(unet_file(args.unet_depth)).name
    clip = nodes.CLIPLoader().load_clip("distorch-test-clip-l.safetensors", "stable_diffusion")[0]
    positive = nodes.CLIPTextEncode().encode(clip, "a red cube")[0]
    negative = nodes.CLIPTextEncode().encode(clip, "blurry")[0]
    latent = nodes.EmptyLatentImage().generate(args.size, args.size, 1)[0]
    del clip
    loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()

    def sample(model):
        out = nodes.common_ksampler(model, 7, 4, 5.0, "euler", "normal", positive, negative, latent)[0]
        return out["samples"].cpu()

    report = {"num_streams": mm.NUM_STREAMS, "shares": {}}
    for share in [int(x) for x in args.shares.split(",")]:
        mm.unload_all_models()
        mm.soft_empty_cache()
        allocation = "" if share == 0 else f"cuda:0,{100 - share}%;cpu,*"
        model = loader.load_distorch(unet_name=unet, weight_dtype="default", compute_device="cuda:0",
                                     keep_loaded=False, virtual_vram_gb=0.0, donor_device="cpu",
                                     allocation=allocation)[0]
        split = apply.split_of(model)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = sample(model)
        entry = {
            "allocation": allocation,
            "latent": result.flatten().tolist(),
            "model_bytes": whole_size(model),
            "planned_compute_bytes": split.plan.device_bytes["cuda:0"] if split else whole_size(model),
            "largest_offloaded": max((m.weight.numel() * m.weight.element_size()
                                      for n, m in model.model.named_modules()
                                      if split and n in split.offloaded and getattr(m, "weight", None) is not None),
                                     default=0),
            "loaded_size": model.loaded_size(),
            "resident": torch.cuda.memory_allocated() - base,
            "peak": torch.cuda.max_memory_allocated() - base,
        }
        if share == 50:
            after = []
            for _ in range(args.prompts):
                sample(model)
                after.append(torch.cuda.memory_allocated())
            entry["allocated_after_prompts"] = after
            mm.unload_all_models()
            mm.soft_empty_cache()
            entry["allocated_after_unload"] = torch.cuda.memory_allocated() - base
        report["shares"][str(share)] = entry
        del model, split
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
