"""A DisTorch split vs the same model unsplit: per-step sampling time, alternated in one run.

CPU (unless --gpu-only): compute cpu, donor cpu, ``--offload`` percent of the model offloaded:
what the per-forward cast path costs (the weights stay in RAM, so there is no transfer to pay).
GPU (only where CUDA exists): cuda:0 with 25 / 50 / 90 % of the model on the CPU donor, as a ratio
to the physical limit max(step fully on the GPU, offloaded bytes / pinned host-to-device bandwidth
measured in this run) -- target <= 1.15 -- and to the host's own lowvram mode at the same VRAM
budget -- target <= 1.0. The GPU section samples the Flux-shaped test DiT by default (layers of
19-66 M parameters: the transfer, not kernel launches, is what an offloaded step costs).

Conditioning is synthetic (seeded tensors in the text encoder's shape): the figures are about
the diffusion model. ``--json PATH`` writes every figure; ``--check`` exits 1 when a GPU row misses
its target (or its plan is impossible), 2 when --gpu-only finds no CUDA device.

    python bench/bench_split.py [--model unet|dit] [--gpu-model dit|unet] [--unet-depth 8]
        [--dit-depth 3] [--rounds 7] [--steps 8] [--size 256] [--gpu-size 1024] [--offload 50]
        [--quick] [--gpu-only] [--json PATH] [--check]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_figures  # noqa: E402
from common import alternate, ensure_model_files, import_host_and_pack, median  # noqa: E402
from make_models import dit_file, unet_file  # noqa: E402

TARGET_VS_LIMIT = 1.15
TARGET_VS_LOWVRAM = 1.0
GPU_SHARES = (25, 50, 90)


@dataclass(frozen=True)
class Workload:
    """A model file and how to sample it: its family's conditioning and sampler settings."""
    family: str      # key of gpu_figures.FAMILIES
    file: str        # under the models folder
    size: int        # image side in pixels
    steps: int
    cfg: float       # 1.0 for the DiT: the host then runs one forward per step
    scheduler: str

    @property
    def name(self) -> str:
        return Path(self.file).name


def workload(kind: str, args, size: int) -> Workload:
    if kind == "dit":
        return Workload("flux", dit_file(args.dit_depth), size, args.steps, 1.0, "simple")
    return Workload("sd15", unet_file(args.unet_depth), size, args.steps, 5.0, "normal")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["unet", "dit"], default="unet", help="model of the CPU section")
    parser.add_argument("--gpu-model", choices=["unet", "dit"], default="dit", help="model of the GPU section")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--unet-depth", type=int, default=8, help="transformer blocks in the test UNet (size dial)")
    parser.add_argument("--dit-depth", type=int, default=3, help="double- and single-stream blocks in the test DiT "
                                                                 "(about 0.95 GiB bf16 each)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels, CPU section (latent = size / 8)")
    parser.add_argument("--gpu-size", type=int, default=1024, help="image side in pixels, GPU section")
    parser.add_argument("--offload", type=int, default=50, help="percent of the model offloaded in the CPU run")
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU section")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a GPU row misses its target")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.size, args.gpu_size, args.unet_depth, args.dit_depth = 2, 2, 64, 256, 1, 1

    # The synthetic UNet is built of small layers: let modules above 64 KiB move, so that high
    # offload shares are possible (the default keeps modules up to 1 MiB on the compute device).
    os.environ.setdefault("DISTORCH_TINY_BYTES", str(64 * 1024))
    import torch

    cuda = torch.cuda.is_available()
    if args.gpu_only and not cuda:
        print("# GPU: no CUDA device here; nothing to measure with --gpu-only", flush=True)
        write_json(args.json, {"gpu": None, "skipped": "no CUDA device"})
        return 2 if args.check else 0
    cpu_work = None if args.gpu_only else workload(args.model, args, args.size)
    gpu_work = workload(args.gpu_model, args, args.gpu_size) if cuda else None
    works = [work for work in (cpu_work, gpu_work) if work is not None]
    models = ensure_model_files(unet_depths=[args.unet_depth] if any(w.family == "sd15" for w in works) else [],
                                dit_depths=[args.dit_depth] if any(w.family == "flux" for w in works) else [])
    nodes, pack = import_host_and_pack(models, cpu=not cuda)
    import comfy.model_management as mm

    apply = importlib.import_module("comfyui_distorch.distorch.host.split_patcher")
    whole_size = importlib.import_module("comfyui_distorch.distorch.logic.placement_record").whole_size
    loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()

    def load(work: Workload, device, allocation=""):
        return loader.load_distorch(unet_name=work.name, weight_dtype="default", compute_device=device,
                                    keep_loaded=False, virtual_vram_gb=0.0, donor_device="cpu",
                                    allocation=allocation)[0]

    def sampler(work: Workload, model):
        positive, negative = gpu_figures.synthetic_conditioning(torch, work.family)
        latent = gpu_figures.empty_latent(torch, work.family, work.size)

        def run():
            nodes.common_ksampler(model, 1, work.steps, work.cfg, "euler", work.scheduler, positive, negative, latent)
            if cuda:
                torch.cuda.synchronize()
        return run

    figures = {"date": str(date.today()), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "rounds": args.rounds,
               "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
               "targets": {"vs_limit": TARGET_VS_LIMIT, "vs_lowvram": TARGET_VS_LOWVRAM}, "cpu": None, "gpu": None}
    print(f"# bench_split {figures['date']} {figures['machine']} torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads{', ' + figures['gpu_name'] if cuda else ''}")

    if cpu_work is not None:
        figures["cpu"] = cpu_section(args, cpu_work, models, load, sampler, apply, whole_size)
        mm.unload_all_models()
        gc.collect()
    if cuda:
        figures["gpu"] = gpu_section(args, gpu_work, models, torch, mm, apply, load, sampler)
    else:
        figures["skipped"] = "no CUDA device"
        print("# GPU: no CUDA device here; section skipped")
    write_json(args.json, figures)
    if args.check and cuda:
        missed = [row for row in figures["gpu"]["rows"] if not row.get("meets_targets")]
        if missed:
            print(f"# CHECK: {len(missed)} GPU row(s) miss a target: "
                  + ", ".join(f"{row['offload_pct']}%" for row in missed))
            return 1
    return 0


