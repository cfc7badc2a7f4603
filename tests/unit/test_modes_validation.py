"""modes.yaml validation: every kind of bad file gives located errors; good files give the config.

Pure: roots, devices and header checks are passed in (the host's header detection is tested in
test_modes_header.py)."""
import os
from pathlib import Path

import pytest

from modes.paths import Roots
from modes.schema import DEFAULT_GUIDANCE, DEFAULT_STEPS, Checks, build_config
from modes.yamlsafe import MAX_FILE_BYTES, ModesFileError, read_document


@pytest.fixture
def root(tmp_path):
    models = tmp_path / "models"
    (models / "sd").mkdir(parents=True)
    (models / "sd" / "a.safetensors").write_bytes(b"x")
    (models / "loras").mkdir()
    (models / "loras" / "l.safetensors").write_bytes(b"x")
    return models


def checks(root=None, **kwargs):
    def device(value, key):
        return None if value in ("cpu", "default") else f"{key}: device '{value}' is not present on this machine"
    return Checks(roots=Roots(), check_device=device, **kwargs)


def load(text, tmp_path, root=None, **kwargs):
    path = tmp_path / "modes.yaml"
    path.write_text(text)
    return build_config(read_document(path.read_bytes(), str(path)), checks(root, **kwargs))


def errors(text, tmp_path, **kwargs):
    with pytest.raises(ModesFileError) as caught:
        load(text, tmp_path, **kwargs)
    problems = caught.value.problems
    assert problems, "a ModesFileError must carry at least one problem"
    for problem in problems:
        assert problem.file.endswith("modes.yaml") and problem.line >= 1 and problem.column >= 1
    return problems


def test_minimal_mode_gets_documented_defaults(tmp_path, root):
    config = load(f"model_root: {root}\nmodes:\n  a:\n    model: sd/a.safetensors\n", tmp_path)
    spec = config.modes["a"]
    assert (spec.width, spec.height, spec.steps, spec.guidance) == (512, 512, DEFAULT_STEPS, DEFAULT_GUIDANCE)
    assert (DEFAULT_STEPS, DEFAULT_GUIDANCE) == (4, 1.0)
    assert spec.model_file == str((root / "sd" / "a.safetensors").resolve())
    assert config.default_mode == "a"
    assert spec.compute_device == "default" and spec.weight_dtype == "default"


def test_full_mode(tmp_path, root):
    config = load(f"""model_root: {root}
default_mode: b
cache: {{max_modes: 5, max_gb: 2.5}}
modes:
  a: {{model: sd/a.safetensors}}
  b:
    model: sd/a.safetensors
    loras:
      - loras/l.safetensors
      - {{path: loras/l.safetensors, strength: 0.8, adapter_name: detail}}
    default_size: "1024x768"
    default_steps: 30
    default_guidance: 7.5
    compute_device: cpu
    weight_dtype: fp8_e4m3fn
    metadata: {{description: "hello"}}
""", tmp_path)
    b = config.modes["b"]
    assert config.default_mode == "b" and (config.cache_max_modes, config.cache_max_gb) == (5, 2.5)
    assert (b.width, b.height, b.steps, b.guidance) == (1024, 768, 30, 7.5)
    assert [(l.strength, l.adapter_name) for l in b.loras] == [(1.0, "l"), (0.8, "detail")]
    assert b.compute_device == "cpu" and b.weight_dtype == "fp8_e4m3fn"
    assert b.metadata == {"description": "hello"}


def test_yaml_syntax_error_is_located(tmp_path):
    [problem] = errors("modes:\n  a: [1, 2\n", tmp_path)
    assert problem.message.startswith("YAML syntax") and problem.line == 3


def test_duplicate_mode_names_are_refused(tmp_path, root):
    problems = errors(f"model_root: {root}\nmodes:\n  a: {{model: sd/a.safetensors}}\n"
                      "  a: {model: sd/a.safetensors}\n", tmp_path)
    assert any("duplicate key 'a'" in p.message and "line 3" in p.message and (p.line, p.column) == (4, 3)
               for p in problems)


def test_unknown_and_missing_keys(tmp_path, root):
    problems = errors(f"model_root: {root}\nmodez: 1\nmodes:\n  a:\n    modle: sd/a.safetensors\n", tmp_path)
    messages = [p.message for p in problems]
    assert any("unknown key 'modez'" in m and "did you mean 'modes'" in m for m in messages)
    assert any("unknown key 'modle'" in m and "did you mean 'model'" in m for m in messages)
    assert any("missing key 'model'" in m for m in messages)
    unknown = next(p for p in problems if "'modez'" in p.message)
    assert (unknown.line, unknown.column) == (2, 1)


