"""Mode cache (LRU by count and bytes), file location rules, reload state and the file watcher."""
import threading
import time

import pytest

from modes.cache import ModeCache
from modes.location import ENV_FILE, locate, user_modes_path
from modes.paths import Roots
from modes.schema import Checks
from modes.state import ModesState
from modes.watch import FileWatcher


# ---- cache -----------------------------------------------------------------------------------
def test_lru_by_count_evicts_least_recently_used():
    cache = ModeCache(max_entries=2, max_bytes=10**9)
    cache.put("a", "A", "va", 1)
    cache.put("b", "B", "vb", 1)
    assert cache.get("a") == "va"            # a is now the most recent
    evicted = cache.put("c", "C", "vc", 1)
    assert [e.mode for e in evicted] == ["B"]
    assert cache.keys() == ["a", "c"]
    stats = cache.stats()
    assert (stats["hits"], stats["evictions"], stats["disk_loads"], stats["entries"]) == (1, 1, 3, 2)
    assert [m["mode"] for m in stats["modes"]] == ["C", "A"]


def test_lru_by_bytes():
    cache = ModeCache(max_entries=10, max_bytes=100)
    cache.put("a", "A", "va", 60)
    cache.put("b", "B", "vb", 30)
    evicted = cache.put("c", "C", "vc", 30)
    assert [e.mode for e in evicted] == ["A"] and cache.total_bytes() == 60


def test_an_entry_larger_than_the_bound_is_kept_alone():
    cache = ModeCache(max_entries=3, max_bytes=100)
    cache.put("a", "A", "va", 10)
    evicted = cache.put("big", "BIG", "vbig", 500)
    assert [e.mode for e in evicted] == ["A"] and cache.keys() == ["big"]


def test_miss_counts_and_peek_does_not():
    cache = ModeCache(max_entries=2, max_bytes=100)
    assert cache.get("x") is None
    cache.put("x", "X", "vx", 1)
    assert cache.peek("x") == "vx"
    assert (cache.stats()["misses"], cache.stats()["hits"]) == (1, 0)


def test_discard_and_reconfigure():
    cache = ModeCache(max_entries=3, max_bytes=100)
    for key in "abc":
        cache.put(key, key.upper(), key, 1)
    gone = cache.discard(lambda entry: entry.key != "b")
    assert [e.key for e in gone] == ["b"]
    assert [e.key for e in cache.configure(1, 100)] == ["a"]
    assert cache.keys() == ["c"]


# ---- location --------------------------------------------------------------------------------
def test_env_variable_wins(tmp_path):
    user = tmp_path / "user"
    user_modes_path(user).parent.mkdir(parents=True)
    user_modes_path(user).write_text("modes: {}")
    location = locate({ENV_FILE: str(tmp_path / "named.yaml"), "MODEL": "x"}, user)
    assert location.origin == "env" and location.path == tmp_path / "named.yaml"


def test_user_directory_file_then_legacy_then_none(tmp_path):
    user = tmp_path / "user"
    assert locate({}, user).origin == "none"
    assert "DISTORCH_MODES" in locate({}, user).reason and "modes.yaml" in locate({}, user).reason
    legacy = locate({"MODEL_ROOT": "/m", "MODEL": "sd.safetensors"}, user)
    assert legacy.origin == "legacy" and legacy.legacy == {"model_root": "/m",
                                                           "modes": {"default": {"model": "sd.safetensors"}}}
    assert "deprecated" in legacy.reason
    only_root = locate({"MODEL_ROOT": "/m"}, user)
    assert only_root.origin == "none" and "MODEL is not" in only_root.reason
    user_modes_path(user).parent.mkdir(parents=True)
    user_modes_path(user).write_text("modes: {}")
    assert locate({"MODEL": "x"}, user).origin == "user"
    assert user_modes_path(user) == user / "distorch" / "modes.yaml"


