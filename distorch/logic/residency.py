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
    """Bytes of ``wanted`` the candidate holds, less what running the prompt there would push out
    (``displaced``), minus ``penalty_bytes`` per waiting prompt; None when it reports no residency."""
    if candidate.held is None:
        return None
    wanted = set(wanted)
    held = sum(int(candidate.held.get(file, 0)) for file in wanted)
    return held - displaced(candidate, wanted) - penalty_bytes * max(0, int(candidate.queue_remaining))


def displaced(candidate: Candidate, wanted: Iterable[FileIdentity]) -> int:
    """Bytes the candidate holds that the prompt would replace: where the prompt loads a file it
    does not hold, the loader takes the place of the one there (ComfyUI's node cache keeps one
    output per loader), so held files of that folder that the prompt does not want go. Without
    this, a server holding one model set plus shared text encoders would win every prompt of the
    other set, and the two sets would push each other out on it."""
    if not candidate.held:
        return 0
    wanted = set(wanted)
    loading = {file.folder for file in wanted if candidate.held.get(file, 0) <= 0}
    return sum(int(size) for file, size in candidate.held.items() if file.folder in loading and file not in wanted)


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
        return _least_to_evict(candidates, fallback, scores, penalty_bytes)
    best = max(scores.values())
    leaders = [url for url, score in scores.items() if score == best]
    if len(leaders) > 1:
        return Choice(fallback([c for c in candidates if c.url in leaders]),
                      f"{len(leaders)} servers tie at {_gib(best)}", scores, True)
    (url,) = leaders
    winner = next(c for c in candidates if c.url == url)
    pushed = displaced(winner, wanted)
    held = best + pushed + _penalty(candidates, url, penalty_bytes)
    return Choice(url, f"it holds {_gib(held)} of the prompt's {len(set(wanted))} model file(s)"
                       + (f", {_gib(pushed)} of other models would make room" if pushed else "")
                       + _queue_note(candidates, url), scores)


def _least_to_evict(candidates: Sequence[Candidate], fallback: Callable[[Sequence[Candidate]], str],
                    scores: Mapping[str, int], penalty_bytes: int) -> Choice:
    """No server holds the prompt's files: it is loaded wherever it goes, so send it where the
    load pushes out the least of what other prompts use (an empty server before one holding
    another model set), queue penalty included; a tie is the caller's choice."""
    reporting = [c for c in candidates if c.held is not None]
    if len(reporting) < len(candidates):  # what a silent server holds is unknown: no guess
        return Choice(fallback(candidates), "no server holds the prompt's model files", scores, True)
    cost = {c.url: sum(int(v) for v in c.held.values()) + penalty_bytes * max(0, int(c.queue_remaining))
            for c in reporting}
    least = min(cost.values())
    leaders = [c for c in reporting if cost[c.url] == least]
    if len(leaders) == len(reporting) or len(leaders) > 1:
        return Choice(fallback(leaders), "no server holds the prompt's model files"
                      + (f"; {len(leaders)} hold the least else" if len(leaders) < len(reporting) else ""),
                      scores, True)
    (leader,) = leaders
    return Choice(leader.url, f"no server holds the prompt's model files; it holds the least else "
                              f"({_gib(least - penalty_bytes * max(0, int(leader.queue_remaining)))})", scores)


def held_from_document(document) -> dict[FileIdentity, int]:
    """Bytes held per file, from a server's ``GET /distorch/residency`` answer; ValueError for
    anything that is not such an answer (a server without the pack, garbage)."""
    if not isinstance(document, Mapping) or not isinstance(document.get("models"), list):
        raise ValueError("not a residency document (no 'models' list)")
    held: dict[FileIdentity, int] = {}
    for model in document["models"]:
        if not isinstance(model, Mapping) or not isinstance(model.get("files"), list):
            raise ValueError("a model entry without a 'files' list")
        size = model.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("a model entry without a byte count")
        for item in model["files"]:
            identity = _identity(item)
            held[identity] = held.get(identity, 0) + size
    return held


def queue_from_document(document) -> int:
    value = document.get("queue_remaining", 0) if isinstance(document, Mapping) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _identity(item) -> FileIdentity:
    if not isinstance(item, Mapping):
        raise ValueError("a file entry that is not an object")
    folder, name, size, mtime = (item.get(k) for k in ("folder", "name", "size", "mtime_ns"))
    if not (isinstance(folder, str) and isinstance(name, str) and isinstance(size, int) and isinstance(mtime, int)):
        raise ValueError("a file entry without folder, name, size and mtime_ns")
    return FileIdentity(folder, name, size, mtime)


def identity_document(identity: FileIdentity) -> dict:
    return {"folder": identity.folder, "name": identity.name, "size": identity.size, "mtime_ns": identity.mtime_ns}


def _penalty(candidates: Sequence[Candidate], url: str, penalty_bytes: int) -> int:
    waiting = next(c.queue_remaining for c in candidates if c.url == url)
    return penalty_bytes * max(0, int(waiting))


def _queue_note(candidates: Sequence[Candidate], url: str) -> str:
    waiting = next(c.queue_remaining for c in candidates if c.url == url)
    return f", {waiting} prompt(s) waiting there" if waiting else ""


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"
