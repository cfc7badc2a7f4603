"""The GPU check's own logic (tools/gpu_check.py, tools/gpu_kit.py, tools/device_site.py,
tests/host/gpu_host.py) without running it: what it runs, how it reads pytest's results, its
budget, its summary, the kit's pins and manifest, how a probe asks for DynamicVRAM.
tests/host/test_gpu_check_dry_run.py runs the whole check on the CPU."""
import json
import re
import tarfile

import pytest

import device_site
import gpu_check
import gpu_kit
import hostenv

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.unit.test_memory_gpu" name="test_a" time="0.5" />
<testcase classname="tests.host.test_split_gpu" name="test_b[25]" time="0.01">
  <skipped type="pytest.skip" message="no CUDA device (torch.cuda.is_available() is False)">skip</skipped></testcase>
<testcase classname="tests.host.test_split_gpu" name="test_c" time="3.2">
  <failure message="AssertionError: peak 900.0 MiB &gt; compute share&#10;second line">trace</failure></testcase>
<testcase classname="tests.host.test_split_gpu" name="test_d" time="0"><error message="fixture failed" /></testcase>
</testsuite></testsuites>"""


def test_every_file_with_a_gpu_test_is_run_by_the_check():
    tests = (hostenv.REPO_ROOT / "tests").rglob("test_*.py")
    marked = sorted(str(path.relative_to(hostenv.REPO_ROOT)) for path in tests
                    if re.search(r"pytest\.mark\.gpu\b", path.read_text()))
    assert marked == sorted(gpu_check.GPU_TEST_FILES)


def test_junit_results_become_one_line_per_test():
    tests = gpu_check.parse_junit(JUNIT)
    assert [(t["id"], t["outcome"]) for t in tests] == [
        ("tests.unit.test_memory_gpu::test_a", "passed"), ("tests.host.test_split_gpu::test_b[25]", "skipped"),
        ("tests.host.test_split_gpu::test_c", "failed"), ("tests.host.test_split_gpu::test_d", "error")]
    assert tests[1]["message"].startswith(gpu_check.NO_CUDA)
    assert tests[2]["message"] == "AssertionError: peak 900.0 MiB > compute share" and tests[2]["seconds"] == 3.2


def test_a_failed_or_errored_test_fails_the_check_in_both_modes():
    tests = gpu_check.parse_junit(JUNIT)
    for dry_run in (False, True):
        passed, text = gpu_check.tests_verdict(tests, dry_run)
        assert not passed and "1 failed" in text and "1 error" in text


def test_a_run_that_asked_for_dynamic_vram_fails_where_a_test_skipped_for_want_of_it():
    passed = {"id": "a", "outcome": "passed", "seconds": 0, "message": ""}
    off = {"id": "d", "outcome": "skipped", "seconds": 0,
           "message": "DynamicVRAM is off in this run: DISTORCH_DYNAMIC_VRAM is not 'on'"}
    assert gpu_check.tests_verdict([passed, off], dry_run=False)[0], "another run: the skip is expected"
    passed_check, text = gpu_check.tests_verdict([passed, off], dry_run=False, dynamic_expected=True)
    assert not passed_check and "DynamicVRAM was asked for" in text and text.endswith(": d")


def test_the_check_runs_the_tests_on_both_hosts_dynamic_vram_on_and_off():
    assert [(run.host, run.dynamic_vram) for run in gpu_check.TEST_RUNS] == [
        (hostenv.FLOOR_HOST, None), (hostenv.CURRENT_HOST, "on"), (hostenv.CURRENT_HOST, "off")]
    assert len({run.key for run in gpu_check.TEST_RUNS}) == 3
    assert gpu_check.TEST_RUNS[1].label == "0.33.0, DynamicVRAM on"


def test_a_dry_run_passes_only_when_the_gpu_tests_skip_for_want_of_cuda():
    passed = {"id": "a", "outcome": "passed", "seconds": 0, "message": ""}
    no_cuda = {"id": "b", "outcome": "skipped", "seconds": 0, "message": "no CUDA device (...)"}
    other = {"id": "c", "outcome": "skipped", "seconds": 0, "message": "needs two CUDA devices, this machine has 1"}
    assert gpu_check.tests_verdict([passed, no_cuda], dry_run=True)[0]
    assert not gpu_check.tests_verdict([passed, no_cuda, other], dry_run=True)[0]
    assert not gpu_check.tests_verdict([passed], dry_run=True)[0], "a dry run where no GPU test skipped"
    assert gpu_check.tests_verdict([passed, other], dry_run=False)[0]  # on one GPU the two-GPU test skips
    assert not gpu_check.tests_verdict([], dry_run=False)[0]


def test_steps_run_within_the_budget():
    assert gpu_check.step_timeout(120, 400) == 120
    assert gpu_check.step_timeout(120, 60) == 60 - gpu_check.SUMMARY_RESERVE_S
    assert gpu_check.step_timeout(120, gpu_check.MIN_STEP_S) is None


def test_the_split_report_keeps_latent_differences_not_latents():
    report = {"device": "cuda:0", "shares": {"0": {"latent": [1.0, 2.0], "repeat_latent": [1.0, 2.5], "peak": 5},
                                              "50": {"latent": [1.0, 1.75], "peak": 3}}}
    slim = gpu_check.latent_diffs(report)
    assert slim["shares"]["50"] == {"peak": 3, "latent_max_abs_diff_vs_unsplit": 0.25}
    assert slim["shares"]["0"]["unsplit_repeat_max_abs_diff"] == 0.5 and "latent" not in slim["shares"]["0"]


def summary(dry_run: bool, gpu_rows=None) -> dict:
    bench = {"targets": {"vs_limit": 1.15, "vs_lowvram": 1.0}, "cpu": None, "gpu": None, "skipped": "no CUDA device"}
    if gpu_rows is not None:
        bench["gpu"] = {"model": "distorch-test-dit-d3.safetensors", "model_bytes": 3 << 30, "steps": 4, "size": 1024,
                        "bandwidth_bytes_per_s": 50e9, "full_step_s": 0.05, "rows": gpu_rows}
    tests = [{"id": "t::a", "outcome": "skipped", "seconds": 0, "message": "no CUDA device"}]
    runs = [{"key": run.key, "label": run.label, "tests": tests, "verdict": "1 skipped", "probes": {}}
            for run in gpu_check.TEST_RUNS]
    return {"check": {"started": "now", "dry_run": dry_run, "budget_s": 480, "seconds": 61.0},
            "verdict": "PASS", "steps": [{"name": "kit", "status": "ok", "seconds": 0.1, "detail": "40.8 MiB"}],
            "runs": runs, "figures": {"bench": {"dit-d3": bench}}}


def test_the_markdown_says_a_dry_run_measured_nothing_on_a_gpu():
    text = gpu_check.render_markdown(summary(dry_run=True))
    assert "DRY RUN" in text and "nothing CUDA ran" in text
    assert "GPU rows: not measured (no CUDA device)" in text
    assert "| t::a | skipped | 0.0 | no CUDA device |" in text
    for heading in ("## GPU tests, ComfyUI 0.3.75: 1 skipped", "## GPU tests, ComfyUI 0.33.0, DynamicVRAM on: ",
                    "## GPU tests, ComfyUI 0.33.0, DynamicVRAM off: "):
        assert heading in text


def test_the_markdown_shows_the_dynamic_vram_probes_figures():
    data = summary(dry_run=False)
    data["runs"][1]["probes"] = {"dynamic_probe": {
        "device": "cuda:0", "dynamic_vram": True,
        "loads": {"kept": {"class": "ModelPatcherDynamic"}, "flagged": {"class": "ModelPatcherDynamic"}},
        "memory_report": {"devices": {"cuda:0": 3 * 2**30}, "device_used_delta": 3 * 2**30 + 2**20},
        "free_memory_for_dynamic": {"kept_after": True, "flagged_after": True},
        "free_flow": {"mode": "selective", "kept_after": True, "flagged_after": False},
        "model_unload": {"kept_after": False, "flagged_after": True,
                         "kept_report_devices_before": {"cuda:0": 2**30}, "device_freed": 2**30},
        "split": {"class": "DisTorchModelPatcher", "static_copies": 1, "placed_by_device": {"cpu": 1},
                  "planned_by_device": {"cpu": 1}, "donors": {"tensors": 4, "pinned": 4}}}}
    text = gpu_check.render_markdown(data)
    assert "### DynamicVRAM probe (test DiT kept, test UNet flagged), ComfyUI 0.33.0, DynamicVRAM on" in text
    assert "| plain loads' class (kept / flagged) | ModelPatcherDynamic / ModelPatcherDynamic |" in text
    assert "| split: class, static copies made | DisTorchModelPatcher, 1 |" in text
    assert "| memory report: kept model's MiB on cuda:0 | 3072.0 |" in text
    assert "| cuda:0 use the unload gave back (MiB) | 1024.0 |" in text


def test_the_markdown_shows_each_gpu_row_against_its_targets():
    rows = [{"offload_pct": 50, "offloaded_bytes": 1 << 30, "limit_s": 0.05, "split_s": 0.055, "vs_limit": 1.1,
             "lowvram_s": 0.06, "vs_lowvram": 0.917, "meets_targets": True},
            {"offload_pct": 90, "offloaded_bytes": 2 << 30, "limit_s": 0.05, "split_s": 0.07, "vs_limit": 1.4,
             "lowvram_s": 0.06, "vs_lowvram": 1.167, "meets_targets": False},
            {"offload_pct": 25, "error": "cannot hold", "meets_targets": False}]
    text = gpu_check.render_markdown(summary(dry_run=False, gpu_rows=rows))
    assert "mode: GPU run" in text and "50.0 GB/s" in text
    assert "| 50 | 1.00 | 0.0500 | 0.0550 | 1.100 | 0.0600 | 0.917 | meets both |" in text
    assert "| 90 | 2.00 | 0.0500 | 0.0700 | 1.400 | 0.0600 | 1.167 | MISSES |" in text
    assert "plan impossible: cannot hold" in text


def test_the_machines_python_lends_its_package_folders_not_its_standard_library(tmp_path):
    import subprocess
    import sys

    folders = json.loads(subprocess.run([sys.executable, "-c", gpu_check.parent_site_dirs_script()], cwd=tmp_path,
                                        capture_output=True, text=True, check=True).stdout)
    assert any("site-packages" in folder for folder in folders)
    assert not any(folder.endswith(("lib-dynload", "python3.11", "python3.12")) for folder in folders)


# -- the kit -------------------------------------------------------------------------------------------

def test_kit_pins_must_be_exact():
    assert gpu_kit.read_pins("av==18.1.0  # why\n\n# comment\ngguf==0.19.0\n") == [
        gpu_kit.Pin("av", "18.1.0"), gpu_kit.Pin("gguf", "0.19.0")]
    for bad in ("av>=18", "av", "av==18.*", "av==1.0; python_version>'3'", "pure"):
        with pytest.raises(gpu_kit.KitError, match="not an exact pin"):
            gpu_kit.read_pins(bad)


def test_a_pure_pin_asks_for_the_pure_python_wheel_and_nothing_else_may_follow_a_pin():
    pins = gpu_kit.read_pins("comfy-kitchen==0.2.31 pure   # the compiled kernels stay behind\nav==18.1.0\n")
    assert pins == [gpu_kit.Pin("comfy-kitchen", "0.2.31", pure=True), gpu_kit.Pin("av", "18.1.0")]
    assert pins[0].requirement == "comfy-kitchen==0.2.31"
    for bad in ("av==18.1.0 compiled", "av==18.1.0 pure pure", "av==18.1.0 --pure"):
        with pytest.raises(gpu_kit.KitError, match=r"x.txt line 2: .* only 'pure' may follow a pin"):
            gpu_kit.read_pins(f"gguf==0.19.0\n{bad}\n", "x.txt")


def test_a_pure_pin_takes_only_its_pure_wheel(tmp_path):
    compiled = "comfy_kitchen-0.2.31-cp312-cp312-manylinux_2_28_x86_64.whl"
    pure = "comfy_kitchen-0.2.31-py3-none-any.whl"
    assert gpu_kit.is_pure_wheel(pure) and not gpu_kit.is_pure_wheel(compiled)
    assert not gpu_kit.is_pure_wheel("watchdog-7.1.0-py3-none-manylinux_2_17_x86_64.whl")
    (tmp_path / compiled).write_bytes(b"")
    with pytest.raises(gpu_kit.KitError, match="one pure-Python wheel of comfy-kitchen==0.2.31"):
        gpu_kit.wheel_for(gpu_kit.Pin("comfy-kitchen", "0.2.31", pure=True), tmp_path)
    assert gpu_kit.wheel_for(gpu_kit.Pin("comfy-kitchen", "0.2.31"), tmp_path).name == compiled
    (tmp_path / pure).write_bytes(b"")
    assert gpu_kit.wheel_for(gpu_kit.Pin("comfy-kitchen", "0.2.31", pure=True), tmp_path).name == pure


def test_the_kits_pins_are_not_what_the_machine_already_has():
    device = gpu_kit.read_names((hostenv.REPO_ROOT / gpu_kit.DEVICE_PACKAGES_FILE).read_text())
    assert {"torch", "torchvision", "transformers", "pytest", "nvidia-ml-py"} <= device
    for part in gpu_kit.HOST_PARTS:
        pins = gpu_kit.read_pins((hostenv.REPO_ROOT / part.pins_file).read_text(), part.pins_file)
        assert pins and not {gpu_kit.canonical_name(pin.name) for pin in pins} & device, part.pins_file


def test_the_current_hosts_pins_carry_dynamic_vram_and_comfy_kitchens_pure_wheel():
    pins = {pin.name: pin for pin in gpu_kit.read_pins((hostenv.REPO_ROOT / gpu_kit.CURRENT_PINS_FILE).read_text())}
    assert pins["comfy-aimdo"] == gpu_kit.Pin("comfy-aimdo", "0.4.13")
    assert pins["comfy-kitchen"] == gpu_kit.Pin("comfy-kitchen", "0.2.31", pure=True)
    # As 0.33.0's requirements.txt pins them.
    requirements = hostenv.host_tree(hostenv.CURRENT_HOST) / "requirements.txt"
    if requirements.is_file():
        text = requirements.read_text()
        assert all(f"{pin.requirement}\n" in text for pin in pins.values())


def test_the_kit_and_the_working_tree_fit_what_a_device_run_carries():
    gpu_kit.check_carry(60 * gpu_kit.MiB, 4 * gpu_kit.MiB)
    with pytest.raises(gpu_kit.KitError, match="over its 60 MiB limit"):
        gpu_kit.check_carry(60 * gpu_kit.MiB + 1, 0)
    with pytest.raises(gpu_kit.KitError, match="over the 64 MiB a device run carries"):
        gpu_kit.check_carry(59 * gpu_kit.MiB, 6 * gpu_kit.MiB)


def test_wheel_names_match_their_pin():
    assert gpu_kit.wheel_name_matches("av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl", "av", "18.1.0")
    assert gpu_kit.wheel_name_matches("nvidia_ml_py-12.0-py3-none-any.whl", "nvidia-ml-py", "12.0")
    assert not gpu_kit.wheel_name_matches("av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl", "av", "18.1")
    assert not gpu_kit.wheel_name_matches("avx-18.1.0-py3-none-any.whl", "av", "18.1.0")


def test_the_comfyui_archive_depends_only_on_names_and_contents(tmp_path):
    tree = tmp_path / "comfyui-x"
    (tree / "comfy" / "__pycache__").mkdir(parents=True)
    (tree / "main.py").write_text("print(1)\n")
    (tree / "comfy" / "sd.py").write_text("x = 1\n")
    (tree / "comfy" / "__pycache__" / "sd.cpython-311.pyc").write_bytes(b"\0")
    gpu_kit.archive_tree(tree, tmp_path / "a.tar.gz")
    (tree / "main.py").touch()  # a new timestamp, the same contents
    gpu_kit.archive_tree(tree, tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.gz") as archive:
        assert archive.getnames() == ["comfyui-x/main.py", "comfyui-x/comfy/sd.py"]


def fake_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    (repo / gpu_kit.PINS_FILE).write_text("av==18.1.0\n")
    (repo / gpu_kit.CURRENT_PINS_FILE).write_text("comfy-kitchen==0.2.31 pure\n")
    (repo / "pack.py").write_text("x = 1\n")
    return repo


def fake_kit(tmp_path, payload=b"wheel"):
    repo = fake_repo(tmp_path)
    kit = tmp_path / "kit"
    wheel = kit / "wheels" / "av-18.1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(payload)
    manifest = {"format": gpu_kit.KIT_FORMAT, "hosts": {}, "pins_digest": gpu_kit.repo_pins_digest(repo),
                "files": {"wheels/av-18.1.0-py3-none-any.whl": {"bytes": len(payload),
                                                                "sha256": hostenv.file_sha256(wheel)}},
                "pack": {"commit": "abc", "files": ["pack.py"], "digest": gpu_kit.files_digest(repo, ["pack.py"])}}
    (kit / gpu_kit.MANIFEST_NAME).write_text(json.dumps(manifest))
    return repo, kit


def test_a_complete_kit_verifies_and_says_whether_the_pack_changed(tmp_path):
    repo, kit = fake_kit(tmp_path)
    assert gpu_kit.verify(kit, repo)["pack_matches"] is True
    (repo / "pack.py").write_text("x = 2\n")
    assert gpu_kit.verify(kit, repo)["pack_matches"] is False


def test_a_changed_wheel_or_other_pins_fail_verification(tmp_path):
    repo, kit = fake_kit(tmp_path)
    (kit / "wheels" / "av-18.1.0-py3-none-any.whl").write_bytes(b"wheeL")
    with pytest.raises(gpu_kit.KitError, match="differs from the kit's record"):
        gpu_kit.verify(kit, repo)
    for pins_file in (gpu_kit.PINS_FILE, gpu_kit.CURRENT_PINS_FILE):
        repo, kit = fake_kit(tmp_path / pins_file.replace("/", "-"))
        (repo / pins_file).write_text("av==18.2.0\n")
        with pytest.raises(gpu_kit.KitError, match="other pins"):
            gpu_kit.verify(kit, repo)
    with pytest.raises(gpu_kit.KitError, match="make gpu-kit"):
        gpu_kit.verify(tmp_path / "nowhere", repo)


def built_kit_inputs(tmp_path, monkeypatch):
    """A repository, a floor tree and a current tarball for build(), the wheels 'downloaded' already."""
    repo = fake_repo(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "av-18.1.0-py3-none-any.whl").write_bytes(b"\0" * 4096)
    (wheels / "comfy_kitchen-0.2.31-py3-none-any.whl").write_bytes(b"\1" * 512)
    (wheels / "comfy_kitchen-0.2.31-cp312-cp312-manylinux_2_28_x86_64.whl").write_bytes(b"\2" * 8192)
    comfyui = tmp_path / "comfyui"
    comfyui.mkdir()
    (comfyui / "main.py").write_bytes(bytes(range(256)) * 64)
    tarball = tmp_path / "ComfyUI-current.tar.gz"
    tarball.write_bytes(b"\3" * 2048)
    monkeypatch.setattr(gpu_kit, "ensure_wheels", lambda python, pins, digest: wheels)
    return repo, comfyui, tarball


def test_a_kit_over_its_limit_is_refused_and_the_old_one_kept(tmp_path, monkeypatch):
    repo, comfyui, tarball = built_kit_inputs(tmp_path, monkeypatch)
    monkeypatch.setattr(gpu_kit, "KIT_LIMIT_BYTES", 1024)
    out = tmp_path / "kit"
    out.mkdir()
    (out / "old").write_text("kept")
    with pytest.raises(gpu_kit.KitError, match=r"over its 0 MiB limit: wheels/av-18.1.0-py3-none-any.whl"):
        gpu_kit.build(out, "python", repo, comfyui, tarball)
    assert (out / "old").read_text() == "kept" and not (tmp_path / "kit.partial").exists()
    monkeypatch.setattr(gpu_kit, "KIT_LIMIT_BYTES", 1 << 20)
    manifest = gpu_kit.build(out, "python", repo, comfyui, tarball)
    assert not (out / "old").exists() and gpu_kit.verify(out, repo)["bytes"] == manifest["bytes"]


def test_the_manifest_records_both_hosts_each_with_its_archive_and_wheels(tmp_path, monkeypatch):
    repo, comfyui, tarball = built_kit_inputs(tmp_path, monkeypatch)
    out = tmp_path / "kit"
    manifest = gpu_kit.build(out, "python", repo, comfyui, tarball)
    floor, current = (manifest["hosts"][version] for version in (hostenv.FLOOR_HOST, hostenv.CURRENT_HOST))
    assert floor == {"archive": "comfyui-0.3.75.tar.gz", "folder": "comfyui-0.3.75", "over": None,
                     "wheels": ["wheels/av-18.1.0-py3-none-any.whl"], "pins": ["av==18.1.0"]}
    assert current == {"archive": "comfyui-0.33.0.tar.gz", "folder": "ComfyUI-0.33.0", "over": "0.3.75",
                       "wheels": ["wheels-0.33.0/comfy_kitchen-0.2.31-py3-none-any.whl"],
                       "pins": ["comfy-kitchen==0.2.31 pure"]}
    assert (out / "comfyui-0.33.0.tar.gz").read_bytes() == tarball.read_bytes(), "the tarball is carried as it is"
    sizes = gpu_kit.host_bytes(json.loads((out / gpu_kit.MANIFEST_NAME).read_text()))
    assert sizes[hostenv.CURRENT_HOST] == {"archive": 2048, "wheels": 512}


def test_a_tarball_that_is_not_the_recorded_one_is_refused(tmp_path, monkeypatch):
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / hostenv.CURRENT_TARBALL_NAME).write_bytes(b"not comfyui")
    monkeypatch.setenv("DISTORCH_VENDOR", str(vendor))
    with pytest.raises(gpu_kit.KitError, match="not the recorded"):
        gpu_kit.current_tarball_checked()
    monkeypatch.setenv("DISTORCH_VENDOR", str(tmp_path / "nowhere"))
    with pytest.raises(gpu_kit.KitError, match="carries ComfyUI 0.33.0 too"):
        gpu_kit.current_tarball_checked()


# -- the machine's packages, stood in for in a dry run ---------------------------------------------------

def test_the_stand_in_follows_requirements_but_not_extras():
    class Dist:
        def __init__(self, *requires):
            self.requires = list(requires)

    installed = {"transformers": Dist("huggingface-hub>=1.0", "torch; extra == 'torch'", "tokenizers (>=0.22)"),
                 "huggingface-hub": Dist("httpx2; python_version >= '3.9'"), "httpx2": Dist(), "tokenizers": Dist(),
                 "torch": Dist(), "av": Dist()}
    assert device_site.closure({"transformers", "jax"}, installed) == {"transformers", "huggingface-hub", "httpx2",
                                                                        "tokenizers"}


# -- DynamicVRAM in the probes (tests/host/gpu_host.py) ----------------------------------------------------

def test_a_dynamic_vram_skip_is_one_the_check_recognises_and_names_why(tmp_path):
    import gpu_host

    assert gpu_host.DYNAMIC_VRAM_OFF.startswith(gpu_check.DYNAMIC_OFF)
    assert gpu_host.DYNAMIC_VRAM_VARIABLE == gpu_check.DYNAMIC_VRAM_VARIABLE
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "comfy").mkdir(parents=True)
    (old / "comfy" / "model_patcher.py").write_text("class ModelPatcher:\n    pass\n")
    (new / "comfy").mkdir(parents=True)
    (new / "comfy" / "model_patcher.py").write_text("class ModelPatcherDynamic(ModelPatcher):\n    pass\n")
    why = gpu_host.dynamic_vram_skip_reason(old, {"DISTORCH_DYNAMIC_VRAM": "on"})
    assert why.startswith(gpu_host.DYNAMIC_VRAM_OFF) and "has none" in why
    why = gpu_host.dynamic_vram_skip_reason(new, {"DISTORCH_DYNAMIC_VRAM": "off"})
    assert why.startswith(gpu_host.DYNAMIC_VRAM_OFF) and "is not 'on'" in why
    assert gpu_host.dynamic_vram_skip_reason(new, {}) is not None
    assert gpu_host.dynamic_vram_skip_reason(new, {"DISTORCH_DYNAMIC_VRAM": "on"}) is None
    with pytest.raises(gpu_host.HostStartError, match="use on or off"):
        gpu_host.dynamic_vram_requested({"DISTORCH_DYNAMIC_VRAM": "1"})


def test_the_probes_turn_dynamic_vram_on_as_the_current_hosts_main_py_does():
    """gpu_host repeats main.py's DynamicVRAM start-up: every step it repeats is still in main.py
    (a host whose start-up moved is refused before a probe runs with DynamicVRAM silently off)."""
    import gpu_host

    assert gpu_host.missing_main_steps("nothing") == list(gpu_host.MAIN_PY_STEPS)
    tree = hostenv.host_tree(hostenv.CURRENT_HOST)
    if not (tree / "main.py").is_file():
        pytest.skip(f"no ComfyUI {hostenv.CURRENT_HOST} tree at {tree} (make setup unpacks it)")
    assert gpu_host.missing_main_steps((tree / "main.py").read_text(encoding="utf-8")) == []
    assert gpu_host.host_has_dynamic_vram(tree)
    assert not gpu_host.host_has_dynamic_vram(hostenv.host_tree(hostenv.FLOOR_HOST))


# -- DISTORCH_REQUIRE_GPU ---------------------------------------------------------------------------------

def test_require_gpu_decides_between_skip_and_failure():
    import pytest_distorch

    assert pytest_distorch.gpu_verdict(True, "1") == ("run", "")
    assert pytest_distorch.gpu_verdict(False, None) == ("skip", pytest_distorch.NO_CUDA)
    assert pytest_distorch.gpu_verdict(False, "0") == ("skip", pytest_distorch.NO_CUDA)
    verdict, why = pytest_distorch.gpu_verdict(False, "1")
    assert verdict == "fail" and why.startswith(pytest_distorch.NO_CUDA) and "DISTORCH_REQUIRE_GPU=1" in why
    assert pytest_distorch.NO_CUDA.startswith(gpu_check.NO_CUDA)


def test_require_gpu_turns_the_no_cuda_skip_into_a_failure():
    import os
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the GPU tests run here instead of skipping")
    command = [sys.executable, "-m", "pytest", "tests/unit/test_memory_gpu.py", "-m", "gpu", "-q",
               "-p", "no:cacheprovider"]
    env = {k: v for k, v in os.environ.items() if k not in ("DISTORCH_REQUIRE_GPU", "DISTORCH_TIER", "DISTORCH_SHARD")}
    skipped = subprocess.run(command, cwd=hostenv.REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0 and "3 skipped" in skipped.stdout, skipped.stdout[-2000:]
    required = subprocess.run(command, cwd=hostenv.REPO_ROOT, env={**env, "DISTORCH_REQUIRE_GPU": "1"},
                              capture_output=True, text=True, timeout=300)
    assert required.returncode != 0 and "3 error" in required.stdout, required.stdout[-2000:]
    assert "DISTORCH_REQUIRE_GPU=1 requires one" in required.stdout
