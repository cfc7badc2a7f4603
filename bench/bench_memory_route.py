"""GET /internal/memory latency under load, as a ratio to core GET /system_stats.

Starts a real ComfyUI server with the pack (tools/comfy_host.py), queues a prompt that samples for a
while, and while it samples runs ``--clients`` concurrent clients, each alternating the two routes
request by request (order flipped every round) on its own keep-alive connection. Prints p50 / p99
of both and their ratios. Targets (issue 3): p99 ratio <= 2 and /internal/memory p99 < 20 ms.

    python bench/bench_memory_route.py [--clients 16] [--requests 60] [--quick]
"""
from __future__ import annotations

import argparse
import http.client
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "host"))
from common import hostenv, percentile  # noqa: E402
import workflows  # noqa: E402
from comfy_host import ComfyHost  # noqa: E402

ROUTES = ("/internal/memory", "/system_stats")


def client(port: int, requests: int, offset: int, results: dict, errors: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for index in range(requests):
            order = ROUTES if (index + offset) % 2 == 0 else tuple(reversed(ROUTES))
            for route in order:
                start = time.perf_counter()
                connection.request("GET", route)
                response = connection.getresponse()
                response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200:
                    errors.append(f"{route} -> {response.status}")
                results[route].append(elapsed)
    except Exception as exc:  # reported, not hidden
        errors.append(repr(exc))
    finally:
        connection.close()


def sampling(host: ComfyHost) -> bool:
    return bool(host.get("/queue")["queue_running"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=60, help="requests per client and route")
    parser.add_argument("--steps", type=int, default=400, help="sampling steps of the background prompt")
    parser.add_argument("--quick", action="store_true", help="small run that only checks the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.requests, args.steps = 4, 5, 60

    with tempfile.TemporaryDirectory() as base:
        host = ComfyHost(hostenv.comfyui_dir(), Path(base), hostenv.models_dir(), hostenv.REPO_ROOT)
        host.start()
        try:
            # Models loaded first so the report has something to describe.
            host.run(workflows.separate_txt2img(workflows.separate_loaders("distorch", compute_device="cpu"),
                                                steps=1))
            long_prompt = workflows.separate_txt2img(
                workflows.separate_loaders("distorch", compute_device="cpu"), steps=args.steps, size=256, seed=7)
            prompt_id = host.queue(long_prompt)
            deadline = time.monotonic() + 60
            while not sampling(host) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # into the sampling loop
            results = {route: [] for route in ROUTES}
            errors: list[str] = []
            threads = [threading.Thread(target=client, args=(host.port, args.requests, i, results, errors))
                       for i in range(args.clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started
            still_sampling = sampling(host)
            models = len(host.get("/internal/memory")["models"])
            host.request("POST", "/interrupt", {})
            host.wait(prompt_id, timeout=120)
        finally:
            host.stop()

    if errors:
        print("errors:", *errors[:10], sep="\n  ")
        return 1
    print(f"# bench_memory_route {date.today()} {platform.machine()} {platform.processor() or ''}; "
          f"{args.clients} clients x {args.requests} requests per route, alternated, during sampling "
          f"(still sampling at the end: {still_sampling}); {models} models in the report; {wall:.1f} s")
    print(f"{'route':<20}{'p50 (ms)':>10}{'p99 (ms)':>10}{'mean (ms)':>11}")
    for route in ROUTES:
        values = results[route]
        print(f"{route:<20}{percentile(values, 0.5) * 1e3:>10.2f}{percentile(values, 0.99) * 1e3:>10.2f}"
              f"{statistics.mean(values) * 1e3:>11.2f}")
    memory, stats = results[ROUTES[0]], results[ROUTES[1]]
    print(f"ratio p50 {percentile(memory, 0.5) / percentile(stats, 0.5):.3f}")
    print(f"ratio p99 {percentile(memory, 0.99) / percentile(stats, 0.99):.3f}")
    return 0 if still_sampling or args.quick else 2


if __name__ == "__main__":
    raise SystemExit(main())
