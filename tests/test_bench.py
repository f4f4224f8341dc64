"""benchmarks/bench.py runs end to end and reports every figure the issue asks for.

Sizes are tiny (--quick) and nothing here looks at how fast anything was: machines are noisy.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"

REQUIRED = (
    "ceiling_items_per_s",
    "ceiling_items_per_s_buffered",
    "sagas_per_s",
    "sagas_per_s_faults",
    "ratio_to_ceiling",
    "scaling_wall_s_1k",
    "scaling_wall_s_10k",
    "scaling_wall_s_100k",
    "scaling_ratio_100k_10k",
    "bytes_per_saga",
    "bytes_per_saga_trace_kept",
    "stdio_sagas_per_s",
    "stdio_sagas_per_s_settle",
    "stdio_ratio",
    "stdio_ratio_settle",
    "explore_parallel_efficiency",
    "cluster_runs_per_s_jobs2",
    "cluster_runs_per_s_local2",
    "cluster_vs_jobs_ratio",
    "cluster_vs_jobs_ratio_whole",
)
GOALS = (
    "ratio_to_ceiling",
    "scaling_ratio_100k_10k",
    "bytes_per_saga",
    "stdio_ratio",
    "explore_parallel_efficiency",
    "cluster_vs_jobs_ratio",
)


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quick_json_has_every_figure_as_a_positive_number() -> None:
    done = bench("--quick", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["missing"] == {}
    for key in REQUIRED:
        value = report[key]
        assert isinstance(value, int | float), key
        assert not isinstance(value, bool), key
        assert math.isfinite(value), key
        assert value > 0, key
    assert report["ratio_to_ceiling"] == report["sagas_per_s"] / report["ceiling_items_per_s"]
    assert report["stdio_ratio"] == report["stdio_sagas_per_s"] / report["sagas_per_s"]
    assert (
        report["cluster_vs_jobs_ratio"]
        == report["cluster_runs_per_s_local2"] / report["cluster_runs_per_s_jobs2"]
    )
    for key in GOALS:
        goal = report["goals"][key]
        assert goal["met"] in (True, False), key
        assert goal["goal"].startswith((">=", "<=")), key


def test_only_runs_the_named_section_and_what_its_ratio_needs() -> None:
    done = bench("--quick", "--json", "--only", "stdio")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["stdio_ratio"] > 0
    assert report["sagas_per_s"] > 0  # the ratio's denominator
    assert "bytes_per_saga" not in report
    assert "explore_parallel_efficiency" not in report
    assert "cluster_vs_jobs_ratio" not in report
    assert report["goals"]["bytes_per_saga"]["met"] is None


def test_an_unknown_section_is_a_usage_error_without_a_traceback() -> None:
    done = bench("--only", "nosuch")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "unknown section 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr
