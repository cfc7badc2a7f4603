"""The GPU check rehearsed on this CPU-only machine (``make gpu-check GPU_CHECK_DRY_RUN=1``), so that
the one run on a lent GPU machine does not fail on something a CPU could have found: the kit is
built (its wheels downloaded once per pin set, then cached) and within its size limit, a fresh
environment installs the kit's wheels offline over a stand-in for the GPU machine's packages, the
models are generated, the GPU tests report themselves skipped for want of CUDA, the probes and the
benchmark run on the CPU, and the summary files say all of it. About a minute on a 2-core VM."""
import json
import shutil
import subprocess
import sys

import pytest

import gpu_check
import gpu_kit
import hostenv

MiB = 2**20


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
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
        "kit", "environment", "host import", "models", "GPU tests", "probes on the CPU", "benchmark, DiT d1"]
    assert all(step["status"] == "ok" for step in summary["steps"]), summary["steps"]
    assert summary["check"]["seconds"] < gpu_check.BUDGET_S


def test_the_kit_is_within_its_size_limit_and_verifies(dry_run):
    manifest = gpu_kit.verify(dry_run["kit"])
    assert manifest["bytes"] <= gpu_kit.KIT_LIMIT_BYTES
    assert sorted(name for name in manifest["files"] if name.startswith("wheels/")) == sorted(
        f"wheels/{path.name}" for path in (dry_run["kit"] / "wheels").glob("*.whl"))


def test_the_environment_took_the_kits_wheels_over_a_stand_in_that_lacks_them(dry_run):
    environment = dry_run["summary"]["figures"]["environment"]
    pins = dict(pin.split("==") for pin in gpu_kit.read_pins_text(hostenv.REPO_ROOT / gpu_kit.PINS_FILE))
    assert environment["kit"] == pins
    # The stand-in for the GPU machine's packages must not hold them itself, or a wheel missing
    # from the kit would go unnoticed here.
    stand_in = hostenv.python_in(dry_run["work"] / "device-python")
    for module in ("av", "torchsde", "gguf", "watchdog"):
        found = subprocess.run([str(stand_in), "-c", f"import {module}"], capture_output=True, text=True)
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, f"the stand-in has {module}"
    assert subprocess.run([str(stand_in), "-c", "import torch, transformers, pytest"]).returncode == 0


def test_every_gpu_test_reports_itself_skipped_for_want_of_cuda(dry_run):
    tests = dry_run["summary"]["tests"]
    files = {test["id"].split("::")[0].replace(".", "/") + ".py" for test in tests}
    assert files == set(gpu_check.GPU_TEST_FILES)
    assert len(tests) >= 20 and all(test["outcome"] == "skipped" and test["message"].startswith(gpu_check.NO_CUDA)
                                    for test in tests)


def test_the_models_probes_and_benchmark_left_their_figures(dry_run):
    figures = dry_run["summary"]["figures"]
    assert set(figures["models"]) == {"distorch-test-unet-d8.safetensors", "distorch-test-dit-d1.safetensors"}
    assert figures["split_probe"]["shares"]["50"]["placed_by_device"] == figures["split_probe"]["shares"]["50"][
        "planned_by_device"]
    assert figures["stream_probe"]["on"]["finite"] is True
    bench = figures["bench"]["dit-d1"]
    assert bench["gpu"] is None and bench["skipped"] == "no CUDA device" and bench["cpu"]["ratio"] > 0


def test_the_markdown_summary_says_nothing_was_measured_on_a_gpu(dry_run):
    text = (dry_run["out"] / gpu_check.SUMMARY_MD).read_text()
    assert text.startswith("# GPU check") and "DRY RUN on a CPU-only machine: nothing CUDA ran" in text
    assert "GPU rows: not measured (no CUDA device)." in text
    assert (dry_run["out"] / gpu_check.LOG_NAME).stat().st_size > 0
    assert text in dry_run["result"].stdout, "the summary is printed last, for a reply that carries only the output"
