# The HTML report as a file: self-contained (nothing fetched from anywhere), the embedded data
# says what the run did (sagas, faults, windows, invariants), and no string from a run can break
# out of the page. tests/test_browser.py checks that a real browser draws it.

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import planted_bugs

from trio_saga.explore import explore, replay_command_line
from trio_saga.report import run_data, write_explore_report, write_report
from trio_saga.scenario import Scenario
from trio_saga.shrink import Variant
from trio_saga.simulation import simulate

RETRIES = (Path(__file__).parent / "scenarios" / "retries.toml").read_text()
CUT_SHORT = (Path(__file__).parent / "scenarios" / "cut-short.toml").read_text()

CRASH = """\
description = "Shipping is down for a second while sagas keep coming."
faults = ["crash:service=shipping,at=0.3,downtime=1", "fail_payment:saga=saga-2"]
[[sagas]]
count = 5
every = 0.1
[expect]
invariants_only = true
"""


def embedded(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!doctype html>")
    lowered = page.lower()
    for needle in ("<link", "@import", "url(http", " src=", "fetch(", "xmlhttprequest"):
        assert needle not in lowered, needle
    assert not re.search(r'href="(?!#)', page), "a link that leaves the page"
    assert page.count("<script") == 2  # the data and the code, both inline
    assert page.count("</script>") == 2


def test_a_run_report_is_one_self_contained_file_with_the_runs_data(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("crash", CRASH)
    result = simulate(scenario.simulation(1))
    path = tmp_path / "run.html"
    write_report(path, "crash (seed 1)", result, scenario)
    page = path.read_text()
    assert_self_contained(page)
    assert "<title>crash (seed 1)</title>" in page
    data = embedded(page)
    assert data["description"] == scenario.description
    assert [s["id"] for s in data["sagas"]] == [f"saga-{n}" for n in range(1, 6)]
    assert data["counts"] == {"completed": 4, "compensated": 1, "failed": 0, "stuck": 0}
    assert [inv["ok"] for inv in data["invariants"]] == [True] * 5
    saga2 = data["sagas"][1]
    assert saga2["status"] == "compensated"
    assert saga2["events"] == ["InventoryReserved", "PaymentFailed", "InventoryReleased"]
    kinds = [data["kinds"][m[3]] for m in saga2["marks"]]
    assert "fail" in kinds  # the forced failure is marked on the saga
    assert saga2["faults"] >= 1
    crash = [w for w in data["windows"] if w["kind"] == "crash"]
    assert crash == [
        {"kind": "crash", "node": "shipping", "t0": 300_000, "t1": 1_300_000, "info": "down 1s"}
    ]
    # Every delivery is an arrow from its sender's lane to its receiver's lane, sent no later
    # than it arrives.
    lanes = data["lanes"]
    for saga in data["sagas"]:
        for sent_seq, sent_t, seq, t, src, dst, name, _attempt in saga["msgs"]:
            assert sent_seq <= seq
            assert sent_t <= t
            assert lanes[dst] != lanes[src]
            assert data["names"][name]


def test_the_report_marks_the_violations_and_the_partition_window(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("cut-short", CUT_SHORT)
    result = simulate(scenario.simulation(1))
    data = run_data("cut short", result, scenario)
    assert data["invariants"][0] == {"n": 1, "name": "every saga ends", "ok": False}
    stuck = [s for s in data["sagas"] if s["status"] == "stuck"]
    assert stuck
    assert all(s["violated"] == [1] for s in stuck)
    assert {v["saga"] for v in data["violations"]} == {s["id"] for s in stuck}
    partition = [w for w in data["windows"] if w["kind"] == "partition"]
    # Not healed before the run gave up: the window runs to the end of the run.
    assert partition == [
        {
            "kind": "partition",
            "node": "payment",
            "t0": 500_000,
            "t1": result.virtual_us,
            "info": "both until 30.5s, drop",
        }
    ]


def test_text_from_a_run_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    nasty = "</script><script>alert(1)</script><!--"
    scenario = Scenario.from_toml("nasty", RETRIES.replace("Ten sagas", nasty))
    result = simulate(Variant(services=planted_bugs.double_charge_services).apply(
        scenario.simulation(1)
    ))  # fmt: skip
    path = tmp_path / "nasty.html"
    write_report(path, nasty, result, scenario)
    page = path.read_text()
    assert_self_contained(page)
    assert embedded(page)["description"].startswith(nasty)


def test_an_explore_report_has_the_matrix_and_every_failing_seed(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("cut-short", CUT_SHORT)
    result = explore(scenario, 2, out=tmp_path / "replays")
    path = tmp_path / "explore.html"
    write_explore_report(path, "explore cut-short", result, replay_command=replay_command_line)
    page = path.read_text()
    assert_self_contained(page)
    data = embedded(page)
    assert data["runs"] == 2
    assert [row["row"] for row in data["matrix"]] == ["all runs", "delay", "partition"]
    assert data["matrix"][0]["violated"] == 2
    assert [f["seed"] for f in data["failing"]] == [0, 1]
    for failing in data["failing"]:
        assert failing["shrunk"]
        assert [d["kind"] for d in failing["decisions"]] == ["partition"]
        saved = tmp_path / "replays" / f"cut-short-seed{failing['seed']}.json"
        assert saved.is_file()
        assert failing["file"] == str(saved)
        assert failing["command"] == f"python run.py replay {saved}"
