"""The tiers of `make test` and the full tier's shards (tools/run_tiers.py, tools/tiers.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

import hostenv
import run_tiers
import tiers

HOST_TESTS = Path(__file__).resolve().parent.parent / "host"
UNIT_TESTS = Path(__file__).resolve().parent


def test_every_compatibility_file_exists():
    missing = [name for name in tiers.COMPAT_HOST_FILES if not (HOST_TESTS / name).is_file()]
    assert missing == []


def test_the_compatibility_tier_keeps_unit_tests_and_the_listed_host_files():
    paths = ["/r/tests/unit/test_allocation.py", "/r/tests/host/test_memory_flow.py",
             "/r/tests/host/test_memory_panel_browser.py", "/r/tests/host/test_readme.py"]
    assert tiers.tier_selection("compat", paths) == [True, True, False, False]
    assert tiers.tier_selection("full", paths) == [True] * 4
    assert tiers.tier_selection("", paths) == [True] * 4


def test_floor_only_files_leave_the_full_tier_on_today_host_and_join_the_compatibility_tier():
    paths = ["/r/tests/host/test_gpu_check_dry_run.py", "/r/tests/host/test_memory_flow.py"]
    assert tiers.tier_selection("full", paths, floor_host=False) == [False, True]
    assert tiers.tier_selection("full", paths, floor_host=True) == [True, True]
    assert tiers.tier_selection("compat", paths) == [True, True]
    assert all((HOST_TESTS / name).is_file() for name in tiers.FLOOR_ONLY_FILES)


def test_host_independent_unit_files_leave_make_tests_full_tier_on_today_host_only():
    paths = ["/r/tests/unit/test_planner.py", "/r/tests/unit/test_patches.py", "/r/tests/host/test_planner.py"]
    assert tiers.tier_selection("full", paths, floor_host=False) == [False, True, True]
    assert tiers.tier_selection("full", paths, floor_host=True) == [True, True, True]
    assert tiers.tier_selection("compat", paths) == [True, True, False]
    assert tiers.tier_selection("", paths, floor_host=False) == [True, True, True]  # a plain pytest run


def test_the_host_independent_unit_files_import_neither_comfyui_nor_torch():
    """Collecting them (their imports) in a fresh interpreter leaves comfy and torch unimported. A
    test that imports one inside its body is not seen here: the file list says what each holds."""
    files = [str(UNIT_TESTS / name) for name in tiers.HOST_INDEPENDENT_UNIT_FILES]
    assert all(Path(f).is_file() for f in files), [f for f in files if not Path(f).is_file()]
    probe = ("import sys, pytest\n"
             "code = pytest.main([*sys.argv[1:], '--collect-only', '-q', '-p', 'no:cacheprovider'])\n"
             "print('IMPORTED', sorted(m for m in ('torch', 'comfy', 'nodes', 'folder_paths') if m in sys.modules), code)")
    out = subprocess.run([sys.executable, "-c", probe, *files], capture_output=True, text=True,
                         cwd=hostenv.REPO_ROOT, timeout=300)
    assert "IMPORTED [] 0" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]


def test_the_compatibility_tier_starts_with_the_soak_and_keeps_file_order_otherwise():
    names = ["test_bench_quick.py", "test_memory_flow.py", "test_soak.py", "test_soak.py", "test_allocation.py"]
    assert tiers.tier_order("compat", names) == [2, 3, 0, 1, 4]
    assert tiers.tier_order("full", names) == [0, 1, 2, 3, 4]
    assert all((HOST_TESTS / name).is_file() for name in tiers.COMPAT_RUN_FIRST)


def test_no_browser_test_is_in_the_compatibility_tier():
    """The browser tests drive today's frontend (0.33.0's 1.49); 0.3.75's is another program."""
    assert not [name for name in tiers.COMPAT_HOST_FILES if "browser" in name]


