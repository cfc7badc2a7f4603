"""A local imitation of the Hugging Face Hub's file endpoints, on 127.0.0.1, for tests that point
``HF_ENDPOINT`` at it. It serves a folder laid out as the Hub is (``<root>/<owner>/<name>/<path>``)
and answers what huggingface_hub asks (checked against huggingface_hub 2.4.0):

- ``HEAD``/``GET /<owner>/<name>/resolve/<revision>/<path>``: the file (``get_hf_file_metadata``
  and ``hf_hub_download`` need ``X-Repo-Commit`` and ``ETag``, and read the size from
  ``Content-Length``); errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound,
  EntryNotFound, GatedRepo) as the Hub's do, which huggingface_hub turns into its error types;
- ``GET /api/models/<owner>/<name>/revision/<revision>``: repository info (``sha``), and
- ``GET /api/models/<owner>/<name>/tree/<revision>[/<path>]``: the file list (``type``, ``path``,
  ``size``, ``oid``), as ``snapshot_download`` and the ``hf download`` CLI use them.

Faults, per file path, for a number of requests: ``fail`` (an HTTP error status), ``slow`` (wait
before the headers or in the middle of the body), ``drop`` (send half the body, then close the
connection). Every request is recorded (method and path) in ``requests``.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Fault:
    """What happens to the next ``times`` requests for ``path`` (None: every file; ``times`` None:
    every request) with one of ``methods``."""

    kind: str  # "fail", "slow" or "drop"
    path: str | None
    times: int | None
    methods: tuple[str, ...] = ("HEAD", "GET")
    status: int = 503
    delay: float = 0.0
    where: str = "headers"  # slow: "headers" (before answering) or "body" (after half of it)
    used: int = 0

    def applies(self, method: str, path: str) -> bool:
        return (method in self.methods and (self.path is None or self.path == path)
                and (self.times is None or self.used < self.times))


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # the URL path, unquoted
    file: str | None  # the repository file it asks for, when it is a resolve request
    headers: dict = field(default_factory=dict)


def git_blob_sha1(data: bytes) -> str:
    """The ETag the Hub gives a (non-LFS) file: its git blob id."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """``with FakeHub(root) as hub:`` serves ``root`` at ``hub.endpoint`` until the block ends."""

    def __init__(self, root: Path, *, gated: tuple[str, ...] = ()):
        self.root = Path(root)
        self.gated = set(gated)
        self.plain_http = False  # True: answer files without the Hub's headers, as a plain web server
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up

    def add_file(self, repo: str, path: str, content: bytes | str | dict) -> None:
        if isinstance(content, dict):
            content = json.dumps(content, indent=2)
        if isinstance(content, str):
            content = content.encode()
        target = self.root / repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    def fail(self, path: str | None = None, *, times: int | None = 1, status: int = 503,
             methods: tuple[str, ...] = ("HEAD", "GET")) -> None:
        self.faults.append(Fault("fail", path, times, methods, status=status))

    def slow(self, path: str | None = None, *, times: int | None = 1, delay: float = 2.0, where: str = "headers",
             methods: tuple[str, ...] | None = None) -> None:
        methods = methods or (("GET",) if where == "body" else ("HEAD", "GET"))
        self.faults.append(Fault("slow", path, times, methods, delay=delay, where=where))

    def drop(self, path: str | None = None, *, times: int | None = 1) -> None:
        self.faults.append(Fault("drop", path, times, ("GET",)))

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def files_requested(self) -> list[str]:
        with self._lock:
            return [r.file for r in self.requests if r.file is not None]

    # -- running

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_HubHandler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a handler still sleeping for a "slow" fault is left behind
        # A short poll so that leaving the block (shutdown) takes milliseconds, not half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- used by the handler

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.applies(method, path):
                    fault.used += 1
                    return fault
        return None


class _HubHandler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's client expects

    def log_message(self, format, *args):  # quiet: the tests read hub.requests instead
        pass

    def do_HEAD(self):
        self._answer(send_body=False)

    def do_GET(self):
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        segments = [s for s in path.split("/") if s]
        file = None
        if len(segments) >= 5 and segments[2] == "resolve":
            file = "/".join(segments[4:])
        self.fake._record(Request(self.command, path, file, {k.lower(): v for k, v in self.headers.items()}))
        try:
            if file is not None:
                self._resolve(f"{segments[0]}/{segments[1]}", segments[3], file, send_body)
            elif len(segments) >= 6 and segments[:2] == ["api", "models"] and segments[4] in ("revision", "tree"):
                self._api(f"{segments[2]}/{segments[3]}", segments[4], segments[5], "/".join(segments[6:]))
            else:
                self._error(404, "RepoNotFound", "Not a Hub address", send_body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer

    # -- endpoints

    def _resolve(self, repo: str, revision: str, file: str, send_body: bool) -> None:
        fake = self.fake
        fault = fake._take_fault(self.command, file)
        if fault is not None and fault.kind == "slow" and fault.where == "headers":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "fail":
            return self._error(fault.status, None, f"injected {fault.status}", send_body)
        repo_dir = fake.root / repo
        if not repo_dir.is_dir():
            return self._error(404, "RepoNotFound", "Repository not found", send_body)
        if repo in fake.gated:
            return self._error(403, "GatedRepo", "Access to this repository is restricted", send_body)
        if revision not in ("main", fake.commit(repo)):
            return self._error(404, "RevisionNotFound", "Invalid rev id", send_body, repo)
        target = repo_dir / file
        if not target.is_file() or ".." in Path(file).parts:
            return self._error(404, "EntryNotFound", "Entry not found", send_body, repo)
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if file.endswith(".json") else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        if not fake.plain_http:
            self.send_header("ETag", f'"{git_blob_sha1(data)}"')
            self.send_header("X-Repo-Commit", fake.commit(repo))
        self.end_headers()
        if not send_body:
            return
        if fault is not None and fault.kind == "drop":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # mid-file: the client sees a short body
            self.close_connection = True
            return
        if fault is not None and fault.kind == "slow" and fault.where == "body":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            time.sleep(fault.delay)
            self.wfile.write(data[len(data) // 2:])
            return
        self.wfile.write(data)

    def _api(self, repo: str, kind: str, revision: str, sub: str) -> None:
        fake = self.fake
        repo_dir = fake.root / repo
        if not repo_dir.is_dir():
            return self._error(404, "RepoNotFound", "Repository not found", True)
        if revision not in ("main", fake.commit(repo)):
            return self._error(404, "RevisionNotFound", "Invalid rev id", True, repo)
        files = sorted(p for p in repo_dir.rglob("*") if p.is_file())
        if kind == "revision":
            body = {"id": repo, "sha": fake.commit(repo), "private": False,
                    "siblings": [{"rfilename": p.relative_to(repo_dir).as_posix()} for p in files]}
            return self._json(body)
        recursive = "recursive=true" in (urlsplit(self.path).query or "").lower()
        base = repo_dir / sub if sub else repo_dir
        if not base.is_dir():
            return self._error(404, "EntryNotFound", f"{sub} does not exist on main", True, repo)
        entries = []
        for p in sorted(base.rglob("*") if recursive else base.iterdir()):
            relative = p.relative_to(repo_dir).as_posix()
            if p.is_dir():
                entries.append({"type": "directory", "path": relative, "oid": "0" * 40, "size": 0})
            else:
                data = p.read_bytes()
                entries.append({"type": "file", "path": relative, "oid": git_blob_sha1(data), "size": len(data)})
        self._json(entries)

    # -- answers

    def _json(self, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str, send_body: bool, repo: str | None = None) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        if repo is not None:
            self.send_header("X-Repo-Commit", self.fake.commit(repo))
        self.end_headers()
        if send_body:
            self.wfile.write(data)