def write_json(path: Path | None, figures: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=1) + "\n")


def cpu_section(args, work: Workload, models: Path, load, sampler, apply, whole_size) -> dict:
    size_mb = (models / work.file).stat().st_size / 2**20
    print(f"# {work.name} ({size_mb:.0f} MiB on disk), {args.rounds} rounds alternated, {work.steps} steps at "
          f"{work.size}x{work.size}, cfg {work.cfg:g}, DISTORCH_TINY_BYTES={os.environ['DISTORCH_TINY_BYTES']}")
    contenders = {"unsplit": load(work, "cpu"), "split": load(work, "cpu", f"{(100 - args.offload) / 100:g}")}
    split = apply.split_of(contenders["split"])
    offloaded = split.plan.device_bytes.get("cpu (donor)", 0) if split else 0
    for model in contenders.values():
        sampler(work, model)()  # warm-up
    times = alternate(args.rounds, {name: sampler(work, model) for name, model in contenders.items()})
    whole, ours = median(times["unsplit"]) / work.steps, median(times["split"]) / work.steps
    total = whole_size(contenders["split"])
    print(f"# CPU: compute cpu, donor cpu, {offloaded / 2**20:.1f} MiB of {total / 2**20:.1f} MiB offloaded "
          "(weights stay in RAM: cast path only)")
    print(f"{'measure':<22}{'unsplit (s)':>12}{'split (s)':>12}{'ratio':>8}")
    print(f"{'sampling step':<22}{whole:>12.4f}{ours:>12.4f}{ours / whole:>8.3f}")
    return {"model": work.name, "model_bytes": total, "offloaded_bytes": offloaded, "steps": work.steps,
            "size": work.size, "unsplit_step_s": whole, "split_step_s": ours, "ratio": ours / whole}


