"""Turn a UI-format workflow (what users drag into ComfyUI) into the API format /prompt takes,
using the server's own /object_info for the widget order: the same mapping the frontend does."""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def to_api(workflow: dict, object_info: dict) -> dict:
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0:
            continue
        info = object_info[node["type"]]
        linked = {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, source, source_slot, *_ = links[slot["link"]]
                linked[slot["name"]] = [str(source), source_slot]
        values = list(node.get("widgets_values", []))
        inputs = dict(linked)
        order = info["input_order"]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for name in order.get("required", []) + order.get("optional", []):
            spec = specs[name]
            if name in linked or not _is_widget(spec):
                continue
            if not values:
                break
            inputs[name] = values.pop(0)
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if options.get("control_after_generate") and values:
                values.pop(0)  # the "fixed / randomize" widget the frontend adds after a seed
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
