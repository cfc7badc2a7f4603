"""Helpers for driving ComfyUI's queue in tests and benchmarks: a model root with two modes
(queue/qa and queue/qb, a modes cache of one), a prompt that holds the worker until a gate file
exists (the DisTorchTestGate node of fault_nodes/), and the order prompts really ran."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import modes_setup

FAULT_NODES = Path(__file__).parent / "fault_nodes"
MODES = ("qa", "qb")


def write_modes(root: Path, model_cache: Path, modes_file: Path, max_modes: int = 1) -> Path:
    """Modes qa and qb on two names of the synthetic checkpoint; a cache of ``max_modes``."""
    modes_setup.make_model_root(root, model_cache)
    for name in MODES:
        modes_setup.link_or_copy(root / modes_setup.CHECKPOINT_A, root / "queue" / f"{name}.safetensors")
    modes_file.write_text(f"""model_root: {root}
cache: {{max_modes: {max_modes}, max_gb: 8}}
modes:
  qa: {{model: queue/qa.safetensors, default_size: "64x64", default_steps: 1}}
  qb: {{model: queue/qb.safetensors, default_size: "64x64", default_steps: 1}}
""")
    return modes_file


def gate_prompt(gate: Path, tag: str, mode: str | None = None) -> dict:
    """A prompt that waits for ``gate`` (after loading ``mode``, if given)."""
    prompt = {"1": {"class_type": "DisTorchTestGate", "inputs": {"gate": str(gate), "tag": tag}}}
    if mode is not None:
        prompt["2"] = {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}}
        prompt["1"]["inputs"]["mode"] = ["2", 7]
    return prompt


def sample_prompt(mode: str, seed: int) -> dict:
    """Load ``mode`` and sample one 64x64 step with it (a job of a server that switches modes)."""
    return {
        "1": {"class_type": "DisTorchModeSwitch", "inputs": {"mode": mode}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], "seed": seed,
            "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["1", 7]}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": f"queue-{mode}"}},
    }


def post(host, prompt: dict, **fields) -> str:
    status, body = host.request("POST", "/prompt", {"prompt": prompt, "client_id": host.client_id, **fields})
    assert status == 200, body
    return body["prompt_id"]


def hold(host, gates: Path) -> tuple[Path, str]:
    """Queue a prompt that waits for a new gate file, and wait until the worker runs it. Touch
    the returned path to let the worker go on."""
    gate = gates / uuid.uuid4().hex
    prompt_id = post(host, gate_prompt(gate, f"hold-{gate.name}"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(run["prompt_id"] == prompt_id for run in host.get("/distorch/queue")["running"]):
            return gate, prompt_id
        time.sleep(0.05)
    raise AssertionError("the holding prompt never started")


def run_order(host, prompt_ids: list[str], timeout: float = 600) -> list[str]:
    """The prompts in the order they ran: one worker runs them one at a time, and ComfyUI's
    history keeps them in the order they finished (start times tie within a millisecond)."""
    for prompt_id in prompt_ids:
        entry = host.wait(prompt_id, timeout=timeout)
        assert entry["status"]["status_str"] == "success", entry["status"]
    finished = list(host.get("/history"))
    return sorted(prompt_ids, key=finished.index)
