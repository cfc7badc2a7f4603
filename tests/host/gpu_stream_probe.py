"""Sample the test DiT split between a compute device and the CPU, with the host's offload streams
on (ComfyUI's default on NVIDIA) or off (``--streams off`` = ComfyUI's --disable-async-offload),
and write a JSON report of what test_stream_overlap_gpu.py checks: the per-step time, the streams
in use after the split's stream check, pinning of the CPU donors, and from one profiled run the
host-to-device copies (bytes, pinned or pageable source) and how much of their time ran while
kernels ran.

One process per setting: the host reads --disable-async-offload once, at import. ``--device cpu``
runs the same sequence on the CPU (the GPU check's dry run): no copies, no VRAM figures.

    python tests/host/gpu_stream_probe.py --out report.json --streams on|off [--device cuda:0]
        [--dit-depth 3] [--offload 50] [--size 1024] [--steps 4] [--rounds 5]
"""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_figures  # noqa: E402
import gpu_host  # noqa: E402
from common import ensure_model_files  # noqa: E402
from make_models import dit_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--streams", choices=["on", "off"], required=True)
    parser.add_argument("--device", default="cuda:0", help="compute device: cuda:0, or cpu for a dry run")
    parser.add_argument("--dit-depth", type=int, default=3)
    parser.add_argument("--offload", type=int, default=50, help="percent of the DiT offloaded to the CPU")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (latent = size / 8)")
    parser.add_argument("--context-tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    cuda = args.device.startswith("cuda")
    models = ensure_model_files(dit_depths=[args.dit_depth])
    nodes, pack, dynamic = gpu_host.import_host(models, args.device,  # DynamicVRAM as the run asks
                                                host_args={"disable_async_offload": args.streams == "off"})
    import torch
    import comfy.model_management as mm

    apply = importlib.import_module("comfyui_distorch.distorch.host.split_patcher")
    transfers = pack.RUNTIME.pipeline.split_runtime.transfers
    dit = Path(dit_file(args.dit_depth)).name
    positive, negative = gpu_figures.synthetic_conditioning(torch, "flux", args.context_tokens)
    latent = gpu_figures.empty_latent(torch, "flux", args.size)
    loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()
    model = loader.load_distorch(unet_name=dit, weight_dtype="default", compute_device=args.device,
                                 keep_loaded=False, virtual_vram_gb=0.0, donor_device="cpu",
                                 allocation=f"{(100 - args.offload) / 100:g}")[0]

    def run():
        # cfg 1: the host skips the unconditional pass, so each step is one forward.
        out = nodes.common_ksampler(model, 3, args.steps, 1.0, "euler", "simple", positive, negative, latent)[0]
        if cuda:
            torch.cuda.synchronize()
        return out["samples"]

    warm = run()  # loads the model (the host's load_models_gpu) and warms the kernels
    split = apply.split_of(model)
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / args.steps)
    with tempfile.TemporaryDirectory() as folder:
        profile = gpu_figures.profile_overlap(torch, run, Path(folder) / "trace.json")
    report = {
        "device": args.device, "streams": args.streams, "dynamic_vram": dynamic, "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "dit": dit, "size": args.size, "steps": args.steps, "rounds": args.rounds,
        # Read after the split's load: the stream check may have turned the host's streams off.
        "num_streams": int(getattr(mm, "NUM_STREAMS", 0) or 0),
        "streams_in_use": transfers.streams_in_use.get(args.device),
        "finite": bool(torch.isfinite(warm).all()),
        "step_s": statistics.median(times), "step_s_all": times,
        "forwards_profiled": args.steps,
        "profile": profile,
    }
    if split is not None:
        report.update(offloaded_bytes=split.offloaded_bytes, reserve_bytes=split.plan.reserve_bytes,
                      compute_bytes=split.plan.device_bytes.get(split.plan.compute_device, 0),
                      donors=gpu_figures.donor_pinning(model.model, split.offloaded))
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