def test_with_0_33_both_tiers_run_the_full_one_in_two_shards_and_nothing_is_said_missing():
    tiers, skipped = run_tiers.plan_tiers(own_tree="", current_ready=True, full_shards=2)
    assert [tier.label for tier in tiers] == [f"{hostenv.CURRENT_HOST} full 1/2", f"{hostenv.CURRENT_HOST} full 2/2",
                                              f"{hostenv.FLOOR_HOST} compat"]
    assert tiers[0].env == {"DISTORCH_HOST": hostenv.CURRENT_HOST, "DISTORCH_TIER": "full", "DISTORCH_SHARD": "1/2"}
    assert tiers[1].env["DISTORCH_SHARD"] == "2/2"
    assert tiers[2].env == {"DISTORCH_HOST": hostenv.FLOOR_HOST, "DISTORCH_TIER": "compat"}
    assert skipped == ""
    one, _ = run_tiers.plan_tiers(own_tree="", current_ready=True)  # the default: one run per tier
    assert [tier.label for tier in one] == [f"{hostenv.CURRENT_HOST} full", f"{hostenv.FLOOR_HOST} compat"]
    assert "DISTORCH_SHARD" not in one[0].env


def test_without_0_33_the_full_suite_runs_on_the_floor_and_one_line_says_why():
    tiers, skipped = run_tiers.plan_tiers(own_tree="", current_ready=False, full_shards=2)
    assert [tier.label for tier in tiers] == [f"{hostenv.FLOOR_HOST} full 1/2", f"{hostenv.FLOOR_HOST} full 2/2"]
    assert all(tier.env["DISTORCH_HOST"] == hostenv.FLOOR_HOST for tier in tiers)
    assert hostenv.CURRENT_TARBALL_NAME in skipped and "skipped" in skipped and "\n" not in skipped


def test_your_own_tree_gets_the_full_suite_once():
    tiers, skipped = run_tiers.plan_tiers(own_tree="/home/me/ComfyUI", current_ready=True)
    assert [tier.label for tier in tiers] == ["/home/me/ComfyUI full"]
    assert skipped == "" and "DISTORCH_HOST" not in tiers[0].env


def test_each_run_gets_its_own_temporary_folder():
    tiers, _ = run_tiers.plan_tiers(own_tree="", current_ready=True, full_shards=2)
    folders = [run_tiers.tier_basetemp(tier) for tier in tiers]
    assert len(set(folders)) == 3 and all(" " not in str(f) and "/" not in f.name for f in folders)


@pytest.mark.parametrize("text", ["0", "x", "9", "-1"])
def test_a_bad_shard_count_is_refused_naming_the_range(monkeypatch, text):
    monkeypatch.setenv("DISTORCH_FULL_SHARDS", text)
    with pytest.raises(SystemExit, match="DISTORCH_FULL_SHARDS.*1 to 8"):
        run_tiers.full_shard_count()


def test_shards_split_whole_files_the_unit_tests_together_and_cover_everything_once():
    paths = [f"/r/tests/host/{name}" for name in tiers.FILE_SECONDS if name != tiers.UNIT_GROUP]
    paths += ["/r/tests/host/test_new_file.py", "/r/tests/unit/test_a.py", "/r/tests/unit/test_b.py"] * 2
    first = tiers.shard_selection(paths, (1, 2))
    second = tiers.shard_selection(paths, (2, 2))
    assert all(a != b for a, b in zip(first, second))  # each test in exactly one shard
    units = {kept for path, kept in zip(paths, first) if "/unit/" in path}
    assert len(units) == 1  # the unit tests stay together
    loads = [sum(tiers.FILE_SECONDS.get(g, tiers.DEFAULT_FILE_SECONDS) for g, shard in
                 tiers.assign_shards([tiers.shard_group(p) for p in paths], 2).items() if shard == i) for i in (1, 2)]
    assert abs(loads[0] - loads[1]) <= max(tiers.FILE_SECONDS.values()), loads  # balanced to within a file
    assert tiers.shard_selection(paths, None) == [True] * len(paths)
    assert tiers.assign_shards(["b", "a"], 2) == tiers.assign_shards(["a", "b"], 2)  # the order collected is moot


