"""Three ComfyUI servers on loopback with ComfyUI-Distributed, as its users set up local workers:
a master and two workers, each its own ``main.py --cpu`` with its own base directory and database,
the workers started with COMFYUI_IS_WORKER=1, and Distributed's ``gpu_config.json`` listing the
two workers. Distributed keeps that file in its own folder and writes it at import, so the
servers share one writable copy of the pack (the vendored folder is never written).

Used by tests/host/test_routing.py and bench/bench_routing.py.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import hostenv
from comfy_host import ComfyHost, free_port

# Two model sets, each a UNet (loaded by the core UNETLoader), a text encoder and a VAE. The SD-XS
# set's files are other names for similar bytes: to ComfyUI and to residency they are other files.
SETS = {
    "A": {"unet": "distorch-test-unet.safetensors", "clip": "distorch-test-clip-l.safetensors",
          "vae": "distorch-test-vae.safetensors"},
    "B": {"unet": "distorch-test-sd-xs-unet.safetensors", "clip": "distorch-test-sd-xs-clip-l.safetensors",
          "vae": "distorch-test-sd-xs-vae.safetensors"},
}
UNET_A, UNET_B = SETS["A"]["unet"], SETS["B"]["unet"]
WORKER_IDS = ("w1", "w2")


def distributed_source() -> Path | None:
    found = hostenv.vendor_dir() / "ComfyUI-Distributed"
    return found if (found / "__init__.py").is_file() else None


def distributed_copy(source: Path, target: Path, worker_ports: dict[str, int]) -> Path:
    """A writable copy of the pack with a config listing the workers (loopback, CPU)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git", "__pycache__", "gpu_config.json"))
    config = {"master": {"host": ""},
              "workers": [{"id": wid, "name": wid.upper(), "host": "127.0.0.1", "port": port, "enabled": True,
                           "type": "local", "cuda_device": 0, "extra_args": "--cpu"}
                          for wid, port in worker_ports.items()],
              "settings": {"debug": False, "auto_launch_workers": False, "master_delegate_only": False,
                           "websocket_orchestration": True}}
    (target / "gpu_config.json").write_text(json.dumps(config, indent=1))
    return target


def balanced_prompt(model_set: str, seed: int, prefix: str = "routed") -> dict:
    """txt2img with the core loaders of one model set (SETS), a DistributedCollector (load_balance
    on) between the decode and SaveImage: the loaders, sampler and decode run where Distributed
    sends it, SaveImage on the master."""
    files = SETS[model_set]
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": files["unet"], "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": files["clip"], "type": "stable_diffusion"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": files["vae"]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["2", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["2", 0]}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0],
            "seed": seed, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
        "11": {"class_type": "DistributedCollector", "inputs": {"images": ["8", 0], "load_balance": True}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": prefix}},
    }


