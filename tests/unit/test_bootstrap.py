"""Set-up's decisions (which environment, which pip runs) and its progress lines, without network
or pip: tools/bootstrap.py and tools/hostenv.py are standard-library only and run here as they are."""
import itertools
import time
import urllib.error
from pathlib import Path

import pytest

import bootstrap
import hostenv
from hostenv import CPU, FULL

ROOT = Path(__file__).resolve().parents[2]
INDEX = "https://cpu.example/whl/cpu"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache: no environment built; DISTORCH_* choices unset."""
    for name in ("DISTORCH_VENV", "DISTORCH_CPU_VENV", "DISTORCH_TORCH", "DISTORCH_TORCH_INDEX", "DISTORCH_HOST",
                 "DISTORCH_CURRENT_VENV", "COMFYUI_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISTORCH_CACHE", str(tmp_path))
    return tmp_path


def build(kind):
    """Leave what a finished install leaves: the python and the digest stamp."""
    venv = hostenv.environment_dir(kind)
    python = hostenv.python_in(venv)
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text("")
    (venv / hostenv.STAMP_NAME).write_text(hostenv.environment_digest(kind) + "\n")


# -- progress lines --------------------------------------------------------------------------------

@pytest.mark.parametrize("count, text", [
    (0, "0 B"), (999, "999 B"), (1500, "1.5 KB"), (999_999, "1.0 MB"), (24_104_239, "24 MB"),
    (950_000_000, "950 MB"), (2_158_271_804, "2.2 GB"), (6_590_033_222, "6.6 GB"), (12_400_000_000, "12 GB"),
])
def test_sizes_in_decimal_units_as_pip_shows_them(count, text):
    assert bootstrap.format_bytes(count) == text


@pytest.mark.parametrize("seconds, text", [
    (0.04, "0.0 s"), (4.24, "4.2 s"), (9.96, "10 s"), (42.4, "42 s"), (59.6, "1 min 0 s"), (151, "2 min 31 s"),
    (3599.6, "1 h 00 min"), (3 * 3600 + 5 * 60 + 7, "3 h 05 min"),
])
def test_durations(seconds, text):
    assert bootstrap.format_duration(seconds) == text


def test_step_line_names_the_step_its_place_and_what_happened():
    assert bootstrap.step_line(1, 3, "environment", "ready in 2 min 31 s (6.6 GB)") == (
        "1/3 environment: ready in 2 min 31 s (6.6 GB)")
    assert bootstrap.file_count(1) == "1 file" and bootstrap.file_count(13) == "13 files"


def test_fallback_line_says_why_what_instead_and_how_to_change_it():
    line = bootstrap.fallback_line(f"cannot reach {INDEX}/torch/: Name or service not known", Path("/c/venv"))
    assert "\n" not in line
    for part in ("Name or service not known", "PyPI's torch in /c/venv", "DISTORCH_TORCH_INDEX"):
        assert part in line


# -- which environment -----------------------------------------------------------------------------

def plan(*, run=True, gpu=False, torch="", full_exists=False, cpu_ready=False, reachable=True):
    asked = []

    def probe():
        asked.append(True)
        return (True, "") if reachable else (False, "cannot reach it")

    chosen = bootstrap.plan_environment(run=run, gpu=gpu, torch=torch, full_exists=full_exists,
                                        cpu_ready=cpu_ready, probe_cpu_index=probe)
    return chosen, bool(asked)


def test_tests_always_get_the_full_environment_and_never_probe():
    for gpu, torch, full_exists, cpu_ready in itertools.product((False, True), ("", "cpu", "cuda"), (False, True),
                                                                (False, True)):
        assert plan(run=False, gpu=gpu, torch=torch, full_exists=full_exists, cpu_ready=cpu_ready,
                    reachable=False) == (bootstrap.EnvironmentPlan(FULL), False)


def test_run_on_a_fresh_machine_builds_the_cpu_environment():
    assert plan() == (bootstrap.EnvironmentPlan(CPU), True)


def test_run_falls_back_to_the_full_environment_when_the_cpu_index_is_unreachable():
    chosen, probed = plan(reachable=False)
    assert probed and chosen.kind == FULL and chosen.fallback == "cannot reach it"


def test_run_reuses_the_tests_environment_rather_than_building_a_second():
    assert plan(full_exists=True, reachable=False) == (bootstrap.EnvironmentPlan(FULL, reused=True), False)


def test_run_keeps_a_cpu_environment_it_built_without_asking_the_network():
    for full_exists in (False, True):
        assert plan(full_exists=full_exists, cpu_ready=True, reachable=False) == (bootstrap.EnvironmentPlan(CPU), False)


@pytest.mark.parametrize("gpu, torch", [(True, ""), (False, "cuda"), (True, "cpu")])
def test_gpu_and_cuda_choice_take_the_full_environment(gpu, torch):
    assert plan(gpu=gpu, torch=torch, cpu_ready=True) == (bootstrap.EnvironmentPlan(FULL), False)


def test_torch_cpu_builds_the_cpu_environment_even_beside_the_full_one():
    assert plan(torch="cpu", full_exists=True) == (bootstrap.EnvironmentPlan(CPU), True)
    chosen, _ = plan(torch="cpu", full_exists=True, reachable=False)
    assert chosen.kind == FULL and chosen.fallback


def test_make_run_runs_in_the_environment_set_up_made_ready():
    """hostenv.run_environment (the Makefile's `python --run`) agrees with what bootstrap built,
    in every case, fallbacks included."""
    for gpu, torch, full_exists, cpu_ready, reachable in itertools.product(
            (False, True), ("", "cpu", "cuda"), (False, True), (False, True), (False, True)):
        chosen, _ = plan(gpu=gpu, torch=torch, full_exists=full_exists, cpu_ready=cpu_ready, reachable=reachable)
        after = dict(full_exists=full_exists or chosen.kind == FULL, cpu_ready=cpu_ready or chosen.kind == CPU)
        assert hostenv.run_environment(gpu=gpu, torch=torch, **after) == chosen.kind


def test_torch_choice_refuses_an_unknown_build(monkeypatch):
    monkeypatch.setenv("DISTORCH_TORCH", "rocm")
    with pytest.raises(SystemExit, match="DISTORCH_TORCH='rocm'.*cpu or cuda"):
        hostenv.torch_choice()
    monkeypatch.setenv("DISTORCH_TORCH", " CUDA ")
    assert hostenv.torch_choice() == "cuda"


# -- which pip runs --------------------------------------------------------------------------------

FILES = [Path("/r/tools/requirements-host.txt"), Path("/r/requirements.txt")]
PINS = ["torch==2.15.0", "torchvision==0.29.2"]


def test_full_environment_is_one_pip_run_from_the_usual_index_with_progress_shown():
    assert bootstrap.pip_install_commands(Path("/v/bin/python"), FULL, FILES, PINS, INDEX) == [
        ["/v/bin/python", "-m", "pip", "install", "--disable-pip-version-check",
         "-r", "/r/tools/requirements-host.txt", "-r", "/r/requirements.txt"]]


def test_cpu_environment_takes_torch_alone_from_the_cpu_index_then_the_rest():
    first, rest = bootstrap.pip_install_commands(Path("/v/bin/python"), CPU, FILES, PINS, INDEX)
    assert first == ["/v/bin/python", "-m", "pip", "install", "--disable-pip-version-check",
                     "--index-url", INDEX, "torch==2.15.0", "torchvision==0.29.2"]
    assert rest == bootstrap.pip_install_commands(Path("/v/bin/python"), FULL, FILES, PINS, INDEX)[0]
    assert "-q" not in first + rest


def test_torch_pins_are_read_from_the_requirements():
    text = "# host\ntorch==2.15.0  # the build\ntorchsde\ntorchvision>=0.29 ; sys_platform != 'win32'\neinops\n"
    assert bootstrap.torch_pins(text) == ["torch==2.15.0", "torchvision>=0.29 ; sys_platform != 'win32'"]
    real = bootstrap.torch_pins((ROOT / hostenv.REQUIREMENT_FILES[0]).read_text())
    assert sorted(pin.split("==")[0] for pin in real) == ["torch", "torchvision"]


def test_the_cpu_environment_is_reinstalled_when_its_index_changes(cache, monkeypatch):
    cpu = hostenv.environment_digest(CPU)
    assert cpu != hostenv.environment_digest(FULL) == hostenv.requirements_digest()
    monkeypatch.setenv("DISTORCH_TORCH_INDEX", INDEX + "/")
    assert hostenv.cpu_torch_index() == INDEX
    assert hostenv.environment_digest(CPU) != cpu


# -- probing the CPU index -------------------------------------------------------------------------

class Answer:
    def __init__(self, status):
        self.status = status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_probe_asks_for_torchs_page_and_takes_an_answer():
    asked = []

    def urlopen(request, timeout):
        asked.append((request.full_url, timeout))
        return Answer(200)

    assert bootstrap.probe_index(INDEX, timeout=3, urlopen=urlopen) == (True, "")
    assert asked == [(INDEX + "/torch/", 3)]


@pytest.mark.parametrize("error, reachable, said", [
    (urllib.error.URLError("[Errno -2] Name or service not known"), False, "cannot reach"),
    (ConnectionRefusedError("refused"), False, "cannot reach"),
    (urllib.error.HTTPError(INDEX + "/torch/", 404, "Not Found", {}, None), False, "answered HTTP 404"),
    (urllib.error.HTTPError(INDEX + "/torch/", 503, "Unavailable", {}, None), False, "answered HTTP 503"),
    (urllib.error.HTTPError(INDEX + "/torch/", 401, "Unauthorized", {}, None), True, ""),
])
def test_probe_verdicts(error, reachable, said):
    def urlopen(request, timeout):
        raise error

    ok, reason = bootstrap.probe_index(INDEX, timeout=3, urlopen=urlopen)
    assert ok is reachable and said in reason


def test_probe_gives_up_after_its_timeout_whatever_hangs():
    def urlopen(request, timeout):
        time.sleep(5)  # e.g. DNS, which urlopen's timeout does not bound
        return Answer(200)

    started = time.monotonic()
    assert bootstrap.probe_index(INDEX, timeout=0.1, urlopen=urlopen) == (
        False, f"no answer from {INDEX}/torch/ within 0.1 s")
    assert time.monotonic() - started < 2


# -- what is cached --------------------------------------------------------------------------------

def test_an_environment_is_ready_once_its_stamp_matches(cache):
    assert not hostenv.environment_ready(CPU) and not hostenv.environment_ready(FULL)
    build(CPU)
    assert hostenv.environment_ready(CPU) and not hostenv.environment_ready(FULL)
    (hostenv.cpu_venv_dir() / hostenv.STAMP_NAME).write_text("an older digest\n")
    assert not hostenv.environment_ready(CPU)


def test_makefile_python_follows_what_is_built(cache, capsys):
    def python(*args):
        hostenv.main(["python", *args])
        return capsys.readouterr().out.strip()

    full, cpu = str(hostenv.python_in(cache / "venv")), str(hostenv.python_in(cache / "venv-cpu"))
    assert python() == full
    assert python("--run") == full  # nothing built: set-up builds one; CPU would be ready if it had
    build(CPU)
    assert python("--run") == cpu and python("--run", "--gpu") == full and python() == full


def test_size_record_counts_only_for_the_digest_it_was_made_for(tmp_path):
    assert bootstrap.recorded_size(tmp_path, "abc") is None
    bootstrap.record_size(tmp_path, "abc", 6_590_033_222, build_seconds=151.4)
    assert bootstrap.recorded_size(tmp_path, "abc") == 6_590_033_222
    assert bootstrap.recorded_size(tmp_path, "def") is None
    (tmp_path / bootstrap.SIZE_RECORD_NAME).write_text("{not json")
    assert bootstrap.recorded_size(tmp_path, "abc") is None


def test_tree_bytes_counts_hard_links_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").hardlink_to(tmp_path / "a")
    (tmp_path / "c").write_bytes(b"y" * 10)
    assert bootstrap.tree_bytes(tmp_path) == (1010, 3)


def test_models_are_cached_while_their_generators_and_files_are_unchanged(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "v.safetensors").write_bytes(b"v")
    stamp = {"generator": "g1", "files": bootstrap.model_files(tmp_path)}
    assert stamp["files"] == ["vae/v.safetensors"]
    assert bootstrap.models_cached(stamp, "g1", tmp_path)
    assert not bootstrap.models_cached(stamp, "g2", tmp_path)  # a generator changed: may write more
    assert not bootstrap.models_cached({}, "g1", tmp_path)
    (tmp_path / "vae" / "v.safetensors").unlink()
    assert not bootstrap.models_cached(stamp, "g1", tmp_path)


def test_makefile_run_asks_hostenv_and_bootstrap_the_same_question():
    makefile = (ROOT / "Makefile").read_text()
    assert "RUN_GPU = $(filter --gpu,$(ARGS))" in makefile
    assert "DISTORCH_HOST=$(HOST) $(PYTHON) tools/bootstrap.py --run $(RUN_GPU)" in makefile
    assert "DISTORCH_HOST=$(HOST) $(PYTHON) tools/hostenv.py python --run $(RUN_GPU)" in makefile
    assert "run: run-setup\n\tDISTORCH_HOST=$(HOST) $(RUN_PYTHON) tools/run_host.py $(ARGS)" in makefile
    assert "test: setup\n\t$(VENV_PYTHON) tools/run_tiers.py $(PYTEST_ARGS)" in makefile
    assert "setup:\n\t$(PYTHON) tools/bootstrap.py --host all" in makefile


def test_the_floor_host_alone_unless_asked():
    assert bootstrap.wanted_hosts("", "", False) == ("0.3.75",)
    assert bootstrap.wanted_hosts("all", "", False) == ("0.33.0", "0.3.75")
    assert bootstrap.wanted_hosts("", "0.33", False) == ("0.33.0", "0.3.75")
    assert bootstrap.wanted_hosts("0.33", "", False) == ("0.33.0", "0.3.75")
    assert bootstrap.wanted_hosts("all", "", True) == ("0.3.75",)  # COMFYUI_PATH: the user's tree


def test_the_current_hosts_requirements_leave_torch_to_the_full_environment():
    text = "comfyui-frontend-package==1.49.6\ntorch\ntorchvision\ntorchaudio\nnumpy>=1.25.0\n\n#c\nkornia>=0.7.1\n"
    assert bootstrap.current_requirements(text) == ["comfyui-frontend-package==1.49.6", "numpy>=1.25.0",
                                                    "kornia>=0.7.1"]


def test_a_tarball_that_is_not_the_recorded_one_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "comfyui-0.33.0.tar.gz"
    fake.write_bytes(b"not it")
    with pytest.raises(SystemExit, match="sha256 .* not the recorded"):
        bootstrap.unpack_current_tree(fake, tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


def test_without_the_tarball_the_current_host_is_skipped_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTORCH_VENDOR", str(tmp_path))
    monkeypatch.setenv("DISTORCH_CACHE", str(tmp_path / "cache"))
    assert bootstrap.ensure_current_host(Path("/nonexistent/python"), 4, 4) is None
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "skipped" in line and "comfyui-0.33.0.tar.gz" in line and "0.3.75 alone" in line


def test_make_runs_host_has_a_writable_database_of_its_own(monkeypatch):
    """ComfyUI's default database sits in its tree, which may not be writable ("Failed to initialize
    database ... unable to open database file"): the demo host's is .run/comfyui.db."""
    import run_host

    monkeypatch.delenv("DISTORCH_HOST", raising=False)  # the full tier sets it; make run leaves it out

    host = run_host.demo_host(["--port", "8190", "--preview-method", "auto"])
    command = host.command()
    assert command[command.index("--database-url") + 1] == f"sqlite:///{ROOT / '.run' / 'comfyui.db'}"
    assert command.count("--database-url") == 1 and command[-2:] == ["--preview-method", "auto"]
    assert host.base_dir == ROOT / ".run" and ROOT.is_absolute()  # sqlite:////abs/path: an absolute file
    own = run_host.demo_host(["--database-url", "sqlite:///elsewhere.db"]).command()
    assert own.count("--database-url") == 1 and "sqlite:///elsewhere.db" in own


def test_the_layered_environment_gets_the_full_ones_console_scripts_run_by_its_own_python(tmp_path):
    full_bin, own_bin = tmp_path / "venv" / "bin", tmp_path / "venv-0.33" / "bin"
    full_bin.mkdir(parents=True), own_bin.mkdir(parents=True)
    own_python = own_bin / "python"
    own_python.write_text("")
    (full_bin / "lint-imports").write_text(f"#!{full_bin / 'python'}\nimport sys\nsys.exit(main())\n")
    (full_bin / "pip").write_text(f"#!{full_bin / 'python'}\n# the full one's\n")
    (own_bin / "pip").write_text(f"#!{own_python}\n# its own\n")
    (full_bin / "activate").write_text("# sourced, not run\n")
    copied = bootstrap.layer_console_scripts(full_bin, own_python)
    assert copied == ["lint-imports"]
    assert (own_bin / "lint-imports").read_text() == f"#!{own_python}\nimport sys\nsys.exit(main())\n"
    assert (own_bin / "lint-imports").stat().st_mode & 0o111
    assert (own_bin / "pip").read_text().endswith("# its own\n") and not (own_bin / "activate").exists()
    assert bootstrap.layer_console_scripts(full_bin, own_python) == []  # once only
