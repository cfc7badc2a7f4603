"""Mode affinity: a queue that alternates between two modes, with affinity off and on.

One real ComfyUI server with the pack, a modes.yaml with two modes (the synthetic SD1.5
checkpoint under two names) and a modes cache of one mode, so every change of mode reads the
checkpoint from disk (the cold switch dominates a 1-step 64x64 job). For each setting, a prompt
holds the worker while N jobs alternating A B A B ... are queued, then it is released:
- wall time from the release to the last job done, and its ratio on / off (same run, same server);
- mode loads from disk (GET /distorch/models) and mode switches (GET /distorch/queue);
- the worst delay any job suffered: how many jobs queued after it ran before it.
The two settings alternate over the rounds (off, on, on, off, ...).

    python bench/bench_queue.py [--prompts 40] [--rounds 2] [--max-passes 3] [--quick]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests" / "host")]
import hostenv  # noqa: E402
import queue_setup  # noqa: E402
from comfy_host import ComfyHost  # noqa: E402


def one_run(host: ComfyHost, gates: Path, jobs: int, max_passes: int, seed: int) -> dict:
    status, body = host.request("POST", "/distorch/queue/affinity", {"max_passes": max_passes})
    assert status == 200, body
    gate, _ = queue_setup.hold(host, gates)
    modes = [queue_setup.MODES[i % 2] for i in range(jobs)]
    ids = [queue_setup.post(host, queue_setup.sample_prompt(mode, seed * 1000 + i)) for i, mode in enumerate(modes)]
    loads_before = host.get("/distorch/models")["cache"]["disk_loads"]
    switches_before = host.get("/distorch/queue")["mode_switches"]
    started = time.perf_counter()
    gate.touch()
    ran = queue_setup.run_order(host, ids)
    wall = time.perf_counter() - started
    order = [ids.index(prompt_id) for prompt_id in ran]
    delays = [sum(1 for later in order[:order.index(i)] if later > i) for i in range(jobs)]
    return {"wall": wall, "loads": host.get("/distorch/models")["cache"]["disk_loads"] - loads_before,
            "switches": host.get("/distorch/queue")["mode_switches"] - switches_before,
            "worst_delay": max(delays)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each setting, alternated")
    parser.add_argument("--max-passes", type=int, default=3, help="the affinity bound for the 'on' runs")
    parser.add_argument("--quick", action="store_true", help="8 prompts, one round: checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.rounds = 8, 1

    work = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    models = hostenv.models_dir()
    modes_file = queue_setup.write_modes(work / "root", models, work / "modes.yaml")
    host = ComfyHost(hostenv.comfyui_dir(), work / "host", models, hostenv.REPO_ROOT,
                     env={"DISTORCH_MODES": str(modes_file)}, extra_custom_nodes=(queue_setup.FAULT_NODES,))
    host.start()
    results = {"off": [], "on": []}
    try:
        gates = work / "gates"
        gates.mkdir()
        queue_setup.post(host, queue_setup.sample_prompt("qa", 0))  # warm-up: first import and load costs
        for round_index in range(args.rounds):
            order = ("off", "on") if round_index % 2 == 0 else ("on", "off")
            for setting in order:
                passes = 0 if setting == "off" else args.max_passes
                results[setting].append(one_run(host, gates, args.prompts, passes, round_index))
    finally:
        host.stop()

    def med(setting, key):
        return statistics.median(run[key] for run in results[setting])

    print(f"# bench_queue {date.today()} {platform.machine()} {platform.processor() or ''} CPU-only host; "
          f"{args.prompts} jobs A B A B ..., modes cache of one, affinity bound {args.max_passes}, "
          f"{args.rounds} round(s) each")
    print(f"{'':24}{'off':>10}{'on':>10}{'on/off':>10}")
    off_wall, on_wall = med("off", "wall"), med("on", "wall")
    print(f"{'wall time (s)':24}{off_wall:>10.2f}{on_wall:>10.2f}{on_wall / off_wall:>10.3f}")
    for key, label in (("loads", "mode loads from disk"), ("switches", "mode switches")):
        off, on = med("off", key), med("on", key)
        print(f"{label:24}{off:>10.0f}{on:>10.0f}{(on / off if off else 0):>10.3f}")
    print(f"{'worst delay (positions)':24}{med('off', 'worst_delay'):>10.0f}{med('on', 'worst_delay'):>10.0f}")
    worst = max(run["worst_delay"] for run in results["on"])
    # each job queued later that ran first passed this one: the bound holds for every job
    assert worst <= args.max_passes, f"a job was passed {worst} times, over the bound {args.max_passes}"
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