@pytest.mark.parametrize("text", ["1", "0/2", "3/2", "a/b", "1/2/3"])
def test_a_bad_shard_is_refused_naming_the_form(text):
    with pytest.raises(ValueError, match="DISTORCH_SHARD"):
        tiers.parse_shard(text)


def test_the_total_line_adds_every_runs_counts_in_pytests_words():
    line = run_tiers.total_line(["3 failed, 600 passed, 28 skipped, 6 deselected in 612.00s",
                                 "1 error, 500 passed in 300s", ""])
    assert line == "total: 1100 passed, 3 failed, 28 skipped, 1 error"
    assert run_tiers.total_line(["10 passed in 1s"]) == "total: 10 passed, 0 failed, 0 skipped"


@pytest.mark.parametrize("line, summary", [
    ("==== 3 failed, 1010 passed, 28 skipped in 612.00s (0:10:12) ====\n", True),
    ("1118 passed, 28 skipped in 1300.2s\n", True),
    ("tests/unit/test_a.py ........ [ 5%]\n", False),
    ("passed in the test name but no timing\n", False),
])
def test_the_summary_line_is_recognised(line, summary):
    assert run_tiers.is_summary(line) is summary


@pytest.mark.parametrize("text, host", [("0.33", "0.33.0"), ("0.33.0", "0.33.0"), ("0.3.75", "0.3.75"),
                                        ("current", "0.33.0"), ("floor", "0.3.75")])
def test_host_names(text, host):
    assert hostenv.host_name(text) == host


def test_an_unknown_host_is_refused_naming_the_choices():
    with pytest.raises(SystemExit, match="0.33.*0.3.75.*COMFYUI_PATH"):
        hostenv.host_name("0.47")


def test_the_host_follows_distorch_host_and_comfyui_path_wins(monkeypatch, tmp_path):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setenv("DISTORCH_HOST", "0.33")
    assert hostenv.comfyui_dir() == hostenv.host_tree("0.33.0")
    monkeypatch.setenv("DISTORCH_HOST", "")
    assert hostenv.comfyui_dir() == hostenv.host_tree("0.3.75")
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    assert hostenv.comfyui_dir() == tmp_path.resolve()


def test_what_failed_is_taken_from_the_short_summary_only():
    output = ("..F [100%]\n=== FAILURES ===\nFAILED lines in a traceback are not the summary\n"
              "=== short test summary info ===\nSKIPPED [2] a.py:3: no CUDA\n"
              "FAILED tests/host/test_a.py::test_x - AssertionError: boom\n"
              "ERROR tests/host/test_b.py::test_y - RuntimeError\n== 1 failed, 1 error, 2 passed in 3s ==\n")
    assert run_tiers.failure_lines(output) == ["FAILED tests/host/test_a.py::test_x - AssertionError: boom",
                                               "ERROR tests/host/test_b.py::test_y - RuntimeError"]
    assert run_tiers.failure_lines("... [100%]\n== 3 passed in 1s ==\n") == []


def test_progress_is_counted_from_the_result_letters_until_the_summary():
    output = ("..F.s [ 10%]\n....E [ 20%]\n=================== FAILURES ===\n"
              "__ test_x __\n. . . . assert ..F\n")
    assert run_tiers.progress_counts(output) == (10, 2)
    assert run_tiers.progress_counts("") == (0, 0)
    assert run_tiers.progress_counts("....") == (4, 0)  # a line still being written counts too
    verbose = ("==== test session starts ====\nplatform linux -- Python 3.11\ncollected 12 items\n\n"
               "tests/host/test_a.py ..F. [  4%]\ntests/unit/test_b.py .s [ 10%]\n")  # make test without -q
    assert run_tiers.progress_counts(verbose) == (6, 1)
