"""Every pack node, every input that takes a value, one bad value at a time: POST /prompt answers
with exactly one error, on the input that holds the bad value, naming the value (and, for devices,
the devices this machine has). The prompts are only validated, never run."""
import pytest

pytestmark = pytest.mark.host

LINKED = {"MODEL": ("UNETLoader", {"unet_name": None, "weight_dtype": "default"}),
          "CLIP": ("CLIPLoader", {"clip_name": None, "type": "stable_diffusion"}),
          "VAE": ("VAELoader", {"vae_name": None})}
BAD_DEVICE = "cuda:97"


def first_choice(spec):
    kind = spec[0]
    if isinstance(kind, list):
        return kind[0] if kind else None
    options = spec[1] if len(spec) > 1 else {}
    if kind == "COMBO":
        return options.get("options", [None])[0]
    return options.get("default", {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind))


def valid_prompt(info: dict, name: str) -> dict | None:
    """The node with every input at a valid value, its first output previewed; None if an input
    cannot be given (a file list this host leaves empty, a link type not covered here)."""
    node = info[name]
    prompt, inputs = {}, {}
    for section in ("required", "optional"):
        for input_name, spec in node["input"].get(section, {}).items():
            kind = spec[0]
            if isinstance(kind, str) and kind in LINKED:
                loader, loader_inputs = LINKED[kind]
                filled = {k: (v if v is not None else first_choice(info[loader]["input"]["required"][k]))
                          for k, v in loader_inputs.items()}
                prompt[str(len(prompt) + 10)] = {"class_type": loader, "inputs": filled}
                inputs[input_name] = [str(len(prompt) + 9), 0]
                continue
            value = first_choice(spec)
            if value is None:
                if section == "required":
                    return None
                continue
            inputs[input_name] = value
    prompt["1"] = {"class_type": name, "inputs": inputs}
    prompt["2"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    return prompt


def bad_values(spec, input_name: str = "") -> list:
    kind = spec[0]
    if input_name in ("allocation", "expert_mode_allocations"):
        # (CheckpointLoaderAdvancedDisTorch2MultiGPU's two per-part strings are checked when it
        # runs: one VALIDATE_INPUTS over both would report a bad one on both)
        return ["cpu,12qb"]  # an unknown unit
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(kind, list) and any(str(v).startswith(("cpu", "default", "cuda")) for v in kind):
        return [BAD_DEVICE]
    if kind == "FLOAT" and "min" in options:
        return [options["min"] - 1.0]
    return []


def test_every_bad_value_gives_one_error_on_its_input(comfy):
    info = comfy.object_info()
    # The mode switch's one input is checked against the modes file (tests/host/test_modes_e2e.py).
    names = sorted(n for n in info if info[n]["category"].startswith("DisTorch") and "/tests" not in info[n]["category"]
                   and n != "DisTorchModeSwitch")
    assert names
    checked, wrong = 0, []
    for name in names:
        prompt = valid_prompt(info, name)
        if prompt is None:
            continue
        status, body = comfy.request("POST", "/prompt", {"prompt": prompt, "client_id": "one-error"})
        if status == 200:  # valid as built: it was queued; take it back out
            comfy.request("POST", "/queue", {"delete": [body["prompt_id"]]})
        else:
            wrong.append((name, "the valid prompt was refused", body.get("node_errors")))
            continue
        for section in ("required", "optional"):
            for input_name, spec in info[name]["input"].get(section, {}).items():
                for bad in bad_values(spec, input_name):
                    attempt = {k: {**v, "inputs": dict(v["inputs"])} for k, v in prompt.items()}
                    attempt["1"]["inputs"][input_name] = bad
                    status, body = comfy.request("POST", "/prompt", {"prompt": attempt, "client_id": "one-error"})
                    checked += 1
                    errors = (body.get("node_errors") or {}).get("1", {}).get("errors", []) if status == 400 else []
                    on_input = [e for e in errors if e.get("extra_info", {}).get("input_name") == input_name]
                    named = str(bad) in str(errors) or (str(bad).endswith("qb") and "'qb'" in str(errors))
                    if status != 400 or len(errors) != 1 or len(on_input) != 1 or not named:
                        wrong.append((name, input_name, bad, status, errors))
    assert checked > 20
    assert wrong == [], "\n".join(map(str, wrong))
