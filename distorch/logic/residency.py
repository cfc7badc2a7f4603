"""Which server should run a prompt: the one that already holds the most of its model files.

Pure (no torch, no ComfyUI, no network): the host side (issue 22, not wired yet) reads the
prompt's files on the master, asks each server what it holds (``GET /distorch/residency``) and
hands the answers here. Three steps, each returning data:

1. ``prompt_files(prompt)``: the model files an API-format prompt loads, as (folder, name) pairs,
   from the inputs of the loaders users' workflows use (core, DisTorch, ComfyUI-GGUF). Only
   literal values count: a name that comes from a link is not known before the prompt runs.
2. ``residency_score(candidate, wanted)``: bytes of the wanted files the candidate holds (files
   are matched by identity: folder, name, size and modification time, so a changed file is another
   file), minus a penalty per prompt waiting in its queue.
3. ``choose(candidates, wanted, fallback)``: the best score, or the caller's own choice (ComfyUI-
   Distributed's least-busy pick) when nothing is held anywhere, when the best is tied, or when no
   candidate reports residency. The answer says why, for the log line of each routed prompt.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Loader node input -> the ComfyUI folder its file is looked up in. Core loaders first; DisTorch
# and ComfyUI-GGUF loaders use the same input names (their own classes are listed below).
LOADER_FILE_INPUTS: Mapping[str, Mapping[str, str]] = {
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "CheckpointLoader": {"ckpt_name": "checkpoints"},
    "UNETLoader": {"unet_name": "diffusion_models"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "TripleCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders",
                         "clip_name3": "text_encoders"},
    "QuadrupleCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders",
                            "clip_name3": "text_encoders", "clip_name4": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
    "LoraLoader": {"lora_name": "loras"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "ControlNetLoader": {"control_net_name": "controlnet"},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "DisTorchCheckpointLoader": {"ckpt_name": "checkpoints"},
    "DisTorchUNETLoader": {"unet_name": "diffusion_models"},
    "DisTorchCLIPLoader": {"clip_name": "text_encoders"},
    "DisTorchDualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "DisTorchVAELoader": {"vae_name": "vae"},
    "UnetLoaderGGUF": {"unet_name": "unet_gguf"},
    "UnetLoaderGGUFAdvanced": {"unet_name": "unet_gguf"},
    "CLIPLoaderGGUF": {"clip_name": "clip_gguf"},
    "DualCLIPLoaderGGUF": {"clip_name1": "clip_gguf", "clip_name2": "clip_gguf"},
    "TripleCLIPLoaderGGUF": {"clip_name1": "clip_gguf", "clip_name2": "clip_gguf", "clip_name3": "clip_gguf"},
    "QuadrupleCLIPLoaderGGUF": {"clip_name1": "clip_gguf", "clip_name2": "clip_gguf", "clip_name3": "clip_gguf",
                                "clip_name4": "clip_gguf"},
    "DisTorchUnetLoaderGGUF": {"unet_name": "unet_gguf"},
    "DisTorchCLIPLoaderGGUF": {"clip_name": "clip_gguf"},
    "DisTorchDualCLIPLoaderGGUF": {"clip_name1": "clip_gguf", "clip_name2": "clip_gguf"},
}
DEFAULT_PENALTY_BYTES = 2 << 30  # one waiting prompt weighs as much as 2 GiB of model already held


@dataclass(frozen=True)
class FileIdentity:
    """A model file as a server sees it: where ComfyUI looks it up, its name there, its size and
    modification time (nanoseconds). Two servers hold "the same file" only if all four agree."""
    folder: str
    name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Candidate:
    """One server Distributed would consider, as its residency route and queue describe it.
    ``held``: bytes it holds per file (None: it did not answer, or has no residency route)."""
    url: str
    held: Mapping[FileIdentity, int] | None
    queue_remaining: int = 0


@dataclass(frozen=True)
class Choice:
    url: str
    reason: str
    scores: Mapping[str, int] = field(default_factory=dict)  # url -> score, for the candidates scored
    fallback: bool = False                                   # the caller's own choice was taken


def prompt_files(prompt: Mapping) -> list[tuple[str, str]]:
    """(folder, name) of every model file the prompt's loader nodes name literally, in node-id
    order, each once."""
    found: list[tuple[str, str]] = []
    if not isinstance(prompt, Mapping):
        return found
    for node_id in sorted(prompt, key=_node_order):
        node = prompt[node_id]
        if not isinstance(node, Mapping):
            continue
        inputs = node.get("inputs")
        files = LOADER_FILE_INPUTS.get(str(node.get("class_type")))
        if not files or not isinstance(inputs, Mapping):
            continue
        for input_name, folder in files.items():
            value = inputs.get(input_name)
            if isinstance(value, str) and value and (folder, value) not in found:
                found.append((folder, value))
    return found


def _node_order(node_id) -> tuple:
    """Node ids in number order where they are numbers ("2" before "10"), then the others."""
    text = str(node_id)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def residency_score(candidate: Candidate, wanted: Iterable[FileIdentity],
                    penalty_bytes: int = DEFAULT_PENALTY_BYTES) -> int | None:
    """Bytes of ``wanted`` the candidate holds, minus ``penalty_bytes`` per waiting prompt; None
    when it reports no residency."""
    if candidate.held is None:
        return None
    held = sum(int(candidate.held.get(file, 0)) for file in set(wanted))
    return held - penalty_bytes * max(0, int(candidate.queue_remaining))


def choose(candidates: Sequence[Candidate], wanted: Sequence[FileIdentity],
           fallback: Callable[[Sequence[Candidate]], str],
           penalty_bytes: int = DEFAULT_PENALTY_BYTES) -> Choice:
    """The candidate to send the prompt to. ``fallback(candidates)`` is the caller's own choice
    (Distributed's least-busy pick), taken when residency does not decide."""
    if not candidates:
        raise ValueError("no candidate servers to choose from")
    scores = {c.url: s for c in candidates if (s := residency_score(c, wanted, penalty_bytes)) is not None}
    holding = {c.url for c in candidates if c.held is not None and any(c.held.get(f, 0) > 0 for f in wanted)}
    if not wanted:
        return Choice(fallback(candidates), "the prompt names no model file", scores, True)
    if not scores:
        return Choice(fallback(candidates), "no server reports what it holds", scores, True)
    if not holding:
        return Choice(fallback(candidates), "no server holds the prompt's model files", scores, True)
    best = max(scores.values())
    leaders = [url for url, score in scores.items() if score == best]
    if len(leaders) > 1:
        return Choice(fallback([c for c in candidates if c.url in leaders]),
                      f"{len(leaders)} servers tie at {_gib(best)}", scores, True)
    (url,) = leaders
    return Choice(url, f"it holds {_gib(best + _penalty(candidates, url, penalty_bytes))} of the prompt's "
                       f"{len(set(wanted))} model file(s)" + _queue_note(candidates, url), scores)


def _penalty(candidates: Sequence[Candidate], url: str, penalty_bytes: int) -> int:
    waiting = next(c.queue_remaining for c in candidates if c.url == url)
    return penalty_bytes * max(0, int(waiting))


def _queue_note(candidates: Sequence[Candidate], url: str) -> str:
    waiting = next(c.queue_remaining for c in candidates if c.url == url)
    return f", {waiting} prompt(s) waiting there" if waiting else ""


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"
