"""The README's node reference is what the server really registers."""
import pytest

import hostenv
from node_reference import readme_section, render

pytestmark = pytest.mark.host


def test_readme_node_reference_matches_the_server(comfy):
    readme = (hostenv.REPO_ROOT / "README.md").read_text()
    assert readme_section(readme) == render(comfy.object_info()), (
        "README.md's node reference is stale: run `make docs`")


def test_every_pack_input_has_a_tooltip(comfy):
    info = comfy.object_info()
    missing = []
    for name, node in info.items():
        if not name.startswith("DisTorch"):
            continue
        for section in node["input"].values():
            for input_name, spec in section.items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if not options.get("tooltip"):
                    missing.append(f"{name}.{input_name}")
    assert missing == []
