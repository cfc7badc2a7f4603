"""The small files a diffusers-format model folder needs before any weight is read, and fetching
the missing ones from the Hugging Face Hub. Never weights.

A diffusers folder (``models/diffusers/<name>/``) holds ``model_index.json`` (which pipeline, which
parts, which text-encoder family) and one subfolder per part (``unet/`` or ``transformer/``,
``vae/``, ``text_encoder/``, ``text_encoder_2/``), each with its weights and a ``config.json``.
The pack reads ``model_index.json`` and each loaded part's ``config.json`` to check the part before
reading its weights; ComfyUI ships its own tokenizers, so tokenizer files are never required.

Two modes when something is missing:
- offline-strict (``DISTORCH_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or the node's setting): the load
  fails before any weight is read with ``AssetsMissing``, which names each missing file, the
  repository the folder belongs to (when ``model_index.json`` or ``README.md`` names one) and the
  ``hf download`` command that fetches them; no network request is made;
- online (default): only the missing ``*.json`` / ``*.txt`` (tokenizer ``*.model`` only when
  allowed) are fetched, each try with a short connect/read timeout, retried with exponential
  back-off and jitter, written under a temporary name and moved into place (``os.replace``), so a
  broken download never leaves half a file.

Fetching uses huggingface_hub's own pieces (``hf_hub_url``, ``get_hf_file_metadata``,
``http_stream_backoff``, its session, headers and token, its error types) with its retries turned
off, so that this module's back-off alone decides how often and how long it tries:
``hf_hub_download`` retries on its own (a second HEAD with a fixed 60 s timeout and up to 5 retries,
then up to 5 resumed GETs), which no argument turns off. ``HF_ENDPOINT`` is read on each call (tests
point it at a local server); ``HF_HUB_ETAG_TIMEOUT`` / ``HF_HUB_DOWNLOAD_TIMEOUT``, when set, win
over the ``timeout`` argument as they do in huggingface_hub. Nothing here imports ComfyUI or torch;
huggingface_hub is imported only when something is fetched.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from ..logic.errors import shown_by_name

DEFAULT_PARTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")
MODEL_INDEX = "model_index.json"
CONFIG = "config.json"
README = "README.md"
DEFAULT_REVISION = "main"
DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_ENV = "DISTORCH_OFFLINE"
# As huggingface_hub reads them (constants.ENV_VARS_TRUE_VALUES, compared upper-cased).
TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})
# Always fetchable: small text files. Tokenizer ``*.model`` (sentencepiece) only when allowed.
TEXT_SUFFIXES = (".json", ".txt")
TOKENIZER_MODEL_SUFFIX = ".model"
# Answers worth another try (as huggingface_hub's own back-off treats them); all other HTTP errors
# (401/403 gated or private, 404 not there) fail at once.
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)
# Path segments after huggingface.co/ that are site pages, not repository owners.
_SITE_PAGES = frozenset({"api", "blog", "collections", "datasets", "docs", "join", "learn", "login", "models",
                         "new", "organizations", "papers", "posts", "pricing", "settings", "spaces", "tasks"})
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_HUB_LINK = re.compile(r"https?://(?:www\.)?(?:huggingface\.co|hf\.co)/([A-Za-z0-9][\w.-]*)/([A-Za-z0-9][\w.-]*)")

_log = logging.getLogger("distorch.assets")


@dataclass(frozen=True)
class Asset:
    """A file the pack reads from a diffusers folder, relative to the folder (``unet/config.json``),
    and why it is needed."""

    relative_path: str
    reason: str


@dataclass(frozen=True)
class RepoSource:
    """A Hub repository id and what named it (shown in messages so a wrong guess can be spotted)."""

    repo: str
    named_by: str


@shown_by_name
class AssetsInvalid(ValueError):
    """A file of the folder that is there but cannot be read (the message names it and what to do)."""


@shown_by_name
class AssetsMissing(RuntimeError):
    """Files the load needs are missing and were not fetched: the message names the folder, each
    file, the repository (or how to give one) and the command that fetches them."""

    def __init__(self, folder: Path, missing: Sequence[Asset], source: RepoSource | None, why: str, *,
                 revision: str = DEFAULT_REVISION, advice: str = ""):
        self.folder = Path(folder)
        self.missing = list(missing)
        self.source = source
        self.repo = source.repo if source else None
        self.command = fetch_command(self.repo, [a.relative_path for a in self.missing], self.folder, revision)
        super().__init__(_missing_message(self.folder, self.missing, source, why, self.command, advice))


class AssetsFetchFailed(AssetsMissing):
    """Fetching a missing file failed on every try, or the Hub refused it (the message says which
    file, the last error and what to do); files fetched before the failure stay, complete."""

    def __init__(self, folder: Path, missing: Sequence[Asset], source: RepoSource, failed: str, error: str,
                 tries: int, *, revision: str = DEFAULT_REVISION, advice: str = "", fetched: Sequence[str] = ()):
        self.failed = failed
        self.error = error
        self.tries = tries
        self.fetched = list(fetched)
        tried = f"after {tries} {'try' if tries == 1 else 'tries'}"
        why = f"fetching {failed} from {source.repo} failed {tried}: {error}."
        if self.fetched:
            why += f" Fetched before that (complete): {', '.join(self.fetched)}."
        super().__init__(folder, missing, source, why, revision=revision, advice=advice)


# ---------------------------------------------------------------------------------------------
# What the folder needs (pure: reads only small files of the folder)


def required_assets(folder: Path, parts: Sequence[str] = DEFAULT_PARTS) -> list[Asset]:
    """``model_index.json`` and ``<part>/config.json`` for each of ``parts`` that model_index.json
    lists (a part listed as ``[null, null]`` is absent), or, while model_index.json is missing, each
    of ``parts`` whose subfolder exists. Tokenizer files are never required (ComfyUI has its own)."""
    folder = Path(folder)
    index = read_model_index(folder)
    assets = [Asset(MODEL_INDEX, "names the pipeline and its parts")]
    for part in parts:
        if index is not None:
            if not _component_listed(index.get(part)):
                continue
            class_name = _component_class(index.get(part))
        elif (folder / part).is_dir():
            class_name = None
        else:
            continue
        what = f"the {part} ({class_name})" if class_name else f"the {part}"
        assets.append(Asset(f"{part}/{CONFIG}", f"describes {what}, checked before its weights are read"))
    return assets


def missing_assets(folder: Path, parts: Sequence[str] = DEFAULT_PARTS) -> list[Asset]:
    """The required assets that are not a file in ``folder``."""
    folder = Path(folder)
    return [a for a in required_assets(folder, parts) if not (folder / a.relative_path).is_file()]


def read_model_index(folder: Path) -> dict | None:
    """The folder's model_index.json as a dict, None when there is none; AssetsInvalid naming the
    file when it is there but not a JSON object."""
    return _read_json_object(Path(folder) / MODEL_INDEX, "model_index.json")


def tokenizer_folders(folder: Path) -> list[str]:
    """Subfolders holding tokenizer files: those model_index.json lists with a ``*Tokenizer*``
    class or a ``tokenizer*`` name, or (without model_index.json) ``tokenizer*`` subfolders."""
    folder = Path(folder)
    index = read_model_index(folder)
    if index is None:
        return sorted(p.name for p in folder.glob("tokenizer*") if p.is_dir())
    return [key for key, value in index.items()
            if not key.startswith("_") and _component_listed(value)
            and (key.startswith("tokenizer") or "Tokenizer" in (_component_class(value) or ""))]


def is_fetchable(relative_path: str, *, tokenizer_folders: Iterable[str] = (),
                 allow_tokenizer_model: bool = False) -> bool:
    """Whether a file may be fetched at all: ``*.json`` and ``*.txt``, and ``*.model`` inside a
    tokenizer folder when allowed; never weights (``*.safetensors``, ``*.bin``, ``*.gguf``, ...)."""
    path = PurePosixPath(relative_path)
    if path.is_absolute() or not path.parts or any(part in ("", ".", "..") for part in path.parts):
        return False
    if path.suffix in TEXT_SUFFIXES:
        return True
    return (allow_tokenizer_model and path.suffix == TOKENIZER_MODEL_SUFFIX and len(path.parts) > 1
            and path.parts[0] in set(tokenizer_folders))


def _component_listed(value) -> bool:
    # diffusers writes ["library", "ClassName"]; [null, null] marks a component the pipeline lacks.
    if isinstance(value, (list, tuple)):
        return len(value) == 2 and value[1] is not None
    return False


def _component_class(value) -> str | None:
    return value[1] if _component_listed(value) and isinstance(value[1], str) else None


def _read_json_object(path: Path, what: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AssetsInvalid(f"{what} at {path} cannot be read as JSON ({error}): delete it and load again to "
                            "fetch it anew, or replace it with the file from the model's repository") from None
    if not isinstance(data, dict):
        raise AssetsInvalid(f"{what} at {path} holds a JSON {type(data).__name__}, not an object: delete it and "
                            "load again to fetch it anew, or replace it with the file from the model's repository")
    return data


# ---------------------------------------------------------------------------------------------
# Which repository the folder came from


def is_repo_id(value) -> bool:
    """``owner/name`` as the Hub allows it (no local path, no ``..`` or ``--``)."""
    return (isinstance(value, str) and _REPO_ID.fullmatch(value) is not None and ".." not in value
            and "--" not in value and not value.endswith((".", "-")))


def repository_source(folder: Path) -> RepoSource | None:
    """The repository the folder names and where: model_index.json's ``_name_or_path``, then a
    diffusers part config's ``_name_or_path`` (text-encoder configs name the encoder's own origin,
    e.g. openai/clip-vit-large-patch14, so they are not asked), then README.md: its front matter's
    ``base_model:`` or its first ``huggingface.co/<owner>/<name>`` link. None when none does."""
    folder = Path(folder)
    candidates: list[tuple[object, str]] = []
    try:
        index = read_model_index(folder)
    except AssetsInvalid:
        index = None  # an unreadable index names nothing; the load reports it on its own
    if index is not None:
        candidates.append((index.get("_name_or_path"), "model_index.json (_name_or_path)"))
    for part in DEFAULT_PARTS:
        try:
            config = _read_json_object(folder / part / CONFIG, f"{part}/config.json")
        except AssetsInvalid:
            continue
        if config is not None and "_diffusers_version" in config:
            candidates.append((config.get("_name_or_path"), f"{part}/config.json (_name_or_path)"))
    for value, named_by in candidates:
        if is_repo_id(value):
            return RepoSource(value, named_by)
    return _readme_source(folder / README)


def repository_of(folder: Path) -> str | None:
    """The repository id ``repository_source`` finds, or None."""
    source = repository_source(folder)
    return source.repo if source else None


def _readme_source(readme: Path) -> RepoSource | None:
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    front = _front_matter(text)
    base = front.get("base_model") if isinstance(front, dict) else None
    for value in (base if isinstance(base, list) else [base]):
        if is_repo_id(value):
            return RepoSource(value, "README.md (base_model)")
    for owner, name in _HUB_LINK.findall(text):
        repo = f"{owner}/{name.rstrip('.')}"
        if owner not in _SITE_PAGES and is_repo_id(repo):
            return RepoSource(repo, "README.md (link)")
    return None


def _front_matter(text: str):
    # A model card starts with YAML between two "---" lines.
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            import yaml  # a ComfyUI dependency; only needed when a README has front matter

            try:
                return yaml.safe_load("\n".join(lines[1:end]))
            except yaml.YAMLError:
                return None
    return None


# ---------------------------------------------------------------------------------------------
# Offline mode and messages


def offline_requested(environ: Mapping[str, str], setting: bool | None = None) -> bool:
    """Offline-strict: ``setting`` is true, ``DISTORCH_OFFLINE`` is true, or huggingface_hub's own
    offline switch is (``HF_HUB_OFFLINE``, falling back to ``TRANSFORMERS_OFFLINE`` as the library
    does). True values as the library reads them: 1, ON, YES, TRUE in any case."""
    hub_value = environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE")
    return bool(setting) or _is_true(environ.get(OFFLINE_ENV)) or _is_true(hub_value)


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in TRUE_VALUES


def _offline_reason(environ: Mapping[str, str], setting: bool | None) -> str:
    if setting:
        return "the offline setting is on"
    for name in (OFFLINE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _is_true(environ.get(name)):
            return f"{name}={environ[name]} is set"
    return "offline mode is on"


def fetch_command(repo: str | None, relative_paths: Sequence[str], folder: Path,
                  revision: str = DEFAULT_REVISION) -> str:
    """The ``hf download`` command (huggingface_hub's CLI) that fetches exactly these files into
    ``folder``; ``<owner>/<name>`` stands for the repository when none is known."""
    words = ["hf", "download", shlex.quote(repo) if repo else "<owner>/<name>"]
    words += [shlex.quote(p) for p in relative_paths]
    if revision != DEFAULT_REVISION:
        words += ["--revision", shlex.quote(revision)]
    words += ["--local-dir", shlex.quote(str(folder))]
    return " ".join(words)


def _missing_message(folder: Path, missing: Sequence[Asset], source: RepoSource | None, why: str,
                     command: str, advice: str) -> str:
    lines = [f"The diffusers folder {folder} lacks {len(missing)} file(s) the load reads before any weights:"]
    lines += [f"  - {a.relative_path}: {a.reason}" for a in missing]
    lines.append(f"Not fetched: {why}")
    if source is not None:
        lines.append(f"Repository: {source.repo} (named by {source.named_by}).")
    else:
        lines.append("Repository: none is named (no repo_id in model_index.json's _name_or_path, no diffusers part "
                     "config's _name_or_path, no base_model or huggingface.co link in README.md). Give the "
                     "repository the folder comes from in the loader's hf_repo input (owner/name, e.g. "
                     "black-forest-labs/FLUX.1-dev) to fetch them, or fetch them yourself.")
    if advice:
        lines.append(advice)
    lines.append("Command that fetches them (config files only, no weights):")
    lines.append(f"  {command}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Fetching


def ensure_assets(folder: Path, *, repo: str | None = None, offline: bool | None = None,
                  include_tokenizer: bool = False, allow_tokenizer_model: bool = False, retries: int = 4,
                  timeout: tuple[float, float] = (5, 10), backoff: tuple[float, float] = (0.5, 8.0),
                  revision: str = DEFAULT_REVISION, parts: Sequence[str] = DEFAULT_PARTS,
                  log: Callable[[str], None] = _log.info) -> list[str]:
    """Make the folder hold what the load reads; returns the files fetched (relative paths).

    - Nothing missing (and no tokenizer asked for): returns [] without any request.
    - Offline (``offline`` true or ``offline_requested(os.environ)``), or no repository known (not
      ``repo``, not named by the folder), with something missing: AssetsMissing, no request at all.
    - Otherwise fetches only the missing files (model_index.json first: it decides which part
      configs are needed), plus, with ``include_tokenizer``, the tokenizer folders' missing
      ``*.json``/``*.txt`` (``*.model`` with ``allow_tokenizer_model``) as the Hub lists them.
      Each try: connect/read ``timeout`` seconds; up to ``retries`` more tries per file, waiting
      ``backoff`` = (first, longest) seconds, doubling, with jitter; AssetsFetchFailed when a file
      fails every try (or at once, for errors another try cannot fix: not found, gated, private).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"diffusers folder {folder} does not exist or is not a folder: give a folder under "
                                "models/diffusers/ that holds model_index.json and the part subfolders")
    repo = repo.strip() if isinstance(repo, str) else repo
    repo = repo or None  # the node's empty hf_repo input: use the repository the folder names
    if repo is not None and not is_repo_id(repo):
        raise ValueError(f"hf_repo {repo!r} is not a Hub repository id: give owner/name (letters, digits, '-', '_', "
                         "'.'), e.g. black-forest-labs/FLUX.1-dev, or leave it empty to use the one the folder names")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0 (tries after the first), got {retries!r}")
    if not _numbers(timeout, lambda v: v > 0):
        raise ValueError(f"timeout must be (connect, read) seconds, two numbers > 0, got {timeout!r}")
    if not _numbers(backoff, lambda v: v >= 0) or backoff[0] > backoff[1]:
        raise ValueError(f"backoff must be (first, longest) wait in seconds, 0 <= first <= longest, got {backoff!r}")
    missing = missing_assets(folder, parts)
    if not missing and not include_tokenizer:
        return []
    source = RepoSource(repo, "the hf_repo input") if repo else repository_source(folder)
    if offline_requested(os.environ, offline):
        if missing:
            raise AssetsMissing(folder, missing, source,
                                f"offline mode ({_offline_reason(os.environ, offline)}); nothing was requested "
                                "from the Hub. Turn offline mode off to fetch them automatically, or run the "
                                "command below where the Hub can be reached.", revision=revision)
        log(f"{folder}: tokenizer files not checked (offline)")
        return []
    if source is None:
        if missing:
            raise AssetsMissing(folder, missing, None, "no repository is known to fetch them from.", revision=revision)
        log(f"{folder}: tokenizer files not checked (no repository is named; give one in hf_repo)")
        return []
    try:
        fetcher = _HubFetcher(folder=folder, source=source, revision=revision, retries=retries, timeout=timeout,
                              backoff=backoff, log=log)
    except ImportError as error:
        raise AssetsMissing(folder, missing, source, f"huggingface_hub cannot be imported ({error}). Install it into "
                            "ComfyUI's Python (pip install -r custom_nodes/comfyui-distorch/requirements.txt) to "
                            "fetch them automatically, or run the command below.", revision=revision) from None
    fetched: list[str] = []

    def fetch(relative_path: str, tokenizers: Sequence[str] = ()) -> None:
        if not is_fetchable(relative_path, tokenizer_folders=tokenizers, allow_tokenizer_model=allow_tokenizer_model):
            raise ValueError(f"{relative_path} is not fetched: only *.json, *.txt (and tokenizer *.model when "
                             "allowed) are, never weights")
        try:
            fetcher.fetch(relative_path)
        except _TriesExhausted as failure:
            still = missing_assets(folder, parts)
            if not any(a.relative_path == relative_path for a in still):
                still.append(Asset(relative_path, "asked for (tokenizer file)"))
            raise AssetsFetchFailed(folder, still, source, relative_path, failure.error, failure.tries,
                                    revision=revision, advice=failure.advice, fetched=fetched) from None
        fetched.append(relative_path)

    if any(a.relative_path == MODEL_INDEX for a in missing):
        fetch(MODEL_INDEX)
        missing = missing_assets(folder, parts)  # the fetched index decides which configs are needed
    for asset in missing:
        fetch(asset.relative_path)
    if include_tokenizer:
        tokenizers = tokenizer_folders(folder)
        for tokenizer in tokenizers:
            for relative_path in fetcher.list_folder(tokenizer):
                if (folder / relative_path).is_file():
                    continue
                if is_fetchable(relative_path, tokenizer_folders=tokenizers,
                                allow_tokenizer_model=allow_tokenizer_model):
                    fetch(relative_path, tokenizers)
                elif relative_path.endswith(TOKENIZER_MODEL_SUFFIX):
                    log(f"{relative_path} not fetched: tokenizer *.model files need allow_tokenizer_model")
    return fetched


