"""Frame a saved workflow: set its view (``extra.ds``: scale and offset) so the whole graph is on
screen when the frontend opens it, clear of the menus and the side toolbar.

    python tools/frame_workflow.py example_workflows/*.json [--width 1280 --height 720]

The frontend draws a graph point ``p`` at ``(p + offset) * scale`` in the canvas. The view is
sized for a small laptop window (1280x720) so it also frames on larger screens. Standard library
only; tests/host/test_example_workflows_browser.py checks the result in a real frontend.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TITLE_HEIGHT = 30  # the frontend draws a node's title above its ``pos``
# canvas pixels the frontend's own UI covers: side toolbar, tab bar + floating menus, zoom controls
MARGIN_LEFT, MARGIN_TOP, MARGIN_RIGHT, MARGIN_BOTTOM = 80, 140, 30, 70


def graph_bounds(workflow: dict) -> tuple[float, float, float, float]:
    nodes = workflow.get("nodes") or []
    if not nodes:
        raise ValueError("the workflow has no nodes to frame")
    left = min(n["pos"][0] for n in nodes)
    top = min(n["pos"][1] - TITLE_HEIGHT for n in nodes)
    right = max(n["pos"][0] + n["size"][0] for n in nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes)
    return left, top, right, bottom


def framed_view(workflow: dict, width: int = 1280, height: int = 720) -> dict:
    """``extra.ds`` that shows every node of ``workflow`` in a ``width`` x ``height`` canvas:
    the largest scale up to 1 that fits, centred in the room the frontend's UI leaves."""
    left, top, right, bottom = graph_bounds(workflow)
    room_w = width - MARGIN_LEFT - MARGIN_RIGHT
    room_h = height - MARGIN_TOP - MARGIN_BOTTOM
    scale = min(1.0, room_w / (right - left), room_h / (bottom - top))
    scale = int(scale * 100) / 100  # round down: a view a hair too small still frames
    pad_x = (room_w / scale - (right - left)) / 2
    pad_y = (room_h / scale - (bottom - top)) / 2
    offset = [round(MARGIN_LEFT / scale + pad_x - left, 1), round(MARGIN_TOP / scale + pad_y - top, 1)]
    return {"scale": scale, "offset": offset}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    args = parser.parse_args()
    for path in args.files:
        workflow = json.loads(path.read_text())
        workflow.setdefault("extra", {})["ds"] = framed_view(workflow, args.width, args.height)
        path.write_text(json.dumps(workflow, indent=2) + "\n")
        print(f"{path}: {workflow['extra']['ds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
