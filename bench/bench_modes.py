"""Modes: switch, cache, header-only detection and reload latency. Ratios from alternated runs.

In one process (no HTTP noise), on the synthetic SD1.5 checkpoint:
- cold switch (DisTorchModeSwitch path, cache emptied each round) vs core CheckpointLoaderSimple
  on the same file (target ratio <= 1.10);
- cached switch vs cold switch (target <= 0.05);
- header-only detection vs a full load of a diffusion model, at two file sizes: the same UNet
  (same tensors) stored in fp16 and in fp32, so only the bytes differ (detection time should not
  grow with the file; the full load does);
- reload latency: from a file write (editor-style rename) until the new modes are in force, as
  GET /distorch/modes reports them (p50 / p95; target p95 <= 250 ms).

    python bench/bench_modes.py [--rounds 5] [--reloads 40] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, ensure_models, import_host_and_pack, median, percentile  # noqa: E402
from hostenv import link_or_copy  # noqa: E402
from make_models import CHECKPOINT_FILE, unet_file  # noqa: E402


def alternate_prepared(rounds: int, contenders: dict) -> dict:
    """Like common.alternate, with an untimed preparation before each timed call (emptying the
    cache frees hundreds of MB: that cost belongs to neither side)."""
    names = list(contenders)
    times = {name: [] for name in names}
    for round_index in range(rounds):
        for name in (names if round_index % 2 == 0 else list(reversed(names))):
            prepare, run = contenders[name]
            prepare()
            started = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - started)
            del result
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reloads", type=int, default=40, help="file writes for the reload latency")
    parser.add_argument("--unet-depth", type=int, default=8, help="transformer blocks of the UNet for detection")
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.reloads, args.unet_depth = 2, 5, 1

    models = ensure_models(args.unet_depth)
    work = Path(tempfile.mkdtemp(prefix="bench-modes-"))
    root = work / "models"
    link_or_copy(models / CHECKPOINT_FILE, root / "a.safetensors")
    modes_file = work / "modes.yaml"
    modes_text = f"model_root: {root}\ncache: {{max_modes: 2, max_gb: 8}}\nmodes:\n  a: {{model: a.safetensors}}\n"
    modes_file.write_text(modes_text)
    os.environ["DISTORCH_MODES"] = str(modes_file)

    nodes, pack = import_host_and_pack(models)
    import comfy.sd
    import torch

    detection = importlib.import_module(f"{pack.__name__}.modes.detection")
    service = pack.RUNTIME.modes.start(pack.RUNTIME.registry)  # no server here: the bench starts it
    core_loader = nodes.CheckpointLoaderSimple()
    checkpoint_name = Path(CHECKPOINT_FILE).name

    def core_load():
        return core_loader.load_checkpoint(checkpoint_name)

    def cold_switch():
        service.cache.clear()
        return service.activate("a")

    def cached_switch():
        return service.activate("a")

    def empty_cache():
        service.cache.clear()
        gc.collect()

    core_load(), cold_switch()  # warm imports and the page cache
    load_times = alternate_prepared(args.rounds, {"core": (gc.collect, core_load),
                                                  "cold": (empty_cache, lambda: service.activate("a"))})
    cache_times = alternate_prepared(args.rounds, {"cold": (empty_cache, lambda: service.activate("a")),
                                                   "cached": (lambda: None, cached_switch)})
    empty_cache()

    from safetensors.torch import load_file, save_file

    small = models / unet_file(args.unet_depth)
    large = work / "unet-fp32.safetensors"
    save_file({k: v.float().contiguous() for k, v in load_file(str(small)).items()}, str(large))
    sizes = {}
    detect_times = {}
    for depth, path in (("fp16", small), ("fp32", large)):
        sizes[depth] = path.stat().st_size / 2**20
        detection.detect_model(path), comfy.sd.load_diffusion_model(str(path))   # warm
        times = alternate(args.rounds, {"detect": lambda p=path: detection.detect_model(p),
                                        "load": lambda p=path: comfy.sd.load_diffusion_model(str(p))})
        detect_times[depth] = times
        gc.collect()

    # Reload latency: editor-style write (temporary file renamed over the original), then poll the
    # state GET /distorch/modes serves until the new mode shows.
    latencies = []
    for index in range(args.reloads):
        text = modes_text + f"  r{index}: {{model: a.safetensors}}\n"
        temporary = modes_file.with_name("modes.yaml.tmp")
        temporary.write_text(text)
        started = time.perf_counter()
        os.replace(temporary, modes_file)
        deadline = started + 5
        while not any(m["name"] == f"r{index}" for m in service.listing()["modes"]):
            if time.perf_counter() > deadline:
                raise SystemExit(f"reload {index} not visible after 5 s: is the watcher running? "
                                 f"{service.listing()['watch']}")
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)

    print(f"# bench_modes {date.today()} {platform.machine()} {platform.processor() or ''} "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rounds} rounds alternated")
    print(f"# checkpoint {checkpoint_name} ({(models / CHECKPOINT_FILE).stat().st_size / 2**20:.0f} MiB)")
    print(f"{'measure':<34}{'baseline (s)':>14}{'measured (s)':>14}{'ratio':>10}")
    rows = [("cold switch / core checkpoint", load_times["core"], load_times["cold"]),
            ("cached switch / cold switch", cache_times["cold"], cache_times["cached"])]
    for depth in ("fp16", "fp32"):
        rows.append((f"detect / full load, {sizes[depth]:.0f} MiB", detect_times[depth]["load"],
                     detect_times[depth]["detect"]))
    for label, base, measured in rows:
        b, m = median(base), median(measured)
        print(f"{label:<34}{b:>14.5f}{m:>14.5f}{m / b:>10.5f}")
    for what in ("detect", "load"):
        fp16, fp32 = (median(detect_times[d][what]) for d in ("fp16", "fp32"))
        print(f"{what + ', fp32 / fp16 file':<34}{fp16:>14.5f}{fp32:>14.5f}{fp32 / fp16:>10.5f}")
    print(f"reload p50 {statistics.median(latencies) * 1000:.1f} ms, p95 {percentile(latencies, 0.95) * 1000:.1f} ms "
          f"over {len(latencies)} writes (watchdog + parse + validate + header reads)")
    pack.RUNTIME.close()  # stops the watcher, puts the SIGHUP handler back
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