def backoff_delay(attempt: int, first: float, longest: float, rng: Callable[[float, float], float] = random.uniform
                  ) -> float:
    """Seconds to wait after try ``attempt`` (1-based) failed: ``first`` doubling per try, at most
    ``longest``, with "equal jitter" (half fixed, half random) so that many loaders started
    together do not retry in step."""
    ceiling = min(longest, first * 2 ** (attempt - 1))
    return ceiling / 2 + rng(0, ceiling / 2)


class _TriesExhausted(Exception):
    def __init__(self, error: str, tries: int, advice: str, cause: Exception):
        super().__init__(error)
        self.error, self.tries, self.advice, self.cause = error, tries, advice, cause


class _NotFromHub(Exception):
    """An answer that is not the Hub's file: a wrong size or not JSON (``retry``: a broken transfer),
    or no commit/ETag header (not ``retry``: HF_ENDPOINT is no Hub, which another try does not fix)."""

    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry


@dataclass
class _HubFetcher:
    """One folder's fetches from one repository, through huggingface_hub with its retries off."""

    folder: Path
    source: RepoSource
    revision: str
    retries: int
    timeout: tuple[float, float]
    backoff: tuple[float, float]
    log: Callable[[str], None]

    def __post_init__(self):
        import huggingface_hub  # here, not at the top: only a fetch needs it
        from huggingface_hub import errors
        from huggingface_hub.utils import build_hf_headers, http_backoff, http_stream_backoff

        self._hub, self._errors = huggingface_hub, errors
        self._headers, self._get, self._stream = build_hf_headers, http_backoff, http_stream_backoff
        # Read on each call, not at import as huggingface_hub.constants does, so that tests and
        # the user's shell can point it at a mirror.
        self.endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        connect, read = self.timeout
        head_read = _env_seconds("HF_HUB_ETAG_TIMEOUT") or read
        get_read = _env_seconds("HF_HUB_DOWNLOAD_TIMEOUT") or read
        # (connect, read, write, pool): the 4-tuple httpx (huggingface_hub 1.x) and httpx2 (2.x)
        # both accept as a request timeout, so neither needs importing here.
        self._head_timeout = (connect, head_read, head_read, connect)
        self._get_timeout = (connect, get_read, get_read, connect)
        # Every huggingface_hub request here makes exactly one try; this class decides the rest.
        self._one_try = {"max_retries": 0, "retry_on_exceptions": (), "retry_on_status_codes": ()}

    # -- one file

    def fetch(self, relative_path: str) -> None:
        self._with_retries(relative_path, lambda: self._fetch_once(relative_path))
        self.log(f"fetched {relative_path} from {self.source.repo} into {self.folder}")

    def _fetch_once(self, relative_path: str) -> None:
        url = self._hub.hf_hub_url(self.source.repo, relative_path, revision=self.revision, endpoint=self.endpoint)
        meta = self._hub.get_hf_file_metadata(url, timeout=self._head_timeout, library_name="comfyui-distorch",
                                              endpoint=self.endpoint, retry_on_errors=False)
        if meta.commit_hash is None or meta.etag is None:
            raise _NotFromHub(f"{url} answered without the Hub's X-Repo-Commit/ETag headers, so "
                              f"{self.endpoint} is no Hub or Hub mirror", retry=False)
        headers = self._headers(library_name="comfyui-distorch")
        if _origin(meta.location) != _origin(url):
            headers.pop("authorization", None)  # a signed CDN address: the token stays on the Hub
        target = self.folder / relative_path
        # The temporary file sits beside the target (or in the folder while the part subfolder is
        # missing): same file system, so os.replace is atomic; nothing shows under the real name
        # until the whole file is there.
        scratch_dir = target.parent if target.parent.is_dir() else self.folder
        handle, scratch = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".distorch-partial", dir=scratch_dir)
        try:
            with os.fdopen(handle, "wb") as out:
                with self._stream("GET", meta.location, headers=headers, timeout=self._get_timeout,
                                  **self._one_try) as response:
                    self._hub.hf_raise_for_status(response)
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                size = out.tell()
                out.flush()
                os.fsync(out.fileno())
            if meta.size is not None and size != meta.size:
                raise _NotFromHub(f"{relative_path} arrived with {size} bytes, the Hub announced {meta.size}",
                                  retry=True)
            if target.suffix == ".json":
                _check_json(Path(scratch), relative_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch, target)
        finally:
            Path(scratch).unlink(missing_ok=True)

    # -- a tokenizer folder's file names

    def list_folder(self, subfolder: str) -> list[str]:
        """The files the Hub lists under ``subfolder`` (one level), [] when the repository has no such folder."""
        url = (f"{self.endpoint}/api/models/{self.source.repo}/tree/{quote(self.revision, safe='')}/"
               f"{quote(subfolder, safe='')}")

        def list_once() -> list[str]:
            response = self._get("GET", url, headers=self._headers(library_name="comfyui-distorch"),
                                 timeout=self._head_timeout, **self._one_try)
            self._hub.hf_raise_for_status(response)
            return [entry["path"] for entry in response.json()
                    if isinstance(entry, dict) and entry.get("type") == "file" and isinstance(entry.get("path"), str)
                    and entry["path"].startswith(f"{subfolder}/")]

        try:
            return self._with_retries(f"the file list of {subfolder}/", list_once)
        except _TriesExhausted as failure:
            if self._folder_absent(failure.cause):
                self.log(f"{subfolder}/: the repository {self.source.repo} lists no such folder; nothing fetched")
                return []
            raise AssetsFetchFailed(self.folder, [], self.source, f"the file list of {subfolder}/", failure.error,
                                    failure.tries, revision=self.revision, advice=failure.advice) from None

    def _folder_absent(self, error: Exception) -> bool:
        # The repository answered, but has no such folder (an entry-not-found or a bare 404).
        errors = self._errors
        if isinstance(error, errors.RemoteEntryNotFoundError):
            return True
        if isinstance(error, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError)):
            return False
        return (isinstance(error, errors.HfHubHTTPError) and error.response is not None
                and error.response.status_code == 404)

    # -- tries

    def _with_retries(self, what: str, attempt: Callable):
        tries = self.retries + 1
        for number in range(1, tries + 1):
            try:
                return attempt()
            except Exception as error:  # sorted below: retried, or turned into an explained failure
                retry, description, advice = self._judge(error)
                if not retry:
                    raise _TriesExhausted(description, number, advice, error) from None
                if number == tries:
                    raise _TriesExhausted(description, number, advice or self._network_advice(), error) from None
                delay = backoff_delay(number, *self.backoff)
                self.log(f"{what} from {self.source.repo}: try {number}/{tries} failed ({description}); "
                         f"retrying in {delay:.2f} s")
                time.sleep(delay)
        raise AssertionError("unreachable: the last try returns or raises")

    def _judge(self, error: Exception) -> tuple[bool, str, str]:
        """(retry?, what went wrong, what to do) for one failed try."""
        errors, repo, page = self._errors, self.source.repo, f"{self.endpoint}/{self.source.repo}"
        if isinstance(error, errors.GatedRepoError):
            return False, f"{repo} is gated (HTTP {error.response.status_code})", (
                f"Accept its terms on {page} and log in (hf auth login, or set HF_TOKEN), then load again.")
        if isinstance(error, errors.RepositoryNotFoundError):
            return False, f"repository {repo} not found or private (HTTP {error.response.status_code})", (
                "Check the repository id (hf_repo input, or what the folder names); for a private one log in "
                "(hf auth login, or set HF_TOKEN).")
        if isinstance(error, errors.RevisionNotFoundError):
            return False, f"revision {self.revision!r} not found in {repo}", "Give a revision the repository has."
        if isinstance(error, errors.RemoteEntryNotFoundError):
            return False, f"file not found in {repo} at revision {self.revision}", (
                "The repository may not be the one this folder comes from: check it (hf_repo input), or copy "
                "the file from where the folder came from.")
        if isinstance(error, errors.OfflineModeIsEnabled):
            return False, f"huggingface_hub is in offline mode ({error})", (
                "Unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE for ComfyUI's process, or fetch with the command.")
        if isinstance(error, errors.HfHubHTTPError):
            status = error.response.status_code if error.response is not None else None
            return status in RETRY_STATUS_CODES, f"HTTP {status} from {self.endpoint}", ""
        # httpx's (hub 1.x) or httpx2's (hub 2.x) transport errors, known by their class names.
        kinds = {cls.__name__ for cls in type(error).__mro__}
        if "TimeoutException" in kinds:
            return True, f"{type(error).__name__}: no answer within the timeout", ""
        if kinds & {"NetworkError", "RemoteProtocolError"}:
            return True, f"{type(error).__name__}: {error}", ""
        if isinstance(error, _NotFromHub):
            return error.retry, str(error), "" if error.retry else (
                "Point HF_ENDPOINT at the Hub or a Hub mirror (or unset it for https://huggingface.co).")
        if isinstance(error, OSError):
            return False, f"{type(error).__name__}: {error}", (
                f"Make {self.folder} writable for ComfyUI (or free disk space), or fetch with the command.")
        return False, f"{type(error).__name__}: {error}", ""

    def _network_advice(self) -> str:
        return (f"Check the network and the Hub address ({self.endpoint}; HF_ENDPOINT sets it), then load "
                f"again, or set {OFFLINE_ENV}=1 to fail at once without trying.")


def _numbers(pair, allowed: Callable[[float], bool]) -> bool:
    return (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and allowed(v) for v in pair))


def _check_json(path: Path, relative_path: str) -> None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _NotFromHub(f"{relative_path} arrived but is not JSON ({error})", retry=True) from None


def _env_seconds(name: str) -> float | None:
    value = os.environ.get(name)
    try:
        return float(value) if value else None
    except ValueError:
        return None  # huggingface_hub itself would fail to import with it; ignore it here


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port
