"""The example workflow shipped in example_workflows/ runs and saves an image."""
import json
from pathlib import Path

import pytest
from PIL import Image

import hostenv
from ui_workflow import to_api

pytestmark = pytest.mark.host
EXAMPLES = sorted((hostenv.REPO_ROOT / "example_workflows").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_workflow_saves_an_image(comfy, path: Path):
    prompt = to_api(json.loads(path.read_text()), comfy.object_info())
    assert any(node["class_type"].startswith("DisTorch") for node in prompt.values())
    entry = comfy.run(prompt)
    images = [item for out in entry["outputs"].values() for item in out.get("images", [])]
    assert images, "the example workflow saved no image"
    with Image.open(comfy.output_path(images[0])) as image:
        assert image.size == (64, 64)
