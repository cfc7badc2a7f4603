"""A real ComfyUI server for tests: started on loopback, driven through its HTTP API.

``ComfyHost`` builds a base directory (``--base-directory``) with the synthetic models linked
in, the pack linked into ``custom_nodes/`` (or not), starts ``main.py --cpu`` on a free port,
waits until it answers and stops the whole process group at the end.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PACK_DIR_NAME = "comfyui-distorch"
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
LEVEL_TAG = re.compile(r"^\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PromptRejected(Exception):
    """POST /prompt answered 400: the body holds ComfyUI's validation errors."""

    def __init__(self, body: dict):
        super().__init__(json.dumps(body)[:2000])
        self.body = body


class ComfyHost:
    def __init__(self, comfyui_dir: Path, base_dir: Path, models_dir: Path, pack_dir: Path | None,
                 extra_args: tuple[str, ...] = (), port: int | None = None, cpu: bool = True,
                 env: dict[str, str] | None = None, extra_custom_nodes: tuple[Path, ...] = ()):
        self.comfyui_dir = Path(comfyui_dir)
        self.base_dir = Path(base_dir)
        self.models_source = Path(models_dir)
        self.pack_dir = pack_dir
        self.extra_args = extra_args
        self.port = port or free_port()
        self.cpu = cpu
        self.env = dict(env or {})  # extra environment variables for the server process
        self.extra_custom_nodes = tuple(Path(p) for p in extra_custom_nodes)  # other packs, linked in by name
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.process: subprocess.Popen | None = None
        self.log_path = self.base_dir / "server.log"

    # ---- lifecycle -------------------------------------------------------------------------
    def prepare(self) -> None:
        for sub in ("custom_nodes", "input", "output", "user", "temp"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        # Real folders holding links to each cached file: a test may add broken files here
        # without touching the cache.
        for folder in self.models_source.iterdir():
            if folder.is_dir():
                target = self.base_dir / "models" / folder.name
                target.mkdir(parents=True, exist_ok=True)
                for item in folder.iterdir():
                    link = target / item.name
                    if link.is_symlink() and not link.exists():
                        link.unlink()  # the cache was regenerated
                    if item.suffix != ".partial" and not link.exists():
                        link.symlink_to(item)
        links = [(PACK_DIR_NAME, self.pack_dir)] if self.pack_dir is not None else []
        links += [(folder.name, folder) for folder in self.extra_custom_nodes]
        for name, folder in links:
            link = self.base_dir / "custom_nodes" / name
            if not link.exists():
                link.symlink_to(folder, target_is_directory=True)

    def command(self) -> list[str]:
        """main.py and its arguments (run with the ComfyUI folder as working directory)."""
        # a database of its own: servers sharing one tree would fight over the tree's default one
        database = [] if "--database-url" in self.extra_args else [
            "--database-url", f"sqlite:///{self.base_dir / 'comfyui.db'}"]
        return ["main.py", *(["--cpu"] if self.cpu else []), "--base-directory", str(self.base_dir),
                "--listen", "127.0.0.1", "--port", str(self.port), *database, *self.extra_args]

    def start(self, timeout: float = 180.0) -> "ComfyHost":
        self.prepare()
        cmd = [sys.executable, *self.command()]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(cmd, cwd=self.comfyui_dir, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self._log.close()
        self.process = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[str]:
        """The log's lines as the older host writes them: newer ones (0.33.0) colour them and start
        each with a level tag ("[INFO] "), both taken off here."""
        return [LEVEL_TAG.sub("", ANSI_COLOUR.sub("", line)) for line in self.log_text().splitlines()]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ---- HTTP ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, timeout: float = 30.0):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw)
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, raw

    def get(self, path: str, timeout: float = 30.0):
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body!r}"[:2000])
        return body

    def object_info(self, node_class: str | None = None) -> dict:
        return self.get("/object_info" + (f"/{node_class}" if node_class else ""))

    def queue(self, prompt: dict) -> str:
        status, body = self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status != 200:
            raise PromptRejected(body if isinstance(body, dict) else {"raw": repr(body)})
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The /history entry of a finished prompt (success or error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("status_str") in ("success", "error")):
                return entry
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} not finished after {timeout:.0f}s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 300.0) -> dict:
        """Queue, wait, and require success; returns the history entry."""
        entry = self.wait(self.queue(prompt), timeout)
        if entry["status"]["status_str"] != "success":
            raise AssertionError(f"prompt failed: {json.dumps(error_of(entry))[:3000]}\n{self.log_tail()}")
        return entry

    def output_path(self, item: dict) -> Path:
        folder = {"output": "output", "temp": "temp"}[item.get("type", "output")]
        return self.base_dir / folder / item.get("subfolder", "") / item["filename"]

    def add_model_file(self, folder: str, name: str, data: bytes) -> Path:
        path = self.base_dir / "models" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def wipe(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)


def error_of(entry: dict) -> dict:
    """The execution_error message of a failed history entry ({} if none)."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return {}


def outputs_of(entry: dict, node_id: str, kind: str) -> list[dict]:
    return entry.get("outputs", {}).get(node_id, {}).get(kind, [])