# ---- state -----------------------------------------------------------------------------------
@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.safetensors").write_bytes(b"a")
    (root / "b.safetensors").write_bytes(b"b")
    modes_file = tmp_path / "modes.yaml"
    env = {ENV_FILE: str(modes_file)}
    state = ModesState(lambda: env, lambda: str(tmp_path / "user"), lambda: Checks(roots=Roots()))
    return root, modes_file, env, state


def good(root, names=("a",)):
    return f"model_root: {root}\nmodes:\n" + "".join(f"  {n}: {{model: {n}.safetensors}}\n" for n in names)


def test_invalid_file_never_replaces_a_valid_one(setup):
    root, modes_file, _, state = setup
    modes_file.write_text(good(root, ("a", "b")))
    assert state.reload("test").ok and state.generation == 1
    modes_file.write_text(good(root, ("a",)) + "  a: {model: b.safetensors}\n")   # duplicate
    result = state.reload("test")
    assert not result.ok and "duplicate key 'a'" in result.errors[0].message
    config, _, error, generation = state.snapshot()
    assert list(config.modes) == ["a", "b"] and generation == 1 and error is not None
    modes_file.write_text(good(root, ("b",)))
    assert state.reload("test").ok
    config, _, error, generation = state.snapshot()
    assert list(config.modes) == ["b"] and error is None and generation == 2


def test_missing_env_file_is_an_error_that_says_so(setup):
    _, modes_file, _, state = setup
    result = state.reload("test")
    assert not result.ok and "DISTORCH_MODES does not exist" in result.errors[0].message
    assert "does not exist" in state.why_empty()


def test_legacy_variables_make_one_implicit_mode(setup, caplog):
    root, _, env, state = setup
    env.clear()
    env.update({"MODEL_ROOT": str(root), "MODEL": "a.safetensors"})
    with caplog.at_level("WARNING", logger="distorch.modes"):
        assert state.reload("test").ok
    config, location, _, _ = state.snapshot()
    assert location.origin == "legacy" and list(config.modes) == ["default"]
    assert any("deprecated" in r.getMessage() for r in caplog.records)


def test_neither_file_nor_legacy_means_no_modes_and_a_reason(setup):
    _, _, env, state = setup
    env.clear()
    assert state.reload("test").ok
    assert state.snapshot()[0] is None and "no modes file" in state.why_empty()


def test_listeners_hear_every_reload(setup):
    root, modes_file, _, state = setup
    heard = []
    state.listeners.append(heard.append)
    modes_file.write_text(good(root))
    state.reload("one")
    modes_file.write_text("modes: [")
    state.reload("two")
    assert [(r.reason, r.ok) for r in heard] == [("one", True), ("two", False)]


# ---- watcher ---------------------------------------------------------------------------------
def test_watcher_fires_once_per_save_and_ignores_other_files(tmp_path):
    target = tmp_path / "modes.yaml"
    target.write_text("a")
    fired = []
    done = threading.Event()

    def on_change():
        fired.append(time.monotonic())
        done.set()

    watcher = FileWatcher(on_change)
    watcher.retarget(target)
    try:
        assert watcher.error is None
        (tmp_path / "other.yaml").write_text("x")
        time.sleep(0.3)
        assert fired == []
        temporary = tmp_path / "modes.yaml.tmp"          # an editor's save: write + rename
        temporary.write_text("b")
        temporary.replace(target)
        assert done.wait(5), "no reload after the file was replaced"
        time.sleep(0.3)
        assert len(fired) == 1
    finally:
        watcher.stop()


def test_generation_counts_changes_not_reload_attempts(setup):
    root, modes_file, _, state = setup
    modes_file.write_text(good(root))
    state.reload("first")
    state.reload("same content again")
    assert state.generation == 1
    modes_file.write_text(good(root, ("a", "b")))
    state.reload("changed")
    assert state.generation == 2


def test_a_changed_default_is_a_change(setup):
    root, modes_file, _, state = setup
    modes_file.write_text(good(root))
    state.reload("first")
    modes_file.write_text(good(root).replace("a.safetensors}", "a.safetensors, default_steps: 9}"))
    assert state.reload("edit").changed and state.generation == 2