def test_missing_modes_key(tmp_path):
    [problem] = errors("default_mode: a\n", tmp_path)
    assert "missing key 'modes'" in problem.message


def test_default_mode_must_exist(tmp_path, root):
    problems = errors(f"model_root: {root}\ndefault_mode: nope\nmodes:\n  a: {{model: sd/a.safetensors}}\n",
                      tmp_path)
    [problem] = problems
    assert "default_mode: 'nope' is not a mode defined" in problem.message and "defined: a" in problem.message
    assert (problem.line, problem.column) == (2, 15)


@pytest.mark.parametrize("size", ['"big"', '"512x"', '"0x512"', '"513x512"', '"20000x512"', "[1, 2]"])
def test_bad_size_strings(tmp_path, root, size):
    [problem] = errors(f"model_root: {root}\nmodes:\n  a:\n    model: sd/a.safetensors\n"
                       f"    default_size: {size}\n", tmp_path)
    assert "default_size" in problem.message and problem.line == 5


@pytest.mark.parametrize("key,value", [("default_steps", "-3"), ("default_steps", "0"), ("default_steps", "2.5"),
                                       ("default_guidance", "-1"), ("default_steps", "true")])
def test_negative_or_wrong_numbers(tmp_path, root, key, value):
    [problem] = errors(f"model_root: {root}\nmodes:\n  a:\n    model: sd/a.safetensors\n    {key}: {value}\n",
                       tmp_path)
    assert key in problem.message and (problem.line, problem.column) == (5, len(key) + 7)


def test_missing_model_and_lora_files(tmp_path, root):
    problems = errors(f"model_root: {root}\nmodes:\n  a:\n    model: sd/nope.safetensors\n"
                      "  b:\n    model: sd/a.safetensors\n    loras: [loras/missing.safetensors]\n", tmp_path)
    messages = sorted(p.message for p in problems)
    assert len(problems) == 2
    assert any("model 'sd/nope.safetensors' not found" in m and str(root) in m for m in messages)
    assert any("LoRA 'loras/missing.safetensors' not found" in m for m in messages)


def test_paths_that_escape_the_root(tmp_path, root):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"x")
    (root / "sd" / "link.safetensors").symlink_to(outside)
    problems = errors(f"""model_root: {root}
modes:
  dots: {{model: ../outside.safetensors}}
  absolute: {{model: {outside}}}
  link: {{model: sd/link.safetensors}}
""", tmp_path)
    by_line = {p.line: p.message for p in problems}
    assert "climbs out of its folder with '..'" in by_line[3]
    assert "absolute path outside the allowed folders" in by_line[4]
    assert "is a link to" in by_line[5] and "outside the allowed folders" in by_line[5]


def test_absolute_path_inside_the_root_and_links_within_are_allowed(tmp_path, root):
    (root / "sd" / "inner-link.safetensors").symlink_to(root / "sd" / "a.safetensors")
    config = load(f"model_root: {root}\nmodes:\n  a: {{model: {root / 'sd' / 'a.safetensors'}}}\n"
                  "  b: {model: sd/inner-link.safetensors}\n", tmp_path)
    assert config.modes["a"].model_file == config.modes["b"].model_file


def test_the_root_itself_may_be_a_link(tmp_path, root):
    linked = tmp_path / "linked-root"
    linked.symlink_to(root, target_is_directory=True)
    config = load(f"model_root: {linked}\nmodes:\n  a: {{model: sd/a.safetensors}}\n", tmp_path)
    assert config.modes["a"].model_file.endswith("a.safetensors")


def test_model_root_must_exist(tmp_path):
    problems = errors(f"model_root: {tmp_path / 'nowhere'}\nmodes:\n  a: {{model: x.safetensors}}\n", tmp_path)
    assert any("model_root: folder" in p.message and "does not exist" in p.message for p in problems)


def test_bad_device_weight_dtype_and_lora_entry(tmp_path, root):
    problems = errors(f"""model_root: {root}
modes:
  a:
    model: sd/a.safetensors
    compute_device: cuda:7
    weight_dtype: fp4
    loras:
      - {{strength: 1}}
      - 42
""", tmp_path)
    by_line = {p.line: p.message for p in problems}
    assert "cuda:7" in by_line[5]
    assert "weight_dtype: 'fp4' is not allowed" in by_line[6] and "fp8_e4m3fn" in by_line[6]
    assert "missing key 'path'" in by_line[8]
    assert "is not a LoRA" in by_line[9]


