"""`make run`: a ComfyUI host with the pack and the demo models on http://127.0.0.1:8188.

Uses ``.run/`` in the repository as ComfyUI's base directory (models linked from the cache,
the pack linked into custom_nodes/, outputs in .run/output). Ctrl+C stops it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostenv  # noqa: E402
from comfy_host import ComfyHost  # noqa: E402


def run_dir() -> Path:
    host = hostenv.host_choice()
    return hostenv.REPO_ROOT / (".run" if host == hostenv.FLOOR_HOST or os.environ.get("COMFYUI_PATH") else f".run-{host}")


def demo_host(argv=None) -> ComfyHost:
    """The host ``make run`` starts: base directory .run/ (its database .run/comfyui.db, which
    ComfyHost passes as --database-url: the ComfyUI tree's default one may not be writable);
    .run-0.33.0/ for ``make run HOST=0.33``, whose database schema is newer."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8188)))
    parser.add_argument("--gpu", action="store_true", help="do not pass --cpu (use the machine's GPU)")
    args, extra = parser.parse_known_args(argv)
    return ComfyHost(hostenv.comfyui_dir(), run_dir(), hostenv.models_dir(), hostenv.REPO_ROOT,
                     extra_args=tuple(extra), port=args.port, cpu=not args.gpu)


def main() -> int:
    host = demo_host()
    host.prepare()
    print(f"{hostenv.host_label()} ({hostenv.comfyui_dir()}) with comfyui-distorch on {host.url}\n"
          f"Open it, drag example_workflows/distorch_split_txt2img.json onto the canvas (or "
          f"distorch_txt2img.json: a checkpoint, no split) and press Run; images land in {host.base_dir.name}/output. "
          f"Ctrl+C stops the server.", flush=True)
    os.chdir(host.comfyui_dir)
    os.execv(sys.executable, [sys.executable, *host.command()])


if __name__ == "__main__":
    raise SystemExit(main())
