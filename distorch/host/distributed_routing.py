"""Residency-aware choice inside ComfyUI-Distributed's load balancing, on the master.

Distributed (robertvoy/ComfyUI-Distributed) sends a load-balanced prompt (a ``DistributedCollector``
with ``load_balance`` on) to the participant with the shortest queue: ``select_least_busy_worker``,
which its ``api/queue_orchestration.py`` imports by name and calls with the candidate dicts. Here
that name is wrapped (through the patch registry): each candidate's ``GET /distorch/residency`` is
asked what it holds, and the prompt goes to the one holding the most bytes of its model files,
less a penalty per waiting prompt (distorch/logic/residency.py). Distributed's own pick is made
first and is the answer whenever residency does not decide, and whenever anything fails: a
server that does not answer or answers garbage counts as one that reports nothing (logged once
per server).

The prompt is not passed to the choice: the wrapped ``_prompt_requests_load_balance(prompt_index)``
(called just before it, in the same task) keeps it in a context variable for it.

Off with DISTORCH_RESIDENCY_ROUTING=0 on the master. Prompts that do not load-balance never reach
the choice, so nothing changes for them.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import time
from collections import deque

from ..logic.residency import (DEFAULT_PENALTY_BYTES, Candidate, FileIdentity, choose, held_from_document,
                               prompt_files, queue_from_document)
from .model_files import file_identity

log = logging.getLogger("distorch.routing")

ROUTING_VARIABLE = "DISTORCH_RESIDENCY_ROUTING"      # 0 / off / false: Distributed chooses alone
PENALTY_VARIABLE = "DISTORCH_ROUTE_QUEUE_PENALTY_GB"  # GiB one waiting prompt weighs (default 2)
FETCH_TIMEOUT_S = 3.0
RESIDENCY_PATH = "/distorch/residency"
CHOICE_NAME = "select_least_busy_worker"
PROMPT_NAME = "_prompt_requests_load_balance"


def routing_enabled(environ=os.environ) -> bool:
    return environ.get(ROUTING_VARIABLE, "1").strip().lower() not in ("0", "off", "false", "no")


def queue_penalty_bytes(environ=os.environ) -> int:
    text = environ.get(PENALTY_VARIABLE, "").strip()
    if not text:
        return DEFAULT_PENALTY_BYTES
    try:
        value = float(text)
    except ValueError:
        log.warning("comfyui-distorch: %s=%r is not a number of GiB; using %g", PENALTY_VARIABLE, text,
                    DEFAULT_PENALTY_BYTES / 2**30)
        return DEFAULT_PENALTY_BYTES
    return max(0, int(value * 2**30))


def find_orchestration_module():
    """Distributed's ``api.queue_orchestration`` module if it is loaded. ComfyUI keys custom node
    modules by their folder path, so it is found by what it has, not by name."""
    for name, module in list(sys.modules.items()):
        if name.endswith(".api.queue_orchestration") and callable(getattr(module, CHOICE_NAME, None)) \
                and callable(getattr(module, PROMPT_NAME, None)):
            return module
    return None


def wanted_files(prompt) -> list[FileIdentity]:
    """The identities, on this server, of the model files the prompt's loaders name."""
    return [identity for folder, name in prompt_files(prompt)
            if (identity := file_identity(folder, name)) is not None]


def worker_url(worker: dict) -> str:
    """A candidate's base URL as Distributed builds it (the master's ``host`` is a whole URL)."""
    host = str(worker.get("host") or "127.0.0.1").strip().rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    port = int(worker.get("port", 8188) or 8188)
    scheme = "https" if worker.get("type") == "cloud" or port == 443 else "http"
    return f"{scheme}://{host}:{port}"


