"""The pack's soft_empty_cache wrapper vs the host's own function, per call.

Newer ComfyUI calls soft_empty_cache after every node (and while sampling), so what the pack adds
to each call matters. Three contenders, alternated round by round, with DisTorch models loaded and
RAM treated as "above the trim threshold" (DISTORCH_RAM_TRIM_PERCENT=0, the case that used to trim
on every call):

- core: the host's original function;
- pack, between passes: the wrapper within FULL_PASS_INTERVAL_S of its last full pass with no
  unload since (the per-node case);
- pack, after an unload: the wrapper right after an unload flow (it clears every other device's
  cache and returns freed RAM to the OS with malloc_trim).

Prints medians in microseconds and the ratios to core.

    python bench/bench_cache_pass.py [--rounds 400] [--quick]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, ensure_models, import_host_and_pack, median  # noqa: E402
from make_models import unet_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="tiny run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 20
    os.environ["DISTORCH_RAM_TRIM_PERCENT"] = "0"

    models = ensure_models(1)
    nodes, pack = import_host_and_pack(models)
    import comfy.model_management as mm
    import torch

    control = pack.RUNTIME.memory
    original = pack.RUNTIME.registry.patch_for(mm, "soft_empty_cache").original
    loader = pack.NODE_CLASS_MAPPINGS["DisTorchUNETLoader"]()
    kept = [loader.load_distorch(Path(unet_file(1)).name, "default", "cpu", False)[0] for _ in range(3)]
    mm.load_models_gpu(kept)
    mm.soft_empty_cache()  # settles the wrapper's count of loaded models

    def after_unload():
        control.trim_pending = True  # what an unload flow leaves for the next pass
        mm.soft_empty_cache()

    contenders = {"core": original, "pack, between passes": mm.soft_empty_cache,
                  "pack, after an unload": after_unload}
    times = alternate(args.rounds, contenders)
    core = median(times["core"])
    print(f"# {date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {len(mm.current_loaded_models)} DisTorch models loaded, "
          f"{args.rounds} rounds")
    print(f"{'contender':<26}{'median (us)':>12}{'ratio to core':>15}")
    for name, values in times.items():
        print(f"{name:<26}{median(values) * 1e6:>12.1f}{median(values) / core:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
