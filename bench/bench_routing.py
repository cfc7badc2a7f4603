"""Routing by residency vs ComfyUI-Distributed's own choice, on the same alternating workload.

Two workers and two masters on loopback (CPU, ComfyUI-Distributed on each, the pack on each):
one master routes by residency, the other has it off (DISTORCH_RESIDENCY_ROUTING=0), so its load
balancing is Distributed's least-busy choice alone. Each round, for each master in turn (the order
alternates between rounds): every server is emptied (POST /distorch/free {"force": true}), then the
two model sets (tests/host/distributed_cluster.py SETS: a UNet, its text encoder and VAE, each
loaded by core loaders) alternate over N prompts sent one after another through that master's
/distributed/queue. Printed: wall time and UNet loads (a UNETLoader that ran, from every server's
/history) per master, the ratio of the median wall times (target <= 0.6) and each round's ratio
(the machine's noise moves single rounds by about 0.1).

    python bench/bench_routing.py [--prompts 12] [--rounds 3] [--quick]
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
import distributed_cluster as dc  # noqa: E402
import hostenv  # noqa: E402


QUICK_PROMPTS, QUICK_ROUNDS = 4, 1


def empty_every_server(cluster: dc.Cluster) -> None:
    for host in cluster.hosts.values():
        status, body = host.request("POST", "/distorch/free", {"force": True, "wait": True, "timeout": 60})
        if status != 200:
            raise RuntimeError(f"{host.url}: POST /distorch/free answered {status}: {body!r}")


def total_loads(cluster: dc.Cluster) -> int:
    return sum(n for per in cluster.unet_loads().values() for n in per.values())


def run_workload(cluster: dc.Cluster, master, prompts: int, seed: int) -> tuple[float, int]:
    empty_every_server(cluster)
    before = total_loads(cluster)
    started = time.perf_counter()
    for index in range(prompts):
        cluster.run(dc.balanced_prompt("AB"[index % 2], seed=seed + index), master=master)
    return time.perf_counter() - started, total_loads(cluster) - before


def measure(cluster: dc.Cluster, prompts: int, rounds: int, *, off_master_name: str = "master-off") -> list[str]:
    """Both choices over the same workers, rounds alternated: the cluster's master (residency) and
    another master with routing off (Distributed's own pick). Prints a line per round; returns the
    summary lines. Callers that already hold a cluster (tests/host/test_routing.py) reuse it."""
    off = cluster.add_master(off_master_name, {"DISTORCH_RESIDENCY_ROUTING": "0"})
    masters = {"residency": cluster.master, "distributed": off}
    walls = {name: [] for name in masters}
    loads = {name: [] for name in masters}
    for round_index in range(rounds):
        order = list(masters) if round_index % 2 == 0 else list(reversed(masters))
        for name in order:
            wall, count = run_workload(cluster, masters[name], prompts, seed=1000 * round_index)
            walls[name].append(wall)
            loads[name].append(count)
            print(f"# round {round_index + 1} {name}: {wall:.1f} s, {count} UNet loads", flush=True)
    lines = [f"# {date.today()} {platform.node()} {platform.processor() or platform.machine()}; "
             f"{prompts} alternating prompts x {rounds} round(s), {hostenv.host_label()}",
             f"{'choice':<12} {'wall s (median)':>16} {'UNet loads (median)':>20}"]
    for name in walls:
        lines.append(f"{name:<12} {statistics.median(walls[name]):>16.1f} {statistics.median(loads[name]):>20.1f}")
    ratio = statistics.median(walls["residency"]) / statistics.median(walls["distributed"])
    lines.append(f"ratio wall {ratio:.2f} (target <= 0.6)")
    lines.append("ratio per round " + " ".join(f"{r / d:.2f}" for r, d in zip(walls["residency"], walls["distributed"])))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 prompts, 1 round: checks that the benchmark works")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.rounds = QUICK_PROMPTS, QUICK_ROUNDS
    if dc.distributed_source() is None:
        print(f"ComfyUI-Distributed not found in {hostenv.vendor_dir()}: nothing to measure", file=sys.stderr)
        return 2
    models = hostenv.models_dir()
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as tmp:
        cluster = dc.start_cluster(Path(tmp), models)
        try:
            lines = measure(cluster, args.prompts, args.rounds)
        finally:
            cluster.stop()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