def test_errors_inside_lora_entries_options_and_metadata_are_located_at_their_key(tmp_path, root):
    problems = errors(mode(root, """loras:
  - path: loras/l.safetensors
    strenght: 0.5
  - {path: loras/l.safetensors, strength_clip: 300}
vae_tiling: {tile_size: 512, overlap: 200}
metadata:
  notes: [fine, {ratio: .nan}]"""), tmp_path)
    by_line = {p.line: p.message for p in problems}
    assert "unknown key 'strenght' in modes.a.loras[0]; did you mean 'strength'?" in by_line[7]
    assert "loras[1].strength_clip: 300 is out of range; allowed -100 to 100" in by_line[8]
    assert "overlap: 200 is more than a quarter of tile_size 512; use at most 128" in by_line[9]
    assert "metadata.notes[1].ratio: nan cannot be sent as JSON" in by_line[11]
    assert len(problems) == 4


def test_alias_bomb_is_refused(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for index in range(1, 8):
        prev, cur = chr(ord("a") + index - 1), chr(ord("a") + index)
        lines.append(f"{cur}: &{cur} [{', '.join('*' + prev for _ in range(10))}]")
    [problem] = errors("\n".join(lines) + "\n", tmp_path)
    assert "alias bomb" in problem.message


def test_too_many_aliases_are_refused(tmp_path):
    text = "a: &a 1\nb: [" + ", ".join("*a" for _ in range(150)) + "]\n"
    [problem] = errors(text, tmp_path)
    assert "aliases" in problem.message and problem.line == 2


def test_oversized_file_is_refused(tmp_path):
    text = "# " + "x" * MAX_FILE_BYTES + "\nmodes: {}\n"
    [problem] = errors(text, tmp_path)
    assert "may be at most" in problem.message


def test_empty_file_and_non_mapping(tmp_path):
    assert "empty" in errors("", tmp_path)[0].message
    assert "must be a mapping" in errors("- a\n- b\n", tmp_path)[0].message


def test_all_errors_are_reported_at_once(tmp_path, root):
    problems = errors(f"model_root: {root}\nmodes:\n  a:\n    model: sd/a.safetensors\n    default_steps: -1\n"
                      "  b:\n    model: nope.safetensors\n    default_size: huge\n", tmp_path)
    assert [p.line for p in problems] == sorted(p.line for p in problems) and len(problems) == 3


def test_lora_for_another_base_is_a_warning_not_an_error(tmp_path, root):
    from modes.header import BaseModel

    config = load(f"model_root: {root}\nmodes:\n  a:\n    model: sd/a.safetensors\n"
                  "    loras: [loras/l.safetensors]\n", tmp_path,
                  inspect_model=lambda path: BaseModel("SD15", 768, "checkpoint"), lora_width=lambda path: 2048)
    [lora] = config.modes["a"].loras
    assert lora.skip_reason and "2048" in lora.skip_reason and "SD15 (768)" in lora.skip_reason
    [warning] = config.warnings
    assert warning.line == 5 and "will be skipped" in warning.message


def test_loras_default_to_model_root_then_lora_root(tmp_path, root):
    other = tmp_path / "other-loras"
    other.mkdir()
    (other / "x.safetensors").write_bytes(b"x")
    config = load(f"model_root: {root}\nlora_root: {other}\nmodes:\n  a:\n    model: sd/a.safetensors\n"
                  "    loras: [x.safetensors]\n", tmp_path)
    assert config.modes["a"].loras[0].file == str((other / "x.safetensors").resolve())


def test_without_model_root_names_resolve_in_comfyui_folders(tmp_path):
    models = tmp_path / "comfy-models"
    for folder in ("checkpoints", "diffusion_models", "loras"):
        (models / folder).mkdir(parents=True)
    (models / "checkpoints" / "c.safetensors").write_bytes(b"c")
    (models / "diffusion_models" / "u.safetensors").write_bytes(b"u")
    (models / "diffusion_models" / "c.safetensors").write_bytes(b"shadowed")
    (models / "loras" / "l.safetensors").write_bytes(b"l")
    roots = Roots(models_dir=models, checkpoint_dirs=(models / "checkpoints",),
                  diffusion_dirs=(models / "diffusion_models",), lora_dirs=(models / "loras",))
    path = tmp_path / "modes.yaml"
    path.write_text("modes:\n  by-path: {model: diffusion_models/c.safetensors}\n"
                    "  by-name: {model: c.safetensors, loras: [l.safetensors]}\n  unet: {model: u.safetensors}\n")
    config = build_config(read_document(path.read_bytes(), str(path)), Checks(roots=roots))
    assert config.modes["by-path"].model_file.endswith(os.path.join("diffusion_models", "c.safetensors"))
    assert config.modes["by-name"].model_file.endswith(os.path.join("checkpoints", "c.safetensors"))
    assert config.modes["unet"].model_file.endswith(os.path.join("diffusion_models", "u.safetensors"))
    assert Path(config.modes["by-name"].loras[0].file).parent == (models / "loras").resolve()


def test_fingerprint_follows_the_files_and_settings(tmp_path, root):
    text = f"model_root: {root}\nmodes:\n  a: {{model: sd/a.safetensors}}\n"
    first = load(text, tmp_path).modes["a"].fingerprint()
    assert load(text, tmp_path).modes["a"].fingerprint() == first
    assert load(text.replace("}", ", weight_dtype: fp8_e5m2}"), tmp_path).modes["a"].fingerprint() != first
    (root / "sd" / "a.safetensors").write_bytes(b"changed content")
    assert load(text, tmp_path).modes["a"].fingerprint() != first


# ---- per-mode options: vae_tiling and attention (the host's attention registry is a check) ----


def mode(root, extra: str) -> str:
    return f"model_root: {root}\nmodes:\n  a:\n    model: sd/a.safetensors\n" + "".join(
        f"    {line}\n" for line in extra.splitlines())


def attention_check(value, key):
    return None if value in ("default", "pytorch", "split") else f"{key}: '{value}' is not an attention function"


@pytest.mark.parametrize("written, expected", [
    ("vae_tiling: true", (512, 64)),
    ("vae_tiling: false", None),
    ("vae_tiling: {tile_size: 256}", (256, 64)),
    ("vae_tiling: {tile_size: 1024, overlap: 128}", (1024, 128)),
])
def test_vae_tiling_forms(tmp_path, root, written, expected):
    assert load(mode(root, written), tmp_path).modes["a"].vae_tiling == expected


@pytest.mark.parametrize("written, words", [
    ("vae_tiling: yes please", ["vae_tiling", "write true, false or {tile_size: 512, overlap: 64}"]),
    ("vae_tiling: {tile_size: 272, overlap: 16}", ["tile_size", "272 is not a multiple of 32"]),
    ("vae_tiling: {tile_size: 32}", ["tile_size", "out of range", "64 to 4096"]),
    ("vae_tiling: {tile_size: 256, overlap: 128}", ["overlap", "more than a quarter", "at most 64"]),
    ("vae_tiling: {tile: 256}", ["unknown key 'tile'", "did you mean 'tile_size'"]),
    ("attention: flashy", ["attention", "'flashy' is not an attention function"]),
])
def test_bad_options_give_one_located_error_each(tmp_path, root, written, words):
    (problem,) = errors(mode(root, written), tmp_path, check_attention=attention_check)
    for word in words:
        assert word in problem.message, problem.message
    assert problem.line == 5  # the option's own line


def test_options_change_the_fingerprint_and_show_in_the_description(tmp_path, root):
    plain = load(mode(root, ""), tmp_path, check_attention=attention_check).modes["a"]
    tuned = load(mode(root, "vae_tiling: true\nattention: split"), tmp_path, check_attention=attention_check).modes["a"]
    assert tuned.attention == "split" and plain.attention == "default"
    assert tuned.fingerprint() != plain.fingerprint()  # the cache keeps them apart
    assert tuned.describe()["vae_tiling"] == {"tile_size": 512, "overlap": 64}
    assert plain.describe()["vae_tiling"] is None


def test_a_model_may_be_a_diffusers_folder_but_not_any_folder(tmp_path, root):
    (root / "sd" / "folder" / "unet").mkdir(parents=True)
    (root / "sd" / "folder" / "model_index.json").write_text("{}")
    (root / "sd" / "plain").mkdir()
    spec = load(mode(root, "").replace("sd/a.safetensors", "sd/folder"), tmp_path).modes["a"]
    assert spec.model_file == str((root / "sd" / "folder").resolve())
    (problem,) = errors(mode(root, "").replace("sd/a.safetensors", "sd/plain"), tmp_path)
    assert "is a folder without model_index.json" in problem.message and "diffusers-format folder" in problem.message
    (problem,) = errors(mode(root, "weight_dtype: fp8_e4m3fn").replace("sd/a.safetensors", "sd/folder"), tmp_path)
    assert "does not apply to a diffusers folder" in problem.message
