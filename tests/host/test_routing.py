"""Routing by residency on ComfyUI-Distributed's load balancing: three real servers on loopback (a
master and two workers, CPU), ComfyUI-Distributed installed on each as its users install it and
configured as its own setup configures local workers (tests/host/distributed_cluster.py).

Two model sets (each a UNet file, loaded by the core UNETLoader as users' workflows do, with
its text encoder and VAE) alternate
over 12 prompts queued at the master with load balancing, one after another. With the pack each
server keeps its set: at most 3 loads of the two files in all, counted from every server's
/history (a loader that ran, not served from ComfyUI's node cache). Faults: a prompt whose files
no server holds, a worker stopped between prompts (the rest complete elsewhere, none lost), a
worker without the pack and one whose residency route answers garbage (Distributed's own choice
for them, one warning each). The fault tests run last, on the same master: the stopped worker and
the replaced ones are started in place on the same ports."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest

import distributed_cluster as dc

pytestmark = pytest.mark.host

PACKS = Path(__file__).parent / "packs"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench_routing's measurement


@pytest.fixture(scope="module")
def cluster(ram_heavy, tmp_path_factory, model_cache):
    if dc.distributed_source() is None:
        pytest.skip("ComfyUI-Distributed not found in ../shared/vendor (a checkout beside ../shared has it)")
    cluster = dc.start_cluster(tmp_path_factory.mktemp("routing"), model_cache)
    yield cluster
    cluster.stop()


def total(loads: dict[str, dict[str, int]]) -> int:
    return sum(n for per in loads.values() for n in per.values())


def test_twelve_alternating_prompts_cost_at_most_three_loads(cluster):
    for index in range(12):
        entry = cluster.run(dc.balanced_prompt("AB"[index % 2], seed=index))
        assert entry["outputs"]["9"]["images"], "the master saved no image"
    loads = cluster.unet_loads()
    print(f"\n[routing] UNet loads with residency routing: {loads}")
    assert total(loads) <= 3, loads
    routed = dc.wait_for_log(cluster.master, "comfyui-distorch: routed prompt", count=12)
    assert len(routed) == 12, routed
    # each set stayed on the server that loaded it: the residency routes say so
    holders = {name: {f["name"] for m in host.get("/distorch/residency")["models"] for f in m["files"]}
               for name, host in cluster.hosts.items()}
    assert sum(dc.UNET_A in files for files in holders.values()) == 1, holders
    assert sum(dc.UNET_B in files for files in holders.values()) == 1, holders


def test_the_memory_panel_shows_what_each_server_holds(cluster, browser):
    """On the master, the panel's servers section lists each server Distributed load-balanced to
    with the model files it held when last asked."""
    from ui_browser import element_screenshot

    page = browser.open(cluster.master.url)
    try:
        page.click(".distorch-memory-tab-button")
        rows = page.locator(".distorch-servers .distorch-server")
        rows.first.wait_for(timeout=30_000)
        held = {rows.nth(i).get_attribute("data-url"): rows.nth(i).inner_text() for i in range(rows.count())}
        assert set(held) == {h.url for h in cluster.hosts.values()}, held
        assert sum(dc.UNET_A in text for text in held.values()) == 1, held
        assert sum(dc.UNET_B in text for text in held.values()) == 1, held
        element_screenshot(page.locator(".distorch-servers"), "memory-panel-servers")
    finally:
        page.close()


def test_the_residency_route_meets_its_schema_and_agrees_with_the_history(cluster):
    """Its load counts are the pack's own record; /history is ComfyUI's."""
    schema = json.loads((SCHEMAS / "residency.schema.json").read_text())
    history = cluster.unet_loads()
    for name, host in cluster.hosts.items():
        document = host.get("/distorch/residency")
        jsonschema.validate(document, schema)
        counted = {item["name"]: item["count"] for item in document["loads"] if item["folder"] == "diffusion_models"}
        assert counted == history.get(name, {}), (name, counted, history)


def test_a_prompt_whose_files_no_server_holds_completes_and_says_why(cluster):
    prompt = dc.balanced_checkpoint_prompt("distorch-test-sd15.safetensors", seed=99)
    before = len(dc.wait_for_log(cluster.master, "routed prompt", timeout=0))
    cluster.run(prompt)
    lines = dc.wait_for_log(cluster.master, "routed prompt", count=before + 1)
    assert "no server holds the prompt's model files" in lines[-1], lines[-1]


def test_the_route_route_answers_where_and_why_and_reports_an_unreachable_server(cluster):
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    body = {"prompt": dc.balanced_prompt("B", seed=1), "servers": [h.url for h in cluster.hosts.values()] + [dead]}
    status, answer = cluster.master.request("POST", "/distorch/route", body)
    assert status == 200, answer
    holder = [name for name, host in cluster.hosts.items()
              if dc.UNET_B in {f["name"] for m in host.get("/distorch/residency")["models"] for f in m["files"]}]
    assert answer["server"] == cluster.hosts[holder[0]].url and not answer["fallback"], answer
    assert "holds" in answer["reason"]
    (unreachable,) = [s for s in answer["servers"] if not s["reachable"]]
    assert unreachable["url"] == dead and "could not be reached" in unreachable["error"]


@pytest.mark.parametrize("body, status, fragments", [
    ({"servers": ["http://127.0.0.1:8188"]}, 400, ["needs 'prompt'"]),
    ({"prompt": {}, "servers": []}, 400, ["servers: give 1 to 64 server URLs, not 0"]),
    ({"prompt": {}, "servers": ["127.0.0.1:8188"]}, 400, ["'127.0.0.1:8188' is not a server URL", "http://HOST:PORT"]),
    ({"prompt": [], "servers": ["http://a:1"]}, 400, ["'prompt' must be dict"]),
])
def test_bad_route_requests_get_one_clear_400(cluster, body, status, fragments):
    got, answer = cluster.master.request("POST", "/distorch/route", body)
    assert got == status and all(f in answer["error"] for f in fragments), answer


def test_the_routing_benchmark_quick_mode_runs_on_this_cluster(cluster):
    """bench/bench_routing.py --quick's measurement, on these servers plus a master with routing
    off (one server started, not a cluster of four): it prints walls, loads and the ratio."""
    import bench_routing

    lines = bench_routing.measure(cluster, bench_routing.QUICK_PROMPTS, bench_routing.QUICK_ROUNDS)
    out = "\n".join(lines)
    rows = {name: (float(wall), float(loads)) for name, wall, loads in
            re.findall(r"^(residency|distributed)\s+([\d.]+)\s+([\d.]+)$", out, re.M)}
    assert set(rows) == {"residency", "distributed"} and all(loads >= 1 for _, loads in rows.values()), out
    assert float(re.search(r"^ratio wall ([\d.]+)", out, re.M).group(1)) > 0, out


def test_a_worker_stopped_between_prompts_loses_no_prompt(cluster):
    cluster.workers["w2"].stop()
    for index in range(4):
        entry = cluster.run(dc.balanced_prompt("AB"[index % 2], seed=100 + index))
        assert entry["outputs"]["9"]["images"]


def test_garbage_and_a_worker_without_the_pack_fall_back_to_distributeds_choice(cluster):
    """The same master, its workers replaced (the last test stopped w2): w1 now answers garbage on
    its residency route, w2 has ComfyUI-Distributed but not the pack. One warning for each, however
    many prompts, though the master had known both as good servers (w2 then unreachable)."""
    logged_before = len(cluster.master.log_lines())
    cluster.replace_workers({"w1": {"extra_nodes": (PACKS / "distorch_garbage_residency",)}, "w2": {"pack": False}})
    for index in range(4):
        entry = cluster.run(dc.balanced_prompt("AB"[index % 2], seed=200 + index))
        assert entry["outputs"]["9"]["images"]
    warnings = [line for line in cluster.master.log_lines()[logged_before:]
                if "it is routed to as ComfyUI-Distributed" in line]
    urls = {w: h.url for w, h in cluster.workers.items()}
    assert len(warnings) == 2, warnings  # one per failing server, not one per prompt
    assert any(urls["w1"] in line and "not JSON" in line for line in warnings), warnings
    assert any(urls["w2"] in line and "HTTP 404" in line for line in warnings), warnings