def balanced_checkpoint_prompt(ckpt: str, seed: int) -> dict:
    """The same through CheckpointLoaderSimple (node 1 gives model, CLIP and VAE)."""
    prompt = balanced_prompt("A", seed)
    del prompt["2"], prompt["3"]
    prompt["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}
    for node, key in (("4", "clip"), ("5", "clip"), ("8", "vae")):
        prompt[node]["inputs"][key] = ["1", 1 if key == "clip" else 2]
    return prompt


@dataclass
class Cluster:
    master: ComfyHost
    workers: dict[str, ComfyHost]
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    others: dict[str, ComfyHost] = field(default_factory=dict)  # more masters (bench_routing's second)

    @property
    def hosts(self) -> dict[str, ComfyHost]:
        return {"master": self.master, **self.workers, **self.others}

    def add_master(self, name: str, env: dict[str, str]) -> ComfyHost:
        """Another master over the same workers (its own base directory, the same Distributed copy)."""
        dist = next(p for p in self.master.extra_custom_nodes if p.name == "ComfyUI-Distributed")
        host = ComfyHost(self.master.comfyui_dir, self.master.base_dir.parent / name, self.master.models_source,
                         self.master.pack_dir, extra_args=self.master.extra_args, env=env,
                         extra_custom_nodes=(dist,))
        self.others[name] = host.start()
        return host

    def replace_workers(self, replacements: dict[str, dict]) -> None:
        """Stop workers and start other servers in their place, all at once: the same ports (so the
        master's Distributed config still names them), base directories of their own. Each value
        says ``pack`` (installed or not, default installed) and ``extra_nodes`` (other packs). One
        cluster then serves the fault tests without a cluster of its own."""
        hosts = {}
        for worker_id, change in replacements.items():
            old = self.workers[worker_id]
            old.stop()
            dist = next(p for p in old.extra_custom_nodes if p.name == "ComfyUI-Distributed")
            base = Path(tempfile.mkdtemp(prefix=f"{worker_id}-replaced-", dir=old.base_dir.parent))
            hosts[worker_id] = ComfyHost(old.comfyui_dir, base, old.models_source,
                                         hostenv.REPO_ROOT if change.get("pack", True) else None,
                                         extra_args=old.extra_args, port=old.port, env=old.env,
                                         extra_custom_nodes=(dist, *change.get("extra_nodes", ())))
        self.workers.update(hosts)
        start_all(hosts.values())

    def queue(self, prompt: dict, worker_ids=WORKER_IDS, master: ComfyHost | None = None) -> dict:
        """POST /distributed/queue at the master, as Distributed's UI sends a balanced prompt."""
        master = master or self.master
        status, body = master.request("POST", "/distributed/queue", {
            "prompt": prompt, "client_id": self.client_id, "enabled_worker_ids": list(worker_ids)}, timeout=120)
        if status != 200:
            raise AssertionError(f"/distributed/queue answered {status}: {body!r}\n{master.log_tail()}")
        return body

    def run(self, prompt: dict, timeout: float = 180, master: ComfyHost | None = None) -> dict:
        """Queue one balanced prompt and wait for the master's prompt to finish; its history entry."""
        master = master or self.master
        answer = self.queue(prompt, master=master)
        entry = master.wait(answer["prompt_id"], timeout)
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:2000]
        return {**entry, "worker_count": answer.get("worker_count")}

    def unet_loads(self) -> dict[str, dict[str, int]]:
        """server -> UNet file -> how often its UNETLoader ran (not served from the node cache),
        read from each server's /history: counts what happened whoever ran it, pack or not."""
        counts: dict[str, dict[str, int]] = {}
        for name, host in self.hosts.items():
            if host.process is None:
                continue
            for entry in host.get("/history?max_items=1000").values():
                prompt = entry.get("prompt", [None, None, {}])[2]
                cached = {str(n) for kind, data in entry.get("status", {}).get("messages", [])
                          if kind == "execution_cached" for n in data.get("nodes", [])}
                for node_id, node in prompt.items():
                    if node.get("class_type") == "UNETLoader" and node_id not in cached \
                            and entry.get("status", {}).get("status_str") == "success":
                        unet = node["inputs"]["unet_name"]
                        counts.setdefault(name, {}).setdefault(unet, 0)
                        counts[name][unet] += 1
        return counts

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()


def start_cluster(base: Path, models: Path) -> Cluster:
    """Master and workers w1, w2, the pack and ComfyUI-Distributed on each, started together;
    raises if any does not come up (Cluster.replace_workers changes a worker)."""
    source = distributed_source()
    if source is None:
        raise FileNotFoundError(f"no ComfyUI-Distributed in {hostenv.vendor_dir()}")
    ports = {name: free_port() for name in ("master", *WORKER_IDS)}
    dist = distributed_copy(source, base / "ComfyUI-Distributed", {w: ports[w] for w in WORKER_IDS})
    hosts = {}
    for name in ("master", *WORKER_IDS):
        env = {"COMFYUI_IS_WORKER": "1"} if name != "master" else {}
        hosts[name] = ComfyHost(hostenv.comfyui_dir(), base / name, models, hostenv.REPO_ROOT,
                                extra_args=("--disable-auto-launch",), port=ports[name], env=env,
                                extra_custom_nodes=(dist,))
    cluster = Cluster(hosts["master"], {w: hosts[w] for w in WORKER_IDS})
    try:
        start_all(hosts.values())
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_all(hosts) -> None:
    """Start servers side by side; raises the first error once every start has ended."""
    errors: list[BaseException] = []

    def start(host):
        try:
            host.start()
        except BaseException as exc:  # reported below, after every start has ended
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(h,)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def wait_for_log(host: ComfyHost, text: str, count: int = 1, timeout: float = 10.0) -> list[str]:
    """The log lines holding ``text`` once there are ``count`` of them (logs are written after the
    answer that caused them)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in host.log_lines() if text in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)
