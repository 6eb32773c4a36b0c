"""The benchmark harness runs every scenario once at a tiny size, so it cannot
rot. Benchmarks are not tests: no timing is asserted here, only that each key
is produced with a sane value and the results file is written."""

import json
import math
import os
import subprocess
import sys

import pytest

from bench.goals import SCENARIO_KEYS
from bench.multihost import unavailable_reason
from tests.support.processes import ROOT

# The tiny run takes ~100 s on a quiet 2-core machine (17 scenarios, each with
# its own worker processes), so its first test may wait longer than the
# suite's 300 s timeout on a loaded one.
pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def multihost_unavailable():
    """Why the multihost scenario writes no keys here (no root, no network
    namespaces), or None: then its keys are checked like any other's."""
    return unavailable_reason()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``python -m bench --size tiny`` as a user runs it, in its own process:
    the harness sets up its own database (a SQLite file under this test's
    CMMS_VAR_DIR, or cmms_bench_smoke on the suite's PostgreSQL server)."""
    tmp = tmp_path_factory.mktemp("bench")
    results = tmp / "latest.json"
    env = {**os.environ, "CMMS_VAR_DIR": str(tmp)}
    args = [sys.executable, "-m", "bench", "--size", "tiny", "--json", str(results)]
    if env.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        args += ["--db-name", "cmms_bench_smoke"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=560, check=False)
    return proc, results


def test_the_run_exits_cleanly_and_writes_the_results_file(tiny_run):
    proc, results = tiny_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads(results.read_text())
    assert data["size"] == "tiny"
    assert data["machine"]["nproc"] >= 1 and data["machine"]["db_engine"] in ("sqlite", "postgresql")
    assert all(info["error"] is None for info in data["scenarios"].values())


@pytest.mark.parametrize("scenario", sorted(SCENARIO_KEYS))
def test_each_scenario_writes_its_keys_with_sane_values(tiny_run, scenario, multihost_unavailable):
    if scenario == "multihost" and multihost_unavailable:
        pytest.skip(multihost_unavailable)
    _proc, results = tiny_run
    written = json.loads(results.read_text())["results"]
    for key in SCENARIO_KEYS[scenario]:
        assert key in written, f"{scenario} did not write {key}"
        value = written[key]["value"]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, (key, value)
        assert written[key]["scenario"] == scenario


def test_the_table_shows_every_headline_key(tiny_run, multihost_unavailable):
    proc, _results = tiny_run
    for scenario, keys in SCENARIO_KEYS.items():
        if scenario == "multihost" and multihost_unavailable:
            assert multihost_unavailable in proc.stdout  # says why, in one line
            continue
        for key in keys:
            assert key in proc.stdout


def test_the_broadcast_scenario_measures_the_return_at_two_sizes_and_the_time_to_queue_everything(tiny_run):
    """Issue 16: the call's return at the small and the large population, and
    the time until every row exists and is published, each with its goal."""
    from bench.goals import GOALS

    _proc, results = tiny_run
    written = json.loads(results.read_text())["results"]
    for key in ("broadcast_10k_return_s", "broadcast_100k_return_s", "broadcast_10k_all_queued_s"):
        assert key in written and key in GOALS, key
    assert written["broadcast_100k_users"]["value"] > written["broadcast_users"]["value"] > 0