@contextlib.contextmanager
def host_budget(mm, torch, device, budget):
    """The host's lowvram mode at a given VRAM budget (benchmark only; restored): its free-memory
    figure for ``device`` is set so that its own load_models_gpu gives the model's weights and
    their offload room ``budget`` bytes. The host subtracts the sampler's minimum memory from the
    free figure (the two lines taken from its load_models_gpu, below), so that minimum is added
    back for each call."""
    original_free, original_load = mm.get_free_memory, mm.load_models_gpu
    headroom = [mm.minimum_inference_memory()]

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        inference = mm.minimum_inference_memory()
        required = memory_required if minimum_memory_required is None else minimum_memory_required
        headroom[0] = max(inference, required + mm.extra_reserved_memory())
        return original_load(models, memory_required, force_patch_weights, minimum_memory_required, force_full_load)

    def limited(dev=None, torch_free_too=False):
        if dev is not None and torch.device(dev) == torch.device(device):
            free = budget + headroom[0]
            return (free, free) if torch_free_too else free
        return original_free(dev, torch_free_too)

    mm.get_free_memory, mm.load_models_gpu = limited, load_models_gpu
    try:
        yield
    finally:
        mm.get_free_memory, mm.load_models_gpu = original_free, original_load


def timed_step(args, work, sampler, model) -> float:
    sampler(work, model)()  # loads the model and warms the kernels
    return median(alternate(args.rounds, {"run": sampler(work, model)})["run"]) / work.steps


def gpu_section(args, work: Workload, models: Path, torch, mm, apply, load, sampler) -> dict:
    bandwidth = gpu_figures.pinned_h2d_bandwidth(torch)
    whole = load(work, "cuda:0")
    full_step = timed_step(args, work, sampler, whole)
    model_bytes = whole.model_size()
    mm.unload_all_models()
    del whole
    size_gib = (models / work.file).stat().st_size / 2**30
    print(f"# GPU: {work.name} ({size_gib:.2f} GiB on disk), {work.steps} steps at {work.size}x{work.size}, "
          f"cfg {work.cfg:g}, {args.rounds} rounds")
    print(f"# GPU: pinned host-to-device {bandwidth / 1e9:.1f} GB/s; step fully on cuda:0 {full_step:.4f} s; "
          f"targets: split / limit <= {TARGET_VS_LIMIT}, split / lowvram <= {TARGET_VS_LOWVRAM}")
    print(f"{'offload':<10}{'GiB off':>9}{'limit (s)':>11}{'split (s)':>11}{'vs limit':>10}{'lowvram (s)':>13}"
          f"{'vs lowvram':>12}  verdict")
    rows = []
    for share in GPU_SHARES:
        try:
            model = load(work, "cuda:0", f"{(100 - share) / 100:g}")
        except (RuntimeError, ValueError) as exc:  # a plan this model cannot have
            print(f"{share:<10}plan impossible: {exc}")
            rows.append({"offload_pct": share, "error": str(exc), "meets_targets": False})
            continue
        split = apply.split_of(model)
        offloaded = split.offloaded_bytes
        budget = split.plan.device_bytes[split.plan.compute_device] + split.plan.reserve_bytes
        limit = max(full_step, offloaded / bandwidth)
        ours = timed_step(args, work, sampler, model)
        mm.unload_all_models()
        del model, split
        core = load(work, "cuda:0")  # no split: the host decides what to offload
        with host_budget(mm, torch, "cuda:0", budget):
            lowvram = timed_step(args, work, sampler, core)
            lowvram_resident = core.loaded_size()
        mm.unload_all_models()
        del core
        row = {"offload_pct": share, "offloaded_bytes": offloaded, "vram_budget_bytes": budget,
               "lowvram_resident_bytes": lowvram_resident, "limit_s": limit, "split_s": ours,
               "vs_limit": ours / limit, "lowvram_s": lowvram, "vs_lowvram": ours / lowvram}
        row["meets_limit_target"] = row["vs_limit"] <= TARGET_VS_LIMIT
        row["meets_lowvram_target"] = row["vs_lowvram"] <= TARGET_VS_LOWVRAM
        row["meets_targets"] = row["meets_limit_target"] and row["meets_lowvram_target"]
        rows.append(row)
        verdict = "meets both" if row["meets_targets"] else "MISSES " + " and ".join(
            name for name, met in (("limit", row["meets_limit_target"]), ("lowvram", row["meets_lowvram_target"]))
            if not met)
        print(f"{share:<10}{offloaded / 2**30:>9.2f}{limit:>11.4f}{ours:>11.4f}{ours / limit:>10.3f}{lowvram:>13.4f}"
              f"{ours / lowvram:>12.3f}  {verdict}")
    return {"model": work.name, "model_bytes": model_bytes, "steps": work.steps, "size": work.size,
            "bandwidth_bytes_per_s": bandwidth, "full_step_s": full_step, "rows": rows}


if __name__ == "__main__":
    raise SystemExit(main())
