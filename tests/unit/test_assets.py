"""distorch.host.assets: what a diffusers folder needs before any weight is read, where it came from,
offline-strict failures, and fetching the missing config files from a local Hub imitation
(tests/host/hub_server.py) that answers slowly, fails, or drops the connection mid-file."""
from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_server import FakeHub

REPO = "acme/flux-mini"
INDEX = {
    "_class_name": "FluxPipeline",
    "_diffusers_version": "0.30.0",
    "_name_or_path": REPO,
    "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
}
PART_CONFIGS = ["transformer/config.json", "vae/config.json", "text_encoder/config.json", "text_encoder_2/config.json"]
# Normal tries: generous read timeout (a shared 2-core machine can be slow); waits kept tiny.
FAST = {"timeout": (2.0, 2.0), "backoff": (0.02, 0.1)}


@pytest.fixture(scope="module")
def assets(pack_module):
    return pack_module("distorch.host.assets")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("DISTORCH_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_ETAG_TIMEOUT",
                 "HF_HUB_DOWNLOAD_TIMEOUT", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def hub(tmp_path, clean_env):
    """The Hub imitation at HF_ENDPOINT, holding REPO (configs, tokenizers and weights)."""
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants as hub_constants
    # Import-time switches of huggingface_hub: not offline whatever the developer's shell says, and
    # no best-effort telemetry request (/api/agent-harnesses) to muddle the request record.
    clean_env.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    clean_env.setattr(hub_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    with FakeHub(tmp_path / "hub") as fake:
        clean_env.setenv("HF_ENDPOINT", fake.endpoint)
        fake.add_file(REPO, "model_index.json", INDEX)
        for path in PART_CONFIGS:
            fake.add_file(REPO, path, {"_class_name": path.split("/")[0], "hidden_size": 64})
        fake.add_file(REPO, "transformer/diffusion_pytorch_model.safetensors", b"\0" * 4096)
        fake.add_file(REPO, "vae/diffusion_pytorch_model.safetensors", b"\0" * 2048)
        fake.add_file(REPO, "text_encoder/model.safetensors", b"\0" * 1024)
        fake.add_file(REPO, "tokenizer/vocab.json", {"a": 0})
        fake.add_file(REPO, "tokenizer/merges.txt", "#version: 0.2\na b\n")
        fake.add_file(REPO, "tokenizer/tokenizer_config.json", {"model_max_length": 77})
        fake.add_file(REPO, "tokenizer_2/spiece.model", b"\x0a\x0bsentencepiece")
        fake.add_file(REPO, "tokenizer_2/tokenizer_config.json", {"model_max_length": 512})
        fake.add_file(REPO, "tokenizer_2/not_a_tokenizer.safetensors", b"\0" * 64)
        yield fake


@pytest.fixture
def no_network(monkeypatch):
    """Any outgoing connection fails the test (the Hub imitation's own accept is not one)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network connection attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def make_folder(root: Path, *, index: dict | None = INDEX, configs=(), weights=("transformer", "vae")) -> Path:
    folder = root / "models" / "diffusers" / "flux-mini"
    folder.mkdir(parents=True)
    if index is not None:
        (folder / "model_index.json").write_text(json.dumps(index))
    for part in weights:
        (folder / part).mkdir(exist_ok=True)
        (folder / part / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 16)
    for path in configs:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text("{}")
    return folder


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under the folder (hidden ones too) with its content."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def paths(found) -> list[str]:
    return [a.relative_path for a in found]


# ---------------------------------------------------------------------------------------------
# What is needed


def test_required_files_follow_model_index_and_skip_null_parts(assets, tmp_path):
    index = dict(INDEX, text_encoder_2=[None, None])
    folder = make_folder(tmp_path, index=index)
    required = assets.required_assets(folder)
    assert paths(required) == ["model_index.json", "transformer/config.json", "vae/config.json",
                               "text_encoder/config.json"]
    assert "FluxTransformer2DModel" in required[1].reason and "before its weights" in required[1].reason
    assert paths(assets.required_assets(folder, parts=("transformer", "vae"))) == [
        "model_index.json", "transformer/config.json", "vae/config.json"]


def test_without_model_index_the_part_subfolders_on_disk_decide(assets, tmp_path):
    folder = make_folder(tmp_path, index=None, weights=("unet", "vae"))
    (folder / "tokenizer").mkdir()
    assert paths(assets.required_assets(folder)) == ["model_index.json", "unet/config.json", "vae/config.json"]


def test_missing_are_the_required_files_not_there(assets, tmp_path):
    folder = make_folder(tmp_path, configs=["transformer/config.json", "text_encoder_2/config.json"])
    assert paths(assets.missing_assets(folder)) == ["vae/config.json", "text_encoder/config.json"]


def test_tokenizer_files_are_never_required(assets, tmp_path, clean_env, no_network):
    folder = make_folder(tmp_path, configs=PART_CONFIGS)
    (folder / "tokenizer").mkdir()  # empty: ComfyUI ships its own tokenizers
    assert assets.missing_assets(folder) == []
    assert assets.ensure_assets(folder, repo=REPO) == []
    assert no_network == []


def test_an_unreadable_model_index_is_named_with_what_to_do(assets, tmp_path):
    folder = make_folder(tmp_path, index=None)
    (folder / "model_index.json").write_text("{not json")
    with pytest.raises(assets.AssetsInvalid, match=r"model_index\.json at .*flux-mini.*delete it"):
        assets.required_assets(folder)


def test_only_text_files_are_fetchable_and_tokenizer_models_only_when_allowed(assets):
    fetchable = assets.is_fetchable
    assert fetchable("model_index.json") and fetchable("tokenizer/merges.txt")
    for weight in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/pytorch_model.bin", "x.gguf",
                   "tokenizer_2/spiece.model", "../escape.json", "/abs/config.json"):
        assert not fetchable(weight), weight
    assert fetchable("tokenizer_2/spiece.model", tokenizer_folders=["tokenizer_2"], allow_tokenizer_model=True)
    assert not fetchable("vae/spiece.model", tokenizer_folders=["tokenizer_2"], allow_tokenizer_model=True)


# ---------------------------------------------------------------------------------------------
# Which repository


def test_repository_from_model_index(assets, tmp_path):
    folder = make_folder(tmp_path)
    assert assets.repository_of(folder) == REPO
    assert assets.repository_source(folder).named_by == "model_index.json (_name_or_path)"


def test_a_local_path_is_no_repository_and_text_encoder_configs_are_not_asked(assets, tmp_path):
    folder = make_folder(tmp_path, index=dict(INDEX, _name_or_path="/home/me/flux-mini"))
    (folder / "text_encoder").mkdir()
    (folder / "text_encoder" / "config.json").write_text(json.dumps({"_name_or_path": "openai/clip-vit-large-patch14"}))
    assert assets.repository_of(folder) is None
    (folder / "transformer" / "config.json").write_text(
        json.dumps({"_diffusers_version": "0.30.0", "_name_or_path": "acme/flux-mini-transformer"}))
    source = assets.repository_source(folder)
    assert (source.repo, source.named_by) == ("acme/flux-mini-transformer", "transformer/config.json (_name_or_path)")


@pytest.mark.parametrize("readme, expected, named_by", [
    ("---\nlicense: other\nbase_model: black-forest-labs/FLUX.1-dev\n---\n# A finetune\n",
     "black-forest-labs/FLUX.1-dev", "README.md (base_model)"),
    ("---\nbase_model:\n- stabilityai/stable-diffusion-xl-base-1.0\n- other/one\n---\n",
     "stabilityai/stable-diffusion-xl-base-1.0", "README.md (base_model)"),
    ("See the [docs](https://huggingface.co/docs/diffusers) and "
     "https://huggingface.co/acme/flux-mini/blob/main/model_index.json.\n", "acme/flux-mini", "README.md (link)"),
    ("Just words, https://huggingface.co/spaces/acme/demo only.\n", None, None),
])
def test_repository_from_readme(assets, tmp_path, readme, expected, named_by):
    folder = make_folder(tmp_path, index=dict(INDEX, _name_or_path="."))
    (folder / "README.md").write_text(readme)
    source = assets.repository_source(folder)
    assert (source.repo if source else None) == expected
    assert (source.named_by if source else None) == named_by


# ---------------------------------------------------------------------------------------------
# Offline mode and what the error says


@pytest.mark.parametrize("environ, setting, offline", [
    ({}, None, False),
    ({}, True, True),
    ({"DISTORCH_OFFLINE": "1"}, None, True),
    ({"DISTORCH_OFFLINE": "0"}, None, False),
    ({"HF_HUB_OFFLINE": "true"}, None, True),
    ({"HF_HUB_OFFLINE": "Yes"}, False, True),
    ({"HF_HUB_OFFLINE": "on"}, None, True),
    ({"HF_HUB_OFFLINE": "2"}, None, False),  # huggingface_hub takes only 1/ON/YES/TRUE
    ({"TRANSFORMERS_OFFLINE": "1"}, None, True),
    ({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, None, False),  # as huggingface_hub reads it
])
def test_offline_requested(assets, environ, setting, offline):
    assert assets.offline_requested(environ, setting) is offline


def test_offline_names_each_file_the_repository_and_the_command_and_requests_nothing(
        assets, tmp_path, hub, no_network, monkeypatch):
    folder = make_folder(tmp_path, configs=["transformer/config.json"])
    hub_env = os.environ["HF_ENDPOINT"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(assets.AssetsMissing) as caught:
        assets.ensure_assets(folder, **FAST)
    message = str(caught.value)
    assert str(folder) in message
    for path in ["vae/config.json", "text_encoder/config.json", "text_encoder_2/config.json"]:
        assert f"  - {path}: " in message
    assert "transformer/config.json" not in message.split("Command")[0]
    assert "HF_HUB_OFFLINE=1 is set" in message and "nothing was requested" in message
    assert f"Repository: {REPO} (named by model_index.json (_name_or_path))" in message
    command = (f"hf download {REPO} vae/config.json text_encoder/config.json text_encoder_2/config.json "
               f"--local-dir {shlex.quote(str(folder))}")
    assert caught.value.command == command and command in message
    assert hub.requests == [] and no_network == [] and hub_env == hub.endpoint


def test_the_offline_setting_alone_is_enough(assets, tmp_path, clean_env, no_network):
    folder = make_folder(tmp_path, index=None, weights=("unet",))
    with pytest.raises(assets.AssetsMissing, match="the offline setting is on"):
        assets.ensure_assets(folder, repo=REPO, offline=True)
    assert no_network == []


def test_without_a_repository_the_error_says_how_to_give_one(assets, tmp_path, clean_env, no_network):
    folder = make_folder(tmp_path, index=None, weights=("transformer",))
    with pytest.raises(assets.AssetsMissing) as caught:
        assets.ensure_assets(folder)
    message = str(caught.value)
    assert "model_index.json" in message and "transformer/config.json" in message
    assert "none is named" in message and "hf_repo" in message and "no repository is known" in message
    assert "hf download <owner>/<name> model_index.json transformer/config.json --local-dir" in message
    assert caught.value.repo is None and no_network == []


def test_the_command_quotes_the_folder_and_names_a_revision(assets):
    command = assets.fetch_command("acme/x", ["model_index.json"], Path("/m/my models/x"), revision="v1.0")
    assert command == "hf download acme/x model_index.json --revision v1.0 --local-dir '/m/my models/x'"


def test_a_bad_repository_input_is_refused_naming_hf_repo(assets, tmp_path, clean_env):
    folder = make_folder(tmp_path)
    with pytest.raises(ValueError, match=r"hf_repo '\.\./etc' is not a Hub repository id: give owner/name"):
        assets.ensure_assets(folder, repo="../etc")


def test_the_printed_command_fetches_exactly_the_missing_files(assets, tmp_path, hub):
    """The real ``hf download`` CLI, run as the message prints it, against the Hub imitation."""
    folder = make_folder(tmp_path, configs=["transformer/config.json", "text_encoder/config.json"])
    with pytest.raises(assets.AssetsMissing) as caught:
        assets.ensure_assets(folder, offline=True)
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", HF_HOME=str(tmp_path / "hf"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    result = subprocess.run(shlex.split(caught.value.command), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert assets.missing_assets(folder) == []
    assert all(f.endswith(".json") for f in hub.files_requested()), hub.files_requested()


# ---------------------------------------------------------------------------------------------
# Fetching from the Hub imitation


def test_the_imitation_serves_huggingface_hubs_own_download(tmp_path, hub):
    """hf_hub_download itself (HEAD, then GET) accepts what the imitation answers."""
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(REPO, "vae/config.json", local_dir=tmp_path / "direct", endpoint=hub.endpoint)
    assert json.loads(Path(path).read_text())["_class_name"] == "vae"
    assert [(r.method, r.file) for r in hub.requests] == [("HEAD", "vae/config.json"), ("GET", "vae/config.json")]


def test_only_missing_config_files_are_requested_never_weights(assets, tmp_path, hub):
    folder = make_folder(tmp_path, index=None, configs=["transformer/config.json"], weights=("transformer",))
    log = []
    fetched = assets.ensure_assets(folder, repo=REPO, log=log.append, **FAST)
    # model_index.json first: the fetched index names the parts whose configs are needed.
    assert fetched == ["model_index.json", "vae/config.json", "text_encoder/config.json", "text_encoder_2/config.json"]
    assert hub.files_requested()[:2] == ["model_index.json", "model_index.json"]
    assert all(f.endswith(".json") for f in hub.files_requested())
    assert not any("safetensors" in r.path for r in hub.requests)
    assert (folder / "transformer" / "config.json").read_text() == "{}"  # present: not fetched again
    assert json.loads((folder / "model_index.json").read_text()) == INDEX
    assert not list(folder.rglob("*partial*")) and not (folder / ".cache").exists()
    assert assets.ensure_assets(folder, **FAST) == []  # complete now: nothing more asked
    assert len(hub.requests) == 8


def test_failed_tries_are_retried_and_logged_with_the_try_number_and_error(assets, tmp_path, hub):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[:1] + PART_CONFIGS[2:])
    hub.fail("vae/config.json", times=2, status=503)
    log = []
    assert assets.ensure_assets(folder, log=log.append, **FAST) == ["vae/config.json"]
    retries = [line for line in log if " failed (" in line]
    assert len(retries) == 2
    assert "vae/config.json from acme/flux-mini: try 1/5 failed (HTTP 503 from http://127.0.0.1:" in retries[0]
    assert "try 2/5 failed (HTTP 503" in retries[1] and "retrying in" in retries[1]
    assert [r.method for r in hub.requests] == ["HEAD", "HEAD", "HEAD", "GET"]


def test_our_retry_count_decides_huggingface_hub_makes_one_request_per_try(assets, tmp_path, hub):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    hub.fail("transformer/config.json", times=None, status=500)
    with pytest.raises(assets.AssetsFetchFailed, match="after 1 try"):
        assets.ensure_assets(folder, retries=0, **FAST)
    assert len(hub.requests) == 1
    with pytest.raises(assets.AssetsFetchFailed, match="after 3 tries"):
        assets.ensure_assets(folder, retries=2, **FAST)
    assert len(hub.requests) == 4


def test_a_connection_dropped_mid_file_leaves_no_partial_file_and_the_next_try_completes(assets, tmp_path, hub):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    before = listing(folder)
    hub.drop("transformer/config.json", times=2)
    seen_between_tries = []

    def log(line):
        if " failed (" in line:
            seen_between_tries.append(listing(folder))
        return None

    assert assets.ensure_assets(folder, log=log, **FAST) == ["transformer/config.json"]
    assert seen_between_tries == [before, before]  # after each broken try: nothing new, not even a temp file
    after = listing(folder)
    assert set(after) - set(before) == {"transformer/config.json"}
    hub_copy = (hub.root / REPO / "transformer" / "config.json").read_bytes()
    assert after["transformer/config.json"] == hub_copy
    assert [r.method for r in hub.requests] == ["HEAD", "GET"] * 3


def test_when_every_try_fails_the_error_says_what_and_what_to_do_and_the_folder_is_unchanged(
        assets, tmp_path, hub):
    folder = make_folder(tmp_path, index=None, weights=("transformer", "vae"))
    before = listing(folder)
    hub.fail(None, times=None, status=503)
    log = []
    with pytest.raises(assets.AssetsFetchFailed) as caught:
        assets.ensure_assets(folder, repo=REPO, retries=2, log=log.append, **FAST)
    message = str(caught.value)
    assert "Repository: acme/flux-mini (named by the hf_repo input)" in message
    assert "fetching model_index.json from acme/flux-mini failed after 3 tries: HTTP 503" in message
    assert "Check the network and the Hub address" in message and "DISTORCH_OFFLINE=1" in message
    for path in ("model_index.json", "transformer/config.json", "vae/config.json"):
        assert f"  - {path}: " in message
    assert caught.value.command in message and caught.value.command.startswith(f"hf download {REPO} model_index.json")
    assert len([line for line in log if " failed (" in line]) == 2
    assert listing(folder) == before and sorted(p.name for p in folder.iterdir()) == ["transformer", "vae"]


def test_a_slow_answer_times_out_and_the_retry_succeeds_in_bounded_time(assets, tmp_path, hub):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    hub.slow("transformer/config.json", times=1, delay=3.0, where="headers")
    log = []
    started = time.monotonic()
    fetched = assets.ensure_assets(folder, log=log.append, timeout=(1.0, 0.5), backoff=(0.02, 0.1), retries=3)
    elapsed = time.monotonic() - started
    assert fetched == ["transformer/config.json"]
    assert "try 1/4 failed (ReadTimeout: no answer within the timeout)" in log[0]
    assert elapsed < 2.5, elapsed  # the server would have answered only after 3 s


def test_a_body_that_stalls_times_out_without_leaving_a_partial_file(assets, tmp_path, hub):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[:1] + PART_CONFIGS[2:])
    before = listing(folder)
    hub.slow("vae/config.json", times=1, delay=3.0, where="body")
    between = []

    def log(line):
        if " failed (" in line:
            between.append((line, listing(folder)))

    started = time.monotonic()
    assert assets.ensure_assets(folder, log=log, timeout=(1.0, 0.5), backoff=(0.02, 0.1)) == ["vae/config.json"]
    assert time.monotonic() - started < 2.5
    assert len(between) == 1 and "ReadTimeout" in between[0][0] and between[0][1] == before


def test_a_file_the_repository_lacks_fails_at_once_naming_it(assets, tmp_path, hub):
    folder = make_folder(tmp_path, index=dict(INDEX, unet=["diffusers", "UNet2DConditionModel"]),
                         configs=PART_CONFIGS)
    with pytest.raises(assets.AssetsFetchFailed) as caught:
        assets.ensure_assets(folder, **FAST)
    message = str(caught.value)
    assert "fetching unet/config.json from acme/flux-mini failed after 1 try: file not found" in message
    assert "check it (hf_repo input)" in message
    assert len(hub.requests) == 1


def test_a_gated_repository_says_to_accept_its_terms_and_log_in(assets, tmp_path, hub):
    hub.gated.add(REPO)
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    with pytest.raises(assets.AssetsFetchFailed, match=r"(?s)acme/flux-mini is gated.*Accept its terms on "
                                                       r"http://127\.0\.0\.1:\d+/acme/flux-mini and log in"):
        assets.ensure_assets(folder, **FAST)
    assert len(hub.requests) == 1


def test_the_readme_names_the_repository_to_fetch_from(assets, tmp_path, hub):
    folder = make_folder(tmp_path, index=None, weights=("vae",))
    (folder / "README.md").write_text(f"---\nbase_model: {REPO}\n---\n")
    log = []
    assert assets.ensure_assets(folder, log=log.append, **FAST) == [
        "model_index.json", "transformer/config.json", "vae/config.json", "text_encoder/config.json",
        "text_encoder_2/config.json"]


def test_tokenizer_files_are_fetched_only_when_asked_and_models_only_when_allowed(assets, tmp_path, hub):
    folder = make_folder(tmp_path, configs=PART_CONFIGS)
    assert assets.ensure_assets(folder, **FAST) == []
    assert hub.requests == []
    log = []
    fetched = assets.ensure_assets(folder, include_tokenizer=True, log=log.append, **FAST)
    assert fetched == ["tokenizer/merges.txt", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
                       "tokenizer_2/tokenizer_config.json"]
    assert any("tokenizer_2/spiece.model not fetched" in line for line in log)
    assert assets.ensure_assets(folder, include_tokenizer=True, allow_tokenizer_model=True, **FAST) == [
        "tokenizer_2/spiece.model"]
    requested = hub.files_requested()
    assert "tokenizer_2/not_a_tokenizer.safetensors" not in requested
    assert all(f.endswith((".json", ".txt", ".model")) for f in requested)
    assert [r.path for r in hub.requests if r.file is None] == [
        "/api/models/acme/flux-mini/tree/main/tokenizer", "/api/models/acme/flux-mini/tree/main/tokenizer_2"] * 2


def test_timeouts_from_huggingface_hubs_environment_win_over_the_argument(assets, tmp_path, hub, monkeypatch):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    hub.slow("transformer/config.json", times=1, delay=1.0, where="headers")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    log = []
    assets.ensure_assets(folder, log=log.append, timeout=(1.0, 0.3), backoff=(0.02, 0.1))
    assert log == [f"fetched transformer/config.json from {REPO} into {folder}"]  # waited for the slow HEAD


def test_backoff_doubles_up_to_the_longest_wait_with_jitter(assets):
    low = [assets.backoff_delay(n, 0.5, 4.0, rng=lambda a, b: a) for n in range(1, 7)]
    high = [assets.backoff_delay(n, 0.5, 4.0, rng=lambda a, b: b) for n in range(1, 7)]
    assert low == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert high == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0.25 <= assets.backoff_delay(1, 0.5, 4.0) <= 0.5 for _ in range(50))


def test_an_endpoint_that_is_no_hub_fails_at_once_saying_so(assets, tmp_path, hub):
    hub.plain_http = True
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    with pytest.raises(assets.AssetsFetchFailed, match=r"(?s)after 1 try: .*without the Hub's X-Repo-Commit/ETag "
                                                       r"headers.*Point HF_ENDPOINT at the Hub"):
        assets.ensure_assets(folder, **FAST)
    assert len(hub.requests) == 1


def test_an_empty_hf_repo_input_means_the_repository_the_folder_names(assets, tmp_path, hub):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    assert assets.ensure_assets(folder, repo="  ", **FAST) == ["transformer/config.json"]


def test_without_huggingface_hub_the_error_says_how_to_install_it_and_requests_nothing(
        assets, tmp_path, clean_env, no_network):
    folder = make_folder(tmp_path, configs=PART_CONFIGS[1:])
    clean_env.setitem(sys.modules, "huggingface_hub", None)  # import fails as if it were not installed
    with pytest.raises(assets.AssetsMissing, match=r"(?s)huggingface_hub cannot be imported.*pip install -r "
                                                   r"custom_nodes/comfyui-distorch/requirements\.txt"):
        assets.ensure_assets(folder, **FAST)
    assert no_network == []


@pytest.mark.parametrize("arguments, message", [
    ({"timeout": (5, 0)}, r"timeout must be \(connect, read\) seconds"),
    ({"timeout": 10}, r"timeout must be \(connect, read\) seconds"),
    ({"backoff": (2, 1)}, r"backoff must be \(first, longest\)"),
    ({"retries": -1}, r"retries must be a whole number >= 0"),
])
def test_bad_fetch_settings_are_refused_naming_them(assets, tmp_path, clean_env, arguments, message):
    folder = make_folder(tmp_path)
    with pytest.raises(ValueError, match=message):
        assets.ensure_assets(folder, **arguments)


def test_a_missing_folder_is_named(assets, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"diffusers folder .*nowhere does not exist"):
        assets.ensure_assets(tmp_path / "nowhere")
