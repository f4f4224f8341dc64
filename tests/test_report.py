# The HTML report as a file: self-contained (nothing fetched from anywhere), the embedded data
# says what the run did (sagas, faults, windows, invariants), and no string from a run can break
# out of the page. tests/test_browser.py checks that a real browser draws it.

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
import math
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import planted_bugs

from trio_saga.explore import explore
from trio_saga.explore_text import replay_command_line
from trio_saga.report import (
    ASSETS,
    asset,
    explore_data,
    page,
    run_data,
    write_explore_report,
    write_report,
)
from trio_saga.scenario import Scenario
from trio_saga.shop import SHOP
from trio_saga.simulation import simulate

REPO = Path(__file__).resolve().parent.parent
PAGE_SUFFIXES = {".html", ".js", ".css"}
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


def test_run_text_that_spells_a_page_slot_stays_text(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("slots", CRASH)
    path = tmp_path / "slots.html"
    write_report(path, "%SCRIPT% %DATA%", simulate(scenario.simulation(1)), scenario)
    page = path.read_text()
    assert "<title>%SCRIPT% %DATA%</title>" in page
    assert page.count('id="report-data"') == 1
    assert page.count('"title":"%SCRIPT% %DATA%"') == 1


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


def test_an_explore_report_of_a_saga_that_does_not_ship_names_it_in_the_command(
    tmp_path: Path,
) -> None:
    scenario = Scenario.from_toml("retries", RETRIES)
    result = explore(scenario, 8, saga=planted_bugs.DOUBLE_CHARGE, max_shrinks=1, out=tmp_path)
    assert result.failing, "the planted double charge should break one of these seeds"
    command = functools.partial(replay_command_line, saga=result.saga)
    data = explore_data("explore retries", result, replay_command=command)
    failing = data["failing"][0]
    assert [v["n"] for v in failing["violations"]][:1] == [2]
    assert failing["violations"][0]["name"] == "outcome matches events"
    saved = tmp_path / f"retries-seed{failing['seed']}.json"
    # A replay file never imports code by itself: the command must name the saga.
    assert failing["command"] == replay_command_line(saved, planted_bugs.DOUBLE_CHARGE)
    assert failing["command"].startswith(f"python run.py replay {saved} --saga-def ")
    assert failing["command"].endswith("planted_bugs.py:DOUBLE_CHARGE")


def colours(css: str, prefix: str) -> dict[str, str]:
    """The custom properties `--PREFIX-NAME: #rrggbb` of the stylesheet's :root."""
    root = re.search(r":root\s*{(.*?)}", css, re.DOTALL)
    assert root is not None
    return {
        m.group(1): m.group(2).lower()
        for m in re.finditer(rf"--{prefix}-([\w-]+):\s*(#[0-9a-fA-F]{{6}})\s*;", root.group(1))
    }


def lab(colour: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour `#rrggbb`."""
    srgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb)
    xyz = (
        (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883,
    )
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_every_outcome_and_fault_kind_has_a_colour_of_its_own() -> None:
    css = asset("report.css")
    outcomes, faults = colours(css, "o"), colours(css, "f")
    data = run_data("crash", simulate(Scenario.from_toml("crash", CRASH).simulation(1)))
    assert set(outcomes) == set(data["outcomes"])
    # Every fault that marks a saga, and the crash and partition windows.
    assert set(faults) == {*data["fault_kinds"], "crash", "partition"}
    table = {f"outcome {k}": v for k, v in outcomes.items()} | {
        f"fault {k}": v for k, v in faults.items()
    }
    assert len(set(table.values())) == len(table), "two kinds share a colour"
    # Not merely different bytes: no two closer than a CIE76 distance of 25 (the old "stuck"
    # and "crash" reds were 4.7 apart; 2.3 is the smallest difference a person notices).
    for (a, ca), (b, cb) in itertools.combinations(table.items(), 2):
        distance = math.dist(lab(ca), lab(cb))
        assert distance >= 25, f"{a} {ca} and {b} {cb} are only {distance:.1f} apart"


def test_every_page_file_is_found_through_importlib_resources_and_installed() -> None:
    package = resources.files("trio_saga.report")
    on_disk = {p.name for p in Path(str(package)).iterdir() if p.suffix in PAGE_SUFFIXES}
    assert on_disk == set(ASSETS)  # nothing missing, nothing left over
    with (REPO / "pyproject.toml").open("rb") as file:
        globs = tomllib.load(file)["tool"]["setuptools"]["package-data"]["trio_saga.report"]
    for name in ASSETS:
        assert package.joinpath(name).is_file(), name
        assert asset(name).strip(), name
        # pip install . (not editable) copies only what package-data names.
        assert any(fnmatch.fnmatch(name, glob) for glob in globs), name
    for kind in ("run", "explore"):
        built = page(kind, "t", {})
        assert not re.search(r"%[A-Z]+%", built), "a slot left unfilled"
        assert_self_contained(built)


def test_lanes_come_from_the_caller_and_the_trace(tmp_path: Path) -> None:
    scenario = Scenario.from_toml("crash", CRASH)
    result = simulate(scenario.simulation(1))
    shop = run_data("shop", result, scenario)
    # Other lanes, in another order, with no publisher map: each delivery is drawn from the
    # node that published its message in the trace.
    lanes = ("client", "shipping", "payment", "inventory")
    other = run_data("other", result, scenario, lanes=lanes, publisher={}, compensating=())
    assert other["lanes"] == list(lanes)
    assert other["compensating"] == []
    for before, after in zip(shop["sagas"], other["sagas"], strict=True):
        assert len(before["msgs"]) == len(after["msgs"]) > 0
        for a, b in zip(before["msgs"], after["msgs"], strict=True):
            assert other["lanes"][b[4]] == shop["lanes"][a[4]]
            assert other["lanes"][b[5]] == shop["lanes"][a[5]]
    # A node the lanes leave out gets a lane of its own, after them.
    few = run_data("few", result, scenario, lanes=("client", "inventory"))
    assert few["lanes"] == ["client", "inventory", "payment", "shipping"]
    assert "PaymentFailed" in shop["compensating"]


def test_the_lanes_and_who_sends_what_come_from_the_saga_definition() -> None:
    result = simulate(Scenario.load("chaos").simulation(1))
    data = run_data("chaos", result)
    assert data["lanes"] == list(SHOP.lanes) == ["client", "inventory", "payment", "shipping"]
    senders = {(r.event, r.node) for r in result.trace if r.kind in ("start", "publish")}
    assert senders == {(event, lane) for event, lane in SHOP.publisher.items()}
    assert set(data["compensating"]) == set(SHOP.compensating) & set(data["names"])
