"""The pack on a DynamicVRAM host: load, split, unload and report models built with
``ModelPatcherDynamic``, and write a JSON report of what test_dynamic_vram_gpu.py checks.

Run with DISTORCH_DYNAMIC_VRAM=on on ComfyUI 0.33.0 (the GPU check's "0.33.0, DynamicVRAM on" run):
the host is started in-process as main.py starts it (tests/host/gpu_host.py). The sequence:
1. a plain load (no split) of the test DiT through DisTorchUNETLoader, keep_loaded on ("kept"),
   and of the test UNet, keep_loaded off ("flagged"); both sampled, so both are loaded;
2. the memory report's figures for the kept model, read with only it loaded, beside the device's
   use (torch.cuda.mem_get_info, the allocator's cache emptied) since before its load;
3. ``free_memory(for_dynamic=True)`` for the whole device (what a dynamic model's load asks);
4. the /free flow (the prompt worker's unload_all_models after reading the flags);
5. a per-model unload (POST /distorch/free {"model": id}) of the kept model, the flagged one
   loaded beside it, the device's use read before and after (what the unload gives back, kernels
   and CUDA context alike on both sides);
6. a split of the test UNet: the pack splits the host's non-dynamic copy of it
   (``clone(disable_dynamic=True)``, counted here), sampled, its bytes per device read.

``--device cpu`` (the GPU check's dry run) runs the same sequence on the CPU, where DynamicVRAM
cannot be on: every figure that needs it is null or false there.

    python tests/host/gpu_dynamic_probe.py --out report.json [--device cuda:0] [--unet-depth 8]
        [--dit-depth 3] [--size 256] [--steps 2]
"""
from __future__ import annotations

