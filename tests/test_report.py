# The HTML report as a file: self-contained (nothing fetched from anywhere), the embedded data
# says what the run did (sagas, faults, windows, invariants), and no string from a run can break
# out of the page. tests/test_browser.py checks that a real browser draws it.

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import planted_bugs

from trio_saga.explore import explore
from trio_saga.report import explore_data, run_data, write_explore_report, write_report
from trio_saga.scenario import Scenario
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
    assert [(inv["n"], inv["name"], inv["result"]) for inv in data["invariants"]] == [
        (1, "every saga ends", "ok"),
        (2, "outcome matches events", "ok"),
        (3, "no effect without its cause", "ok"),
        (4, "stock is conserved", "ok"),
        (5, "money is conserved", "ok"),
    ]
    # The lanes are the saga's: the client, then its services in step order.
    assert data["lanes"] == ["client", "inventory", "payment", "shipping"]
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
    assert data["invariants"][0] == {
        "n": 1,
        "name": "every saga ends",
        "ok": False,
        "result": "FAIL",
    }
    stuck = [s for s in data["sagas"] if s["status"] == "stuck"]
    assert stuck
    # A saga's broken invariants by their number on screen, as the page prints them.
    assert all(s["violated"] == [1] for s in stuck)
    assert {v["saga"] for v in data["violations"]} == {s["id"] for s in stuck}
    assert {v["n"] for v in data["violations"]} == {1}
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
    result = simulate(scenario.simulation(1, saga=planted_bugs.DOUBLE_CHARGE))
    path = tmp_path / "nasty.html"
    write_report(path, nasty, result, scenario)
    page = path.read_text()
    assert_self_contained(page)
    assert embedded(page)["description"].startswith(nasty)


def test_an_explore_report_has_the_matrix_and_every_failing_seed(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("cut-short", CUT_SHORT)
    result = explore(scenario, 2, out=tmp_path / "replays")
    path = tmp_path / "explore.html"
    write_explore_report(path, "explore cut-short", result)
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
        assert failing["command"] == f"python run.py replay {saved}"


def test_an_explore_report_of_a_saga_that_does_not_ship_names_it_in_the_command(
    tmp_path: Path,
) -> None:
    scenario = Scenario.from_toml("retries", RETRIES)
    result = explore(scenario, 8, saga=planted_bugs.DOUBLE_CHARGE, max_shrinks=1, out=tmp_path)
    assert result.failing, "the planted double charge should break one of these seeds"
    data = explore_data("explore retries", result)
    failing = data["failing"][0]
    assert [v["n"] for v in failing["violations"]][:1] == [2]
    assert failing["violations"][0]["name"] == "outcome matches events"
    saved = tmp_path / f"retries-seed{failing['seed']}.json"
    # A replay file never imports code by itself: the command must name the saga.
    assert failing["command"] == (
        f"python run.py replay {saved} --saga-def planted_bugs:DOUBLE_CHARGE"
    )
