"""The GPU check rehearsed on this CPU-only machine (``make gpu-check GPU_CHECK_DRY_RUN=1``), so that
the one run on a lent GPU machine does not fail on something a CPU could have found: the kit is
built for both hosts (its wheels downloaded once per pin set, then cached) and within its size
limit, a fresh environment installs the kit's wheels for ComfyUI 0.3.75 offline over a stand-in for
the GPU machine's packages and a second one, layered over it, those for 0.33.0, the models are
generated, the GPU tests report themselves skipped for want of CUDA in each of the three runs
(0.3.75; 0.33.0 with DynamicVRAM on and off), the probes run on the CPU on each host (the
DynamicVRAM probe with DynamicVRAM off: it needs a GPU), the benchmark runs on the CPU, and the
summary files say all of it. About three minutes on a 2-core VM."""
import json
import shutil
import subprocess
import sys

import pytest

import gpu_check
import gpu_kit
import hostenv

MiB = 2**20
RUNS = ["0.3.75", "0.33.0-dynamic-vram-on", "0.33.0-dynamic-vram-off"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    current = hostenv.python_in(hostenv.host_venv_dir(hostenv.CURRENT_HOST))
    if hostenv.current_tarball() is None or not current.exists():
        pytest.skip(f"the kit carries ComfyUI {hostenv.CURRENT_HOST} too: no {hostenv.CURRENT_TARBALL_NAME} in "
                    f"{hostenv.vendor_dir()} or no environment at {current} (make setup builds it from the tarball)")
    folder = tmp_path_factory.mktemp("gpu-check")
    kit, out, work = folder / "kit", folder / "out", folder / "work"
    built = subprocess.run([sys.executable, str(hostenv.REPO_ROOT / "tools" / "gpu_kit.py"), "build",
                            "--out", str(kit)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    result = subprocess.run(["make", "--no-print-directory", "gpu-check", "GPU_CHECK_DRY_RUN=1", f"OUT={out}",
                             f"GPU_CHECK_ARGS=--kit {kit} --work {work} --python {sys.executable}"],
                            cwd=hostenv.REPO_ROOT, capture_output=True, text=True, timeout=900)
    yield {"result": result, "kit": kit, "out": out, "work": work,
           "summary": json.loads((out / gpu_check.SUMMARY_JSON).read_text()) if (out / gpu_check.SUMMARY_JSON).is_file()
           else None}
    shutil.rmtree(work, ignore_errors=True)  # a gigabyte of generated models


def test_the_dry_run_passes_every_step(dry_run):
    result, summary = dry_run["result"], dry_run["summary"]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary["check"]["dry_run"] is True and summary["verdict"] == "PASS"
    assert [step["name"] for step in summary["steps"]] == [
        "kit", "environment (0.3.75)", "host import (0.3.75)", "models", "GPU tests (0.3.75)",
        "environment (0.33.0)", "host import (0.33.0)", "GPU tests (0.33.0, DynamicVRAM on)",
        "GPU tests (0.33.0, DynamicVRAM off)", "probes on the CPU (0.33.0)", "probes on the CPU (0.3.75)",
        "benchmark, DiT d1"]
    assert all(step["status"] == "ok" for step in summary["steps"]), summary["steps"]
    assert summary["check"]["seconds"] < gpu_check.BUDGET_S


def test_the_kit_is_within_its_size_limit_and_verifies(dry_run):
    manifest = gpu_kit.verify(dry_run["kit"])
    assert manifest["bytes"] <= gpu_kit.KIT_LIMIT_BYTES
    assert manifest["bytes"] + manifest["pack"]["bytes"] <= gpu_kit.CARRY_LIMIT_BYTES
    for version, host in manifest["hosts"].items():
        assert (dry_run["kit"] / host["archive"]).is_file(), f"ComfyUI {version}'s archive is missing"
        folder = (dry_run["kit"] / host["wheels"][0]).parent
        assert sorted(host["wheels"]) == sorted(f"{folder.name}/{path.name}" for path in folder.glob("*.whl"))
    assert hostenv.file_sha256(dry_run["kit"] / hostenv.CURRENT_TARBALL_NAME) == hostenv.CURRENT_TARBALL_SHA256
    assert any(name.endswith("comfy_kitchen-0.2.31-py3-none-any.whl")
               for name in manifest["hosts"][hostenv.CURRENT_HOST]["wheels"]), "not the pure comfy-kitchen wheel"


def test_the_environment_took_the_kits_wheels_over_a_stand_in_that_lacks_them(dry_run):
    environment = dry_run["summary"]["figures"]["environment"]
    pins = dict(pin.split("==") for pin in gpu_kit.read_pins_text(hostenv.REPO_ROOT / gpu_kit.PINS_FILE))
    assert environment["kit"] == pins
    current = dict(pin.split("==") for pin in gpu_kit.read_pins_text(hostenv.REPO_ROOT / gpu_kit.CURRENT_PINS_FILE))
    assert environment["hosts"][hostenv.CURRENT_HOST]["kit"] == current
    # The stand-in for the GPU machine's packages must not hold them itself, or a wheel missing
    # from the kit would go unnoticed here.
    stand_in = hostenv.python_in(dry_run["work"] / "device-python")
    for module in ("av", "torchsde", "gguf", "watchdog", "comfy_aimdo", "comfy_kitchen"):
        found = subprocess.run([str(stand_in), "-c", f"import {module}"], capture_output=True, text=True)
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, f"the stand-in has {module}"
    assert subprocess.run([str(stand_in), "-c", "import torch, torchaudio, transformers, pytest"]).returncode == 0


def test_the_current_hosts_environment_is_layered_and_takes_comfy_kitchens_pure_wheel(dry_run):
    python = hostenv.python_in(dry_run["work"] / f"venv-{hostenv.CURRENT_HOST}")
    script = ("import comfy_kitchen, comfy_aimdo, av, importlib.metadata as md; print(comfy_kitchen.__file__); "
              "print([line for line in md.distribution('comfy-kitchen').read_text('WHEEL').splitlines() "
              "if line.startswith('Tag:')])")
    found = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    where, tags = found.stdout.splitlines()
    assert where.startswith(str(dry_run["work"] / f"venv-{hostenv.CURRENT_HOST}")) and "py3-none-any" in tags


def test_every_gpu_test_reports_itself_skipped_for_want_of_cuda_in_each_run(dry_run):
    runs = {run["key"]: run for run in dry_run["summary"]["runs"]}
    assert list(runs) == RUNS
    for key, run in runs.items():
        tests = run["tests"]
        files = {test["id"].split("::")[0].replace(".", "/") + ".py" for test in tests}
        assert files == set(gpu_check.GPU_TEST_FILES), key
        assert len(tests) >= 30 and all(test["outcome"] == "skipped" and test["message"].startswith(gpu_check.NO_CUDA)
                                        for test in tests), key


def test_the_models_probes_and_benchmark_left_their_figures(dry_run):
    figures = dry_run["summary"]["figures"]
    assert set(figures["models"]) == {"distorch-test-unet-d8.safetensors", "distorch-test-dit-d1.safetensors"}
    floor = figures["cpu_probes"][hostenv.FLOOR_HOST]
    assert floor["split_probe"]["shares"]["50"]["placed_by_device"] == floor["split_probe"]["shares"]["50"][
        "planned_by_device"]
    assert floor["stream_probe"]["on"]["finite"] is True
    bench = figures["bench"]["dit-d1"]
    assert bench["gpu"] is None and bench["skipped"] == "no CUDA device" and bench["cpu"]["ratio"] > 0


def test_the_dynamic_vram_probe_ran_its_sequence_on_the_cpu_with_dynamic_vram_off(dry_run):
    """On the CPU DynamicVRAM cannot be on: the probe's loads are plain ModelPatchers (CPU stand-ins
    for the GPU run's ModelPatcherDynamic), but every step of its sequence ran."""
    probe = dry_run["summary"]["figures"]["cpu_probes"][hostenv.CURRENT_HOST]["dynamic_probe"]
    assert probe["dynamic_vram"] is False and probe["aimdo_enabled"] is False
    assert probe["loads"]["kept"]["class"] == "ModelPatcher" and probe["loads"]["kept"]["keep_loaded"] is True
    assert probe["free_flow"]["mode"] == "selective" and probe["free_flow"]["kept_after"] is True
    assert probe["free_flow"]["flagged_after"] is False
    assert probe["model_unload"]["mode"] == "model" and probe["model_unload"]["kept_after"] is False
    assert probe["model_unload"]["flagged_after"] is True
    split = probe["split"]
    assert split["class"] == "DisTorchModelPatcher" and split["static_copies"] == 0
    assert split["placed_by_device"] == split["planned_by_device"]


def test_the_markdown_summary_says_nothing_was_measured_on_a_gpu(dry_run):
    text = (dry_run["out"] / gpu_check.SUMMARY_MD).read_text()
    assert text.startswith("# GPU check") and "DRY RUN on a CPU-only machine: nothing CUDA ran" in text
    assert "GPU rows: not measured (no CUDA device)." in text
    assert "## GPU tests, ComfyUI 0.33.0, DynamicVRAM on: " in text
    assert "### DynamicVRAM probe (test DiT kept, test UNet flagged), ComfyUI 0.33.0, CPU" in text
    assert (dry_run["out"] / gpu_check.LOG_NAME).stat().st_size > 0
    assert text in dry_run["result"].stdout, "the summary is printed last, for a reply that carries only the output"
