"""A GGUF split: bytes moved from the donor to the compute device per step, Q8_0 / Q4_0 vs fp16,
and on CPU the step time of a GGUF split vs the same GGUF file unsplit. One process.

The synthetic SD1.5 UNet is loaded three ways: the fp16 safetensors through
``comfy.sd.load_diffusion_model`` (kept fp16, as a GPU host stores it; this CPU host would widen it
to fp32 by default, doubling its figures), and its Q8_0 and Q4_0 ``.gguf`` files
(tools/make_gguf.py) through ComfyUI-GGUF's own ``UnetLoaderGGUF``. Two comparisons:
- same allocation: each model split by the pack's ``split_loaded_model`` with the allocation
  ``--keep`` (that share of the model's bytes kept on compute ``cpu``, the rest on the
  ``cpu (donor)`` slot); the planner picks the layers, so the smaller GGUF models offload more of
  them;
- same layers: the GGUF models split with exactly the layers the fp16 split offloads (a plan made
  here, applied by the pack's ``apply_split``): what keeping the weights quantized on the donor saves.

Bytes per step: one model forward (a sampling step with batched CFG) runs with a counting wrapper
on the two places where an offloaded layer's weights are fetched for a forward: ``comfy.ops``'s
``cast_bias_weight`` (core layers, and ComfyUI-GGUF layers holding unquantized tensors) and
ComfyUI-GGUF's ``GGMLLayer.cast_bias_weight`` (quantized layers: the stored blocks are moved, then
dequantized on the compute device). For each call on a layer the plan put on the donor, the bytes
of its source tensors (weight, bias, as stored on the donor) are added. The wrappers are removed in
``finally``; timed runs go without them. The plan's donor bytes are printed beside.

Step time (CPU only): each GGUF split vs the same file unsplit, and as a control the same file
loaded a second time unsplit; one forward each, contenders alternated round by round, medians
(and the ratio of the fastest rounds). Donor and compute are both the CPU here, so nothing crosses
a link: the ratio is the pack's per-layer overhead only. GPU figures are not measured here.

    python bench/bench_gguf.py [--rounds 11] [--unet-depth 1] [--size 256] [--keep 0.5] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import os
import platform
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, ensure_models, import_host_and_pack, median  # noqa: E402
import hostenv  # noqa: E402  (tools/, put on the path by common)
import make_gguf  # noqa: E402
from make_models import unet_file  # noqa: E402

QTYPES = ("Q8_0", "Q4_0")
DONOR = "cpu (donor)"
# The synthetic UNet is built of small layers, smaller still once quantized (a 320x320 projection
# is 200 KiB in fp16, 106 KiB in Q8_0, 56 KiB in Q4_0): let modules above 16 KiB move, so that the
# planner may offload the same layers in all three formats.
TINY_BYTES = str(16 * 1024)
GGUF_PACKAGE = "comfyui_gguf_for_bench"


def import_comfyui_gguf():
    """ComfyUI-GGUF imported over the host as a package (``.nodes``, ``.ops``), without its
    ``__init__`` (as tests/unit/conftest.py does); None where no copy is found."""
    folder = hostenv.comfyui_gguf_dir()
    if folder is None:
        return None
    if GGUF_PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(GGUF_PACKAGE, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        sys.modules[GGUF_PACKAGE] = importlib.util.module_from_spec(spec)  # deliberately not executed
    return importlib.import_module(f"{GGUF_PACKAGE}.nodes"), importlib.import_module(f"{GGUF_PACKAGE}.ops"), folder


def gguf_name(depth: int, qtype: str) -> str:
    return make_gguf.gguf_file(qtype) if depth == 1 else f"distorch-bench-unet-d{depth}-{qtype}.gguf"


def ensure_gguf(models: Path, depth: int) -> None:
    """The quantized files of the depth-``depth`` UNet (depth 1: make_models.py's own files)."""
    missing = [q for q in QTYPES if not (models / "diffusion_models" / gguf_name(depth, q)).exists()]
    if not missing:
        return
    from safetensors.torch import load_file

    state = load_file(str(models / unet_file(depth)))
    for qtype in missing:
        make_gguf.write_unet_gguf(state, models / "diffusion_models" / gguf_name(depth, qtype), qtype)


def stored_bytes(module) -> int:
    """Bytes of a layer's weight and bias as they are stored (a GGMLTensor holds its packed blocks)."""
    return sum(t.nelement() * t.element_size() for t in (getattr(module, "weight", None),
                                                          getattr(module, "bias", None)) if t is not None)


@contextlib.contextmanager
def counting_casts(donor_modules: dict, ggml_layer):
    """Count, per call of a layer's cast for a forward, the stored bytes of the layers in
    ``donor_modules`` (id -> module). Benchmark only: both functions are put back on exit."""
    import comfy.ops

    counted = {"bytes": 0, "casts": 0, "layers": set(), "other_casts": 0}

    def count(module):
        if id(module) in donor_modules:
            counted["bytes"] += stored_bytes(module)
            counted["casts"] += 1
            counted["layers"].add(id(module))
        else:
            counted["other_casts"] += 1

    core = comfy.ops.cast_bias_weight
    ggml = ggml_layer.__dict__["cast_bias_weight"]

    def core_counted(s, *args, **kwargs):
        count(s)
        return core(s, *args, **kwargs)

    def ggml_counted(s, *args, **kwargs):
        count(s)
        return ggml(s, *args, **kwargs)

    comfy.ops.cast_bias_weight = core_counted
    ggml_layer.cast_bias_weight = ggml_counted
    try:
        yield counted
    finally:
        comfy.ops.cast_bias_weight = core
        ggml_layer.cast_bias_weight = ggml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--unet-depth", type=int, default=1, help="transformer blocks in the test UNet (size dial)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (latent = size / 8)")
    parser.add_argument("--keep", type=float, default=0.5, help="share of the model's bytes kept on the compute device")
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.unet_depth, args.size = 2, 1, 64

    os.environ["DISTORCH_TINY_BYTES"] = TINY_BYTES
    models = ensure_models(args.unet_depth)
    import torch

    import_host_and_pack(models, cpu=True)
    found = import_comfyui_gguf()
    if found is None:
        print("# ComfyUI-GGUF not found (looked in: " + ", ".join(map(str, hostenv.comfyui_gguf_candidates()))
              + "); set COMFYUI_GGUF_PATH")
        return 2
    gguf_nodes, gguf_ops, gguf_folder = found
    ensure_gguf(models, args.unet_depth)
    import comfy.model_management as mm
    import comfy.sd
    import folder_paths

    folder_paths.folder_names_and_paths["diffusion_models"] = ([str(models / "diffusion_models")],
                                                               {".gguf", ".safetensors"})
    apply = importlib.import_module("comfyui_distorch.distorch.host.split_patcher")
    split_model = importlib.import_module("comfyui_distorch.distorch.host.split_loaded")
    split_request = importlib.import_module("comfyui_distorch.distorch.logic.split_request").split_request
    modules_of = importlib.import_module("comfyui_distorch.distorch.logic.module_sizes").modules_of
    Plan = importlib.import_module("comfyui_distorch.distorch.logic.planner").Plan
    runtime = split_model.SplitRuntime()

    def load(kind: str):
        if kind == "fp16":
            path = models / unet_file(args.unet_depth)
            return comfy.sd.load_diffusion_model(str(path), model_options={"dtype": torch.float16})
        return gguf_nodes.UnetLoaderGGUF().load_unet(gguf_name(args.unet_depth, kind))[0]

    def split(patcher):
        request = split_request("cpu", ["cpu"], 0.0, "cpu", f"{args.keep:g}")
        result = split_model.split_loaded_model(patcher, request, "bench", runtime)
        if result.plan is None or DONOR not in result.plan.device_bytes:
            raise SystemExit("the split was not applied (see the log)")
        return result.patcher, result.plan

    generator = torch.Generator().manual_seed(0)
    latent_side = args.size // 8
    x = torch.randn(2, 4, latent_side, latent_side, generator=generator)  # cond + uncond, batched CFG
    context = torch.randn(2, 77, 768, generator=generator)
    timestep = torch.tensor([500.0, 500.0])

    def forward(patcher):
        def run():
            with torch.no_grad():
                return patcher.model.apply_model(x, timestep, c_crossattn=context)
        return run

    print(f"# bench_gguf {date.today()} {platform.machine()} {platform.processor() or ''} torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; ComfyUI-GGUF at {gguf_folder}")
    sizes = {"fp16": (models / unet_file(args.unet_depth)).stat().st_size}
    sizes.update({q: (models / "diffusion_models" / gguf_name(args.unet_depth, q)).stat().st_size for q in QTYPES})
    print(f"# UNet {Path(unet_file(args.unet_depth)).name} (depth {args.unet_depth}); files: "
          + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items())
          + f"; allocation '{args.keep:g}' (share kept on cpu, rest on {DONOR}); DISTORCH_TINY_BYTES={TINY_BYTES}")

    def count_step(kind: str, patcher, plan) -> dict:
        """One forward of a split model with the casts counted; the figures of that step."""
        mm.load_models_gpu([patcher])
        named = dict(patcher.model.named_modules())
        donor_names = plan.modules_on(DONOR)
        donor_modules = {id(named[name]): named[name] for name in donor_names}
        with counting_casts(donor_modules, gguf_ops.GGMLLayer) as counted:
            out = forward(patcher)()
        if not torch.isfinite(out).all():
            raise SystemExit(f"{kind}: the split forward gave non-finite values")
        return {"plan": plan.device_bytes[DONOR], "counted": counted["bytes"], "casts": counted["casts"],
                "layers": len(counted["layers"]), "donor_layers": len(donor_names), "names": set(donor_names),
                "stored": sum(stored_bytes(m) for m in donor_modules.values()), "other": counted["other_casts"],
                "largest": any(getattr(m, "largest_layer", False) for m in donor_modules.values()),
                "whole": sum(m.bytes for m in modules_of(patcher.model))}

    def same_layers(patcher, donor_names: set):
        """``patcher`` split by the pack's apply step with ``donor_names`` on the donor (a plan made
        here instead of by the planner: the fp16 split's layers)."""
        modules = modules_of(patcher.model)
        missing = donor_names - {m.name for m in modules}
        if missing:
            raise SystemExit(f"layers of the fp16 split missing from the GGUF model: {sorted(missing)[:5]}")
        donor = [m for m in modules if m.name in donor_names]
        plan = Plan("cpu", {m.name: DONOR if m.name in donor_names else "cpu" for m in modules},
                    {"cpu": sum(m.bytes for m in modules) - sum(m.bytes for m in donor),
                     DONOR: sum(m.bytes for m in donor)}, max(m.bytes for m in donor))
        return apply.apply_split(patcher, apply.SplitLayout.from_plan(plan, "the fp16 split's layers")), plan

    def report(title: str, rows: dict) -> None:
        print(f"# {title}")
        print(f"{'model':<8}{'model MiB':>11}{'plan donor MiB':>16}{'counted MiB/step':>18}{'layers cast':>13}"
              f"{'ratio vs fp16':>15}")
        for kind, row in rows.items():
            print(f"{kind:<8}{row['whole'] / 2**20:>11.2f}{row['plan'] / 2**20:>16.3f}"
                  f"{row['counted'] / 2**20:>18.3f}{row['layers']:>7}/{row['donor_layers']:<5}"
                  f"{row['counted'] / rows['fp16']['counted']:>15.3f}")
        for kind, row in rows.items():
            agree = "counted == plan" if row["counted"] == row["plan"] else (
                f"plan - counted = {row['plan'] - row['counted']:+d} B")
            print(f"#   {kind}: {agree}; {row['casts']} casts of {row['donor_layers']} donor layers; donor layers' "
                  f"stored weight+bias {row['stored']} B; {row['other']} casts of layers kept on cpu (nothing crosses)")
            if row["largest"] and row["plan"] > row["stored"]:
                print(f"#   {kind}: the plan counts ComfyUI-GGUF's dequantize buffer of its largest layer "
                      f"({row['plan'] - row['stored']} B, in the layer's state dict) on the donor; it is never "
                      "stored there nor moved")

    # ---- bytes fetched from the donor per forward ------------------------------------------
    print("# bytes host->compute per step = per forward: the stored bytes of the donor's layers, counted at "
          "their casts (the same at any batch or resolution; un-batched CFG runs two forwards per step: twice these)")
    by_share, splits = {}, {}
    for kind in ("fp16",) + QTYPES:
        patcher, plan = split(load(kind))
        by_share[kind] = count_step(kind, patcher, plan)
        if kind == "fp16":
            mm.unload_all_models()
            del patcher
            gc.collect()
        else:
            splits[kind] = patcher
    report(f"same allocation '{args.keep:g}' (the planner chooses the layers for each model)", by_share)
    by_layers = {"fp16": by_share["fp16"]}
    for qtype in QTYPES:
        patcher, plan = same_layers(load(qtype), by_share["fp16"]["names"])
        by_layers[qtype] = count_step(qtype, patcher, plan)
        mm.unload_all_models()
        del patcher
        gc.collect()
    report("same layers as the fp16 split (plan made here, applied by the pack's apply_split)", by_layers)
    for qtype in QTYPES:
        shared = len(by_share[qtype]["names"] & by_share["fp16"]["names"])
        print(f"# same allocation: {qtype} puts {by_share[qtype]['donor_layers']} layers on the donor, {shared} of "
              f"the fp16 split's {by_share['fp16']['donor_layers']}")
    for label, rows in (("same allocation", by_share), ("same layers", by_layers)):
        for qtype in QTYPES:
            print(f"bytes ratio {qtype} / fp16, {label} {rows[qtype]['counted'] / rows['fp16']['counted']:.3f}")

    # ---- CPU step time: GGUF split vs unsplit -----------------------------------------------
    # The same file loaded twice unsplit is the control: its ratio is the noise of this machine.
    patchers = {}
    for qtype in QTYPES:
        patchers[f"{qtype} unsplit"] = load(qtype)
        patchers[f"{qtype} unsplit again"] = load(qtype)
        patchers[f"{qtype} split"] = splits[qtype]
    mm.load_models_gpu(list(patchers.values()))
    placed = {name: sum(1 for m in p.model.modules() if getattr(m, apply.PLACED_MARK, False))
              for name, p in patchers.items() if "again" not in name}
    contenders = {name: forward(p) for name, p in patchers.items()}
    for run in contenders.values():
        run()  # warm-up
    times = alternate(args.rounds, contenders)
    loaded = {id(entry.model) for entry in mm.current_loaded_models}
    if not all(id(p) in loaded for p in patchers.values()):
        print("# warning: a model was unloaded during the timed rounds")
    print(f"# CPU step time: one forward, batch 2 (cond + uncond) at {args.size}x{args.size}, {args.rounds} rounds "
          "alternated over the contenders below. Donor and compute are both the CPU: no bytes cross a link here, "
          "so the split / unsplit ratio is the pack's per-layer overhead only; GPU figures are not measured by "
          "this script.")
    print("# layers placed on the donor: " + ", ".join(f"{name} {count}" for name, count in placed.items())
          + "; control = the same file loaded a second time, unsplit (its ratio is this machine's noise)")
    print(f"{'step (s)':<10}{'unsplit':>10}{'split':>10}{'ratio':>8}{'control':>10}{'ratio':>8}"
          f"{'min ratio':>11}{'control min':>13}")
    for qtype in QTYPES:
        whole, ours, again = (times[f"{qtype} {name}"] for name in ("unsplit", "split", "unsplit again"))
        print(f"{qtype:<10}{median(whole):>10.4f}{median(ours):>10.4f}{median(ours) / median(whole):>8.3f}"
              f"{median(again):>10.4f}{median(again) / median(whole):>8.3f}{min(ours) / min(whole):>11.3f}"
              f"{min(again) / min(whole):>13.3f}")
    runtime.restore()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
