"""The soak's short version (bench/bench_soak.py --quick, same assertions): 60 mixed prompts with a
/free every 10 on one server must not grow, and what the pack holds stays within its budget."""
import sys

import pytest

import hostenv

sys.path.insert(0, str(hostenv.REPO_ROOT / "bench"))
import bench_soak  # noqa: E402

pytestmark = pytest.mark.host


def test_a_mixed_session_does_not_grow(ram_heavy, tmp_path):
    host = bench_soak.start_host(tmp_path)
    try:
        result = bench_soak.soak(host, prompts=60, window_start=20, log=lambda line: None)
    finally:
        host.stop()
    assert result["window"] == [20, 60]
    assert result["rss_drift"] < bench_soak.RSS_DRIFT_LIMIT, result
    budget = result["budget"]["max_models"]
    assert result["most_retained"] <= budget, result
    # Each retained load holds at most three models (a checkpoint); beside them the host keeps the
    # one workflow it is running (three models) and the core models rules 2-3 keep until the next prompt.
    assert result["most_models_listed"] <= 3 * budget + 6, result