class ResidencyRouter:
    """The choice and what it remembers: the prompt of the running orchestration (per task), the
    servers' last answers (for the panel, and to warn once per failure: again only after a server
    recovered or when it fails another way), the last routed prompts (for the panel and the route)."""

    def __init__(self, enabled: bool | None = None, penalty_bytes: int | None = None, fetch=None):
        self.enabled = routing_enabled() if enabled is None else enabled
        self.penalty_bytes = queue_penalty_bytes() if penalty_bytes is None else penalty_bytes
        self.current_prompt: contextvars.ContextVar = contextvars.ContextVar("distorch_routed_prompt", default=None)
        self.warned: set[str] = set()  # once-only warnings not about one server ("choice")
        self.routed: deque = deque(maxlen=50)
        self.servers: dict[str, dict] = {}  # url -> last residency answer (or error), for the panel
        self._fetch = fetch or fetch_residency
        self.installed = False

    # -- what Distributed calls ------------------------------------------------------------------
    def note_prompt(self, original, prompt_index, *args, **kwargs):
        answer = original(prompt_index, *args, **kwargs)
        if answer:
            try:
                self.current_prompt.set(prompt_index.copy_prompt())
            except Exception as exc:
                log.debug("routing: could not read the prompt: %s", exc)
        return answer

    async def choose_worker(self, original, workers, *args, **kwargs):
        pick = await original(workers, *args, **kwargs)
        prompt = self.current_prompt.get()
        if not self.enabled or prompt is None or not workers:
            return pick
        try:
            return await self._choose(prompt, list(workers), pick, kwargs.get("trace_execution_id"))
        except Exception as exc:
            self._warn_once("choice", f"comfyui-distorch: residency routing failed ({exc}); this prompt "
                                      f"takes ComfyUI-Distributed's own choice")
            return pick

    async def ask(self, urls: list[str]) -> list[tuple[Candidate, object, str | None]]:
        """Each server's residency report, asked at once: (the candidate it makes, the document,
        None) or (a candidate that reports nothing, None, why not)."""
        answers = await asyncio.gather(*(self._fetch(url) for url in urls))
        return [read_report(url, document, error) for url, (document, error) in zip(urls, answers)]

    async def _choose(self, prompt, workers: list[dict], pick, trace) -> dict | None:
        urls = [worker_url(w) for w in workers]
        candidates = []
        for candidate, document, error in await self.ask(urls):
            self._record_answer(candidate.url, document, error)
            candidates.append(candidate)
        pick_url = worker_url(pick) if isinstance(pick, dict) else None
        wanted = wanted_files(prompt)
        choice = choose(candidates, wanted,
                        lambda among: pick_url if any(c.url == pick_url for c in among) else among[0].url,
                        self.penalty_bytes)
        chosen = workers[urls.index(choice.url)]
        files = ", ".join(f.name for f in wanted) or "none"
        differs = f" (ComfyUI-Distributed would have sent it to {pick_url})" if pick_url and choice.url != pick_url else ""
        log.info("comfyui-distorch: routed prompt%s to %s (%s): %s%s; files: %s", f" {trace}" if trace else "",
                 chosen.get("name") or chosen.get("id"), choice.url, choice.reason, differs, files)
        self.routed.append({"trace": trace, "to": choice.url, "worker_id": str(chosen.get("id")),
                            "reason": choice.reason, "fallback": choice.fallback, "distributed_choice": pick_url,
                            "files": [f.name for f in wanted], "scores": dict(choice.scores), "at": time.time()})
        return chosen

    def _record_answer(self, url: str, document, error: str | None) -> None:
        """Keep a server's answer; warn when it starts failing or fails another way (not once per
        prompt), and say when it answers again."""
        before = self.servers.get(url, {}).get("error")
        if error is not None:
            if before is None or failure_kind(before) != failure_kind(error):
                log.warning("comfyui-distorch: %s %s; it is routed to as ComfyUI-Distributed would (does it run "
                            "comfyui-distorch?)", url, error)
            self.servers[url] = {"url": url, "error": error, "at": time.time()}
            return
        if before is not None:
            log.info("comfyui-distorch: %s answers its residency route again; prompts are routed to it by "
                     "residency", url)
        self.servers[url] = {"url": url, "document": document, "at": time.time()}

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(message)


def failure_kind(error: str) -> str:
    """How a server failed, without the details that vary between tries: "could not be reached",
    "answered HTTP 404 on /distorch/residency", ..."""
    return error.split(" (", 1)[0]


def read_report(url: str, document, error: str | None) -> tuple[Candidate, object, str | None]:
    """A fetched residency answer read as a candidate (see ResidencyRouter.ask)."""
    if error is None:
        try:
            return Candidate(url, held_from_document(document), queue_from_document(document)), document, None
        except ValueError as exc:
            error = f"answered something that is not a residency report ({exc})"
    return Candidate(url, None, 0), None, error


async def fetch_residency(url: str, timeout: float = FETCH_TIMEOUT_S) -> tuple[object, str | None]:
    """(document, None) or (None, why not) for ``url``'s residency route."""
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url.rstrip("/") + RESIDENCY_PATH) as response:
                if response.status != 200:
                    return None, f"answered HTTP {response.status} on {RESIDENCY_PATH}"
                try:
                    return await response.json(content_type=None), None
                except ValueError:
                    return None, f"answered something that is not JSON on {RESIDENCY_PATH}"
    except asyncio.TimeoutError:
        return None, f"did not answer {RESIDENCY_PATH} within {timeout:g} s"
    except Exception as exc:
        return None, f"could not be reached ({type(exc).__name__}: {exc})"


def install(registry, router: ResidencyRouter, module) -> None:
    """Wrap Distributed's choice and its load-balance test in ``module`` (api.queue_orchestration)."""
    registry.wrap(module, PROMPT_NAME, router.note_prompt, label="routing: Distributed's load-balance test")
    registry.wrap(module, CHOICE_NAME, router.choose_worker, label="routing: Distributed's worker choice")
    router.installed = True
    log.info("comfyui-distorch: ComfyUI-Distributed found; load-balanced prompts go to the server holding their "
             "models%s", "" if router.enabled else f" (off: {ROUTING_VARIABLE}=0)")
