"""Soak: a long mixed session on a real ComfyUI server must not grow.

One server with the pack and a modes.yaml; prompts cycle through what a long-running server sees:
DisTorch loaders unsplit and split, keep_loaded on and off, a keep_loaded node whose input changes
every time, core loaders, a DisTorch checkpoint, mode switches between two modes, and a POST /free
(Manager's two buttons, alternately) every 10 prompts. Reported:
- process RSS right after each /free flow (the same point of the cycle each time), and its drift
  from the window start (default prompt 200) to the end (target < 5 %);
- the most models the memory report ever listed, and what the retention budget held (bounded).

    python bench/bench_soak.py [--prompts 1000] [--window-start 200] [--quick]

``--quick`` (60 prompts, window from prompt 20) is what tests/host/test_soak.py runs with the same
assertions; the full run is a benchmark, not a timed test (about 20-30 min on a 2-core VM).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests" / "host")]
import hostenv  # noqa: E402
import modes_setup  # noqa: E402
import workflows  # noqa: E402
from comfy_host import ComfyHost  # noqa: E402

FREE_EVERY = 10
FREE_BODIES = ({"unload_models": True}, {"unload_models": True, "free_memory": True})
RSS_DRIFT_LIMIT = 0.05


CYCLE = 10
PHASE = 40  # every choice below repeats after this many prompts: RSS is compared at the same phase


def prompt_for(index: int) -> dict:
    """The index-th prompt of the cycle (small and fast: 64 px, 1 step)."""
    kind = index % CYCLE
    common = {"steps": 1, "size": 64, "seed": index, "prefix": f"soak{kind}"}
    if kind in (0, 1, 2, 3, 8):
        loaders = workflows.separate_loaders("distorch", compute_device="cpu")
        loaders["1"]["inputs"]["keep_loaded"] = kind in (0, 1, 2)
        loaders["2"]["inputs"]["keep_loaded"] = kind == 2
        if kind in (1, 8):  # split: part of the UNet parked on the donor (kept, then flagged)
            loaders["1"]["inputs"].update(virtual_vram_gb=0.02, donor_device="cpu")
        if kind == 2:  # a kept node whose input changes from cycle to cycle
            loaders["1"]["inputs"].update(virtual_vram_gb=round(0.01 * (index // CYCLE % 4), 2), donor_device="cpu")
        return workflows.separate_txt2img(loaders, **common)
    if kind == 4:
        return workflows.separate_txt2img(workflows.separate_loaders("core"), **common)
    if kind == 5:
        return workflows.txt2img(workflows.checkpoint_loader("distorch", keep_loaded=index // CYCLE % 2 == 0), **common)
    mode = "mode-b" if kind == 7 else "mode-a"
    return {
        "1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["1", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0],
            "seed": index, "steps": 1, "cfg": ["1", 6], "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


def wait_for_flow(host: ComfyHost, since: float, timeout: float = 60.0) -> dict:
    """The memory report once a /free flow started after ``since`` has finished (one press)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = host.get("/internal/memory")
        last = document["last_unload"]
        if last and last["at"] > since and last.get("completed_at"):
            return document
        time.sleep(0.05)
    raise TimeoutError(f"no completed /free flow {timeout}s after one press:\n{host.log_tail()}")


def soak(host: ComfyHost, prompts: int, window_start: int, log=print) -> dict:
    rss_after_free: dict[int, int] = {}
    most_models = most_retained = 0
    started = time.monotonic()
    for index in range(1, prompts + 1):
        host.run(prompt_for(index), timeout=300)
        document = host.get("/internal/memory")
        most_models = max(most_models, len(document["models"]))
        most_retained = max(most_retained, document["retention"]["used"]["models"])
        if index % FREE_EVERY == 0:
            body = FREE_BODIES[(index // FREE_EVERY) % 2]
            since = time.time()
            status, _ = host.request("POST", "/free", body)
            assert status == 200
            document = wait_for_flow(host, since)
            rss_after_free[index] = document["ram"]["process_rss"]
            if index % 100 == 0 or index == prompts:
                log(f"# prompt {index}: RSS {rss_after_free[index] / 2**20:.0f} MiB, models listed "
                    f"{len(document['models'])}, retained {document['retention']['used']['models']}, "
                    f"{time.monotonic() - started:.0f} s")
    window = {i: rss for i, rss in rss_after_free.items() if i >= window_start}
    # The same point of every repeating choice at both ends: the same models are held there.
    end = max(i for i in window if (i - window_start) % PHASE == 0)
    first, last = window[window_start], window[end]
    return {"prompts": prompts, "window": [window_start, end], "rss_start": first, "rss_end": last,
            "rss_drift": (last - first) / first, "rss_peak_in_window": max(window.values()),
            "most_models_listed": most_models, "most_retained": most_retained,
            "budget": document["retention"]["budget"], "evicted_total": document["retention"]["evicted_total"],
            "seconds": time.monotonic() - started}


def start_host(base: Path) -> ComfyHost:
    models = hostenv.models_dir()
    root = modes_setup.make_model_root(base / "modes-root", models)
    modes_file = base / "modes.yaml"
    modes_file.write_text(modes_setup.modes_yaml(root))
    host = ComfyHost(hostenv.comfyui_dir(), base / "host", models, hostenv.REPO_ROOT,
                     env={"DISTORCH_MODES": str(modes_file)})
    return host.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--window-start", type=int, default=200, help="prompt from which RSS drift is measured")
    parser.add_argument("--quick", action="store_true", help="60 prompts, drift from prompt 20 (what CI runs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.window_start = 60, 20
    with tempfile.TemporaryDirectory(prefix="distorch-soak-") as tmp:
        host = start_host(Path(tmp))
        try:
            result = soak(host, args.prompts, args.window_start)
        finally:
            host.stop()
    print(f"# bench_soak {date.today()} {platform.machine()} {platform.processor() or ''} "
          f"python {platform.python_version()}")
    print(f"prompts {result['prompts']} in {result['seconds']:.0f} s; a /free every {FREE_EVERY}")
    print(f"RSS after /free: prompt {result['window'][0]} {result['rss_start'] / 2**20:.0f} MiB, prompt "
          f"{result['window'][1]} {result['rss_end'] / 2**20:.0f} MiB, peak {result['rss_peak_in_window'] / 2**20:.0f} MiB")
    print(f"rss drift {result['rss_drift']:+.4f} (target < {RSS_DRIFT_LIMIT})")
    print(f"most models listed {result['most_models_listed']}; most retained {result['most_retained']} "
          f"(budget {result['budget']['max_models']}); budget releases {result['evicted_total']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