import argparse
import gc
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
from make_models import dit_file, unet_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda:0", help="compute device: cuda:0, or cpu for a dry run")
    parser.add_argument("--unet-depth", type=int, default=8)
    parser.add_argument("--dit-depth", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    os.environ.setdefault("DISTORCH_TINY_BYTES", str(64 * 1024))  # as gpu_split_probe.py: small layers may move
    cuda = args.device.startswith("cuda")
    models = ensure_model_files(unet_depths=[args.unet_depth], dit_depths=[args.dit_depth])
    nodes, pack, dynamic = gpu_host.import_host(models, args.device)
    import comfy.model_management as mm
    import comfy.model_patcher as model_patcher
    import torch

    patches = importlib.import_module("comfyui_distorch.model_management_mgpu")
    apply = importlib.import_module("comfyui_distorch.distorch.host.split_patcher")
    split_module = importlib.import_module("comfyui_distorch.distorch.logic.split_request")
    control = pack.RUNTIME.memory
    device = torch.device(args.device)
    dit, unet = Path(dit_file(args.dit_depth)).name, Path(unet_file(args.unet_depth)).name
    conditioning = {"flux": gpu_figures.synthetic_conditioning(torch, "flux", 16),
                    "sd15": gpu_figures.synthetic_conditioning(torch, "sd15")}
    latents = {family: gpu_figures.empty_latent(torch, family, args.size) for family in conditioning}
    static_copies = []
    dynamic_class = getattr(model_patcher, "ModelPatcherDynamic", None)
    if dynamic_class is not None:  # count the host's non-dynamic copies the pack asks for (no change to them)
        original_clone = dynamic_class.clone

        def counted_clone(self, *clone_args, **clone_kwargs):
            if clone_kwargs.get("disable_dynamic"):
                static_copies.append(type(self).__name__)
            return original_clone(self, *clone_args, **clone_kwargs)

        dynamic_class.clone = counted_clone

    def is_dynamic(patcher) -> bool:
        return bool(getattr(patcher, "is_dynamic", lambda: False)())  # 0.3.75's ModelPatcher has no is_dynamic

    def load(node, name, keep_loaded, allocation=""):
        return node.load_distorch(unet_name=name, weight_dtype="default", compute_device=args.device,
                                  keep_loaded=keep_loaded, virtual_vram_gb=0.0, donor_device="cpu",
                                  allocation=allocation)[0]

    def sample(model, family):
        positive, negative = conditioning[family]
        cfg = 1.0 if family == "flux" else 5.0
        out = nodes.common_ksampler(model, 5, args.steps, cfg, "euler", "simple", positive, negative,
                                    latents[family])[0]["samples"]
        if cuda:
            torch.cuda.synchronize()
        return bool(torch.isfinite(out).all())

    def loaded_ids() -> list[str]:
        return [patches.model_id(entry.model) for entry in mm.current_loaded_models if entry.model is not None]

    def free_flow(request_id=None) -> dict:
        """The prompt worker's unload after it read /free's flags (a per-model request first, if any)."""
        if request_id is not None:
            control.request_model_unload(request_id)
        control.arm_free_flow()
        mm.unload_all_models()
        return {key: control.last_unload.get(key) for key in ("mode", "unloaded", "kept")}

    def used_on_device() -> int | None:
        if not cuda:
            return None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the allocator's cache is not a model's memory
        free, total = torch.cuda.mem_get_info(device)
        return total - free

    report = {"device": args.device, "dynamic_vram": dynamic, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if cuda else None, "dit": dit, "unet": unet,
              "aimdo_enabled": bool(getattr(importlib.import_module("comfy.memory_management"), "aimdo_enabled",
                                            False))}

    # 1. two plain loads, both sampled (loaded through the host's load_models_gpu)
    mm.unload_all_models()
    mm.soft_empty_cache()
    used_before = used_on_device()
    allocated_before = torch.cuda.memory_allocated(device) if cuda else None
    kept_node, flagged_node = (pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]() for _ in range(2))
    kept = load(kept_node, dit, keep_loaded=True)
    kept_finite = sample(kept, "flux")
    used_kept = used_on_device()
    kept_memory = patches.describe_model(kept, "loaded", control.is_kept_patcher(kept))
    flagged = load(flagged_node, unet, keep_loaded=False)
    flagged_finite = sample(flagged, "sd15")
    kept_id, flagged_id = patches.model_id(kept), patches.model_id(flagged)
    report["loads"] = {
        "kept": {"class": type(kept).__name__, "is_dynamic": is_dynamic(kept), "finite": kept_finite,
                 "keep_loaded": control.is_kept_patcher(kept)},
        "flagged": {"class": type(flagged).__name__, "is_dynamic": is_dynamic(flagged),
                    "finite": flagged_finite, "keep_loaded": control.is_kept_patcher(flagged)},
        "loaded_after_sampling": {"kept": kept_id in loaded_ids(), "flagged": flagged_id in loaded_ids()},
    }

    # 2. the memory report for the kept model beside torch.cuda's readings (read with only it loaded)
    report["memory_report"] = {
        "devices": kept_memory.devices, "loaded_bytes": kept_memory.loaded_bytes,
        "compute_device": kept_memory.compute_device, "keep_loaded": kept_memory.keep_loaded,
        "model_bytes": sum(t.nelement() * t.element_size() for t in kept.model.state_dict().values()),
        "device_used_delta": None if used_kept is None else used_kept - used_before,
        "torch_allocated_delta": None if allocated_before is None
        else torch.cuda.memory_allocated(device) - allocated_before,
        "offload_settings_dynamic_vram": patches.offload_settings().dynamic_vram,
    }

    # 3. free_memory(for_dynamic=True) for the whole device: what loading a dynamic model asks
    before = loaded_ids()
    mm.free_memory(1e30, device, for_dynamic=True)
    report["free_memory_for_dynamic"] = {"kept_before": kept_id in before, "flagged_before": flagged_id in before,
                                         "kept_after": kept_id in loaded_ids(),
                                         "flagged_after": flagged_id in loaded_ids()}

    # 4. the /free flow: the flagged model goes, the keep_loaded one stays (both loaded first: on the
    # CPU step 3 unloads them, as the host does with models that are not dynamic)
    for patcher, family in ((kept, "flux"), (flagged, "sd15")):
        if patches.model_id(patcher) not in loaded_ids():
            sample(patcher, family)
    flow = free_flow()
    report["free_flow"] = {**flow, "kept_after": kept_id in loaded_ids(),
                           "flagged_after": flagged_id in loaded_ids(),
                           "kept_loaded_size_after": int(kept.loaded_size()),
                           "flagged_loaded_size_after": int(flagged.loaded_size())}

    # 5. a per-model unload of the keep_loaded model, the flagged one loaded again beside it (a
    # per-model unload also ends the pack's keep_loaded hold, so it comes last)
    sample(flagged, "sd15")
    if kept_id not in loaded_ids():
        sample(kept, "flux")
    kept_memory_now = patches.describe_model(kept, "loaded", True).devices
    used_loaded = used_on_device()
    flow = free_flow(request_id=kept_id)
    used_unloaded = used_on_device()
    report["model_unload"] = {**flow, "kept_after": kept_id in loaded_ids(),
                              "flagged_after": flagged_id in loaded_ids(),
                              "kept_loaded_size_after": int(kept.loaded_size()),
                              "kept_report_devices_before": kept_memory_now,
                              "kept_report_devices_after": patches.describe_model(kept, "retained", True).devices,
                              "device_freed": None if used_loaded is None else used_loaded - used_unloaded}
    control.request_force()
    control.arm_free_flow()
    mm.unload_all_models()
    del kept, flagged
    gc.collect()

    # 6. a split of the test UNet: through the host's non-dynamic copy when DynamicVRAM is on
    static_copies.clear()
    split_node = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()
    model = load(split_node, unet, keep_loaded=False, allocation="0.5")
    finite = sample(model, "sd15")
    split = apply.split_of(model)
    entry = {"class": type(model).__name__, "is_dynamic": is_dynamic(model), "finite": finite,
             "static_copies": len(static_copies), "parent_is_none": getattr(model, "parent", None) is None,
             "split": split is not None}
    if split is not None:
        entry.update(planned_by_device=gpu_figures.planned_bytes_by_device(split.plan, split_module.slot_device),
                     placed_by_device=gpu_figures.placed_bytes(model.model, split.plan),
                     donors=gpu_figures.donor_pinning(model.model, split.offloaded))
    report["split"] = entry
    args.out.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
